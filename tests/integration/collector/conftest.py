"""The collector on the embedded local stack: moto server, the template's bucket, the function's handler."""

from __future__ import annotations

import pytest

from imgclf_local.stack import LocalStack


@pytest.fixture(scope="module")
def collector_stack():
    """The local stack without pumps or API: the collector only needs S3 and its handler."""
    extra = {
        "MIN_IMAGE_SIDE": "32",
        "DOWNLOAD_RETRIES": "0",
        "DOWNLOAD_DEADLINE_S": "2",
        "COLLECTOR_WORKERS": "4",
    }
    with LocalStack(pumps=False, api=False, extra_environment=extra) as stack:
        yield stack
