"""The review page in headless Chromium on the embedded stack: a trained run's top losses, deleted and moved."""

from __future__ import annotations

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select, WebDriverWait

from imgclf.datasets import Dataset, current_images
from imgclf.runs import Runs
from imgclf.settings import get_settings
from imgclf_training.starter import start_training_job
from tests.support.browser import save_full_page
from tests.support.datasets import upload_dataset
from tests.support.reviewers import sign_in_on_page

pytestmark = pytest.mark.slow

PHONE, DESKTOP = (390, 844), (1280, 900)
DATASET, LABELS = "shapes", ["circle", "square", "triangle"]
FAST = {"arch": "resnet18", "pretrained": "false", "epochs": "1", "freeze_epochs": "0", "img_size": "64",
        "bs": "8", "num_workers": "0", "parity_images": "4", "top_k": "3"}


@pytest.fixture(scope="module")
def trained_run(local_stack) -> dict:
    """A small dataset on the stack and a run trained on it (about 30 s), with its review list written."""
    settings = get_settings()
    upload_dataset(local_stack.client("s3"), local_stack.bucket(), DATASET, LABELS, per_label=8)
    prepared = start_training_job(settings, Runs(settings.runs_table), local_stack.sagemaker(), DATASET, FAST)
    run = Runs(settings.runs_table).get(prepared["run_id"])
    assert run["status"] == "Completed", run.get("failure_reason")
    return run


def open_review(browser, stack, run_id: str) -> list:
    browser.get(f"{stack.api.url}/review?run={run_id}")
    sign_in_on_page(browser, stack)
    WebDriverWait(browser, 30).until(lambda b: b.find_elements(By.CSS_SELECTOR, "#grid li.item")
                                     or b.find_element(By.ID, "error").text)
    assert browser.find_element(By.ID, "error").text == ""
    return browser.find_elements(By.CSS_SELECTOR, "#grid li.item")


def wait_settled(browser, card) -> str:
    """Wait until a card's edit is answered; its state (done, gone) or failed."""
    WebDriverWait(browser, 30).until(
        lambda b: card.get_attribute("data-state") or "failed" in card.get_attribute("class").split())
    return card.get_attribute("data-state") or "failed"


