"""A labeled upload joins a dataset through the collector's checks and de-duplication, with its provenance."""

from __future__ import annotations

import json

import pytest

from imgclf import keys
from imgclf_collector.ingest import add_upload
from imgclf_collector.manifest import DatasetManifest
from imgclf_collector.pipeline import CollectConfig
from tests.support.images import photo
from tests.support.tables import BUCKET

DATASET = "insects"
AT = "2026-12-01T10:00:00.000+00:00"


@pytest.fixture
def config(settings) -> CollectConfig:
    return CollectConfig.from_settings(settings)


def uploaded(s3, name: str, body: bytes) -> str:
    key = f"uploads/{name}"
    s3.put_object(Bucket=BUCKET, Key=key, Body=body)
    return key


def add(s3, config, key: str, label: str | None, by: str = "ann") -> dict:
    return add_upload(s3, BUCKET, dataset=DATASET, upload_key=key, label=label, by=by, at=AT, config=config)


def test_an_upload_is_added_under_its_label_with_its_provenance(s3, config):
    # WHEN a labeled upload is added
    result = add(s3, config, uploaded(s3, "a.jpg", photo(1)), "wasps")

    # THEN it is a JPEG under the label's folder, and the manifest says where it came from, who and when
    assert result["status"] == "added"
    assert result["key"] == keys.dataset_image_key(DATASET, "wasps", result["sha256"])
    (record,) = DatasetManifest(s3, BUCKET, DATASET)._log.read()[0]
    assert {k: record[k] for k in ("label", "source", "url", "upload_key", "labeled_by", "labeled_at")} == {
        "label": "wasps", "source": "upload", "url": f"s3://{BUCKET}/uploads/a.jpg", "upload_key": "uploads/a.jpg",
        "labeled_by": "ann", "labeled_at": AT}
    assert record["phash"] and s3.head_object(Bucket=BUCKET, Key=result["key"])["ContentType"] == "image/jpeg"


def test_the_same_picture_again_is_a_duplicate_and_under_another_label_ambiguous(s3, config):
    # GIVEN a picture in the dataset under wasps
    add(s3, config, uploaded(s3, "a.jpg", photo(1)), "wasps")

    # WHEN the same picture is labeled wasps again, then bees
    again = add(s3, config, uploaded(s3, "b.jpg", photo(1)), "wasps")
    other = add(s3, config, uploaded(s3, "c.jpg", photo(1)), "bees")

    # THEN the first adds nothing, the second marks the picture ambiguous and leaves no object behind
    assert again["status"] == "duplicate" and other["status"] == "ambiguous" and other["key"] is None
    records = DatasetManifest(s3, BUCKET, DATASET)._log.read()[0]
    assert [r.get("label") for r in records if not r.get("ambiguous")] == ["wasps"]
    assert [sorted(r["labels"]) for r in records if r.get("ambiguous")] == [["bees", "wasps"]]
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix=f"datasets/{DATASET}/bees/").get("KeyCount")
    assert listed == 0


def test_none_of_these_is_kept_once_outside_the_manifest(s3, config):
    # WHEN the same picture is marked none of these twice
    first = add(s3, config, uploaded(s3, "n.jpg", photo(2)), None)
    second = add(s3, config, uploaded(s3, "m.jpg", photo(2)), None)

    # THEN it is kept once under .negatives/, logged with its provenance, and the manifest has nothing
    assert (first["status"], second["status"]) == ("added", "duplicate")
    assert first["key"] == keys.negative_image_key(DATASET, first["sha256"])
    log = s3.get_object(Bucket=BUCKET, Key=keys.negatives_log_key(DATASET))["Body"].read().splitlines()
    assert [json.loads(line)["upload_key"] for line in log] == ["uploads/n.jpg"]
    assert DatasetManifest(s3, BUCKET, DATASET)._log.read()[0] == []


def test_an_upload_that_is_no_image_is_rejected_without_a_trace(s3, config):
    result = add(s3, config, uploaded(s3, "x.jpg", b"not an image at all"), "wasps")

    assert result["status"] == "rejected" and result["reason"]
    assert s3.list_objects_v2(Bucket=BUCKET, Prefix="datasets/").get("KeyCount") == 0
