"""calibration.json, read on the inference side: temperature-scaled probabilities and the label-or-unknown verdict.

Every backend's graph or learner ends in a softmax, so the temperature is applied to its probabilities:
softmax(z / T) is proportional to softmax(z) ** (1 / T). fp32, int8 and fastai therefore serve the same
calibrated numbers from one artifact. A model trained before calibration existed has no calibration.json: its
probabilities are the plain softmax and a top label below UNCALIBRATED_THRESHOLD is unknown.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .metadata import MetadataError, read_json_object

CALIBRATION_JSON = "calibration.json"
FORMAT_VERSION = 1
UNCALIBRATED_THRESHOLD = 0.5
LABEL, UNKNOWN = "label", "unknown"
LOW_CONFIDENCE = "low_confidence"
_TINY = 1e-30


@dataclass(frozen=True)
class Calibration:
    """One model version's temperature and per-label thresholds (or the plain-softmax stand-in)."""

    temperature: float = 1.0
    thresholds: dict[str, float] = field(default_factory=dict)
    calibrated: bool = False
    threshold_mode: str | None = None

    @classmethod
    def uncalibrated(cls) -> Calibration:
        """The stand-in for a model without calibration.json: plain softmax, one fixed threshold."""
        return cls()

    @classmethod
    def from_dict(cls, doc: dict, classes: tuple[str, ...]) -> Calibration:
        """Validate and read a parsed calibration.json against model.json's classes."""
        if doc.get("format_version") != FORMAT_VERSION:
            raise MetadataError(f"calibration.json format_version {doc.get('format_version')!r} is not "
                                f"{FORMAT_VERSION}")
        if tuple(doc.get("classes") or ()) != tuple(classes):
            raise MetadataError(f"calibration.json classes {doc.get('classes')} differ from model.json's {classes}")
        temperature = doc.get("temperature")
        if not isinstance(temperature, (int, float)) or not math.isfinite(temperature) or temperature <= 0:
            raise MetadataError(f"calibration.json temperature {temperature!r} is not a positive number")
        try:
            thresholds = {name: float(doc["thresholds"][name]["threshold"]) for name in classes}
        except (KeyError, TypeError, ValueError) as exc:
            raise MetadataError(f"calibration.json lacks a threshold for every class: {exc}") from exc
        return cls(temperature=float(temperature), thresholds=thresholds, calibrated=True,
                   threshold_mode=doc.get("threshold_mode"))

    @classmethod
    def load(cls, path: Path, classes: tuple[str, ...]) -> Calibration:
        """Read calibration.json from a (verified) file."""
        return cls.from_dict(read_json_object(path), classes)

    def apply(self, probabilities: np.ndarray) -> np.ndarray:
        """Calibrated probabilities [N, C] from a backend's softmax output."""
        if not self.calibrated or self.temperature == 1.0:
            return probabilities
        logits = np.log(np.maximum(probabilities.astype(np.float64), _TINY)) / self.temperature
        logits -= logits.max(axis=1, keepdims=True)
        scaled = np.exp(logits)
        return (scaled / scaled.sum(axis=1, keepdims=True)).astype(np.float32)

    def threshold(self, label: str) -> float:
        """The probability the label must reach to be the answer."""
        return self.thresholds.get(label, UNCALIBRATED_THRESHOLD)

    def verdict(self, label: str, probability: float) -> tuple[str, str | None]:
        """("label", None) where the top label reaches its threshold, else ("unknown", "low_confidence")."""
        if probability >= self.threshold(label):
            return LABEL, None
        return UNKNOWN, LOW_CONFIDENCE
