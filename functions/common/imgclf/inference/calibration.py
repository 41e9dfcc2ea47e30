"""calibration.json, read on the inference side: temperature-scaled probabilities and the label-or-unknown verdict.

Every backend's graph or learner ends in a softmax, so the temperature is applied to its probabilities:
softmax(z / T) is proportional to softmax(z) ** (1 / T). fp32, int8 and fastai therefore serve the same
calibrated numbers from one artifact. A model trained before calibration existed has no calibration.json: its
probabilities are the plain softmax and a top label below UNCALIBRATED_THRESHOLD is unknown.

Format 2 adds the out-of-distribution detector: a whitening matrix W and class centres, both fitted by the training
job on the L2-normalised features that the network's last linear layer reads (model.onnx's ``features`` output, a
hook in the fastai backend). An image whose Mahalanobis distance ||x W - c||, to the nearest centre c, is above the
threshold is unknown for out_of_distribution. The score served is that distance over the threshold: above 1 is out.
"""

from __future__ import annotations

import base64
import binascii
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .metadata import MetadataError, read_json_object

CALIBRATION_JSON = "calibration.json"
FORMAT_VERSIONS = (1, 2)  # 2 added the out-of-distribution detector
OOD_METHOD = "mahalanobis_shared_l2"
UNCALIBRATED_THRESHOLD = 0.5
LABEL, UNKNOWN = "label", "unknown"
LOW_CONFIDENCE, OUT_OF_DISTRIBUTION = "low_confidence", "out_of_distribution"
_TINY = 1e-30


def decode_array(doc: object, name: str) -> np.ndarray:
    """A float32 array written by the training job as {dtype, shape, base64}."""
    try:
        shape = tuple(int(n) for n in doc["shape"])
        if doc["dtype"] != "float32":
            raise ValueError(f"dtype {doc['dtype']!r}")
        data = np.frombuffer(base64.b64decode(doc["base64"], validate=True), dtype="<f4")
        return data.reshape(shape).astype(np.float64)
    except (KeyError, TypeError, ValueError, binascii.Error) as exc:
        raise MetadataError(f"calibration.json's ood.{name} is not a float32 array: {exc}") from exc


@dataclass(frozen=True)
class OodDetector:
    """Distance to the nearest class centre of the whitened, L2-normalised features, and its threshold."""

    whitening: np.ndarray  # [D, D]
    centres: np.ndarray  # [C, D]
    threshold: float

    @classmethod
    def from_dict(cls, doc: object, n_classes: int) -> OodDetector:
        """Validate calibration.json's ood block."""
        if not isinstance(doc, dict) or doc.get("method") != OOD_METHOD:
            method = doc.get("method") if isinstance(doc, dict) else doc
            raise MetadataError(f"calibration.json's ood method {method!r} is not {OOD_METHOD!r}")
        whitening = decode_array(doc.get("whitening"), "whitening")
        centres = decode_array(doc.get("centres"), "centres")
        threshold = doc.get("threshold")
        dim = whitening.shape[0] if whitening.ndim == 2 else -1
        if whitening.shape != (dim, dim) or centres.shape != (n_classes, dim):
            raise MetadataError(f"calibration.json's ood arrays have shapes {whitening.shape} and {centres.shape}; "
                                f"expected square and ({n_classes}, {dim})")
        if not isinstance(threshold, (int, float)) or not math.isfinite(threshold) or threshold <= 0:
            raise MetadataError(f"calibration.json's ood threshold {threshold!r} is not a positive number")
        return cls(whitening, centres, float(threshold))

    @property
    def dim(self) -> int:
        return self.whitening.shape[0]

    def scores(self, features: np.ndarray) -> np.ndarray:
        """Distance to the nearest centre over the threshold, per image: above 1 is out of distribution."""
        features = np.asarray(features, dtype=np.float64)
        if features.ndim != 2 or features.shape[1] != self.dim:
            raise MetadataError(f"the model's features have shape {features.shape}; the detector expects "
                                f"[batch, {self.dim}]")
        unit = features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), _TINY)
        z = unit @ self.whitening
        squared = ((z[:, None, :] - self.centres[None, :, :]) ** 2).sum(axis=2)
        return np.sqrt(squared.min(axis=1)) / self.threshold


@dataclass(frozen=True)
class Calibration:
    """One model version's temperature and per-label thresholds (or the plain-softmax stand-in)."""

    temperature: float = 1.0
    thresholds: dict[str, float] = field(default_factory=dict)
    calibrated: bool = False
    threshold_mode: str | None = None
    ood: OodDetector | None = None

    @classmethod
    def uncalibrated(cls) -> Calibration:
        """The stand-in for a model without calibration.json: plain softmax, one fixed threshold."""
        return cls()

    @classmethod
    def from_dict(cls, doc: dict, classes: tuple[str, ...]) -> Calibration:
        """Validate and read a parsed calibration.json against model.json's classes."""
        if doc.get("format_version") not in FORMAT_VERSIONS:
            raise MetadataError(f"calibration.json format_version {doc.get('format_version')!r} is not one of "
                                f"{FORMAT_VERSIONS}")
        if tuple(doc.get("classes") or ()) != tuple(classes):
            raise MetadataError(f"calibration.json classes {doc.get('classes')} differ from model.json's {classes}")
        temperature = doc.get("temperature")
        if not isinstance(temperature, (int, float)) or not math.isfinite(temperature) or temperature <= 0:
            raise MetadataError(f"calibration.json temperature {temperature!r} is not a positive number")
        try:
            thresholds = {name: float(doc["thresholds"][name]["threshold"]) for name in classes}
        except (KeyError, TypeError, ValueError) as exc:
            raise MetadataError(f"calibration.json lacks a threshold for every class: {exc}") from exc
        ood = OodDetector.from_dict(doc["ood"], len(classes)) if doc.get("ood") is not None else None
        return cls(temperature=float(temperature), thresholds=thresholds, calibrated=True,
                   threshold_mode=doc.get("threshold_mode"), ood=ood)

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

    def ood_scores(self, features: np.ndarray | None, n: int) -> list[float | None]:
        """Each image's out-of-distribution score, None where there is no detector or no features."""
        if self.ood is None or features is None:
            return [None] * n
        return [float(score) for score in self.ood.scores(features)]

    def verdict(self, label: str, probability: float, ood_score: float | None = None) -> tuple[str, str | None]:
        """("label", None) where the image is in distribution and its top label reaches the label's threshold;
        else ("unknown", "out_of_distribution") or ("unknown", "low_confidence"), in that order."""
        if ood_score is not None and ood_score > 1.0:
            return UNKNOWN, OUT_OF_DISTRIBUTION
        if probability >= self.threshold(label):
            return LABEL, None
        return UNKNOWN, LOW_CONFIDENCE
