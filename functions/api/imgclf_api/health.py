"""The model's health over the last hours, from the predictions table: uploads per hour, unknown rate, classifier
latency and rejections, with the review queue's depth and live accuracy where the stack records them."""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from boto3.dynamodb.conditions import Key

from imgclf import ddb

from .predictions import BY_TIME

# One page of the by-time index per call, at most this many records in all: the panel refreshes often and must
# stay cheap; a busier window is reported as truncated (its rates are then those of the newest records).
MAX_RECORDS = 5000
_PAGE = 1000
_FIELDS = "#s, verdict, latency_ms, processed_at"


def percentile(values: list[float], q: float) -> float | None:
    """The q-th percentile (0-100) by linear interpolation between the closest ranks; None without values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return round(ordered[low] + (ordered[high] - ordered[low]) * (rank - low), 1)


def summarize(records: list[dict[str, Any]], *, hours: float) -> dict[str, Any]:
    """The window's numbers from its prediction records (classified and rejected images)."""
    classified = [r for r in records if r.get("status") == "classified"]
    unknown = sum(r.get("verdict") == "unknown" for r in classified)
    latencies = [float(r["latency_ms"]) for r in classified if isinstance(r.get("latency_ms"), (int, float))]
    return {
        "uploads": len(records),
        "uploads_per_hour": round(len(records) / hours, 2) if hours else None,
        "classified": len(classified),
        "unknown": unknown,
        "unknown_rate": round(unknown / len(classified), 4) if classified else None,
        "rejected": len(records) - len(classified),
        "latency_ms": {"p50": percentile(latencies, 50), "p95": percentile(latencies, 95)},
    }


def window_records(table_name: str, bucket: str, since: str, *, limit: int = MAX_RECORDS) -> tuple[list[dict], bool]:
    """The records processed since an ISO time, newest first, by the by-time index (a query, never a scan), and
    whether there were more than limit."""
    records: list[dict] = []
    start = None
    while True:
        page, start = ddb.query_page(
            table_name, min(_PAGE, limit - len(records)), start, IndexName=BY_TIME,
            KeyConditionExpression=Key("bucket").eq(bucket) & Key("processed_at").gte(since),
            ScanIndexForward=False, ProjectionExpression=_FIELDS, ExpressionAttributeNames={"#s": "status"})
        records += page
        if not start:
            return records, False
        if len(records) >= limit:
            return records, True


def model_health(table_name: str, bucket: str, *, now: datetime, hours: int,
                 queue_depth: Callable[[], int | None] | None = None,
                 live_accuracy: Callable[[], dict[str, Any] | None] | None = None,
                 limit: int = MAX_RECORDS) -> dict[str, Any]:
    """The panel's numbers for the hours before now; queue depth and live accuracy come from the callables
    (None where the stack has no review queue or no sampled, labelled uploads yet)."""
    since = (now - timedelta(hours=hours)).isoformat(timespec="milliseconds")
    records, truncated = window_records(table_name, bucket, since, limit=limit)
    if truncated and records:
        # The newest records only: rates over the span they cover.
        oldest = datetime.fromisoformat(records[-1]["processed_at"])
        span_hours = max((now - oldest).total_seconds() / 3600, 1 / 60)
    else:
        span_hours = hours
    return {"window_hours": hours, "since": since, "truncated": truncated,
            **summarize(records, hours=span_hours),
            "review_queue_depth": queue_depth() if queue_depth else None,
            "live_accuracy": live_accuracy() if live_accuracy else None}


def active_estimate(estimates: list[dict[str, Any]], active: Any) -> dict[str, Any] | None:
    """The live-accuracy estimate of the active model (imgclf.review.live_accuracy's entry for its version), else
    the newest version's; None before any sampled upload is labelled."""
    version = getattr(active, "version", None)
    return next((e for e in estimates if e.get("model_version") == version), estimates[0] if estimates else None)
