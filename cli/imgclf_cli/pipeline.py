"""`imgclf pipeline`: collect, train, evaluate and promote, by the state machine in AWS or its definition locally."""

from __future__ import annotations

import argparse
import json
import sys
import time

from imgclf import aws
from imgclf.runs import pipeline_input
from imgclf.settings import get_settings
from imgclf_cli.console import log
from imgclf_local.states import StatesError

TERMINAL = {"SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"}


def run_locally(execution_input: dict, logical_id: str = "TrainingPipeline") -> dict:
    """A template's state machine, run in this process against the local stack the environment points at."""
    from imgclf_local.stack import LocalStack

    return LocalStack.from_environment().run_state_machine(logical_id, execution_input, stream_training=True,
                                                           listener=_say_state)


def _say_state(event: dict) -> None:
    if event["phase"] == "entered":
        log.info("state %s (%s)", event["state"], event["type"], extra={"state": event["state"]})


def run_in_aws(state_machine_arn: str, execution_input: dict, poll_s: float = 15) -> dict:
    """Start an execution of the deployed state machine and follow it to the end."""
    sfn = aws.client("stepfunctions")
    arn = sfn.start_execution(stateMachineArn=state_machine_arn, input=json.dumps(execution_input))["executionArn"]
    log.info("started %s", arn, extra={"execution": arn})
    while True:
        execution = sfn.describe_execution(executionArn=arn)
        if execution["status"] in TERMINAL:
            break
        log.info("  %s ...", execution["status"].lower(), extra={"status": execution["status"]})
        time.sleep(poll_s)
    if execution["status"] != "SUCCEEDED":
        raise StatesError(execution.get("error", execution["status"]), execution.get("cause", ""))
    return json.loads(execution.get("output") or "{}")


def run(args: argparse.Namespace) -> int:
    settings = get_settings()
    options = {"uri": args.location} if args.source == "s3" else {"path": args.location} if args.location else {}
    # No run id: the state machine makes its execution's name the run's.
    execution_input = pipeline_input(args.dataset, dict(args.hp), labels=args.labels, query=args.query,
                                     per_label=args.per_label, source=args.source, source_options=options)
    try:
        if settings.training_backend == "local":
            output = run_locally(execution_input)
        else:
            settings.require("state_machine_arn")
            output = run_in_aws(settings.state_machine_arn, execution_input)
    except StatesError as exc:
        print(f"pipeline failed: {exc.error}: {exc.cause[:2000]}", file=sys.stderr)
        return 1
    print(json.dumps(output, indent=None if args.json else 2, default=str))
    return 0


def reclassify(args: argparse.Namespace) -> int:
    """Classify every upload again with the active model; what is already done by it is skipped."""
    settings = get_settings()
    try:
        if settings.training_backend == "local":
            run_locally({}, "ReclassifyMachine")
        else:
            settings.require("reclassify_machine_arn")
            run_in_aws(settings.reclassify_machine_arn, {})
    except StatesError as exc:
        print(f"reclassification failed: {exc.error}: {exc.cause[:2000]}", file=sys.stderr)
        return 1
    print(json.dumps(progress(settings), indent=None if args.json else 2))
    return 0


def progress(settings) -> dict:
    """How many predictions the active model has made, of how many uploads."""
    from imgclf import ddb
    from imgclf.registry import ModelRegistry

    active = ModelRegistry(settings.models_table).active()
    records = ddb.scan_all(settings.predictions_table, ProjectionExpression="model_version, #s",
                          ExpressionAttributeNames={"#s": "status"})
    by_active = sum(1 for r in records if active and r.get("model_version") == active.version)
    rejected = sum(1 for r in records if r.get("status") == "rejected")
    return {"active_model": active.version if active else None, "records": len(records),
            "classified_by_active_model": by_active, "rejected": rejected}


def _hyperparameter(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name.replace("-", "_"), value


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("pipeline", help="collect, train, evaluate and promote in one run")
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--labels", nargs="+", required=True, metavar="LABEL")
    parser.add_argument("--query", default="{label}", help='search query; "{label}" is replaced by each label')
    parser.add_argument("--per-label", type=int, default=150)
    parser.add_argument("--source", default="ddg", choices=("bing", "ddg", "urls", "s3"),
                        help="where images come from (the collector function cannot read local folders)")
    parser.add_argument("--from", dest="location",
                        help="s3://bucket/imports/NAME/ for --source s3, a URL list for urls")
    parser.add_argument("--hp", type=_hyperparameter, action="append", default=[], metavar="NAME=VALUE")
    parser.set_defaults(func=run)

    again = sub.add_parser("reclassify", help="classify every existing upload again with the active model")
    again.set_defaults(func=reclassify)
