"""The review loop on the local stack: unknown uploads queue, labels join the dataset once, and enough labels start
a training run through the template's EventBridge rule."""

from __future__ import annotations

import json

import pytest
import requests

from imgclf import keys
from imgclf.review import LabelCounter
from imgclf.runs import Runs
from imgclf_local.stack import LocalStack
from tests.support.datasets import upload_dataset
from tests.support.images import photo
from tests.support.models import publish_model, unsure_model
from tests.support.tables import prediction_record

pytestmark = pytest.mark.slow

DATASET = "shapes-review"
VERSION = "20261201-000000-unsure"
RETRAIN_AFTER = 2
# What the retraining takes from the active model's run: small enough to train here in a minute.
FAST = {"arch": "resnet18", "pretrained": "False", "epochs": "1", "freeze_epochs": "0", "img_size": "64", "bs": "8"}


@pytest.fixture(scope="module")
def stack(tiny_model, tmp_path_factory):
    """The stack with RetrainAfterLabels=2, a dataset of circles and squares, and a model unsure of everything."""
    cache = tmp_path_factory.mktemp("model-cache")
    with LocalStack(parameters={"RetrainAfterLabels": str(RETRAIN_AFTER)},
                    extra_environment={"MODEL_CACHE_DIR": str(cache), "MODEL_CHECK_SECONDS": "0"}) as stack:
        upload_dataset(stack.client("s3"), stack.bucket(), DATASET, ["circle", "square"], per_label=6, size=64)
        Runs(stack.table("RunsTable")).create(VERSION, dataset=DATASET, hyperparameters=FAST, status="Completed")
        publish_model(unsure_model(tiny_model, tmp_path_factory.mktemp("unsure")), VERSION)
        yield stack


def queued(stack, name: str, seed: int) -> str:
    """Drop a photo into uploads/ and wait until the classifier has recorded it."""
    key = f"uploads/{name}"
    stack.client("s3").put_object(Bucket=stack.bucket(), Key=key, Body=photo(seed), ContentType="image/jpeg")
    stack.wait_until(lambda: prediction_record(stack, key), timeout=120)
    return key


def label(stack, key: str, label_: str = "noise") -> requests.Response:
    return requests.post(f"{stack.api.url}/review-queue/{key}", timeout=60,
                         json={"action": "label", "label": label_, "dataset": DATASET})


def manifest(stack) -> list[dict]:
    body = stack.client("s3").get_object(Bucket=stack.bucket(), Key=keys.manifest_key(DATASET))["Body"].read()
    return [json.loads(line) for line in body.splitlines() if line.strip()]


def test_an_unknown_upload_lands_in_the_queue(stack):
    # WHEN an upload the model does not know is classified
    key = queued(stack, "unknown.jpg", seed=1)

    # THEN it is in the queue, as unknown, with the model's guess
    items = requests.get(f"{stack.api.url}/review-queue", timeout=30).json()["items"]
    (item,) = [i for i in items if i["key"] == key]
    assert (item["verdict"], item["review_reason"], item["model_version"]) == ("unknown", "unknown", VERSION)
    assert item["label"] in item["probabilities"] and requests.get(item["thumbnail_url"], timeout=30).ok


def test_labeling_copies_the_upload_into_the_dataset_and_takes_it_out_of_the_queue(stack):
    # GIVEN a queued upload
    key = queued(stack, "labeled.jpg", seed=2)

    # WHEN a person labels it through the API with a new label
    response = label(stack, key)

    # THEN it is in the dataset with its provenance, the prediction keeps the label and it left the queue
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["ingest"]["status"] == "added"
    (record,) = [r for r in manifest(stack) if r.get("upload_key") == key]
    assert (record["source"], record["label"], record["labeled_at"]) == ("upload", "noise", result["reviewed_at"])
    assert record["labeled_by"] == result["reviewed_by"]
    stack.client("s3").head_object(Bucket=stack.bucket(), Key=record["key"])
    assert prediction_record(stack, key)["human_label"] == "noise"
    items = requests.get(f"{stack.api.url}/review-queue", timeout=30).json()["items"]
    assert key not in [i["key"] for i in items]


def test_a_second_label_of_the_same_upload_is_a_conflict(stack):
    # GIVEN an upload someone labeled
    key = queued(stack, "twice.jpg", seed=3)
    assert label(stack, key).status_code == 200

    # WHEN someone labels it again
    second = label(stack, key, "circle")

    # THEN 409, and the dataset holds it once
    assert second.status_code == 409 and second.json()["error"]["code"] == "already_reviewed"
    assert [r["label"] for r in manifest(stack) if r.get("upload_key") == key] == ["noise"]


def test_the_count_reaching_its_threshold_starts_a_training_run(stack):
    # GIVEN labels counted towards the dataset's next run (the tests above may have counted some)
    requested = []
    for seed in range(10, 10 + RETRAIN_AFTER):
        retrain = label(stack, queued(stack, f"count{seed}.jpg", seed=seed)).json()["retrain"]
        requested.append(retrain["requested"])
        if retrain["requested"]:
            break

    # WHEN the label that reached RetrainAfterLabels asked for it, and the pipeline it started has finished
    assert requested.count(True) == 1
    stack.launcher.wait(timeout=900)

    # THEN a run of the dataset was recorded and trained, and the count started again
    runs = Runs(stack.table("RunsTable"))
    counter = LabelCounter(stack.table("RunsTable")).get(DATASET)
    assert counter["labeled"] == 0 and counter["last_run_id"] and counter["retrain_requested_at"] is None
    run = runs.get(counter["last_run_id"])
    assert run["dataset"] == DATASET and run["status"] == "Completed", run
    # AND the guard decided; a promoted model answered the queue's uploads again
    (output,) = [o for o in stack.launcher.outcomes.values()
                 if isinstance(o, dict) and o.get("version") == run["run_id"]]
    assert output["promoted"] is False or output["reclassified"]["more"] is False, output
