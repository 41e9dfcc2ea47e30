"""The `imgclf` command line."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading

from imgclf_cli import (
    audit,
    collect,
    console,
    demo,
    pipeline,
    predictions,
    preflight,
    review,
    reviewers,
    teardown,
    training,
)


def _local(args: argparse.Namespace) -> int:
    from imgclf_local.stack import LocalStack

    stack = LocalStack(api_port=args.port)
    stack.start()
    print(stack.describe(), flush=True)
    print("\nCtrl-C stops the stack.", flush=True)
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    try:
        stopped.wait()
    except KeyboardInterrupt:
        pass
    finally:
        stack.stop()
        print("stopped", flush=True)
    return 0


STACK_OUTPUTS = {
    "DataBucketName": "DATA_BUCKET",
    "PredictionsTableName": "PREDICTIONS_TABLE",
    "RunsTableName": "RUNS_TABLE",
    "ModelsTableName": "MODELS_TABLE",
    "DecisionsTableName": "DECISIONS_TABLE",
    "PipelineArn": "STATE_MACHINE_ARN",
    "ReclassifyArn": "RECLASSIFY_MACHINE_ARN",
    "CollectorFunctionName": "COLLECTOR_FUNCTION",
    "ReviewSignInParameter": "SIGN_IN_PARAMETER",
}


def stack_environment(stack_name: str) -> dict[str, str]:
    """The settings the commands need, read from a deployed stack's outputs and parameters."""
    import boto3

    stack = boto3.client("cloudformation").describe_stacks(StackName=stack_name)["Stacks"][0]
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
    parameters = {p["ParameterKey"]: p.get("ParameterValue", "") for p in stack.get("Parameters", [])}
    env = {variable: outputs[output] for output, variable in STACK_OUTPUTS.items() if output in outputs}
    env["STAGE"] = parameters.get("Stage", "dev")
    return env


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="imgclf", description=__doc__)
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="-v: also the log of the code a command drives; -vv: debug logging of everything")
    parser.add_argument("--stack", metavar="NAME",
                        help="work against a deployed stack (reads its outputs); default: the environment")
    parser.add_argument("--json", action="store_true",
                        help="JSON lines: logs, progress and results, one object a line (also in Lambda)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    local = sub.add_parser("local", help="run the embedded local stack in the foreground")
    local.add_argument("--port", type=int, default=3000, help="port of the local API and page (0: any free)")
    local.set_defaults(func=_local)
    for module in (collect, training, audit, predictions, review, reviewers, demo, pipeline, preflight, teardown):
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.stack:
        os.environ.update(stack_environment(args.stack))
    with console.configured(json_lines=args.json, verbose=args.verbose):
        return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
