"""Fixtures of the classifier's integration tests: the unit tests' tiny trained model, trained once."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

_HELPERS = Path(__file__).resolve().parents[2] / "unit" / "classifier" / "classifier_helpers.py"


def _helpers():
    # The unit tests' helper module, loaded by path: test folders are not packages.
    spec = importlib.util.spec_from_file_location("classifier_helpers_for_integration", _HELPERS)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def integration_model(tmp_path_factory) -> Path:
    """A resnet18 trained from scratch for one epoch by training_job/train.py on generated images."""
    return _helpers().train_tiny_model(tmp_path_factory.mktemp("trained-integration"))


@pytest.fixture(scope="session")
def photo_jpeg() -> bytes:
    import numpy as np

    helpers = _helpers()
    return helpers.jpeg_bytes(helpers.synthetic_photo(np.random.default_rng(2), (170, 60, 40), (160, 120)))
