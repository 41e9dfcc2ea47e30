"""Cognito on the local stack: `imgclf reviewer add` makes an account, the routes under /review/ take its id
token and nothing else, and what a reviewer does is recorded under their identity."""

from __future__ import annotations

import pytest
import requests

from imgclf.datasets import Dataset
from imgclf_cli.main import main
from imgclf_local.stack import LocalStack
from tests.support.datasets import upload_dataset
from tests.support.reviewers import PASSWORD, id_token, sign_in_of

EMAIL = "ana@example.com"
DATASET = "shapes"


@pytest.fixture(scope="module")
def stack():
    with LocalStack(pumps=False) as stack:
        yield stack


@pytest.fixture(scope="module")
def reviewer(stack) -> str:
    """An account made the way an operator makes one."""
    assert main(["reviewer", "add", EMAIL, "--password", PASSWORD]) == 0
    return EMAIL


@pytest.fixture(scope="module")
def images(stack) -> list[str]:
    return upload_dataset(stack.client("s3"), stack.bucket(), DATASET, ["circle", "square"], per_label=2, size=64)


def get(stack, path: str, token: str | None = None) -> requests.Response:
    headers = {"Authorization": token} if token is not None else {}
    return requests.get(f"{stack.api.url}{path}", headers=headers, timeout=30)


def test_the_added_reviewer_is_listed_and_confirmed(stack, reviewer, capsys):
    assert main(["reviewer", "list"]) == 0

    listed = capsys.readouterr()
    assert EMAIL in listed.out + listed.err and "CONFIRMED" in listed.out + listed.err


def test_a_review_route_without_a_token_is_unauthorized(stack, images):
    answer = get(stack, f"/review/datasets/{DATASET}")

    assert answer.status_code == 401
    assert answer.json() == {"error": {"code": "UNAUTHORIZED", "message": "Unauthorized"}}


@pytest.mark.parametrize("token", ["not-a-token", "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.", "Bearer x"])
def test_a_review_route_with_a_bad_token_is_unauthorized(stack, images, token):
    assert get(stack, f"/review/datasets/{DATASET}", token).status_code == 401


def test_an_access_token_is_not_an_id_token(stack, reviewer, images):
    access = stack.client("cognito-idp").initiate_auth(
        AuthFlow="USER_PASSWORD_AUTH", ClientId=sign_in_of(stack).client_id,
        AuthParameters={"USERNAME": EMAIL, "PASSWORD": PASSWORD})["AuthenticationResult"]["AccessToken"]

    assert get(stack, f"/review/datasets/{DATASET}", access).status_code == 401


def test_a_reviewers_id_token_opens_the_review_routes(stack, reviewer, images):
    token = id_token(stack, EMAIL)

    answer = get(stack, f"/review/datasets/{DATASET}", token)

    assert answer.status_code == 200, answer.text
    assert answer.json()["counts"] == {"circle": 2, "square": 2}
    assert get(stack, "/review/model-health", token).status_code == 200


def test_an_edit_made_signed_in_is_recorded_under_the_reviewers_email(stack, reviewer, images):
    token = id_token(stack, EMAIL)

    answer = requests.post(f"{stack.api.url}/review/datasets/{DATASET}/edits", headers={"Authorization": token},
                           json={"edits": [{"key": images[0], "action": "keep", "reason": "fine"}]}, timeout=30)

    assert answer.status_code == 200, answer.text
    assert answer.json()["results"][0]["status"] == "applied"
    record = Dataset(stack.client("s3"), stack.bucket(), DATASET).records()[-1]
    assert record["edit"] == "keep" and record["by"] == EMAIL


def test_the_iam_twins_stay_for_machines(stack, images):
    # The local stack does not check SigV4: the plain path answers without a reviewer's token.
    assert get(stack, f"/datasets/{DATASET}").status_code == 200


def test_a_wrong_password_gets_no_token(stack, reviewer):
    cognito = stack.client("cognito-idp")

    with pytest.raises(cognito.exceptions.NotAuthorizedException):
        id_token(stack, EMAIL, "Wrong-Password-123")
