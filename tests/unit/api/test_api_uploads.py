"""POST /uploads: a presigned PUT under uploads/, bound to the content type, with an expiry."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import requests


def test_the_url_puts_a_fresh_key_under_uploads_with_the_content_type_signed(api, api_env, s3):
    # WHEN an upload URL is asked for a PNG
    response = api.post("/uploads", json_body={"content_type": "image/png", "bytes": 1234})

    # THEN it names a new key under uploads/ and signs the Content-Type, for 15 minutes
    assert response.status == 201
    upload = response.json()
    assert upload["key"].startswith("uploads/") and upload["key"].endswith(".png")
    assert upload["s3_uri"] == f"s3://{api_env.data_bucket}/{upload['key']}"
    assert upload["headers"] == {"Content-Type": "image/png"}
    assert upload["prediction_path"] == f"predictions/{upload['key']}"
    assert upload["expires_in"] == 900
    assert content_type_is_signed(upload["url"])

    # AND a PUT to it stores the object
    put = requests.put(upload["url"], data=b"\x89PNG...", headers=upload["headers"], timeout=10)
    assert put.status_code == 200
    assert s3.head_object(Bucket=api_env.data_bucket, Key=upload["key"])["ContentLength"] == 7


def content_type_is_signed(url: str) -> bool:
    """Whether a presigned URL binds the Content-Type, in SigV4 (signed header) or SigV2 (signed parameter)."""
    query = parse_qs(urlsplit(url).query)
    if "X-Amz-SignedHeaders" in query:
        return "content-type" in query["X-Amz-SignedHeaders"][0].split(";")
    return query.get("content-type") == ["image/png"] and "Signature" in query


def test_two_requests_never_share_a_key(api):
    keys = {api.post("/uploads", json_body={"content_type": "image/jpeg"}).json()["key"] for _ in range(5)}

    assert len(keys) == 5


def test_a_declared_size_over_the_limit_is_413(api, api_env):
    response = api.post("/uploads", json_body={"content_type": "image/jpeg", "bytes": api_env.max_image_bytes + 1})

    assert response.status == 413
    assert response.error["code"] == "image_too_large"


def test_a_content_type_that_is_not_an_accepted_image_is_422(api):
    response = api.post("/uploads", json_body={"content_type": "text/html"})

    assert response.status == 422
    assert "content_type" in response.error["message"]
