"""boto3 clients and resources built once per execution environment, swappable for tests."""

from __future__ import annotations

import threading
from functools import cache

import boto3
import botocore.session
from botocore.config import Config
from botocore.credentials import AssumeRoleCredentialFetcher, DeferredRefreshableCredentials

_CONFIG = Config(retries={"mode": "standard", "max_attempts": 5}, max_pool_connections=32)
# S3 refuses SigV2 presigned URLs for buckets created since 2020, and boto3 still makes them in us-east-1.
_S3_CONFIG = _CONFIG.merge(Config(signature_version="s3v4"))
_lock = threading.Lock()


@cache
def _session() -> boto3.session.Session:
    return boto3.session.Session()


@cache
def client(service: str):
    """A shared client for one service; boto3 honours AWS_ENDPOINT_URL, which the local stack sets."""
    with _lock:  # boto3 session creation is not thread-safe
        return _session().client(service, config=_S3_CONFIG if service == "s3" else _CONFIG)


@cache
def resource(service: str):
    """A shared resource for one service (DynamoDB tables)."""
    with _lock:
        return _session().resource(service, config=_CONFIG)


@cache
def role_client(service: str, role_arn: str, session_name: str = "imgclf"):
    """A client acting as another role; its credentials are assumed on first use and refreshed before expiry."""
    with _lock:
        base = _session()
        fetcher = AssumeRoleCredentialFetcher(
            client_creator=base._session.create_client,  # the public API offers no other way in
            source_credentials=base.get_credentials(),
            role_arn=role_arn,
            extra_args={"RoleSessionName": session_name, "DurationSeconds": 3600},
        )
        session = botocore.session.Session()
        session._credentials = DeferredRefreshableCredentials(
            method="assume-role", refresh_using=fetcher.fetch_credentials
        )
        region = base.region_name
        return boto3.session.Session(botocore_session=session, region_name=region).client(
            service, config=_S3_CONFIG if service == "s3" else _CONFIG
        )


def reset() -> None:
    """Drop every cached client, e.g. after tests point the environment at another endpoint."""
    client.cache_clear()
    role_client.cache_clear()
    resource.cache_clear()
    _session.cache_clear()
