"""POST /datasets/{name}/edits applies the review's decisions one by one; GET /review serves the review page."""

from __future__ import annotations

import copy
import dataclasses
import json
import re
from urllib.parse import urlsplit

import pytest
from botocore.exceptions import ClientError

from imgclf.datasets import Dataset
from imgclf.runs import Runs
from imgclf_api import edits as dataset_edits
from tests.support.datasets import upload_dataset

DATASET = "faces"
CALLER = "arn:aws:iam::123456789012:user/ops"  # the identity of tests/events/apigw_get_prediction.json


@pytest.fixture
def images(api_env, s3) -> list[str]:
    """Two happy and two sad pictures in the collector's layout: keys[0:2] happy, keys[2:4] sad."""
    return upload_dataset(s3, api_env.data_bucket, DATASET, ["happy", "sad"], per_label=2, size=64)


@pytest.fixture
def dataset(api_env, s3, images) -> Dataset:
    return Dataset(s3, api_env.data_bucket, DATASET)


def listed(s3, bucket: str) -> set[str]:
    return {o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=f"datasets/{DATASET}/").get("Contents", [])}


def edit(api, *edits: dict, by: str | None = None, dataset: str = DATASET):
    body = {"edits": list(edits), **({"by": by} if by is not None else {})}
    return api.post(f"/datasets/{dataset}/edits", json_body=body)


def test_a_delete_removes_the_image_and_records_who_signed_the_request(api, api_env, s3, images, dataset):
    before = dataset.version()

    response = edit(api, {"key": images[0], "action": "delete", "reason": "not a face"})

    assert response.status == 200
    answer = response.json()
    (result,) = answer["results"]
    assert result["status"] == "applied" and result["index"] == 0 and result["error"] is None
    record = result["record"]
    assert record["edit"] == "delete" and record["key"] == images[0] and record["label"] == "happy"
    assert record["by"] == CALLER and record["reason"] == "not a face"
    assert images[0] not in listed(s3, api_env.data_bucket)
    # The manifest holds the same audit record, and the dataset has a new version the response names.
    assert dataset.records()[-1] == {k: v for k, v in record.items() if v is not None}
    assert answer["version"] == dataset.version() != before
    assert (answer["dataset"], answer["applied"], answer["failed"]) == (DATASET, 1, 0)


def test_a_relabel_moves_the_image_under_the_new_label(api, api_env, s3, images, dataset):
    response = edit(api, {"key": images[0], "action": "relabel", "label": "sad"})

    record = response.json()["results"][0]["record"]
    assert record["edit"] == "relabel" and record["to_label"] == "sad"
    assert record["to_key"].startswith(f"datasets/{DATASET}/sad/sad-")
    objects = listed(s3, api_env.data_bucket)
    assert record["to_key"] in objects and images[0] not in objects
    assert dataset.summary()["labels"] == {"happy": 1, "sad": 3}


def test_a_keep_only_adds_to_the_audit_trail(api, api_env, s3, images, dataset):
    objects = listed(s3, api_env.data_bucket)

    response = edit(api, {"key": images[2], "action": "keep"}, by="carol")

    assert response.json()["results"][0]["record"]["by"] == "carol"
    assert listed(s3, api_env.data_bucket) == objects
    assert dataset.summary()["edits"] == {"keep": 1}


def test_each_edit_fails_alone_an_image_already_gone_is_not_found(api, api_env, s3, images, dataset):
    # GIVEN an image deleted earlier
    dataset.edit(images[1], "delete", by="earlier")

    # WHEN a batch deletes it again, between two edits that can be applied, and relabels one to its own label
    response = edit(api, {"key": images[0], "action": "delete"}, {"key": images[1], "action": "delete"},
                    {"key": images[2], "action": "relabel", "label": "sad"}, {"key": images[3], "action": "keep"})

    # THEN the request succeeds, with its own error for each edit that could not be applied
    assert response.status == 200
    answer = response.json()
    assert [r["status"] for r in answer["results"]] == ["applied", "failed", "failed", "applied"]
    assert [r["index"] for r in answer["results"]] == [0, 1, 2, 3]
    assert answer["results"][1]["error"]["code"] == "not_found"
    assert answer["results"][2]["error"]["code"] == "conflict"
    assert (answer["applied"], answer["failed"]) == (2, 2)
    assert [r["edit"] for r in dataset.records() if r.get("edit")] == ["delete", "delete", "keep"]
    assert answer["version"] == dataset.version()


