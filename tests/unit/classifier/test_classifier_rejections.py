"""Bad input: every rejection reason ends in a `rejected` record, never in a retry."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from imgclf_classifier.service import process_event

MAX_IMAGE_BYTES = 200_000
MAX_IMAGE_PIXELS = 1_000_000


def noise(width: int, height: int) -> Image.Image:
    return Image.fromarray(np.random.default_rng(0).integers(0, 255, (height, width, 3), dtype=np.uint8))


def encoded(img: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, format=fmt)
    return buffer.getvalue()


def corrupt_png() -> bytes:
    data = encoded(noise(120, 100), "PNG")
    middle = len(data) // 2
    return data[:middle] + bytes(200) + data[middle + 200:]


def truncated_jpeg() -> bytes:
    data = encoded(noise(120, 100), "JPEG")
    return data[: len(data) // 2]


# key, content, the reason the record must give
CORPUS = {
    "empty": ("uploads/empty.jpg", b""),
    "not_an_image": ("uploads/letter.jpg", b"Dear reader, this is plain text."),
    "html": ("uploads/page.png", b"<!doctype html><html><body>hi</body></html>"),
    "unsupported_format": ("uploads/scan.jpg", encoded(noise(100, 100), "TIFF")),
    "unsupported_key": ("uploads/notes.txt", b"text"),
    "truncated": ("uploads/cut.jpg", truncated_jpeg()),
    "corrupt": ("uploads/broken.png", corrupt_png()),
    "decompression_bomb": ("uploads/bomb.png", encoded(Image.new("RGB", (1200, 1000)), "PNG")),
    "too_small": ("uploads/icon.png", encoded(noise(40, 40), "PNG")),
    "too_large": ("uploads/huge.bmp", encoded(noise(300, 300), "BMP")),
}
REASONS = {"html": "not_an_image", "unsupported_key": "unsupported_format"}


@pytest.fixture
def limits(monkeypatch):
    """Small size limits, so the tests' images can exceed them; requested before the environment is read."""
    monkeypatch.setenv("MAX_IMAGE_BYTES", str(MAX_IMAGE_BYTES))
    monkeypatch.setenv("MAX_IMAGE_PIXELS", str(MAX_IMAGE_PIXELS))


@pytest.mark.parametrize("case", sorted(CORPUS))
def test_bad_input_is_recorded_as_rejected_with_its_reason(limits, deps, publish_model, upload, sqs_event,
                                                           case):
    # GIVEN a promoted model and a bad upload
    publish_model("run-1")
    key, content = CORPUS[case]
    obj = upload(key, content)

    # WHEN its notification is processed
    result = process_event(sqs_event(obj), deps)

    # THEN it is rejected with the reason, recorded, and not retried
    assert result.failed_message_ids == []
    record = deps.table.get(f"s3://{deps.settings.data_bucket}/{key}")
    assert record["status"] == "rejected"
    assert record["reason"] == REASONS.get(case, case)
    assert record["message"] and "label" not in record and "model_version" not in record


def test_oversized_upload_is_rejected_from_the_event_before_download(limits, deps, upload, sqs_event):
    # GIVEN an upload over the size limit, and no model (rejection does not need one)
    obj = upload("uploads/huge.jpg", bytes(MAX_IMAGE_BYTES + 1))
    deps.s3 = None  # any S3 call would fail

    # WHEN its notification is processed
    result = process_event(sqs_event(obj), deps)

    # THEN it is rejected as too_large without touching S3
    assert [(o.status, o.reason) for o in result.outcomes] == [("rejected", "too_large")]
    assert result.failed_message_ids == []


def test_size_limit_holds_when_the_event_has_no_size(limits, deps, publish_model, upload, sqs_event):
    # GIVEN an oversized upload whose notification does not say its size
    publish_model("run-1")
    obj = {**upload("uploads/huge.jpg", bytes(MAX_IMAGE_BYTES + 1)), "size": None}

    # WHEN its notification is processed
    result = process_event(sqs_event(obj), deps)

    # THEN GetObject's Content-Length rejects it before the body is read
    assert [(o.status, o.reason) for o in result.outcomes] == [("rejected", "too_large")]


def test_object_deleted_before_processing_is_recorded_as_not_found(deps, publish_model, sqs_event):
    # GIVEN a notification for an object that no longer exists (no version id: an unversioned read)
    publish_model("run-1")
    obj = {"bucket": deps.settings.data_bucket, "key": "uploads/gone.jpg", "size": 100, "eTag": "abc",
           "sequencer": "0A"}

    # WHEN it is processed
    result = process_event(sqs_event(obj), deps)

    # THEN the record says not_found and SQS is not asked to try again
    assert [(o.status, o.reason) for o in result.outcomes] == [("rejected", "not_found")]
    assert result.failed_message_ids == []


def test_duplicate_rejection_writes_nothing_new(deps, publish_model, upload, sqs_event):
    # GIVEN a rejected upload
    publish_model("run-1")
    event = sqs_event(upload("uploads/letter.jpg", b"plain text"))
    process_event(event, deps)
    first = deps.table.get(f"s3://{deps.settings.data_bucket}/uploads/letter.jpg")

    # WHEN the same notification arrives again
    result = process_event(event, deps)

    # THEN it is a duplicate and the record is unchanged
    assert [o.status for o in result.outcomes] == ["duplicate"]
    assert deps.table.get(f"s3://{deps.settings.data_bucket}/uploads/letter.jpg") == first
