"""Collecting a label end to end: a real local image server, moto S3, every kind of bad candidate."""

from __future__ import annotations

import dataclasses
import io
import json

import numpy as np
import pytest
from botocore.exceptions import ClientError
from PIL import Image, ImageOps

from imgclf.manifest import parse_objects, replay
from imgclf_collector.download import Downloader
from imgclf_collector.errors import SearchAuthError
from imgclf_collector.pipeline import CollectConfig, collect, collect_label, download_policy
from imgclf_collector.sources import Candidate, UrlListSource
from tests.support.image_server import body, redirect, trickle
from tests.support.images import jpeg_bytes, photo, png_declaring, synthetic_photo
from tests.support.tables import BUCKET

DATASET = "pets"


def run_label(s3, settings, label, urls, count, *, run="run1", source=None, **kwargs) -> dict:
    """Collect one label from a list of URLs, as the Lambda handler would."""
    source = source or UrlListSource([(label, url) for url in urls])
    config = CollectConfig.from_settings(settings, decode_workers=2)
    with Downloader(download_policy(settings)) as downloader:
        return collect_label(
            s3=s3,
            bucket=BUCKET,
            dataset=DATASET,
            label=label,
            query="{label}",
            count=count,
            source=source,
            downloader=downloader,
            config=config,
            run=run,
            **kwargs,
        )


def manifest(s3) -> list[dict]:
    data = s3.get_object(Bucket=BUCKET, Key=f"datasets/{DATASET}/manifest.jsonl")["Body"].read()
    return [json.loads(line) for line in data.decode().splitlines()]


def stored_keys(s3, label: str) -> list[str]:
    listing = s3.list_objects_v2(Bucket=BUCKET, Prefix=f"datasets/{DATASET}/{label}/")
    return sorted(obj["Key"] for obj in listing.get("Contents", []))


def report(s3, summary: dict) -> dict:
    return json.loads(s3.get_object(Bucket=BUCKET, Key=summary["report_key"])["Body"].read())


def picture(seed: int, size: tuple[int, int] = (400, 300)) -> Image.Image:
    """A photo-like picture (noise around one colour, a few rectangles); another for every seed."""
    return synthetic_photo(np.random.default_rng(seed), (120, 90, 60), size)


def copies(seed: int) -> dict[str, bytes]:
    """One picture as a scraped data set holds it several times: original, resized, recompressed, mirrored."""
    original = picture(seed)
    smaller = io.BytesIO()
    original.resize((200, 150), Image.Resampling.BILINEAR).save(smaller, "JPEG", quality=40)
    return {"original": jpeg_bytes(original), "smaller": smaller.getvalue(),
            "mirrored": jpeg_bytes(ImageOps.mirror(original))}


@pytest.fixture
def quick(settings):
    """No download retries and a short deadline, so failing candidates fail fast."""
    return dataclasses.replace(settings, download_retries=0, download_deadline_s=1)


