"""Record a training run and start (or, for the state machine, describe) its SageMaker training job."""

from __future__ import annotations

from typing import Any, Protocol

from imgclf import aws, keys
from imgclf.clock import now_iso
from imgclf.datasets import Dataset
from imgclf.errors import AlreadyProcessed, Conflict
from imgclf.log import get_logger
from imgclf.review import LabelCounter
from imgclf.runs import IN_PROGRESS, PENDING, Runs, new_run_id, start_run
from imgclf.settings import Settings, get_settings

from .jobs import job_name, output_prefix, training_job_request

logger = get_logger("training-starter")


class TrainingJobLauncher(Protocol):
    """Starts a training job from a CreateTrainingJob request (SageMaker, or the local stack's stand-in)."""

    def start(self, request: dict) -> None: ...


class SageMakerTrainingJobLauncher:
    """Starts the job on SageMaker."""

    def __init__(self, sagemaker=None):
        self.sagemaker = sagemaker

    def start(self, request: dict) -> None:
        (self.sagemaker or aws.client("sagemaker")).create_training_job(**request)


def prepare_run(settings: Settings, runs: Runs, dataset: str, hyperparameters: dict | None = None,
                run_id: str | None = None, s3=None) -> dict:
    """Record a new run of a dataset and return it with its CreateTrainingJob request."""
    dataset = keys.check_name("dataset", dataset)
    version = Dataset(s3 or aws.client("s3"), settings.data_bucket, dataset, settings.dataset_prefix).require_version()
    run_id = run_id or new_run_id()
    request = training_job_request(settings, run_id, dataset, hyperparameters or {})
    fields = dict(
        dataset=dataset,
        dataset_version=version,
        hyperparameters=request["HyperParameters"],
        job_name=job_name(settings, run_id),
        output_prefix=output_prefix(settings, run_id),
        instance_type=request["ResourceConfig"]["InstanceType"],
        spot=request["EnableManagedSpotTraining"],
        backend=settings.training_backend,
    )
    try:
        runs.create(run_id, **fields)
    except AlreadyProcessed:
        # The API records a Pending run before it starts the pipeline under the same name: adopt it.
        if runs.get(run_id).get("status") != PENDING:
            raise Conflict(f"training run {run_id} exists and is past {PENDING}") from None
        runs.update(run_id, **fields)
    # The run trains on every upload labeled so far: the count towards the next retraining starts again.
    LabelCounter(runs.table_name).reset(dataset, run_id)
    logger.info("prepared run", extra={"run_id": run_id, "dataset": dataset, "dataset_version": version})
    return {"run_id": run_id, "dataset": dataset, "dataset_version": version, "request": request}


def start_training_job(settings: Settings, runs: Runs, launcher: TrainingJobLauncher, dataset: str,
                       hyperparameters: dict | None = None, s3=None) -> dict:
    """Record a run and start its job; a launch failure is recorded on the run before it propagates."""
    prepared = prepare_run(settings, runs, dataset, hyperparameters, s3=s3)
    run_id = prepared["run_id"]
    # Marked before launching: a fast job (or the local backend) may finish before start() returns.
    runs.update(run_id, status=IN_PROGRESS, started_at=now_iso())
    start_run(runs, run_id, "the training job", lambda: launcher.start(prepared["request"]))
    return prepared


@logger.inject_lambda_context
def lambda_handler(event: dict, context: Any) -> dict:
    """`prepare` (the state machine runs the job itself) or `start` (the API starts it here)."""
    settings = get_settings()
    settings.require("data_bucket", "runs_table")
    runs = Runs(settings.runs_table)
    action = event.get("action", "start")
    if action == "prepare":
        return prepare_run(settings, runs, event["dataset"], event.get("hyperparameters"), event.get("run_id"))
    if action == "start":
        settings.require("training_image_uri", "training_role_arn")
        return start_training_job(settings, runs, SageMakerTrainingJobLauncher(), event["dataset"],
                                  event.get("hyperparameters"))
    raise ValueError(f"unknown action {action!r}: expected prepare or start")
