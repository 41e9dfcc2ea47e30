"""model.json: the manifest of the model artifacts that the inference side and the registry read."""

from __future__ import annotations

import hashlib
import platform
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

FORMAT_VERSION = 1
_VERSIONED = ("fastai", "torch", "torchvision", "timm", "onnx", "onnxruntime", "pillow", "numpy")


def file_digest(path: Path) -> dict:
    """The sha256 and size of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return {"sha256": digest.hexdigest(), "bytes": path.stat().st_size}


def library_versions() -> dict:
    """The versions of the libraries that shaped the artifacts (Pillow matters for bit-exact resizing)."""
    versions = {"python": platform.python_version()}
    for name in _VERSIONED:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def utc_now() -> str:
    """The current time as an ISO 8601 UTC timestamp."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def build_model_json(*, classes: list[str], arch: str, img_size: int, mean, std, preprocessing: dict,
                     onnx_io: dict, artifacts: dict[str, Path], dataset: dict, metrics: dict,
                     onnx_parity: dict, preprocessing_check: dict, hyperparameters: dict, run_id: str,
                     weights_source: str, int8: dict | None = None, calibration: dict | None = None,
                     recipe: dict | None = None) -> dict:
    """The content of model.json, with digests of the artifacts as they are on disk now."""
    return {
        "format_version": FORMAT_VERSION,
        "classes": list(classes),
        "arch": arch,
        "img_size": img_size,
        "normalization": {"mean": [float(m) for m in mean], "std": [float(s) for s in std], "in_graph": True},
        "preprocessing": preprocessing,
        "onnx": onnx_io,
        "artifacts": {name: file_digest(path) for name, path in artifacts.items()},
        "versions": library_versions(),
        "dataset": dataset,
        "metrics": metrics,
        "onnx_parity": onnx_parity,
        "preprocessing_check": preprocessing_check,
        # Whether model.int8.onnx ships and why; listed under artifacts only when it does.
        "int8": int8,
        # Temperature and per-label thresholds, fitted on the validation split; the full record is calibration.json.
        "calibration": calibration,
        "hyperparameters": hyperparameters,
        # The training recipe as it ran: the recipe's choices with the explicit hyperparameters applied.
        "recipe": recipe,
        "pretrained_weights": weights_source,
        "run_id": run_id,
        "created_at": utc_now(),
    }
