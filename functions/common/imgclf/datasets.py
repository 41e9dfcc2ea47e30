"""A collected dataset: its manifest, its current images, and the edits of the cleaning loop.

The manifest (datasets/{dataset}/manifest.jsonl) is append-only; imgclf.manifest is its schema. The
collector appends image records and ambiguous records; the cleaning loop appends edit records (delete,
relabel, keep), which say what happened to an image, when and by whom.

An edit moves the object first and records it second, by a conditional append that admits only one of
two concurrent edits of an image: the folders under the dataset prefix are what the training job reads,
and the manifest's sha256 is the dataset version a run records, so every run can be traced to its data.
"""

from __future__ import annotations

import hashlib
import secrets
from collections import Counter
from datetime import UTC, datetime

from . import aws, keys
from .clock import now_iso
from .errors import Conflict, NotFound, ObjectNotFound
from .jsonl import JsonLinesLog
from .manifest import EDITS, EditRecord, Image, parse_objects, replay


def new_collection_run(now: datetime | None = None) -> str:
    """A sortable, unique name for one collection, shared by the reports and records of all its labels."""
    return f"{(now or datetime.now(UTC)):%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


def current_images(records: list[dict]) -> dict[str, Image]:
    """Fold the manifest's records (as read) into the images it now holds, by sha256."""
    return replay(parse_objects(records).records).images


class Dataset:
    """Read a dataset and make the cleaning loop's edits to it."""

    def __init__(self, s3, bucket: str, name: str, root: str = "datasets/"):
        self.s3, self.bucket, self.root = s3, bucket, root
        self.name = keys.check_name("dataset", name)
        self.manifest = JsonLinesLog(s3, bucket, keys.manifest_key(self.name, root))

    def records(self) -> list[dict]:
        records, body, _ = self.manifest.read()
        if not body:
            raise NotFound(f"dataset {self.name!r} has no manifest: nothing was collected into it")
        return records

    def version(self) -> str:
        """The sha256 of the manifest: what a training run records as its dataset version."""
        _, body, _ = self.manifest.read()
        return hashlib.sha256(body).hexdigest() if body else ""

    def require_version(self) -> str:
        """version(), or NotFound while nothing is collected: a training run must name the data it trains on."""
        version = self.version()
        if not version:
            raise NotFound(f"dataset {self.name!r} has no manifest: collect images into it first")
        return version

    def summary(self) -> dict:
        """Counts per label of the images training would use, and how many are left out and why."""
        records = parse_objects(self.records()).records
        images = replay(records).images
        usable = [i for i in images.values() if not i.ambiguous]
        edits = Counter(r.edit for r in records if isinstance(r, EditRecord))
        return {
            "dataset": self.name,
            "version": self.version(),
            "labels": dict(sorted(Counter(i.label for i in usable).items())),
            "images": len(usable),
            "ambiguous": sum(i.ambiguous for i in images.values()),
            "edits": dict(edits),
        }

    def _find(self, key: str) -> Image:
        image = replay(parse_objects(self.records()).records).find_key(key)
        if image is not None:
            return image
        raise NotFound(f"{key!r} is not an image of dataset {self.name!r} (deleted or moved already?)")

    def edit(self, key: str, action: str, *, by: str, label: str | None = None, reason: str = "") -> dict:
        """Delete, relabel or keep one image: the object moves, then the manifest records the edit."""
        if action not in EDITS:
            raise ValueError(f"edit must be one of {', '.join(EDITS)}, not {action!r}")
        if action == "relabel":
            if not label:
                raise ValueError("relabel needs the new label")
            label = keys.check_name("label", label)
        image = self._find(key)
        if action == "relabel" and label == image.label:
            raise Conflict(f"{key!r} is labelled {label!r} already")
        record = EditRecord(
            action, image.sha256, image.key, image.label, by=by or "unknown", at=now_iso(), reason=reason,
            to_label=label if action == "relabel" else None,
            to_key=keys.dataset_image_key(self.name, label, image.sha256, self.root) if action == "relabel" else None,
        )

        def plan(existing: list[dict]) -> list[dict]:
            # Checked again against the manifest this append replaces: of two concurrent edits of one image,
            # the conditional write records exactly one.
            current = current_images(existing).get(image.sha256)
            if current is None or current.key != image.key:
                raise NotFound(f"{key!r} was edited by someone else just now")
            return [record.to_dict()]

        # The object moves first: a failure here leaves the manifest untouched and the edit can be retried.
        if action == "relabel":
            self._move(image.key, record.to_key)
        elif action == "delete":
            self._delete(image.key)
        try:
            self.manifest.append(plan)
        except NotFound:
            if action == "relabel":
                self._delete(record.to_key)  # the other edit won; do not leave a stray copy behind
            raise
        return record.to_dict()

    def _move(self, source: str, target: str) -> None:
        try:
            with aws.translated(f"copy {source} to {target}"):
                self.s3.copy_object(Bucket=self.bucket, Key=target,
                                    CopySource={"Bucket": self.bucket, "Key": source}, MetadataDirective="COPY")
        except ObjectNotFound as exc:
            raise NotFound(f"{source!r} was edited by someone else just now") from exc
        self._delete(source)

    def _delete(self, key: str) -> None:
        try:
            with aws.translated(f"delete {key}"):
                self.s3.delete_object(Bucket=self.bucket, Key=key)
        except ObjectNotFound:
            pass  # gone already: what a delete wants
