"""Collector fixtures: an S3 bucket in moto and the collector's settings (the image server is shared)."""

from __future__ import annotations

import boto3
import pytest

from imgclf.settings import Settings
from tests.support.tables import BUCKET


@pytest.fixture
def s3(mocked_aws):
    """An S3 client on moto with the data bucket created."""
    client = boto3.client("s3", region_name="us-east-1")
    client.create_bucket(Bucket=BUCKET)
    return client


@pytest.fixture
def settings() -> Settings:
    """Settings for tests: small images allowed, the local server reachable, quick timeouts."""
    return Settings(
        data_bucket=BUCKET,
        min_image_side=32,
        max_image_side=256,
        allow_private_addresses=True,
        collector_workers=4,
        download_timeout_s=2,
        download_deadline_s=2,
        download_retries=1,
    )
