"""Classify the images that S3 notifications name: the classifier's domain logic, free of Lambda.

One invocation's images are checked against their stored records, fetched, decoded and preprocessed
concurrently, inferred as one batch by one pinned model version, and written with conditional puts. Every
image ends in exactly one outcome; the SQS messages of the images that failed for a passing reason are
returned so that SQS delivers them again.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import Executor
from dataclasses import dataclass, field, replace
from typing import Any, Callable

from imgclf import images, keys
from imgclf.clock import now_iso
from imgclf.errors import ImageRejected, NoActiveModel, NotFound
from imgclf.events import BadEvent, ObjectRef, is_sqs_event, s3_records, sqs_body
from imgclf.inference import Classifier, LoadedModel, Prediction
from imgclf.inference.storage import read_object
from imgclf.review import review_fields
from imgclf.settings import Settings

from .records import CLASSIFIED, REJECTED, PredictionTable, Version, normalise_sequencer

# Outcomes besides the two record statuses; only FAILED is delivered again. READY is transient.
DUPLICATE, STALE, IGNORED, FAILED, READY = "duplicate", "stale", "ignored", "failed", "ready"


@dataclass(frozen=True)
class Job:
    """One object to classify and the SQS message that named it (None for a direct S3 event)."""

    ref: ObjectRef
    message_id: str | None = None
    sequencer: str | None = None  # normalised, see records.normalise_sequencer
    backfill: bool = False  # listed by a reclassification, not announced by an S3 event

    @classmethod
    def of(cls, ref: ObjectRef, message_id: str | None = None) -> Job:
        """A job for one object; ValueError when its sequencer is malformed."""
        return cls(ref, message_id, normalise_sequencer(ref.sequencer))


@dataclass
class Outcome:
    """What became of one job; `prepared` holds the model input between preprocessing and inference."""

    job: Job
    status: str
    reason: str = ""
    message: str = ""
    prediction: Prediction | None = None
    prepared: Any = None
    started: float = 0.0
    latency_ms: float | None = None
    stored: dict | None = None  # the image's record as read before classifying it (None: none, or not read)


@dataclass
class BatchResult:
    """Every job's outcome, and the SQS messages to deliver again."""

    outcomes: list[Outcome] = field(default_factory=list)
    bad_messages: list[str] = field(default_factory=list)

    @property
    def failed_message_ids(self) -> list[str]:
        """Message ids to report in batchItemFailures, each once."""
        ids = [*self.bad_messages, *(o.job.message_id for o in self.outcomes if o.status == FAILED)]
        return list(dict.fromkeys(i for i in ids if i))

    def count(self, status: str) -> int:
        return sum(o.status == status for o in self.outcomes)


@dataclass
class Collaborators:
    """Everything the domain logic talks to, passed in so that tests can replace any of it."""

    settings: Settings
    classifier: Classifier
    table: PredictionTable
    s3: Any
    pool: Executor
    log: logging.Logger | Any = field(default_factory=lambda: logging.getLogger(__name__))
    clock: Callable[[], float] = time.perf_counter
    now: Callable[[], str] = now_iso


def is_backfill_event(event: dict) -> bool:
    """A batch of a reclassification: Step Functions' Distributed Map over the upload prefix."""
    return isinstance(event.get("Items"), list) and isinstance(event.get("BatchInput"), dict)


def backfill_jobs(event: dict) -> list[Job]:
    """The listed objects of a reclassification batch (listings quote their ETags; events do not)."""
    bucket = event["BatchInput"]["bucket"]
    return [
        Job(ObjectRef(bucket=bucket, key=item["Key"], size=item.get("Size"),
                      etag=str(item.get("Etag") or item.get("ETag") or "").strip('"') or None,
                      event_time=item.get("LastModified", "")), backfill=True)
        for item in event["Items"]
    ]


def jobs_from_event(event: dict, log: logging.Logger | Any) -> tuple[list[Job], list[str]]:
    """The objects an SQS, direct S3 or reclassification event names, and the ids of SQS messages that name none."""
    if is_backfill_event(event):
        return backfill_jobs(event), []
    if not is_sqs_event(event):
        return [Job.of(ref) for ref in s3_records(event)], []
    jobs: list[Job] = []
    bad: list[str] = []
    for record in event["Records"]:
        try:
            jobs += [Job.of(ref, record["messageId"]) for ref in s3_records(sqs_body(record))]
        except (BadEvent, KeyError, TypeError, ValueError) as exc:
            # No bucket and key to hang a record on: SQS delivers it again and, after maxReceiveCount,
            # moves it to the dead-letter queue where someone can read it.
            log.error("message is not an S3 notification", extra={"message_id": record.get("messageId"),
                                                                    "error": str(exc)})
            bad.append(record.get("messageId"))
    return jobs, bad