def test_good_images_are_stored_and_every_bad_candidate_is_rejected_with_its_reason(s3, quick, image_server):
    # GIVEN two good photos and a URL for every kind of bad candidate
    serve = image_server.add
    good = [serve("/good1.jpg", body(photo(1))), serve("/good2.png", body(photo(2, fmt="PNG"), "image/png"))]
    big = io.BytesIO()
    Image.effect_noise((1200, 1200), 90).convert("RGB").save(big, "BMP")
    bad = {
        "not_an_image": serve(
            "/page.jpg", body(b"<!DOCTYPE html><html>Hotlinking denied</html>", "image/jpeg")
        ),
        "empty": serve("/zero.jpg", body(b"")),
        "truncated": serve("/cut.jpg", body(photo(3, (400, 300))[:3000])),
        "too_large": serve("/huge.bmp", body(big.getvalue(), "image/bmp")),
        "decompression_bomb": serve("/bomb.png", body(png_declaring(30_000, 30_000), "image/png")),
        "too_small": serve("/icon.png", body(photo(4, (16, 16), "PNG"), "image/png")),
        "blocked_address": serve("/meta.jpg", redirect("http://169.254.169.254/latest/meta-data/")),
        "timeout": serve("/slow.jpg", trickle()),
        "http_error": image_server.url("/missing.jpg"),
        "bad_url": "ftp://example.com/cat.jpg",
    }
    svg = serve(
        "/logo.svg", body(b'<svg xmlns="http://www.w3.org/2000/svg"><circle r="4"/></svg>', "image/svg+xml")
    )
    quick = dataclasses.replace(quick, max_image_bytes=2_000_000)

    # WHEN the label is collected from all of them
    summary = run_label(s3, quick, "cat", [*good, *bad.values(), svg], count=10)

    # THEN the two photos are stored as JPEGs, in the manifest, and each bad URL is reported with its reason
    keys = stored_keys(s3, "cat")
    assert summary["accepted"] == 2 and len(keys) == 2
    assert all(
        Image.open(io.BytesIO(s3.get_object(Bucket=BUCKET, Key=k)["Body"].read())).format == "JPEG"
        for k in keys
    )
    assert sorted(r["key"] for r in manifest(s3)) == keys
    reasons = {r["url"]: r["reason"] for r in report(s3, summary)["rejections"]}
    assert reasons == {**{url: reason for reason, url in bad.items()}, svg: "not_an_image"}
    assert summary["rejected_by_reason"]["not_an_image"] == 2


def test_a_manifest_record_states_provenance_and_the_stored_image(s3, quick, image_server):
    # GIVEN one 400x300 photo
    url = image_server.add("/a.jpg", body(photo(5, (400, 300))))

    # WHEN it is collected with a 256 px maximum side
    run_label(s3, quick, "cat", [url], count=1, run="r-provenance")

    # THEN its record names where it came from and what was stored
    (record,) = manifest(s3)
    assert record["label"] == "cat" and record["url"] == url and record["source"] == "urls"
    assert record["key"] == f"datasets/pets/cat/cat-{record['sha256'][:12]}.jpg"
    assert (record["width"], record["height"]) == (256, 192)
    assert record["original"] == {
        "format": "jpeg",
        "width": 400,
        "height": 300,
        "bytes": len(photo(5, (400, 300))),
    }
    stored = s3.get_object(Bucket=BUCKET, Key=record["key"])["Body"].read()
    assert record["bytes"] == len(stored) and record["run"] == "r-provenance" and record["collected_at"]


def test_the_same_picture_at_two_urls_is_stored_once(s3, quick, image_server):
    # GIVEN one photo served at two URLs (a mirror)
    data = photo(6)
    urls = [image_server.add("/a.jpg", body(data)), image_server.add("/mirror/a.jpg", body(data))]

    # WHEN the label is collected from both
    summary = run_label(s3, quick, "cat", urls, count=5)

    # THEN it is stored once and the second copy is reported as a duplicate
    assert summary["accepted"] == 1
    assert summary["rejected_by_reason"] == {"duplicate": 1}
    assert len(stored_keys(s3, "cat")) == 1


def test_a_picture_found_for_two_labels_is_marked_ambiguous_and_stored_once(s3, quick, image_server):
    # GIVEN a photo that "cat" collected first
    shared = image_server.add("/shared.jpg", body(photo(7)))
    run_label(s3, quick, "cat", [shared], count=1)

    # WHEN "dog" finds the same picture
    summary = run_label(s3, quick, "dog", [shared, image_server.add("/dog.jpg", body(photo(8)))], count=2)

    # THEN dog does not store it, and the manifest marks its hash ambiguous between cat and dog
    assert summary["rejected_by_reason"] == {"ambiguous": 1}
    assert len(stored_keys(s3, "dog")) == 1
    ambiguous = [r for r in manifest(s3) if r.get("ambiguous")]
    cat_record = next(r for r in manifest(s3) if r.get("label") == "cat")
    assert [(r["sha256"], r["labels"]) for r in ambiguous] == [(cat_record["sha256"], ["cat", "dog"])]


