"""The manifest: append-only JSON lines in S3, with concurrent appends made safe by conditional puts."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import threading
import time

import pytest
from botocore.exceptions import ClientError

from imgclf.errors import NotFound
from imgclf.manifest import AmbiguousRecord, EditRecord, ImageRecord
from imgclf.neardup import PHash
from imgclf_collector.manifest import DatasetManifest, JsonLinesLog, ManifestIndex, plan_commit
from tests.support.tables import BUCKET

KEY = "datasets/pets/manifest.jsonl"


def image(sha: str, label: str, url: str = "") -> ImageRecord:
    return ImageRecord(sha, label, key=f"datasets/pets/{label}/{label}-{sha[:12]}.jpg",
                       url=url or f"https://example.com/{sha}.jpg")


def lines(s3) -> list[dict]:
    body = s3.get_object(Bucket=BUCKET, Key=KEY)["Body"].read().decode()
    return [json.loads(line) for line in body.splitlines()]


def test_a_new_image_is_appended_as_is():
    # GIVEN a manifest holding one cat image
    existing = [image("a" * 64, "cat")]

    # WHEN a dog image with another hash is committed
    records, result = plan_commit(existing, [image("b" * 64, "dog")], {}, run="r1", collected_at="t")

    # THEN it is appended unchanged
    assert records == [image("b" * 64, "dog")]
    assert result.appended == records and not result.conflicts


def test_an_image_another_label_already_has_becomes_an_ambiguous_record():
    # GIVEN a manifest where "cat" already has an image
    existing = [image("a" * 64, "cat")]

    # WHEN the same picture is committed for "dog" (a concurrent collection got it too)
    records, result = plan_commit(existing, [image("a" * 64, "dog")], {}, run="r2", collected_at="t")

    # THEN the dog record is not appended; an ambiguous record names both labels instead
    assert result.conflicts == [image("a" * 64, "dog")]
    assert records == [AmbiguousRecord("a" * 64, ("cat", "dog"), collected_at="t", run="r2")]
    assert records[0].to_dict() == {"sha256": "a" * 64, "ambiguous": True, "labels": ["cat", "dog"],
                                    "collected_at": "t", "run": "r2"}


def test_an_image_the_same_label_already_has_is_dropped_as_a_duplicate():
    # GIVEN a manifest where "cat" has an image
    existing = [image("a" * 64, "cat")]

    # WHEN a concurrent run of "cat" commits the same picture
    records, result = plan_commit(existing, [image("a" * 64, "cat")], {}, run="r3", collected_at="t")

    # THEN nothing is appended
    assert records == [] and result.duplicates == [image("a" * 64, "cat")]


def test_an_ambiguity_already_recorded_is_not_recorded_again():
    # GIVEN a manifest that already marks a picture ambiguous between cat and dog
    existing = [image("a" * 64, "cat"), AmbiguousRecord("a" * 64, ("cat", "dog"))]

    # WHEN dog finds it again
    records, _ = plan_commit(existing, [], {"a" * 64: {"cat", "dog"}}, run="r4", collected_at="t")

    # THEN nothing new is written
    assert records == []


def test_an_image_relabelled_into_a_label_is_a_duplicate_there_not_an_ambiguity():
    # GIVEN a cat image the cleaning loop relabelled to dog
    existing = [image("a" * 64, "cat"),
                EditRecord("relabel", "a" * 64, image("a" * 64, "cat").key, "cat", by="alice", at="t",
                           to_label="dog", to_key=image("a" * 64, "dog").key)]

    # WHEN a dog collection finds the same picture
    records, result = plan_commit(existing, [image("a" * 64, "dog")], {}, run="r6", collected_at="t")

    # THEN it is dog's already: nothing is appended, and nothing marks the reviewed image ambiguous
    assert records == [] and result.duplicates == [image("a" * 64, "dog")]


# Perceptual hashes: NEAR is 3 bits from PICTURE, FAR is 32 bits from both; each mirror hash is far from all.
PICTURE, NEAR, FAR = "00000000ffffffff", "00000007ffffffff", "ffffffffffffffff"


def hashed(sha: str, label: str, phash: str, near_duplicate_of: str | None = None) -> ImageRecord:
    """An image record with a perceptual hash, as the collector writes them now."""
    mirror = f"{int(phash, 16) ^ 0x5555_5555_5555_5555:016x}"
    return dataclasses.replace(image(sha, label), phash=phash, phash_mirror=mirror,
                               near_duplicate_of=near_duplicate_of)


def test_a_near_duplicate_of_the_same_label_is_appended_pointing_to_its_group():
    # GIVEN a manifest with a cat picture, a copy of it grouped with it, and an unrelated cat image
    existing = [hashed("a" * 64, "cat", PICTURE), hashed("b" * 64, "cat", NEAR, "a" * 64),
                hashed("c" * 64, "cat", FAR)]

    # WHEN a cat image near the copy is committed, then a cat image near nothing
    new = hashed("d" * 64, "cat", NEAR)
    records, result = plan_commit(existing, [new, hashed("e" * 64, "cat", "0f0f0f0f0f0f0f0f")], {}, run="r7",
                                  collected_at="t")

    # THEN the first joins the picture's group (its oldest member), the second is in none
    assert [(r.sha256, r.near_duplicate_of) for r in records] == [("d" * 64, "a" * 64), ("e" * 64, None)]
    assert result.appended == records and not result.near_conflicts
    assert records[0] == dataclasses.replace(new, near_duplicate_of="a" * 64)


def test_a_near_duplicate_of_another_label_is_left_out_and_both_are_marked_ambiguous():
    # GIVEN a manifest where "cat" has a picture
    existing = [hashed("a" * 64, "cat", PICTURE)]

    # WHEN a dog image near it is committed (a concurrent dog collection stored a resized copy)
    dog = hashed("b" * 64, "dog", NEAR)
    records, result = plan_commit(existing, [dog], {}, run="r8", collected_at="t")

    # THEN the dog image is not appended, and the cat picture is marked ambiguous between cat and dog
    assert result.near_conflicts == [dog] and not result.appended
    assert records == [AmbiguousRecord("a" * 64, ("cat", "dog"), collected_at="t", run="r8")]


def test_a_near_duplicate_of_a_picture_already_ambiguous_is_ambiguous_too():
    # GIVEN a cat picture already marked ambiguous between cat and dog
    existing = [hashed("a" * 64, "cat", PICTURE), AmbiguousRecord("a" * 64, ("cat", "dog"))]

    # WHEN a cat copy of it is committed
    records, result = plan_commit(existing, [hashed("b" * 64, "cat", NEAR)], {}, run="r9", collected_at="t")

    # THEN the copy is left out as ambiguous, and nothing new is written
    assert len(result.near_conflicts) == 1 and records == []


def test_a_near_duplicate_of_a_deleted_image_is_appended_in_no_group():
    # GIVEN a cat picture the cleaning loop deleted
    existing = [hashed("a" * 64, "cat", PICTURE),
                EditRecord("delete", "a" * 64, image("a" * 64, "cat").key, "cat", by="alice", at="t")]

    # WHEN a dog copy of it is committed
    records, result = plan_commit(existing, [hashed("b" * 64, "dog", NEAR)], {}, run="r10", collected_at="t")

    # THEN it is appended as it is: the deleted image is no longer in the dataset
    assert result.appended == records and [r.near_duplicate_of for r in records] == [None]


def test_a_near_duplicate_relabelled_into_the_label_is_the_same_label():
    # GIVEN a cat picture the cleaning loop relabelled to dog
    existing = [hashed("a" * 64, "cat", PICTURE),
                EditRecord("relabel", "a" * 64, image("a" * 64, "cat").key, "cat", by="alice", at="t",
                           to_label="dog")]

    # WHEN a dog copy and a cat copy of it are committed
    dog, cat = hashed("b" * 64, "dog", NEAR), hashed("c" * 64, "cat", NEAR)
    records, result = plan_commit(existing, [dog, cat], {}, run="r11", collected_at="t")

    # THEN the dog copy joins its group; the cat copy is an ambiguity of the picture (and of the dog copy)
    assert [(r.sha256, r.near_duplicate_of) for r in result.appended] == [("b" * 64, "a" * 64)]
    assert result.near_conflicts == [cat]
    assert [(r.sha256, r.labels) for r in records if isinstance(r, AmbiguousRecord)] == [
        ("a" * 64, ("cat", "dog")), ("b" * 64, ("cat", "dog"))]


def test_the_index_finds_near_duplicates_with_their_labels():
    # GIVEN an index of a cat picture with a perceptual hash and a dog image written before hashes existed
    index = ManifestIndex.build([hashed("a" * 64, "cat", PICTURE), image("b" * 64, "dog")])

    # WHEN a copy of the picture is looked up
    matches = index.near_duplicates(PHash(NEAR, FAR))

    # THEN the cat picture is found, with its label and group
    assert matches == ["a" * 64] and index.near_labels(matches) == {"cat"} and index.group(matches) == "a" * 64
    assert index.near_duplicates(None) == []


def test_records_that_break_the_schema_are_skipped_when_the_manifest_is_read(s3):
    # GIVEN a manifest with a line of an unknown vocabulary between two image records
    body = "\n".join(json.dumps(r) for r in (image("a" * 64, "cat").to_dict(), {"sha256": "b" * 64, "deleted": True},
                                             image("c" * 64, "dog").to_dict()))
    s3.put_object(Bucket=BUCKET, Key=KEY, Body=body.encode() + b"\n")

    # WHEN the collector loads it
    index = DatasetManifest(s3, BUCKET, "pets").load()

    # THEN the two images are known and the odd line is left out
    assert dict(index.labels_by_sha) == {"a" * 64: {"cat"}, "c" * 64: {"dog"}}


def test_the_index_lists_ambiguous_hashes_for_training_to_leave_out():
    # GIVEN a manifest with an ambiguous record
    index = ManifestIndex.build(
        [
            image("a" * 64, "cat"),
            image("b" * 64, "cat"),
            AmbiguousRecord("a" * 64, ("cat", "dog")),
        ]
    )

    # WHEN training asks which hashes to exclude
    # THEN it is the ambiguous one only
    assert index.ambiguous_shas() == {"a" * 64}


def test_the_first_append_creates_the_manifest_and_later_ones_extend_it(s3):
    # GIVEN no manifest yet
    manifest = DatasetManifest(s3, BUCKET, "pets")

    # WHEN two commits are made
    manifest.commit([image("a" * 64, "cat")], {}, run="r1")
    manifest.commit([image("b" * 64, "dog")], {}, run="r2")

    # THEN the manifest holds both, in order, one JSON object per line
    assert [r["sha256"][0] for r in lines(s3)] == ["a", "b"]


class ConditionalS3:
    """An in-memory S3 with PutObject's If-Match / If-None-Match semantics, each request atomic.

    moto 5.2.5 implements both conditions, but its in-memory backend is not thread-safe when several
    threads overwrite one key (it closes the buffer another request is reading), so the concurrency test
    runs against this small fake; the sequential tests above run against moto.
    """

    def __init__(self):
        self._objects: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def get_object(self, Bucket, Key):  # noqa: N803 - boto3's parameter names
        with self._lock:
            if Key not in self._objects:
                raise ClientError({"Error": {"Code": "NoSuchKey"}}, "GetObject")
            data = self._objects[Key]
        return {"Body": io.BytesIO(data), "ETag": f'"{hashlib.md5(data).hexdigest()}"'}

    def put_object(self, Bucket, Key, Body, IfMatch=None, IfNoneMatch=None, **kwargs):  # noqa: N803
        with self._lock:
            current = self._objects.get(Key)
            etag = f'"{hashlib.md5(current).hexdigest()}"' if current is not None else None
            if (IfNoneMatch == "*" and current is not None) or (IfMatch is not None and IfMatch != etag):
                raise ClientError({"Error": {"Code": "PreconditionFailed"}}, "PutObject")
            self._objects[Key] = Body
        return {}


def test_concurrent_appends_lose_no_record():
    # GIVEN eight writers (as in a Step Functions Map over eight labels) sharing one manifest
    s3 = ConditionalS3()
    log = JsonLinesLog(s3, BUCKET, KEY, sleep=lambda s: time.sleep(0.001))
    barrier = threading.Barrier(8)

    def plan(n: int, i: int):
        def records(existing: list[dict]) -> list[dict]:
            time.sleep(0.001)  # widen the read-to-write window so the writers really collide
            return [{"writer": n, "i": i}]

        return records

    def writer(n: int) -> None:
        barrier.wait()
        for i in range(5):
            log.append(plan(n, i))

    # WHEN they all append five records at the same time
    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # THEN all forty records are there, each once
    body = s3.get_object(Bucket=BUCKET, Key=KEY)["Body"].read().decode()
    found = sorted((r["writer"], r["i"]) for r in map(json.loads, body.splitlines()))
    assert found == [(n, i) for n in range(8) for i in range(5)]


class LosingFirstPut:
    """An S3 client whose first conditional put loses the race to another writer."""

    def __init__(self, s3):
        self._s3 = s3
        self.puts = 0

    def __getattr__(self, name):
        return getattr(self._s3, name)

    def put_object(self, **kwargs):
        self.puts += 1
        if self.puts == 1:
            # Another writer slips in first.
            self._s3.put_object(
                Bucket=BUCKET, Key=KEY, Body=json.dumps(image("c" * 64, "cat").to_dict()).encode() + b"\n"
            )
            raise ClientError(
                {"Error": {"Code": "PreconditionFailed"}, "ResponseMetadata": {"HTTPStatusCode": 412}},
                "PutObject",
            )
        return self._s3.put_object(**kwargs)


def test_a_writer_that_loses_the_race_re_plans_against_what_the_winner_wrote(s3):
    # GIVEN a commit of a dog image whose first put loses to a writer storing the same picture for cat
    client = LosingFirstPut(s3)
    manifest = DatasetManifest(client, BUCKET, "pets", sleep=lambda s: None)

    # WHEN the dog commit retries
    result = manifest.commit([image("c" * 64, "dog")], {}, run="r5")

    # THEN it re-planned: the dog record became an ambiguity record next to the winner's cat record
    assert [r.get("label") or r["labels"] for r in lines(s3)] == ["cat", ["cat", "dog"]]
    assert result.conflicts and not result.appended


def test_other_s3_errors_are_not_retried(s3):
    # GIVEN a manifest in a bucket that does not exist
    log = JsonLinesLog(s3, "no-such-bucket-here", KEY, sleep=lambda s: None)

    # WHEN a record is appended
    # THEN the error surfaces at once, as the missing bucket it is (not as a manifest nobody wrote yet)
    with pytest.raises(NotFound, match="NoSuchBucket"):
        log.append(lambda existing: [{"x": 1}])
