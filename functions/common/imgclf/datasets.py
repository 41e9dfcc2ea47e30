"""A collected dataset: its manifest, its current images, and the edits of the cleaning loop.

The manifest (datasets/{dataset}/manifest.jsonl) is append-only. The collector appends image records and
ambiguous records; the cleaning loop appends edit records, which say what happened to an image, when and
by whom:

    {"edit": "delete",  "sha256", "key", "label", "by", "at", "reason"}
    {"edit": "relabel", "sha256", "key", "label", "to_label", "to_key", "by", "at", "reason"}
    {"edit": "keep",    "sha256", "key", "label", "by", "at", "reason"}

An edit moves the object first and records it second, by a conditional append that admits only one of
two concurrent edits of an image: the folders under the dataset prefix are what the training job reads,
and the manifest's sha256 is the dataset version a run records, so every run can be traced to its data.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime

from botocore.exceptions import ClientError

from . import keys
from .errors import Conflict, NotFound
from .jsonl import JsonLinesLog

EDITS = ("delete", "relabel", "keep")


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class Image:
    """An image of the dataset as it stands after every edit."""

    sha256: str
    label: str
    key: str
    ambiguous: bool = False


def current_images(records: list[dict]) -> dict[str, Image]:
    """Fold the manifest into the images it now holds, by sha256."""
    images: dict[str, Image] = {}
    ambiguous: set[str] = set()
    for record in records:
        sha = record.get("sha256")
        if not sha:
            continue
        if record.get("ambiguous"):
            ambiguous.add(sha)
        elif record.get("edit") == "delete":
            images.pop(sha, None)
        elif record.get("edit") == "relabel" and sha in images:
            images[sha] = Image(sha, record["to_label"], record["to_key"])
        elif "edit" not in record and record.get("key"):
            images[sha] = Image(sha, record["label"], record["key"])
    return {sha: Image(i.sha256, i.label, i.key, sha in ambiguous) for sha, i in images.items()}


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

    def summary(self) -> dict:
        """Counts per label of the images training would use, and how many are left out and why."""
        records = self.records()
        images = current_images(records)
        usable = [i for i in images.values() if not i.ambiguous]
        edits = Counter(r["edit"] for r in records if r.get("edit"))
        return {
            "dataset": self.name,
            "version": self.version(),
            "labels": dict(sorted(Counter(i.label for i in usable).items())),
            "images": len(usable),
            "ambiguous": sum(i.ambiguous for i in images.values()),
            "edits": dict(edits),
        }

    def _find(self, key: str) -> Image:
        for image in current_images(self.records()).values():
            if image.key == key:
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
        record = {"edit": action, "sha256": image.sha256, "key": image.key, "label": image.label,
                  "by": by or "unknown", "at": now_iso(), "reason": reason}
        if action == "relabel":
            if label == image.label:
                raise Conflict(f"{key!r} is labelled {label!r} already")
            record.update(to_label=label, to_key=keys.dataset_image_key(self.name, label, image.sha256, self.root))

        def plan(existing: list[dict]) -> list[dict]:
            # Checked again against the manifest this append replaces: of two concurrent edits of one image,
            # the conditional write records exactly one.
            current = current_images(existing).get(image.sha256)
            if current is None or current.key != image.key:
                raise NotFound(f"{key!r} was edited by someone else just now")
            return [record]

        # The object moves first: a failure here leaves the manifest untouched and the edit can be retried.
        if action == "relabel":
            self._move(image.key, record["to_key"])
        elif action == "delete":
            self._delete(image.key)
        try:
            self.manifest.append(plan)
        except NotFound:
            if action == "relabel":
                self._delete(record["to_key"])  # the other edit won; do not leave a stray copy behind
            raise
        return record

    def _move(self, source: str, target: str) -> None:
        try:
            self.s3.copy_object(Bucket=self.bucket, Key=target, CopySource={"Bucket": self.bucket, "Key": source},
                                MetadataDirective="COPY")
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in {"NoSuchKey", "404"}:
                raise NotFound(f"{source!r} was edited by someone else just now") from exc
            raise
        self._delete(source)

    def _delete(self, key: str) -> None:
        try:
            self.s3.delete_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in {"NoSuchKey", "404"}:
                raise
