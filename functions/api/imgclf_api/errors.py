"""Errors the API answers with, and how the project's own exceptions map to HTTP statuses and codes."""

from __future__ import annotations

import json
from http import HTTPStatus
from typing import Any

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestUnsupportedContentType,
    RequestValidationError,
)

from imgclf.errors import (
    AlreadyProcessed,
    ConfigError,
    Conflict,
    ImageRejected,
    ImgclfError,
    IntegrityError,
    NoActiveModel,
    NotFound,
    TransientError,
)
from imgclf.log import get_logger

logger = get_logger("api")


class ApiError(Exception):
    """A request the API refuses, with the status, code and message the client sees."""

    def __init__(self, status: HTTPStatus, code: str, message: str, *, reason: str | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.reason = reason


# Most specific first: the first class an exception is an instance of decides its answer.
_STATUS: tuple[tuple[type[ImgclfError], HTTPStatus], ...] = (
    (NotFound, HTTPStatus.NOT_FOUND),
    (Conflict, HTTPStatus.CONFLICT),
    (AlreadyProcessed, HTTPStatus.CONFLICT),
    (NoActiveModel, HTTPStatus.SERVICE_UNAVAILABLE),
    (TransientError, HTTPStatus.SERVICE_UNAVAILABLE),
    (IntegrityError, HTTPStatus.INTERNAL_SERVER_ERROR),
    (ConfigError, HTTPStatus.INTERNAL_SERVER_ERROR),
)
# Rejections the client can fix by sending something else: the size and emptiness have their own statuses.
_REJECTION_STATUS = {
    "too_large": (HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "image_too_large"),
    "empty": (HTTPStatus.BAD_REQUEST, "empty_image"),
}


def from_project_error(exc: ImgclfError) -> ApiError:
    """The answer to one of the project's exceptions; internal ones keep their details out of the message."""
    if isinstance(exc, ImageRejected):
        status, code = _REJECTION_STATUS.get(exc.reason, (HTTPStatus.UNPROCESSABLE_ENTITY, "image_rejected"))
        return ApiError(status, code, exc.message, reason=exc.reason)
    for kind, status in _STATUS:
        if isinstance(exc, kind):
            if status >= HTTPStatus.INTERNAL_SERVER_ERROR and status != HTTPStatus.SERVICE_UNAVAILABLE:
                return ApiError(status, exc.code, "the server could not complete the request")
            if isinstance(exc, TransientError):
                return ApiError(status, "unavailable", "a backing service is busy or unreachable; try again")
            return ApiError(status, exc.code, str(exc))
    return ApiError(HTTPStatus.INTERNAL_SERVER_ERROR, "internal_error", "the server could not complete the request")


# ---------------------------------------------------------------- the answers: one shape everywhere
def error_response(status: int, code: str, message: str, *, reason: str | None = None,
                   request_id: str | None = None, headers: dict[str, str] | None = None) -> Response:
    error = {"code": code, "message": message}
    if reason:
        error["reason"] = reason
    if request_id:
        error["request_id"] = request_id
    return Response(status_code=int(status), content_type=content_types.APPLICATION_JSON, body={"error": error},
                    headers=headers)


def refused(exc: ApiError, event: Any) -> Response:
    return error_response(exc.status, exc.code, exc.message, reason=exc.reason)


def project_error(exc: ImgclfError, event: Any) -> Response:
    answer = from_project_error(exc)
    if answer.status >= HTTPStatus.INTERNAL_SERVER_ERROR and answer.status != HTTPStatus.SERVICE_UNAVAILABLE:
        return unexpected(exc, event, code=answer.code)
    headers = {"Retry-After": "5"} if answer.status == HTTPStatus.SERVICE_UNAVAILABLE else None
    return error_response(answer.status, answer.code, answer.message, reason=answer.reason, headers=headers)


def invalid_request(exc: RequestValidationError, event: Any) -> Response:
    errors = exc.errors()
    # Powertools reports a response that breaks its own model with this same exception: that is our fault.
    if any(tuple(e.get("loc", ()))[:1] == ("response",) for e in errors):
        return unexpected(exc, event)
    if any(e.get("type") == "json_invalid" for e in errors):
        return error_response(HTTPStatus.BAD_REQUEST, "invalid_json", "the body is not valid JSON")
    problems = "; ".join(f"{'.'.join(str(part) for part in e.get('loc', ()))}: {e.get('msg', e.get('type'))}"
                         for e in errors)
    return error_response(HTTPStatus.UNPROCESSABLE_ENTITY, "validation_error", problems or "invalid request")


def unsupported_content_type(exc: RequestUnsupportedContentType, event: Any) -> Response:
    return error_response(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", "send application/json")


def no_route(exc: NotFoundError, event: Any) -> Response:
    return error_response(HTTPStatus.NOT_FOUND, "not_found", f"no route for {event.http_method} {event.path}")


def unexpected(exc: Exception, event: Any, *, code: str = "internal_error") -> Response:
    """500 with the request id to quote; the details go to the log only."""
    request_id = event.request_context.request_id
    logger.exception("request failed", extra={"request_id": request_id, "error_type": type(exc).__name__})
    return error_response(HTTPStatus.INTERNAL_SERVER_ERROR, code,
                          "the server could not complete the request; quote the request id when reporting it",
                          request_id=request_id)


def refuse_non_json_body(event: dict) -> dict | None:
    """415 for a body that is not JSON on a route other than /classify, before Powertools tries to parse it
    as a form (it raises on a multipart body without a boundary)."""
    if event.get("httpMethod") != "POST" or event.get("resource") == "/classify":
        return None
    headers = {name.lower(): value for name, value in (event.get("headers") or {}).items()}
    media_type = headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type in ("", content_types.APPLICATION_JSON) or media_type.endswith("+json"):
        return None
    error = {"code": "unsupported_media_type", "message": f"send application/json, not {media_type}"}
    return {"statusCode": int(HTTPStatus.UNSUPPORTED_MEDIA_TYPE), "body": json.dumps({"error": error}),
            "headers": {"Content-Type": content_types.APPLICATION_JSON}, "isBase64Encoded": False}


# Which answer each kind of exception gets; a kind's closest entry along its MRO decides, as Powertools looks up.
ANSWERS = {
    ApiError: refused,
    ImgclfError: project_error,
    RequestValidationError: invalid_request,
    RequestUnsupportedContentType: unsupported_content_type,
    NotFoundError: no_route,
    Exception: unexpected,
}
