"""An S3 object of JSON lines that several writers append to safely: read, modify, conditional put."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

from . import aws, backoff
from .errors import ConditionFailed, ObjectNotFound, TransientError
from .log import get_logger

logger = get_logger("imgclf")


class JsonLinesLog:
    """One S3 object of JSON lines, appended to by read-modify-write under a conditional put."""

    def __init__(
        self,
        s3,
        bucket: str,
        key: str,
        *,
        max_attempts: int = 30,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self._s3 = s3
        self.bucket = bucket
        self.key = key
        self._max_attempts = max_attempts
        self._sleep = sleep

    def read(self) -> tuple[list[dict], bytes, str | None]:
        """The records, the raw body and its ETag; no records and no ETag when the object does not exist."""
        try:
            with aws.translated(f"read s3://{self.bucket}/{self.key}"):
                obj = self._s3.get_object(Bucket=self.bucket, Key=self.key)
                body = obj["Body"].read()
        except ObjectNotFound:
            return [], b"", None
        return parse_lines(body, self.key), body, obj["ETag"]

    def append(self, plan: Callable[[list[dict]], list[dict]]) -> tuple[list[dict], list[dict]]:
        """Append what plan(existing records) returns; returns (existing, appended) of the write that won."""
        for attempt in range(self._max_attempts):
            existing, body, etag = self.read()
            new = plan(existing)
            if not new:
                return existing, []
            if body and not body.endswith(b"\n"):
                body += b"\n"
            body += "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in new).encode()
            condition = {"IfMatch": etag} if etag else {"IfNoneMatch": "*"}
            try:
                with aws.translated(f"append to s3://{self.bucket}/{self.key}"):
                    self._s3.put_object(
                        Bucket=self.bucket,
                        Key=self.key,
                        Body=body,
                        ContentType="application/x-ndjson",
                        **condition,
                    )
                return existing, new
            except ConditionFailed:
                # Another writer appended first: wait a little (jittered, so the losers spread out) and re-plan.
                self._sleep(backoff.delay(attempt, base=0.05, cap=2.0))
        raise TransientError(
            f"s3://{self.bucket}/{self.key} kept changing during {self._max_attempts} appends"
        )


def parse_lines(body: bytes, name: str = "") -> list[dict]:
    """The JSON objects of a JSON-lines body; an unreadable line is logged and skipped, not fatal."""
    records = []
    for number, line in enumerate(body.decode("utf-8", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            logger.warning("skipping an unreadable line", extra={"object": name, "line": number})
            continue
        if isinstance(record, dict):
            records.append(record)
    return records
