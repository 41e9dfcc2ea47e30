"""The classifier's domain logic against moto: records, idempotency, ordering, rejections and retries."""

from __future__ import annotations

import io
import json
from decimal import Decimal

import numpy as np
import pytest
from botocore.exceptions import ClientError
from PIL import Image

from imgclf import aws
from imgclf.errors import TransientError
from imgclf.inference.model import LoadedModel
from imgclf_classifier.records import normalise_sequencer
from imgclf_classifier.service import process_event
from tests.support.events import s3_record
from tests.support.images import jpeg_bytes, synthetic_photo


@pytest.fixture
def inferences(monkeypatch) -> list[int]:
    """The batch size of every forward pass the tests cause."""
    calls: list[int] = []
    original = LoadedModel.predict

    def counting(self, prepared):
        calls.append(len(prepared))
        return original(self, prepared)

    monkeypatch.setattr(LoadedModel, "predict", counting)
    return calls


def stored(deps, key: str) -> dict | None:
    return deps.table.get(f"s3://{deps.settings.data_bucket}/{key}")


def test_upload_is_classified_with_a_complete_record(deps, publish_model, upload, sqs_event, photo_bytes):
    # GIVEN a promoted model and an uploaded photo
    publish_model("run-1")
    obj = upload("uploads/photo.jpg", photo_bytes)

    # WHEN its notification is processed
    result = process_event(sqs_event(obj), deps)

    # THEN one classified record carries the prediction, the object's identity and the timing
    assert result.failed_message_ids == []
    record = stored(deps, "uploads/photo.jpg")
    assert record["status"] == "classified"
    assert (record["bucket"], record["key"]) == (deps.settings.data_bucket, "uploads/photo.jpg")
    assert record["etag"] == obj["eTag"] and record["version_id"] == obj["versionId"]
    assert record["model_version"] == "run-1"
    assert set(record["probabilities"]) == {"ants", "bees"}
    assert record["label"] == max(record["probabilities"], key=record["probabilities"].get)
    assert record["confidence"] == pytest.approx(max(record["probabilities"].values()))
    assert sum(record["probabilities"].values()) == pytest.approx(1, abs=1e-5)
    assert record["sequencer"] == normalise_sequencer(obj["sequencer"]) and len(record["sequencer"]) == 64
    assert record["processed_at"].endswith("+00:00") and record["latency_ms"] >= 0


def test_probabilities_are_stored_as_decimals(deps, publish_model, upload, sqs_event, photo_bytes):
    # GIVEN a classified upload
    publish_model("run-1")
    process_event(sqs_event(upload("uploads/photo.jpg", photo_bytes)), deps)

    # WHEN the raw item is read
    item = aws.resource("dynamodb").Table(deps.settings.predictions_table).get_item(
        Key={"image": f"s3://{deps.settings.data_bucket}/uploads/photo.jpg"})["Item"]

    # THEN numbers are DynamoDB decimals
    assert all(isinstance(v, Decimal) for v in item["probabilities"].values())
    assert isinstance(item["confidence"], Decimal)


def test_one_invocation_infers_its_images_as_one_batch(deps, publish_model, upload, sqs_event, inferences):
    # GIVEN ten uploads
    publish_model("run-1")
    rng = np.random.default_rng(3)
    photos = [jpeg_bytes(synthetic_photo(rng, (90, 90, 90), (100, 80))) for _ in range(10)]
    objs = [upload(f"uploads/p{i}.jpg", photo) for i, photo in enumerate(photos)]

    # WHEN their batch is processed
    result = process_event(sqs_event(*objs), deps)

    # THEN a single forward pass classified all ten
    assert inferences == [10]
    assert result.count("classified") == 10


def test_duplicate_event_runs_no_inference_and_writes_nothing(deps, publish_model, upload, sqs_event,
                                                              photo_bytes, inferences):
    # GIVEN an upload already classified
    publish_model("run-1")
    event = sqs_event(upload("uploads/photo.jpg", photo_bytes))
    process_event(event, deps)
    first = stored(deps, "uploads/photo.jpg")

    # WHEN the same notification arrives again
    result = process_event(event, deps)

    # THEN nothing was inferred or written
    assert [o.status for o in result.outcomes] == ["duplicate"]
    assert inferences == [1]
    assert stored(deps, "uploads/photo.jpg") == first


