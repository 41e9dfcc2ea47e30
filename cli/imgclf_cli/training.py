"""`imgclf train`, `runs`, `models`, `promote`, `rollback` and `review`: the training loop from a terminal."""

from __future__ import annotations

import argparse
import getpass
import json
from typing import Any

from imgclf import aws, ddb
from imgclf.datasets import Dataset
from imgclf.errors import ImgclfError
from imgclf.registry import ModelRegistry
from imgclf.runs import COMPLETED, FAILED, Runs
from imgclf.settings import get_settings
from imgclf_cli.console import guarded
from imgclf_training import completion
from imgclf_training.promotion import promote
from imgclf_training.starter import start_training_job


def _hyperparameter(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name.replace("-", "_"), value


def local_launcher(settings, stream_output: bool = True):
    """Runs train.py on this machine and records the outcome as the completion function would."""
    from imgclf_local.sagemaker import LocalSageMaker  # the emulator: only for TRAINING_BACKEND=local

    runs, registry = Runs(settings.runs_table), ModelRegistry(settings.models_table)

    def finish(description: dict) -> None:
        run_id = completion.run_id_of(settings, description["TrainingJobName"])
        completion.complete_run(settings, runs, registry, run_id, description)

    return LocalSageMaker(aws.client("s3"), on_finish=finish, stream_output=stream_output)


def _train(args: argparse.Namespace) -> int:
    settings = get_settings()
    settings.require("data_bucket", "runs_table", "models_table")
    if settings.training_backend == "local":
        prepared = start_training_job(settings, Runs(settings.runs_table), local_launcher(settings), args.dataset,
                                      dict(args.hp))
    else:  # the deployed starter function holds the SageMaker role and image settings
        prepared = _invoke(f"imgclf-{settings.stage}-training-starter",
                           {"action": "start", "dataset": args.dataset, "hyperparameters": dict(args.hp)})
    run = Runs(settings.runs_table).get(prepared["run_id"])
    _print(run, args.json)
    if run["status"] == FAILED:
        return 1
    if args.promote and run["status"] == COMPLETED:
        result = promote(ModelRegistry(settings.models_table), run["run_id"], by="cli")
        _print(result, args.json)
    return 0


def _invoke(function_name: str, payload: dict) -> dict:
    response = aws.client("lambda").invoke(FunctionName=function_name, Payload=json.dumps(payload).encode())
    result = json.loads(response["Payload"].read() or b"null")
    if response.get("FunctionError"):
        raise ImgclfError(f"{function_name} failed: {result.get('errorMessage', result)}")
    return result


def _runs(args: argparse.Namespace) -> int:
    settings = get_settings()
    runs = Runs(settings.runs_table)
    if args.run_id:
        _print(runs.get(args.run_id), args.json)
        return 0
    # Items whose id starts with '@' are the runs table's counters (imgclf.review.LabelCounter), not runs.
    items = [item for item in ddb.scan_all(settings.runs_table) if not item["run_id"].startswith("@")]
    items.sort(key=lambda r: r.get("created_at", ""), reverse=True)
    for run in items[: args.limit]:
        error = (run.get("metrics") or {}).get("error_rate")
        print(f"{run['run_id']:24} {run.get('status', ''):11} {run.get('dataset', ''):16} "
              f"{'' if error is None else f'error {error:.3f}'}")
    return 0


def _models(args: argparse.Namespace) -> int:
    registry = ModelRegistry(get_settings().models_table)
    active = registry.active()
    versions = registry.list_versions()
    if args.json:
        _print({"active": active.version if active else None, "versions": versions}, True)
        return 0
    for version in versions:
        marker = "*" if active and version["version"] == active.version else " "
        error = version.get("metrics", {}).get("error_rate")
        print(f"{marker} {version['version']:24} {version.get('dataset', ''):16} "
              f"{'' if error is None else f'error {error:.3f}'}  {', '.join(version.get('classes', []))}")
    if not versions:
        print("no model versions yet: train one with `imgclf train --dataset NAME`")
    return 0


def _promote(args: argparse.Namespace) -> int:
    result = promote(ModelRegistry(get_settings().models_table), args.version, force=args.force, by="cli")
    _print(result, args.json)
    return 0 if result["promoted"] else 1


def _rollback(args: argparse.Namespace) -> int:
    active = ModelRegistry(get_settings().models_table).rollback(by="cli")
    _print({"active": active.version, "previous": active.previous}, args.json)
    return 0


def _review(args: argparse.Namespace) -> int:
    """The images a run found hardest: the input of the cleaning loop."""
    settings = get_settings()
    key = f"{settings.models_prefix}{args.run}/output/top_losses.json"
    body = aws.client("s3").get_object(Bucket=settings.data_bucket, Key=key)["Body"].read()
    entries = json.loads(body)
    entries = entries.get("items", entries) if isinstance(entries, dict) else entries
    if args.json:
        _print(entries, True)
        return 0
    print(f"{'kind':9} {'actual':14} {'predicted':14} {'prob':>6} {'loss':>7}  image")
    for entry in entries:
        print(f"{entry.get('kind', ''):9} {entry.get('actual', ''):14} {entry.get('predicted', ''):14} "
              f"{entry.get('probability', 0):6.3f} {entry.get('loss', 0):7.3f}  "
              f"{entry.get('s3_key') or entry.get('path', '')}")
    return 0


def _dataset(args: argparse.Namespace) -> int:
    settings = get_settings()
    _print(Dataset(aws.client("s3"), settings.data_bucket, args.name, settings.dataset_prefix).summary(), args.json)
    return 0


def _edit(args: argparse.Namespace) -> int:
    """Delete, relabel or keep images of a dataset, each recorded in the manifest's audit trail."""
    settings = get_settings()
    dataset = Dataset(aws.client("s3"), settings.data_bucket, args.dataset, settings.dataset_prefix)
    action = "relabel" if args.relabel else "delete" if args.delete else "keep"
    for key in args.keys:
        _print(dataset.edit(key, action, by=args.by, label=args.relabel, reason=args.reason), args.json)
    return 0


def _print(value: Any, as_json: bool) -> None:
    if as_json or not isinstance(value, dict):
        print(json.dumps(value, default=str))
    else:
        for name, item in value.items():
            print(f"{name:16} {json.dumps(item, default=str) if isinstance(item, dict | list) else item}")


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Mount the training commands into the `imgclf` command line."""
    train = sub.add_parser("train", help="train a model on a collected dataset")
    train.add_argument("--dataset", required=True)
    train.add_argument("--hp", type=_hyperparameter, action="extend", nargs="+", default=[], metavar="NAME=VALUE",
                       help="hyperparameters of training_job/train.py, e.g. --hp epochs=5 img_size=160 "
                            "(several after one --hp, or --hp repeated)")
    train.add_argument("--promote", action="store_true", help="promote the model if it is no worse")
    train.set_defaults(func=guarded(_train))

    runs = sub.add_parser("runs", help="list training runs, or show one")
    runs.add_argument("run_id", nargs="?")
    runs.add_argument("--limit", type=int, default=20)
    runs.set_defaults(func=guarded(_runs))

    models = sub.add_parser("models", help="list model versions; * marks the active one")
    models.set_defaults(func=guarded(_models))

    prom = sub.add_parser("promote", help="make a model version active")
    prom.add_argument("version")
    prom.add_argument("--force", action="store_true", help="promote even if its error rate is worse")
    prom.set_defaults(func=guarded(_promote))

    rollback = sub.add_parser("rollback", help="return to the previously active model version")
    rollback.set_defaults(func=guarded(_rollback))

    review = sub.add_parser("review", help="the images a training run found hardest")
    review.add_argument("--run", required=True)
    review.set_defaults(func=guarded(_review))

    dataset = sub.add_parser("dataset", help="images per label of a dataset, its version and its edits")
    dataset.add_argument("name")
    dataset.set_defaults(func=guarded(_dataset))

    edit = sub.add_parser("edit", help="delete, relabel or keep dataset images (the cleaning loop)")
    edit.add_argument("--dataset", required=True)
    what = edit.add_mutually_exclusive_group(required=True)
    what.add_argument("--delete", action="store_true", help="remove the images from the dataset")
    what.add_argument("--relabel", metavar="LABEL", help="move the images to another label")
    what.add_argument("--keep", action="store_true", help="record that the images were reviewed and kept")
    edit.add_argument("--reason", default="", help="why, for the audit trail")
    edit.add_argument("--by", default=getpass.getuser(), help="who, for the audit trail (default: you)")
    edit.add_argument("keys", nargs="+", metavar="KEY", help="datasets/NAME/LABEL/....jpg keys, from `imgclf review`")
    edit.set_defaults(func=guarded(_edit))

    for parser in (train, runs, models, prom, rollback, review, dataset, edit):
        parser.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print JSON")
