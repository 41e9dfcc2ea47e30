"""The review queue of uploads: list it, decide one upload (label, none of these, skip), estimate live accuracy.

Deciding follows imgclf.review: claim the record (409 for an upload decided or being decided), copy the upload
into the dataset through the collector (label and none), record the decision, then count a label the dataset
gained towards its next training run; at RETRAIN_AFTER_LABELS it asks for one with an EventBridge event that a
rule of the template routes to the training pipeline. A decision on a sampled upload updates the live-accuracy
estimate of the model version that answered it, and its CloudWatch metric.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import time
from http import HTTPStatus
from typing import Any

from imgclf import keys
from imgclf.clock import now_iso
from imgclf.errors import NotFound
from imgclf.log import NAMESPACE, get_logger
from imgclf.registry import ModelRegistry
from imgclf.review import LabelCounter, ReviewQueue, live_accuracy
from imgclf.runs import Runs, pipeline_input
from imgclf.settings import Settings

from .errors import ApiError
from .launcher import RETRAIN_REQUESTED, PipelineLauncher
from .training import LINK_EXPIRES_S, presign_get

logger = get_logger("api")
MAX_TOKEN_CHARS = 4096
_TOKEN_KEYS = {"image", "review_state", "queued_at"}
QUEUED_FIELDS = ("image", "key", "label", "confidence", "probabilities", "verdict", "unknown_reason", "ood_score",
                 "model_version", "margin", "sampled", "review_reason", "queued_at", "uploaded_at", "processed_at")
# Hyperparameters the pipeline sets itself for every run; a retraining takes the rest from the active model's run.
_RUN_OWN = {"run_id", "dataset_uri"}


def list_queue(queue: ReviewQueue, s3, bucket: str, *, limit: int = 20, token: str | None = None,
               reason: str | None = None, expires_in: int = LINK_EXPIRES_S) -> tuple[list[dict], str | None]:
    """One page of the queue, oldest first, each upload with a presigned link to look at it."""
    start = decode_token(token, reason) if token else None
    items, last = queue.pending(limit, start, reason)
    page = [{**{name: item[name] for name in QUEUED_FIELDS if item.get(name) is not None},
             "thumbnail_url": presign_get(s3, bucket, item["key"], expires_in)} for item in items]
    return page, encode_token(last, reason) if last else None


def encode_token(last_key: dict[str, Any], reason: str | None) -> str:
    document = json.dumps({"k": last_key, "r": reason}, separators=(",", ":"), sort_keys=True)
    return base64.urlsafe_b64encode(document.encode()).decode().rstrip("=")


def decode_token(token: str, reason: str | None) -> dict[str, str]:
    """The ExclusiveStartKey of a token made by encode_token for the same listing, or ApiError 400."""
    try:
        if len(token) > MAX_TOKEN_CHARS:
            raise ValueError("too long")
        document = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        start = document.get("k") if isinstance(document, dict) else None
        if document.get("r") != reason or not isinstance(start, dict) or set(start) != _TOKEN_KEYS:
            raise ValueError("the token belongs to another listing")
        if not all(isinstance(value, str) for value in start.values()):
            raise ValueError("malformed position")
    except (ValueError, AttributeError, TypeError, binascii.Error, UnicodeDecodeError) as exc:
        raise ApiError(HTTPStatus.BAD_REQUEST, "invalid_token",
                       "next is not a token from a previous page of this same listing") from exc
    return start


def check_upload_key(key: str, prefix: str) -> str:
    """An upload's key as the queue names it; 404 for anything else (no such upload can be queued)."""
    parts = key.removeprefix(prefix).split("/")
    if not key.startswith(prefix) or len(key.encode()) > 1024 or any(p in {"", ".", ".."} for p in parts):
        raise NotFound(f"no upload {key[:200]!r}: keys start with {prefix}")
    return key


def dataset_for(registry: ModelRegistry, dataset: str | None) -> str:
    """The dataset a decision adds to: the one asked for, else the active model's."""
    if dataset:
        return dataset
    active = registry.active()
    name = registry.get(active.version).get("dataset") if active else None
    if not name:
        raise ApiError(HTTPStatus.CONFLICT, "no_dataset",
                       "no dataset given, and the active model names none (or no model is active): pass dataset")
    return name


def decide(settings: Settings, launcher: PipelineLauncher, registry: ModelRegistry, *, key: str, action: str,
           label: str | None = None, dataset: str | None = None, by: str, signed_by: str | None = None,
           queue: ReviewQueue | None = None, counter: LabelCounter | None = None) -> dict[str, Any]:
    """Decide one upload; the decision as recorded, what the dataset made of it and the retraining count."""
    queue = queue or ReviewQueue(settings.predictions_table)
    counter = counter or LabelCounter(settings.runs_table)
    key = check_upload_key(key, settings.upload_prefix)
    image = keys.s3_uri(settings.data_bucket, key)
    target = dataset_for(registry, dataset) if action != "skip" else None
    claimed = queue.claim(image, by=by)
    at = now_iso()
    ingest = None
    try:
        if target:
            ingest = launcher.add_upload({"action": "add_upload", "dataset": target, "upload_key": key,
                                          "label": label if action == "label" else None, "by": by, "at": at})
        record = queue.finish(claimed, action=action, by=by, at=at, human_label=label if action == "label" else None,
                              dataset=target, dataset_key=(ingest or {}).get("key"),
                              ingest=(ingest or {}).get("status"), signed_by=signed_by)
    except Exception:
        queue.release(claimed)
        raise
    answer = {name: record.get(name) for name in ("image", "key", "review", "human_label", "reviewed_by",
                                                  "reviewed_at", "review_reason", "sampled", "reviewed_prediction")}
    answer["ingest"] = ingest
    if action == "label" and target:
        answer["retrain"] = count_label(settings, launcher, registry, counter, target, image,
                                        added=(ingest or {}).get("status") == "added")
    if record.get("sampled") and record.get("review") in ("labeled", "none"):
        _report_live_accuracy(queue, (record.get("reviewed_prediction") or {}).get("model_version"))
    _report_depth(queue)
    return answer


