"""The collector function invoked as the state machine's Map would, against the local stack's bucket."""

from __future__ import annotations

import json

from tests.support.image_server import body
from tests.support.images import photo


def manifest(stack) -> list[dict]:
    s3 = stack.client("s3")
    data = s3.get_object(Bucket=stack.bucket(), Key="datasets/zoo/manifest.jsonl")["Body"].read()
    return [json.loads(line) for line in data.decode().splitlines()]


def test_labels_collected_one_invocation_each_build_one_dataset(collector_stack, image_server):
    # GIVEN a URL list in the data bucket: photos for "lion" and "tiger", one picture listed under both,
    # and an HTML page posing as an image
    serve = image_server.add
    shared = serve("/shared.jpg", body(photo(100)))
    rows = [("lion", serve(f"/lion{n}.jpg", body(photo(110 + n)))) for n in range(3)]
    rows += [("tiger", serve(f"/tiger{n}.jpg", body(photo(120 + n)))) for n in range(3)]
    rows += [("lion", shared), ("tiger", shared), ("tiger", serve("/page.jpg", body(b"<html>login</html>")))]
    s3 = collector_stack.client("s3")
    bucket = collector_stack.bucket()
    s3.put_object(
        Bucket=bucket, Key="lists/zoo.csv", Body="\n".join(f"{label},{url}" for label, url in rows).encode()
    )

    # WHEN the collector function is invoked once per label, then invoked again for "lion"
    def invoke(label: str, run: str) -> dict:
        event = {
            "dataset": "zoo",
            "label": label,
            "query": "{label}",
            "count": 4,
            "source": "urls",
            "source_options": {"uri": f"s3://{bucket}/lists/zoo.csv"},
            "run": run,
        }
        return collector_stack.invoke("CollectorFunction", event)

    lion, tiger = invoke("lion", "exec-1"), invoke("tiger", "exec-1")
    again = invoke("lion", "exec-2")

    # THEN lion kept the shared picture, tiger left it out as ambiguous, the page was rejected, and the
    # second lion invocation added nothing
    assert (lion["accepted"], lion["complete"]) == (4, True)
    assert tiger["accepted"] == 3 and tiger["rejected_by_reason"] == {"ambiguous": 1, "not_an_image": 1}
    assert again["accepted"] == 0 and again["images"] == 4
    records = manifest(collector_stack)
    images = [r for r in records if not r.get("ambiguous")]
    assert len(images) == 7 and len({r["sha256"] for r in images}) == 7
    assert [r["labels"] for r in records if r.get("ambiguous")] == [["lion", "tiger"]]
    listed = s3.list_objects_v2(Bucket=bucket, Prefix="datasets/zoo/")["Contents"]
    assert sorted(o["Key"] for o in listed if o["Key"].endswith(".jpg")) == sorted(r["key"] for r in images)
    report = json.loads(s3.get_object(Bucket=bucket, Key=tiger["report_key"])["Body"].read())
    assert {r["reason"] for r in report["rejections"]} == {"ambiguous", "not_an_image"}
