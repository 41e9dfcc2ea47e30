"""S3 notifications, direct or wrapped in SQS messages, turned into plain object references."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Iterator

from .keys import decode_event_key


@dataclass(frozen=True)
class ObjectRef:
    """One S3 object named by a notification."""

    bucket: str
    key: str
    size: int | None = None
    etag: str | None = None
    version_id: str | None = None
    sequencer: str | None = None
    event_name: str = ""
    event_time: str = ""

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


class BadEvent(ValueError):
    """A message that is not an S3 notification at all."""


def is_test_event(body: dict) -> bool:
    """S3 sends an s3:TestEvent when a notification is configured; it names no object."""
    return body.get("Event") == "s3:TestEvent"


def s3_records(notification: dict) -> Iterator[ObjectRef]:
    """The objects of one S3 notification document; empty for the s3:TestEvent."""
    if is_test_event(notification):
        return
    records = notification.get("Records")
    if not isinstance(records, list):
        raise BadEvent("not an S3 notification: no Records list")
    for record in records:
        if not str(record.get("eventSource", "")).endswith("s3") or "s3" not in record:
            raise BadEvent(f"not an S3 record: eventSource={record.get('eventSource')!r}")
        obj = record["s3"].get("object", {})
        yield ObjectRef(
            bucket=record["s3"]["bucket"]["name"],
            key=decode_event_key(obj["key"]),
            size=obj.get("size"),
            etag=obj.get("eTag"),
            version_id=obj.get("versionId"),
            sequencer=obj.get("sequencer"),
            event_name=record.get("eventName", ""),
            event_time=record.get("eventTime", ""),
        )


def sqs_body(record: dict[str, Any]) -> dict:
    """The JSON body of one SQS record."""
    try:
        body = json.loads(record["body"])
    except (KeyError, TypeError, json.JSONDecodeError) as exc:
        raise BadEvent(f"SQS message body is not JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise BadEvent("SQS message body is not a JSON object")
    return body


def is_sqs_event(event: dict) -> bool:
    records = event.get("Records") or []
    return bool(records) and records[0].get("eventSource") == "aws:sqs"
