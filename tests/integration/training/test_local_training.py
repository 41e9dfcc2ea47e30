"""A training run on the local stack: the same train.py, SageMaker's folder contract, outputs where AWS puts them."""

from __future__ import annotations

import json

import pytest

from imgclf.registry import ModelRegistry
from imgclf.runs import Runs
from imgclf.settings import get_settings
from imgclf_training.starter import start_training_job
from tests.support.datasets import upload_dataset

FAST = {"arch": "resnet18", "pretrained": "false", "epochs": "1", "freeze_epochs": "0", "img_size": "64",
        "bs": "8", "num_workers": "0", "parity_images": "8"}

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(local_stack):
    s3 = local_stack.client("s3")
    upload_dataset(s3, local_stack.bucket(), "shapes", ["red circle", "blue square"], per_label=10)
    settings = get_settings()
    prepared = start_training_job(settings, Runs(settings.runs_table), local_stack.sagemaker(), "shapes", FAST)
    return prepared


def test_a_finished_run_is_recorded_with_its_metrics(local_stack, trained):
    run = Runs(get_settings().runs_table).get(trained["run_id"])
    assert run["status"] == "Completed", run.get("failure_reason")
    assert 0.0 <= run["metrics"]["error_rate"] <= 1.0
    assert run["dataset_version"] == trained["dataset_version"]


def test_artifacts_are_unpacked_under_the_run_prefix(local_stack, trained):
    s3 = local_stack.client("s3")
    prefix = f"models/{trained['run_id']}/"
    objects = s3.list_objects_v2(Bucket=local_stack.bucket(), Prefix=prefix)["Contents"]
    listed = {o["Key"][len(prefix):] for o in objects}
    assert {"model.onnx", "model.json", "export.pkl", "output/metrics.json", "output/confusion_matrix.png",
            "output/top_losses.json"} <= listed
    job = f"imgclf-local-{trained['run_id']}/output/"
    assert {job + "model.tar.gz", job + "output.tar.gz"} <= listed  # where SageMaker itself writes them
    model_json = json.loads(s3.get_object(Bucket=local_stack.bucket(), Key=prefix + "model.json")["Body"].read())
    assert model_json["classes"] == ["blue square", "red circle"]


def test_the_run_becomes_a_candidate_model_that_can_be_promoted(local_stack, trained):
    registry = ModelRegistry(get_settings().models_table)
    version = registry.get(trained["run_id"])
    assert version["status"] == "candidate"
    # model.int8.onnx is registered exactly when the job's int8 check passed, which a tiny model may or may not.
    assert set(version["artifacts"]) - {"model.int8.onnx"} == {"model.onnx", "model.json", "export.pkl",
                                                              "calibration.json"}
    assert ("model.int8.onnx" in version["artifacts"]) == version["int8"]["shipped"]
    active = registry.promote(trained["run_id"], by="test")
    assert registry.active().version == active.version == trained["run_id"]


def test_a_failing_job_records_the_failure_file_reason(local_stack):
    # GIVEN a dataset with a single class
    s3 = local_stack.client("s3")
    upload_dataset(s3, local_stack.bucket(), "lonely", ["only"], per_label=6)
    settings = get_settings()

    # WHEN it is trained
    prepared = start_training_job(settings, Runs(settings.runs_table), local_stack.sagemaker(), "lonely", FAST)

    # THEN the run is Failed with the job's own explanation
    run = Runs(settings.runs_table).get(prepared["run_id"])
    assert run["status"] == "Failed"
    assert "at least 2 labels" in run["failure_reason"]
