"""`imgclf demo` runs the template's pipeline and turns its failures into what to do about them."""

from __future__ import annotations

import pytest

from imgclf.runs import FAILED, Runs, pipeline_input
from imgclf.settings import get_settings
from imgclf_cli.demo import DATASET, Console, DemoError, pipeline_step
from imgclf_local.states import StatesError


class FailingStack:
    """Runs the pipeline as far as a failed training job: RecordFailure wrote the reason on the run."""

    def __init__(self):
        self.executions = []

    def run_state_machine(self, logical_id, execution_input, name=None, **options):
        self.executions.append((logical_id, execution_input, name))
        Runs(get_settings().runs_table).create(name, status=FAILED, failure_reason="train.py needs 2 labels")
        raise StatesError("TrainingFailed", "The training job failed; see the run record.")


def test_the_demo_starts_the_templates_pipeline_on_the_staged_images(template_tables):
    # GIVEN training images staged under imports/
    stack = FailingStack()
    execution_input = pipeline_input(DATASET, {"epochs": "1"}, labels=["circle", "square"], per_label=50, source="s3",
                                     source_options={"uri": "s3://bucket/imports/demo/"})

    # WHEN the demo's pipeline step runs
    with pytest.raises(DemoError):
        pipeline_step(stack, Console(steps=1), execution_input, "resnet18", verbose=False)

    # THEN it started TrainingPipeline with the s3 source, the execution named as the run
    (logical_id, started, name), = stack.executions
    assert logical_id == "TrainingPipeline" and name
    assert started["source"] == "s3" and started["source_options"] == {"uri": "s3://bucket/imports/demo/"}
    assert started["labels"] == ["circle", "square"] and started["per_label"] == 50


def test_a_failed_training_job_is_reported_with_the_reason_on_its_run(template_tables):
    # GIVEN a pipeline whose training job fails
    stack = FailingStack()

    # WHEN the demo's pipeline step runs
    with pytest.raises(DemoError) as failed:
        pipeline_step(stack, Console(steps=1), pipeline_input(DATASET, {}, labels=["a"], per_label=5), "resnet18",
                      verbose=False)

    # THEN the message carries the run's reason and what to do
    assert "training failed: train.py needs 2 labels" in str(failed.value)
    assert "at least two labels" in str(failed.value)
