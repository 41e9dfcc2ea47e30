"""POST /classify: raw bodies, base64 JSON and uploads in S3; sizes, bad inputs and the missing model."""

from __future__ import annotations

import base64
import io
from dataclasses import replace

import pytest
from PIL import Image

from imgclf.inference import Calibration


def photo(size=(96, 80), fmt="JPEG") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (180, 120, 40)).save(buffer, format=fmt)
    return buffer.getvalue()


def test_a_raw_image_body_gets_label_every_probability_model_version_and_latency(api):
    # WHEN a JPEG is posted as the body, base64-encoded by API Gateway as a binary media type
    response = api.post("/classify", body=photo(), content_type="image/jpeg")

    # THEN the answer names the label, every class's probability and the model that answered
    assert response.status == 200
    answer = response.json()
    assert answer["label"] == "ants"
    assert answer["confidence"] == pytest.approx(0.8)
    assert answer["probabilities"] == pytest.approx({"ants": 0.8, "bees": 0.2})
    assert answer["model_version"] == "20261129-120000-abcd"
    assert answer["latency_ms"] >= 0
    assert answer["image"] == {"width": 96, "height": 80, "bytes": len(photo())}


@pytest.mark.parametrize("prefix", ["", "data:image/png;base64,"])
def test_json_with_image_base64_is_classified(api, prefix):
    encoded = prefix + base64.b64encode(photo(fmt="PNG")).decode()

    response = api.post("/classify", json_body={"image_base64": encoded})

    assert response.status == 200
    assert response.json()["label"] == "ants"


def test_json_with_an_s3_uri_under_uploads_is_read_from_the_bucket(api, api_env, s3):
    # GIVEN an image uploaded under uploads/
    s3.put_object(Bucket=api_env.data_bucket, Key="uploads/big.jpg", Body=photo((300, 200)))

    # WHEN it is named by its s3:// URI
    response = api.post("/classify", json_body={"s3_uri": f"s3://{api_env.data_bucket}/uploads/big.jpg"})

    # THEN it is classified
    assert response.status == 200
    assert response.json()["image"]["width"] == 300


@pytest.mark.parametrize("uri", [
    "s3://somebody-elses-bucket/uploads/cat.jpg",
    "s3://{bucket}/datasets/ants/ants/ants-0123456789ab.jpg",
    "s3://{bucket}/models/v1/model.onnx",
    "s3://{bucket}/uploads/../models/v1/model.json",
    "https://example.com/cat.jpg",
])
def test_s3_uris_outside_this_buckets_uploads_are_refused(api, api_env, uri):
    response = api.post("/classify", json_body={"s3_uri": uri.format(bucket=api_env.data_bucket)})

    assert response.status == 400
    assert response.error["code"] == "invalid_s3_uri"


def test_a_missing_upload_is_not_found(api, api_env):
    response = api.post("/classify", json_body={"s3_uri": f"s3://{api_env.data_bucket}/uploads/nothing.jpg"})

    assert response.status == 404
    assert response.error["code"] == "not_found"


def test_an_image_over_the_size_limit_is_413(api, services):
    # GIVEN a limit smaller than the image
    services.settings = replace(services.settings, max_image_bytes=1000)

    # WHEN a larger image arrives raw, as base64 JSON, or from S3
    raw = api.post("/classify", body=photo((400, 400)), content_type="image/jpeg")
    encoded = api.post("/classify", json_body={"image_base64": base64.b64encode(photo((400, 400))).decode()})

    # THEN both are refused with 413 before decoding
    for response in (raw, encoded):
        assert response.status == 413
        assert response.error["code"] == "image_too_large"


@pytest.mark.parametrize(("kwargs", "status", "code"), [
    ({"body": "{not json", "content_type": "application/json"}, 400, "invalid_json"),
    ({"json_body": {"image_base64": "@@not base64@@"}}, 400, "invalid_base64"),
    ({"json_body": {}}, 422, "validation_error"),
    ({"json_body": {"image_base64": "AAAA", "s3_uri": "s3://b/uploads/x.jpg"}}, 422, "validation_error"),
    ({"json_body": {"image_base64": "AAAA", "colour": "red"}}, 422, "validation_error"),
    ({"json_body": ["not", "an", "object"]}, 422, "validation_error"),
    ({"body": b"", "content_type": "image/jpeg"}, 400, "empty_body"),
    ({"body": "hello", "content_type": "text/plain"}, 415, "unsupported_media_type"),
])
def test_malformed_requests_get_a_client_error(api, kwargs, status, code):
    response = api.post("/classify", **kwargs)

    assert response.status == status
    assert response.error["code"] == code
    assert response.error["message"]


@pytest.mark.parametrize(("data", "reason"), [
    (b"%PDF-1.7 not a picture at all", "not_an_image"),
    (b"<svg xmlns='http://www.w3.org/2000/svg'></svg>", "not_an_image"),
    (b"II*\x00" + bytes(64), "unsupported_format"),
    (photo()[:200], "truncated"),
])
def test_bytes_that_are_not_a_usable_image_are_422_with_the_reason(api, data, reason):
    response = api.post("/classify", body=data, content_type="application/octet-stream")

    assert response.status == 422
    assert response.error["code"] == "image_rejected"
    assert response.error["reason"] == reason


def test_without_an_active_model_classify_is_503_no_model(api, store):
    # GIVEN nothing has been promoted
    store.model = None

    # WHEN an image is posted
    response = api.post("/classify", body=photo(), content_type="image/jpeg")

    # THEN the client learns there is no model, and when to retry
    assert response.status == 503
    assert response.error["code"] == "no_model"
    assert response.headers["retry-after"] == "5"


def test_an_uncalibrated_model_answers_with_a_label_verdict_and_says_so(api):
    response = api.post("/classify", body=photo(), content_type="image/jpeg")

    answer = response.json()
    assert (answer["verdict"], answer["unknown_reason"], answer["calibrated"]) == ("label", None, False)


def test_a_top_class_below_its_threshold_is_unknown_with_the_top_label_kept(api, store):
    # GIVEN a calibrated model whose ants threshold is above the answer's probability
    store.model = replace(store.model, calibration=Calibration(temperature=1.0, calibrated=True,
                                                               thresholds={"ants": 0.9, "bees": 0.9}))

    # WHEN an image is posted
    answer = api.post("/classify", body=photo(), content_type="image/jpeg").json()

    # THEN the verdict is unknown for low confidence, and the top label and probabilities are still there
    assert (answer["verdict"], answer["unknown_reason"], answer["calibrated"]) == ("unknown", "low_confidence", True)
    assert answer["label"] == "ants" and answer["probabilities"] == pytest.approx({"ants": 0.8, "bees": 0.2})
