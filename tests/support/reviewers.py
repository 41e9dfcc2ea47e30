"""Reviewers of a local stack: an account in its reviewer pool, an id token, and signing in on the review page."""

from __future__ import annotations

import os

from imgclf_api.sign_in import SignIn, add_reviewer, read_sign_in

EMAIL, PASSWORD = "reviewer@example.com", "Local-Reviewer-Pass-1"


def sign_in_of(stack) -> SignIn:
    """The stack's sign-in, as the review page gets it (the parameter the template declares)."""
    return read_sign_in(stack.client("ssm"), os.environ["SIGN_IN_PARAMETER"], endpoint=stack.endpoint + "/")


def ensure_reviewer(stack, email: str = EMAIL, password: str = PASSWORD) -> str:
    """An account that can sign in with the password (made once per stack); its email."""
    cognito, pool = stack.client("cognito-idp"), sign_in_of(stack).user_pool_id
    users = cognito.list_users(UserPoolId=pool, Filter=f'email = "{email}"')["Users"]
    if not users:
        add_reviewer(cognito, pool, email, password=password)
    return email


def id_token(stack, email: str = EMAIL, password: str = PASSWORD) -> str:
    """A reviewer's id token, from the same InitiateAuth call the review page's form makes."""
    answer = stack.client("cognito-idp").initiate_auth(
        AuthFlow="USER_PASSWORD_AUTH", ClientId=sign_in_of(stack).client_id,
        AuthParameters={"USERNAME": email, "PASSWORD": password})
    return answer["AuthenticationResult"]["IdToken"]


def sign_in_on_page(browser, stack, email: str = EMAIL, password: str = PASSWORD, timeout: float = 30) -> None:
    """Sign in with the review page's form (the page is open), and wait until the page says who is signed in."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    ensure_reviewer(stack, email, password)
    if browser.find_element(By.ID, "signed-in").is_displayed():
        return
    browser.find_element(By.ID, "sign-in-email").send_keys(email)
    browser.find_element(By.ID, "sign-in-password").send_keys(password)
    browser.find_element(By.ID, "sign-in-submit").click()
    WebDriverWait(browser, timeout).until(lambda b: b.find_element(By.ID, "signed-in").is_displayed()
                                          or b.find_element(By.ID, "sign-in-error").text)
    error = browser.find_element(By.ID, "sign-in-error").text
    assert not error, f"signing in failed: {error}"
