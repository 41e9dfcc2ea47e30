"""The CreateTrainingJob request for a run, and where its artifacts land in the bucket."""

from __future__ import annotations

from imgclf import keys
from imgclf.settings import Settings

CHECKPOINT_LOCAL_PATH = "/opt/ml/checkpoints"


def job_name(settings: Settings, run_id: str) -> str:
    """The SageMaker job name of a run; the template scopes IAM to this prefix."""
    name = f"imgclf-{settings.stage}-{run_id}"
    if len(name) > 63:
        raise ValueError(f"training job name {name!r} is longer than SageMaker's 63 characters")
    return name


def output_prefix(settings: Settings, run_id: str) -> str:
    """models/{run_id}/: where the job writes and where the unpacked artifacts live."""
    return keys.model_prefix(run_id, settings.models_prefix)


def training_job_request(settings: Settings, run_id: str, dataset: str, hyperparameters: dict) -> dict:
    """A CreateTrainingJob request: GPU instance, optional managed spot with checkpoints, outputs under models/.

    The hyperparameters are the caller's alone (SageMaker wants strings): train.py's Hyperparameters owns the
    defaults of whatever is left out. The run id and the dataset's URI are the run's own, for the job to record.
    """
    bucket = settings.data_bucket
    name = job_name(settings, run_id)
    hps = {k: str(v) for k, v in hyperparameters.items()}
    hps.update(run_id=run_id, dataset_uri=keys.s3_uri(bucket, keys.dataset_prefix(dataset, settings.dataset_prefix)))
    stopping = {"MaxRuntimeInSeconds": settings.training_max_runtime_s}
    if settings.training_use_spot:
        # Spot jobs may wait for capacity; give them as long again to start before giving up.
        stopping["MaxWaitTimeInSeconds"] = 2 * settings.training_max_runtime_s
    return {
        "TrainingJobName": name,
        "AlgorithmSpecification": {"TrainingImage": settings.training_image_uri, "TrainingInputMode": "File"},
        "RoleArn": settings.training_role_arn,
        "HyperParameters": hps,
        "InputDataConfig": [{
            "ChannelName": "train",
            "DataSource": {"S3DataSource": {
                "S3DataType": "S3Prefix",
                "S3Uri": keys.s3_uri(bucket, keys.dataset_prefix(dataset, settings.dataset_prefix)),
                "S3DataDistributionType": "FullyReplicated",
            }},
            "InputMode": "File",
        }],
        "OutputDataConfig": {"S3OutputPath": keys.s3_uri(bucket, output_prefix(settings, run_id))},
        "ResourceConfig": {"InstanceType": settings.training_instance_type, "InstanceCount": 1,
                           "VolumeSizeInGB": 30},
        "StoppingCondition": stopping,
        "EnableManagedSpotTraining": settings.training_use_spot,
        "CheckpointConfig": {"S3Uri": keys.s3_uri(bucket, f"checkpoints/{run_id}/"),
                             "LocalPath": CHECKPOINT_LOCAL_PATH},
        "Tags": [{"Key": "imgclf:run_id", "Value": run_id}, {"Key": "imgclf:dataset", "Value": dataset}],
    }


def artifact_keys(settings: Settings, run_id: str) -> tuple[str, str]:
    """Where SageMaker puts model.tar.gz and output.tar.gz for a run."""
    base = f"{output_prefix(settings, run_id)}{job_name(settings, run_id)}/output/"
    return base + "model.tar.gz", base + "output.tar.gz"
