"""The cleaning loop on the local stack: train, delete the top-loss images, retrain, compare the two runs."""

from __future__ import annotations

import json

import pytest

from imgclf.datasets import Dataset
from imgclf.registry import ModelRegistry
from imgclf.runs import Runs
from imgclf.settings import get_settings
from imgclf_training.starter import start_training_job
from tests.support.datasets import upload_dataset

pytestmark = pytest.mark.slow

FAST = {"arch": "resnet18", "pretrained": "false", "epochs": "1", "freeze_epochs": "0", "img_size": "64",
        "bs": "8", "num_workers": "0", "parity_images": "4", "top_k": "3"}


def _train(stack) -> dict:
    settings = get_settings()
    prepared = start_training_job(settings, Runs(settings.runs_table), stack.sagemaker(), "faces", FAST)
    run = Runs(settings.runs_table).get(prepared["run_id"])
    assert run["status"] == "Completed", run.get("failure_reason")
    return run


def _read(stack, key: str):
    return json.loads(stack.client("s3").get_object(Bucket=stack.bucket(), Key=key)["Body"].read())


def test_deleting_the_top_losses_changes_the_data_the_next_run_sees(local_stack):
    settings = get_settings()
    s3 = local_stack.client("s3")
    upload_dataset(s3, local_stack.bucket(), "faces", ["happy", "sad"], per_label=12)

    # GIVEN a first run and the images it found hardest
    first = _train(local_stack)
    top_losses = _read(local_stack, f"models/{first['run_id']}/output/top_losses.json")
    hardest = [entry["s3_key"] for entry in top_losses][:2]
    assert all(key.startswith("datasets/faces/") for key in hardest)

    # WHEN they are deleted and the model trained again
    dataset = Dataset(s3, local_stack.bucket(), "faces")
    for key in hardest:
        dataset.edit(key, "delete", by="test", reason="top loss")
    second = _train(local_stack)

    # THEN the runs name different dataset versions, the second never saw the deleted images,
    # and both are registered versions whose metrics can be compared
    assert first["dataset_version"] != second["dataset_version"] == dataset.version()
    split = _read(local_stack, f"models/{second['run_id']}/output/split.json")
    seen = json.dumps(split)
    assert not any(key.rsplit("/", 1)[-1] in seen for key in hardest)
    registry = ModelRegistry(settings.models_table)
    versions = {v["version"]: v for v in registry.list_versions()}
    assert {first["run_id"], second["run_id"]} <= set(versions)
    assert all("error_rate" in versions[r]["metrics"] for r in (first["run_id"], second["run_id"]))
    assert [r["edit"] for r in dataset.records() if r.get("edit")] == ["delete", "delete"]
