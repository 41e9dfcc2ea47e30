"""model.json, the description the training job writes beside every exported model."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .preprocess import Recipe

FORMAT_VERSION = 1


class MetadataError(ValueError):
    """model.json is missing something a backend needs, or is of a format this code does not know."""


@dataclass(frozen=True)
class ModelMetadata:
    """What a backend needs from model.json: class order, preprocessing and the artifacts' checksums."""

    classes: tuple[str, ...]
    recipe: Recipe
    arch: str = ""
    artifacts: dict[str, str] = field(default_factory=dict)  # artifact name -> sha256
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> ModelMetadata:
        """Validate and read a parsed model.json."""
        if doc.get("format_version") != FORMAT_VERSION:
            version = doc.get("format_version")
            raise MetadataError(f"model.json format_version {version!r} is not {FORMAT_VERSION}")
        classes = doc.get("classes")
        if not isinstance(classes, list) or len(classes) < 2 or not all(isinstance(c, str) for c in classes):
            raise MetadataError("model.json classes must be a list of at least two names")
        if "preprocessing" not in doc:
            raise MetadataError("model.json has no preprocessing recipe")
        artifacts = {
            name: info["sha256"] for name, info in (doc.get("artifacts") or {}).items()
            if isinstance(info, dict) and "sha256" in info
        }
        return cls(classes=tuple(classes), recipe=Recipe.from_json(doc["preprocessing"]),
                   arch=doc.get("arch", ""), artifacts=artifacts, raw=doc)

    @classmethod
    def load(cls, path: Path) -> ModelMetadata:
        """Read model.json from a file."""
        return cls.from_dict(read_json_object(path))


def read_json_object(path: Path) -> dict:
    """A model artifact that holds one JSON object (model.json, calibration.json), or MetadataError saying why not."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise MetadataError(f"cannot read {path}: {exc}") from exc
    if not isinstance(doc, dict):
        raise MetadataError(f"{path} is not a JSON object")
    return doc
