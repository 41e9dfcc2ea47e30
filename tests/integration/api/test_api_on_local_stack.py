"""The API over HTTP on the embedded stack, with a real trained model: classify, upload, predictions, page."""

from __future__ import annotations

import base64
import io

import pytest
import requests
from PIL import Image

from tests.support.images import real_photos
from tests.support.models import CLASSES, MODEL_VERSION


@pytest.fixture(scope="module")
def photo() -> bytes:
    """A real photo when the shared data sets are there, a generated one otherwise."""
    real = real_photos("valid", per_class=1)
    if real:
        return real[0].read_bytes()
    buffer = io.BytesIO()
    Image.new("RGB", (200, 150), (170, 60, 40)).save(buffer, "JPEG")
    return buffer.getvalue()


def test_a_photo_posted_raw_is_classified_by_the_promoted_model(api_stack, photo):
    response = requests.post(f"{api_stack.api.url}/classify", data=photo, headers={"Content-Type": "image/jpeg"},
                             timeout=60)

    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["model_version"] == MODEL_VERSION
    assert set(answer["probabilities"]) == set(CLASSES)
    assert sum(answer["probabilities"].values()) == pytest.approx(1, abs=1e-4)
    assert answer["label"] == max(answer["probabilities"], key=answer["probabilities"].get)


def test_the_same_photo_as_base64_json_gets_the_same_answer(api_stack, photo):
    url = f"{api_stack.api.url}/classify"
    raw = requests.post(url, data=photo, headers={"Content-Type": "image/jpeg"}, timeout=60).json()

    encoded = requests.post(url, json={"image_base64": base64.b64encode(photo).decode()}, timeout=60).json()

    assert encoded["label"] == raw["label"]
    assert encoded["probabilities"] == pytest.approx(raw["probabilities"])


def test_a_presigned_upload_is_classified_by_the_pipeline_and_readable_through_the_api(api_stack, photo):
    # GIVEN an upload URL from the API
    upload = requests.post(f"{api_stack.api.url}/uploads", json={"content_type": "image/jpeg"}, timeout=30).json()

    # WHEN the photo is PUT there (the bucket notifies the queue, the classifier takes it from there)
    put = requests.put(upload["url"], data=photo, headers=upload["headers"], timeout=30)
    assert put.status_code == 200

    # THEN its prediction appears under the path the API gave, and in the newest-first listing
    def prediction():
        response = requests.get(f"{api_stack.api.url}/{upload['prediction_path']}", timeout=30)
        return response.json() if response.status_code == 200 else None

    record = api_stack.wait_until(prediction, timeout=90)
    assert record["status"] == "classified"
    assert record["model_version"] == MODEL_VERSION
    listing = requests.get(f"{api_stack.api.url}/predictions?limit=5", timeout=30).json()
    assert upload["key"] in [item["key"] for item in listing["items"]]

    # AND /classify accepts the upload by its s3:// URI, with the pipeline's answer
    by_uri = requests.post(f"{api_stack.api.url}/classify", json={"s3_uri": upload["s3_uri"]}, timeout=60).json()
    assert by_uri["label"] == record["label"]


def test_collections_and_runs_are_recorded_on_the_local_stack(api_stack):
    # WHEN a collection with training is requested (nothing executes functions on the local stack)
    started = requests.post(f"{api_stack.api.url}/datasets", timeout=30,
                            json={"name": "local-ds", "labels": ["ants", "bees"], "train": True}).json()

    # THEN the run it will train is readable and pending
    run = requests.get(f"{api_stack.api.url}/training-runs/{started['run_id']}", timeout=30).json()
    assert run["status"] == "Pending"
    assert run["dataset"] == "local-ds"


def test_the_model_list_shows_the_promoted_version(api_stack):
    listing = requests.get(f"{api_stack.api.url}/models", timeout=30).json()

    assert listing["active"] == MODEL_VERSION
    assert [v["version"] for v in listing["versions"]] == [MODEL_VERSION]


def test_the_page_and_the_document_are_served(api_stack):
    page = requests.get(f"{api_stack.api.url}/", timeout=30)
    document = requests.get(f"{api_stack.api.url}/openapi.json", timeout=30)

    assert page.status_code == 200 and "What's in this photo?" in page.text
    assert document.json()["info"]["title"] == "imgclf API"
