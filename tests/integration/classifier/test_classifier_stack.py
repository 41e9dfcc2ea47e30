"""Through the embedded stack: an image put under uploads/ gets its prediction record."""

from __future__ import annotations

import pytest

from tests.support.models import publish_model
from tests.support.tables import prediction_record


@pytest.fixture(scope="module")
def promoted(stack, tiny_model):
    """The tiny model uploaded to the stack's bucket and promoted in its registry."""
    return publish_model(tiny_model, "run-1")


def test_upload_gets_a_prediction_record(stack, promoted, photo_jpeg):
    # GIVEN a promoted model
    # WHEN a photo is put under uploads/, with a key S3 has to URL-encode
    key = "uploads/integration test/café + 1.jpg"
    stack.client("s3").put_object(Bucket=stack.bucket(), Key=key, Body=photo_jpeg)

    # THEN its record appears, classified by the promoted model, with a verdict from its calibration
    record = stack.wait_until(lambda: prediction_record(stack, key), timeout=120)
    assert record["status"] == "classified"
    assert record["model_version"] == promoted
    assert record["label"] in record["probabilities"]
    assert record["verdict"] in ("label", "unknown") and record["calibrated"] is True


def test_bad_upload_gets_a_rejected_record(stack, promoted):
    # GIVEN a promoted model
    # WHEN something that is not an image is put under uploads/
    key = "uploads/not-a-photo.jpg"
    stack.client("s3").put_object(Bucket=stack.bucket(), Key=key, Body=b"plain text")

    # THEN its record says why it was rejected
    record = stack.wait_until(lambda: prediction_record(stack, key), timeout=120)
    assert (record["status"], record["reason"]) == ("rejected", "not_an_image")
