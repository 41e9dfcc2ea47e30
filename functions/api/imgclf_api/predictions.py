"""Reading the predictions table: one image's record, or pages of them by key prefix or newest first."""

from __future__ import annotations

import base64
import binascii
import json
from http import HTTPStatus
from typing import Any

from boto3.dynamodb.conditions import Attr, Key

from imgclf import ddb, keys
from imgclf.errors import NotFound

from .errors import ApiError

BY_KEY, BY_TIME = "by-key", "by-time"
MAX_TOKEN_CHARS = 4096
VERDICTS = ("label", "unknown")
# The attributes of each index's LastEvaluatedKey: the table's hash key plus the index's keys.
_TOKEN_KEYS = {BY_KEY: {"image", "bucket", "key"}, BY_TIME: {"image", "bucket", "processed_at"}}
# What the API shows of a record; sequencers and ETags are the classifier's bookkeeping.
FIELDS = ("image", "bucket", "key", "size", "status", "label", "confidence", "probabilities", "verdict",
          "unknown_reason", "calibrated", "ood_score", "model_version", "precision", "uploaded_at", "processed_at",
          "latency_ms", "reason", "message", "margin", "sampled", "review_reason", "queued_at", "review", "human_label",
          "reviewed_by", "reviewed_at")


def public(record: dict[str, Any]) -> dict[str, Any]:
    """The fields of a record that the API returns."""
    return {name: record[name] for name in FIELDS if record.get(name) is not None}


def get_prediction(table_name: str, bucket: str, key: str) -> dict[str, Any]:
    """The record of one image of the bucket (NotFound until the classifier has written it)."""
    record = ddb.get_item(table_name, {"image": keys.s3_uri(bucket, key)})
    if not record:
        raise NotFound(f"no prediction for {key!r} (yet)")
    return public(record)


def list_predictions(table_name: str, bucket: str, *, prefix: str = "", limit: int = 20, token: str | None = None,
                     verdict: str | None = None) -> tuple[list[dict[str, Any]], str | None]:
    """One page of records: keys starting with prefix in key order, or, without a prefix, newest first.

    With a verdict only the records with that verdict come back; the filter runs after the query's limit, so such
    a page may hold fewer records than the limit (even none) and still have a next token.
    """
    index = BY_KEY if prefix else BY_TIME
    start = decode_token(token, index=index, bucket=bucket, prefix=prefix, verdict=verdict) if token else None
    condition = Key("bucket").eq(bucket)
    if prefix:
        condition &= Key("key").begins_with(prefix)
    query: dict[str, Any] = {"IndexName": index, "KeyConditionExpression": condition,
                             "ScanIndexForward": bool(prefix)}
    if verdict:
        query["FilterExpression"] = Attr("verdict").eq(verdict)
    items, last = ddb.query_page(table_name, limit, start, **query)
    return [public(item) for item in items], encode_token(index, prefix, last, verdict) if last else None


def encode_token(index: str, prefix: str, last_key: dict[str, Any], verdict: str | None = None) -> str:
    """An opaque continuation token: where the page ended, and the query it belongs to."""
    query = {"i": index, "p": prefix, "k": last_key} | ({"v": verdict} if verdict else {})
    document = json.dumps(query, separators=(",", ":"), sort_keys=True)
    return base64.urlsafe_b64encode(document.encode()).decode().rstrip("=")


def decode_token(token: str, *, index: str, bucket: str, prefix: str, verdict: str | None = None) -> dict[str, str]:
    """The ExclusiveStartKey of a token made by encode_token for the same query, or ApiError 400."""
    try:
        if len(token) > MAX_TOKEN_CHARS:
            raise ValueError("too long")
        document = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        if not isinstance(document, dict) or document.get("i") != index or document.get("p") != prefix \
                or document.get("v") != verdict:
            raise ValueError("the token belongs to another query")
        start = document.get("k")
        if not isinstance(start, dict) or set(start) != _TOKEN_KEYS[index]:
            raise ValueError("malformed position")
        if not all(isinstance(value, str) for value in start.values()) or start["bucket"] != bucket:
            raise ValueError("malformed position")
        if index == BY_KEY and not start["key"].startswith(prefix):
            raise ValueError("the position is outside the prefix")
    except (ValueError, KeyError, TypeError, binascii.Error, UnicodeDecodeError) as exc:
        raise ApiError(HTTPStatus.BAD_REQUEST, "invalid_token",
                       "next is not a token from a previous page of this same listing") from exc
    return start
