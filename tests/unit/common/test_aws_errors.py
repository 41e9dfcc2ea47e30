"""aws.translated: every botocore error comes out as the project's exception, or as itself when unknown."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from botocore.exceptions import (
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    ParamValidationError,
    ReadTimeoutError,
)

from imgclf import aws
from imgclf.errors import (
    AccessDenied,
    AlreadyProcessed,
    ConditionFailed,
    ConfigError,
    Conflict,
    ImageRejected,
    NotFound,
    ObjectNotFound,
    TransientError,
)

ADAPTER = Path(aws.__file__).resolve()
FUNCTIONS = ADAPTER.parents[2]


def client_error(code: str, status: int = 400, operation: str = "SomeOperation", **response) -> ClientError:
    """A ClientError as botocore builds it from a service's error answer."""
    return ClientError({"Error": {"Code": code, "Message": f"{code} happened"},
                        "ResponseMetadata": {"HTTPStatusCode": status}, **response}, operation)


def raised_from(error: Exception, what: str = "do the thing") -> BaseException:
    """What comes out of aws.translated when the call inside raises `error`."""
    with pytest.raises(BaseException) as caught, aws.translated(what):
        raise error
    return caught.value


@pytest.mark.parametrize(("code", "status", "expected"), [
    # S3 objects: a missing object is the one kind of NotFound callers treat as "nothing written yet"
    ("NoSuchKey", 404, ObjectNotFound),
    ("NoSuchVersion", 404, ObjectNotFound),
    ("404", 404, ObjectNotFound),  # HEAD requests carry no body, so no code but the status
    ("NotFound", 404, ObjectNotFound),
    # other things that do not exist
    ("NoSuchBucket", 404, NotFound),
    ("NoSuchUpload", 404, NotFound),
    ("ResourceNotFoundException", 400, NotFound),  # DynamoDB, Secrets Manager, Lambda
    ("ParameterNotFound", 400, NotFound),  # SSM
    ("ParameterVersionNotFound", 400, NotFound),
    ("ExecutionDoesNotExist", 400, NotFound),  # Step Functions
    ("StateMachineDoesNotExist", 400, NotFound),
    ("ActivityDoesNotExist", 400, NotFound),
    ("ResourceNotFound", 400, NotFound),  # SageMaker
    # conditional writes
    ("ConditionalCheckFailedException", 400, AlreadyProcessed),  # DynamoDB
    ("PreconditionFailed", 412, ConditionFailed),  # S3 If-Match / If-None-Match
    ("ConditionalRequestConflict", 409, ConditionFailed),
    # permissions
    ("AccessDenied", 403, AccessDenied),
    ("AccessDeniedException", 400, AccessDenied),
    ("403", 403, AccessDenied),
    # a name in use
    ("ExecutionAlreadyExists", 400, Conflict),
    # throttling and outages
    ("SlowDown", 503, TransientError),
    ("Throttling", 400, TransientError),
    ("ThrottlingException", 400, TransientError),
    ("TooManyRequestsException", 429, TransientError),
    ("ProvisionedThroughputExceededException", 400, TransientError),
    ("RequestLimitExceeded", 400, TransientError),
    ("TransactionConflictException", 400, TransientError),
    ("RequestTimeout", 400, TransientError),
    ("RequestTimeTooSkewed", 403, TransientError),
    ("EC2ThrottledException", 502, TransientError),
    ("ResourceConflictException", 409, TransientError),  # Lambda: the function is being updated
    ("InternalError", 500, TransientError),
    ("InternalServerError", 500, TransientError),
    ("ServiceUnavailable", 503, TransientError),
    ("ServiceException", 500, TransientError),
    ("SomethingNew", 500, TransientError),  # any 5xx may pass
    ("SomethingElse", 429, TransientError),
])
def test_each_known_code_becomes_its_project_exception(code, status, expected):
    # GIVEN a ClientError with the code
    error = client_error(code, status)

    # WHEN it leaves a translated block
    raised = raised_from(error)

    # THEN it is the project's exception for the code, naming the action, with the original as its cause
    assert type(raised) is expected
    assert str(raised).startswith("do the thing: ")
    assert raised.__cause__ is error


