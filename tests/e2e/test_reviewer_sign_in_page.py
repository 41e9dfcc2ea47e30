"""Signing in on the review page in headless Chromium: the form talks to the stack's Cognito (moto), the id token
opens the review routes, the model-health panel fills, and signing out closes them again."""

from __future__ import annotations

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from tests.support.browser import DESKTOP, save_full_page
from tests.support.reviewers import EMAIL, PASSWORD, ensure_reviewer, sign_in_on_page

pytestmark = pytest.mark.slow


def shown(browser, element_id: str) -> bool:
    return browser.find_element(By.ID, element_id).is_displayed()


def test_a_reviewer_signs_in_sees_the_model_health_and_signs_out(local_stack, browser, artifacts):
    ensure_reviewer(local_stack)

    # GIVEN the review page, signed out
    browser.set_window_size(*DESKTOP)
    browser.get(f"{local_stack.api.url}/review")
    browser.execute_script("sessionStorage.clear()")
    browser.refresh()
    assert shown(browser, "sign-in-form") and not shown(browser, "signed-in")
    # moto serves no hosted sign-in page, so the local page offers the form only
    assert not shown(browser, "hosted")

    # WHEN a wrong password is tried
    browser.find_element(By.ID, "sign-in-email").send_keys(EMAIL)
    browser.find_element(By.ID, "sign-in-password").send_keys("Not-The-Password-1")
    browser.find_element(By.ID, "sign-in-submit").click()

    # THEN the page says so and stays signed out
    WebDriverWait(browser, 30).until(lambda b: b.find_element(By.ID, "sign-in-error").text)
    assert "Wrong email or password" in browser.find_element(By.ID, "sign-in-error").text
    assert not shown(browser, "signed-in")

    # WHEN the right one is given
    browser.find_element(By.ID, "sign-in-email").clear()
    browser.find_element(By.ID, "sign-in-password").clear()
    sign_in_on_page(browser, local_stack, EMAIL, PASSWORD)

    # THEN the page names the reviewer, and the model-health panel is filled from GET review/model-health
    assert browser.find_element(By.ID, "signed-in-as").text == EMAIL
    WebDriverWait(browser, 30).until(lambda b: b.find_element(By.ID, "health-rejected").text != "–")
    assert browser.find_element(By.ID, "health-queue").text.isdigit()
    assert browser.find_element(By.ID, "health-error").text == ""
    save_full_page(browser, artifacts / "review-signed-in.png")

    # AND a reload keeps the sign-in for the tab's session, and loads the views at once
    browser.refresh()
    WebDriverWait(browser, 10).until(lambda b: shown(b, "signed-in"))
    WebDriverWait(browser, 30).until(
        lambda b: b.find_element(By.ID, "uploads-status").text == "No uploads are waiting.")
    assert browser.find_element(By.ID, "uploads-error").text == ""

    # WHEN the reviewer signs out
    browser.find_element(By.ID, "sign-out").click()

    # THEN the form is back and the token is gone
    assert shown(browser, "sign-in-form")
    assert browser.execute_script("return sessionStorage.getItem('imgclf.review.session')") is None


def test_an_expired_sign_in_asks_to_sign_in_again(local_stack, browser):
    # GIVEN a page whose stored token the API refuses (as it refuses an expired one)
    ensure_reviewer(local_stack)
    browser.get(f"{local_stack.api.url}/review")
    browser.execute_script("sessionStorage.setItem('imgclf.review.session', JSON.stringify("
                           "{token: 'expired.token.value', who: 'someone', expires: Date.now() / 1000 + 3600}))")

    # WHEN the page loads and calls the review routes with it
    browser.refresh()

    # THEN the API answers 401 and the page shows the sign-in form again
    WebDriverWait(browser, 30).until(lambda b: shown(b, "sign-in-form"))
    assert "Sign in" in browser.find_element(By.ID, "sign-in-status").text