def test_an_unsigned_request_is_recorded_as_anonymous(api, images, dataset):
    event = copy.deepcopy(api.base_event)
    event["requestContext"]["identity"].update(userArn=None, caller=None, user=None)
    unsigned = dataclasses.replace(api, base_event=event)

    response = edit(unsigned, {"key": images[0], "action": "keep"})

    assert response.json()["results"][0]["record"]["by"] == "anonymous"


@pytest.mark.parametrize("key", [
    "datasets/other/happy/happy-0.jpg",
    "datasets/faces-2/happy/happy-0.jpg",
    "datasets/faces/../other/happy/happy-0.jpg",
    "datasets/faces//happy-0.jpg",
    "models/20261129-120000-abcd/model.onnx",
    "faces/happy/happy-0.jpg",
])
def test_a_key_outside_the_dataset_refuses_the_whole_request(api, api_env, s3, images, dataset, key):
    records = dataset.records()

    response = edit(api, {"key": images[0], "action": "delete"}, {"key": key, "action": "delete"})

    assert response.status == 400
    assert response.error["code"] == "invalid_key"
    assert "edits[1].key" in response.error["message"]
    assert images[0] in listed(s3, api_env.data_bucket)
    assert dataset.records() == records


@pytest.mark.parametrize("edits", [
    [{"key": "datasets/faces/happy/happy-0.jpg", "action": "rename"}],
    [{"key": "datasets/faces/happy/happy-0.jpg", "action": "relabel"}],
    [{"key": "datasets/faces/happy/happy-0.jpg", "action": "relabel", "label": "a/b"}],
    [{"key": "datasets/faces/happy/happy-0.jpg", "action": "delete", "label": "sad"}],
    [{"key": "datasets/faces/happy/happy-0.jpg", "action": "delete", "surprise": 1}],
    [{"key": "", "action": "delete"}],
    [{"key": "datasets/faces/happy/happy-0.jpg", "action": "keep"}] * 2,
    [{"key": f"datasets/faces/happy/happy-{i}.jpg", "action": "keep"} for i in range(101)],
    [],
])
def test_an_invalid_edit_list_is_422_and_changes_nothing(api, images, dataset, edits):
    records = dataset.records()

    response = api.post(f"/datasets/{DATASET}/edits", json_body={"edits": edits})

    assert response.status == 422
    assert response.error["code"] == "validation_error"
    assert dataset.records() == records


def test_a_dataset_that_was_never_collected_is_404(api, api_env):
    response = edit(api, {"key": "datasets/nothing/happy/happy-0.jpg", "action": "delete"}, dataset="nothing")

    assert response.status == 404
    assert response.error["code"] == "not_found"


def test_a_name_that_no_dataset_can_have_is_404(api):
    response = api.post("/datasets/a%2A%2F..%2Fb/edits",
                        json_body={"edits": [{"key": "datasets/x/a.jpg", "action": "keep"}]})

    assert response.status == 404


def test_s3_failing_stops_the_batch_and_reports_the_rest_as_skipped(api, api_env, s3, images, dataset,
                                                                    monkeypatch):
    # GIVEN S3 refusing to delete with a throttling error (after the first edit went through)
    real_delete = s3.delete_object
    calls = []

    def throttled(**kwargs):
        calls.append(kwargs["Key"])
        if len(calls) > 1:
            raise ClientError({"Error": {"Code": "SlowDown", "Message": "slow down"},
                               "ResponseMetadata": {"HTTPStatusCode": 503}}, "DeleteObject")
        return real_delete(**kwargs)

    monkeypatch.setattr(s3, "delete_object", throttled)

    # WHEN three deletions are asked for
    response = edit(api, *({"key": key, "action": "delete"} for key in images[:3]))

    # THEN the first is applied, the second failed as unavailable, the third was not tried
    answer = response.json()
    assert response.status == 200
    assert [r["status"] for r in answer["results"]] == ["applied", "failed", "skipped"]
    assert answer["results"][1]["error"]["code"] == "unavailable"
    assert answer["results"][2]["error"]["code"] == "skipped"
    assert calls == images[:2]
    assert [r["edit"] for r in dataset.records() if r.get("edit")] == ["delete"]


