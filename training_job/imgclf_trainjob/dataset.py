"""The dataset a run trains on: label folders, what the manifest says of them, image checks and the split."""

from __future__ import annotations

import hashlib
import logging
import os
import random
import re
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

from PIL import Image

from imgclf.manifest import DatasetState, Parsed, parse_lines, replay
from imgclf_trainjob import neardup
from imgclf_trainjob.errors import JobFailure

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp", ".tif", ".tiff"})
MANIFEST_NAME = "manifest.jsonl"
TRAIN, VALID = "train", "valid"
# ImageNet-style roots that bring their own split; "val" is the torchvision spelling of "valid".
_SPLIT_DIRS = {TRAIN: ("train",), VALID: ("valid", "val")}
# The collector names files {label}-{sha256[:12]}.jpg, which is how an image of the manifest finds its file.
_HASH12 = re.compile(r"-([0-9a-f]{12})$")


@dataclass(frozen=True)
class Sample:
    """One image: its path relative to the dataset root, its label and the split it must go to (if any)."""

    rel_path: str
    label: str
    split: str | None = None

    @property
    def folder(self) -> str:
        """The name of the folder holding the file (what fastai's parent_label returns)."""
        return Path(self.rel_path).parent.name


@dataclass
class ManifestEffects:
    """What the manifest's current state does to the files found on disk."""

    excluded: dict[str, str] = field(default_factory=dict)  # rel path -> "deleted" | "ambiguous"
    labels: dict[str, str] = field(default_factory=dict)  # rel path -> the label the manifest gives it now


@dataclass
class DatasetPlan:
    """The checked dataset of a run: the classes, the train and valid samples and what was left out."""

    root: Path
    classes: list[str]
    train: list[Sample]
    valid: list[Sample]
    split_mode: str
    seed: int
    valid_pct: float
    skipped: dict[str, str] = field(default_factory=dict)
    excluded: dict[str, str] = field(default_factory=dict)
    ignored_labels: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    manifest_sha256: str | None = None
    near_duplicates: list[list[str]] = field(default_factory=list)  # groups of relative paths

    @property
    def split_crossing_groups(self) -> list[list[str]]:
        """Near-duplicate groups with members in both splits: only where the dataset assigned the splits."""
        valid = {s.rel_path for s in self.valid}
        return [g for g in self.near_duplicates if any(r in valid for r in g) and not all(r in valid for r in g)]

    @property
    def labels_match_folders(self) -> bool:
        """True when every label is its file's folder name, so fastai's parent_label can label items."""
        return all(s.label == s.folder for s in (*self.train, *self.valid))

    def split_record(self) -> dict:
        """The split as written to split.json: which relative paths went to train and to valid."""
        return {
            "mode": self.split_mode,
            "seed": self.seed,
            "valid_pct": self.valid_pct,
            "classes": self.classes,
            "counts": {
                label: {TRAIN: _count(self.train, label), VALID: _count(self.valid, label)}
                for label in self.classes
            },
            TRAIN: [s.rel_path for s in self.train],
            VALID: [s.rel_path for s in self.valid],
            "labels": {s.rel_path: s.label for s in (*self.train, *self.valid) if s.label != s.folder},
            "skipped": self.skipped,
            "excluded": self.excluded,
            "ignored_labels": self.ignored_labels,
            "near_duplicate_groups": self.near_duplicates,
            "split_crossing_groups": self.split_crossing_groups,
        }


def _count(samples: Iterable[Sample], label: str) -> int:
    """How many samples carry a label."""
    return sum(1 for s in samples if s.label == label)


def _is_image(path: Path) -> bool:
    """True for files the job trains on (by suffix, hidden files left out)."""
    return path.is_file() and not path.name.startswith(".") and path.suffix.lower() in IMAGE_SUFFIXES


