"""The model-health numbers: known answers from prediction records, and the window read by query."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from imgclf import ddb
from imgclf_api.health import active_estimate, model_health, percentile, summarize

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def record(minutes_ago: float, *, status: str = "classified", verdict: str = "label", latency: float | None = 10.0,
           bucket: str = "data", n: int = 0) -> dict:
    processed = (NOW - timedelta(minutes=minutes_ago)).isoformat(timespec="milliseconds")
    item = {"image": f"s3://{bucket}/uploads/{minutes_ago}-{n}.jpg", "bucket": bucket,
            "key": f"uploads/{minutes_ago}-{n}.jpg", "status": status, "processed_at": processed}
    if status == "classified":
        item.update(verdict=verdict, latency_ms=latency)
    return item


@pytest.mark.parametrize("values, q, expected", [
    ([], 50, None),
    ([7.0], 95, 7.0),
    ([1.0, 2.0, 3.0, 4.0], 50, 2.5),
    ([float(v) for v in range(1, 101)], 95, 95.0),
    ([10.0, 20.0], 95, 19.5),
])
def test_percentiles_interpolate_between_ranks(values, q, expected):
    assert percentile(values, q) == expected


def test_a_window_of_records_gives_its_rates():
    records = [record(1, latency=10), record(2, latency=20), record(3, verdict="unknown", latency=30),
               record(4, verdict="unknown", latency=40), record(5, status="rejected")]

    numbers = summarize(records, hours=2)

    assert numbers == {"uploads": 5, "uploads_per_hour": 2.5, "classified": 4, "unknown": 2, "unknown_rate": 0.5,
                       "rejected": 1, "latency_ms": {"p50": 25.0, "p95": 38.5}}


def test_an_empty_window_has_no_rates():
    assert summarize([], hours=24) == {"uploads": 0, "uploads_per_hour": 0.0, "classified": 0, "unknown": 0,
                                       "unknown_rate": None, "rejected": 0, "latency_ms": {"p50": None, "p95": None}}


def test_only_the_windows_records_of_the_bucket_count(template_tables):
    table = template_tables["PredictionsTable"]
    for item in [record(10), record(30, verdict="unknown"), record(90), record(30, bucket="other"),
                 record(59, status="rejected")]:
        ddb.put_item(table, item)

    health = model_health(table, "data", now=NOW, hours=1, queue_depth=lambda: 3, live_accuracy=lambda: None)

    assert (health["uploads"], health["classified"], health["unknown"], health["rejected"]) == (3, 2, 1, 1)
    assert health["uploads_per_hour"] == 3.0 and health["unknown_rate"] == 0.5
    assert health["review_queue_depth"] == 3 and health["truncated"] is False
    assert health["since"] == "2026-12-07T11:00:00.000+00:00"


def test_a_busy_window_reads_the_newest_records_only_and_says_so(template_tables):
    table = template_tables["PredictionsTable"]
    for n in range(5):
        ddb.put_item(table, record(10 + n, n=n))

    health = model_health(table, "data", now=NOW, hours=24, limit=3)

    assert health["truncated"] is True and health["uploads"] == 3
    # Three uploads in the 12 minutes the newest three span: 15 an hour.
    assert health["uploads_per_hour"] == 15.0


def test_the_active_models_estimate_is_shown_else_the_newest():
    estimates = [{"model_version": "v2", "accuracy": 0.9}, {"model_version": "v1", "accuracy": 0.8}]

    assert active_estimate(estimates, type("Active", (), {"version": "v1"})())["accuracy"] == 0.8
    assert active_estimate(estimates, None)["model_version"] == "v2"
    assert active_estimate([], None) is None
