"""POST /training-runs on the local stack starts the real pipeline: the run trains, is recorded and promoted."""

from __future__ import annotations

import pytest
import requests

from tests.support.datasets import upload_dataset

pytestmark = pytest.mark.slow


def test_a_training_run_requested_through_the_api_completes_and_is_promoted(local_stack):
    # GIVEN a collected dataset
    upload_dataset(local_stack.client("s3"), local_stack.bucket(), "shapes-api", ["circle", "square"], per_label=10)
    api = local_stack.api.url

    # WHEN a run is requested and the pipeline it starts has finished
    response = requests.post(f"{api}/training-runs", timeout=30, json={
        "dataset": "shapes-api",
        "hyperparameters": {"arch": "resnet18", "pretrained": False, "epochs": 1, "freeze_epochs": 0,
                            "img_size": 64, "bs": 8},
    })
    assert response.status_code == 202, response.text
    run_id = response.json()["run_id"]
    local_stack.launcher.wait(timeout=600)

    # THEN the same run id was trained, recorded with its report, and its model is the active one
    run = requests.get(f"{api}/training-runs/{run_id}", timeout=30).json()
    assert run["status"] == "Completed", run
    assert {"confusion_matrix.png", "metrics.json"} <= set(run["reports"])
    models = requests.get(f"{api}/models", timeout=30).json()
    assert models["active"] == run_id
