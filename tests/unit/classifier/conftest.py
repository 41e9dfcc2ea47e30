"""Fixtures of the classifier tests: the session's tiny model, moto resources, event builders, a fake clock."""

from __future__ import annotations

import functools
import itertools
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from imgclf import aws
from imgclf.inference import Classifier
from imgclf.settings import get_settings, reset_settings
from imgclf_classifier.records import PredictionTable
from imgclf_classifier.service import Collaborators
from tests.support import events, models, tables
from tests.support.images import jpeg_bytes, synthetic_photo


class FakeClock:
    """A monotonic clock that moves only when a test says so."""

    def __init__(self, start: float = 1000.0):
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(scope="session")
def trained_model(tiny_model) -> Path:
    """The session's tiny model (tests/conftest.py), under the name these tests know it by."""
    return tiny_model


@pytest.fixture(scope="session")
def model_sha256(trained_model) -> dict[str, str]:
    """The sha256 of every artifact of the trained model, as the registry records them."""
    return models.artifact_sha256(trained_model)


@pytest.fixture
def classifier_env(template_tables, stack_template, monkeypatch, tmp_path):
    """moto with the template's tables, the data bucket, and the classifier's environment."""
    monkeypatch.setenv("MODEL_CACHE_DIR", str(tmp_path / "model-cache"))
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    reset_settings()
    tables.create_bucket(aws.client("s3"), stack_template.buckets["DataBucket"])
    return get_settings()


@pytest.fixture
def publish_model(classifier_env, trained_model):
    """Upload a model version's artifacts and promote it; `artifacts` overrides what the registry records."""
    return functools.partial(models.publish_model, trained_model)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def pool():
    with ThreadPoolExecutor(max_workers=4) as executor:
        yield executor


@pytest.fixture
def deps(classifier_env, clock, pool) -> Collaborators:
    """The domain logic's collaborators against moto, with a model store on the fake clock."""
    settings = classifier_env
    return Collaborators(settings=settings, classifier=Classifier.from_settings(settings, clock=clock),
                         table=PredictionTable(settings.predictions_table), s3=aws.client("s3"), pool=pool)


@pytest.fixture
def table(classifier_env) -> PredictionTable:
    return PredictionTable(classifier_env.predictions_table)


@pytest.fixture
def upload(classifier_env):
    """Put an object into the data bucket; return its notification fields with an increasing sequencer."""
    settings = classifier_env
    s3 = aws.client("s3")
    sequencers = itertools.count(0x0055AED6DCD90281E5)

    def put(key: str, body: bytes, *, sequencer: int | None = None) -> dict:
        response = s3.put_object(Bucket=settings.data_bucket, Key=key, Body=body)
        return {"bucket": settings.data_bucket, "key": key, "size": len(body),
                "eTag": response["ETag"].strip('"'), "versionId": response.get("VersionId"),
                "sequencer": f"{sequencer if sequencer is not None else next(sequencers):X}"}

    return put


@pytest.fixture
def sqs_event():
    """Build an SQS event: one message per object (dict) or raw body (str), ids m0, m1, ..."""
    return events.sqs_event


@pytest.fixture
def s3_event():
    """Build a direct S3 event naming the given objects."""
    return events.s3_event


@pytest.fixture
def photo_bytes() -> bytes:
    """A plain 120x90 JPEG."""
    return jpeg_bytes(synthetic_photo(np.random.default_rng(1), (170, 60, 40), (120, 90)))
