"""POST /training-runs records and starts a run; GET reads it with report links; /review lists top losses."""

from __future__ import annotations

import hashlib
import json
from urllib.parse import urlsplit

import pytest

from imgclf import ddb
from imgclf.errors import TransientError

MANIFEST = b'{"label": "ants", "sha256": "a1"}\n{"label": "bees", "sha256": "b1"}\n'


@pytest.fixture
def dataset(api_env, s3):
    s3.put_object(Bucket=api_env.data_bucket, Key="datasets/ants-bees/manifest.jsonl", Body=MANIFEST)
    return "ants-bees"


def test_a_run_is_recorded_pending_with_the_manifest_version_and_its_pipeline_started(api, api_env, launcher,
                                                                                       dataset):
    # WHEN a run is requested with one hyperparameter
    response = api.post("/training-runs", json_body={"dataset": dataset, "hyperparameters": {"epochs": 3}})

    # THEN it is Pending, names the exact manifest, and the pipeline trains it without collecting
    assert response.status == 202
    run = response.json()
    assert run["status"] == "Pending"
    assert run["dataset_version"] == hashlib.sha256(MANIFEST).hexdigest()
    assert run["output_prefix"] == f"models/{run['run_id']}/"
    assert run["hyperparameters"] == {"epochs": 3}
    (name, execution_input), = launcher.pipelines
    assert name == run["run_id"]
    assert execution_input["labels"] == []
    assert execution_input["hyperparameters"] == {"epochs": 3, "run_id": run["run_id"]}
    stored = ddb.get_item(api_env.runs_table, {"run_id": run["run_id"]})
    assert stored["execution"] == f"local:execution:{run['run_id']}"


def test_a_dataset_without_manifest_cannot_be_trained(api, launcher):
    response = api.post("/training-runs", json_body={"dataset": "nothing"})

    assert response.status == 404
    assert launcher.pipelines == []


def test_a_pipeline_that_cannot_start_marks_the_run_failed_and_answers_503(api, api_env, launcher, dataset,
                                                                           monkeypatch):
    # GIVEN Step Functions throttles
    def throttled(name, execution_input):
        raise TransientError("start the training pipeline: ThrottlingException")

    monkeypatch.setattr(launcher, "start_pipeline", throttled)

    # WHEN a run is requested
    response = api.post("/training-runs", json_body={"dataset": dataset})

    # THEN the client may retry, and the recorded run says why it never started
    assert response.status == 503
    (run,) = ddb.scan_all(api_env.runs_table)
    assert run["status"] == "Failed"
    assert "could not be started" in run["failure_reason"]


@pytest.mark.parametrize("body", [{"dataset": "a/b"}, {"dataset": "ok", "hyperparameters": {"epochs": 0}},
                                  {"dataset": "ok", "hyperparameters": {"optimizer": "sgd"}}, {}])
def test_invalid_run_requests_are_422(api, body):
    assert api.post("/training-runs", json_body=body).status == 422


def put_run(api_env, run_id: str = "20261129-120000-abcd", **fields) -> str:
    ddb.put_item(api_env.runs_table, {"run_id": run_id, "status": "Completed", "dataset": "ants-bees",
                                      "dataset_version": "d1", "hyperparameters": {"epochs": 1},
                                      "created_at": "2026-11-29T12:00:00.000+00:00",
                                      "metrics": {"error_rate": 0.125, "accuracy": 0.875}, **fields})
    return run_id


def test_a_run_shows_status_metrics_and_presigned_links_to_the_reports_it_has(api, api_env, s3):
    # GIVEN a completed run that wrote two of its report files
    run_id = put_run(api_env)
    for name in ("confusion_matrix.png", "metrics.json"):
        s3.put_object(Bucket=api_env.data_bucket, Key=f"models/{run_id}/output/{name}", Body=b"x")

    # WHEN it is read
    run = api.get(f"/training-runs/{run_id}").json()

    # THEN it carries its metrics and a GET link for each report present, none for the missing ones
    assert run["status"] == "Completed"
    assert run["metrics"] == {"error_rate": 0.125, "accuracy": 0.875}
    assert set(run["reports"]) == {"confusion_matrix.png", "metrics.json"}
    assert urlsplit(run["reports"]["metrics.json"]).path.endswith(f"/models/{run_id}/output/metrics.json")


def test_a_failed_run_shows_its_reason(api, api_env):
    run_id = put_run(api_env, status="Failed", metrics=None, failure_reason="Training failed: too few images")

    run = api.get(f"/training-runs/{run_id}").json()

    assert run["status"] == "Failed"
    assert run["failure_reason"] == "Training failed: too few images"
    assert run["reports"] == {}


def test_an_unknown_run_is_404(api):
    for run_id in ("20000101-000000-0000", "..", "x" * 300):
        response = api.get(f"/training-runs/{run_id}")
        assert response.status == 404


def test_the_review_lists_top_losses_with_links_to_images_inside_the_dataset_only(api, api_env, s3):
    # GIVEN a run's top losses: one with an S3 key, one relative, one pointing outside the dataset
    run_id = put_run(api_env)
    bucket = api_env.data_bucket
    entries = [
        {"path": "bees/b1.jpg", "actual": "bees", "predicted": "ants", "probability": 0.9, "loss": 2.3,
         "kind": "wrong", "s3_key": "datasets/ants-bees/bees/b1.jpg",
         "s3_uri": f"s3://{bucket}/datasets/ants-bees/bees/b1.jpg"},
        {"path": "ants/a1.jpg", "actual": "ants", "predicted": "ants", "probability": 0.51, "kind": "uncertain"},
        {"path": "../../models/x/model.onnx", "actual": "ants", "predicted": "bees", "probability": 0.6,
         "kind": "wrong"},
        {"path": "broken"},
    ]
    s3.put_object(Bucket=bucket, Key=f"models/{run_id}/output/top_losses.json", Body=json.dumps(entries))

    # WHEN the review is read
    review = api.get(f"/training-runs/{run_id}/review").json()

    # THEN the valid entries come back, linked to their dataset image, never to anything else
    items = review["items"]
    assert [i["path"] for i in items] == ["bees/b1.jpg", "ants/a1.jpg", "../../models/x/model.onnx"]
    assert urlsplit(items[0]["thumbnail_url"]).path.endswith("/datasets/ants-bees/bees/b1.jpg")
    assert urlsplit(items[1]["thumbnail_url"]).path.endswith("/datasets/ants-bees/ants/a1.jpg")
    assert items[2]["thumbnail_url"] is None


def test_a_run_without_review_list_is_404(api, api_env):
    run_id = put_run(api_env, status="InProgress")

    response = api.get(f"/training-runs/{run_id}/review")

    assert response.status == 404
    assert "no review list" in response.error["message"]
