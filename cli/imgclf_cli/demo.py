"""`imgclf demo`: the template's pipeline (collect, train, promote), then classification, on the embedded stack."""

from __future__ import annotations

import argparse
import logging
import shutil
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from imgclf import ddb, keys
from imgclf.runs import Runs, new_run_id, pipeline_input
from imgclf.settings import get_settings
from imgclf_cli.console import log
from imgclf_local.samples import SHAPES, write_shapes
from imgclf_local.states import StatesError
from imgclf_local.template import REPO_ROOT

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif")
DATASET = "demo"


class DemoError(Exception):
    """A step failed; the message says what to do about it."""


@dataclass(frozen=True)
class HeldOut:
    """An image kept out of training, uploaded at the end, with the label it should get."""

    path: Path
    label: str


# ---------------------------------------------------------------- console
class Console:
    """Numbered steps with their duration, so a newcomer sees where the time goes; lines go to the log console."""

    def __init__(self, steps: int, logger: logging.Logger = log.getChild("demo")):
        self.steps, self.log, self.current = steps, logger, 0
        self._started: float | None = None
        self._ticker: _Ticker | None = None

    @contextmanager
    def step(self, title: str) -> Iterator[None]:
        self.begin(title)
        try:
            yield
        finally:
            self.end()

    def begin(self, title: str) -> None:
        """Start the next step, ending the one before if it is still open."""
        self.end()
        self.current += 1
        self.log.info("[%d/%d] %s ...", self.current, self.steps, title,
                      extra={"step": self.current, "steps": self.steps, "title": title})
        self._started = time.monotonic()
        self._ticker = _Ticker(self, self._started)
        self._ticker.start()

    def end(self) -> None:
        """Close the open step, if any, with its duration."""
        if self._started is None:
            return
        self._ticker.stop()
        seconds = time.monotonic() - self._started
        self._started = self._ticker = None
        self.say(f"done in {seconds:.1f} s", step=self.current, seconds=round(seconds, 1))

    def say(self, text: str, **fields: Any) -> None:
        self.log.info("      %s", text, extra=fields)


class _Ticker(threading.Thread):
    """Says the elapsed time every 15 s of a long step, so a quiet terminal does not look stuck."""

    def __init__(self, console: Console, started: float):
        super().__init__(daemon=True)
        self.console, self.started, self.stopped = console, started, threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(15):
            self.console.say(f"... {time.monotonic() - self.started:.0f} s")

    def stop(self) -> None:
        self.stopped.set()


# ---------------------------------------------------------------- data
def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def split_folder(data: Path, workdir: Path, holdout_every: int) -> tuple[Path, list[HeldOut]]:
    """The training tree and the held-out images of a folder-per-label data set.

    A tree with train/ and valid/ (ImageNet style) keeps its own split: valid/ is held out. Otherwise every
    n-th image of each label is held out.
    """
    if (data / "train").is_dir() and (data / "valid").is_dir():
        held = [HeldOut(p, label.name) for label in sorted((data / "valid").iterdir()) if label.is_dir()
                for p in _images(label)]
        return data / "train", held
    train_root = workdir / "train"
    held: list[HeldOut] = []
    labels = [d for d in sorted(data.iterdir()) if d.is_dir() and not d.name.startswith(".")]
    if len(labels) < 2:
        raise DemoError(f"{data} needs at least two label folders (e.g. {data}/cats, {data}/dogs)")
    for label_dir in labels:
        (train_root / label_dir.name).mkdir(parents=True)
        for index, path in enumerate(_images(label_dir)):
            if index % holdout_every == holdout_every - 1:
                held.append(HeldOut(path, label_dir.name))
            else:
                (train_root / label_dir.name / path.name).symlink_to(path.resolve())
    return train_root, held


