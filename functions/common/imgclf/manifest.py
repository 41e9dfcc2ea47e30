"""The dataset manifest's schema: its records, one JSON line each, and the dataset state they add up to.

datasets/{dataset}/manifest.jsonl is append-only. The collector appends image and ambiguity records, the
cleaning loop appends edit records, and the training job replays them all:

    image      {"sha256", "label", "key", "source", "query", "url", "width", "height", "bytes", "format",
                "original": {"format", "width", "height", "bytes"}, "collected_at", "run",
                "phash", "phash_mirror", "near_duplicate_of", "upload_key", "labeled_by", "labeled_at"}
    ambiguous  {"sha256", "ambiguous": true, "labels": [...], "collected_at", "run"}
    edit       {"edit": "delete" | "relabel" | "keep", "sha256", "key", "label", "by", "at", "reason",
                "to_label", "to_key"}   (to_label, and to_key where the object moved: relabel only)

An image is known by its sha256. `phash` and `phash_mirror` are the 64-bit perceptual hashes of the image and
of its mirror image (16 hex digits; imgclf.neardup is the rule), and `near_duplicate_of` the sha256 of the
earliest image of the near-duplicate group it joined: the groups are the connected components of those pointers
(DatasetState.near_duplicate_groups). Images collected before have none of the three.

An image a person labeled from the review queue of uploads has `source` "upload", `url` the upload's s3:// URI,
`upload_key` its key under uploads/, `labeled_by` who labeled it and `labeled_at` when (imgclf.review).

Readers ignore fields they do not know; a line that is no record of this schema is skipped and counted, never
fatal. Standard library only, and no other imgclf import: the training image carries this file without the
rest of the package.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from typing import Any

EDITS = ("delete", "relabel", "keep")


class MalformedRecord(ValueError):
    """A manifest line that is no record of this schema."""


_KINDS = {str: "a string", int: "an integer", list: "a list", dict: "an object"}


def _show(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)[:80]


def _check_edit(action: Any) -> None:
    if action not in EDITS:
        raise MalformedRecord(f"'edit' must be one of {', '.join(EDITS)}, not {_show(action)}")


def _plain(record) -> dict[str, Any]:
    """The record's fields as JSON values, in declaration order, leaving out the ones not set."""
    out: dict[str, Any] = {}
    for f in fields(record):
        value = getattr(record, f.name)
        if value is not None:
            out[f.name] = list(value) if isinstance(value, tuple) else value
    return out


@dataclass(frozen=True)
class ImageRecord:
    """A collected image: where it is, its label, and where it came from."""

    sha256: str
    label: str
    key: str | None = None
    source: str | None = None
    query: str | None = None
    url: str | None = None
    width: int | None = None
    height: int | None = None
    bytes: int | None = None
    format: str | None = None
    original: dict | None = None
    collected_at: str | None = None
    run: str | None = None
    phash: str | None = None
    phash_mirror: str | None = None
    near_duplicate_of: str | None = None
    upload_key: str | None = None
    labeled_by: str | None = None
    labeled_at: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return _plain(self)


@dataclass(frozen=True)
class AmbiguousRecord:
    """An image found for several labels: training leaves every image with this sha256 out."""

    sha256: str
    labels: tuple[str, ...] = ()
    collected_at: str | None = None
    run: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"sha256": self.sha256, "ambiguous": True, **{k: v for k, v in _plain(self).items() if k != "sha256"}}


@dataclass(frozen=True)
class EditRecord:
    """A decision of the cleaning loop about one image: what, by whom, when and why."""

    edit: str
    sha256: str
    key: str
    label: str
    by: str
    at: str
    reason: str = ""
    to_label: str | None = None
    to_key: str | None = None

    def __post_init__(self):
        _check_edit(self.edit)
        if self.edit == "relabel" and not self.to_label:
            raise MalformedRecord("a relabel needs 'to_label'")
        if self.edit != "relabel" and (self.to_label or self.to_key):
            raise MalformedRecord(f"only a relabel has 'to_label' and 'to_key', not a {self.edit}")

    def to_dict(self) -> dict[str, Any]:
        return _plain(self)