def test_newer_upload_of_the_same_key_replaces_the_record(deps, publish_model, upload, sqs_event,
                                                          photo_bytes):
    # GIVEN a classified upload
    publish_model("run-1")
    process_event(sqs_event(upload("uploads/photo.jpg", photo_bytes)), deps)

    # WHEN the key is uploaded again with other content
    newer = upload("uploads/photo.jpg", jpeg_bytes(Image.new("RGB", (100, 100), (0, 200, 0))))
    process_event(sqs_event(newer), deps)

    # THEN the record describes the newer upload
    record = stored(deps, "uploads/photo.jpg")
    assert (record["etag"], record["version_id"]) == (newer["eTag"], newer["versionId"])


def test_older_event_arriving_late_never_overwrites_a_newer_result(deps, publish_model, upload, sqs_event,
                                                                   photo_bytes, inferences):
    # GIVEN two uploads of one key whose notifications arrive in reverse order
    publish_model("run-1")
    older = upload("uploads/photo.jpg", photo_bytes)
    newer = upload("uploads/photo.jpg", jpeg_bytes(Image.new("RGB", (100, 100), (0, 200, 0))))
    process_event(sqs_event(newer), deps)

    # WHEN the older notification is processed last
    result = process_event(sqs_event(older), deps)

    # THEN it is skipped before any download or inference and the newer result stays
    assert [o.status for o in result.outcomes] == ["stale"]
    assert inferences == [1]
    assert stored(deps, "uploads/photo.jpg")["etag"] == newer["eTag"]


def test_conditional_write_refuses_an_older_sequencer(deps, table):
    # GIVEN a record written for sequencer 0x0100
    base = {"image": "s3://b/uploads/x.jpg", "bucket": "b", "key": "uploads/x.jpg", "status": "classified",
            "model_version": "run-1", "etag": "new"}
    assert table.put_if_newer({**base, "sequencer": normalise_sequencer("0100")})

    # WHEN writes race in for a shorter, smaller sequencer, the same one, and a longer, larger one
    late = table.put_if_newer({**base, "etag": "old", "sequencer": normalise_sequencer("FF")})
    same = table.put_if_newer({**base, "sequencer": normalise_sequencer("100")})
    newer = table.put_if_newer({**base, "etag": "newest", "sequencer": normalise_sequencer("0101")})

    # THEN only the newer one wins, whatever the lengths of the hex strings
    assert (late, same, newer) == (False, False, True)
    assert table.get("s3://b/uploads/x.jpg")["etag"] == "newest"


def test_sequencers_of_different_lengths_order_as_numbers():
    assert normalise_sequencer("FF") < normalise_sequencer("0100") < normalise_sequencer("00ABC0000000000000")
    assert normalise_sequencer("0055aed6dcd90281e5") == normalise_sequencer("55AED6DCD90281E5")
    with pytest.raises(ValueError):
        normalise_sequencer("not-hex")


def test_redelivery_after_a_promotion_is_classified_again(deps, publish_model, upload, sqs_event, photo_bytes,
                                                          clock):
    # GIVEN an upload classified by run-1
    publish_model("run-1")
    event = sqs_event(upload("uploads/photo.jpg", photo_bytes))
    process_event(event, deps)

    # WHEN run-2 is promoted and, after the check interval, the same notification comes back
    publish_model("run-2")
    clock.advance(deps.settings.model_check_seconds + 1)
    process_event(event, deps)

    # THEN the record carries run-2's answer
    assert stored(deps, "uploads/photo.jpg")["model_version"] == "run-2"


def test_new_promotion_is_served_only_after_the_check_interval(deps, publish_model):
    # GIVEN run-1 loaded
    publish_model("run-1")
    assert deps.classifier.model().version == "run-1"

    # WHEN run-2 is promoted
    publish_model("run-2")

    # THEN run-1 is served until model_check_seconds have passed, run-2 after
    assert deps.classifier.model().version == "run-1"
    deps.classifier.store._clock.advance(deps.settings.model_check_seconds + 0.5)
    assert deps.classifier.model().version == "run-2"


