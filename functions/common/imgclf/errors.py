"""The project's own exceptions: adapters translate AWS and library errors into these."""

from __future__ import annotations


class ImgclfError(Exception):
    """Base of every error the project raises on purpose."""

    code = "internal_error"


class ConfigError(ImgclfError):
    """A required setting is missing or malformed."""

    code = "config_error"


class ImageRejected(ImgclfError):
    """An image that can never be processed: retrying will not help."""

    code = "image_rejected"

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason
        self.message = message


class TransientError(ImgclfError):
    """A fault that may pass: the caller should retry."""

    code = "transient"


class NotFound(ImgclfError):
    """The requested item or object does not exist."""

    code = "not_found"


class ObjectNotFound(NotFound):
    """No S3 object under the key (or no such version of it), as opposed to a missing bucket or table."""


class AlreadyProcessed(ImgclfError):
    """A conditional write found newer or identical work already recorded."""

    code = "already_processed"


class ConditionFailed(ImgclfError):
    """An S3 conditional write found the object changed since it was read: read it again and retry."""

    code = "condition_failed"


class AccessDenied(ImgclfError):
    """A role may not do what was asked of it: the deployment's permissions need fixing, retrying will not help."""

    code = "access_denied"


class Conflict(ImgclfError):
    """The request conflicts with the current state (e.g. a refused promotion)."""

    code = "conflict"


class NoActiveModel(ImgclfError):
    """Nothing has been promoted yet, so nothing can be classified."""

    code = "no_model"


class IntegrityError(ImgclfError):
    """A downloaded artifact does not match the checksum the registry recorded."""

    code = "integrity_error"