def test_a_cancelled_transaction_whose_condition_failed_is_already_processed():
    error = client_error("TransactionCanceledException", CancellationReasons=[
        {"Code": "None"}, {"Code": "ConditionalCheckFailed", "Message": "The conditional request failed"},
    ])

    assert type(raised_from(error)) is AlreadyProcessed


def test_a_transaction_cancelled_for_another_reason_may_pass():
    error = client_error("TransactionCanceledException", CancellationReasons=[{"Code": "TransactionConflict"}])

    raised = raised_from(error)

    assert type(raised) is TransientError
    assert "TransactionConflict" in str(raised)


def test_access_denied_names_the_action_and_the_call():
    # GIVEN S3 refusing a GetObject
    error = client_error("AccessDenied", 403, "GetObject")

    # WHEN it leaves a block reading the manifest
    raised = raised_from(error, "read s3://bucket/datasets/pets/manifest.jsonl")

    # THEN the message says what was being done, which call was refused and what AWS said
    assert isinstance(raised, AccessDenied) and raised.code == "access_denied"
    assert "read s3://bucket/datasets/pets/manifest.jsonl" in str(raised)
    assert "GetObject" in str(raised) and "AccessDenied happened" in str(raised)


def test_an_unknown_code_re_raises_the_original_client_error():
    # GIVEN a code nobody mapped, on a 4xx answer
    error = client_error("InvalidArgument", 400)

    # WHEN it leaves a translated block
    # THEN it is the very same ClientError: an unknown failure is a bug to see, not something to hide
    assert raised_from(error) is error


@pytest.mark.parametrize("error", [
    EndpointConnectionError(endpoint_url="https://s3.amazonaws.com"),
    ReadTimeoutError(endpoint_url="https://s3.amazonaws.com"),
])
def test_connection_errors_and_timeouts_may_pass(error):
    raised = raised_from(error)

    assert type(raised) is TransientError
    assert raised.__cause__ is error


def test_a_call_botocore_refuses_to_send_is_a_bug_not_a_transient_fault():
    error = ParamValidationError(report="Missing required parameter in input: \"Key\"")

    assert raised_from(error) is error


def test_missing_credentials_are_a_configuration_error():
    assert type(raised_from(NoCredentialsError())) is ConfigError


def test_the_projects_own_exceptions_pass_through_untouched():
    error = ImageRejected("too_large", "too large")

    assert raised_from(error) is error


def test_translated_also_decorates_a_function():
    @aws.translated("read the registry")
    def read():
        raise client_error("ResourceNotFoundException")

    with pytest.raises(NotFound, match="read the registry"):
        read()
    with pytest.raises(NotFound):  # a fresh context each call
        read()


# Reading botocore's exceptions or error dictionaries anywhere but the adapter is what this test keeps out.
_FORBIDDEN = [
    re.compile(r"botocore\.exceptions"),
    re.compile(r"\b(?:ClientError|BotoCoreError)\b"),
    re.compile(r"\.response(?:\.get\(|\[)\s*[\"'](?:Error|CancellationReasons)[\"']"),
    re.compile(r"""(?=.*["']Error["'])(?=.*["']Code["'])"""),  # ["Error"]["Code"], .get("Error", {}).get("Code")
]


def test_no_module_under_functions_but_the_adapter_reads_botocore_errors():
    # GIVEN every Python file of the functions and their shared package, except the adapter
    assert FUNCTIONS.name == "functions"
    sources = [path for path in sorted(FUNCTIONS.rglob("*.py")) if path.resolve() != ADAPTER]
    assert len(sources) > 20

    # WHEN their lines are searched for botocore's exceptions and error codes
    offending = [
        f"{path.relative_to(FUNCTIONS)}:{number}: {line.strip()}"
        for path in sources
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if any(pattern.search(line) for pattern in _FORBIDDEN)
    ]

    # THEN there are none: they use aws.translated and catch the project's exceptions
    assert offending == []


def test_the_search_finds_what_it_is_meant_to_forbid():
    # The adapter itself reads codes, so the patterns must match it (else the test above proves nothing).
    text = ADAPTER.read_text(encoding="utf-8")
    assert all(any(p.search(line) for line in text.splitlines()) for p in _FORBIDDEN[:3])
    assert _FORBIDDEN[3].search('code = exc.response.get("Error", {}).get("Code")')
