"""Datasets: starting a collection (alone or as the first step of the pipeline) and summarising a manifest."""

from __future__ import annotations

import json
from typing import Any

from imgclf import aws, keys
from imgclf.datasets import Dataset

from .launcher import PipelineLauncher

# The per-image lists of a collection report can run to thousands of rows; the summary is what people read.
_REPORT_LISTS = ("accepted_images", "rejections")


def collector_event(dataset: str, label: str, *, query: str, count: int, source: str, run: str) -> dict[str, Any]:
    """What the collector function expects for one label."""
    return {"dataset": dataset, "label": label, "query": query, "count": count, "source": source, "run": run}


def start_collection(launcher: PipelineLauncher, *, dataset: str, labels: list[str], query: str, per_label: int,
                     source: str, run: str) -> list[str]:
    """Start one collector invocation per label; returns their ids."""
    return [
        launcher.collect(collector_event(dataset, label, query=query, count=per_label, source=source, run=run))
        for label in labels
    ]


def dataset_summary(s3, bucket: str, dataset: str, root: str = "datasets/") -> dict[str, Any]:
    """Images per label as training would use them (after edits, without ambiguous ones), and the latest report."""
    data = Dataset(s3, bucket, dataset, root)
    summary = data.summary()
    return {
        "name": dataset,
        "images": summary["images"],
        "counts": summary["labels"],
        "ambiguous": summary["ambiguous"],
        "version": summary["version"],
        "edits": summary["edits"],
        "manifest_key": data.manifest.key,
        "last_report": latest_report(s3, bucket, dataset, root),
    }


def latest_report(s3, bucket: str, dataset: str, root: str = "datasets/") -> dict[str, Any] | None:
    """The newest report directly under datasets/{name}/reports/, without its per-image lists."""
    prefix = f"{keys.dataset_prefix(dataset, root)}reports/"
    with aws.translated(f"list {prefix}"):
        # Delimiter keeps reports/tried/, the collector's URL logs, out of the listing.
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix, Delimiter="/")
        reports = [obj for page in pages for obj in page.get("Contents", []) if obj["Key"].endswith(".json")]
    if not reports:
        return None
    newest = max(reports, key=lambda obj: (obj["LastModified"], obj["Key"]))
    with aws.translated(f"read {newest['Key']}"):
        body = s3.get_object(Bucket=bucket, Key=newest["Key"])["Body"].read()
    try:
        report = json.loads(body)
    except ValueError:
        return {"key": newest["Key"], "error": "the report is not valid JSON"}
    if not isinstance(report, dict):
        return {"key": newest["Key"], "error": "the report is not a JSON object"}
    return {"key": newest["Key"], **{k: v for k, v in report.items() if k not in _REPORT_LISTS}}
