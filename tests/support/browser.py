"""What the browser tests do to a page besides driving it."""

from __future__ import annotations

import base64
from pathlib import Path


def save_full_page(browser, path: Path) -> None:
    """A screenshot of the whole page at the window's width (Chromium's own capture, below the fold too)."""
    size = browser.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
    clip = {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}
    shot = browser.execute_cdp_cmd("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True,
                                                              "clip": clip})
    path.write_bytes(base64.b64decode(shot["data"]))
