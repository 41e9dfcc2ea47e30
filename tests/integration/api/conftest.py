"""Fixtures of the API integration tests: the embedded stack with a tiny trained model promoted on it."""

from __future__ import annotations

from pathlib import Path

import api_kit
import pytest


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A model trained by training_job/train.py, once per session (the browser test shares it)."""
    return api_kit.tiny_model(tmp_path_factory.getbasetemp() / "api-tiny-model")


@pytest.fixture(scope="module")
def api_stack(tiny_model, tmp_path_factory):
    with api_kit.stack_with_model(tiny_model, tmp_path_factory.mktemp("model-cache")) as stack:
        yield stack
