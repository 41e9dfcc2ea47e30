"""A loaded model version and the predictions it makes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
from PIL import Image

from .backends import Backend
from .calibration import LABEL, Calibration
from .metadata import ModelMetadata


@dataclass(frozen=True)
class Prediction:
    """One image's answer: top class and its probability, every class's, the verdict, model version, precision.

    label and confidence are the top class and its probability even when the verdict is unknown; probabilities
    are temperature-scaled where the version has calibration.json (calibrated), the plain softmax otherwise.
    ood_score is the out-of-distribution detector's distance over its threshold (above 1: unlike every label's
    training images), None for a version without a detector.
    """

    label: str
    confidence: float
    probabilities: dict[str, float]
    model_version: str
    precision: str = "fp32"
    verdict: str = LABEL
    unknown_reason: str | None = None
    calibrated: bool = False
    ood_score: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"label": self.label, "confidence": self.confidence, "probabilities": dict(self.probabilities),
                "verdict": self.verdict, "unknown_reason": self.unknown_reason, "calibrated": self.calibrated,
                "ood_score": self.ood_score, "model_version": self.model_version, "precision": self.precision}


@dataclass(frozen=True)
class LoadedModel:
    """One verified, loaded model version: prepare() may run in worker threads, predict() takes a batch."""

    version: str
    backend: Backend
    metadata: ModelMetadata
    # Seconds spent loading it, by stage (registry, download, checksum, session): the cold start's share.
    load_timings: dict[str, float] = field(default_factory=dict, compare=False)
    # Temperature and thresholds from calibration.json; plain softmax for a version trained without one.
    calibration: Calibration = field(default_factory=Calibration.uncalibrated)

    @property
    def classes(self) -> tuple[str, ...]:
        return self.metadata.classes

    @property
    def precision(self) -> str:
        """fp32 or int8: which of the version's models answers."""
        return getattr(self.backend, "precision", "fp32")

    def prepare(self, image: Image.Image) -> Any:
        """Per-image preprocessing, safe to run concurrently."""
        return self.backend.prepare(image)

    def predict(self, prepared: Sequence[Any]) -> list[Prediction]:
        """Predictions for prepared images, inferred as one batch."""
        if not prepared:
            return []
        probabilities, features = self.backend.outputs(prepared)
        scores = self.calibration.ood_scores(features, len(probabilities))
        return [self._prediction(row, score)
                for row, score in zip(self.calibration.apply(probabilities), scores, strict=True)]

    def classify(self, images: Sequence[Image.Image]) -> list[Prediction]:
        """Predictions for decoded RGB images, inferred as one batch."""
        return self.predict([self.prepare(image) for image in images])

    def _prediction(self, row: np.ndarray, ood_score: float | None) -> Prediction:
        best = int(np.argmax(row))
        label, confidence = self.classes[best], float(row[best])
        verdict, reason = self.calibration.verdict(label, confidence, ood_score)
        return Prediction(
            label=label,
            confidence=confidence,
            probabilities={name: float(p) for name, p in zip(self.classes, row, strict=True)},
            model_version=self.version,
            precision=self.precision,
            verdict=verdict,
            unknown_reason=reason,
            calibrated=self.calibration.calibrated,
            ood_score=ood_score,
        )
