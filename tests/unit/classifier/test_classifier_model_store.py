"""The model store: checksums verified before anything is loaded, the cache, promotions and the registry."""

from __future__ import annotations

import pytest

from imgclf import aws
from imgclf.errors import IntegrityError, NoActiveModel, TransientError
from imgclf.inference import ModelStore, load_backend
from imgclf.registry import ModelRegistry


@pytest.fixture
def loads() -> tuple[list[str], object]:
    """A loader that records the model directories it builds backends from, and its record."""
    calls: list[str] = []

    def spying_loader(name, directory, metadata, **options):
        calls.append(str(directory))
        return load_backend(name, directory, metadata, **options)

    return calls, spying_loader


def make_store(settings, clock, loader=load_backend, **options) -> ModelStore:
    return ModelStore.from_settings(settings, clock=clock, loader=loader, **options)


class CountingS3:
    """An S3 client that counts GetObject calls."""

    def __init__(self):
        self.real, self.gets = aws.client("s3"), 0

    def get_object(self, **kwargs):
        self.gets += 1
        return self.real.get_object(**kwargs)


def test_nothing_promoted_raises_no_active_model(classifier_env, clock):
    # GIVEN an empty registry
    store = make_store(classifier_env, clock)

    # WHEN the current model is asked for
    # THEN there is none
    with pytest.raises(NoActiveModel):
        store.current()


def test_checksum_mismatch_refuses_to_load(classifier_env, clock, publish_model, model_sha256, loads,
                                           tmp_path):
    # GIVEN a promoted version whose registry checksum for model.onnx is not the file's
    calls, loader = loads
    publish_model("run-1", artifacts={**model_sha256, "model.onnx": "0" * 64})
    store = make_store(classifier_env, clock, loader)

    # WHEN the store fetches it
    with pytest.raises(IntegrityError, match="sha256"):
        store.current()

    # THEN no backend was built and no model.onnx was left in the cache
    assert calls == []
    assert list((tmp_path / "model-cache").rglob("model.onnx")) == []


def test_tampered_artifact_refuses_to_load(classifier_env, clock, publish_model, loads):
    # GIVEN a promoted version whose model.onnx in S3 is not the file the registry recorded
    calls, loader = loads
    publish_model("run-1", body_of={"model.onnx": b"not the model"})

    # WHEN the store fetches it
    # THEN it refuses
    with pytest.raises(IntegrityError):
        make_store(classifier_env, clock, loader).current()
    assert calls == []


def test_artifact_without_a_recorded_checksum_is_refused(classifier_env, clock, publish_model, model_sha256):
    # GIVEN a registry entry that records no checksum for model.onnx
    publish_model("run-1", artifacts={k: v for k, v in model_sha256.items() if k != "model.onnx"})

    # WHEN / THEN the store refuses to load it unverified
    with pytest.raises(IntegrityError, match="no sha256"):
        make_store(classifier_env, clock).current()


def test_model_json_is_checked_against_the_registrys_classes(classifier_env, clock, publish_model,
                                                             model_sha256):
    # GIVEN a registry that records no checksum for model.json (it cannot list its own) but the classes
    artifacts = {k: v for k, v in model_sha256.items() if k != "model.json"}
    publish_model("run-1", artifacts=artifacts)

    # WHEN the store loads it
    model = make_store(classifier_env, clock).current()

    # THEN it is served, with model.json's classes
    assert model.classes == ("ants", "bees")


def test_cached_artifacts_are_verified_and_reused(classifier_env, clock, publish_model):
    # GIVEN a version already downloaded by one store
    publish_model("run-1")
    make_store(classifier_env, clock).current()

    # WHEN a second store (a new process in the same environment) loads it
    s3 = CountingS3()
    model = make_store(classifier_env, clock, s3=s3).current()

    # THEN nothing is downloaded again
    assert (model.version, s3.gets) == ("run-1", 0)


def test_corrupted_cache_is_downloaded_again(classifier_env, clock, publish_model, tmp_path):
    # GIVEN a cached model.onnx that was damaged on disk
    publish_model("run-1")
    make_store(classifier_env, clock).current()
    (tmp_path / "model-cache" / "run-1" / "model.onnx").write_bytes(b"damaged")

    # WHEN a new store loads the version
    s3 = CountingS3()
    model = make_store(classifier_env, clock, s3=s3).current()

    # THEN only the damaged file is fetched again
    assert (model.version, s3.gets) == ("run-1", 1)


def test_registry_is_asked_at_most_every_check_interval(classifier_env, clock, publish_model, monkeypatch):
    # GIVEN a loaded model and a registry that counts its reads
    publish_model("run-1")
    store = make_store(classifier_env, clock)
    store.current()
    reads = []
    original = ModelRegistry.active
    monkeypatch.setattr(ModelRegistry, "active", lambda self: reads.append(1) or original(self))

    # WHEN the model is asked for often within the interval, then once after it
    for _ in range(5):
        store.current()
    clock.advance(classifier_env.model_check_seconds)
    store.current()

    # THEN the registry was read once
    assert reads == [1]


def test_registry_outage_keeps_the_loaded_model(classifier_env, clock, publish_model, monkeypatch):
    # GIVEN a loaded model
    publish_model("run-1")
    store = make_store(classifier_env, clock)
    store.current()

    # WHEN the registry throttles after the check interval
    def throttled(self):
        raise TransientError("get models: ThrottlingException")

    monkeypatch.setattr(ModelRegistry, "active", throttled)
    clock.advance(classifier_env.model_check_seconds + 1)

    # THEN the verified model keeps serving
    assert store.current().version == "run-1"


def test_old_versions_are_removed_from_the_cache(classifier_env, clock, publish_model, tmp_path):
    # GIVEN run-1 loaded, then run-2 promoted
    publish_model("run-1")
    store = make_store(classifier_env, clock)
    store.current()
    publish_model("run-2")
    clock.advance(classifier_env.model_check_seconds + 1)

    # WHEN the store picks up run-2
    assert store.current().version == "run-2"

    # THEN only run-2 stays in /tmp
    assert sorted(p.name for p in (tmp_path / "model-cache").iterdir()) == ["run-2"]


def test_fastai_backend_loads_export_pkl_through_the_store(classifier_env, clock, publish_model, photo_bytes):
    # GIVEN a promoted version with export.pkl
    publish_model("run-1", names=("model.json", "export.pkl"))

    # WHEN a fastai store loads it and classifies an image
    from imgclf import images

    model = make_store(classifier_env, clock, backend="fastai").current()
    prediction = model.classify([images.decode(photo_bytes, max_pixels=10**6)])[0]

    # THEN the answer comes through the same interface
    assert model.backend.name == "fastai"
    assert prediction.model_version == "run-1" and set(prediction.probabilities) == {"ants", "bees"}


def test_a_registered_version_loads_by_name_verified_like_the_active_one(classifier_env, clock, publish_model,
                                                                         model_sha256, loads):
    # GIVEN an active version, and another registered but never promoted whose model.onnx checksum is wrong
    calls, loader = loads
    publish_model("run-1")
    publish_model("run-2", promote=False)
    publish_model("bad", promote=False, artifacts={**model_sha256, "model.onnx": "0" * 64})
    store = make_store(classifier_env, clock, loader)

    # WHEN versions are loaded by name
    loaded = store.load_version("run-2")

    # THEN the named one answers while run-1 stays active, and the unverifiable one is refused unloaded
    assert loaded.version == "run-2" and ModelRegistry(classifier_env.models_table).active().version == "run-1"
    with pytest.raises(IntegrityError, match="sha256"):
        store.load_version("bad")
    assert len(calls) == 1
