"""The Lambda handler: the batchItemFailures answer, direct S3 events and structured logs."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys

import pytest

from imgclf.errors import TransientError
from imgclf_classifier import handler


@pytest.fixture(autouse=True)
def fresh_classifier():
    handler.classifier.cache_clear()
    yield
    handler.classifier.cache_clear()


def stored(settings, key: str) -> dict | None:
    from imgclf import ddb

    return ddb.get_item(settings.predictions_table, {"image": f"s3://{settings.data_bucket}/{key}"})


def test_partial_batch_failure_reports_only_the_failed_message(classifier_env, publish_model, upload,
                                                                sqs_event, photo_bytes, lambda_context):
    # GIVEN a promoted model, a good upload and a message that is not an S3 notification
    publish_model("run-1")
    event = sqs_event(upload("uploads/good.jpg", photo_bytes), "garbage")

    # WHEN the handler runs
    response = handler.lambda_handler(event, lambda_context)

    # THEN the answer names only the bad message, in the shape ReportBatchItemFailures expects
    assert response == {"batchItemFailures": [{"itemIdentifier": "m1"}]}
    assert stored(classifier_env, "uploads/good.jpg")["status"] == "classified"


def test_rejected_images_are_not_retried(classifier_env, publish_model, upload, sqs_event, lambda_context):
    # GIVEN an upload that is not an image
    publish_model("run-1")
    event = sqs_event(upload("uploads/notes.jpg", b"just some text, not a picture"))

    # WHEN the handler runs
    response = handler.lambda_handler(event, lambda_context)

    # THEN nothing is reported for redelivery and the record says why
    assert response == {"batchItemFailures": []}
    assert stored(classifier_env, "uploads/notes.jpg")["reason"] == "not_an_image"


def test_direct_s3_event_succeeds_with_an_empty_answer(classifier_env, publish_model, upload, s3_event,
                                                       photo_bytes, lambda_context):
    # GIVEN a direct S3 event for an upload
    publish_model("run-1")

    # WHEN the handler runs
    response = handler.lambda_handler(s3_event(upload("uploads/d.jpg", photo_bytes)), lambda_context)

    # THEN it succeeds
    assert response == {"batchItemFailures": []}
    assert stored(classifier_env, "uploads/d.jpg")["status"] == "classified"


def test_direct_s3_event_that_must_be_retried_fails_the_invocation(classifier_env, upload, s3_event,
                                                                   photo_bytes, lambda_context):
    # GIVEN a direct S3 event and no promoted model
    event = s3_event(upload("uploads/d.jpg", photo_bytes))

    # WHEN the handler runs
    # THEN it raises, so Lambda's asynchronous retry delivers the event again
    with pytest.raises(TransientError):
        handler.lambda_handler(event, lambda_context)


def test_logs_are_json_with_the_correlation_id(classifier_env, publish_model, upload, sqs_event, photo_bytes,
                                               lambda_context):
    # GIVEN a classified upload, its logs written to a buffer in the logger's format, as its handler in Lambda writes
    publish_model("run-1")
    stream = io.StringIO()
    log_handler = logging.StreamHandler(stream)
    log_handler.setFormatter(handler.logger.registered_formatter)
    handler.logger.addHandler(log_handler)
    try:
        handler.lambda_handler(sqs_event(upload("uploads/log.jpg", photo_bytes)), lambda_context)
    finally:
        handler.logger.removeHandler(log_handler)

    # WHEN the log lines are read
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]

    # THEN the per-image line carries the correlation id, the image and its label
    line = next(entry for entry in lines if entry.get("image", "").endswith("uploads/log.jpg"))
    assert line["correlation_id"] == "m0"
    assert line["status"] == "classified" and line["label"] in {"ants", "bees"}


def test_onnx_path_never_imports_torch(trained_model):
    # GIVEN a fresh interpreter
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "import imgclf_classifier.handler\n"
        "from imgclf.inference import LoadedModel, ModelMetadata, load_backend\n"
        "from PIL import Image\n"
        f"directory = Path({str(trained_model)!r})\n"
        "metadata = ModelMetadata.load(directory / 'model.json')\n"
        "model = LoadedModel('v', load_backend('onnx', directory, metadata), metadata)\n"
        "model.classify([Image.new('RGB', (100, 80))])\n"
        "print(sorted(m for m in ('torch', 'torchvision', 'fastai') if m in sys.modules))\n"
    )

    # WHEN it imports the handler and classifies with the onnx backend
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)

    # THEN neither torch nor fastai was imported
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"