def test_a_batch_that_runs_out_of_time_reports_the_rest_as_skipped(api, api_env, s3, images, dataset, monkeypatch):
    # GIVEN a clock on which every edit takes 10 s of the 20 s budget
    ticks = iter(range(0, 1000, 10))
    monkeypatch.setattr(dataset_edits, "clock", lambda: next(ticks))

    response = edit(api, *({"key": key, "action": "keep"} for key in images[:3]))

    # THEN the edits tried within the budget are applied, and the rest are said to be skipped, not lost
    answer = response.json()
    assert [r["status"] for r in answer["results"]] == ["applied", "applied", "skipped"]
    assert "ran out of time" in answer["results"][2]["error"]["message"]
    assert [r["edit"] for r in dataset.records() if r.get("edit")] == ["keep", "keep"]


def test_the_review_names_each_images_key_for_the_edits_route(api, api_env, s3, images):
    # GIVEN a completed run of the dataset whose top losses name an image by its path inside the dataset
    run_id = "20261129-120000-abcd"
    relative = images[3].removeprefix(f"datasets/{DATASET}/")
    s3.put_object(Bucket=api_env.data_bucket, Key=f"models/{run_id}/output/top_losses.json", Body=json.dumps([
        {"path": relative, "actual": "sad", "predicted": "happy", "probability": 0.9, "loss": 2.3, "kind": "wrong"},
    ]))
    Runs(api_env.runs_table).create(run_id, status="Completed", dataset=DATASET)

    # WHEN the review is read, THEN its s3_key is what POST /datasets/{name}/edits takes
    (item,) = api.get(f"/training-runs/{run_id}/review").json()["items"]
    assert item["s3_key"] == images[3]
    assert edit(api, {"key": item["s3_key"], "action": "keep"}).json()["applied"] == 1


# ---------------------------------------------------------------- the review page
def test_the_review_page_is_self_contained_and_may_show_thumbnails_from_s3_only(api, api_env, s3):
    response = api.get("/review?run=20261129-120000-abcd")

    assert response.status == 200
    assert response.headers["content-type"].startswith("text/html")
    html = response.body.decode()
    csp = response.headers["content-security-policy"]
    nonce = re.search(r"script-src 'nonce-([^']+)'", csp).group(1)
    assert html.count(f'nonce="{nonce}"') == 2
    assert "{{" not in html  # the nonce and the shared stylesheet are filled in
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)
    assert "connect-src 'self'" in csp and "default-src 'none'" in csp
    # Images may come from where the presigned thumbnail links point, and from nowhere else outside.
    link = urlsplit(s3.generate_presigned_url("get_object", Params={"Bucket": api_env.data_bucket, "Key": "x"}))
    img_src = re.search(r"img-src ([^;]+)", csp).group(1).split()
    assert img_src == ["'self'", "data:", f"{link.scheme}://{link.netloc}"]


def test_the_review_page_calls_relative_urls_only(api):
    html = api.get("/review").body.decode()

    for route in ('"training-runs/"', '"datasets/"', '"/edits"'):
        assert route in html
    assert 'fetch("/' not in html and "fetch('/" not in html


def test_both_pages_share_one_stylesheet(api):
    pages = [api.get(path).body.decode() for path in ("/", "/review")]

    for html in pages:
        assert "--accent:" in html and ".visually-hidden" in html and "common.css */" not in html
    assert len({re.search(r":root \{[^}]+\}", html).group(0) for html in pages}) == 1
    assert 'endpoint("review")' in pages[0]  # the upload page links to the review page, relatively
