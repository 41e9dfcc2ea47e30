"""The upload page's "not sure" state in headless Chromium, with a model fine-tuned on real photos."""

from __future__ import annotations

import pytest
from selenium.webdriver.common.by import By

from imgclf_local.samples import jpeg_bytes, shape_image
from tests.support import models
from tests.support.browser import DESKTOP, classify_in_page, save_full_page

pytestmark = pytest.mark.slow

ANT_PHOTO = "ants-bees/valid/ants/1073564163_225a64f170.jpg"


@pytest.fixture(scope="module")
def photo_stack(photo_model, tmp_path_factory):
    with models.stack_with_model(photo_model, tmp_path_factory.mktemp("model-cache"), "photo-run") as stack:
        yield stack


def test_a_drawing_is_not_sure_and_names_the_labels_it_is_none_of(photo_stack, browser, datasets_dir, tmp_path,
                                                                   artifacts):
    # GIVEN the page, served with a model that has seen only photos of ants and bees
    browser.set_window_size(*DESKTOP)
    browser.get(f"{photo_stack.api.url}/")
    drawing = tmp_path / "triangle.jpg"
    drawing.write_bytes(jpeg_bytes(shape_image("triangle", 0, 224)))

    # WHEN a drawing is picked
    classify_in_page(browser, drawing)

    # THEN the page says it is not sure, names the labels the drawing is none of, and shows no confident bar
    assert browser.find_element(By.ID, "error").text == ""
    assert browser.find_element(By.ID, "result-label").text == "Not sure"
    detail = browser.find_element(By.ID, "result-confidence").text
    assert detail.startswith("this looks like none of: ants, bees (closest: ")
    assert browser.find_elements(By.CSS_SELECTOR, "#bars li") == []
    assert browser.find_element(By.CSS_SELECTOR, "#history li .h-label").text.startswith("Not sure (closest: ")
    assert "%" not in browser.find_element(By.ID, "result").text  # no confidence it does not have
    save_full_page(browser, artifacts / "page-not-sure.png")

    # AND a photo of an ant is answered with its label and the bars again
    classify_in_page(browser, datasets_dir / ANT_PHOTO)
    assert browser.find_element(By.ID, "result-label").text == "ants"
    assert len(browser.find_elements(By.CSS_SELECTOR, "#bars li")) == 2
