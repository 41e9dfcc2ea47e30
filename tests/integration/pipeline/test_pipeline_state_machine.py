"""The pipeline's Step Functions definition, run on the local stack: collect per label, train, record, promote,
reclassify the review queue."""

from __future__ import annotations

import pytest

from imgclf import ddb
from imgclf.registry import ModelRegistry
from imgclf.runs import Runs
from imgclf.settings import get_settings
from imgclf_local.samples import jpeg_bytes, shape_image
from imgclf_local.states import StatesError

pytestmark = pytest.mark.slow

FAST = {"arch": "resnet18", "pretrained": "false", "epochs": "1", "freeze_epochs": "0", "img_size": "64",
        "bs": "8", "num_workers": "0", "parity_images": "4"}


def _stage_import(stack, name: str, labels: dict[str, str], per_label: int) -> str:
    """Pictures under imports/{name}/{label}/, the prefix the collector's s3 source may read."""
    s3 = stack.client("s3")
    for label, shape in labels.items():
        for seed in range(per_label):
            s3.put_object(Bucket=stack.bucket(), Key=f"imports/{name}/{label}/{seed}.jpg",
                          Body=jpeg_bytes(shape_image(shape, seed, 80)))
    return f"s3://{stack.bucket()}/imports/{name}/"


def _input(uri: str, dataset: str, labels: list[str]) -> dict:
    return {"dataset": dataset, "labels": labels, "query": "{label}", "per_label": 12, "source": "s3",
            "source_options": {"uri": uri}, "hyperparameters": FAST}


def test_the_pipeline_collects_trains_and_promotes(local_stack):
    # GIVEN images to import for two labels
    uri = _stage_import(local_stack, "shapes", {"circle": "circle", "square": "square"}, per_label=12)

    # WHEN the template's pipeline runs
    machine = local_stack.state_machine("TrainingPipeline")
    output = machine.execute(_input(uri, "shapes", ["circle", "square"]))

    # THEN each label was collected, the run completed, its model is active and answered the review queue again
    visited = [h["state"] for h in machine.history]
    assert visited.count("CollectLabel") == 2
    assert visited[-5:] == ["Promoted?", "StartReclassifyingQueue", "ReclassifyQueue", "MoreToReclassify?", "Done"]
    assert output["reclassified"] == {"next": "", "more": False, "count": 0}
    settings = get_settings()
    run = Runs(settings.runs_table).get(output["version"])
    assert run["status"] == "Completed"
    assert ModelRegistry(settings.models_table).active().version == output["version"]


def test_a_failed_training_job_is_recorded_and_fails_the_execution(local_stack):
    # GIVEN a data set with one label only
    uri = _stage_import(local_stack, "single", {"only": "circle"}, per_label=6)
    machine = local_stack.state_machine("TrainingPipeline")

    # WHEN the pipeline runs
    with pytest.raises(StatesError) as failed:
        machine.execute(_input(uri, "single", ["only"]))

    # THEN the execution fails after recording the job's reason on the run
    assert failed.value.error == "TrainingFailed"
    assert [h["state"] for h in machine.history][-2:] == ["RecordFailure", "TrainingFailed"]
    runs = [r for r in ddb.scan_all(get_settings().runs_table) if r.get("dataset") == "single"]
    assert runs and runs[0]["status"] == "Failed" and "2 labels" in runs[0]["failure_reason"]