Record = ImageRecord | AmbiguousRecord | EditRecord


def to_line(record: Record) -> str:
    """One record as its manifest line (without the newline)."""
    return json.dumps(record.to_dict(), ensure_ascii=False)


def _get(obj: dict, name: str, kind: type, *, required: bool = False) -> Any:
    """A field of a decoded record, checked against its type; None when absent and not required."""
    value = obj.get(name)
    if value is None:
        if required:
            raise MalformedRecord(f"'{name}' is missing")
        return None
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise MalformedRecord(f"'{name}' must be {_KINDS[kind]}, not {_show(value)}")
    if required and not value:
        raise MalformedRecord(f"'{name}' is empty")
    return value


def _get_phash(obj: dict, name: str) -> str | None:
    """A perceptual hash field: 16 hex digits, or None when absent."""
    value = _get(obj, name, str)
    if value is not None and (len(value) != 16 or value.strip("0123456789abcdef")):
        raise MalformedRecord(f"'{name}' must be 16 lowercase hex digits, not {_show(value)}")
    return value


def from_dict(obj: Any) -> Record:
    """The record a decoded manifest line holds; MalformedRecord says why it holds none."""
    if not isinstance(obj, dict):
        raise MalformedRecord(f"not a JSON object but {_show(obj)}")
    if "edit" in obj:
        kind = "edit"
    elif "ambiguous" in obj:
        kind = "ambiguous"
    elif "label" in obj:
        kind = "image"
    else:
        raise MalformedRecord("no record of the manifest schema: an image has 'label', an ambiguity "
                              "'ambiguous': true, an edit 'edit'")
    try:
        sha256 = _get(obj, "sha256", str, required=True)
        if kind == "edit":
            _check_edit(obj["edit"])
            return EditRecord(
                edit=obj["edit"], sha256=sha256,
                **{name: _get(obj, name, str, required=True) for name in ("key", "label", "by", "at")},
                reason=_get(obj, "reason", str) or "",
                to_label=_get(obj, "to_label", str) if obj["edit"] == "relabel" else None,
                to_key=_get(obj, "to_key", str) if obj["edit"] == "relabel" else None,
            )
        if kind == "ambiguous":
            if obj["ambiguous"] is not True:
                raise MalformedRecord(f"'ambiguous' must be true, not {_show(obj['ambiguous'])}")
            labels = _get(obj, "labels", list) or []
            if not all(isinstance(label, str) and label for label in labels):
                raise MalformedRecord(f"'labels' must be a list of labels, not {_show(labels)}")
            return AmbiguousRecord(sha256, tuple(labels), _get(obj, "collected_at", str), _get(obj, "run", str))
        return ImageRecord(
            sha256=sha256,
            label=_get(obj, "label", str, required=True),
            **{name: _get(obj, name, str) for name in ("key", "source", "query", "url", "format", "upload_key",
                                                       "labeled_by", "labeled_at")},
            **{name: _get(obj, name, int) for name in ("width", "height", "bytes")},
            original=_get(obj, "original", dict),
            collected_at=_get(obj, "collected_at", str),
            run=_get(obj, "run", str),
            phash=_get_phash(obj, "phash"),
            phash_mirror=_get_phash(obj, "phash_mirror"),
            near_duplicate_of=_get(obj, "near_duplicate_of", str),
        )
    except MalformedRecord as exc:
        raise MalformedRecord(f"{kind} record: {exc}") from None


def from_line(line: str) -> Record:
    """The record one manifest line holds; MalformedRecord says why it holds none."""
    try:
        obj = json.loads(line)
    except ValueError as exc:
        raise MalformedRecord(f"not JSON ({exc})") from None
    return from_dict(obj)


@dataclass(frozen=True)
class Problem:
    """A line (or decoded record) that was skipped, and why."""

    number: int
    reason: str
    unit: str = "line"

    def __str__(self) -> str:
        return f"{self.unit} {self.number}: {self.reason}"


@dataclass
class Parsed:
    """The records of a manifest, in order, and the lines that held none."""

    records: list[Record] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)


