"""GET /review-queue, POST /review-queue/{key+} and GET /live-accuracy: the review of uploads through the API."""

from __future__ import annotations

import dataclasses
import json

import pytest

from imgclf import ddb, keys
from imgclf.registry import ModelRegistry
from imgclf.review import LabelCounter, review_fields
from imgclf.runs import Runs
from imgclf_api.app import build_app, lambda_handler_for
from imgclf_api.identity import reviewer_identity
from imgclf_api.services import Services
from tests.support.datasets import upload_dataset
from tests.support.images import photo

DATASET = "insects"
VERSION = "20261201-100000-aaaa"
CALLER = "arn:aws:iam::123456789012:user/ops"  # the identity of tests/events/apigw_get_prediction.json


@pytest.fixture
def active_model(api_env, s3):
    """A dataset of ants and bees, and the active model trained on it."""
    upload_dataset(s3, api_env.data_bucket, DATASET, ["ants", "bees"], per_label=2, size=64)
    Runs(api_env.runs_table).create(VERSION, dataset=DATASET, hyperparameters={"epochs": "3", "run_id": VERSION})
    registry = ModelRegistry(api_env.models_table)
    registry.register(VERSION, artifacts={}, metrics={}, classes=["ants", "bees"], dataset=DATASET, run_id=VERSION)
    registry.promote(VERSION, by="test")
    return registry


def upload(api_env, s3, name: str, *, seed: int, verdict: str = "unknown", label: str = "ants",
           probabilities: dict | None = None, queued_at: str = "2026-12-01T10:00:00.000+00:00") -> str:
    """An upload and the classifier's record of it, queued as the classifier queues it."""
    key = f"uploads/{name}"
    s3.put_object(Bucket=api_env.data_bucket, Key=key, Body=photo(seed), ContentType="image/jpeg")
    probabilities = probabilities or {"ants": 0.55, "bees": 0.45}
    record = {"image": keys.s3_uri(api_env.data_bucket, key), "bucket": api_env.data_bucket, "key": key,
              "etag": f"etag-{seed}", "status": "classified", "label": label,
              "confidence": max(probabilities.values()), "probabilities": probabilities, "verdict": verdict,
              "model_version": VERSION, "processed_at": queued_at}
    record.update(review_fields(record, None, margin_limit=0.2, sample_rate=0.0, now=queued_at))
    ddb.put_item(api_env.predictions_table, record)
    return key


def record_of(api_env, key: str) -> dict:
    return ddb.get_item(api_env.predictions_table, {"image": keys.s3_uri(api_env.data_bucket, key)})


def manifest(s3, bucket: str) -> list[dict]:
    body = s3.get_object(Bucket=bucket, Key=keys.manifest_key(DATASET))["Body"].read()
    return [json.loads(line) for line in body.splitlines() if line.strip()]


def test_queue_lists_pending_uploads_oldest_first_with_a_link(api, api_env, s3, active_model):
    # GIVEN an unknown upload, a low-margin one queued earlier, and a confident one
    upload(api_env, s3, "late.jpg", seed=1, queued_at="2026-12-01T11:00:00.000+00:00")
    upload(api_env, s3, "early.jpg", seed=2, verdict="label", queued_at="2026-12-01T09:00:00.000+00:00")
    upload(api_env, s3, "sure.jpg", seed=3, verdict="label", probabilities={"ants": 0.95, "bees": 0.05})

    # WHEN the queue is listed
    page = api.get("/review-queue").json()

    # THEN the two uncertain ones are there, oldest first, with their reasons and a link to the photo
    assert [(i["key"], i["review_reason"]) for i in page["items"]] == [
        ("uploads/early.jpg", "low_margin"), ("uploads/late.jpg", "unknown")]
    assert page["items"][0]["thumbnail_url"].startswith("https://")
    assert page["items"][0]["probabilities"] == {"ants": 0.55, "bees": 0.45}
    assert page.get("next") is None


def test_queue_pages_follow_their_token(api, api_env, s3, active_model):
    # GIVEN three queued uploads
    for seed in range(3):
        upload(api_env, s3, f"u{seed}.jpg", seed=seed, queued_at=f"2026-12-01T10:00:0{seed}.000+00:00")

    # WHEN they are read two at a time
    first = api.get("/review-queue?limit=2").json()
    second = api.get(f"/review-queue?limit=2&next={first['next']}").json()

    # THEN every upload comes once, and a token of another listing is refused
    listed = [i["key"] for i in first["items"] + second["items"]]
    assert listed == ["uploads/u0.jpg", "uploads/u1.jpg", "uploads/u2.jpg"]
    assert api.get(f"/review-queue?reason=sample&next={first['next']}").status == 400


