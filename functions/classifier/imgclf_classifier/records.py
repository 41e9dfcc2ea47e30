"""Prediction records in DynamoDB: one item per image, written only when it is newer than what is stored.

S3 delivers notifications at least once and in no particular order. Each event of one key carries a
``sequencer``, a hex string that grows with every PUT or DELETE of that key; sequencers of different lengths
compare correctly as strings once the shorter is left-padded with zeros. Records store the padded form, so
DynamoDB can compare them in a ConditionExpression and a late, older event can never overwrite a newer result.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from imgclf import aws, ddb
from imgclf.errors import AlreadyProcessed, TransientError
from imgclf.review import review_guard

CLASSIFIED, REJECTED = "classified", "rejected"
BATCH_GET_LIMIT = 100  # keys per BatchGetItem request
BATCH_GET_ATTEMPTS = 5  # rounds for keys DynamoDB leaves unprocessed under throttling
SEQUENCER_WIDTH = 64  # S3's sequencers are 16-20 hex digits today; the width leaves room for growth

# An event with a sequencer replaces a record from an older event, one without a sequencer (a hand-written
# event), or the same event's result under another model version (a redelivery after a promotion).
_ORDERED = ("attribute_not_exists(#image) OR attribute_not_exists(#seq) OR #seq < :seq"
            " OR (#seq = :seq AND #mv <> :mv)")
# Without a sequencer there is no order to protect: only the same content under the same model is skipped,
# and a record from an ordered event is never replaced.
_UNORDERED = "attribute_not_exists(#seq) AND NOT (#etag = :etag AND #mv = :mv)"
_NAMES = {"#image": "image", "#seq": "sequencer", "#mv": "model_version", "#etag": "etag"}


def normalise_sequencer(sequencer: str | None) -> str | None:
    """The fixed-width, upper-case form of an S3 sequencer, which orders correctly as a string."""
    if not sequencer:
        return None
    value = sequencer.strip().upper()
    if len(value) > SEQUENCER_WIDTH or any(c not in "0123456789ABCDEF" for c in value):
        raise ValueError(f"not an S3 sequencer: {sequencer!r}")
    return value.rjust(SEQUENCER_WIDTH, "0")


@dataclass(frozen=True)
class Version:
    """What identifies one upload of a key and the model that judged it, for the idempotency checks."""

    sequencer: str | None
    etag: str | None
    model_version: str | None  # the version that would judge the image now

    def settled_by(self, record: dict | None) -> str | None:
        """Why the stored record makes this event's work unnecessary ("stale", "duplicate"), or None."""
        if not record:
            return None
        stored = record.get("sequencer")
        if self.sequencer and stored:
            if stored > self.sequencer:
                return "stale"
            if stored < self.sequencer:
                return None
        elif stored:
            return "stale"  # an unordered event never replaces a record from an ordered one
        same_content = record.get("etag") == self.etag
        same_judgement = record.get("status") == REJECTED or record.get("model_version") == self.model_version
        return "duplicate" if same_content and same_judgement else None


class PredictionTable:
    """The predictions table, keyed by the image's s3:// URI."""

    def __init__(self, table_name: str):
        self.table_name = table_name

    def get(self, image: str) -> dict | None:
        """The stored record of an image (consistent read), or None."""
        return ddb.get_item(self.table_name, {"image": image})

    def get_many(self, images: list[str]) -> dict[str, dict]:
        """The stored records of several images (consistent reads, one request per 100), by image URI."""
        keys = [{"image": image} for image in dict.fromkeys(images)]
        found: dict[str, dict] = {}
        for start in range(0, len(keys), BATCH_GET_LIMIT):
            request = {self.table_name: {"Keys": keys[start:start + BATCH_GET_LIMIT], "ConsistentRead": True}}
            for attempt in range(BATCH_GET_ATTEMPTS):
                with aws.translated(f"batch get {self.table_name}"):
                    page = aws.resource("dynamodb").batch_get_item(RequestItems=request)
                for item in page.get("Responses", {}).get(self.table_name, []):
                    found[item["image"]] = ddb.from_dynamo(item)
                request = page.get("UnprocessedKeys")
                if not request:
                    break
                time.sleep(0.05 * 2**attempt)  # DynamoDB asks for backoff before retrying unprocessed keys
            else:
                raise TransientError(f"batch get {self.table_name}: keys left unprocessed")
        return found

    def put_if_newer(self, record: dict[str, Any], stored: dict[str, Any] | None = None) -> bool:
        """Write a record unless the table holds a newer event's or this same result; False when skipped.

        With stored (the record as read before this one was made), also only while nobody decided the image's
        review, or began to, since that read (imgclf.review.review_guard): record carries what it had.
        """
        values: dict[str, Any] = {":mv": record.get("model_version", "")}
        if record.get("sequencer"):
            condition, values[":seq"] = _ORDERED, record["sequencer"]
            names = {k: v for k, v in _NAMES.items() if k != "#etag"}
        else:
            condition, values[":etag"] = _UNORDERED, record.get("etag", "")
            names = {k: v for k, v in _NAMES.items() if k != "#image"}
        if stored:
            guard, guard_names, guard_values = review_guard(stored)
            condition = f"({condition}) AND {guard}"
            names.update(guard_names)
            values.update(guard_values)
        try:
            ddb.put_item(self.table_name, record, ConditionExpression=condition,
                         ExpressionAttributeNames=names, ExpressionAttributeValues=values)
        except AlreadyProcessed:
            return False
        return True
