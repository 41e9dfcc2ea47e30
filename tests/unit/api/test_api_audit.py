"""GET /training-runs/{id}/audit lists the run's whole-dataset audit, less what the review decided already; the
decisions POST /datasets/{name}/edits records refuse to contradict each other."""

from __future__ import annotations

import json

import pytest

from imgclf.decisions import Decisions
from imgclf.runs import Runs
from tests.support.datasets import upload_dataset

DATASET = "faces"
RUN_ID = "20261129-120000-abcd"
CALLER = "arn:aws:iam::123456789012:user/ops"  # the identity of tests/events/apigw_get_prediction.json


@pytest.fixture
def images(api_env, s3) -> list[str]:
    """Two happy and two sad pictures in the collector's layout: keys[0:2] happy, keys[2:4] sad."""
    return upload_dataset(s3, api_env.data_bucket, DATASET, ["happy", "sad"], per_label=2, size=64)


def relative(key: str) -> str:
    return key.removeprefix(f"datasets/{DATASET}/")


@pytest.fixture
def audited(api_env, s3, images) -> list[dict]:
    """A completed run whose audit.json flags a label error (also a near-duplicate), an outlier and its twin."""
    findings = [
        {"path": relative(images[0]), "kind": "label_error", "label": "happy", "split": "train", "score": 0.97,
         "probabilities": {"happy": 0.03, "sad": 0.97}, "suggested_label": "sad", "group": 0},
        {"path": relative(images[2]), "kind": "outlier", "label": "sad", "split": "valid", "score": 1.3,
         "probabilities": {"happy": 0.4, "sad": 0.6}, "ood_distance": 1.3},
        {"path": relative(images[0]), "kind": "near_duplicate", "label": "happy", "split": "train", "score": 2,
         "probabilities": {"happy": 0.03, "sad": 0.97}, "group": 0, "group_size": 2, "cross_label": True,
         "group_labels": ["happy", "sad"], "split_crossing": False},
        {"path": relative(images[3]), "kind": "near_duplicate", "label": "sad", "split": "train", "score": 2,
         "probabilities": {"happy": 0.1, "sad": 0.9}, "group": 0, "group_size": 2, "cross_label": True,
         "group_labels": ["happy", "sad"], "split_crossing": False},
        {"path": "../elsewhere/x.jpg", "kind": "outlier", "label": "sad", "score": 1.1, "probabilities": {}},
    ]
    audit = {"format_version": 1, "classes": ["happy", "sad"], "features": "pretrained",
             "summary": {"n_images": 4, "counts": {"label_error": 1, "outlier": 2, "near_duplicate": 2},
                         "near_duplicate_groups": 1, "cross_label_groups": 1,
                         "estimated_noise_rate": {"happy": 0.5, "sad": 0.0}, "probe_accuracy": 0.75},
             "findings": findings}
    s3.put_object(Bucket=api_env.data_bucket, Key=f"models/{RUN_ID}/output/audit.json", Body=json.dumps(audit))
    Runs(api_env.runs_table).create(RUN_ID, status="Completed", dataset=DATASET)
    return findings


def read(api, query: str = "") -> dict:
    response = api.get(f"/training-runs/{RUN_ID}/audit{query}")
    assert response.status == 200, response.json()
    return response.json()


def edit(api, *edits: dict, by: str | None = None, run_id: str | None = RUN_ID):
    body = {"edits": list(edits), **({"by": by} if by else {}), **({"run_id": run_id} if run_id else {})}
    return api.post(f"/datasets/{DATASET}/edits", json_body=body)