def _subdirs(folder: Path) -> list[Path]:
    """The visible sub-folders of a folder, sorted for a stable order."""
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _split_dirs(root: Path) -> dict[str, Path] | None:
    """The train/ and valid/ folders when the dataset brings its own split, else None."""
    found = {}
    for split, names in _SPLIT_DIRS.items():
        found[split] = next((root / n for n in names if (root / n).is_dir()), None)
    return found if all(found.values()) else None


def label_name(folder_name: str) -> str:
    """A label as the rest of the system spells it (NFC, like the collector's S3 keys)."""
    return unicodedata.normalize("NFC", folder_name)


def scan_folders(root: Path) -> tuple[list[Sample], list[str], str]:
    """Find the images under the label folders: (samples, labels seen, "folders" or "random" split)."""
    if not root.is_dir():
        raise JobFailure(f"The training data folder {root} does not exist; was the 'train' channel given?")
    split_dirs = _split_dirs(root)
    parents = list(split_dirs.items()) if split_dirs else [(None, root)]
    samples, labels = [], set()
    for split, parent in parents:
        for label_dir in _subdirs(parent):
            labels.add(label_name(label_dir.name))
            for path in sorted(label_dir.iterdir()):
                if _is_image(path):
                    rel = path.relative_to(root).as_posix()
                    samples.append(Sample(rel, label_name(label_dir.name), split))
    return samples, sorted(labels), ("folders" if split_dirs else "random")


def read_manifest(path: Path) -> Parsed:
    """The manifest's records in file order, and the lines that are no record (skipped, with the reason)."""
    return parse_lines(path.read_text(encoding="utf-8", errors="replace").splitlines())


class _FileIndex:
    """Finds the files of an image: at its S3 key (the dataset prefix dropped), and by the hash in the name."""

    def __init__(self, rel_paths: Iterable[str]):
        self.by_rel = set(rel_paths)
        self.by_hash = defaultdict(list)
        for rel in sorted(self.by_rel):
            match = _HASH12.search(Path(rel).stem.lower())
            if match:
                self.by_hash[match.group(1)].append(rel)

    def find(self, sha256: str, key: str | None = None) -> list[str]:
        """The relative paths of an image: several when it sits in two split folders, or a copy was left behind."""
        found = set(self.by_hash.get(sha256[:12].lower(), [])) if len(sha256) >= 12 else set()
        if key:
            # An S3 key carries the dataset prefix in front of the relative path: try each suffix.
            parts = unicodedata.normalize("NFC", key).strip("/").split("/")
            suffixes = ("/".join(parts[start:]) for start in range(len(parts)))
            found.update(next(([rel] for rel in suffixes if rel in self.by_rel), []))
        return sorted(found)


def apply_manifest(state: DatasetState, rel_paths: Iterable[str], include_ambiguous: bool) -> ManifestEffects:
    """Give each file what the manifest says of its image now: its label, or why it is left out.

    The manifest decides, not the folder: an image deleted or relabelled is so even where its object was
    never moved. Files of images the manifest does not know keep their folder's label.
    """
    index = _FileIndex(rel_paths)
    effects = ManifestEffects()
    for image in state.images.values():
        for rel in index.find(image.sha256, image.key):
            if image.ambiguous and not include_ambiguous:
                effects.excluded[rel] = "ambiguous"
            else:
                effects.labels[rel] = label_name(image.label)
    if not include_ambiguous:
        for sha in state.ambiguous.keys() - state.images.keys():
            for rel in index.find(sha):
                effects.excluded.setdefault(rel, "ambiguous")
    for sha, edit in state.deleted.items():
        for rel in index.find(sha, edit.key):
            effects.excluded[rel] = "deleted"
            effects.labels.pop(rel, None)
    return effects


def check_image(path: Path) -> str | None:
    """Why an image cannot be trained on (None when it decodes): PIL verify, then a real load."""
    try:
        with Image.open(path) as image:
            image.verify()
        # verify() leaves the file unusable and misses truncated pixel data; a load catches that.
        with Image.open(path) as image:
            # A reduced-size JPEG decode still reads every byte but skips most of the pixel work.
            image.draft("RGB", (64, 64))
            image.load()
            if image.width < 1 or image.height < 1:
                return "image has no pixels"
    except Exception as exc:  # noqa: BLE001 - PIL raises many types for bad files; all mean "skip it"
        return f"{type(exc).__name__}: {exc}"
    return None


