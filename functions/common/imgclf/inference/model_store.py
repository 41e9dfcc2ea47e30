"""The active model of an execution environment: fetched once, verified before loading, kept current.

The registry's pointer item names the active version and the sha256 of its artifacts. The store
downloads ``models/{version}/...`` into a local cache (``/tmp`` on Lambda), checks every artifact that the
registry has a checksum for before it parses or loads any of them, and asks the registry again at most every
``check_seconds``, so a newly promoted version is served without a redeploy.

``precision`` picks the weights file of the onnx backend: ``auto`` takes model.int8.onnx when the registry lists
one for the version (the training job ships it only when it matched fp32 on the validation split) and
model.onnx otherwise; ``fp32`` always model.onnx; ``int8`` insists on model.int8.onnx and refuses, with a
ConfigError naming the version, a version that has none, rather than silently answering in fp32.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from pathlib import Path
from typing import Callable

from .. import aws, keys
from ..errors import ConfigError, IntegrityError, NoActiveModel, NotFound, TransientError
from ..registry import ActiveModel, ModelRegistry
from ..settings import Settings
from .backends import BACKENDS, MODEL_FILES, Backend, load_backend, required_artifacts
from .calibration import CALIBRATION_JSON, Calibration
from .metadata import ModelMetadata
from .model import LoadedModel
from .storage import download, file_sha256

log = logging.getLogger(__name__)

Loader = Callable[..., Backend]  # (backend name, model dir, metadata, *, precision) -> Backend
PRECISIONS = ("auto", "fp32", "int8")
INT8_MODEL = MODEL_FILES[("onnx", "int8")]


class ModelStore:
    """Hands out the active LoadedModel, loading a new version when the registry's pointer moves."""

    def __init__(self, registry: ModelRegistry, *, bucket: str, cache_dir: str | Path, backend: str = "onnx",
                 precision: str = "auto", models_prefix: str = "models/", check_seconds: float = 60, s3=None,
                 clock: Callable[[], float] = time.monotonic, loader: Loader = load_backend):
        if backend not in BACKENDS:
            raise ValueError(f"unknown inference backend {backend!r}; expected one of {BACKENDS}")
        if precision not in PRECISIONS:
            raise ValueError(f"unknown model precision {precision!r}; expected one of {PRECISIONS}")
        self.precision = precision
        self.registry = registry
        self.bucket = bucket
        self.cache_dir = Path(cache_dir)
        self.backend = backend
        self.models_prefix = models_prefix
        self.check_seconds = check_seconds
        self._s3 = s3
        self._clock = clock
        self._loader = loader
        self._loaded: LoadedModel | None = None
        self._checked_at: float | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings, **overrides) -> ModelStore:
        """A store for this stack's bucket, registry table and backend."""
        settings.require("data_bucket", "models_table")
        options = {
            "bucket": settings.data_bucket,
            "cache_dir": settings.model_cache_dir,
            "backend": settings.model_backend,
            "precision": settings.model_precision,
            "models_prefix": settings.models_prefix,
            "check_seconds": settings.model_check_seconds,
            **overrides,
        }
        return cls(ModelRegistry(settings.models_table), **options)

    @property
    def s3(self):
        # Looked up per use: the local stack and tests swap imgclf.aws's clients under a long-lived store.
        return self._s3 or aws.client("s3")

    def current(self) -> LoadedModel:
        """The model to classify with now; NoActiveModel before the first promotion."""
        with self._lock:
            now = self._clock()
            if self._loaded and self._checked_at is not None and now - self._checked_at < self.check_seconds:
                return self._loaded
            started = time.perf_counter()
            try:
                active = self.registry.active()
            except TransientError:
                if self._loaded is None:
                    raise
                # A registry hiccup must not stop classification with a model that is already verified.
                log.warning("model registry unavailable; keeping %s", self._loaded.version, exc_info=True)
                return self._loaded
            if active is None:
                self._loaded = None
                raise NoActiveModel("no model version has been promoted yet")
            if self._loaded is None or self._loaded.version != active.version:
                self._loaded = None  # never fall back to a version the registry no longer names
                self._loaded = self._load(active, registry_s=time.perf_counter() - started)
            self._checked_at = now
            return self._loaded

    def refresh(self) -> None:
        """Check the registry on the next current(), however recently it was checked (a promotion just happened)."""
        with self._lock:
            self._checked_at = None

    def load_version(self, version: str) -> LoadedModel:
        """One registered version, verified and loaded as the active one would be, whatever is active now."""
        item = self.registry.get(version)  # NotFound for a version never registered
        return self._load(ActiveModel(version=item["version"], artifacts=item.get("artifacts", {}),
                                      classes=item.get("classes", [])))

    def precision_for(self, active: ActiveModel) -> str:
        """The precision to serve a version at: MODEL_PRECISION against the models the version has."""
        if self.backend != "onnx" or self.precision == "fp32":
            return "fp32"
        if INT8_MODEL in active.artifacts:
            return "int8"
        if self.precision == "int8":
            raise ConfigError(f"MODEL_PRECISION is int8 but model {active.version} has no {INT8_MODEL} (its "
                              "training run did not ship one; model.json's int8 block says why); set "
                              "MODEL_PRECISION to auto or fp32 to serve it")
        return "fp32"

    def _load(self, active: ActiveModel, registry_s: float = 0.0) -> LoadedModel:
        """Fetch and verify every artifact the backend reads, then (only then) load them."""
        precision = self.precision_for(active)
        directory = self.cache_dir / keys.check_name("model version", active.version)
        timings = {"registry": registry_s, "download": 0.0, "checksum": 0.0}
        # calibration.json is optional (versions trained before it existed), verified like the rest when listed.
        optional = (CALIBRATION_JSON,) if CALIBRATION_JSON in active.artifacts else ()
        for name in (*required_artifacts(self.backend, precision), *optional):
            fetch_s, checksum_s = self._fetch(active, name, directory / name)
            timings["download"] += fetch_s - checksum_s
            timings["checksum"] += checksum_s
        metadata = ModelMetadata.load(directory / "model.json")
        if active.classes and tuple(active.classes) != metadata.classes:
            raise IntegrityError(f"model.json of {active.version} lists classes {metadata.classes}, "
                                 f"the registry {tuple(active.classes)}")
        calibration = (Calibration.load(directory / CALIBRATION_JSON, metadata.classes) if optional
                       else Calibration.uncalibrated())
        started = time.perf_counter()
        backend = self._loader(self.backend, directory, metadata, precision=precision)
        timings["session"] = time.perf_counter() - started
        self._prune(keep=directory)
        timings = {stage: round(seconds, 4) for stage, seconds in timings.items()}
        log.info("loaded model %s with the %s backend at %s (%s)", active.version, self.backend, precision,
                 "calibrated" if calibration.calibrated else "uncalibrated", extra={"load_seconds": timings})
        return LoadedModel(version=active.version, backend=backend, metadata=metadata, load_timings=timings,
                           calibration=calibration)

    def _fetch(self, active: ActiveModel, name: str, dest: Path) -> tuple[float, float]:
        """Make dest hold the verified artifact, reusing a cached copy whose checksum still matches.

        Returns the seconds it took and, of those, the seconds spent computing the checksum.
        """
        started = time.perf_counter()
        expected = _sha256_of(active.artifacts.get(name))
        if expected is None and name != "model.json":
            raise IntegrityError(f"the registry records no sha256 for {name} of model {active.version}")
        if dest.exists() and (expected is None or file_sha256(dest) == expected):
            return (elapsed := time.perf_counter() - started), elapsed
        if expected is None:
            # model.json cannot list its own checksum; the registry's class list is checked against it.
            log.warning("no sha256 recorded for model.json of %s; checking its classes", active.version)
        key = keys.model_key(active.version, name, root=self.models_prefix)
        try:
            checksum_s = download(self.s3, self.bucket, key, dest, sha256=expected)
        except NotFound as exc:
            missing = f"s3://{self.bucket}/{key}"
            raise IntegrityError(f"model {active.version} is promoted but {missing} is missing") from exc
        return time.perf_counter() - started, checksum_s

    def _prune(self, keep: Path) -> None:
        """Delete other versions' cached files: /tmp is small and shared with everything else."""
        for entry in self.cache_dir.iterdir():
            if entry.is_dir() and entry != keep:
                shutil.rmtree(entry, ignore_errors=True)


def _sha256_of(entry: str | dict | None) -> str | None:
    """The checksum of a registry artifact entry, whether stored as the bare hex or as model.json's object."""
    if isinstance(entry, dict):
        entry = entry.get("sha256")
    return entry.lower() if isinstance(entry, str) and entry else None
