"""GET /predictions/{key+} and GET /predictions: single records and pages through the by-key and by-time GSIs."""

from __future__ import annotations

import base64
import json

import pytest

from imgclf import ddb
from imgclf_api.app import ApiResolver


@pytest.fixture
def seed(api_env):
    """Write prediction records as the classifier does: keyed by the s3:// URI, with its bookkeeping fields."""

    def put(key: str, processed_at: str, label: str = "ants", **extra) -> None:
        bucket = api_env.data_bucket
        ddb.put_item(api_env.predictions_table, {
            "image": f"s3://{bucket}/{key}", "bucket": bucket, "key": key, "status": "classified",
            "label": label, "confidence": 0.9, "probabilities": {"ants": 0.9, "bees": 0.1},
            "model_version": "v1", "processed_at": processed_at, "sequencer": "0" * 60 + "ABCD", "etag": "e1",
            **extra,
        })

    return put


def test_the_prediction_of_a_key_with_slashes_and_spaces_is_returned(api, seed):
    # GIVEN a classified upload whose key has folders and a space
    seed("uploads/2026/11/my cat.jpg", "2026-11-29T12:00:00.000+00:00")

    # WHEN it is requested through the greedy {key+} route
    response = api.get("/predictions/uploads/2026/11/my cat.jpg")

    # THEN the record comes back without the classifier's bookkeeping
    assert response.status == 200
    record = response.json()
    assert record["key"] == "uploads/2026/11/my cat.jpg"
    assert record["label"] == "ants"
    assert "sequencer" not in record and "etag" not in record


def test_a_rejected_image_shows_its_reason(api, seed):
    seed("uploads/bad.jpg", "2026-11-29T12:00:00.000+00:00", status="rejected", label=None, confidence=None,
         probabilities=None, model_version=None, reason="truncated", message="jpeg: image file is truncated")

    record = api.get("/predictions/uploads/bad.jpg").json()

    assert record["status"] == "rejected"
    assert record["reason"] == "truncated"
    assert record["label"] is None


def test_an_unknown_verdict_comes_back_with_its_reason_and_top_label(api, seed):
    seed("uploads/stripes.jpg", "2026-11-29T12:00:00.000+00:00", verdict="unknown",
         unknown_reason="low_confidence", calibrated=True)

    record = api.get("/predictions/uploads/stripes.jpg").json()

    assert (record["verdict"], record["unknown_reason"], record["calibrated"]) == ("unknown", "low_confidence", True)
    assert record["label"] == "ants"


def test_an_unknown_key_is_404(api):
    response = api.get("/predictions/uploads/never.jpg")

    assert response.status == 404
    assert response.error["code"] == "not_found"


def test_without_a_prefix_pages_list_newest_first_and_chain_through_next(api, seed):
    # GIVEN five predictions at increasing times
    for i in range(5):
        seed(f"uploads/{i}.jpg", f"2026-11-29T12:00:0{i}.000+00:00")

    # WHEN they are listed two at a time, following next
    keys, url, pages = [], "/predictions?limit=2", 0
    while url and pages < 10:
        page = api.get(url).json()
        keys += [item["key"] for item in page["items"]]
        url = f"/predictions?limit=2&next={page['next']}" if page.get("next") else None
        pages += 1

    # THEN every prediction appears once, newest first
    assert keys == [f"uploads/{i}.jpg" for i in reversed(range(5))]


def test_with_a_prefix_pages_list_matching_keys_in_key_order(api, seed):
    for key in ("uploads/b/2.jpg", "uploads/a/1.jpg", "uploads/b/1.jpg", "uploads/c.jpg"):
        seed(key, "2026-11-29T12:00:00.000+00:00")

    first = api.get("/predictions?prefix=uploads/b/&limit=1").json()
    second = api.get(f"/predictions?prefix=uploads/b/&limit=1&next={first['next']}").json()

    assert [i["key"] for i in first["items"] + second["items"]] == ["uploads/b/1.jpg", "uploads/b/2.jpg"]
    assert not second.get("next") or api.get(
        f"/predictions?prefix=uploads/b/&limit=1&next={second['next']}").json()["items"] == []


def token(document: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(document).encode()).decode().rstrip("=")


