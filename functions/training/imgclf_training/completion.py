"""Record a finished training job: unpack its artifacts to models/{run_id}/, register the model, or the failure."""

from __future__ import annotations

import hashlib
import json
import tarfile
import tempfile
from pathlib import PurePosixPath
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from imgclf import aws, keys
from imgclf.clock import now_iso
from imgclf.errors import AccessDenied, Conflict, ImgclfError, IntegrityError, NotFound, TransientError
from imgclf.log import get_logger, get_metrics
from imgclf.registry import ModelRegistry
from imgclf.runs import COMPLETED, FAILED, STOPPED, Runs
from imgclf.settings import Settings, get_settings

from .jobs import job_name

logger = get_logger("training-completion")
metrics = get_metrics("training-completion")

MODEL_INT8 = "model.int8.onnx"
# Temperature and per-label thresholds; runs trained before calibration existed have none.
CALIBRATION = "calibration.json"
# model.int8.onnx is there only when the job's int8 check passed (model.json's int8 block says why or why not).
MODEL_ARTIFACTS = {"export.pkl", "model.onnx", MODEL_INT8, CALIBRATION, "model.json"}
MAX_MEMBER_BYTES = 2 * 1024**3
# What stops an optional object (the report archive, split.json) from being read: the run completes without it.
_UNREADABLE = (NotFound, AccessDenied, TransientError)


def run_id_of(settings: Settings, training_job_name: str) -> str:
    """The run id inside a job name made by job_name()."""
    prefix = job_name(settings, "")
    if not training_job_name.startswith(prefix):
        raise ValueError(f"training job {training_job_name!r} was not started by this stack")
    return training_job_name[len(prefix):]


def unpack(s3, bucket: str, tar_key: str, dest_prefix: str, only: set[str] | None = None) -> dict[str, str]:
    """Copy the regular files of a .tar.gz in S3 under a prefix; returns name -> sha256. Refuses unsafe paths."""
    written: dict[str, str] = {}
    with tempfile.TemporaryFile() as spool:
        s3.download_fileobj(bucket, tar_key, spool)
        spool.seek(0)
        with tarfile.open(fileobj=spool, mode="r:gz") as archive:
            for member in archive:
                name = PurePosixPath(member.name)
                if not member.isfile():
                    continue
                if name.is_absolute() or ".." in name.parts:
                    raise IntegrityError(f"{tar_key} holds an unsafe path {member.name!r}")
                if member.size > MAX_MEMBER_BYTES:
                    raise IntegrityError(f"{tar_key}: {member.name} is larger than {MAX_MEMBER_BYTES} bytes")
                relative = str(PurePosixPath(*[p for p in name.parts if p != "."]))
                if only is not None and relative not in only:
                    continue
                data = archive.extractfile(member).read()
                s3.put_object(Bucket=bucket, Key=dest_prefix + relative, Body=data)
                written[relative] = hashlib.sha256(data).hexdigest()
    return written


def _valid_set_digest(s3, bucket: str, output_prefix: str) -> str:
    """A digest of the validation images, so promotion compares error rates on the same images only."""
    try:
        with aws.translated(f"read {output_prefix}split.json"):
            split = json.loads(s3.get_object(Bucket=bucket, Key=output_prefix + "split.json")["Body"].read())
    except _UNREADABLE:
        return ""
    return hashlib.sha256(json.dumps(sorted(split.get("valid", []))).encode()).hexdigest()


