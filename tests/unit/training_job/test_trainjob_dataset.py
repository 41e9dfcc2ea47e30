"""The training job's dataset handling: layout, manifest audit records, image checks and the split."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from imgclf.manifest import AmbiguousRecord, EditRecord, ImageRecord, to_line
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


def write_manifest(root: Path, records: list) -> None:
    """manifest.jsonl from schema records (or raw lines, for lines that break the schema)."""
    lines = [r if isinstance(r, str) else to_line(r) for r in records]
    (root / "manifest.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")


def collected(path: Path, root: Path) -> ImageRecord:
    """The collector's record of a file, its S3 key under a dataset prefix."""
    rel = path.relative_to(root).as_posix()
    return ImageRecord(sha_of(path), path.parent.name, key=f"datasets/pets/{rel}", source="test")


def edit(action: str, record: ImageRecord, to_label: str | None = None) -> EditRecord:
    """An edit record as imgclf.datasets writes it (the object stays where it is)."""
    return EditRecord(action, record.sha256, record.key, record.label, by="tester", at="2026-12-01T00:00:00.000+00:00",
                      to_label=to_label, to_key=None)


def test_ambiguous_records_are_excluded_unless_asked_for(make_dataset):
    # GIVEN a cat picture the collector also found for dogs, and a dog picture it also found for cats
    root = make_dataset({"cats": 5, "dogs": 5})
    cat = sorted((root / "cats").glob("*.jpg"))[0]
    dog = sorted((root / "dogs").glob("*.jpg"))[0]
    both = ("cats", "dogs")
    write_manifest(root, [collected(cat, root), collected(dog, root),
                          AmbiguousRecord(sha_of(cat), both), AmbiguousRecord(sha_of(dog), both)])

    # WHEN the job plans its dataset, without and with include_ambiguous
    plan = plan_of(root)
    included = plan_of(root, include_ambiguous=True)

    # THEN both are left out unless asked for, and the manifest's digest is recorded
    kept = paths(plan.train) + paths(plan.valid)
    assert f"cats/{cat.name}" not in kept and f"dogs/{dog.name}" not in kept
    assert plan.excluded == {f"cats/{cat.name}": "ambiguous", f"dogs/{dog.name}": "ambiguous"}
    assert plan.manifest_sha256 == sha_of(root / "manifest.jsonl")
    assert len(included.train) + len(included.valid) == 10


def test_edits_decide_even_where_the_objects_were_not_moved(make_dataset):
    # GIVEN cats collected, then one deleted, one relabelled dog, one kept: records only, no file moved
    root = make_dataset({"cats": 6, "dogs": 6})
    cats = [collected(path, root) for path in sorted((root / "cats").glob("*.jpg"))]
    write_manifest(root, [*cats, edit("delete", cats[0]), edit("relabel", cats[1], "dogs"), edit("keep", cats[2])])

    # WHEN the job plans its dataset
    plan = plan_of(root)

    # THEN the deleted one is out, the relabelled one is a dog where it lies, the kept one a cat
    labels = {s.rel_path: s.label for s in (*plan.train, *plan.valid)}
    rel = [c.key.removeprefix("datasets/pets/") for c in cats]
    assert rel[0] not in labels and plan.excluded == {rel[0]: "deleted"}
    assert labels[rel[1]] == "dogs" and labels[rel[2]] == "cats"
    assert not plan.labels_match_folders
    assert plan.split_record()["labels"] == {rel[1]: "dogs"}


def test_a_relabel_after_a_delete_changes_nothing_and_is_reported(make_dataset):
    # GIVEN a cat deleted, then (a concurrent editor) relabelled
    root = make_dataset({"cats": 5, "dogs": 5})
    cat = collected(sorted((root / "cats").glob("*.jpg"))[0], root)
    write_manifest(root, [cat, edit("delete", cat), edit("relabel", cat, "dogs")])

    # WHEN the job plans its dataset
    plan = plan_of(root)

    # THEN the image stays deleted and the refused edit is named in the warnings
    assert plan.excluded == {cat.key.removeprefix("datasets/pets/"): "deleted"}
    assert any("1 manifest edit(s) changed nothing: relabel of" in w for w in plan.warnings)


def test_an_image_is_found_by_its_key_when_its_file_name_has_no_hash(make_dataset):
    # GIVEN a file named without the collector's hash, and an edit that relabels it
    root = make_dataset({"cats": 5, "dogs": 5})
    (root / "cats" / "tabby.jpg").write_bytes(sorted((root / "cats").glob("*.jpg"))[0].read_bytes())
    tabby = ImageRecord("f" * 64, "cats", key="datasets/pets/cats/tabby.jpg")
    write_manifest(root, [tabby, edit("relabel", tabby, "dogs")])

    # WHEN the job plans its dataset
    plan = plan_of(root)

    # THEN the key found it
    assert {s.rel_path: s.label for s in (*plan.train, *plan.valid)}["cats/tabby.jpg"] == "dogs"


def test_lines_outside_the_schema_are_skipped_and_counted(make_dataset):
    # GIVEN a manifest with the old reader-only vocabulary, a non-object and broken JSON next to a real record
    root = make_dataset({"cats": 6, "dogs": 6})
    cats = sorted((root / "cats").glob("*.jpg"))
    write_manifest(root, [
        collected(cats[0], root),
        json.dumps({"sha256": sha_of(cats[1]), "deleted": True}),
        json.dumps({"sha256": sha_of(cats[2]), "relabel": "dogs"}),
        json.dumps("not an object"),
        "{broken json",
    ])

    # WHEN the job plans its dataset
    plan = plan_of(root)

    # THEN nothing of them applies, and the warning counts them with the first reasons
    labels = {s.rel_path: s.label for s in (*plan.train, *plan.valid)}
    assert labels[f"cats/{cats[1].name}"] == labels[f"cats/{cats[2].name}"] == "cats"
    assert not plan.excluded and plan.labels_match_folders
    (warning,) = [w for w in plan.warnings if "manifest line(s)" in w]
    assert warning.startswith("4 manifest line(s) ignored") and "line 2: no record of the manifest schema" in warning


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