def test_label_copies_the_upload_into_the_dataset_with_provenance(api, api_env, s3, active_model):
    # GIVEN an unknown upload in the queue
    key = upload(api_env, s3, "cat.jpg", seed=7)

    # WHEN a person labels it with a label the model does not know
    response = api.post(f"/review-queue/{key}", json_body={"action": "label", "label": "wasps"})

    # THEN it joins the dataset under that label, the manifest says where it came from, who and when
    assert response.status == 200, response.json()
    result = response.json()
    assert result["review"] == "labeled" and result["human_label"] == "wasps"
    assert result["reviewed_by"] == CALLER
    assert result["ingest"]["status"] == "added"
    (record,) = [r for r in manifest(s3, api_env.data_bucket) if r.get("source") == "upload"]
    assert record["label"] == "wasps" and record["upload_key"] == key and record["labeled_by"] == CALLER
    assert record["labeled_at"] == result["reviewed_at"]
    assert record["key"] == result["ingest"]["key"]
    assert s3.get_object(Bucket=api_env.data_bucket, Key=record["key"])["ContentType"] == "image/jpeg"
    # AND the prediction keeps the human label and leaves the queue
    stored = record_of(api_env, key)
    assert stored["human_label"] == "wasps" and stored["review"] == "labeled" and "review_state" not in stored
    assert api.get("/review-queue").json()["items"] == []
    assert result["retrain"] == {"dataset": DATASET, "labels_since_run": 1, "retrain_after": 50, "requested": False,
                                 "error": None}


def test_a_second_label_of_the_same_upload_is_refused(api, api_env, s3, active_model):
    # GIVEN an upload someone labeled
    key = upload(api_env, s3, "cat.jpg", seed=7)
    assert api.post(f"/review-queue/{key}", json_body={"action": "label", "label": "ants"}).status == 200

    # WHEN someone else labels it too
    second = api.post(f"/review-queue/{key}", json_body={"action": "label", "label": "bees", "by": "bob"})

    # THEN they get 409, and the dataset and the count have the first label only
    assert second.status == 409 and second.error["code"] == "already_reviewed"
    assert "ants" in second.error["message"]
    uploads = [r for r in manifest(s3, api_env.data_bucket) if r.get("source") == "upload"]
    assert [r["label"] for r in uploads] == ["ants"]
    assert LabelCounter(api_env.runs_table).get(DATASET)["labeled"] == 1


def test_none_of_these_keeps_a_negative_example_outside_the_manifest(api, api_env, s3, active_model):
    # GIVEN an unknown upload
    key = upload(api_env, s3, "fish.jpg", seed=8)
    before = manifest(s3, api_env.data_bucket)

    # WHEN a person says it is none of the labels
    result = api.post(f"/review-queue/{key}", json_body={"action": "none"}).json()

    # THEN it is kept under the dataset's .negatives/ with its provenance; the manifest (what trains) is unchanged
    assert result["review"] == "none" and result["ingest"]["status"] == "added"
    assert result["ingest"]["key"].startswith(f"datasets/{DATASET}/.negatives/")
    log = s3.get_object(Bucket=api_env.data_bucket, Key=keys.negatives_log_key(DATASET))["Body"].read()
    (entry,) = [json.loads(line) for line in log.splitlines()]
    assert entry["upload_key"] == key and entry["source"] == "upload" and entry["negative"] is True
    assert manifest(s3, api_env.data_bucket) == before
    assert "retrain" not in result or result["retrain"] is None


def test_skip_takes_the_upload_out_of_the_queue_only(api, api_env, s3, active_model):
    # GIVEN an unknown upload
    key = upload(api_env, s3, "blur.jpg", seed=9)

    # WHEN a person skips it
    result = api.post(f"/review-queue/{key}", json_body={"action": "skip"}).json()

    # THEN it leaves the queue, nothing is copied, and it cannot be decided again
    assert result["review"] == "skipped" and result["ingest"] is None
    assert api.get("/review-queue").json()["items"] == []
    assert api.post(f"/review-queue/{key}", json_body={"action": "label", "label": "ants"}).status == 409


