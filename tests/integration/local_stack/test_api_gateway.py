"""HTTP requests to the local API reach Api handlers as valid API Gateway proxy events and come back intact."""

from __future__ import annotations

import base64
import json

import pytest
import requests
from aws_lambda_powertools.utilities.parser import parse
from aws_lambda_powertools.utilities.parser.models import APIGatewayProxyEventModel

from imgclf_local.stack import LocalStack

PNG_BYTES = bytes(range(256)) * 4  # every byte value, so any text round-trip would corrupt it


def echo(event, context):
    """A stand-in API handler: answers with the event it got, or with the binary body it was sent."""
    parse(event=event, model=APIGatewayProxyEventModel)  # raises when the event is not a valid proxy event
    if event["path"] == "/classify" and event["isBase64Encoded"]:
        return {"statusCode": 200, "headers": {"Content-Type": "image/png"},
                "body": event["body"], "isBase64Encoded": True}
    return {"statusCode": 200, "headers": {"Content-Type": "application/json"},
            "multiValueHeaders": {"Set-Cookie": ["a=1", "b=2"]}, "body": json.dumps(event)}


@pytest.fixture(scope="module")
def api_url():
    with LocalStack(handlers={"ApiFunction": echo}, pumps=False) as stack:
        yield stack.api.url


def test_path_and_query_parameters_arrive_as_api_gateway_sends_them(api_url):
    # WHEN a greedy path with an encoded space and a repeated query parameter is requested
    response = requests.get(f"{api_url}/predictions/uploads/my%20cat.jpg?limit=5&tag=a&tag=b", timeout=10)

    # THEN the handler saw the resource, decoded path parameters and both query forms
    assert response.status_code == 200
    event = response.json()
    assert event["resource"] == "/predictions/{key+}"
    assert event["pathParameters"] == {"key": "uploads/my cat.jpg"}
    assert event["queryStringParameters"] == {"limit": "5", "tag": "b"}
    assert event["multiValueQueryStringParameters"] == {"limit": ["5"], "tag": ["a", "b"]}
    assert event["requestContext"]["stage"] == "local"
    assert response.headers["Set-Cookie"] in ("a=1, b=2", "a=1", "b=2")


def test_a_single_segment_route_wins_over_a_greedy_one(api_url):
    event = requests.get(f"{api_url}/training-runs/run-1/review", timeout=10).json()
    assert event["resource"] == "/training-runs/{id}/review"
    assert event["pathParameters"] == {"id": "run-1"}


def test_binary_bodies_are_base64_encoded_and_binary_responses_come_back_intact(api_url):
    # WHEN raw image bytes are posted with a binary media type
    response = requests.post(f"{api_url}/classify", data=PNG_BYTES, headers={"Content-Type": "image/png"},
                             timeout=10)

    # THEN the handler got them base64-encoded and the bytes it returned arrive unchanged
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "image/png"
    assert response.content == PNG_BYTES


def test_text_bodies_arrive_as_text(api_url):
    body = json.dumps({"image_base64": base64.b64encode(b"abc").decode()})
    event = requests.post(f"{api_url}/classify", data=body, headers={"Content-Type": "application/json"},
                          timeout=10).json()
    assert event["isBase64Encoded"] is False
    assert json.loads(event["body"]) == json.loads(body)


def test_unknown_routes_and_methods_get_the_project_error_shape(api_url):
    missing = requests.get(f"{api_url}/nope", timeout=10)
    wrong_method = requests.delete(f"{api_url}/classify", timeout=10)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    assert wrong_method.status_code == 405 and wrong_method.json()["error"]["code"] == "method_not_allowed"