def synthetic(workdir: Path, per_label: int) -> tuple[Path, list[HeldOut]]:
    """The offline default: shape pictures to train on and a disjoint set (other seeds) to classify."""
    train = write_shapes(workdir / "train", per_label)
    held_root = write_shapes(workdir / "held-out", max(4, per_label // 4), first_seed=10_000)
    held = [HeldOut(p, label) for label in SHAPES for p in _images(held_root / label)]
    return train, held


# ---------------------------------------------------------------- the steps
def stage_import(stack, train_root: Path) -> tuple[str, list[str]]:
    """Upload the training tree to imports/, the prefix the pipeline's collector may read: its URI and labels."""
    settings = get_settings()
    s3 = stack.client("s3")
    prefix = f"imports/{DATASET}/"
    labels = [d.name for d in sorted(train_root.iterdir()) if d.is_dir() and not d.name.startswith(".")]
    for label in labels:
        for path in _images(train_root / label):
            s3.upload_file(str(path), settings.data_bucket, f"{prefix}{label}/{path.name}")
    return keys.s3_uri(settings.data_bucket, prefix), labels


class PipelineSteps:
    """Turns the states the execution enters and leaves into the demo's numbered steps."""

    def __init__(self, console: Console, arch: str):
        self.console = console
        self.titles = {
            "CollectLabels": f"Collecting into s3://{get_settings().data_bucket}/datasets/{DATASET}/ "
                             "(state machine TrainingPipeline, one collector invocation per label)",
            "PrepareTraining": f"Training {arch} on the CPU with train.py (SageMaker's folder contract)",
            "Promote": "Promoting the model",
        }

    def __call__(self, event: dict) -> None:
        state = event["state"]
        if event["phase"] == "entered" and state in self.titles:
            self.console.begin(self.titles[state])
        elif event["phase"] == "exited" and state == "CollectLabels":
            for label in event["output"].get("collected", []):
                self.console.say(f"{label.get('label', '?'):14} accepted {label.get('accepted', 0):4}  "
                                 f"rejected {label.get('rejected', 0):3}",
                                 **{k: label.get(k) for k in ("label", "accepted", "rejected", "images")})
        elif event["phase"] == "exited" and state == "Evaluate":
            output = event["output"]
            metrics = output.get("metrics", {})
            self.console.say(f"run {output.get('run_id')}: validation error "
                             f"{metrics.get('error_rate', float('nan')):.1%} on {metrics.get('n_valid', '?')} images",
                             run_id=output.get("run_id"), metrics=metrics)
        elif event["phase"] == "exited" and state == "Promote" and event["output"].get("promoted"):
            self.console.say(f"active model: {event['output']['active']}", active=event["output"]["active"])


def pipeline_step(stack, console: Console, execution_input: dict, arch: str, verbose: bool) -> dict:
    """Run the template's TrainingPipeline, as AWS would, and return the record of the run it trained."""
    run_id = new_run_id()  # the execution's name, which the pipeline makes the run id
    runs = Runs(get_settings().runs_table)
    try:
        output = stack.run_state_machine("TrainingPipeline", execution_input, name=run_id, stream_training=verbose,
                                         listener=PipelineSteps(console, arch))
    except StatesError as exc:
        if exc.error == "TrainingFailed":
            reason = runs.get(run_id).get("failure_reason", "no reason recorded")
            raise DemoError(f"training failed: {reason}\n"
                            "Check the data set (at least two labels with a few images each) and try again.") from exc
        raise DemoError(f"the pipeline failed: {exc.error}: {exc.cause[:2000]}") from exc
    finally:
        console.end()
    if not output.get("promoted"):
        raise DemoError(f"promotion refused: {output.get('reason')}")
    return runs.get(run_id)


def classify_step(stack, console: Console, held_out: list[HeldOut], timeout_s: float) -> list[dict]:
    """Drop the held-out images into uploads/ and wait until each has a prediction record."""
    settings = get_settings()
    s3 = stack.client("s3")
    expected: dict[str, HeldOut] = {}
    for index, item in enumerate(held_out):
        key = f"{settings.upload_prefix}demo/{index:04d}-{item.path.name}"
        s3.upload_file(str(item.path), settings.data_bucket, key)
        expected[keys.s3_uri(settings.data_bucket, key)] = item
    console.say(f"uploaded {len(expected)} images to s3://{settings.data_bucket}/{settings.upload_prefix}demo/")

    found: dict[str, dict] = {}

    def all_recorded() -> bool:
        for uri in expected.keys() - found.keys():
            item = ddb.get_item(settings.predictions_table, {"image": uri})
            if item and item.get("status") in {"classified", "rejected"}:
                found[uri] = item
        return len(found) == len(expected)

    try:
        stack.wait_until(all_recorded, timeout=timeout_s, interval=0.5)
    except TimeoutError as exc:
        raise DemoError(f"only {len(found)} of {len(expected)} predictions arrived in {timeout_s:.0f} s; "
                        "run with -v to see the classifier's log") from exc
    return [{**found[uri], "expected": item.label, "file": item.path.name} for uri, item in expected.items()]


def report(console: Console, results: list[dict]) -> float:
    """The prediction table and the accuracy over the held-out images."""
    width = max(len(r["file"]) for r in results)
    console.say(f"{'image':{width}}  {'expected':12} {'predicted':12} {'confidence':>10}")
    correct = 0
    for r in sorted(results, key=lambda r: r["file"]):
        hit = r.get("label") == r["expected"]
        correct += hit
        confidence = r.get("confidence")
        # An unknown verdict keeps its top label, counted as the answer here; the mark says the model was unsure.
        unsure = "  (not sure)" if r.get("verdict") == "unknown" else ""
        console.say(f"{r['file']:{width}}  {r['expected']:12} {r.get('label') or r.get('status'):12} "
                    f"{'' if confidence is None else f'{confidence:10.3f}'} {'' if hit else '  <- wrong'}{unsure}",
                    file=r["file"], expected=r["expected"], predicted=r.get("label"), confidence=confidence,
                    verdict=r.get("verdict"))
    accuracy = correct / len(results)
    precisions = sorted({r["precision"] for r in results if r.get("precision")})
    answered = f", answered by the {' and '.join(precisions)} model" if precisions else ""
    console.say(f"accuracy {accuracy:.1%} ({correct}/{len(results)}) on images the model never saw{answered}",
                accuracy=accuracy, correct=correct, images=len(results), precision=precisions)
    return accuracy


def save_report(stack, run_id: str, out: Path) -> list[Path]:
    """Copy the run's report (plots, metrics, top losses) into a local folder."""
    settings = get_settings()
    s3 = stack.client("s3")
    prefix = f"{keys.model_prefix(run_id, settings.models_prefix)}output/"
    out.mkdir(parents=True, exist_ok=True)
    saved = []
    for obj in s3.list_objects_v2(Bucket=settings.data_bucket, Prefix=prefix).get("Contents", []):
        name = obj["Key"][len(prefix):]
        if "/" in name:
            continue
        s3.download_file(settings.data_bucket, obj["Key"], str(out / name))
        saved.append(out / name)
    return saved


def hyperparameters(args: argparse.Namespace, synthetic_data: bool) -> dict:
    return {
        "arch": args.arch,
        "pretrained": "true",
        "weights": "efficientnet-lite0-package" if args.arch == "tf_efficientnet_lite0" else "",
        "epochs": str(args.epochs),
        "freeze_epochs": "1",
        "img_size": str(args.img_size or (128 if synthetic_data else 224)),
        "bs": "32",
        "num_workers": "0",
        "seed": "42",
    }


@dataclass(frozen=True)
class DemoResult:
    run: dict
    results: list[dict]
    accuracy: float
    report_files: list[Path]


def run_pipeline(stack, args: argparse.Namespace, console: Console, workdir: Path) -> DemoResult:
    """Steps 2-6 on a running stack: data, the pipeline (collect, train, promote), classify, report."""
    with console.step("Preparing the data"):
        if args.data:
            data = Path(args.data).expanduser()
            if not data.is_dir():
                raise DemoError(f"{data} is not a folder; DEMO_DATA must be a folder with one folder per label")
            train_root, held_out = split_folder(data, workdir, args.holdout_every)
            console.say(f"{data}: training from {train_root}, {len(held_out)} images held out")
        else:
            train_root, held_out = synthetic(workdir, args.per_label)
            console.say(f"drew {args.per_label} pictures per shape ({', '.join(SHAPES)}) and "
                        f"{len(held_out)} more to classify; DEMO_DATA=path uses your own photos")
        if args.limit_held_out:
            held_out = held_out[:: max(1, len(held_out) // args.limit_held_out)][: args.limit_held_out]
        uri, labels = stage_import(stack, train_root)
        console.say(f"staged the training images under {uri} for the pipeline to collect")
    execution_input = pipeline_input(DATASET, hyperparameters(args, not args.data), labels=labels,
                                     per_label=args.max_per_label, source="s3", source_options={"uri": uri})
    run = pipeline_step(stack, console, execution_input, args.arch, args.verbose)
    with console.step(f"Classifying {len(held_out)} held-out images dropped into uploads/"):
        results = classify_step(stack, console, held_out, args.timeout)
    accuracy = report(console, results)
    saved = save_report(stack, run["run_id"], Path(args.out))
    console.say(f"report plots and metrics in {Path(args.out).resolve()}: "
                f"{', '.join(p.name for p in saved if p.suffix == '.png')}", report=[str(p) for p in saved])
    return DemoResult(run=run, results=results, accuracy=accuracy, report_files=saved)


def run_demo(args: argparse.Namespace) -> int:
    """The `imgclf demo` command: start the stack, run the pipeline, optionally keep serving the page."""
    from imgclf_local.stack import LocalStack

    console = Console(steps=6)
    workdir = Path(tempfile.mkdtemp(prefix="imgclf-demo-"))
    stack = None
    try:
        with console.step("Starting the embedded local stack (moto, resources from template.yaml)"):
            stack = LocalStack(api_port=args.port if args.serve else 0).start()
        run_pipeline(stack, args, console, workdir)
        if args.serve:
            console.say(f"the upload page is at {stack.api.url}/  (Ctrl-C stops)")
            _wait_forever()
        return 0
    except DemoError as exc:
        console.log.error("demo failed: %s", exc)
        return 1
    except KeyboardInterrupt:
        return 130
    finally:
        if stack:
            stack.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def _wait_forever() -> None:
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Mount `demo` into the `imgclf` command line."""
    demo = sub.add_parser("demo", help="the whole pipeline on the embedded local stack, offline")
    demo.add_argument("--data", help="a folder with one folder per label (or train/ and valid/); default: shapes")
    demo.add_argument("--per-label", type=int, default=40, help="shape pictures per label (default data only)")
    demo.add_argument("--max-per-label", type=int, default=1000, help="at most this many images per label")
    demo.add_argument("--holdout-every", type=int, default=5, help="hold out every n-th image of a label")
    demo.add_argument("--limit-held-out", type=int, default=0, help="classify at most this many held-out images")
    demo.add_argument("--arch", default="tf_efficientnet_lite0",
                      help="network; the default loads ImageNet weights shipped in a Python package")
    demo.add_argument("--epochs", type=int, default=2)
    demo.add_argument("--img-size", type=int, default=0, help="default: 128 for shapes, 224 for photos")
    demo.add_argument("--timeout", type=float, default=300, help="seconds to wait for the predictions")
    demo.add_argument("--out", default=str(REPO_ROOT / "demo-output"), help="where the report plots go")
    demo.add_argument("--serve", action="store_true", help="keep the page up afterwards and print its URL")
    demo.add_argument("--port", type=int, default=3000, help="port of the page with --serve")
    demo.set_defaults(func=run_demo)
