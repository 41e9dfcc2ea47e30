"""The upload page in headless Chromium on the embedded stack: pick a real photo, see the label and the bars."""

from __future__ import annotations

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from tests.support import images
from tests.support.browser import DESKTOP, PHONE, classify_in_page, save_full_page
from tests.support.models import CLASSES, MODEL_VERSION

pytestmark = pytest.mark.slow



@pytest.fixture(scope="module")
def real_photos() -> list:
    found = images.real_photos("valid", per_class=1)
    if not found:
        pytest.skip(f"no photos in {images.ANTS_BEES / 'valid'}")
    return found


def test_a_picked_photo_shows_its_label_a_bar_per_class_the_model_and_the_history(api_stack, browser, real_photos,
                                                                                   artifacts):
    # GIVEN the page at desktop width
    browser.set_window_size(*DESKTOP)
    browser.get(f"{api_stack.api.url}/")
    assert browser.title.startswith("imgclf")

    # WHEN a real photo is picked
    classify_in_page(browser, real_photos[0])

    # THEN the label, one bar per class with its percentage, and the model version are shown
    assert browser.find_element(By.ID, "error").text == ""
    label = browser.find_element(By.ID, "result-label").text
    assert label in CLASSES
    bars = browser.find_elements(By.CSS_SELECTOR, "#bars li")
    assert sorted(bar.find_element(By.CLASS_NAME, "name").text for bar in bars) == sorted(CLASSES)
    assert all(bar.find_element(By.CLASS_NAME, "pct").text.endswith("%") for bar in bars)
    assert bars[0].find_element(By.CLASS_NAME, "name").text == label  # the best class comes first
    assert browser.find_element(By.ID, "model-version").text == MODEL_VERSION
    assert browser.find_element(By.ID, "preview").get_attribute("src").startswith("blob:")

    # AND a second photo is added to this session's history, newest first
    classify_in_page(browser, real_photos[1])
    history = browser.find_elements(By.CSS_SELECTOR, "#history li")
    assert len(history) == 2
    newest = browser.find_element(By.ID, "result-label").text
    assert history[0].find_element(By.CLASS_NAME, "h-label").text.startswith(newest)
    WebDriverWait(browser, 10).until(ec.visibility_of_element_located((By.CSS_SELECTOR, "#bars li .fill")))
    save_full_page(browser, artifacts / "page-desktop.png")

    # AND the layout holds at phone width, without sideways scrolling
    browser.set_window_size(*PHONE)
    assert browser.execute_script("return document.documentElement.scrollWidth") <= PHONE[0]
    save_full_page(browser, artifacts / "page-phone.png")


def test_the_file_picker_is_the_first_stop_of_the_keyboard_and_results_are_announced(api_stack, browser):
    browser.set_window_size(*DESKTOP)
    browser.get(f"{api_stack.api.url}/")

    browser.find_element(By.TAG_NAME, "body").send_keys(Keys.TAB)

    assert browser.switch_to.active_element.get_attribute("id") == "file"
    assert browser.find_element(By.ID, "live").get_attribute("aria-live") == "polite"
    assert browser.find_element(By.ID, "error").get_attribute("role") == "alert"
    assert browser.find_element(By.CSS_SELECTOR, "label[for=file]").text.startswith("Choose a photo")


def test_a_file_that_is_not_a_photo_gets_an_explained_refusal(api_stack, browser, tmp_path):
    browser.set_window_size(*DESKTOP)
    browser.get(f"{api_stack.api.url}/")
    notes = tmp_path / "notes.jpg"
    notes.write_text("shopping list, not a picture")

    classify_in_page(browser, notes)

    alert = browser.find_element(By.CSS_SELECTOR, "#error[role=alert]")
    assert "could not be read as a photo" in alert.text
    assert not browser.find_element(By.ID, "answer").is_displayed()


# API Gateway's answer when a usage-plan key is required and missing (template: RequireApiKey=true). The
# embedded stack does not enforce keys, so the page's fetch is wrapped to answer as API Gateway does.
REQUIRE_KEY = """
window.sentKeys = [];
const realFetch = window.fetch.bind(window);
window.fetch = (url, init = {}) => {
  const key = (init.headers || {})["x-api-key"];
  if (String(url).endsWith("classify") && !key) {
    const body = JSON.stringify({error: {code: "API_KEY", message: "Forbidden"}});
    return Promise.resolve(new Response(body, {status: 403, headers: {"Content-Type": "application/json"}}));
  }
  window.sentKeys.push(key);
  return realFetch(url, init);
};
"""


def test_where_the_api_needs_a_key_the_page_asks_for_it_and_sends_it(api_stack, browser, real_photos):
    # GIVEN the page of a stack that requires an API key on /classify
    browser.set_window_size(*DESKTOP)
    browser.get(f"{api_stack.api.url}/")
    browser.execute_script("sessionStorage.clear();" + REQUIRE_KEY)
    assert not browser.find_element(By.ID, "api-key-row").is_displayed()

    # WHEN a photo is sent without a key, then the key is entered and the photo sent again
    classify_in_page(browser, real_photos[0])
    asked = browser.find_element(By.ID, "error").text
    key_field = browser.find_element(By.ID, "api-key")
    key_field.send_keys("k3y-from-ops", Keys.TAB)
    classify_in_page(browser, real_photos[0])

    # THEN the page said what was missing, showed the field, and the second request carried the key
    assert "needs a key" in asked
    assert browser.find_element(By.ID, "api-key-row").is_displayed()
    assert browser.execute_script("return window.sentKeys") == ["k3y-from-ops"]
    assert browser.find_element(By.ID, "result-label").text
