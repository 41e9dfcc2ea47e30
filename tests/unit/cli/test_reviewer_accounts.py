"""`imgclf reviewer add|list|remove`: the reviewer pool's accounts, found through the stack's sign-in parameter."""

from __future__ import annotations

import io
import json

import pytest

from imgclf import aws
from imgclf.settings import reset_settings
from imgclf_cli.main import main

PARAMETER = "/imgclf/test/review-sign-in"


@pytest.fixture
def pool(mocked_aws, monkeypatch) -> str:
    """A pool and page client in moto, described by the parameter the template declares."""
    cognito = aws.client("cognito-idp")
    pool_id = cognito.create_user_pool(PoolName="reviewers", UsernameAttributes=["email"])["UserPool"]["Id"]
    client = cognito.create_user_pool_client(UserPoolId=pool_id, ClientName="page",
                                             ExplicitAuthFlows=["ALLOW_USER_PASSWORD_AUTH"])["UserPoolClient"]
    aws.client("ssm").put_parameter(Name=PARAMETER, Type="String", Value=json.dumps(
        {"region": "us-east-1", "user_pool_id": pool_id, "client_id": client["ClientId"], "hosted_ui": ""}))
    monkeypatch.setenv("SIGN_IN_PARAMETER", PARAMETER)
    reset_settings()
    return pool_id


def users(pool: str) -> dict[str, str]:
    found = aws.client("cognito-idp").list_users(UserPoolId=pool)["Users"]
    return {next(a["Value"] for a in u["Attributes"] if a["Name"] == "email"): u["UserStatus"] for u in found}


def test_a_reviewer_with_a_password_can_sign_in_at_once(pool):
    assert main(["reviewer", "add", "ana@example.com", "--password", "Ana-Password-123"]) == 0

    assert users(pool) == {"ana@example.com": "CONFIRMED"}


def test_a_reviewer_without_one_must_change_the_temporary_password(pool):
    assert main(["reviewer", "add", "bo@example.com"]) == 0

    assert users(pool) == {"bo@example.com": "FORCE_CHANGE_PASSWORD"}


def test_the_password_can_come_from_stdin(pool, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO("Stdin-Password-123\n"))

    assert main(["reviewer", "add", "cy@example.com", "--password-stdin"]) == 0
    assert users(pool) == {"cy@example.com": "CONFIRMED"}


def test_an_account_twice_is_refused_with_one_line(pool, capsys):
    main(["reviewer", "add", "ana@example.com", "--password", "Ana-Password-123"])

    status = main(["reviewer", "add", "ana@example.com", "--password", "Ana-Password-123"])

    assert status == 2
    assert "exists already" in capsys.readouterr().err


def test_listing_and_removing(pool, capsys):
    main(["reviewer", "add", "ana@example.com", "--password", "Ana-Password-123"])

    capsys.readouterr()
    assert main(["reviewer", "list"]) == 0
    assert "ana@example.com" in capsys.readouterr().out
    assert main(["reviewer", "remove", "ana@example.com"]) == 0
    assert users(pool) == {}
    assert main(["reviewer", "remove", "ana@example.com"]) == 2


def test_without_the_parameter_the_command_says_what_is_missing(mocked_aws, monkeypatch, capsys):
    monkeypatch.delenv("SIGN_IN_PARAMETER", raising=False)
    reset_settings()

    assert main(["reviewer", "list"]) == 2
    assert "sign_in_parameter" in capsys.readouterr().err.lower()


def test_a_password_the_pool_refuses_is_one_line_too(pool, capsys):
    status = main(["reviewer", "add", "dee@example.com", "--password", "short"])

    assert status == 2
    assert "add reviewer dee@example.com" in capsys.readouterr().err
