"""Inference shared by the classifier and the API: preprocessing, backends, the model store and a facade.

Typical use::

    classifier = Classifier.from_settings()          # once per execution environment
    image = images.decode(data, max_pixels=..., min_side=...)
    prediction = classifier.classify(image)  # label, confidence, probabilities, model_version
"""

from .backends import BACKENDS, Backend, load_backend
from .calibration import Calibration
from .classifier import Classifier
from .metadata import MetadataError, ModelMetadata
from .model import LoadedModel, Prediction
from .model_store import ModelStore
from .preprocess import Recipe, RecipeError, decode_reduced

__all__ = [
    "BACKENDS",
    "Backend",
    "Calibration",
    "Classifier",
    "LoadedModel",
    "MetadataError",
    "ModelMetadata",
    "ModelStore",
    "Prediction",
    "Recipe",
    "RecipeError",
    "decode_reduced",
    "load_backend",
]
