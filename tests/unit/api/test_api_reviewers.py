"""Reviewers sign in: the review page's routes under /review/ are the IAM routes' handlers, edits record the
signed-in reviewer, and the review page carries the sign-in it needs."""

from __future__ import annotations

import copy
import dataclasses
import json
import re
from types import SimpleNamespace

import pytest
from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEvent

from imgclf.datasets import Dataset
from imgclf_api.dependencies import signer
from imgclf_api.routes.pages import _script_json
from imgclf_api.sign_in import SignIn, read_sign_in
from tests.support.datasets import upload_dataset

DATASET = "faces"
CALLER = "arn:aws:iam::123456789012:user/ops"  # the identity of tests/events/apigw_get_prediction.json
CLAIMS = {"sub": "5c1d", "cognito:username": "5c1d", "email": "ana@example.com", "token_use": "id"}
HOSTED = "https://imgclf-dev-123456789012.auth.us-east-1.amazoncognito.com"


def as_reviewer(api, claims: dict | None = CLAIMS):
    """The same client, its requests as API Gateway passes a Cognito-authorized one: claims, no IAM caller."""
    event = copy.deepcopy(api.base_event)
    event["requestContext"]["identity"].update(caller=None, user=None, userArn=None, accountId=None)
    event["requestContext"]["authorizer"] = {"claims": claims}
    return dataclasses.replace(api, base_event=event)


def request_with(context: dict) -> SimpleNamespace:
    return SimpleNamespace(resolved_event=APIGatewayProxyEvent({"requestContext": context}))


def test_the_signed_in_reviewers_email_is_who_made_the_request():
    request = request_with({"identity": {"userArn": None, "caller": None}, "authorizer": {"claims": CLAIMS}})

    assert signer(request) == "ana@example.com"


def test_without_an_email_claim_the_cognito_username_is_who():
    claims = {k: v for k, v in CLAIMS.items() if k != "email"}

    assert signer(request_with({"identity": {}, "authorizer": {"claims": claims}})) == "5c1d"


def test_an_iam_request_is_still_its_callers():
    request = request_with({"identity": {"userArn": CALLER, "caller": "AIDAEXAMPLE"}})

    assert signer(request) == CALLER


def test_an_edit_under_review_records_the_signed_in_reviewer(api, api_env, s3):
    images = upload_dataset(s3, api_env.data_bucket, DATASET, ["happy", "sad"], per_label=2, size=64)

    response = as_reviewer(api).post(f"/review/datasets/{DATASET}/edits",
                                     json_body={"edits": [{"key": images[0], "action": "delete"}]})

    assert response.status == 200, response.json()
    record = Dataset(s3, api_env.data_bucket, DATASET).records()[-1]
    assert record["edit"] == "delete" and record["by"] == "ana@example.com"


def test_the_review_routes_answer_as_their_iam_twins(api):
    machine = api.get("/model-health?hours=2")
    person = as_reviewer(api).get("/review/model-health?hours=2")

    assert machine.status == person.status == 200
    strip = lambda body: {k: v for k, v in body.items() if k != "since"}  # noqa: E731
    assert strip(machine.json()) == strip(person.json())


def test_every_review_route_is_documented_with_the_reviewer_token_and_401(api):
    document = api.get("/openapi.json").json()

    review_ops = [(path, op) for path, item in document["paths"].items() if path.startswith("/review/")
                  for op in item.values()]
    assert {path for path, _ in review_ops} >= {"/review/training-runs/{id}", "/review/datasets/{name}/edits",
                                                "/review/model-health"}
    for path, operation in review_ops:
        assert operation["security"] == [{"reviewer": []}], path
        assert "401" in operation["responses"], path
        assert path[len("/review"):] in document["paths"], f"{path} has no IAM twin"


def test_the_review_page_carries_its_sign_in_and_may_reach_cognito_only(api, services):
    services.sign_in = SignIn(client_id="page-client", user_pool_id="us-east-1_pool", region="us-east-1",
                              endpoint="https://cognito-idp.us-east-1.amazonaws.com/", hosted_ui=HOSTED)

    page = api.get("/review")

    html = page.body.decode()
    config = json.loads(re.search(r'<script type="application/json" id="sign-in-config">([^<]*)</script>', html)[1])
    assert config["client_id"] == "page-client"
    assert config["endpoint"] == "https://cognito-idp.us-east-1.amazonaws.com/"
    # The hosted sign-in returns to this page, under its stage, with a code.
    assert config["redirect_uri"] == "https://abc123.execute-api.us-east-1.amazonaws.com/dev/review"
    assert config["authorize_url"].startswith(HOSTED + "/oauth2/authorize?client_id=page-client&response_type=code")
    connect = re.search(r"connect-src ([^;]*);", page.headers["content-security-policy"])[1].split()
    assert connect == ["'self'", "https://cognito-idp.us-east-1.amazonaws.com", HOSTED]


def test_without_a_reviewer_pool_the_page_still_opens_and_says_so(api, services):
    services.sign_in = None

    page = api.get("/review")

    assert page.status == 200
    assert '<script type="application/json" id="sign-in-config">{}</script>' in page.body.decode()
    assert "connect-src 'self';" in page.headers["content-security-policy"]


def test_the_sign_in_parameter_is_read_as_the_template_writes_it(api_env):
    from imgclf import aws

    ssm = aws.client("ssm")
    ssm.put_parameter(Name="/imgclf/dev/review-sign-in", Type="String", Value=json.dumps(
        {"region": "us-east-1", "user_pool_id": "us-east-1_pool", "client_id": "page-client", "hosted_ui": HOSTED}))

    found = read_sign_in(ssm, "/imgclf/dev/review-sign-in", "http://127.0.0.1:5000/")

    assert (found.client_id, found.user_pool_id, found.hosted_ui) == ("page-client", "us-east-1_pool", HOSTED)
    assert found.origins() == ["http://127.0.0.1:5000", HOSTED]


@pytest.mark.parametrize("value", ["</script><script>alert(1)</script>", "a & b > c"])
def test_values_in_the_page_cannot_end_their_script_element(value):
    placed = _script_json({"client_id": value})

    assert "<" not in placed and ">" not in placed and "&" not in placed
    assert json.loads(placed) == {"client_id": value}
