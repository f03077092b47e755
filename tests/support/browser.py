"""Debian's chromium, driven by Playwright for Python (no browser is downloaded)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]


@contextlib.contextmanager
def chromium() -> Iterator[Any]:
    """A headless chromium (a Playwright ``Browser``), closed on leaving."""
    from playwright.sync_api import sync_playwright  # only the browser tests pay for the import

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield browser
        browser.close()


def open_page(browser: Any, http_port: int, width: int = 1200, height: int = 900) -> Any:
    """The web page on ``http_port`` in a context of its own, once its event stream is open
    (close it with ``page.context.close()``)."""
    page = browser.new_context(viewport={"width": width, "height": height}).new_page()
    page.goto(f"http://127.0.0.1:{http_port}/")
    page.wait_for_selector("body[data-live]")
    return page


@contextlib.contextmanager
def live_page(browser: Any, http_port: int) -> Iterator[Any]:
    """:func:`open_page`, its context closed on leaving (the tests' ``page`` fixtures)."""
    page = open_page(browser, http_port)
    try:
        yield page
    finally:
        page.context.close()
