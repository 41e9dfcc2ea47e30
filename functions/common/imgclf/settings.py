"""Settings read once from the environment that template.yaml sets for every function."""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from functools import lru_cache
from typing import Mapping

from .errors import ConfigError


def _bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError(f"not a boolean: {value!r}")


def _prefix(value: str) -> str:
    value = value.strip().lstrip("/")
    return value if value.endswith("/") else value + "/"


@dataclass(frozen=True)
class Settings:
    """Every setting a function may read; each field maps to the upper-cased environment variable."""

    stage: str = "dev"
    data_bucket: str = ""
    predictions_table: str = ""
    runs_table: str = ""
    models_table: str = ""
    decisions_table: str = ""
    upload_prefix: str = "uploads/"
    dataset_prefix: str = "datasets/"
    models_prefix: str = "models/"
    model_backend: str = "onnx"
    model_precision: str = "auto"
    model_check_seconds: int = 60
    # /tmp is the only writable directory in Lambda.
    model_cache_dir: str = "/tmp/imgclf-models"  # noqa: S108  # nosec B108
    max_image_bytes: int = 10 * 1024 * 1024
    max_image_pixels: int = 40_000_000
    min_image_side: int = 64
    max_image_side: int = 1024
    allow_private_addresses: bool = False
    state_machine_arn: str = ""
    upload_role_arn: str = ""
    reclassify_machine_arn: str = ""
    collector_function: str = ""
    training_image_uri: str = ""
    training_role_arn: str = ""
    training_instance_type: str = "ml.g4dn.xlarge"
    training_use_spot: bool = False
    training_max_runtime_s: int = 4 * 3600
    training_backend: str = "sagemaker"
    search_key_parameter: str = ""
    # The SSM parameter naming the reviewer pool, its page client and hosted sign-in (JSON).
    sign_in_parameter: str = ""
    bing_endpoint: str = "https://api.bing.microsoft.com"
    collector_workers: int = 32
    download_timeout_s: int = 10
    download_deadline_s: int = 30
    download_retries: int = 2
    jpeg_quality: int = 90
    # The review queue of uploads (imgclf.review): a margin between the two best probabilities under review_margin,
    # and a review_sample_rate share of all classified uploads, drawn per image, join the unknown verdicts there.
    review_margin: float = 0.2
    review_sample_rate: float = 0.05
    # Labeled uploads that join a dataset before its retraining starts on its own (0: never).
    retrain_after_labels: int = 50
    # How much worse a candidate that knows other labels may be on the labels both know (imgclf.registry).
    promotion_tolerance: float = 0.02

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "Settings":
        """Build settings from an environment mapping, converting and validating each value."""
        environ = os.environ if environ is None else environ
        values = {}
        for field in fields(cls):
            raw = environ.get(field.name.upper())
            if raw is None:
                continue
            try:
                if field.type == "bool":
                    values[field.name] = _bool(raw)
                elif field.type == "int":
                    values[field.name] = int(raw)
                elif field.type == "float":
                    values[field.name] = float(raw)
                elif field.name.endswith("_prefix"):
                    values[field.name] = _prefix(raw)
                else:
                    values[field.name] = raw
            except ValueError as exc:
                raise ConfigError(f"environment variable {field.name.upper()}: {exc}") from exc
        settings = cls(**values)
        if settings.model_backend not in {"onnx", "fastai"}:
            raise ConfigError(f"MODEL_BACKEND must be onnx or fastai, not {settings.model_backend!r}")
        if settings.model_precision not in {"auto", "fp32", "int8"}:
            raise ConfigError(f"MODEL_PRECISION must be auto, fp32 or int8, not {settings.model_precision!r}")
        if not (0 <= settings.review_margin <= 1 and 0 <= settings.review_sample_rate <= 1):
            raise ConfigError("REVIEW_MARGIN and REVIEW_SAMPLE_RATE must be between 0 and 1")
        if settings.model_precision == "int8" and settings.model_backend != "onnx":
            raise ConfigError("MODEL_PRECISION=int8 needs the onnx backend; fastai runs export.pkl in fp32")
        return settings

    def require(self, *names: str) -> None:
        """Fail clearly when a function starts without the settings it cannot work without."""
        missing = [name.upper() for name in names if not getattr(self, name)]
        if missing:
            raise ConfigError(f"missing environment variables: {', '.join(missing)}")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The settings of this execution environment, read once."""
    return Settings.from_env()


def reset_settings() -> None:
    """Forget the cached settings (tests and the local stack change the environment)."""
    get_settings.cache_clear()
