"""The dataset manifest and the tried-URL logs: append-only JSON lines in S3, safe under concurrent writers.

S3 cannot append, so an append is a read-modify-write made safe by a conditional put: the new body is
written only if the object still has the ETag that was read (If-Match), or still does not exist
(If-None-Match: *). A writer that loses the race gets 412 (or 409 while another conditional write is in
flight), reads again and re-plans its records against what the winner wrote. That re-planning is what
keeps de-duplication correct across labels collected in parallel by a Step Functions Map.

The collector writes two of the manifest's record kinds (imgclf.manifest is the schema): an ImageRecord per
stored image, and an AmbiguousRecord for an image found for several labels, which training leaves out.
Re-planning groups near-duplicates too (imgclf.neardup): a new image near one already in the dataset points
to its group (near_duplicate_of) when they share a label, and is an ambiguity like an exact copy when not.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from imgclf import keys
from imgclf.clock import now_iso
from imgclf.jsonl import JsonLinesLog
from imgclf.log import get_logger
from imgclf.manifest import AmbiguousRecord, EditRecord, ImageRecord, Record, parse_objects
from imgclf.neardup import NearIndex, PHash

logger = get_logger("collector")


def tried_key(dataset: str, label: str, root: str = "datasets/") -> str:
    """Where the URLs already tried for a label are logged, so a re-run does not fetch them again."""
    return f"{keys.dataset_prefix(dataset, root)}reports/tried/{keys.check_name('label', label)}.jsonl"


@dataclass
class ManifestIndex:
    """What a manifest says: the labels each sha256 was stored or relabelled under, the ambiguous sha256s,
    the URLs per label, and the perceptual hashes of the images in the dataset now with their label and group."""

    labels_by_sha: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    ambiguous: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    urls_by_label: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    hashes: NearIndex = field(default_factory=NearIndex)  # images in the dataset now (not deleted) with a pHash
    label_now: dict[str, str] = field(default_factory=dict)  # by sha256: the label after every relabel
    group_of: dict[str, str] = field(default_factory=dict)  # by sha256: its near_duplicate_of, or itself

    @classmethod
    def build(cls, records: Iterable[Record]) -> ManifestIndex:
        index = cls()
        for record in records:
            index.add(record)
        return index

    def add(self, record: Record) -> None:
        sha = record.sha256
        if isinstance(record, AmbiguousRecord):
            self.ambiguous[sha].update(record.labels)
        elif isinstance(record, ImageRecord):
            self.labels_by_sha[sha].add(record.label)
            if record.url:
                self.urls_by_label[record.label].add(record.url)
            self.label_now[sha] = record.label
            self.group_of[sha] = record.near_duplicate_of or sha
            if record.phash and record.phash_mirror:
                self.hashes.add(sha, PHash(record.phash, record.phash_mirror))
        elif isinstance(record, EditRecord) and record.edit == "relabel":
            # The image is in to_label now: finding it there again is a duplicate, not an ambiguity.
            self.labels_by_sha[sha].add(record.to_label)
            self.label_now[sha] = record.to_label
        elif isinstance(record, EditRecord) and record.edit == "delete":
            self.hashes.remove(sha)  # no longer in the dataset: nothing new joins its group through it

    def near_duplicates(self, phash: PHash | None) -> list[str]:
        """The sha256s of the images in the dataset that are near-duplicates of one with these hashes, oldest
        first."""
        return self.hashes.matches(phash) if phash else []

    def near_labels(self, shas: Iterable[str]) -> set[str]:
        """Every label these images are in now or were found ambiguous for."""
        labels: set[str] = set()
        for sha in shas:
            labels.add(self.label_now[sha])
            labels |= self.ambiguous.get(sha, set())
        return labels

    def group(self, shas: list[str]) -> str | None:
        """The group a new near-duplicate of these images joins: the group of the oldest of them."""
        return self.group_of.get(shas[0], shas[0]) if shas else None

    def ambiguous_shas(self) -> set[str]:
        """Every sha256 training must leave out."""
        return set(self.ambiguous)


@dataclass
class CommitResult:
    """What one manifest commit did with the image records it was given."""

    appended: list[ImageRecord]  # image records now in the manifest
    conflicts: list[ImageRecord]  # image records another label stored first: recorded as ambiguous instead
    duplicates: list[ImageRecord]  # image records the same label already had (a concurrent run of that label)
    index: ManifestIndex  # the manifest as it is after the commit
    # image records near a picture of another label (stored meanwhile): left out, both marked ambiguous instead
    near_conflicts: list[ImageRecord] = field(default_factory=list)


def plan_commit(
    existing: list[Record], images: list[ImageRecord], ambiguous: dict[str, set[str]], *, run: str,
    collected_at: str,
) -> tuple[list[Record], CommitResult]:
    """Decide, against the current manifest, which records to append: the pure core of a commit.

    An image is a duplicate when its label has its sha256 already, a conflict (an ambiguity) when another label
    has it, a near conflict (an ambiguity of it and its near-duplicates) when it is near an image of another
    label, and is appended otherwise: pointing to the group of the oldest image it is near, if any. The pointer
    is decided here, against the manifest as it is, so groups hold whatever order concurrent writers commit in.
    """
    index = ManifestIndex.build(existing)
    result = CommitResult([], [], [], index)
    records: list[Record] = []
    wanted: dict[str, set[str]] = defaultdict(set)
    for sha, labels in ambiguous.items():
        wanted[sha] |= labels
    for image in images:
        labels = index.labels_by_sha.get(image.sha256, set())
        if image.label in labels:
            result.duplicates.append(image)
        elif labels:
            result.conflicts.append(image)
            wanted[image.sha256] |= labels | {image.label}
        else:
            matches = index.near_duplicates(_phash(image))
            near_labels = index.near_labels(matches)
            if near_labels - {image.label}:
                result.near_conflicts.append(image)
                for sha in matches:
                    wanted[sha] |= near_labels | {image.label}
                continue
            group = index.group(matches)
            if image.near_duplicate_of != group:
                image = replace(image, near_duplicate_of=group)
            records.append(image)
            index.add(image)
            result.appended.append(image)
    for sha, labels in wanted.items():
        labels = labels | index.labels_by_sha.get(sha, set())
        if not labels <= index.ambiguous.get(sha, set()):
            record = AmbiguousRecord(sha, tuple(sorted(labels | index.ambiguous.get(sha, set()))), collected_at, run)
            records.append(record)
            index.add(record)
    return records, result


def _phash(image: ImageRecord) -> PHash | None:
    return PHash(image.phash, image.phash_mirror) if image.phash and image.phash_mirror else None


_local_writers: dict[tuple[str, str], threading.Lock] = defaultdict(threading.Lock)
_local_writers_lock = threading.Lock()


def _local_writer(bucket: str, key: str) -> threading.Lock:
    """The lock that makes this process's writers of one object take turns."""
    with _local_writers_lock:
        return _local_writers[(bucket, key)]


