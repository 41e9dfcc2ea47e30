"""The collector on the embedded local stack: moto server, the template's bucket, the function's handler."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# The scripted image server and photo helpers live with the collector's unit tests.
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "unit" / "collector"))

from collector_kit import ImageServer  # noqa: E402


@pytest.fixture(scope="module")
def collector_stack():
    """The local stack without pumps or API: the collector only needs S3 and its handler."""
    from imgclf_local.stack import LocalStack

    extra = {
        "MIN_IMAGE_SIDE": "32",
        "DOWNLOAD_RETRIES": "0",
        "DOWNLOAD_DEADLINE_S": "2",
        "COLLECTOR_WORKERS": "4",
    }
    with LocalStack(pumps=False, api=False, extra_environment=extra) as stack:
        yield stack


@pytest.fixture
def image_server():
    server = ImageServer().start()
    yield server
    server.stop()
