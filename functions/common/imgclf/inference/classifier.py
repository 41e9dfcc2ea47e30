"""The facade the classifier and the API call: images in, predictions of the active model out."""

from __future__ import annotations

from typing import Sequence

from PIL import Image

from ..settings import Settings, get_settings
from .model import LoadedModel, Prediction
from .model_store import ModelStore


class Classifier:
    """Classifies decoded images with whatever model version the registry names as active."""

    def __init__(self, store: ModelStore):
        self.store = store

    @classmethod
    def from_settings(cls, settings: Settings | None = None, **store_options) -> Classifier:
        """A classifier for this stack, configured from the environment."""
        return cls(ModelStore.from_settings(settings or get_settings(), **store_options))

    def model(self) -> LoadedModel:
        """The active model, to pin one version for a whole batch (NoActiveModel before any promotion)."""
        return self.store.current()

    def classify_batch(self, images: Sequence[Image.Image]) -> list[Prediction]:
        """One prediction per decoded RGB image, in order, inferred as one batch."""
        return self.model().classify(images)

    def classify(self, image: Image.Image) -> Prediction:
        """The prediction for one decoded RGB image."""
        return self.classify_batch([image])[0]