def complete_run(settings: Settings, runs: Runs, registry: ModelRegistry, run_id: str, job: dict,
                 s3=None) -> dict:
    """Record a job's outcome; a completed job becomes a candidate model version."""
    s3 = s3 or aws.client("s3")
    status = job.get("TrainingJobStatus")
    if status != COMPLETED:
        return fail_run(runs, run_id, job.get("FailureReason") or f"training job {status}",
                        STOPPED if status == STOPPED else FAILED)
    bucket = settings.data_bucket
    model_tar = keys.parse_s3_uri(job["ModelArtifacts"]["S3ModelArtifacts"])[1]
    model_prefix = keys.model_prefix(run_id, settings.models_prefix)
    output_prefix = model_prefix + "output/"
    artifacts = unpack(s3, bucket, model_tar, model_prefix, only=MODEL_ARTIFACTS)
    output_tar = str(PurePosixPath(model_tar).parent / "output.tar.gz")
    try:
        with aws.translated(f"unpack {output_tar}"):
            report = unpack(s3, bucket, output_tar, output_prefix)
    except _UNREADABLE as exc:
        logger.warning("no report archive", extra={"key": output_tar, "error": str(exc)})
        report = {}
    model_json = json.loads(s3.get_object(Bucket=bucket, Key=model_prefix + "model.json")["Body"].read())
    for name, recorded in model_json.get("artifacts", {}).items():
        if name in artifacts and artifacts[name] != recorded.get("sha256"):
            raise IntegrityError(f"{name} of run {run_id} does not match the sha256 in its model.json")
    for name in (MODEL_INT8, CALIBRATION):
        # Served only with a checksum the registry can verify, so model.json must vouch for it.
        if name in artifacts and name not in model_json.get("artifacts", {}):
            raise IntegrityError(f"run {run_id} has a {name} that its model.json does not list as shipped")
    int8 = model_json.get("int8") or {"shipped": False, "reason": "the training job recorded no int8 check"}
    run = runs.get(run_id)
    model_metrics = model_json.get("metrics", {})
    try:
        registry.register(
            run_id, artifacts=artifacts, metrics=model_metrics, classes=model_json.get("classes", []),
            dataset=run.get("dataset", ""), dataset_version=run.get("dataset_version", ""), run_id=run_id,
            extra={"arch": model_json.get("arch"), "valid_set": _valid_set_digest(s3, bucket, output_prefix),
                   "report": sorted(report), "int8": int8,
                   "calibration": model_json.get("calibration") or {"calibrated": False}},
        )
    except Conflict:
        logger.info("model version already registered", extra={"run_id": run_id})  # a redelivered event
    runs.update(run_id, status=COMPLETED, metrics=model_metrics, model_version=run_id, finished_at=now_iso(),
                billable_seconds=job.get("BillableTimeInSeconds"),
                int8={"shipped": bool(int8.get("shipped")), "reason": str(int8.get("reason", ""))})
    logger.info("run completed", extra={"run_id": run_id, "metrics": model_metrics})
    return {"run_id": run_id, "version": run_id, "status": COMPLETED, "metrics": model_metrics}


def fail_run(runs: Runs, run_id: str, reason: str, status: str = FAILED) -> dict:
    """Record why a run failed (or was stopped) and count it, so the training-failures alarm fires."""
    runs.update(run_id, status=status, failure_reason=reason[:4000], finished_at=now_iso())
    metrics.add_metric(name="TrainingFailed", unit=MetricUnit.Count, value=1)
    logger.error("run failed", extra={"run_id": run_id, "reason": reason})
    return {"run_id": run_id, "status": status, "failure_reason": reason}


def _job_from_event(event: dict) -> dict:
    """The job description in a state-change event or a state machine payload."""
    if event.get("detail-type") == "SageMaker Training Job State Change":
        return event["detail"]
    return event["job"]


def _failure_reason(error: dict) -> str:
    cause = error.get("Cause", "")
    try:
        return json.loads(cause).get("FailureReason") or cause
    except (TypeError, ValueError, AttributeError):
        return cause or error.get("Error", "unknown error")


@metrics.log_metrics
@logger.inject_lambda_context
def lambda_handler(event: dict, context: Any) -> dict:
    """A SageMaker state-change event, or the state machine's `complete` / `fail` steps."""
    settings = get_settings()
    settings.require("data_bucket", "runs_table", "models_table")
    runs, registry = Runs(settings.runs_table), ModelRegistry(settings.models_table)
    if event.get("action") == "fail":
        return fail_run(runs, event["run_id"], _failure_reason(event.get("error", {})))
    job = _job_from_event(event)
    run_id = event.get("run_id") or run_id_of(settings, job["TrainingJobName"])
    try:
        return complete_run(settings, runs, registry, run_id, job)
    except ImgclfError as exc:
        fail_run(runs, run_id, f"artifacts could not be recorded: {exc}")
        raise
