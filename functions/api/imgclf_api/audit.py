"""A run's whole-dataset audit (audit.json): its summary and its findings, less the images already decided."""

from __future__ import annotations

import json
from typing import Any

from imgclf import aws
from imgclf.datasets import Dataset
from imgclf.decisions import Decisions, image_keys, in_force
from imgclf.errors import NotFound
from imgclf.manifest import parse_objects, replay

from .training import LINK_EXPIRES_S, _dataset_image_key, presign_get, report_prefix

KINDS = ("label_error", "outlier", "near_duplicate")
AUDIT_FILE = "audit.json"
_REQUIRED = {"path", "kind", "label"}


def read_audit(s3, bucket: str, run_id: str, *, models_root: str = "models/") -> dict[str, Any]:
    """audit.json of a run, or NotFound while the run has written none."""
    key = report_prefix(run_id, models_root) + AUDIT_FILE
    try:
        with aws.translated(f"read {key}"):
            audit = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    except NotFound as exc:
        raise NotFound(f"training run {run_id!r} has no dataset audit (yet): runs write audit.json "
                       "once they finish") from exc
    return audit if isinstance(audit, dict) else {}


def audit_findings(s3, bucket: str, run: dict[str, Any], *, decisions: Decisions | None = None,
                   kind: str | None = None, label: str | None = None, models_root: str = "models/",
                   datasets_root: str = "datasets/", expires_in: int = LINK_EXPIRES_S) -> dict[str, Any]:
    """The run's audit: its summary, and its findings of one kind and label (any when None), each with the
    image's key in the run's dataset (None outside it), a presigned link to it, and its current label; the
    images a decision in force covers are left out (see imgclf.decisions.in_force), and counted."""
    audit = read_audit(s3, bucket, run["run_id"], models_root=models_root)
    dataset = run.get("dataset", "")
    images = _dataset_images(s3, bucket, dataset, datasets_root)
    decided = decisions.of_dataset(dataset) if decisions and dataset else {}
    findings, hidden = [], 0
    for entry in audit.get("findings") or []:
        if not isinstance(entry, dict) or not set(entry) >= _REQUIRED or entry.get("kind") not in KINDS:
            continue
        if (kind and entry["kind"] != kind) or (label and entry["label"] != label):
            continue
        image_key = _dataset_image_key(entry, bucket, dataset, datasets_root)
        sha256, current = _current(images, image_key)
        if sha256 and in_force(decided.get(sha256), current and current[0]):
            hidden += 1
            continue
        findings.append({**entry, "s3_key": image_key, "sha256": sha256,
                         "current_label": current and current[0], "current_key": current and current[1],
                         "thumbnail_url": presign_get(s3, bucket, image_key, expires_in) if image_key else None})
    return {"run_id": run["run_id"], "dataset": dataset, "format_version": audit.get("format_version"),
            "classes": audit.get("classes") or [], "features": audit.get("features"),
            "summary": audit.get("summary") or {}, "decided": hidden, "findings": findings}


Images = tuple[dict[str, str], dict[str, tuple[str, str]]]


def _dataset_images(s3, bucket: str, dataset: str, root: str) -> Images:
    """Every key the dataset's images ever had -> sha256, and each current image's label and key by sha256."""
    try:
        records = parse_objects(Dataset(s3, bucket, dataset, root).records()).records
    except (NotFound, ValueError):
        return {}, {}
    shas = image_keys(records)
    current = replay(records).images
    for sha, image in current.items():
        shas.setdefault(image.key, sha)
    return shas, {sha: (image.label, image.key) for sha, image in current.items()}


def _current(images: Images, key: str | None) -> tuple[str | None, tuple[str, str] | None]:
    """The sha256 of the image a key names (or named), and its label and key now (None when it is not in the
    dataset any more)."""
    shas, labels = images
    sha256 = shas.get(key) if key else None
    return sha256, labels.get(sha256) if sha256 else None
