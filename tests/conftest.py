"""Fixtures every test folder shares: fake AWS credentials, moto, the embedded stack, events, a Lambda context."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from imgclf import aws
from imgclf.settings import reset_settings
from imgclf_local.lambda_runtime import LambdaContext
from imgclf_local.template import REGION, StackTemplate

REPO_ROOT = Path(__file__).resolve().parents[1]
EVENTS_DIR = Path(__file__).parent / "events"
DATASETS_DIR = (REPO_ROOT / ".." / "shared" / "datasets").resolve()


def load_event(name: str) -> dict:
    """A recorded event from tests/events/, by file name without .json."""
    return json.loads((EVENTS_DIR / f"{name}.json").read_text())


@pytest.fixture
def event():
    return load_event


@pytest.fixture
def aws_credentials(monkeypatch):
    """Fake credentials and a region, and no endpoint override, so nothing can reach a real account."""
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SECURITY_TOKEN", "AWS_SESSION_TOKEN"):
        monkeypatch.setenv(key, "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_REGION", REGION)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    aws.reset()
    reset_settings()
    yield
    aws.reset()
    reset_settings()


@pytest.fixture
def mocked_aws(aws_credentials):
    """moto's mock_aws around one test, started before any client is created."""
    from moto import mock_aws

    with mock_aws():
        aws.reset()
        yield
    aws.reset()


@pytest.fixture(scope="session")
def stack_template() -> StackTemplate:
    """template.yaml resolved as the local stack deploys it."""
    return StackTemplate(parameters={"Stage": "local"})


@pytest.fixture
def template_tables(mocked_aws, stack_template, monkeypatch):
    """Every DynamoDB table of the template, created in moto, with the functions' environment set."""
    import boto3

    client = boto3.client("dynamodb", region_name=REGION)
    for table in stack_template.tables.values():
        kwargs = {
            "TableName": table.name,
            "KeySchema": table.key_schema,
            "AttributeDefinitions": table.attribute_definitions,
            "BillingMode": table.billing_mode,
        }
        if table.global_secondary_indexes:
            kwargs["GlobalSecondaryIndexes"] = table.global_secondary_indexes
        client.create_table(**kwargs)
    for key, value in stack_template.function_environment().items():
        monkeypatch.setenv(key, value)
    reset_settings()
    return {lid: t.name for lid, t in stack_template.tables.items()}


@pytest.fixture(scope="module")
def local_stack():
    """The embedded stack (moto server, resources from template.yaml, pumps, API) for one test module."""
    from imgclf_local.stack import LocalStack

    with LocalStack() as stack:
        yield stack


@pytest.fixture
def lambda_context() -> LambdaContext:
    return LambdaContext(function_name="test-function", timeout_s=30)


@pytest.fixture(scope="session")
def datasets_dir() -> Path:
    """The shared photo data sets; tests that need them skip where they are absent."""
    if not DATASETS_DIR.is_dir():
        pytest.skip(f"shared data sets not found at {DATASETS_DIR}")
    return DATASETS_DIR
