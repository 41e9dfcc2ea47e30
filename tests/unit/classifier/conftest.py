"""Fixtures of the classifier tests: one tiny trained model per session, moto resources, event builders."""

from __future__ import annotations

import hashlib
import itertools
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from classifier_helpers import FakeClock, jpeg_bytes, s3_record, sqs_record, synthetic_photo, train_tiny_model

from imgclf import aws
from imgclf.inference import Classifier
from imgclf.registry import ModelRegistry
from imgclf.settings import get_settings, reset_settings
from imgclf_classifier.records import PredictionTable
from imgclf_classifier.service import Collaborators


@pytest.fixture(scope="session")
def trained_model(tmp_path_factory) -> Path:
    """A resnet18 trained from scratch for one epoch by training_job/train.py on generated images."""
    return train_tiny_model(tmp_path_factory.mktemp("trained"))


@pytest.fixture(scope="session")
def model_sha256(trained_model) -> dict[str, str]:
    """The sha256 of every artifact of the trained model, as the registry records them."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in trained_model.iterdir()}


@pytest.fixture
def classifier_env(template_tables, monkeypatch, tmp_path):
    """moto with the template's tables, the data bucket, and the classifier's environment."""
    monkeypatch.setenv("MODEL_CACHE_DIR", str(tmp_path / "model-cache"))
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    reset_settings()
    settings = get_settings()
    s3 = aws.client("s3")
    s3.create_bucket(Bucket=settings.data_bucket)
    s3.put_bucket_versioning(Bucket=settings.data_bucket, VersioningConfiguration={"Status": "Enabled"})
    return settings


@pytest.fixture
def publish_model(classifier_env, trained_model, model_sha256):
    """Upload a model version's artifacts and promote it; `artifacts` overrides what the registry records."""
    settings = classifier_env
    registry = ModelRegistry(settings.models_table)
    s3 = aws.client("s3")

    def publish(version: str, *, names=("model.json", "model.onnx"), artifacts: dict | None = None,
                body_of: dict | None = None, promote: bool = True):
        for name in names:
            body = (body_of or {}).get(name) or (trained_model / name).read_bytes()
            key = f"{settings.models_prefix}{version}/{name}"
            s3.put_object(Bucket=settings.data_bucket, Key=key, Body=body)
        classes = json.loads((trained_model / "model.json").read_text())["classes"]
        registry.register(version, artifacts=artifacts or dict(model_sha256), metrics={"error_rate": 0.1},
                          classes=classes)
        if promote:
            registry.promote(version, force=True)

    return publish


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

    def build(*items) -> dict:
        records = []
        for i, item in enumerate(items):
            body = item if isinstance(item, str) else {"Records": [s3_record(item)]}
            records.append(sqs_record(body, f"m{i}"))
        return {"Records": records}

    return build


@pytest.fixture
def s3_event():
    """Build a direct S3 event naming the given objects."""
    return lambda *objs: {"Records": [s3_record(obj) for obj in objs]}


@pytest.fixture
def photo_bytes() -> bytes:
    """A plain 120x90 JPEG."""
    return jpeg_bytes(synthetic_photo(np.random.default_rng(1), (170, 60, 40), (120, 90)))
