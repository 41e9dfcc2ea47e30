"""boto3 clients and resources built once per execution environment, swappable for tests."""

from __future__ import annotations

import threading
from functools import cache

import boto3
from botocore.config import Config

_CONFIG = Config(retries={"mode": "standard", "max_attempts": 5}, max_pool_connections=32)
_lock = threading.Lock()


@cache
def _session() -> boto3.session.Session:
    return boto3.session.Session()


@cache
def client(service: str):
    """A shared client for one service; boto3 honours AWS_ENDPOINT_URL, which the local stack sets."""
    with _lock:  # boto3 session creation is not thread-safe
        return _session().client(service, config=_CONFIG)


@cache
def resource(service: str):
    """A shared resource for one service (DynamoDB tables)."""
    with _lock:
        return _session().resource(service, config=_CONFIG)


def reset() -> None:
    """Drop every cached client, e.g. after tests point the environment at another endpoint."""
    client.cache_clear()
    resource.cache_clear()
    _session.cache_clear()
