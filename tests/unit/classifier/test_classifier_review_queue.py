"""The classifier puts uncertain and sampled uploads in the review queue, and never queues a decided one again."""

from __future__ import annotations

import dataclasses

import pytest

from imgclf.review import PENDING, ReviewQueue
from imgclf_classifier.service import process_event


@pytest.fixture
def queueing(deps):
    """The collaborators of a stack whose ReviewMargin queues every upload the model is not fully sure of."""
    return dataclasses.replace(deps, settings=dataclasses.replace(deps.settings, review_margin=1.0,
                                                                  review_sample_rate=0.0))


def stored(deps, key: str) -> dict | None:
    return deps.table.get(f"s3://{deps.settings.data_bucket}/{key}")


def label(deps, key: str, human_label: str = "dogs") -> dict:
    """A person labels the upload, as the review's API does."""
    queue = ReviewQueue(deps.settings.predictions_table)
    claimed = queue.claim(f"s3://{deps.settings.data_bucket}/{key}", by="ann")
    return queue.finish(claimed, action="label", by="ann", human_label=human_label, dataset="d", ingest="added")


def test_an_uncertain_upload_joins_the_queue_with_its_reason(queueing, publish_model, upload, sqs_event,
                                                             photo_bytes):
    # GIVEN an active model
    publish_model("run-1")

    # WHEN an upload is classified
    process_event(sqs_event(upload("uploads/photo.jpg", photo_bytes)), queueing)

    # THEN its record is queued, with why and since when
    record = stored(queueing, "uploads/photo.jpg")
    assert record["review_state"] == PENDING
    assert record["review_reason"] == ("unknown" if record["verdict"] == "unknown" else "low_margin")
    assert record["queued_at"] == record["processed_at"]
    assert 0 <= record["margin"] <= 1 and record["sampled"] is False
    (listed,), _ = ReviewQueue(queueing.settings.predictions_table).pending(10)
    assert listed["key"] == "uploads/photo.jpg"


def test_a_sure_upload_outside_the_sample_stays_out(deps, publish_model, upload, sqs_event, photo_bytes):
    # GIVEN a stack that queues nothing but unknown verdicts
    quiet = dataclasses.replace(deps, settings=dataclasses.replace(deps.settings, review_margin=0.0,
                                                                   review_sample_rate=0.0))
    publish_model("run-1")

    # WHEN an upload is classified
    process_event(sqs_event(upload("uploads/photo.jpg", photo_bytes)), quiet)

    # THEN it is queued only if the model did not know it
    record = stored(quiet, "uploads/photo.jpg")
    assert ("review_state" in record) == (record["verdict"] == "unknown")


def test_a_redelivery_keeps_the_uploads_place_in_the_queue(queueing, publish_model, upload, sqs_event,
                                                           photo_bytes, clock):
    # GIVEN a queued upload
    publish_model("run-1")
    event = sqs_event(upload("uploads/photo.jpg", photo_bytes))
    process_event(event, queueing)
    first = stored(queueing, "uploads/photo.jpg")

    # WHEN a new model answers the same notification again
    publish_model("run-2")
    clock.advance(120)
    process_event(event, queueing)

    # THEN the record is the new model's, still queued since the first time
    again = stored(queueing, "uploads/photo.jpg")
    assert again["model_version"] == "run-2"
    assert (again["review_state"], again["queued_at"]) == (PENDING, first["queued_at"])


def test_a_reclassification_never_queues_a_labeled_upload_again(queueing, publish_model, upload, sqs_event,
                                                                photo_bytes, clock):
    # GIVEN a queued upload a person labeled
    publish_model("run-1")
    event = sqs_event(upload("uploads/photo.jpg", photo_bytes))
    process_event(event, queueing)
    label(queueing, "uploads/photo.jpg")

    # WHEN a new model classifies it again
    publish_model("run-2")
    clock.advance(120)
    process_event(event, queueing)

    # THEN the record has the new model's answer and keeps the person's label, out of the queue
    record = stored(queueing, "uploads/photo.jpg")
    assert record["model_version"] == "run-2"
    assert (record["review"], record["human_label"], record["reviewed_by"]) == ("labeled", "dogs", "ann")
    assert record["reviewed_prediction"]["model_version"] == "run-1"
    assert "review_state" not in record
    assert ReviewQueue(queueing.settings.predictions_table).pending(10)[0] == []


def test_a_write_from_before_a_label_is_refused(queueing, publish_model, upload, sqs_event, photo_bytes, table):
    # GIVEN a queued upload, read by a classifier about to rewrite it
    publish_model("run-1")
    process_event(sqs_event(upload("uploads/photo.jpg", photo_bytes)), queueing)
    read = stored(queueing, "uploads/photo.jpg")

    # WHEN a person labels it before the rewrite lands
    label(queueing, "uploads/photo.jpg")
    rewrite = {**read, "model_version": "run-2", "review_state": PENDING}
    written = table.put_if_newer(rewrite, read)

    # THEN the rewrite is refused, and the label stands
    assert written is False
    assert stored(queueing, "uploads/photo.jpg")["review"] == "labeled"


def test_a_promoted_model_answers_the_queue_again_page_by_page(queueing, publish_model, upload, sqs_event,
                                                               photo_bytes, monkeypatch):
    # GIVEN three queued uploads, one of them labeled since, and a newly promoted model
    from imgclf_classifier import handler

    publish_model("run-1")
    process_event(sqs_event(*(upload(f"uploads/{name}.jpg", photo_bytes + bytes(i)) for i, name in enumerate("abc"))),
                  queueing)
    label(queueing, "uploads/c.jpg")
    publish_model("run-2")
    monkeypatch.setattr(handler, "QUEUE_PAGE", 1)

    # WHEN the pipeline's step reclassifies the queue, a page at a time, until it says there is no more
    pages = [handler.reclassify_queue({"action": "reclassify_queue", "version": "run-2"}, queueing)]
    while pages[-1]["more"] and len(pages) < 5:
        pages.append(handler.reclassify_queue({"action": "reclassify_queue", "after": pages[-1]["next"]}, queueing))

    # THEN each waiting upload has the new model's answer once; the labeled one was not touched
    assert sum(page["classified"] for page in pages) == 2 and pages[-1]["next"] == ""
    assert [stored(queueing, f"uploads/{name}.jpg")["model_version"] for name in "abc"] == ["run-2", "run-2", "run-1"]