def find_unreadable(root: Path, rel_paths: Sequence[str], workers: int | None = None) -> dict[str, str]:
    """The images that fail to decode, with the reason, checked in parallel (PIL releases the GIL)."""
    workers = workers or min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        reasons = pool.map(lambda rel: check_image(root / rel), rel_paths)
        return {rel: reason for rel, reason in zip(rel_paths, reasons, strict=True) if reason}


def split_samples(samples: Sequence[Sample], seed: int, valid_pct: float,
                  groups: Sequence[Sequence[str]] = ()) -> tuple[list[Sample], list[Sample]]:
    """Train and valid lists: assigned splits kept, the rest split per label at random from the seed.

    groups (relative paths of near-duplicates) are never split: an unassigned image goes where an assigned member
    of its group is, and an unassigned group goes to one side as a whole, counted with its first image's label.
    """
    train = [s for s in samples if s.split == TRAIN]
    valid = [s for s in samples if s.split == VALID]
    # A reproducible split from the seed, not a secret: the standard PRNG is the right tool.
    rng = random.Random(seed)  # nosec B311
    group_of = {rel: i for i, members in enumerate(groups) for rel in members}
    assigned = {group_of[s.rel_path]: s.split for s in (*train, *valid) if s.rel_path in group_of}
    units: dict[object, list[Sample]] = {}
    for sample in sorted(samples, key=lambda s: s.rel_path):
        if sample.split is not None:
            continue
        group = group_of.get(sample.rel_path)
        if group in assigned:  # a member already sits in a split: the rest of its group follows it
            (valid if assigned[group] == VALID else train).append(replace(sample, split=assigned[group]))
            continue
        units.setdefault(sample.rel_path if group is None else ("group", group), []).append(sample)
    by_label: dict[str, list[list[Sample]]] = defaultdict(list)
    for unit in units.values():
        by_label[unit[0].label].append(unit)
    # Per-label (stratified) so every class lands in both splits; sorted input keeps it reproducible.
    for label in sorted(by_label):
        pool = by_label[label]
        rng.shuffle(pool)
        n_images = sum(len(unit) for unit in pool)
        n_valid = _valid_count(n_images, valid_pct, _count(train, label) > 0, _count(valid, label) > 0)
        taken = 0
        for unit in pool:
            side = VALID if taken < n_valid and (taken + len(unit) <= n_valid or taken == 0) else TRAIN
            taken += len(unit) if side == VALID else 0
            (valid if side == VALID else train).extend(replace(s, split=side) for s in unit)
    return sorted(train, key=lambda s: s.rel_path), sorted(valid, key=lambda s: s.rel_path)


def _valid_count(n: int, valid_pct: float, has_train: bool, has_valid: bool) -> int:
    """How many of a label's n unassigned images go to valid, keeping at least one on each side."""
    n_valid = round(n * valid_pct)
    if not has_valid:
        n_valid = max(n_valid, 1)
    if not has_train:
        n_valid = min(n_valid, n - 1)
    return max(0, min(n_valid, n))


def _describe_counts(counts: dict[str, int]) -> str:
    """'a' (1), 'b' (0): label counts for messages."""
    return ", ".join(f"{label!r} ({n})" for label, n in counts.items())


def check_classes(samples: Sequence[Sample], labels_seen: Sequence[str], min_per_class: int) -> list[str]:
    """Fail on fewer than two usable classes or too few images per class; return the empty labels."""
    counts = Counter(s.label for s in samples)
    empty = sorted(set(labels_seen) - set(counts))
    if len(counts) < 2:
        found = _describe_counts(dict(counts)) or "none"
        hint = f"; empty label folders: {', '.join(map(repr, empty))}" if empty else ""
        raise JobFailure(
            f"Training needs at least 2 labels with images, found {len(counts)}: {found}{hint}. "
            "Collect images for more labels or fix the dataset layout ({label}/{image}.jpg)."
        )
    too_few = {label: n for label, n in sorted(counts.items()) if n < min_per_class}
    if too_few:
        raise JobFailure(
            f"Too few images for label(s) {_describe_counts(too_few)}: each label needs at least "
            f"{min_per_class} usable images. Collect more images or remove those labels."
        )
    return empty


