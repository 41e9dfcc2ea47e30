"""Fixtures of the classifier's integration tests (the tiny model is the session's, from tests/conftest.py)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.support.images import jpeg_bytes, synthetic_photo


@pytest.fixture(scope="session")
def photo_jpeg() -> bytes:
    return jpeg_bytes(synthetic_photo(np.random.default_rng(2), (170, 60, 40), (160, 120)))
