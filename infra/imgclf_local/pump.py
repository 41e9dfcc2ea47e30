"""The SQS event source mapping: long-poll a queue and hand batches to a handler, as Lambda does."""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from typing import Any, Callable

from .template import REGION, Queue, SqsTrigger

log = logging.getLogger("imgclf.local.pump")


def lambda_record(message: dict, queue: Queue) -> dict:
    """One SQS message in the exact shape of a Lambda SQS event record."""
    body = message["Body"]
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": body,
        "attributes": message.get("Attributes", {}),
        "messageAttributes": {
            name: {
                "stringValue": value.get("StringValue"),
                "binaryValue": value.get("BinaryValue"),
                "stringListValues": [],
                "binaryListValues": [],
                "dataType": value["DataType"],
            }
            for name, value in message.get("MessageAttributes", {}).items()
        },
        "md5OfBody": message.get("MD5OfBody") or hashlib.md5(body.encode(), usedforsecurity=False).hexdigest(),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue.arn,
        "awsRegion": REGION,
    }


class SqsPump(threading.Thread):
    """Feeds one queue to one handler with the template's batch size, batching window and failure reporting."""

    def __init__(self, sqs, queue: Queue, queue_url: str, trigger: SqsTrigger, invoke: Callable[[dict], Any],
                 *, retry_visibility_s: int = 1, poll_s: int = 1):
        super().__init__(name=f"pump-{queue.name}", daemon=True)
        self.sqs, self.queue, self.queue_url, self.trigger = sqs, queue, queue_url, trigger
        self.invoke_handler = invoke
        # Lambda leaves a failed message invisible for the queue's whole visibility timeout; locally a short
        # delay keeps retries (and the road to the DLQ) observable in seconds, with the same receive counts.
        self.retry_visibility_s = retry_visibility_s
        self.poll_s = poll_s
        self.invocations = 0
        self.errors = 0
        self._stopping = threading.Event()
        self.idle = threading.Event()

    def stop(self, timeout: float = 10) -> None:
        self._stopping.set()
        self.join(timeout)

    def run(self) -> None:
        while not self._stopping.is_set():
            try:
                batch = self._collect_batch()
                if batch:
                    self.idle.clear()
                    self._deliver(batch)
                else:
                    self.idle.set()
            except Exception:  # the pump must outlive any one failure, as the real mapping does
                if self._stopping.is_set():
                    return
                log.exception("pump for %s failed; retrying", self.queue.name)
                time.sleep(0.5)

    def _collect_batch(self) -> list[dict]:
        """Receive until the batch is full or the batching window, started by the first message, closes."""
        batch: list[dict] = []
        deadline = None
        while len(batch) < self.trigger.batch_size and not self._stopping.is_set():
            wait = self.poll_s if deadline is None else max(0.0, deadline - time.monotonic())
            response = self.sqs.receive_message(
                QueueUrl=self.queue_url,
                MaxNumberOfMessages=min(10, self.trigger.batch_size - len(batch)),
                WaitTimeSeconds=int(round(wait)),
                AttributeNames=["All"],
                MessageAttributeNames=["All"],
            )
            messages = response.get("Messages", [])
            batch.extend(messages)
            if not batch:
                return batch
            if deadline is None:
                deadline = time.monotonic() + self.trigger.batching_window_s
            if time.monotonic() >= deadline or (not messages and self.trigger.batching_window_s == 0):
                break
        return batch

    def _deliver(self, batch: list[dict]) -> None:
        event = {"Records": [lambda_record(m, self.queue) for m in batch]}
        self.invocations += 1
        try:
            result = self.invoke_handler(event)
        except Exception:
            self.errors += 1
            log.exception("handler failed on a batch of %d from %s", len(batch), self.queue.name)
            failed = {m["MessageId"] for m in batch}
        else:
            failed = self._failed_ids(result, batch)
        for message in batch:
            if message["MessageId"] in failed:
                self.sqs.change_message_visibility(
                    QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"],
                    VisibilityTimeout=self.retry_visibility_s,
                )
            else:
                self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])

    def _failed_ids(self, result: Any, batch: list[dict]) -> set[str]:
        """The messages to retry: the reported failures, or the whole batch when the report is malformed."""
        if not self.trigger.report_batch_item_failures:
            return set()
        if result is None or (isinstance(result, dict) and not result.get("batchItemFailures")):
            return set()
        try:
            failed = {item["itemIdentifier"] for item in result["batchItemFailures"]}
        except (TypeError, KeyError):
            log.error("malformed batchItemFailures %r: the whole batch is retried", result)
            return {m["MessageId"] for m in batch}
        known = {m["MessageId"] for m in batch}
        if not failed <= known:  # Lambda treats an unknown identifier as a failure of the whole batch
            log.error("batchItemFailures names unknown messages %s: the whole batch is retried", failed - known)
            return known
        return failed
