"""What the browser tests do to a page besides driving it."""

from __future__ import annotations

import base64
from pathlib import Path

PHONE, DESKTOP = (390, 844), (1280, 900)


def save_full_page(browser, path: Path) -> None:
    """A screenshot of the whole page at the window's width (Chromium's own capture, below the fold too)."""
    size = browser.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
    clip = {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}
    shot = browser.execute_cdp_cmd("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True,
                                                              "clip": clip})
    path.write_bytes(base64.b64decode(shot["data"]))


def classify_in_page(browser, photo: Path) -> None:
    """Pick a photo on the upload page and wait until the page has its answer (a new history entry) or an error."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    before = len(browser.find_elements(By.CSS_SELECTOR, "#history li"))
    browser.find_element(By.ID, "file").send_keys(str(photo))
    WebDriverWait(browser, 60).until(lambda b: len(b.find_elements(By.CSS_SELECTOR, "#history li")) > before
                                     or b.find_element(By.ID, "error").text)
