"""POST /datasets starts collectors or the pipeline; GET /datasets/{name} summarises the manifest and report."""

from __future__ import annotations

import json

import pytest

from imgclf import ddb


def test_collecting_starts_one_collector_invocation_per_label(api, launcher):
    # WHEN a dataset of two labels is requested without training
    response = api.post("/datasets", json_body={"name": "ants-bees", "labels": ["ants", "bees"], "per_label": 40,
                                                "query": "{label} insect"})

    # THEN one collector event per label was started, sharing one collection run
    assert response.status == 202
    started = response.json()
    assert started["mode"] == "collect" and started["run_id"] is None
    assert len(started["started"]) == 2
    assert [e["label"] for e in launcher.collected] == ["ants", "bees"]
    assert {e["run"] for e in launcher.collected} == {started["collection_run"]}
    assert launcher.collected[0] == {"dataset": "ants-bees", "label": "ants", "query": "{label} insect",
                                     "count": 40, "source": "ddg", "run": started["collection_run"]}
    assert launcher.pipelines == []


def test_collecting_and_training_starts_the_pipeline_and_records_a_pending_run(api, launcher, api_env):
    # WHEN training is asked for too
    response = api.post("/datasets", json_body={"name": "ants-bees", "labels": ["ants", "bees"], "train": True,
                                                "hyperparameters": {"epochs": 2}})

    # THEN the state machine got the labels and the run id, and the run is recorded as Pending
    assert response.status == 202
    started = response.json()
    assert started["mode"] == "pipeline"
    (name, execution_input), = launcher.pipelines
    assert name == started["run_id"]
    assert execution_input["labels"] == ["ants", "bees"]
    assert execution_input["hyperparameters"] == {"epochs": 2, "run_id": started["run_id"]}
    run = ddb.get_item(api_env.runs_table, {"run_id": started["run_id"]})
    assert run["status"] == "Pending" and run["dataset"] == "ants-bees"
    assert launcher.collected == []


@pytest.mark.parametrize("body", [
    {"name": "a/b", "labels": ["ants"]},
    {"name": "ok", "labels": ["ants", "../bees"]},
    {"name": "ok", "labels": []},
    {"name": "ok", "labels": ["ants", "ants"]},
    {"name": "ok", "labels": ["ants"], "train": True},
    {"name": "ok", "labels": ["ants"], "per_label": 0},
    {"name": "ok", "labels": ["ants"], "source": "folder"},
    {"name": "ok", "labels": ["ants"], "surprise": 1},
])
def test_invalid_collection_requests_are_422_and_start_nothing(api, launcher, body):
    response = api.post("/datasets", json_body=body)

    assert response.status == 422
    assert response.error["code"] == "validation_error"
    assert launcher.collected == [] and launcher.pipelines == []


def image(label: str, sha: str) -> dict:
    return {"label": label, "sha256": sha, "key": f"datasets/ants-bees/{label}/{label}-{sha}.jpg"}


def manifest(*records: dict) -> bytes:
    return "\n".join(json.dumps(r) for r in records).encode() + b"\n"


def test_the_summary_counts_images_per_label_without_ambiguous_ones_and_shows_the_latest_report(api, api_env, s3):
    # GIVEN a manifest with an image found for both labels, a damaged line, and two reports plus a URL log
    bucket = api_env.data_bucket
    body = manifest(
        *(image(label, sha) for label, sha in (("ants", "a1"), ("ants", "a2"), ("bees", "b1"), ("ants", "x"),
                                               ("bees", "x"))),
        {"sha256": "x", "ambiguous": True, "labels": ["ants", "bees"]},
    ) + b"{damaged\n"
    s3.put_object(Bucket=bucket, Key="datasets/ants-bees/manifest.jsonl", Body=body)
    s3.put_object(Bucket=bucket, Key="datasets/ants-bees/reports/20261128T000000Z-aaaaaa.ants.json",
                  Body=json.dumps({"label": "ants", "accepted": 1}))
    s3.put_object(Bucket=bucket, Key="datasets/ants-bees/reports/20261129T000000Z-bbbbbb.bees.json",
                  Body=json.dumps({"label": "bees", "accepted": 2, "accepted_images": [{"url": "u"}] * 3,
                                   "rejections": [{"reason": "too_small"}]}))
    s3.put_object(Bucket=bucket, Key="datasets/ants-bees/reports/tried/bees.jsonl", Body=b"{}\n")

    # WHEN the dataset is summarised
    response = api.get("/datasets/ants-bees")

    # THEN the counts leave the ambiguous image out and the newest report comes without its lists
    assert response.status == 200
    summary = response.json()
    assert summary["counts"] == {"ants": 2, "bees": 1}
    assert summary["images"] == 3 and summary["ambiguous"] == 1
    assert summary["last_report"] == {"key": "datasets/ants-bees/reports/20261129T000000Z-bbbbbb.bees.json",
                                      "label": "bees", "accepted": 2}


def test_a_dataset_without_a_manifest_is_404(api):
    for name in ("nothing-here", "..", "a%2Fb"):
        response = api.get(f"/datasets/{name}")
        assert response.status == 404
        assert response.error["code"] == "not_found"
