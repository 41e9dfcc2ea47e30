"""The OpenAPI side of the routes: security, documented responses and bodies, and the finished document."""

from __future__ import annotations

import json
import re
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, content_types
from aws_lambda_powertools.event_handler.openapi.models import Server, Tag

from .schemas import IMAGE_MEDIA_TYPES, ClassifyJsonRequest, ErrorResponse

MANAGEMENT = [{"sigv4": []}]
# The review page's routes under /review/: a reviewer's id token from the stack's Cognito pool.
REVIEWER = [{"reviewer": []}]
# No requirement ({}), or the usage plan's API key where the stack is deployed with RequireApiKey=true.
PUBLIC = [{}, {"api_key": []}]
# Pages a browser opens: never a key, since a browser sends none when it opens a page.
OPEN: list[dict] = [{}]
SECURITY_SCHEMES = {
    "sigv4": {"type": "apiKey", "name": "Authorization", "in": "header",
              "description": "AWS Signature Version 4 (IAM) of the execute-api service"},
    "api_key": {"type": "apiKey", "name": "x-api-key", "in": "header",
                "description": "Usage plan key, when the stack requires one on the public routes"},
    "reviewer": {"type": "apiKey", "name": "Authorization", "in": "header",
                 "description": "The id token (JWT) of a reviewer signed in to the stack's Cognito user pool"},
}
DESCRIPTION = (
    "Classify images with the active model, follow the predictions of images dropped into the bucket, "
    "collect datasets, train and promote models. Management routes need SigV4 (IAM) signatures; the review "
    "page's routes under /review/ take a reviewer's Cognito id token instead (the same handlers as their IAM "
    "twins); /classify and the pages are public and throttled by a usage plan. Every error is "
    '{"error": {"code", "message"}}.'
)
TAGS = ("classify", "predictions", "datasets", "training", "models", "review", "health", "page")

_ERROR_TEXT = {
    400: "The request is malformed (invalid_json, invalid_base64, invalid_s3_uri, invalid_token, ...)",
    401: "No valid id token of the reviewer pool in Authorization (UNAUTHORIZED, answered by API Gateway)",
    404: "Not found",
    409: "Conflicts with the current state",
    413: "The image is too large (image_too_large)",
    415: "Unsupported Content-Type (unsupported_media_type)",
    422: "The request failed validation (validation_error)",
    500: "Unexpected server error (error.request_id identifies it)",
    503: "A backing service is unavailable; retry after Retry-After seconds",
}

_RAW_IMAGE = {"schema": {"type": "string", "format": "binary"}}
# /classify reads its body raw (binary or JSON), so the body is described here, not declared as a parameter.
CLASSIFY_BODY = {
    "required": True,
    "description": "The image file itself (its media type as Content-Type), or JSON naming it.",
    "content": {
        **{media_type: _RAW_IMAGE for media_type in (*IMAGE_MEDIA_TYPES, "application/octet-stream")},
        content_types.APPLICATION_JSON: {"schema": ClassifyJsonRequest.model_json_schema()},
    },
}
PAGE_RESPONSES = {200: {"description": "The page", "content": {"text/html": {"schema": {"type": "string"}}}}}

_REF = re.compile(r'"#/components/schemas/([^"]+)"')


def responses(status: int, model: type, description: str, *errors: int, **texts: str) -> dict[int, dict]:
    """A route's documented responses: its success body, and the error shape for each of its errors.

    Every route may answer 422 (validation) and 500; texts overrides a description, e.g. e422="...".
    """
    documented = {status: {"description": description, "content": {content_types.APPLICATION_JSON: {"model": model}}}}
    for code in sorted({*errors, 422, 500}):
        documented[code] = error_response(code, texts.get(f"e{code}"))
    return documented


def error_response(code: int, text: str | None = None) -> dict:
    """One documented error answer: the error shape, with what the status means here."""
    return {"description": text or _ERROR_TEXT[code],
            "content": {content_types.APPLICATION_JSON: {"model": ErrorResponse}}}


def document(app: APIGatewayRestResolver, *, version: str) -> dict[str, Any]:
    """The OpenAPI 3.1 document of the app's routes."""
    generated = app.get_openapi_json_schema(
        title="imgclf API",
        version=version,
        description=DESCRIPTION,
        # Relative to where the document is served, so it holds under any stage prefix.
        servers=[Server(url=".", description="The API stage that serves this document")],
        tags=[Tag(name=name) for name in TAGS],
        security_schemes=SECURITY_SCHEMES,
        security=MANAGEMENT,
    )
    return _tidy(json.loads(generated))


def _tidy(document: dict[str, Any]) -> dict[str, Any]:
    """Drop what Powertools adds on its own and the API never answers: its 422 shape, unreferenced schemas."""
    for operation in (op for path in document["paths"].values() for op in path.values()):
        if "HTTPValidationError" in json.dumps(operation["responses"].get("422", {})):
            del operation["responses"]["422"]
    schemas = document["components"]["schemas"]
    refs = set(_REF.findall(json.dumps(document["paths"])))
    pending = list(refs)
    while pending:
        for ref in _REF.findall(json.dumps(schemas.get(pending.pop(), {}))):
            if ref not in refs:
                refs.add(ref)
                pending.append(ref)
    document["components"]["schemas"] = {name: schema for name, schema in schemas.items() if name in refs}
    return document