def parse_lines(lines: Iterable[str]) -> Parsed:
    """Parse manifest lines, skipping blank ones and counting malformed ones."""
    parsed = Parsed()
    for number, line in enumerate(lines, 1):
        if line.strip():
            _parse_into(parsed, from_line, line, number, "line")
    return parsed


def parse_objects(objects: Iterable[Any]) -> Parsed:
    """Parse records already decoded from JSON (what a JSON-lines reader returns), counting malformed ones."""
    parsed = Parsed()
    for number, obj in enumerate(objects, 1):
        _parse_into(parsed, from_dict, obj, number, "record")
    return parsed


def _parse_into(parsed: Parsed, parse, value, number: int, unit: str) -> None:
    try:
        parsed.records.append(parse(value))
    except MalformedRecord as exc:
        parsed.problems.append(Problem(number, str(exc), unit))


@dataclass(frozen=True)
class Image:
    """An image of the dataset as it stands after every record: its label now, where it is, its provenance."""

    sha256: str
    label: str
    key: str
    ambiguous: bool = False
    collected: ImageRecord | None = field(default=None, compare=False)


@dataclass
class DatasetState:
    """What a manifest adds up to."""

    images: dict[str, Image] = field(default_factory=dict)  # by sha256: in the dataset now
    deleted: dict[str, EditRecord] = field(default_factory=dict)  # by sha256: the edit that deleted it
    ambiguous: dict[str, set[str]] = field(default_factory=dict)  # by sha256: every label it was found for
    refused: list[tuple[EditRecord, str]] = field(default_factory=list)  # edits that changed nothing, and why
    # by sha256: the near_duplicate_of of every image record, deleted images' too (they may link a group)
    near_duplicate_of: dict[str, str] = field(default_factory=dict)

    def find_key(self, key: str) -> Image | None:
        """The image now stored at an S3 key."""
        return next((image for image in self.images.values() if image.key == key), None)

    def near_duplicate_groups(self) -> list[list[str]]:
        """The near-duplicate groups among the images in the dataset now: sha256 lists of two or more.

        A group is a connected component of the near_duplicate_of pointers, so a member deleted since still
        links the others. Members and groups come in manifest order; an image in no group is in none of them.
        """
        parent: dict[str, str] = {}

        def find(sha: str) -> str:
            parent.setdefault(sha, sha)
            while parent[sha] != sha:
                parent[sha] = parent[parent[sha]]
                sha = parent[sha]
            return sha

        for sha, other in self.near_duplicate_of.items():
            a, b = find(sha), find(other)
            if a != b:
                parent[a] = b
        members: dict[str, list[str]] = {}
        for sha in self.images:  # manifest order
            if sha in parent:
                members.setdefault(find(sha), []).append(sha)
        return [group for group in members.values() if len(group) > 1]


def replay(records: Iterable[Record]) -> DatasetState:
    """Fold records, in manifest order, into the dataset's current state.

    An image record adds (or brings back) an image; delete removes it; relabel gives it its new label, and
    its new key where the object moved; keep changes nothing. An edit of an image that is not in the dataset
    (deleted earlier, or never collected) is refused. An ambiguity mark holds whenever it was written.
    """
    state = DatasetState()
    for record in records:
        sha = record.sha256
        if isinstance(record, ImageRecord):
            state.images[sha] = Image(sha, record.label, record.key or "", collected=record)
            state.deleted.pop(sha, None)
            if record.near_duplicate_of and record.near_duplicate_of != sha:
                state.near_duplicate_of[sha] = record.near_duplicate_of
        elif isinstance(record, AmbiguousRecord):
            state.ambiguous.setdefault(sha, set()).update(record.labels)
        elif sha not in state.images:
            if record.edit != "keep":
                why = "deleted earlier" if sha in state.deleted else "no such image in the manifest"
                state.refused.append((record, why))
        elif record.edit == "delete":
            del state.images[sha]
            state.deleted[sha] = record
        elif record.edit == "relabel":
            image = state.images[sha]
            state.images[sha] = Image(sha, record.to_label, record.to_key or image.key, collected=image.collected)
    for sha in state.ambiguous.keys() & state.images.keys():
        image = state.images[sha]
        state.images[sha] = Image(sha, image.label, image.key, True, image.collected)
    return state