def triage(job: Job, settings: Settings) -> Outcome | None:
    """The outcome known from the event alone (ignored, or rejected before download), or None."""
    ref = job.ref
    if ref.event_name and not ref.event_name.startswith("ObjectCreated"):
        return Outcome(job, IGNORED, reason="not a creation event")
    if settings.data_bucket and ref.bucket != settings.data_bucket:
        return Outcome(job, IGNORED, reason="not the data bucket")
    if not ref.key.startswith(settings.upload_prefix) or ref.key.endswith("/"):
        return Outcome(job, IGNORED, reason="outside the upload prefix")
    if not keys.is_image_key(ref.key):
        return Outcome(job, REJECTED, reason="unsupported_format",
                       message=f"the key does not end in one of {', '.join(keys.IMAGE_SUFFIXES)}")
    if ref.size == 0:
        return Outcome(job, REJECTED, reason="empty", message="the file is empty")
    if ref.size is not None and ref.size > settings.max_image_bytes:
        return Outcome(job, REJECTED, reason="too_large",
                       message=f"{ref.size} bytes is over the {settings.max_image_bytes} byte limit")
    return None


def process_event(event: dict, deps: Collaborators) -> BatchResult:
    """Classify every image an event names and record each result; return what happened to each."""
    jobs, bad = jobs_from_event(event, deps.log)
    result = BatchResult(bad_messages=bad)
    pending = []
    for job in jobs:
        outcome = triage(job, deps.settings)
        if outcome is None:
            pending.append(job)
        else:
            result.outcomes.append(outcome)
    if pending:
        result.outcomes += _classify(pending, deps)
    _write(result.outcomes, deps)
    return result


def _classify(jobs: list[Job], deps: Collaborators) -> list[Outcome]:
    """Check, fetch and prepare the jobs concurrently, then infer the ready ones as one batch."""
    try:
        model = deps.classifier.model()  # one version for the whole batch
    except NoActiveModel:
        # Nothing is lost: the messages come back until a model is promoted, or wait in the DLQ for a redrive.
        deps.log.warning("no model has been promoted; leaving %d image(s) to be retried", len(jobs))
        return [Outcome(job, FAILED, reason="no_model") for job in jobs]
    except Exception:
        deps.log.exception("cannot load the active model")
        return [Outcome(job, FAILED, reason="model_unavailable") for job in jobs]
    started = deps.clock()
    try:
        stored = deps.table.get_many([job.ref.uri for job in jobs])  # one consistent read for the batch
    except Exception as exc:
        deps.log.warning("cannot read the stored records: %s", exc)
        return [Outcome(job, FAILED, reason=getattr(exc, "code", "internal_error")) for job in jobs]
    outcomes = list(deps.pool.map(lambda job: _prepare(job, model, stored.get(job.ref.uri), started, deps),
                                  jobs))
    for outcome in outcomes:
        outcome.stored = stored.get(outcome.job.ref.uri)
    ready = [o for o in outcomes if o.status == READY]
    if ready:
        _infer(ready, model, deps)
    return outcomes


def _prepare(job: Job, model: LoadedModel, stored: dict | None, started: float,
             deps: Collaborators) -> Outcome:
    """Skip a job its stored record already settles; otherwise fetch, decode and preprocess its image."""
    ref, settings = job.ref, deps.settings
    try:
        if job.backfill and stored:
            if stored.get("etag") != ref.etag:
                # The record is of another version of the object; that upload's own event settles it.
                return Outcome(job, STALE, reason="the object changed since its record")
            # Same object as recorded: take over its place in the event order, so only the model differs.
            job = replace(job, sequencer=stored.get("sequencer"))
        settled = Version(job.sequencer, ref.etag, model.version).settled_by(stored)
        if settled:
            return Outcome(job, DUPLICATE if settled == "duplicate" else STALE, reason="already recorded")
        data = read_object(deps.s3, ref.bucket, ref.key, max_bytes=settings.max_image_bytes,
                           version_id=ref.version_id)
        image = images.decode(data, max_pixels=settings.max_image_pixels, min_side=settings.min_image_side)
        return Outcome(job, READY, prepared=model.prepare(image), started=started)
    except ImageRejected as exc:
        return _rejected(job, exc.reason, exc.message, started, deps)
    except NotFound as exc:  # deleted (or its version removed) before we got to it
        return _rejected(job, "not_found", str(exc), started, deps)
    except Exception as exc:  # TransientError and anything unforeseen: let SQS deliver it again
        _log_failure(deps, job, exc)
        return Outcome(job, FAILED, reason=getattr(exc, "code", "internal_error"), message=str(exc))


