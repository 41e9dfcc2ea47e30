"""`imgclf review-queue`, `imgclf label` and `imgclf live-accuracy` against moto, through the API's code."""

from __future__ import annotations

import json

import pytest

from imgclf import aws, ddb, keys
from imgclf.review import review_fields
from imgclf.settings import get_settings
from imgclf_cli.main import main
from tests.support.datasets import upload_dataset
from tests.support.images import photo

DATASET = "insects"


@pytest.fixture
def queued(template_tables, monkeypatch):
    """A dataset, and an unknown upload in the review queue."""
    monkeypatch.setenv("TRAINING_BACKEND", "local")
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    settings = get_settings()
    s3 = aws.client("s3")
    s3.create_bucket(Bucket=settings.data_bucket)
    upload_dataset(s3, settings.data_bucket, DATASET, ["ants", "bees"], per_label=2, size=64)
    key = "uploads/odd.jpg"
    s3.put_object(Bucket=settings.data_bucket, Key=key, Body=photo(5), ContentType="image/jpeg")
    record = {"image": keys.s3_uri(settings.data_bucket, key), "bucket": settings.data_bucket, "key": key,
              "etag": "e", "status": "classified", "label": "ants", "confidence": 0.6, "verdict": "unknown",
              "probabilities": {"ants": 0.6, "bees": 0.4}, "model_version": "v1",
              "processed_at": "2026-12-01T10:00:00.000+00:00"}
    record.update(review_fields(record, None, margin_limit=0.2, sample_rate=0.0, now=record["processed_at"]))
    ddb.put_item(settings.predictions_table, record)
    return key


def test_review_queue_lists_the_waiting_uploads(queued, capsys):
    code = main(["--json", "review-queue"])

    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert code == 0
    assert lines[0]["upload"]["key"] == queued and lines[0]["upload"]["review_reason"] == "unknown"
    assert "thumbnail_url" not in lines[0]["upload"]


def test_label_adds_the_upload_to_the_dataset_once(queued, capsys):
    # WHEN the upload is labeled from the command line, then labeled again
    first = main(["label", queued, "--label", "wasps", "--dataset", DATASET, "--by", "ann"])
    out = capsys.readouterr().out
    second = main(["label", queued, "--label", "ants", "--dataset", DATASET])

    # THEN the first joins the dataset under the new label, the second is refused
    assert first == 0 and "labeled wasps" in out and "added" in out
    assert second == 2 and "ann labeled it 'wasps'" in capsys.readouterr().err
    body = aws.client("s3").get_object(Bucket=get_settings().data_bucket, Key=keys.manifest_key(DATASET))["Body"]
    uploads = [json.loads(line) for line in body.read().splitlines() if b'"upload"' in line]
    assert [(r["label"], r["labeled_by"]) for r in uploads] == [("wasps", "ann")]


def test_live_accuracy_without_samples_says_so(queued, capsys):
    assert main(["live-accuracy"]) == 0
    assert "no sampled upload has been labeled yet" in capsys.readouterr().out
