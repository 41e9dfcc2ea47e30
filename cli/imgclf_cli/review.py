"""`imgclf review-queue`, `imgclf label` and `imgclf live-accuracy`: the review of uploads from the command line,
through the same code as GET /review-queue, POST /review-queue/{key+} and GET /live-accuracy."""

from __future__ import annotations

import argparse

from imgclf import aws
from imgclf.errors import ImgclfError
from imgclf.registry import ModelRegistry
from imgclf.review import REASONS, ReviewQueue
from imgclf.settings import Settings, get_settings
from imgclf_api import review_queue
from imgclf_api.errors import ApiError
from imgclf_api.launcher import AwsPipelineLauncher
from imgclf_cli.console import guarded, log

PAGE = 100  # the API's largest page


def _queue(args: argparse.Namespace) -> int:
    settings = get_settings()
    settings.require("predictions_table", "data_bucket")
    queue, shown, token = ReviewQueue(settings.predictions_table), 0, None
    while shown < args.limit:
        items, token = review_queue.list_queue(queue, aws.client("s3"), settings.data_bucket, limit=PAGE,
                                               token=token, reason=args.reason)
        for item in items[: args.limit - shown]:
            item.pop("thumbnail_url", None)
            log.info("%s  %-10s %s %s %.3f (margin %.3f)", item.get("queued_at", ""), item.get("review_reason", ""),
                     item["key"], item.get("label", ""), item.get("confidence") or 0, item.get("margin") or 0,
                     extra={"upload": item})
            shown += 1
        if not token:
            break
    log.info("%d upload(s) shown; %d waiting in all", shown, queue.depth(), extra={"shown": shown})
    return 0


def _launcher(settings: Settings):
    """Where the collector and the retraining run: this process against a local stack, AWS otherwise."""
    if settings.training_backend == "local":
        from imgclf_local.launcher import LocalPipelineLauncher
        from imgclf_local.stack import LocalStack

        return LocalPipelineLauncher(LocalStack.from_environment())
    settings.require("collector_function")
    return AwsPipelineLauncher.from_settings(settings)


def _caller() -> str:
    try:
        return aws.client("sts").get_caller_identity()["Arn"]
    except Exception:  # noqa: BLE001 - any identity will do for the record; the decision matters more
        return "cli"


def _label(args: argparse.Namespace) -> int:
    settings = get_settings()
    settings.require("predictions_table", "runs_table", "models_table", "data_bucket")
    action = "none" if args.none else "skip" if args.skip else "label"
    launcher = _launcher(settings)
    caller = _caller()
    result = review_queue.decide(settings, launcher, ModelRegistry(settings.models_table), key=args.key,
                                 action=action, label=args.label, dataset=args.dataset, by=args.by or caller,
                                 signed_by=caller)
    ingest, retrain = result.get("ingest") or {}, result.get("retrain") or {}
    copied = (f"; dataset {ingest.get('dataset')}: {ingest.get('status')} ({ingest.get('message', '')})"
              if ingest else "")
    log.info("%s: %s%s%s", result["key"], result["review"],
             f" {result['human_label']}" if result.get("human_label") else "", copied, extra={"review": result})
    if retrain:
        log.info("%d of %d labels towards the next training run of %s%s", retrain["labels_since_run"],
                 retrain["retrain_after"], retrain["dataset"],
                 ": retraining requested" if retrain.get("requested") else "", extra={"retrain": retrain})
    if retrain.get("requested") and hasattr(launcher, "wait"):
        log.info("the training pipeline runs here; waiting for it to end")
        launcher.wait()
    return 0


def _live_accuracy(args: argparse.Namespace) -> int:
    settings = get_settings()
    settings.require("predictions_table")
    estimates = review_queue.live_accuracy_estimates(ReviewQueue(settings.predictions_table), args.model_version)
    for e in estimates:
        log.info("%-24s accuracy %.3f  95%% [%.3f, %.3f]  n=%d (%d abstained)", e["model_version"], e["accuracy"],
                 e["low"], e["high"], e["n"], e["abstained"], extra={"estimate": e})
    if not estimates:
        log.info("no sampled upload has been labeled yet (sample rate %s)", settings.review_sample_rate,
                 extra={"estimates": []})
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Mount `review-queue`, `label` and `live-accuracy` into the `imgclf` command line."""
    queue = sub.add_parser("review-queue", help="uploads waiting for a person: unknown, low margin or sampled")
    queue.add_argument("--reason", choices=REASONS, help="only uploads queued for this reason")
    queue.add_argument("--limit", type=int, default=20, metavar="N", help="at most N uploads (default 20)")
    queue.set_defaults(func=guarded(_queue, ApiError))

    label = sub.add_parser("label", help="label an upload (it joins the dataset), mark it none of these, or skip it")
    label.add_argument("key", metavar="KEY", help="the upload's key, e.g. uploads/cat.jpg")
    what = label.add_mutually_exclusive_group(required=True)
    what.add_argument("--label", metavar="LABEL", help="the right label (a new one too)")
    what.add_argument("--none", action="store_true", help="none of the labels: keep it as a negative example")
    what.add_argument("--skip", action="store_true", help="not sure: take it out of the queue")
    label.add_argument("--dataset", metavar="NAME", help="the dataset it joins (default: the active model's)")
    label.add_argument("--by", metavar="WHO", help="who decides (default: your AWS identity)")
    label.set_defaults(func=guarded(_label, ApiError, ImgclfError))

    accuracy = sub.add_parser("live-accuracy", help="production accuracy per model version from sampled, labeled "
                                                    "uploads, with its 95%% interval")
    accuracy.add_argument("--model-version", metavar="VERSION", help="only this version")
    accuracy.set_defaults(func=guarded(_live_accuracy, ApiError))

    for parser in (queue, label, accuracy):
        parser.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="one JSON object a line")