def test_labeling_an_unknown_key_is_not_found(api, active_model):
    assert api.post("/review-queue/uploads/none.jpg", json_body={"action": "skip"}).status == 404
    assert api.post("/review-queue/datasets/x.jpg", json_body={"action": "skip"}).status == 404


def test_label_needs_a_label(api, api_env, s3, active_model):
    key = upload(api_env, s3, "cat.jpg", seed=7)
    assert api.post(f"/review-queue/{key}", json_body={"action": "label"}).status == 422
    assert api.post(f"/review-queue/{key}", json_body={"action": "skip", "label": "ants"}).status == 422


@pytest.fixture
def api_retraining_after_two(api_env, services, event, lambda_context, stack_template, api):
    """The API of a stack whose RetrainAfterLabels is 2."""
    retraining = Services(settings=dataclasses.replace(api_env, retrain_after_labels=2),
                          classifier=services.classifier, registry=services.registry, launcher=services.launcher)
    api.handler = lambda_handler_for(build_app(lambda: retraining))
    return api


def test_the_threshold_asks_once_for_a_retraining(api_retraining_after_two, api_env, s3, active_model, launcher):
    # GIVEN three uploads of new images
    keys_ = [upload(api_env, s3, f"new{seed}.jpg", seed=20 + seed) for seed in range(3)]

    # WHEN they are labeled one after the other
    results = [api_retraining_after_two.post(f"/review-queue/{key}", json_body={"action": "label", "label": "ants"})
               .json()["retrain"] for key in keys_]

    # THEN the second asks for one retraining of the dataset, with the active run's hyperparameters; the third
    # counts on without asking again
    assert [(r["labels_since_run"], r["requested"]) for r in results] == [(1, False), (2, True), (3, False)]
    ((detail_type, detail),) = launcher.events
    assert detail_type == "Retrain Requested" and detail["dataset"] == DATASET and detail["stage"] == "local"
    assert detail["input"]["dataset"] == DATASET and detail["input"]["labels"] == []
    assert detail["input"]["hyperparameters"] == {"epochs": "3"}


def test_live_accuracy_counts_sampled_decisions_only(api, api_env, s3, active_model):
    # GIVEN three sampled uploads (the model said ants, ants, unknown) and one that is not in the sample
    sampled = []
    for seed, verdict in ((31, "label"), (32, "label"), (33, "unknown")):
        key = upload(api_env, s3, f"s{seed}.jpg", seed=seed, verdict=verdict)
        ddb.table(api_env.predictions_table).update_item(
            Key={"image": keys.s3_uri(api_env.data_bucket, key)}, UpdateExpression="SET sampled = :t",
            ExpressionAttributeValues={":t": True})
        sampled.append(key)
    other = upload(api_env, s3, "x.jpg", seed=34, verdict="label")

    # WHEN people answer ants, bees, none of these, and label the other
    for key, body in zip(sampled, ({"action": "label", "label": "ants"}, {"action": "label", "label": "bees"},
                                   {"action": "none"}), strict=True):
        assert api.post(f"/review-queue/{key}", json_body=body).status == 200
    api.post(f"/review-queue/{other}", json_body={"action": "label", "label": "bees"})

    # THEN the model was right on 2 of 3 sampled uploads, with the Wilson interval of 2/3
    answer = api.get("/live-accuracy").json()
    (estimate,) = answer["estimates"]
    assert answer["active_version"] == VERSION
    assert (estimate["model_version"], estimate["n"], estimate["correct"], estimate["abstained"]) == (VERSION, 3, 2, 1)
    assert estimate["low"] == pytest.approx(0.2077, abs=1e-4) and estimate["high"] == pytest.approx(0.9385, abs=1e-4)


def test_reviewer_identity_prefers_the_signed_in_reviewer(event):
    # GIVEN an IAM-signed request, and one through the reviewer pool's authorizer
    signed = event("apigw_get_prediction")
    cognito = {**signed, "requestContext": {**signed["requestContext"],
                                            "authorizer": {"claims": {"email": "ann@example.com", "sub": "1"}}}}

    # THEN each is recorded by who made it
    assert reviewer_identity(signed) == CALLER
    assert reviewer_identity(cognito) == "ann@example.com"
    assert reviewer_identity({"requestContext": {}}) is None
