"""The local stack delivers uploads to the classifier the way S3, SQS and Lambda do in AWS."""

from __future__ import annotations

import threading

import pytest

from imgclf.events import s3_records, sqs_body
from imgclf_local.stack import LocalStack


class Recorder:
    """A stand-in handler that keeps every event and fails the messages it is told to fail."""

    def __init__(self) -> None:
        self.events: list[dict] = []
        self.fail_keys: set[str] = set()
        self.lock = threading.Lock()

    def __call__(self, event, context):
        with self.lock:
            self.events.append(event)
        failures = []
        for record in event["Records"]:
            if any(ref.key in self.fail_keys for ref in s3_records(sqs_body(record))):
                failures.append({"itemIdentifier": record["messageId"]})
        return {"batchItemFailures": failures}

    def bodies(self) -> list[dict]:
        with self.lock:
            return [sqs_body(r) for e in self.events for r in e["Records"]]

    def object_keys(self) -> list[str]:
        return [ref.key for body in self.bodies() for ref in s3_records(body)]


@pytest.fixture(scope="module")
def recorder():
    return Recorder()


@pytest.fixture(scope="module")
def stack(recorder):
    with LocalStack(handlers={"ClassifierFunction": recorder}, api=False) as stack:
        yield stack


def test_upload_reaches_the_classifier_with_its_key_decoded(stack, recorder):
    # GIVEN keys that S3 URL-encodes in notifications: spaces, '+', and non-ASCII characters
    keys = ["uploads/my photo.jpg", "uploads/a+b=c.jpg", "uploads/café/naïve 日本.png"]
    s3 = stack.client("s3")

    # WHEN each is put under the upload prefix
    for key in keys:
        s3.put_object(Bucket=stack.bucket(), Key=key, Body=b"not really an image")

    # THEN the classifier receives each as an SQS-wrapped S3 notification with the real key
    stack.wait_until(lambda: set(keys) <= set(recorder.object_keys()), timeout=30)
    records = [r for e in recorder.events for r in e["Records"]]
    assert all(r["eventSource"] == "aws:sqs" and r["eventSourceARN"].endswith(":imgclf-local-classify")
               for r in records)


def test_the_s3_test_event_is_not_passed_on_as_an_image(stack, recorder):
    # GIVEN the stack configured the bucket notification, which makes S3 send an s3:TestEvent
    stack.wait_until(lambda: any(b.get("Event") == "s3:TestEvent" for b in recorder.bodies()), timeout=30)

    # WHEN that message is read as S3 records
    test_events = [b for b in recorder.bodies() if b.get("Event") == "s3:TestEvent"]

    # THEN it names no object
    assert all(list(s3_records(body)) == [] for body in test_events)


def test_objects_outside_the_upload_prefix_do_not_notify(stack, recorder):
    # GIVEN an object put outside uploads/, then one inside it as a marker
    s3 = stack.client("s3")
    s3.put_object(Bucket=stack.bucket(), Key="datasets/d/cat/cat-1.jpg", Body=b"x")
    s3.put_object(Bucket=stack.bucket(), Key="uploads/marker.jpg", Body=b"x")

    # WHEN the marker has arrived
    stack.wait_until(lambda: "uploads/marker.jpg" in recorder.object_keys(), timeout=30)

    # THEN the dataset object never did
    assert "datasets/d/cat/cat-1.jpg" not in recorder.object_keys()


def test_a_reported_failure_is_retried_then_lands_in_the_dlq(stack, recorder):
    # GIVEN a handler that reports one upload as failed every time
    key = "uploads/always fails.jpg"
    recorder.fail_keys.add(key)

    # WHEN it is uploaded
    stack.client("s3").put_object(Bucket=stack.bucket(), Key=key, Body=b"x")

    # THEN it is delivered maxReceiveCount times, then moved to the dead-letter queue
    max_receives = stack.template.queues["ClassifyQueue"].max_receive_count
    stack.wait_until(lambda: recorder.object_keys().count(key) >= max_receives, timeout=60)
    sqs = stack.client("sqs")

    def dlq_message():
        response = sqs.receive_message(QueueUrl=stack.queue_url("ClassifyDLQ"), WaitTimeSeconds=1)
        return response.get("Messages")

    messages = stack.wait_until(dlq_message, timeout=30)
    assert [ref.key for ref in s3_records(sqs_body({"body": messages[0]["Body"]}))] == [key]
    assert recorder.object_keys().count(key) == max_receives


def test_batches_follow_the_template_batch_size(stack, recorder):
    # GIVEN more uploads than one batch holds
    batch_size = stack.template.functions["ClassifierFunction"].sqs_triggers[0].batch_size
    keys = [f"uploads/batch/{i}.jpg" for i in range(batch_size + 3)]

    # WHEN they are put at once
    for key in keys:
        stack.client("s3").put_object(Bucket=stack.bucket(), Key=key, Body=b"x")

    # THEN every one arrives, and no invocation carried more than the batch size
    stack.wait_until(lambda: set(keys) <= set(recorder.object_keys()), timeout=30)
    assert max(len(e["Records"]) for e in recorder.events) <= batch_size