def test_collection_stops_at_the_count(s3, quick, image_server):
    # GIVEN ten distinct photos
    urls = [image_server.add(f"/{n}.jpg", body(photo(10 + n))) for n in range(10)]

    # WHEN three are wanted
    summary = run_label(s3, quick, "cat", urls, count=3)

    # THEN exactly three are stored
    assert summary["accepted"] == 3 and summary["complete"]
    assert len(stored_keys(s3, "cat")) == 3 and len(manifest(s3)) == 3


def test_a_re_run_with_the_same_count_fetches_nothing(s3, quick, image_server):
    # GIVEN a label already collected to its count
    urls = [image_server.add(f"/{n}.jpg", body(photo(20 + n))) for n in range(3)]
    run_label(s3, quick, "cat", urls, count=3, run="first")
    hits = sum(image_server.hits.values())

    # WHEN the same collection runs again
    summary = run_label(s3, quick, "cat", urls, count=3, run="second")

    # THEN nothing is downloaded and nothing added
    assert sum(image_server.hits.values()) == hits
    assert summary["accepted"] == 0 and summary["images"] == 3 and summary["complete"]
    assert len(manifest(s3)) == 3


def test_a_resumed_run_skips_urls_already_tried_but_retries_transient_failures(s3, quick, image_server):
    # GIVEN a first run that accepted 2 photos and met an HTML page (permanent) and a 503 (transient)
    urls = [image_server.add(f"/{n}.jpg", body(photo(30 + n))) for n in range(4)]
    page = image_server.add("/page.jpg", body(b"<html>nope</html>", "text/html"))
    flaky = image_server.add("/flaky.jpg", body(b"busy", "text/plain", 503))
    first = run_label(s3, quick, "cat", [page, flaky, *urls], count=2, run="first")
    assert first["accepted"] == 2

    # WHEN the label is topped up to 4 with the same URL list, the flaky server now healthy
    image_server.add("/flaky.jpg", body(photo(40)))
    second = run_label(s3, quick, "cat", [page, flaky, *urls], count=4, run="second")

    # THEN the HTML page is not fetched again, the transient failure is retried, and the label has 4 images
    assert image_server.hits["/page.jpg"] == 1
    assert image_server.hits["/flaky.jpg"] == 2
    assert second["skipped_already_tried"] >= 3
    assert second["images"] == 4 and len(stored_keys(s3, "cat")) == 4


class ThrottledUploads:
    """An S3 client that throttles every image upload and passes everything else to moto."""

    def __init__(self, s3):
        self._s3 = s3

    def __getattr__(self, name):
        return getattr(self._s3, name)

    def put_object(self, **kwargs):
        if kwargs["Key"].endswith(".jpg"):
            raise ClientError({"Error": {"Code": "SlowDown", "Message": "slow down"},
                               "ResponseMetadata": {"HTTPStatusCode": 503}}, "PutObject")
        return self._s3.put_object(**kwargs)


def test_an_upload_s3_throttles_is_a_transient_rejection_of_that_image(s3, quick, image_server):
    # GIVEN a good photo, and S3 throttling the upload of images
    url = image_server.add("/a.jpg", body(photo(50)))

    # WHEN the label is collected
    summary = run_label(ThrottledUploads(s3), quick, "cat", [url], count=1)

    # THEN the photo is rejected as upload_failed, transient (a later run tries it again), and the run goes on
    rejection, = report(s3, summary)["rejections"]
    assert summary["accepted"] == 0 and summary["rejected_by_reason"] == {"upload_failed": 1}
    assert rejection["transient"] and "SlowDown" in rejection["message"]
    assert stored_keys(s3, "cat") == []