def _rejected(job: Job, reason: str, message: str, started: float, deps: Collaborators) -> Outcome:
    return Outcome(job, REJECTED, reason=reason, message=message, latency_ms=_ms_since(started, deps))


def _infer(ready: list[Outcome], model: LoadedModel, deps: Collaborators) -> None:
    """Run one forward pass for every prepared image and attach each prediction to its outcome."""
    try:
        predictions = model.predict([o.prepared for o in ready])
    except Exception as exc:
        deps.log.exception("inference failed for a batch of %d", len(ready))
        for outcome in ready:
            outcome.status, outcome.reason, outcome.message = FAILED, "inference_error", str(exc)
        return
    for outcome, prediction in zip(ready, predictions, strict=True):
        outcome.status, outcome.prediction, outcome.prepared = CLASSIFIED, prediction, None
        outcome.latency_ms = _ms_since(outcome.started, deps)


def _write(outcomes: list[Outcome], deps: Collaborators) -> None:
    """Store every classified or rejected outcome; a write refused by its condition turns into STALE."""
    writes = [o for o in outcomes if o.status in (CLASSIFIED, REJECTED)]
    processed_at = deps.now()
    results = deps.pool.map(lambda o: _put(o, processed_at, deps), writes)
    for outcome, stored in zip(writes, results, strict=True):
        if stored is None:
            outcome.status = FAILED
        elif not stored:
            outcome.status = STALE


def _put(outcome: Outcome, processed_at: str, deps: Collaborators) -> bool | None:
    """Write one record; None when the write failed and the job must be retried."""
    try:
        record = record_for(outcome, processed_at, deps.settings)
        if outcome.stored:
            return deps.table.put_if_newer(record, outcome.stored)
        return deps.table.put_if_newer(record)
    except Exception as exc:
        _log_failure(deps, outcome.job, exc)
        return None


def record_for(outcome: Outcome, processed_at: str, settings: Settings | None = None) -> dict[str, Any]:
    """The DynamoDB item of a classified or rejected image, with its place in the review queue where settings
    are given (imgclf.review.review_fields); None values are left out."""
    ref = outcome.job.ref
    item: dict[str, Any] = {
        "image": ref.uri,
        "bucket": ref.bucket,
        "key": ref.key,
        "etag": ref.etag,
        "version_id": ref.version_id,
        "sequencer": outcome.job.sequencer,
        "size": ref.size,
        "uploaded_at": ref.event_time or None,
        "status": outcome.status,
        "processed_at": processed_at,
        "latency_ms": outcome.latency_ms,
    }
    if outcome.prediction:
        prediction = outcome.prediction
        # label is the top class even when the verdict is unknown: the feedback loop needs the near miss.
        item.update(label=prediction.label, confidence=prediction.confidence,
                    probabilities=prediction.probabilities, verdict=prediction.verdict,
                    unknown_reason=prediction.unknown_reason, calibrated=prediction.calibrated,
                    ood_score=prediction.ood_score,
                    model_version=prediction.model_version, precision=prediction.precision)
        if settings is not None:
            item.update(review_fields(item, outcome.stored, margin_limit=settings.review_margin,
                                      sample_rate=settings.review_sample_rate, now=processed_at))
    else:
        item.update(reason=outcome.reason, message=outcome.message[:1000])
    return item


def _ms_since(started: float, deps: Collaborators) -> float:
    """Milliseconds from the start of the batch's work (its table read) to an image's result."""
    return round((deps.clock() - started) * 1000, 1)


def _log_failure(deps: Collaborators, job: Job, exc: Exception) -> None:
    deps.log.warning("will retry %s: %s", job.ref.uri, exc,
                     extra={"image": job.ref.uri, "message_id": job.message_id, "error": type(exc).__name__})
