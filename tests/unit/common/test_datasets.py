"""The cleaning loop's edits: objects move, the manifest keeps an audit trail, the dataset version changes."""

from __future__ import annotations

import boto3
import pytest
from botocore.exceptions import ClientError

from imgclf.datasets import Dataset, current_images
from imgclf.errors import Conflict, NotFound, TransientError
from tests.support.datasets import upload_dataset

BUCKET = "imgclf-test-data"


@pytest.fixture
def dataset(mocked_aws):
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket=BUCKET)
    keys = upload_dataset(s3, BUCKET, "obama", ["happy", "sad"], per_label=3)
    return Dataset(s3, BUCKET, "obama"), s3, keys


def _listed(s3) -> set[str]:
    return {o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="datasets/obama/")["Contents"]}


def test_delete_removes_the_object_and_records_who_and_why(dataset):
    data, s3, keys = dataset
    before = data.version()

    record = data.edit(keys[0], "delete", by="alice", reason="not a face")

    assert keys[0] not in _listed(s3)
    assert data.records()[-1] == record
    assert record["by"] == "alice" and record["reason"] == "not a face" and record["label"] == "happy"
    assert data.version() != before
    assert data.summary()["labels"] == {"happy": 2, "sad": 3}


def test_relabel_moves_the_object_under_the_new_label(dataset):
    data, s3, keys = dataset

    record = data.edit(keys[0], "relabel", by="bob", label="sad")

    assert record["to_key"].startswith("datasets/obama/sad/sad-") and record["to_key"] in _listed(s3)
    assert keys[0] not in _listed(s3)
    assert data.summary()["labels"] == {"happy": 2, "sad": 4}
    assert current_images(data.records())[record["sha256"]].label == "sad"


def test_keep_only_adds_to_the_audit_trail(dataset):
    data, s3, keys = dataset
    listed = _listed(s3)

    data.edit(keys[1], "keep", by="carol")

    assert _listed(s3) == listed
    assert data.summary()["edits"] == {"keep": 1}


def test_editing_an_image_twice_or_an_unknown_one_is_refused_clearly(dataset):
    data, _, keys = dataset
    data.edit(keys[0], "delete", by="alice")
    with pytest.raises(NotFound, match="deleted or moved already"):
        data.edit(keys[0], "delete", by="alice")
    with pytest.raises(Conflict, match="already"):
        data.edit(keys[1], "relabel", by="alice", label="happy")
    with pytest.raises(ValueError, match="needs the new label"):
        data.edit(keys[1], "relabel", by="alice")


def test_ambiguous_images_are_counted_apart():
    records = [
        {"sha256": "a", "label": "happy", "key": "datasets/d/happy/happy-a.jpg"},
        {"sha256": "b", "label": "sad", "key": "datasets/d/sad/sad-b.jpg"},
        {"sha256": "b", "ambiguous": True, "labels": ["sad", "happy"]},
    ]
    images = current_images(records)
    assert not images["a"].ambiguous and images["b"].ambiguous


def test_of_two_concurrent_edits_of_one_image_only_one_is_recorded(dataset):
    # GIVEN an editor that looked the image up before another editor deleted it
    data, s3, keys = dataset
    stale = data._find(keys[0])
    Dataset(s3, BUCKET, "obama").edit(keys[0], "delete", by="alice")
    data._find = lambda key: stale

    # WHEN the slower editor relabels it
    with pytest.raises(NotFound, match="someone else"):
        data.edit(keys[0], "relabel", by="bob", label="sad")

    # THEN only the deletion is recorded and the relabel left no copy behind
    assert [r["edit"] for r in data.records() if r.get("edit")] == ["delete"]
    assert not any(k.startswith("datasets/obama/sad/sad-" + stale.sha256[:12]) for k in _listed(s3))


def test_a_throttled_edit_fails_with_the_projects_error_and_records_nothing(dataset, monkeypatch):
    # GIVEN S3 throttling every deletion
    data, s3, keys = dataset

    def throttled(**kwargs):
        raise ClientError({"Error": {"Code": "SlowDown", "Message": "slow down"},
                           "ResponseMetadata": {"HTTPStatusCode": 503}}, "DeleteObject")

    monkeypatch.setattr(s3, "delete_object", throttled)

    # WHEN an image is deleted (as `imgclf edit` does, with no wrapper of its own)
    # THEN the error is TransientError, not botocore's, and the manifest records no edit
    with pytest.raises(TransientError, match="SlowDown"):
        data.edit(keys[0], "delete", by="alice")
    assert not [r for r in data.records() if r.get("edit")]


def test_a_dataset_in_a_missing_bucket_is_not_found_rather_than_empty(mocked_aws):
    # GIVEN a dataset whose bucket does not exist (a wrong DATA_BUCKET)
    data = Dataset(boto3.client("s3", region_name="us-east-1"), "no-such-bucket-here", "obama")

    # WHEN its summary is read
    # THEN the missing bucket is named, not mistaken for a dataset nobody collected
    with pytest.raises(NotFound, match="NoSuchBucket"):
        data.summary()