@pytest.mark.parametrize("make", [
    lambda bucket: "not-a-token",
    lambda bucket: token(["a list"]),
    lambda bucket: token({"i": "by-time", "p": "", "k": {"image": "x", "bucket": "other", "processed_at": "t"}}),
    lambda bucket: token({"i": "by-time", "p": "", "k": {"image": "x", "bucket": bucket}}),
    lambda bucket: token({"i": "by-key", "p": "", "k": {"image": "x", "bucket": bucket, "key": "k"}}),
    lambda bucket: token({"i": "by-time", "p": "", "k": {"image": 1, "bucket": bucket, "processed_at": "t"}}),
])
def test_tokens_that_no_page_of_this_listing_made_are_400(api, api_env, make):
    response = api.get(f"/predictions?next={make(api_env.data_bucket)}")

    assert response.status == 400
    assert response.error["code"] == "invalid_token"


def test_a_token_from_another_prefix_is_400(api, seed):
    seed("uploads/a/1.jpg", "2026-11-29T12:00:00.000+00:00")
    seed("uploads/a/2.jpg", "2026-11-29T12:00:01.000+00:00")
    next_token = api.get("/predictions?prefix=uploads/a/&limit=1").json()["next"]

    response = api.get(f"/predictions?prefix=uploads/b/&next={next_token}")

    assert response.status == 400


@pytest.mark.parametrize("query", ["limit=0", "limit=101", "limit=many"])
def test_limits_outside_1_to_100_are_validation_errors(api, query):
    response = api.get(f"/predictions?{query}")

    assert response.status == 422
    assert response.error["code"] == "validation_error"
    assert "limit" in response.error["message"]


def test_verdict_unknown_pages_hold_only_unknown_predictions_and_next_reaches_them_all(api, seed):
    # GIVEN six predictions, every third of them unknown
    for i in range(6):
        extra = {"verdict": "unknown", "unknown_reason": "low_confidence"} if i % 3 == 0 else {"verdict": "label"}
        seed(f"uploads/{i}.jpg", f"2026-11-29T12:00:0{i}.000+00:00", **extra)

    # WHEN the unknown ones are listed two records at a time, following next
    keys, sizes, url, pages = [], [], "/predictions?verdict=unknown&limit=2", 0
    while url and pages < 10:
        page = api.get(url).json()
        keys += [item["key"] for item in page["items"]]
        sizes.append(len(page["items"]))
        url = f"/predictions?verdict=unknown&limit=2&next={page['next']}" if page.get("next") else None
        pages += 1

    # THEN only they come back, newest first; the first page (5 and 4 read) was empty yet the listing went on
    assert keys == ["uploads/3.jpg", "uploads/0.jpg"]
    assert sizes[0] == 0


def test_verdict_filters_a_prefix_listing_too(api, seed):
    seed("uploads/a/1.jpg", "2026-11-29T12:00:00.000+00:00", verdict="unknown", unknown_reason="low_confidence")
    seed("uploads/a/2.jpg", "2026-11-29T12:00:01.000+00:00", verdict="label")
    seed("uploads/b/1.jpg", "2026-11-29T12:00:02.000+00:00", verdict="unknown", unknown_reason="low_confidence")

    page = api.get("/predictions?prefix=uploads/a/&verdict=label").json()

    assert [item["key"] for item in page["items"]] == ["uploads/a/2.jpg"]


def test_a_token_from_the_unfiltered_listing_is_400_with_a_verdict(api, seed):
    seed("uploads/1.jpg", "2026-11-29T12:00:00.000+00:00")
    seed("uploads/2.jpg", "2026-11-29T12:00:01.000+00:00")
    next_token = api.get("/predictions?limit=1").json()["next"]

    response = api.get(f"/predictions?verdict=unknown&next={next_token}")

    assert response.status == 400
    assert response.error["code"] == "invalid_token"


def test_an_unknown_verdict_value_is_a_validation_error(api):
    response = api.get("/predictions?verdict=maybe")

    assert response.status == 422
    assert "verdict" in response.error["message"]



def test_a_key_ending_in_a_newline_is_looked_up_not_listed():
    # A regex $ also matches before a final newline: GET /predictions/%0A (path "/predictions/\n") once reached
    # the list route and answered 200 with a page of predictions.
    listing, lookup = ApiResolver._compile_regex("/predictions"), ApiResolver._compile_regex("/predictions/<key>")

    assert listing.match("/predictions/\n") is None and listing.match("/predictions/") is not None
    assert lookup.match("/predictions/\n").group("key") == "\n"
    assert lookup.match("/predictions/uploads/a b.jpg/").group("key") == "uploads/a b.jpg"
