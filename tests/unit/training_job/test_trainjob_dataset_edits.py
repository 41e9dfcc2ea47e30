"""The cleaning loop's real edit records, replayed by the training job: what it trains on after the edits."""

from __future__ import annotations

from pathlib import Path

import boto3
import pytest

from imgclf.datasets import Dataset
from imgclf_trainjob.dataset import prepare_dataset
from tests.support.datasets import upload_dataset

BUCKET = "imgclf-test-data"
PREFIX = "datasets/obama/"


@pytest.fixture
def edited(mocked_aws):
    """A collected dataset in moto S3, its objects before any edit, and the edits made with imgclf.datasets."""
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket=BUCKET)
    keys = upload_dataset(s3, BUCKET, "obama", ["happy", "sad"], per_label=4)
    before = {key: s3.get_object(Bucket=BUCKET, Key=key)["Body"].read() for key in keys}
    data = Dataset(s3, BUCKET, "obama")
    happy = [key for key in keys if "/happy/" in key]
    records = {
        "delete": data.edit(happy[0], "delete", by="alice", reason="not him"),
        "relabel": data.edit(happy[1], "relabel", by="bob", label="sad", reason="frowning"),
        "keep": data.edit(happy[2], "keep", by="carol"),
    }
    return s3, before, records


def channel(s3, root: Path, objects: dict[str, bytes] | None = None) -> Path:
    """The SageMaker 'train' channel: the dataset prefix downloaded, objects optionally replaced."""
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix=PREFIX)["Contents"]
    files = {o["Key"]: s3.get_object(Bucket=BUCKET, Key=o["Key"])["Body"].read() for o in listed}
    if objects is not None:
        files = {**objects, PREFIX + "manifest.jsonl": files[PREFIX + "manifest.jsonl"]}
    for key, body in files.items():
        path = root / key.removeprefix(PREFIX)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body)
    return root


def trained_on(root: Path) -> dict[str, str]:
    """The files the job trains on, with their labels."""
    plan = prepare_dataset(root, seed=42, valid_pct=0.2)
    return {s.rel_path: s.label for s in (*plan.train, *plan.valid)}


def rel(key: str) -> str:
    return key.removeprefix(PREFIX)


def test_the_job_trains_on_the_edited_dataset(edited, tmp_path):
    # GIVEN the edited dataset, downloaded as S3 holds it (the edits moved and deleted objects)
    s3, _, records = edited
    root = channel(s3, tmp_path)

    # WHEN the job plans its dataset
    labels = trained_on(root)

    # THEN the deleted image is absent, the relabelled one is a sad image, the kept one still happy
    assert rel(records["delete"]["key"]) not in labels
    assert labels[rel(records["relabel"]["to_key"])] == "sad"
    assert labels[rel(records["keep"]["key"])] == "happy"
    assert sorted(labels.values()) == ["happy"] * 2 + ["sad"] * 5


def test_the_manifest_alone_decides_where_the_objects_were_not_moved(edited, tmp_path):
    # GIVEN the manifest after the edits, next to the objects as they were before them
    s3, before, records = edited
    root = channel(s3, tmp_path, objects=before)

    # WHEN the job plans its dataset
    plan = prepare_dataset(root, seed=42, valid_pct=0.2)
    labels = {s.rel_path: s.label for s in (*plan.train, *plan.valid)}

    # THEN the deleted image is left out although its file is there, and the relabelled one is sad in happy/
    deleted = rel(records["delete"]["key"])
    assert (root / deleted).is_file() and deleted not in labels and plan.excluded == {deleted: "deleted"}
    assert labels[rel(records["relabel"]["key"])] == "sad"
    assert labels[rel(records["keep"]["key"])] == "happy"
    assert sorted(labels.values()) == ["happy"] * 2 + ["sad"] * 5
