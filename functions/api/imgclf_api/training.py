"""Training runs: recording and starting one, reading its record, its reports and its review list."""

from __future__ import annotations

import json
from typing import Any

from imgclf import aws, keys
from imgclf.errors import NotFound
from imgclf.runs import PENDING, Runs, start_run

from .launcher import PipelineLauncher

REPORT_FILES = ("confusion_matrix.png", "top_losses.png", "learning_curve.png", "metrics.json", "top_losses.json",
                "audit.json")
LINK_EXPIRES_S = 3600


def start_pipeline_run(runs_table: str, launcher: PipelineLauncher, *, run_id: str, dataset: str, version: str,
                       hyperparameters: dict[str, Any], output_prefix: str,
                       execution_input: dict[str, Any]) -> dict[str, Any]:
    """Record a Pending run, then start the pipeline that trains it; a start that fails marks the run Failed."""
    runs = Runs(runs_table)
    item = runs.create(run_id, status=PENDING, dataset=dataset, dataset_version=version,
                       hyperparameters=hyperparameters, output_prefix=output_prefix)
    execution = start_run(runs, run_id, "the pipeline", lambda: launcher.start_pipeline(run_id, execution_input))
    runs.update(run_id, execution=execution)
    return {**item, "execution": execution}


def report_prefix(run_id: str, models_root: str = "models/") -> str:
    return f"{keys.model_prefix(run_id, models_root)}output/"


def report_links(s3, bucket: str, run_id: str, *, models_root: str = "models/",
                 expires_in: int = LINK_EXPIRES_S) -> dict[str, str]:
    """Presigned GET links to the report files the run has written so far (one listing, no link to nothing)."""
    prefix = report_prefix(run_id, models_root)
    with aws.translated(f"list {prefix}"):
        listed = s3.list_objects_v2(Bucket=bucket, Prefix=prefix, Delimiter="/").get("Contents", [])
    present = {obj["Key"].removeprefix(prefix) for obj in listed}
    return {name: presign_get(s3, bucket, prefix + name, expires_in) for name in REPORT_FILES if name in present}


def review_items(s3, bucket: str, run: dict[str, Any], *, models_root: str = "models/",
                 datasets_root: str = "datasets/", expires_in: int = LINK_EXPIRES_S) -> list[dict[str, Any]]:
    """top_losses.json of a run, each image with its key in the run's dataset (None when the entry points
    outside it) and a presigned link to look at it."""
    key = report_prefix(run["run_id"], models_root) + "top_losses.json"
    try:
        with aws.translated(f"read {key}"):
            entries = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    except NotFound as exc:
        raise NotFound(f"training run {run['run_id']!r} has no review list (yet)") from exc
    items = []
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, dict) or not {"path", "actual", "predicted", "probability"} <= set(entry):
            continue
        image_key = _dataset_image_key(entry, bucket, run.get("dataset", ""), datasets_root)
        items.append({**entry, "s3_key": image_key,
                      "thumbnail_url": presign_get(s3, bucket, image_key, expires_in) if image_key else None})
    return items


def _dataset_image_key(entry: dict[str, Any], bucket: str, dataset: str, root: str) -> str | None:
    """The S3 key of a reviewed image: only ever inside the run's dataset, whatever the file says."""
    try:
        prefix = keys.dataset_prefix(dataset, root)
    except ValueError:
        return None
    key = entry.get("s3_key")
    # The job records s3_key only when it knew where the dataset lives; otherwise path is relative to it.
    if not isinstance(key, str) or entry.get("s3_uri") != keys.s3_uri(bucket, key):
        key = prefix + str(entry["path"]).lstrip("/")
    if not key.startswith(prefix) or "/../" in f"/{key}/" or "/./" in f"/{key}/":
        return None
    return key


def presign_get(s3, bucket: str, key: str, expires_in: int) -> str:
    return s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=expires_in)