# ---------------------------------------------------------------- the listing
def test_the_audit_lists_every_finding_with_its_trusted_key_and_a_thumbnail(api, images, audited):
    # WHEN the audit of the run is read without filters
    answer = read(api)

    # THEN the summary is the run's, and each finding names its image inside the dataset, with a presigned link
    assert answer["run_id"] == RUN_ID and answer["dataset"] == DATASET and answer["decided"] == 0
    assert answer["summary"]["counts"] == {"label_error": 1, "outlier": 2, "near_duplicate": 2}
    assert answer["summary"]["probe_accuracy"] == 0.75 and answer["classes"] == ["happy", "sad"]
    assert [f["kind"] for f in answer["findings"]] == [f["kind"] for f in audited]
    first = answer["findings"][0]
    assert first["s3_key"] == first["current_key"] == images[0] and first["current_label"] == "happy"
    assert first["suggested_label"] == "sad" and len(first["sha256"]) == 64
    assert images[0] in first["thumbnail_url"] and "Signature" in first["thumbnail_url"]
    # AND an entry pointing outside the dataset is listed, but with nothing to edit or look at
    outside = answer["findings"][-1]
    assert outside["s3_key"] is None and outside["thumbnail_url"] is None and outside["sha256"] is None


def test_the_audit_filters_by_kind_and_by_label(api, images, audited):
    assert [f["s3_key"] for f in read(api, "?kind=label_error")["findings"]] == [images[0]]
    assert [f["s3_key"] for f in read(api, "?kind=near_duplicate&label=sad")["findings"]] == [images[3]]
    assert [f["kind"] for f in read(api, "?label=happy")["findings"]] == ["label_error", "near_duplicate"]
    assert read(api, "?kind=outlier&label=happy")["findings"] == []


def test_an_unknown_kind_is_refused(api, audited):
    response = api.get(f"/training-runs/{RUN_ID}/audit?kind=blurry")

    assert response.status == 422 and response.error["code"] == "validation_error"


def test_a_run_without_an_audit_is_not_found_with_a_clear_message(api, api_env, images):
    # GIVEN a run that wrote no audit.json (yet)
    Runs(api_env.runs_table).create(RUN_ID, status="InProgress", dataset=DATASET)

    # WHEN its audit is asked for, THEN 404 says so; an unknown run is 404 too
    response = api.get(f"/training-runs/{RUN_ID}/audit")
    assert response.status == 404 and response.error["code"] == "not_found"
    assert "no dataset audit" in response.error["message"]
    assert api.get("/training-runs/20991231-000000-ffff/audit").status == 404


def test_the_run_links_its_audit_among_the_reports(api, audited):
    assert "audit.json" in api.get(f"/training-runs/{RUN_ID}").json()["reports"]


# ---------------------------------------------------------------- decided images
def test_a_decided_image_leaves_the_audit_under_every_kind_it_was_found_for(api, api_env, images, audited):
    # GIVEN the label error moved to its suggested label from the review
    response = edit(api, {"key": images[0], "action": "relabel", "label": "sad"})
    (result,) = response.json()["results"]
    assert result["status"] == "applied"

    # THEN the decision records what was decided, on which label, by whom and in which run's review
    decision = result["decision"]
    assert (decision["action"], decision["label"], decision["to_label"], decision["decided_label"]) == (
        "relabel", "happy", "sad", "sad")
    assert decision["by"] == decision["signed_by"] == CALLER
    assert decision["run_id"] == RUN_ID and decision["status"] == "applied" and decision["key"] == images[0]
    # AND the audit no longer lists the image, neither as a label error nor as a near-duplicate, on reload too
    for _ in range(2):
        answer = read(api)
        assert images[0] not in {f["s3_key"] for f in answer["findings"]}
        assert answer["decided"] == 2
    # AND the decision is stored, by the image's sha256
    stored = Decisions(api_env.decisions_table).of_dataset(DATASET)
    assert list(stored) == [decision["image"]]


def test_an_image_comes_back_when_its_label_changes_after_the_decision(api, api_env, s3, images, audited):
    # GIVEN an image kept from the review
    assert edit(api, {"key": images[2], "action": "keep"}).json()["results"][0]["status"] == "applied"
    assert images[2] not in {f["s3_key"] for f in read(api)["findings"]}

    # WHEN it is moved to another label afterwards, outside the review (no decision of its own)
    from imgclf.datasets import Dataset

    moved = Dataset(s3, api_env.data_bucket, DATASET).edit(images[2], "relabel", by="cli", label="happy")

    # THEN the audit shows it again, at its new key and with its new label, ready to be decided
    (finding,) = [f for f in read(api)["findings"] if f["s3_key"] == images[2]]
    assert finding["current_key"] == moved["to_key"] and finding["current_label"] == "happy"
    # AND a new decision of it is accepted
    assert edit(api, {"key": moved["to_key"], "action": "keep"}).json()["results"][0]["status"] == "applied"
    assert images[2] not in {f["s3_key"] for f in read(api)["findings"]}


