"""Fixtures of the classifier's integration tests (the tiny model is the session's, from tests/conftest.py)."""

from __future__ import annotations

import numpy as np
import pytest

from imgclf_local.stack import LocalStack
from tests.support.images import jpeg_bytes, synthetic_photo


@pytest.fixture(scope="session")
def photo_jpeg() -> bytes:
    return jpeg_bytes(synthetic_photo(np.random.default_rng(2), (170, 60, 40), (160, 120)))


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """The embedded stack without the API, with a model cache of its own, for one test module."""
    cache = tmp_path_factory.mktemp("model-cache")
    with LocalStack(api=False, extra_environment={"MODEL_CACHE_DIR": str(cache)}) as stack:
        yield stack

