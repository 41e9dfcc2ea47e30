"""Errors the API answers with, and how the project's own exceptions map to HTTP statuses and codes."""

from __future__ import annotations

from http import HTTPStatus

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
