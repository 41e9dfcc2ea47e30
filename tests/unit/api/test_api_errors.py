"""One error shape everywhere: unknown routes, validation, bad bodies, outages and unexpected exceptions."""

from __future__ import annotations

import pytest

from imgclf.errors import (
    AlreadyProcessed,
    ConfigError,
    Conflict,
    ImageRejected,
    IntegrityError,
    NoActiveModel,
    NotFound,
    TransientError,
)
from imgclf_api import predictions
from imgclf_api.errors import from_project_error


def assert_error_shape(body: dict) -> None:
    assert set(body) == {"error"}
    assert {"code", "message"} <= set(body["error"]) <= {"code", "message", "reason", "request_id"}


def test_an_unknown_route_that_reaches_the_function_is_404_in_the_error_shape(api):
    response = api.get("/nope")

    assert response.status == 404
    assert_error_shape(response.json())
    assert response.error == {"code": "not_found", "message": "no route for GET /nope"}


def test_an_unexpected_exception_is_500_with_the_request_id_and_no_stack_trace(api, monkeypatch):
    # GIVEN a bug deep in a route
    def broken(*args, **kwargs):
        raise KeyError("secret internal detail")

    monkeypatch.setattr(predictions, "get_prediction", broken)

    # WHEN the route runs
    response = api.get("/predictions/uploads/cat.jpg")

    # THEN the client sees a request id to quote and nothing of the exception
    assert response.status == 500
    assert_error_shape(response.json())
    assert response.error["code"] == "internal_error"
    assert response.error["request_id"]
    assert "secret" not in response.body.decode() and "Traceback" not in response.body.decode()


def test_a_busy_backing_service_is_503_with_retry_after(api, monkeypatch):
    def throttled(*args, **kwargs):
        raise TransientError("query predictions: ProvisionedThroughputExceededException")

    monkeypatch.setattr(predictions, "get_prediction", throttled)

    response = api.get("/predictions/uploads/cat.jpg")

    assert response.status == 503
    assert response.error["code"] == "unavailable"
    assert "Throughput" not in response.error["message"]
    assert response.headers["retry-after"] == "5"


@pytest.mark.parametrize(("kwargs", "status", "code"), [
    ({"body": "{oops", "content_type": "application/json"}, 400, "invalid_json"),
    ({"body": "name=x", "content_type": "text/plain"}, 415, "unsupported_media_type"),
    ({"json_body": {"name": "x"}}, 422, "validation_error"),
    ({"json_body": "just a string"}, 422, "validation_error"),
])
def test_bad_json_bodies_get_client_errors_in_the_error_shape(api, kwargs, status, code):
    response = api.post("/datasets", **kwargs)

    assert response.status == status
    assert_error_shape(response.json())
    assert response.error["code"] == code


@pytest.mark.parametrize("body", ["", "--x\r\nContent-Disposition: form-data; name=by\r\n\r\nme\r\n--x--"])
def test_a_form_body_on_a_json_route_is_415_even_without_a_boundary(api, body):
    response = api.post("/models/rollback", body=body, content_type="multipart/form-data")

    assert response.status == 415
    assert response.error["code"] == "unsupported_media_type"


def test_validation_errors_say_which_field_and_why(api):
    response = api.post("/datasets", json_body={"name": "ok", "labels": ["ants"], "per_label": 5000})

    assert "per_label" in response.error["message"]
    assert "1000" in response.error["message"]


@pytest.mark.parametrize(("error", "status", "code"), [
    (NotFound("no run"), 404, "not_found"),
    (Conflict("refused"), 409, "conflict"),
    (AlreadyProcessed("run id in use"), 409, "already_processed"),
    (NoActiveModel("nothing promoted"), 503, "no_model"),
    (TransientError("throttled"), 503, "unavailable"),
    (ImageRejected("too_large", "big"), 413, "image_too_large"),
    (ImageRejected("empty", "the file is empty"), 400, "empty_image"),
    (ImageRejected("decompression_bomb", "huge"), 422, "image_rejected"),
    (IntegrityError("sha256 mismatch in s3://bucket/models/v1/model.onnx"), 500, "integrity_error"),
    (ConfigError("missing DATA_BUCKET"), 500, "config_error"),
])
def test_project_errors_map_to_a_status_and_a_code_without_internal_details(error, status, code):
    answer = from_project_error(error)

    assert (answer.status, answer.code) == (status, code)
    if status == 500:
        assert "s3://" not in answer.message and "DATA_BUCKET" not in answer.message
