"""Lambda entry point of the classifier: SQS batches of upload notifications (or direct S3 events) in."""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from imgclf import aws
from imgclf.errors import NoActiveModel, TransientError
from imgclf.events import is_sqs_event
from imgclf.inference import Classifier
from imgclf.inference.calibration import UNKNOWN
from imgclf.log import get_logger, get_metrics, get_tracer
from imgclf.review import ReviewQueue
from imgclf.settings import Settings, get_settings

from .records import PredictionTable
from .service import (
    CLASSIFIED,
    DUPLICATE,
    FAILED,
    REJECTED,
    STALE,
    BatchResult,
    Collaborators,
    is_backfill_event,
    process_event,
)

SERVICE = "classifier"
BATCH_SIZE = 10  # the SQS trigger's BatchSize: one thread per image of a batch
QUEUE_PAGE = 50  # review-queue uploads per reclassify_queue invocation, well inside the function's timeout

logger = get_logger(SERVICE)
metrics = get_metrics(SERVICE)
tracer = get_tracer(SERVICE)
# Threads start on first use; S3 reads wait on the network and Pillow releases the GIL while decoding.
_pool = ThreadPoolExecutor(max_workers=BATCH_SIZE, thread_name_prefix="classify")


@lru_cache(maxsize=1)
def classifier(settings: Settings) -> Classifier:
    """The classifier of this execution environment; a new one only when the settings are reloaded."""
    return Classifier.from_settings(settings)


def collaborators() -> Collaborators:
    """What the domain logic needs, built from this environment's settings and shared clients."""
    settings = get_settings()
    settings.require("data_bucket", "predictions_table", "models_table")
    return Collaborators(settings=settings, classifier=classifier(settings),
                         table=PredictionTable(settings.predictions_table), s3=aws.client("s3"), pool=_pool,
                         log=logger)


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    """Classify the batch; report the SQS messages to deliver again. Or, with action reclassify_queue (the
    pipeline, after a promotion), classify a page of the review queue's uploads again."""
    if event.get("action") == "reclassify_queue":
        return reclassify_queue(event, collaborators())
    logger.set_correlation_id(_correlation_id(event))
    result = process_event(event, collaborators())
    _report(result)
    if is_backfill_event(event):
        if result.count(FAILED):
            # The reclassification's Map retries the batch; images already done are skipped as duplicates.
            raise TransientError(f"{result.count(FAILED)} image(s) failed and will be retried")
        return {status: result.count(status) for status in (CLASSIFIED, REJECTED, DUPLICATE, STALE)}
    if result.count(FAILED) and not is_sqs_event(event):
        # A direct S3 event has no messages to report: failing the invocation makes Lambda retry it.
        raise TransientError(f"{result.count(FAILED)} image(s) failed and will be retried")
    return {"batchItemFailures": [{"itemIdentifier": i} for i in result.failed_message_ids]}


def reclassify_queue(event: dict, deps: Collaborators) -> dict:
    """Classify one page of the review queue again with the active model, as a reclassification batch does (so a
    person's decision is carried over and never queued again); where the next page starts."""
    deps.classifier.store.refresh()  # the version just promoted, not the one this environment checked last
    start = json.loads(event["after"]) if event.get("after") else None
    items, last = ReviewQueue(deps.settings.predictions_table).pending(QUEUE_PAGE, start)
    counts = {status: 0 for status in (CLASSIFIED, REJECTED, DUPLICATE, STALE)}
    for first in range(0, len(items), BATCH_SIZE):
        batch = items[first:first + BATCH_SIZE]
        result = process_event({"BatchInput": {"bucket": deps.settings.data_bucket}, "Items": [
            {"Key": item["key"], "Size": item.get("size"), "Etag": item.get("etag"),
             "LastModified": item.get("uploaded_at") or ""} for item in batch]}, deps)
        _report(result)
        if result.count(FAILED):
            raise TransientError(f"{result.count(FAILED)} queued image(s) failed and will be retried")
        for status in counts:
            counts[status] += result.count(status)
    logger.info("review queue page reclassified", extra={"version": event.get("version"), **counts})
    return {"count": len(items), **counts, "more": bool(last), "next": json.dumps(last) if last else ""}


def _report(result: BatchResult) -> None:
    """One log line per image and the invocation's metrics."""
    for outcome in result.outcomes:
        label = outcome.prediction.label if outcome.prediction else None
        logger.info(f"{outcome.job.ref.uri}: {outcome.status}", extra={
            "image": outcome.job.ref.uri, "message_id": outcome.job.message_id, "status": outcome.status,
            "reason": outcome.reason or None, "label": label, "latency_ms": outcome.latency_ms,
        })
        if outcome.status == CLASSIFIED and outcome.latency_ms is not None:
            metrics.add_metric(name="latency", unit=MetricUnit.Milliseconds, value=outcome.latency_ms)
    for name, status in (("classified", CLASSIFIED), ("rejected", REJECTED), ("failed", FAILED)):
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=result.count(status))
    # unknown / classified is the dashboard's unknown rate.
    unknown = sum(o.status == CLASSIFIED and o.prediction is not None and o.prediction.verdict == UNKNOWN
                  for o in result.outcomes)
    metrics.add_metric(name="unknown", unit=MetricUnit.Count, value=unknown)
    skipped = result.count(DUPLICATE) + result.count(STALE)
    metrics.add_metric(name="skipped", unit=MetricUnit.Count, value=skipped)
    metrics.add_metric(name="bad_messages", unit=MetricUnit.Count, value=len(result.bad_messages))


def _correlation_id(event: dict) -> str | None:
    """The first SQS message id, or the S3 request id of a direct event, to find this batch in the logs."""
    records = event.get("Records") or [{}]
    first = records[0] if isinstance(records[0], dict) else {}
    return first.get("messageId") or (first.get("responseElements") or {}).get("x-amz-request-id")


def _warm() -> None:
    """Load the model during Lambda's init phase, so that the first event does not wait for it."""
    try:
        classifier(get_settings()).model()
    except NoActiveModel:
        logger.info("no model promoted yet; the first batch will check again")
    except Exception:  # the first invocation retries and reports whatever is wrong
        logger.exception("could not load the model during init")


# Only the real Lambda runtime sets this; tests and the embedded stack import the module without a model.
if os.environ.get("AWS_LAMBDA_INITIALIZATION_TYPE"):
    _warm()