def count_label(settings: Settings, launcher: PipelineLauncher, registry: ModelRegistry, counter: LabelCounter,
                dataset: str, image: str, *, added: bool) -> dict[str, Any]:
    """Count an image the dataset gained; at the threshold, ask once for a retraining of the dataset."""
    threshold = settings.retrain_after_labels
    status: dict[str, Any] = {"dataset": dataset, "retrain_after": threshold, "requested": False}
    status["labels_since_run"] = counter.add(dataset, image) if added else counter.get(dataset)["labeled"]
    if not threshold or status["labels_since_run"] < threshold:
        return status
    request = counter.request_retrain(dataset, at_least=threshold)
    if request is None:
        return status  # asked already, and the run has not started yet
    try:
        launcher.publish(RETRAIN_REQUESTED, {"stage": settings.stage, "dataset": dataset, "request": request,
                                             "labels": status["labels_since_run"],
                                             "input": retrain_input(settings, registry, dataset)})
    except Exception as exc:
        counter.withdraw(dataset, request)
        logger.exception("could not ask for a retraining", extra={"dataset": dataset})
        return {**status, "error": f"the retraining could not be requested: {exc}"[:500]}
    logger.info("retraining requested", extra={"dataset": dataset, "labels": status["labels_since_run"]})
    return {**status, "requested": True}


def retrain_input(settings: Settings, registry: ModelRegistry, dataset: str) -> dict[str, Any]:
    """The training pipeline's input for a retraining: no collection, the active model's hyperparameters."""
    hyperparameters: dict[str, Any] = {}
    active = registry.active()
    if active:
        try:
            run = Runs(settings.runs_table).get(registry.get(active.version).get("run_id") or active.version)
            hyperparameters = {k: v for k, v in (run.get("hyperparameters") or {}).items() if k not in _RUN_OWN}
        except NotFound:
            pass  # a version without its run record: the training job's defaults
    return pipeline_input(dataset, hyperparameters)


def live_accuracy_estimates(queue: ReviewQueue, model_version: str | None = None) -> list[dict[str, Any]]:
    """The estimate per model version (or of one) from every decided, sampled upload."""
    estimates = live_accuracy(queue.decided_samples())
    return [e for e in estimates if model_version is None or e["model_version"] == model_version]


def _report_live_accuracy(queue: ReviewQueue, model_version: str | None) -> None:
    """The version's estimate as CloudWatch metrics (embedded metric format): live_accuracy, its interval and
    sample size, by service and by service and model_version; the live-accuracy alarm reads them."""
    try:
        estimate = next(iter(live_accuracy_estimates(queue, model_version or "unknown")), None)
    except Exception:  # the decision is recorded; a metric must not fail it
        logger.exception("could not compute the live accuracy estimate")
        return
    if estimate:
        emit_metrics({"live_accuracy": estimate["accuracy"], "live_accuracy_low": estimate["low"],
                      "live_accuracy_high": estimate["high"], "live_accuracy_samples": estimate["n"]},
                     model_version=estimate["model_version"])


def _report_depth(queue: ReviewQueue) -> None:
    try:
        emit_metrics({"review_queue_depth": queue.depth()})
    except Exception:
        logger.exception("could not count the review queue")


def emit_metrics(values: dict[str, float], *, model_version: str | None = None) -> dict[str, Any] | None:
    """One embedded-metric-format line in the imgclf namespace, dimension service=review (and model_version when
    given, as a second dimension set); nothing where metrics are disabled (tests, the local stack)."""
    if os.environ.get("POWERTOOLS_METRICS_DISABLED", "").lower() in {"1", "true"}:
        return None
    dimensions = [["service"], ["service", "model_version"]] if model_version else [["service"]]
    document = {
        "_aws": {"Timestamp": int(time.time() * 1000), "CloudWatchMetrics": [{
            "Namespace": os.environ.get("POWERTOOLS_METRICS_NAMESPACE", NAMESPACE), "Dimensions": dimensions,
            "Metrics": [{"Name": name, "Unit": "Count" if name.endswith(("_samples", "_depth")) else "None"}
                        for name in values]}]},
        "service": "review",
        **({"model_version": model_version} if model_version else {}),
        **values,
    }
    print(json.dumps(document), flush=True)  # Lambda sends stdout to CloudWatch Logs, which extracts the metrics
    return document