def test_a_second_reviewer_contradicting_a_decision_gets_409_and_nothing_is_applied(api, api_env, s3, images,
                                                                                   audited):
    # GIVEN a reviewer who kept an image
    assert edit(api, {"key": images[2], "action": "keep"}, by="alice").status == 200
    objects = {o["Key"] for o in s3.list_objects_v2(Bucket=api_env.data_bucket)["Contents"]}

    # WHEN a second reviewer, whose page still shows it, deletes it (with another image in the same request)
    response = edit(api, {"key": images[3], "action": "keep"}, {"key": images[2], "action": "delete"}, by="bob")

    # THEN the request is refused whole with 409, naming who decided what
    assert response.status == 409 and response.error["code"] == "decision_conflict"
    assert "alice" in response.error["message"] and "keep" in response.error["message"]
    assert {o["Key"] for o in s3.list_objects_v2(Bucket=api_env.data_bucket)["Contents"]} == objects
    stored = Decisions(api_env.decisions_table).of_dataset(DATASET)
    assert [d["by"] for d in stored.values()] == ["alice"]  # bob's claim of the other image was given back


def test_a_second_reviewer_deciding_the_same_thing_is_told_it_is_decided(api, images, audited):
    # GIVEN an image deleted by one reviewer
    first = edit(api, {"key": images[1], "action": "delete"}, by="alice").json()["results"][0]
    assert first["status"] == "applied"

    # WHEN a second reviewer, whose page still shows it, deletes it too
    response = edit(api, {"key": images[1], "action": "delete"}, by="bob")

    # THEN that is no conflict: the edit is reported as decided, by the first reviewer, and nothing is overwritten
    assert response.status == 200
    (result,) = response.json()["results"]
    assert result["status"] == "decided" and result["decision"]["by"] == "alice"
    assert result["decision"]["image"] == first["decision"]["image"]


def test_moving_an_image_someone_else_moved_meanwhile_is_a_conflict(api, images, audited):
    # GIVEN an image moved to sad by one reviewer
    assert edit(api, {"key": images[0], "action": "relabel", "label": "sad"}, by="alice").status == 200

    # WHEN a second reviewer, whose page still shows it where it was, deletes it
    response = edit(api, {"key": images[0], "action": "delete"}, by="bob")

    # THEN 409 says who moved it where
    assert response.status == 409 and response.error["code"] == "decision_conflict"
    assert "alice" in response.error["message"] and "'sad'" in response.error["message"]


def test_the_same_decision_twice_at_once_is_reported_as_decided(api, api_env, images, audited):
    # GIVEN a keep recorded by one reviewer
    edit(api, {"key": images[2], "action": "keep"}, by="alice")

    # WHEN another reviewer keeps the same image
    response = edit(api, {"key": images[2], "action": "keep"}, by="bob")

    # THEN the edit is reported as decided already, with the first decision, and not applied twice
    (result,) = response.json()["results"]
    assert response.status == 200 and result["status"] == "decided"
    assert result["decision"]["by"] == "alice" and result["record"] is None
    assert response.json()["applied"] == 0 and response.json()["failed"] == 0


def test_a_failed_edit_gives_its_decision_back(api, api_env, images, audited):
    # GIVEN a relabel to the label the image has already (the edit fails on its own)
    response = edit(api, {"key": images[0], "action": "relabel", "label": "happy"})

    # THEN no decision is recorded, and the image stays in the audit
    assert response.json()["results"][0]["error"]["code"] == "conflict"
    assert Decisions(api_env.decisions_table).of_dataset(DATASET) == {}
    assert images[0] in {f["s3_key"] for f in read(api)["findings"]}
