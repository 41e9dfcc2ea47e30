"""POST /classify: the image bytes of a request (raw, base64 JSON or an upload in S3) and their prediction."""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from pydantic import ValidationError

from imgclf import images, keys
from imgclf.inference import LoadedModel, Prediction
from imgclf.inference.storage import read_object

from .errors import ApiError
from .schemas import IMAGE_MEDIA_TYPES, ClassifyJsonRequest

RAW_MEDIA_TYPES = (*IMAGE_MEDIA_TYPES, "application/octet-stream")


@dataclass(frozen=True)
class ImageLimits:
    """What an image may be: bytes, pixels (decompression bombs) and the shorter side."""

    max_bytes: int
    max_pixels: int
    min_side: int


@dataclass(frozen=True)
class Uploads:
    """The only S3 objects /classify may read: this stack's bucket, under the upload prefix."""

    bucket: str
    prefix: str
    s3: Any


def request_image(content_type: str, body: str | None, is_base64: bool, *, limits: ImageLimits,
                  uploads: Uploads) -> bytes:
    """The image a /classify request carries, or ApiError saying what is wrong with the request."""
    media_type = content_type.split(";")[0].strip().lower()
    if not body:
        raise ApiError(HTTPStatus.BAD_REQUEST, "empty_body", "send the image as the body, or JSON with "
                       "image_base64 or s3_uri")
    if media_type in RAW_MEDIA_TYPES:
        # API Gateway base64-encodes the binary media types of the template; anything else arrives as text.
        return _b64decode(body, limits.max_bytes) if is_base64 else _checked_size(body.encode(), limits.max_bytes)
    if media_type == "application/json":
        request = _json_request(base64.b64decode(body).decode("utf-8", "replace") if is_base64 else body)
        if request.image_base64 is not None:
            return _b64decode(_strip_data_url(request.image_base64), limits.max_bytes)
        return _read_upload(request.s3_uri or "", uploads, limits.max_bytes)
    raise ApiError(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type",
                   f"send {', '.join(RAW_MEDIA_TYPES)} or application/json, not {media_type or 'no Content-Type'}")


def classify(data: bytes, model: LoadedModel, limits: ImageLimits) -> tuple[Prediction, tuple[int, int]]:
    """Decode untrusted bytes (ImageRejected says why not) and classify them with one pinned model."""
    image = images.decode(data, max_pixels=limits.max_pixels, min_side=limits.min_side)
    return model.classify([image])[0], image.size


def _json_request(text: str) -> ClassifyJsonRequest:
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise ApiError(HTTPStatus.BAD_REQUEST, "invalid_json", f"the body is not valid JSON: {exc}") from exc
    try:
        return ClassifyJsonRequest.model_validate(document)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors())
        raise ApiError(HTTPStatus.UNPROCESSABLE_ENTITY, "validation_error", problems) from exc


def _strip_data_url(value: str) -> str:
    """Accept what FileReader.readAsDataURL gives: data:image/png;base64,...."""
    head, sep, rest = value.partition(",")
    return rest if sep and head.startswith("data:") and head.endswith(";base64") else value


def _b64decode(text: str, max_bytes: int) -> bytes:
    # Refuse from the encoded length, before decoding allocates the whole image.
    if (len(text) // 4) * 3 > max_bytes + 3:
        raise _too_large(max_bytes)
    try:
        data = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ApiError(HTTPStatus.BAD_REQUEST, "invalid_base64", f"the image is not valid base64: {exc}") from exc
    return _checked_size(data, max_bytes)


def _checked_size(data: bytes, max_bytes: int) -> bytes:
    if len(data) > max_bytes:
        raise _too_large(max_bytes)
    return data


def _too_large(max_bytes: int) -> ApiError:
    return ApiError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "image_too_large",
                    f"images may be at most {max_bytes} bytes; downscale it, or upload it with POST /uploads",
                    reason="too_large")


def _read_upload(uri: str, uploads: Uploads, max_bytes: int) -> bytes:
    """Read an uploaded image, refusing any object outside this stack's upload prefix."""
    try:
        bucket, key = keys.parse_s3_uri(uri)
    except ValueError as exc:
        raise ApiError(HTTPStatus.BAD_REQUEST, "invalid_s3_uri", str(exc)) from exc
    # The function may read models and datasets too: only uploads are the caller's to name.
    if bucket != uploads.bucket or not key.startswith(uploads.prefix) or "/../" in f"/{key}/":
        raise ApiError(HTTPStatus.BAD_REQUEST, "invalid_s3_uri",
                       f"only objects under s3://{uploads.bucket}/{uploads.prefix} can be classified")
    return read_object(uploads.s3, bucket, key, max_bytes=max_bytes)