def test_without_a_promoted_model_nothing_is_lost(deps, publish_model, upload, sqs_event, photo_bytes):
    # GIVEN an upload and no promoted model
    event = sqs_event(upload("uploads/photo.jpg", photo_bytes))

    # WHEN it is processed
    result = process_event(event, deps)

    # THEN it is reported for redelivery and nothing is written
    assert result.failed_message_ids == ["m0"]
    assert [o.reason for o in result.outcomes] == ["no_model"]
    assert stored(deps, "uploads/photo.jpg") is None

    # AND once a model is promoted, the redelivered message is classified
    publish_model("run-1")
    assert process_event(event, deps).failed_message_ids == []
    assert stored(deps, "uploads/photo.jpg")["status"] == "classified"


def test_s3_test_event_is_ignored(deps, event):
    # GIVEN the s3:TestEvent S3 sends when the notification is configured (no model needed)
    # WHEN it is processed
    result = process_event(event("sqs_s3_test_event"), deps)

    # THEN it succeeds without outcome or record
    assert result.outcomes == [] and result.failed_message_ids == []


def test_url_encoded_keys_are_decoded(deps, publish_model, upload, sqs_event, photo_bytes):
    # GIVEN uploads whose keys have spaces, plus signs and non-ASCII letters
    publish_model("run-1")
    keys = ["uploads/holiday photos/café + friends.jpg", "uploads/a+b=c&d.jpeg", "uploads/日本 写真.png"]
    png = io.BytesIO()
    Image.new("RGB", (90, 90), (10, 20, 30)).save(png, format="PNG")
    objs = [upload(key, png.getvalue() if key.endswith(".png") else photo_bytes) for key in keys]

    # WHEN their (URL-encoded) notifications are processed
    result = process_event(sqs_event(*objs), deps)

    # THEN each record is keyed by the real key
    assert result.failed_message_ids == []
    for key in keys:
        assert stored(deps, key)["key"] == key


def test_recorded_sqs_event_decodes_its_key(deps, event):
    # GIVEN the recorded SQS event (its object does not exist here)
    # WHEN it is processed with no model promoted
    result = process_event(event("sqs_s3_put"), deps)

    # THEN the job names the decoded key
    assert [o.job.ref.key for o in result.outcomes] == ["uploads/holiday photos/café + friends.jpg"]


def test_direct_s3_event_is_classified(deps, publish_model, upload, s3_event, photo_bytes):
    # GIVEN an upload named by a direct S3 event (no SQS)
    publish_model("run-1")
    obj = upload("uploads/direct.jpg", photo_bytes)

    # WHEN it is processed
    result = process_event(s3_event(obj), deps)

    # THEN it is classified
    assert [o.status for o in result.outcomes] == ["classified"]
    assert stored(deps, "uploads/direct.jpg")["status"] == "classified"


@pytest.mark.parametrize("key", ["datasets/ants/a.jpg", "models/run-1/model.onnx", "uploads/",
                                 "other/uploads/x.jpg"])
def test_objects_outside_the_upload_prefix_are_ignored(deps, upload, sqs_event, photo_bytes, key):
    # GIVEN an object outside uploads/ (or a folder marker)
    obj = upload(key, photo_bytes)

    # WHEN its notification is processed
    result = process_event(sqs_event(obj), deps)

    # THEN it is ignored: no record, no retry
    assert [o.status for o in result.outcomes] == ["ignored"]
    assert result.failed_message_ids == [] and stored(deps, key) is None


def test_other_buckets_and_removal_events_are_ignored(deps, sqs_event, s3_event):
    # GIVEN a notification from another bucket and a removal event
    other = {"bucket": "someone-else", "key": "uploads/x.jpg", "size": 10, "eTag": "e", "sequencer": "01"}
    mine = {**other, "bucket": deps.settings.data_bucket}
    removal = {"Records": [s3_record(mine, event_name="ObjectRemoved:Delete")]}

    # WHEN they are processed
    results = [process_event(sqs_event(other), deps), process_event(removal, deps)]

    # THEN both are ignored
    assert [o.status for r in results for o in r.outcomes] == ["ignored", "ignored"]


