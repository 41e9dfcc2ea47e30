"""Lambda entry point: collect one label per invocation; a Step Functions Map runs the labels in parallel."""

from __future__ import annotations

from dataclasses import dataclass, field

from imgclf import aws, keys
from imgclf.clock import now_iso
from imgclf.datasets import new_collection_run
from imgclf.log import get_logger
from imgclf.settings import get_settings

from .download import Downloader
from .ingest import add_upload
from .pipeline import CollectConfig, collect_label, download_policy
from .sources import SOURCES, make_source

logger = get_logger("collector")
MAX_COUNT = 1000


@dataclass(frozen=True)
class CollectRequest:
    """One label to collect, as the state machine sends it."""

    dataset: str
    label: str
    query: str = "{label}"
    count: int = 150
    source: str = "ddg"
    source_options: dict = field(default_factory=dict)
    run: str = ""
    max_side: int | None = None

    @classmethod
    def from_event(cls, event: dict) -> CollectRequest:
        """Validate the event, refusing anything that would make the run do something unintended."""
        if not isinstance(event, dict):
            raise ValueError("the event must be a JSON object")
        count = _int(event.get("count", 150), "count")
        if not 1 <= count <= MAX_COUNT:
            raise ValueError(f"count must be between 1 and {MAX_COUNT}, not {count}")
        source = str(event.get("source") or "ddg")
        if source not in SOURCES:
            raise ValueError(f"source must be one of {', '.join(SOURCES)}, not {source!r}")
        options = event.get("source_options") or {}
        if not isinstance(options, dict):
            raise ValueError("source_options must be an object")
        run = str(event.get("run") or "")
        return cls(
            dataset=keys.check_name("dataset", str(event.get("dataset", ""))),
            label=keys.check_name("label", str(event.get("label", ""))),
            query=str(event.get("query") or "{label}"),
            count=count,
            source=source,
            source_options=options,
            run=keys.check_name("run", run) if run else "",
            max_side=_int(event["max_side"], "max_side") if event.get("max_side") else None,
        )


def add_labeled_upload(event: dict) -> dict:
    """The review's `add_upload` action: one labeled upload (or a "none of these") joins a dataset."""
    settings = get_settings()
    settings.require("data_bucket")
    upload_key = str(event.get("upload_key", ""))
    if not upload_key.startswith(settings.upload_prefix) or not keys.is_image_key(upload_key):
        raise ValueError(f"upload_key must be an image under {settings.upload_prefix}, not {upload_key[:200]!r}")
    label = event.get("label")
    return add_upload(aws.client("s3"), settings.data_bucket, dataset=str(event.get("dataset", "")),
                      upload_key=upload_key, label=str(label) if label is not None else None,
                      by=str(event.get("by") or "unknown"), at=str(event.get("at") or now_iso()),
                      config=CollectConfig.from_settings(settings))


@logger.inject_lambda_context
def lambda_handler(event: dict, context) -> dict:
    """Collect the event's label and return the summary the Map gathers for the training step; or, with
    action add_upload, add one labeled upload to a dataset (the review queue's labeling)."""
    if isinstance(event, dict) and event.get("action") == "add_upload":
        result = add_labeled_upload(event)
        logger.info("upload added", extra={k: result.get(k) for k in ("dataset", "label", "status", "sha256")})
        return result
    settings = get_settings()
    settings.require("data_bucket")
    request = CollectRequest.from_event(event)
    s3 = aws.client("s3")
    # allow_local=False: in Lambda a source may read S3 and the web, never the function's own files.
    source = make_source(request.source, request.source_options, settings=settings, s3=s3, allow_local=False)
    config = CollectConfig.from_settings(settings, max_side=request.max_side)
    with Downloader(download_policy(settings), max_idle_per_host=config.workers) as downloader:
        summary = collect_label(
            s3=s3,
            bucket=settings.data_bucket,
            dataset=request.dataset,
            label=request.label,
            query=request.query,
            count=request.count,
            source=source,
            downloader=downloader,
            config=config,
            run=request.run or new_collection_run(),
            time_left=lambda: context.get_remaining_time_in_millis() / 1000,
        )
    logger.info(
        "label collected",
        extra={
            k: summary[k]
            for k in ("dataset", "label", "accepted", "rejected", "images", "complete", "stopped")
        },
    )
    return summary


def _int(value, name: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be an integer, not {value!r}") from None
