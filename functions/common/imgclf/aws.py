"""boto3 clients built once per execution environment, and the one translation of botocore's errors.

`translated` is the only place that reads botocore error codes: everything else sees the project's exceptions.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache

import boto3
import botocore.session
from botocore.config import Config
from botocore.credentials import AssumeRoleCredentialFetcher, DeferredRefreshableCredentials
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, ParamValidationError

from .errors import (
    AccessDenied,
    AlreadyProcessed,
    ConditionFailed,
    ConfigError,
    Conflict,
    NotFound,
    ObjectNotFound,
    TransientError,
)

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


# S3 answers "404" (no body to carry a code) to HEAD requests, "NoSuchKey" to the others.
_OBJECT_MISSING = frozenset({"NoSuchKey", "NoSuchVersion", "404", "NotFound"})
_MISSING = frozenset({
    "NoSuchBucket", "NoSuchUpload",  # S3
    "ResourceNotFoundException",  # DynamoDB, Secrets Manager, Lambda
    "ParameterNotFound", "ParameterVersionNotFound",  # SSM Parameter Store
    "ExecutionDoesNotExist", "StateMachineDoesNotExist", "ActivityDoesNotExist",  # Step Functions
    "ResourceNotFound",  # SageMaker, Step Functions
    "UserNotFoundException",  # Cognito user pools
})
_S3_CONDITION = frozenset({"PreconditionFailed", "ConditionalRequestConflict"})  # If-Match / If-None-Match lost
_DENIED = frozenset({"AccessDenied", "AccessDeniedException", "403"})
_ALREADY_EXISTS = frozenset({"ExecutionAlreadyExists"})  # Step Functions: the execution name is taken
_USER_EXISTS = frozenset({"UsernameExistsException", "AliasExistsException"})  # Cognito user pools
_REFUSED_INPUT = frozenset({"InvalidPasswordException"})  # Cognito: the pool's password policy
# What botocore's standard retry mode treats as throttling or transient, plus the 5xx codes of the services used.
_TRANSIENT = frozenset({
    "Throttling", "ThrottlingException", "ThrottledException", "RequestThrottled", "RequestThrottledException",
    "TooManyRequestsException", "ProvisionedThroughputExceededException", "RequestLimitExceeded",
    "BandwidthLimitExceeded", "LimitExceededException", "SlowDown", "EC2ThrottledException",
    "TransactionInProgressException", "TransactionConflictException", "PriorRequestNotComplete",
    "RequestTimeout", "RequestTimeoutException", "RequestTimeTooSkewed",
    "InternalError", "InternalServerError", "InternalServiceError", "InternalFailure", "ServiceException",
    "ServiceUnavailable", "ServiceUnavailableException", "500", "503",
    "ResourceConflictException",  # Lambda: the function is being updated
})


@contextmanager
def translated(what: str) -> Iterator[None]:
    """Turn botocore errors of the calls inside into the project's exceptions; `what` names the action.

    Also a decorator: ``@translated("read the registry")``. A code this module does not know re-raises the
    original ClientError: an unknown failure is a bug to see, not something to retry or hide.
    """
    try:
        yield
    except ClientError as exc:
        error = _project_error(exc, what)
        if error is None:
            raise
        raise error from exc
    except ParamValidationError:
        raise  # the call itself is wrong: a bug, however often it is retried
    except NoCredentialsError as exc:
        raise ConfigError(f"{what}: no AWS credentials were found (AWS_PROFILE, environment or role)") from exc
    except BotoCoreError as exc:  # connection errors, read timeouts, a body cut short
        raise TransientError(f"{what}: {exc}") from exc


def _project_error(exc: ClientError, what: str) -> Exception | None:
    """The project's exception for one ClientError; None when its code is not one this module knows."""
    error = exc.response.get("Error", {})
    code = str(error.get("Code", ""))
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    if code == "ConditionalCheckFailedException":
        return AlreadyProcessed(f"{what}: condition failed")
    if code == "TransactionCanceledException":
        reasons = [r.get("Code") for r in exc.response.get("CancellationReasons", [])]
        if "ConditionalCheckFailed" in reasons:
            return AlreadyProcessed(f"{what}: condition failed")
        return TransientError(f"{what}: transaction cancelled {reasons}")
    if code in _OBJECT_MISSING:
        return ObjectNotFound(f"{what}: no such object")
    if code in _MISSING:
        return NotFound(f"{what}: {code}")
    if code in _S3_CONDITION:
        return ConditionFailed(f"{what}: the object changed since it was read ({code})")
    if code in _DENIED:
        detail = error.get("Message") or "no detail given"
        return AccessDenied(f"{what}: this role may not call {exc.operation_name} ({detail})")
    if code in _ALREADY_EXISTS:
        return Conflict(f"{what}: an execution with this name already exists")
    if code in _USER_EXISTS:
        return Conflict(f"{what}: the account exists already")
    if code in _REFUSED_INPUT:
        return ConfigError(f"{what}: {error.get('Message') or code}")
    if code in _TRANSIENT or status == 429 or status >= 500:
        return TransientError(f"{what}: {code or status}")
    return None