def test_bad_messages_are_reported_and_good_ones_are_not(deps, publish_model, upload, sqs_event, photo_bytes):
    # GIVEN a good upload, a non-JSON body, a JSON body that is no S3 notification and a malformed one
    publish_model("run-1")
    obj = upload("uploads/good.jpg", photo_bytes)
    event = sqs_event(obj, "not json {", json.dumps({"hello": "world"}),
                      json.dumps({"Records": [{"eventSource": "aws:s3", "s3": {"object": {}}}]}))

    # WHEN it is processed
    result = process_event(event, deps)

    # THEN only the unreadable messages are reported, so they reach the DLQ after maxReceiveCount
    assert result.failed_message_ids == ["m1", "m2", "m3"]
    assert stored(deps, "uploads/good.jpg")["status"] == "classified"


class FlakyS3:
    """An S3 client whose GetObject throttles for one key."""

    def __init__(self, real, bad_key: str):
        self.real, self.bad_key = real, bad_key

    def get_object(self, **kwargs):
        if kwargs["Key"] == self.bad_key:
            raise ClientError({"Error": {"Code": "SlowDown", "Message": "slow down"},
                               "ResponseMetadata": {"HTTPStatusCode": 503}}, "GetObject")
        return self.real.get_object(**kwargs)


def test_transient_s3_error_fails_only_its_message(deps, publish_model, upload, sqs_event, photo_bytes):
    # GIVEN three uploads, one of which S3 throttles
    publish_model("run-1")
    objs = [upload(f"uploads/{name}.jpg", photo_bytes) for name in ("a", "b", "c")]
    deps.s3 = FlakyS3(deps.s3, "uploads/b.jpg")

    # WHEN the batch is processed
    result = process_event(sqs_event(*objs), deps)

    # THEN only b's message is reported for redelivery, the others are recorded
    assert result.failed_message_ids == ["m1"]
    assert stored(deps, "uploads/a.jpg") and stored(deps, "uploads/c.jpg")
    assert stored(deps, "uploads/b.jpg") is None


def test_transient_dynamodb_error_on_write_is_retried(deps, publish_model, upload, sqs_event, photo_bytes,
                                                      monkeypatch):
    # GIVEN DynamoDB throttling every write
    publish_model("run-1")
    event = sqs_event(upload("uploads/photo.jpg", photo_bytes))

    def throttled(record):
        raise TransientError("put predictions: ProvisionedThroughputExceededException")

    monkeypatch.setattr(deps.table, "put_if_newer", throttled)

    # WHEN the batch is processed
    result = process_event(event, deps)

    # THEN the message is reported for redelivery
    assert result.failed_message_ids == ["m0"]
    assert [o.status for o in result.outcomes] == ["failed"]


class UnprocessedDynamoDB:
    """A DynamoDB resource whose BatchGetItem leaves every key unprocessed (sustained throttling)."""

    def __init__(self):
        self.calls = 0

    def batch_get_item(self, RequestItems):
        self.calls += 1
        return {"Responses": {}, "UnprocessedKeys": RequestItems}


def test_batch_read_left_unprocessed_is_retried_then_reported(deps, publish_model, upload, sqs_event,
                                                              photo_bytes, monkeypatch):
    # GIVEN a loaded model and DynamoDB that keeps leaving the batch read unprocessed
    publish_model("run-1")
    deps.classifier.model()
    event = sqs_event(upload("uploads/photo.jpg", photo_bytes))
    dynamodb = UnprocessedDynamoDB()

    # WHEN the batch is processed
    with monkeypatch.context() as patch:  # undone before the fixtures reset the shared clients
        patch.setattr("imgclf_classifier.records.aws.resource", lambda service: dynamodb)
        patch.setattr("imgclf_classifier.records.time.sleep", lambda seconds: None)
        result = process_event(event, deps)

    # THEN the read was retried with backoff, then the message reported for redelivery
    assert dynamodb.calls == 5
    assert result.failed_message_ids == ["m0"]
