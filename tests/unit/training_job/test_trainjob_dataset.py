"""The training job's dataset handling: layout, manifest audit records, image checks and the split."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from imgclf_trainjob.dataset import check_image, prepare_dataset
from imgclf_trainjob.errors import JobFailure


def plan_of(root: Path, **kwargs):
    """prepare_dataset with the job's defaults."""
    return prepare_dataset(root, **{"seed": 42, "valid_pct": 0.2, **kwargs})


def sha_of(path: Path) -> str:
    """The sha256 of a file, as the collector records it."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def paths(samples) -> list[str]:
    """The relative paths of samples."""
    return [s.rel_path for s in samples]


def test_random_split_is_stratified_and_complete(make_dataset):
    root = make_dataset({"cats": 10, "dogs": 6})
    plan = plan_of(root)
    assert plan.classes == ["cats", "dogs"]
    assert plan.split_mode == "random"
    counts = plan.split_record()["counts"]
    assert counts == {"cats": {"train": 8, "valid": 2}, "dogs": {"train": 5, "valid": 1}}
    every = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.jpg"))
    assert sorted(paths(plan.train) + paths(plan.valid)) == every


def test_same_seed_gives_the_same_split_and_another_seed_another(make_dataset):
    root = make_dataset({"cats": 20, "dogs": 20})
    first, again = plan_of(root, seed=7), plan_of(root, seed=7)
    other = plan_of(root, seed=8)
    assert first.split_record() == again.split_record()
    assert paths(first.valid) != paths(other.valid)


def test_own_train_valid_folders_are_used_as_given(make_dataset):
    root = make_dataset({"ants": (4, 2), "bees": (3, 2)})
    plan = plan_of(root)
    assert plan.split_mode == "folders"
    assert all(p.startswith("train/") for p in paths(plan.train))
    given = sorted(p.relative_to(root).as_posix() for p in root.glob("valid/*/*.jpg"))
    assert sorted(paths(plan.valid)) == given
    assert plan.classes == ["ants", "bees"]
    assert plan.labels_match_folders


def test_labels_with_spaces_and_non_ascii_work(make_dataset):
    root = make_dataset({"red apple": 4, "blåbær": 4, "狗 dog": 4})
    plan = plan_of(root)
    assert plan.classes == sorted(["red apple", "blåbær", "狗 dog"])
    assert {s.label for s in plan.valid} == set(plan.classes)


def test_ambiguous_records_are_excluded_unless_asked_for(make_dataset):
    root = make_dataset({"cats": 5, "dogs": 5})
    cat = sorted((root / "cats").glob("*.jpg"))[0]
    dog = sorted((root / "dogs").glob("*.jpg"))[0]
    manifest = [
        {"label": "cats", "sha256": sha_of(cat), "ambiguous": True},
        # An S3 key with the dataset prefix finds the file too.
        {"key": f"datasets/pets/dogs/{dog.name}", "label": "dogs", "ambiguous": True},
    ]
    (root / "manifest.jsonl").write_text("\n".join(map(json.dumps, manifest)) + "\n")
    plan = plan_of(root)
    kept = paths(plan.train) + paths(plan.valid)
    assert f"cats/{cat.name}" not in kept and f"dogs/{dog.name}" not in kept
    assert plan.excluded == {f"cats/{cat.name}": "ambiguous", f"dogs/{dog.name}": "ambiguous"}
    assert plan.manifest_sha256 == sha_of(root / "manifest.jsonl")
    included = plan_of(root, include_ambiguous=True)
    assert len(included.train) + len(included.valid) == 10


def test_deleted_relabel_and_split_records_apply_in_order(make_dataset):
    root = make_dataset({"cats": 6, "dogs": 6})
    cats = sorted((root / "cats").glob("*.jpg"))
    manifest = [
        {"sha256": sha_of(cats[0]), "deleted": True},
        {"sha256": sha_of(cats[1]), "relabel": "dogs"},
        {"sha256": sha_of(cats[2]), "split": "valid"},
        {"sha256": sha_of(cats[3]), "ambiguous": True},
        {"sha256": sha_of(cats[3]), "ambiguous": False},
        {"sha256": "0" * 64, "label": "cats"},
        "not an object",
    ]
    lines = [json.dumps(m) for m in manifest] + ["{broken json"]
    (root / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    plan = plan_of(root)
    labels = {s.rel_path: s.label for s in (*plan.train, *plan.valid)}
    assert f"cats/{cats[0].name}" not in labels
    assert labels[f"cats/{cats[1].name}"] == "dogs"
    assert f"cats/{cats[2].name}" in paths(plan.valid)
    assert f"cats/{cats[3].name}" in labels
    assert plan.split_mode == "manifest"
    assert not plan.labels_match_folders
    assert plan.split_record()["labels"] == {f"cats/{cats[1].name}": "dogs"}
    assert any("2 manifest line(s)" in w for w in plan.warnings)


def test_corrupt_images_are_skipped_and_counted(make_dataset):
    root = make_dataset({"cats": 4, "dogs": 4})
    (root / "cats" / "cats-000000000000.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    good = sorted((root / "dogs").glob("*.jpg"))[0].read_bytes()
    (root / "dogs" / "dogs-111111111111.jpg").write_bytes(good[: len(good) // 2])
    plan = plan_of(root)
    assert set(plan.skipped) == {"cats/cats-000000000000.jpg", "dogs/dogs-111111111111.jpg"}
    assert len(plan.train) + len(plan.valid) == 8


def test_check_image_accepts_png_with_alpha(tmp_path):
    from PIL import Image

    path = tmp_path / "a.png"
    Image.new("RGBA", (10, 7), (1, 2, 3, 4)).save(path)
    assert check_image(path) is None


def test_empty_label_folder_is_ignored_with_a_warning(make_dataset):
    root = make_dataset({"cats": 4, "dogs": 4, "empty": 0})
    plan = plan_of(root)
    assert plan.classes == ["cats", "dogs"]
    assert plan.ignored_labels == ["empty"]
    assert any("empty" in w for w in plan.warnings)


def test_single_class_fails_clearly(make_dataset):
    root = make_dataset({"cats": 6, "empty": 0})
    with pytest.raises(JobFailure, match=r"at least 2 labels with images, found 1: 'cats' \(6\).*'empty'"):
        plan_of(root)


def test_too_few_images_name_the_label_and_count(make_dataset):
    root = make_dataset({"cats": 6, "dogs": 1})
    with pytest.raises(JobFailure, match=r"Too few images for label\(s\) 'dogs' \(1\)"):
        plan_of(root)


def test_own_split_without_valid_images_for_a_label_fails(make_dataset):
    root = make_dataset({"ants": (4, 2), "bees": (3, 0)})
    with pytest.raises(JobFailure, match=r"'bees' has 3 train and 0 valid images"):
        plan_of(root)


def test_missing_data_folder_fails(tmp_path):
    with pytest.raises(JobFailure, match="does not exist"):
        plan_of(tmp_path / "nope")
