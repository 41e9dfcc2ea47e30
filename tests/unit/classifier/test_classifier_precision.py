"""MODEL_PRECISION: which of a version's models the store loads, what the record says, and the session's threads."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from imgclf import aws, images
from imgclf.errors import ConfigError
from imgclf.inference import Classifier, ModelStore, backends
from imgclf.settings import Settings, get_settings, reset_settings
from imgclf_classifier.service import Collaborators, process_event
from imgclf_trainjob import quantize
from tests.support import models
from tests.support.images import synthetic_photo

WITH_INT8 = ("model.json", "model.onnx", "calibration.json", quantize.MODEL_INT8)


@pytest.fixture(scope="module")
def int8_model(trained_model, tmp_path_factory):
    """The session's tiny model with a model.int8.onnx beside it, quantized by the training job's own code."""
    folder = tmp_path_factory.mktemp("int8-model")
    for path in trained_model.iterdir():
        shutil.copy(path, folder / path.name)
    rng = np.random.default_rng(3)
    side = 64
    calibration = np.stack([np.asarray(synthetic_photo(rng, (170, 60, 40), (side, side)), dtype=np.float32)
                            .transpose(2, 0, 1) / 255 for _ in range(10)])
    quantize.quantize(folder / "model.onnx", folder / quantize.MODEL_INT8, calibration)
    return folder


def store_for(settings: Settings, clock, precision: str) -> ModelStore:
    return ModelStore.from_settings(settings, clock=clock, precision=precision)


@pytest.mark.parametrize(("precision", "published", "expected"), [
    ("auto", WITH_INT8, "int8"),
    ("auto", models.PUBLISHED, "fp32"),
    ("fp32", WITH_INT8, "fp32"),
    ("int8", WITH_INT8, "int8"),
])
def test_the_store_serves_the_precision_the_setting_and_the_version_allow(classifier_env, clock, int8_model,
                                                                          precision, published, expected):
    # GIVEN a promoted version with or without an int8 model
    models.publish_model(int8_model, "run-1", names=published)

    # WHEN a store with that MODEL_PRECISION loads it
    model = store_for(classifier_env, clock, precision).current()

    # THEN it answers at the expected precision and fetched only that precision's weights
    assert model.precision == expected
    photo = synthetic_photo(np.random.default_rng(0), (60, 60, 170), (90, 70))
    assert model.classify([photo])[0].precision == expected
    cached = {path.name for path in (Path(classifier_env.model_cache_dir) / "run-1").iterdir()}
    assert cached == {"model.json", "calibration.json", backends.MODEL_FILES[("onnx", expected)]}


def test_int8_demanded_for_a_version_without_one_is_refused_by_name(classifier_env, clock, trained_model):
    # GIVEN a promoted version whose training run shipped no int8 model
    models.publish_model(trained_model, "run-1", names=models.PUBLISHED)

    # WHEN a store that must serve int8 loads it
    # THEN it refuses with the version's name and the settings that would serve it
    with pytest.raises(ConfigError, match="run-1 has no model.int8.onnx.*auto or fp32"):
        store_for(classifier_env, clock, "int8").current()


def test_the_record_says_which_precision_answered(classifier_env, clock, pool, int8_model, upload, sqs_event,
                                                  photo_bytes, table):
    # GIVEN a promoted version with an int8 model and the classifier on auto
    models.publish_model(int8_model, "run-1", names=WITH_INT8)
    deps = Collaborators(settings=classifier_env, classifier=Classifier.from_settings(classifier_env, clock=clock),
                         table=table, s3=aws.client("s3"), pool=pool)
    obj = upload("uploads/photo.jpg", photo_bytes)

    # WHEN an upload is classified
    process_event(sqs_event(obj), deps)

    # THEN its record names the model version and the precision
    record = table.get(f"s3://{classifier_env.data_bucket}/uploads/photo.jpg")
    assert (record["model_version"], record["precision"]) == ("run-1", "int8")


def test_the_load_is_timed_stage_by_stage(classifier_env, clock, publish_model):
    # GIVEN a promoted version
    publish_model("run-1")

    # WHEN it is loaded
    model = store_for(classifier_env, clock, "auto").current()

    # THEN each stage of the cold start has its seconds
    assert set(model.load_timings) == {"registry", "download", "checksum", "session"}
    assert all(seconds >= 0 for seconds in model.load_timings.values())


@pytest.mark.parametrize("value", ["fp16", "INT8 ", ""])
def test_an_unknown_precision_is_a_configuration_error(monkeypatch, value):
    monkeypatch.setenv("MODEL_PRECISION", value)
    reset_settings()

    with pytest.raises(ConfigError, match="MODEL_PRECISION"):
        get_settings()
    reset_settings()


def test_int8_with_the_fastai_backend_is_a_configuration_error():
    with pytest.raises(ConfigError, match="fastai"):
        Settings.from_env({"MODEL_BACKEND": "fastai", "MODEL_PRECISION": "int8"})


@pytest.mark.parametrize(("memory_mb", "cpus", "threads"), [
    (None, 2, 2), ("1024", 2, 1), ("2048", 2, 1), ("3008", 2, 2), ("10240", 6, 6), ("10240", 2, 2),
])
def test_session_threads_follow_lambdas_cpu_share(monkeypatch, memory_mb, cpus, threads):
    monkeypatch.setattr(backends, "available_cpus", lambda: cpus)
    environ = {"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": memory_mb} if memory_mb else {}

    assert backends.default_threads(environ) == threads


def test_int8_and_fp32_serve_the_same_calibrated_verdicts(classifier_env, clock, int8_model, photo_bytes):
    # GIVEN a promoted version with an int8 model and calibration.json
    models.publish_model(int8_model, "run-1", names=WITH_INT8)
    image = images.decode(photo_bytes, max_pixels=50_000_000)

    # WHEN the same image is classified at each precision
    int8 = store_for(classifier_env, clock, "int8").current().classify([image])[0]
    fp32 = store_for(classifier_env, clock, "fp32").current().classify([image])[0]

    # THEN both are calibrated, from the one artifact, and agree on the answer
    assert int8.calibrated and fp32.calibrated
    assert (int8.label, int8.verdict) == (fp32.label, fp32.verdict)
