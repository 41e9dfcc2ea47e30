"""POST /uploads: a presigned PUT URL for one new object under the upload prefix."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from typing import Any

from imgclf import keys

from .errors import ApiError

EXPIRES_IN_S = 900
_SUFFIX = {"image/jpeg": ".jpg", "image/png": ".png", "image/gif": ".gif", "image/webp": ".webp",
           "image/bmp": ".bmp"}


def new_upload_key(prefix: str, content_type: str, now: datetime) -> str:
    """A key nobody else can have chosen, dated so the prefix lists in upload order."""
    return f"{prefix}{now:%Y/%m/%d}/{uuid.uuid4().hex}{_SUFFIX[content_type]}"


def presign_upload(s3, *, bucket: str, prefix: str, content_type: str, size: int | None, max_bytes: int,
                   now: datetime | None = None, expires_in: int = EXPIRES_IN_S) -> dict[str, Any]:
    """A URL to PUT one image to a fresh key; the signature binds the Content-Type and expires."""
    if size is not None and size > max_bytes:
        raise ApiError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "image_too_large",
                       f"images may be at most {max_bytes} bytes, not {size}", reason="too_large")
    now = now or datetime.now(UTC)
    key = new_upload_key(prefix, content_type, now)
    # ContentType is signed: a PUT with another Content-Type header fails the signature check.
    url = s3.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": key, "ContentType": content_type},
                                    ExpiresIn=expires_in, HttpMethod="PUT")
    return {
        "url": url,
        "method": "PUT",
        "headers": {"Content-Type": content_type},
        "key": key,
        "s3_uri": keys.s3_uri(bucket, key),
        "expires_in": expires_in,
        "expires_at": (now + timedelta(seconds=expires_in)).isoformat(timespec="seconds"),
        "prediction_path": f"predictions/{key}",
    }