def check_split(train: Sequence[Sample], valid: Sequence[Sample], classes: Sequence[str]) -> None:
    """Fail when a label has no image in train or none in valid, saying which and how many."""
    problems = []
    for label in classes:
        n_train, n_valid = _count(train, label), _count(valid, label)
        if n_train < 1 or n_valid < 1:
            problems.append(f"{label!r} has {n_train} train and {n_valid} valid images")
    if problems:
        raise JobFailure(
            "Every label needs at least 1 image in train and 1 in valid, but " + "; ".join(problems)
            + ". Add images to those folders or let the job split the data (no train/valid folders)."
        )


def prepare_dataset(
    root: Path, *, seed: int, valid_pct: float, include_ambiguous: bool = False, min_per_class: int = 2,
    near_duplicates: bool = True,
) -> DatasetPlan:
    """Scan, apply the manifest, drop unreadable images, check the classes, find near-duplicates and split the
    data, keeping each group of near-duplicates on one side."""
    samples, labels_seen, split_mode = scan_folders(root)
    warnings: list[str] = []
    manifest = root / MANIFEST_NAME
    manifest_sha256, effects = None, ManifestEffects()
    if manifest.is_file():
        manifest_sha256 = hashlib.sha256(manifest.read_bytes()).hexdigest()
        parsed = read_manifest(manifest)
        state = replay(parsed.records)
        effects = apply_manifest(state, (s.rel_path for s in samples), include_ambiguous)
        if parsed.problems:
            warnings.append(f"{len(parsed.problems)} manifest line(s) ignored, not manifest records: "
                            + "; ".join(map(str, parsed.problems[:3])))
        if state.refused:
            warnings.append(f"{len(state.refused)} manifest edit(s) changed nothing: " + "; ".join(
                f"{edit.edit} of {edit.key} ({why})" for edit, why in state.refused[:3]))
    samples = _with_manifest(samples, effects)
    skipped = find_unreadable(root, [s.rel_path for s in samples])
    if skipped:
        warnings.append(f"{len(skipped)} unreadable image(s) skipped: {', '.join(sorted(skipped)[:5])}")
    samples = [s for s in samples if s.rel_path not in skipped]
    empty = check_classes(samples, labels_seen, min_per_class)
    if empty:
        warnings.append(f"Ignoring label(s) without usable images: {', '.join(map(repr, empty))}")
    groups: list[list[str]] = []
    if near_duplicates:
        rel_paths = [s.rel_path for s in samples]
        groups = [[rel_paths[i] for i in g] for g in neardup.groups(neardup.hash_files(root, rel_paths))]
        if groups:
            log.info("%d group(s) of near-duplicate images (%d images); each stays on one side of the split",
                     len(groups), sum(map(len, groups)))
    train, valid = split_samples(samples, seed, valid_pct, groups)
    classes = sorted({s.label for s in samples})
    check_split(train, valid, classes)
    for message in warnings:
        log.warning(message)
    return DatasetPlan(
        root=root, classes=classes, train=train, valid=valid, split_mode=split_mode, seed=seed,
        valid_pct=valid_pct, skipped=skipped, excluded=dict(sorted(effects.excluded.items())),
        ignored_labels=empty, warnings=warnings, manifest_sha256=manifest_sha256, near_duplicates=groups,
    )


def _with_manifest(samples: Sequence[Sample], effects: ManifestEffects) -> list[Sample]:
    """The samples the manifest keeps, each with the label the manifest gives it."""
    return [replace(s, label=effects.labels.get(s.rel_path, s.label))
            for s in samples if s.rel_path not in effects.excluded]