def test_a_search_failure_mid_run_keeps_what_was_stored_and_reports_the_error(s3, quick, image_server):
    # GIVEN a source that yields two photos and then loses its key
    urls = [image_server.add(f"/{n}.jpg", body(photo(50 + n))) for n in range(2)]

    class Failing:
        name = "bing"

        def candidates(self, label, query, limit):
            yield from (Candidate(url) for url in urls)
            raise SearchAuthError("the search API refused the key")

    # WHEN the label is collected
    with pytest.raises(SearchAuthError):
        run_label(s3, quick, "cat", [], count=5, source=Failing(), run="broken")

    # THEN the photos already fetched are in the manifest, and the report says why the run stopped
    assert len(manifest(s3)) == 2 and len(stored_keys(s3, "cat")) == 2
    written = json.loads(
        s3.get_object(Bucket=BUCKET, Key="datasets/pets/reports/broken.cat.json")["Body"].read()
    )
    assert written["stopped"] == "error" and "refused the key" in written["error"]


def test_collection_stops_taking_candidates_when_the_time_budget_runs_low(s3, quick, image_server):
    # GIVEN a Lambda with less time left than the safety margin
    urls = [image_server.add(f"/{n}.jpg", body(photo(60 + n))) for n in range(3)]

    # WHEN the label is collected
    summary = run_label(s3, quick, "cat", urls, count=3, time_left=lambda: 5.0)

    # THEN it stops before fetching, returning an incomplete summary a re-run can resume from
    assert summary["stopped"] == "time" and not summary["complete"]
    assert sum(image_server.hits.values()) == 0