class DatasetManifest:
    """datasets/{dataset}/manifest.jsonl: read it, and commit image and ambiguity records to it."""

    def __init__(self, s3, bucket: str, dataset: str, *, root: str = "datasets/", sleep=time.sleep):
        self.key = keys.manifest_key(dataset, root)
        self._log = JsonLinesLog(s3, bucket, self.key, sleep=sleep)

    def load(self) -> ManifestIndex:
        return ManifestIndex.build(self._parse(self._log.read()[0]))

    def _parse(self, objects: list[dict]) -> list[Record]:
        parsed = parse_objects(objects)
        if parsed.problems:
            logger.warning("skipping manifest records that break the schema",
                           extra={"object": self.key, "skipped": len(parsed.problems),
                                  "first": str(parsed.problems[0])})
        return parsed.records

    def commit(self, images: list[ImageRecord], ambiguous: dict[str, set[str]], *, run: str) -> CommitResult:
        """Append new image records and ambiguity records, re-deciding each against concurrent writers."""
        outcome: list[CommitResult] = []

        def plan(existing: list[dict]) -> list[dict]:
            outcome.clear()
            records, result = plan_commit(self._parse(existing), images, ambiguous, run=run, collected_at=now_iso())
            outcome.append(result)
            return [record.to_dict() for record in records]

        # Writers in this process take turns rather than race; other processes are kept out by the condition.
        with _local_writer(self._log.bucket, self.key):
            self._log.append(plan)
        return outcome[0]


class TriedLog:
    """URLs a label tried that failed for good (accepted ones are in the manifest); never fetched again."""

    def __init__(
        self, s3, bucket: str, dataset: str, label: str, *, root: str = "datasets/", sleep=time.sleep
    ):
        self._log = JsonLinesLog(s3, bucket, tried_key(dataset, label, root), sleep=sleep)

    def load(self) -> set[str]:
        return {record["url"] for record in self._log.read()[0] if record.get("url")}

    def add(self, entries: list[dict]) -> None:
        """Append {"url", "reason", "run", "at"} entries for URLs not logged yet."""
        if not entries:
            return

        def plan(existing: list[dict]) -> list[dict]:
            known = {record.get("url") for record in existing}
            return [entry for entry in entries if entry["url"] not in known]

        self._log.append(plan)