def test_deleting_and_moving_images_of_a_run_edits_the_dataset_with_an_audit_trail(local_stack, trained_run, browser,
                                                                                   artifacts):
    s3, bucket, run_id = local_stack.client("s3"), local_stack.bucket(), trained_run["run_id"]
    review = Dataset(s3, bucket, DATASET)

    # GIVEN the review page of the run at desktop width, with a reviewer name
    browser.set_window_size(*DESKTOP)
    cards = open_review(browser, local_stack, run_id)

    # THEN every entry of the review list is a card with its thumbnail (allowed by the page's policy), the labels,
    # the probability, the loss and the kind
    assert len(cards) >= 2
    WebDriverWait(browser, 20).until(lambda b: all(
        b.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0", img)
        for img in b.find_elements(By.CSS_SELECTOR, "#grid .thumb img")))
    for card in cards:
        assert card.find_element(By.CSS_SELECTOR, ".actual").text in LABELS
        assert card.find_element(By.CSS_SELECTOR, ".predicted").text in LABELS
        assert card.find_element(By.CSS_SELECTOR, ".probability").text.endswith("%")
        assert float(card.find_element(By.CSS_SELECTOR, ".loss").text) >= 0
        assert card.find_element(By.CSS_SELECTOR, ".kind").text in {"Wrong", "Uncertain"}
    assert browser.find_element(By.ID, "fact-dataset").text == DATASET
    keys = [card.find_element(By.CSS_SELECTOR, ".file").get_attribute("title") for card in cards]
    assert all(key.startswith(f"datasets/{DATASET}/") for key in keys)
    browser.find_element(By.ID, "reviewer").send_keys("e2e reviewer")

    # WHEN the first image is deleted and the second moved to another label
    cards[0].find_element(By.CSS_SELECTOR, "[data-action=delete]").click()
    assert wait_settled(browser, cards[0]) == "done"
    actual = cards[1].find_element(By.CSS_SELECTOR, ".actual").text
    target = next(label for label in LABELS if label != actual)
    Select(cards[1].find_element(By.CSS_SELECTOR, "select.move-to")).select_by_value(target)
    cards[1].find_element(By.CSS_SELECTOR, "[data-action=relabel]").click()
    assert wait_settled(browser, cards[1]) == "done"

    # THEN the cards say so, the live status announces it, and the progress counts both
    assert "Deleted" in cards[0].find_element(By.CSS_SELECTOR, ".outcome").text
    assert f"Moved to {target}" in cards[1].find_element(By.CSS_SELECTOR, ".outcome").text
    assert browser.find_element(By.ID, "status").get_attribute("aria-live") == "polite"
    assert "Moved" in browser.find_element(By.ID, "status").text
    assert browser.find_element(By.ID, "progress-text").text.startswith("2 of ")

    # AND the manifest's audit trail names both edits, who made them and the run they came from
    edits = [r for r in review.records() if r.get("edit")]
    assert [(e["edit"], e["key"]) for e in edits] == [("delete", keys[0]), ("relabel", keys[1])]
    assert all(e["by"] == "e2e reviewer" and run_id in e["reason"] for e in edits)
    assert edits[1]["to_label"] == target and edits[1]["to_key"].startswith(f"datasets/{DATASET}/{target}/")

    # AND the objects moved: the deleted one is gone, the moved one lives under its new label only
    listed = {o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=f"datasets/{DATASET}/")["Contents"]}
    assert keys[0] not in listed and keys[1] not in listed
    assert edits[1]["to_key"] in listed
    assert review.summary()["edits"] == {"delete": 1, "relabel": 1}
    save_full_page(browser, artifacts / "review-page.png")

    # AND the layout holds at phone width, without sideways scrolling
    browser.set_window_size(*PHONE)
    assert browser.execute_script("return document.documentElement.scrollWidth") <= PHONE[0]
    save_full_page(browser, artifacts / "review-page-phone.png")

    # AND it follows the system's dark mode
    browser.set_window_size(*DESKTOP)
    browser.execute_cdp_cmd("Emulation.setEmulatedMedia",
                            {"features": [{"name": "prefers-color-scheme", "value": "dark"}]})
    try:
        background = browser.execute_script("return getComputedStyle(document.body).backgroundColor")
        assert background == "rgb(14, 18, 32)"
        save_full_page(browser, artifacts / "review-page-dark.png")
    finally:
        browser.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": []})


def test_keyboard_decisions_move_on_and_an_image_gone_meanwhile_says_so(local_stack, trained_run, browser):
    s3, bucket = local_stack.client("s3"), local_stack.bucket()
    data = Dataset(s3, bucket, DATASET)
    browser.set_window_size(*DESKTOP)
    cards = open_review(browser, local_stack, trained_run["run_id"])
    present = {image.key for image in current_images(data.records()).values()}
    live = [card for card in cards if card.find_element(By.CSS_SELECTOR, ".file").get_attribute("title") in present]
    assert len(live) >= 2

    # WHEN a Keep is pressed from the keyboard
    first = cards.index(live[0])
    live[0].find_element(By.CSS_SELECTOR, "[data-action=keep]").send_keys(Keys.ENTER)
    assert wait_settled(browser, live[0]) == "done"

    # THEN focus moves on to the next image's first decision
    if first + 1 < len(cards):
        assert browser.switch_to.active_element == cards[first + 1].find_element(By.CSS_SELECTOR, "[data-action=keep]")

    # WHEN an image is deleted by someone else while the page shows it, and then deleted on the page
    gone = live[-1]
    data.edit(gone.find_element(By.CSS_SELECTOR, ".file").get_attribute("title"), "delete", by="someone else")
    gone.find_element(By.CSS_SELECTOR, "[data-action=delete]").click()

    # THEN its card says it is gone rather than offering the decisions again, and the status tells why
    assert wait_settled(browser, gone) == "gone"
    assert "no longer in the dataset" in gone.find_element(By.CSS_SELECTOR, ".outcome").text
    assert "Could not delete" in browser.find_element(By.ID, "status").text
    assert not gone.find_element(By.CSS_SELECTOR, "[data-action=delete]").is_displayed()