def test_collect_imports_a_folder_per_label_and_reports_progress(s3, quick, tmp_path):
    # GIVEN a folder with two labels of two photos each, and one broken file
    for label, seeds in {"daisy": [70, 71], "rose": [72, 73]}.items():
        (tmp_path / label).mkdir()
        for seed in seeds:
            (tmp_path / label / f"{seed}.jpg").write_bytes(photo(seed))
    (tmp_path / "rose" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really")
    seen = []

    # WHEN the whole folder is collected through the library entry point
    summary = collect(
        "flowers",
        None,
        per_label=5,
        source="folder",
        source_options={"path": str(tmp_path)},
        settings=quick,
        s3=s3,
        progress=seen.append,
    )

    # THEN both labels are stored, the broken file is rejected, and progress was reported per label
    assert [(s["label"], s["accepted"]) for s in summary["labels"]] == [("daisy", 2), ("rose", 2)]
    assert summary["labels"][1]["rejected_by_reason"] == {"truncated": 1}
    assert {p.label for p in seen} == {"daisy", "rose"}


def test_collect_imports_an_s3_prefix(s3, quick):
    # GIVEN photos under an S3 import prefix
    for n in range(3):
        s3.put_object(Bucket=BUCKET, Key=f"imports/pets/cat/{n}.jpg", Body=photo(80 + n))

    # WHEN the prefix is collected
    summary = collect(
        DATASET,
        ["cat"],
        per_label=3,
        source="s3",
        source_options={"uri": f"s3://{BUCKET}/imports/pets/"},
        settings=quick,
        s3=s3,
    )

    # THEN the photos are normalised into the dataset
    assert summary["accepted"] == 3
    assert len(stored_keys(s3, "cat")) == 3


def test_near_duplicates_under_one_label_are_kept_and_grouped(s3, quick, image_server):
    # GIVEN one picture served three times (original, resized and recompressed, mirrored) and another picture
    urls = [image_server.add(f"/{name}.jpg", body(data)) for name, data in copies(90).items()]
    other = image_server.add("/other.jpg", body(jpeg_bytes(picture(91))))

    # WHEN the label is collected from all four
    summary = run_label(s3, quick, "cat", [*urls, other], count=10)

    # THEN all four are stored, every record carries its perceptual hashes, and the three copies are one group
    # pointing to the one the manifest holds first
    assert summary["accepted"] == 4 and summary["rejected"] == 0
    assert summary["near_duplicates"] == {"grouped": 2, "ambiguous": 0}
    records = manifest(s3)
    assert all(len(r["phash"]) == 16 and len(r["phash_mirror"]) == 16 for r in records)
    by_url = {r["url"]: r for r in records}
    (group,) = replay(parse_objects(records).records).near_duplicate_groups()
    assert sorted(group) == sorted(by_url[url]["sha256"] for url in urls)
    assert [r.get("near_duplicate_of") for r in records if r["sha256"] in group] == [None, group[0], group[0]]
    assert "near_duplicate_of" not in by_url[other]
    accepted = {image["url"]: image for image in report(s3, summary)["accepted_images"]}
    assert sum("near_duplicate_of" in accepted[url] for url in urls) == 2


def test_a_near_duplicate_found_for_another_label_is_left_out_and_marked_ambiguous(s3, quick, image_server):
    # GIVEN a picture "cat" collected first
    pictures = copies(92)
    run_label(s3, quick, "cat", [image_server.add("/cat.jpg", body(pictures["original"]))], count=1)

    # WHEN "dog" finds a resized, recompressed copy of it, and a mirrored one, and a picture of its own
    found = [image_server.add("/dog-small.jpg", body(pictures["smaller"])),
             image_server.add("/dog-mirrored.jpg", body(pictures["mirrored"])),
             image_server.add("/dog.jpg", body(jpeg_bytes(picture(93))))]
    summary = run_label(s3, quick, "dog", found, count=3)

    # THEN dog stores only its own picture, reports both copies as ambiguous near-duplicates, and the manifest
    # marks the cat picture ambiguous between cat and dog, so training leaves it out
    assert summary["accepted"] == 1 and summary["rejected_by_reason"] == {"ambiguous": 2}
    assert summary["near_duplicates"] == {"grouped": 0, "ambiguous": 2}
    assert len(stored_keys(s3, "dog")) == 1
    cat_record = next(r for r in manifest(s3) if r.get("label") == "cat")
    assert [(r["sha256"], r["labels"]) for r in manifest(s3) if r.get("ambiguous")] == [
        (cat_record["sha256"], ["cat", "dog"])]
    assert all("near-duplicate" in r["message"] for r in report(s3, summary)["rejections"])


def test_labels_collected_side_by_side_mark_a_near_duplicate_between_them_ambiguous(s3, quick, tmp_path):
    # GIVEN a folder where "daisy" holds a picture and "rose" a resized copy of it, each with a picture of its own
    pictures = copies(94)
    for label, files in {"daisy": {"a.jpg": pictures["original"], "b.jpg": jpeg_bytes(picture(95))},
                         "rose": {"c.jpg": pictures["smaller"], "d.jpg": jpeg_bytes(picture(96))}}.items():
        (tmp_path / label).mkdir()
        for name, data in files.items():
            (tmp_path / label / name).write_bytes(data)

    # WHEN both labels are collected at once (neither sees the other's images before its commit)
    summary = collect("flowers", None, per_label=5, source="folder", source_options={"path": str(tmp_path)},
                      settings=quick, s3=s3)

    # THEN one label stored the picture and the other left its copy out as ambiguous, and the stored one is
    # marked ambiguous between them; what the manifest holds is exactly what is stored
    labels = {s["label"]: s for s in summary["labels"]}
    assert sorted(s["accepted"] for s in labels.values()) == [1, 2]
    assert sum(s["near_duplicates"]["ambiguous"] for s in labels.values()) == 1
    data = s3.get_object(Bucket=BUCKET, Key="datasets/flowers/manifest.jsonl")["Body"].read()
    records = [json.loads(line) for line in data.decode().splitlines()]
    (ambiguous,) = [r for r in records if r.get("ambiguous")]
    assert ambiguous["labels"] == ["daisy", "rose"]
    assert ambiguous["sha256"] in {r["sha256"] for r in records if not r.get("ambiguous")}
    listing = s3.list_objects_v2(Bucket=BUCKET, Prefix="datasets/flowers/")["Contents"]
    assert sorted(o["Key"] for o in listing if o["Key"].endswith(".jpg")) == sorted(
        r["key"] for r in records if not r.get("ambiguous"))
