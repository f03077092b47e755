"""The lost 250 in the web page (docs/retries.md), in a real browser over a real server: the rules
panel adds a ``store-then-drop`` rule (and shows the server's refusal at another stage), and the
list marks the copy a retrying client made with a badge that opens the original."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect
from support.browser import live_page
from support.retrying import mail, send_with_retries, wait_indexed

from smtp_sink.rules import Rule
from smtp_sink.server import SinkServer

expect.set_options(timeout=10_000)  # the machine is shared: give every expectation 10 s


@pytest.fixture
def page(browser: Browser, web_server: SinkServer) -> Iterator[Page]:
    with live_page(browser, web_server.http_port) as page:
        yield page


def test_the_rules_panel_adds_store_then_drop_at_after_data_only(page: Page, web_server: SinkServer) -> None:
    page.locator("#rules-badge button").click()
    panel = page.locator("#rules-panel")
    expect(panel).to_be_visible()
    panel.get_by_label("Stage").select_option("mail")
    panel.get_by_label("Action").select_option("store-then-drop")
    expect(panel.get_by_label("Code")).to_be_hidden()  # the action takes no code, text, seconds or rate
    panel.get_by_role("button", name="Add rule").click()
    expect(panel.get_by_role("alert")).to_have_text(
        "rule: stage: action store-then-drop works at stage after-data only (a message must be complete to be "
        "stored), got mail")
    expect(panel.get_by_label("Stage")).to_have_attribute("aria-invalid", "true")
    panel.get_by_label("Stage").select_option("after-data")
    panel.get_by_label("Schedule").select_option("nth")
    panel.get_by_label("n", exact=True).fill("1")
    panel.get_by_role("button", name="Add rule").click()
    expect(panel.locator("tbody tr")).to_contain_text("store, then drop the connection before the 250")
    assert web_server.rules.rules() == [Rule(stage="after-data", action="store-then-drop",  # type: ignore[arg-type]
                                             schedule="nth", n=1)]  # type: ignore[arg-type]
    assert len(send_with_retries(web_server.smtp_port, mail("from the page's rule"))) == 1


def test_the_list_marks_the_copy_and_its_badge_opens_the_original(page: Page, web_server: SinkServer) -> None:
    web_server.rules.add(Rule(stage="after-data", action="store-then-drop", schedule="nth", n=1))  # type: ignore[arg-type]
    send_with_retries(web_server.smtp_port, mail("Order 7 confirmed"))
    original, copy = sorted(m["ID"] for m in wait_indexed(web_server.http_port, 2))
    rows = page.locator("#messages li")
    expect(rows).to_have_count(2)
    expect(page.locator(f'#messages li[data-id="{copy}"] button.duplicate')).to_have_text("duplicate")
    expect(page.locator(f'#messages li[data-id="{original}"] button.duplicate')).to_have_count(0)
    page.locator(f'#messages li[data-id="{copy}"] button.duplicate').click()
    expect(page.locator(f'#messages li[data-id="{original}"]')).to_have_class(re.compile(r"\bactive\b"))
    page.locator("#search-help-button").click()
    page.locator("#search-help").get_by_role("button", name="Add is:duplicate to the search").click()
    expect(page.locator("#query")).to_have_value("is:duplicate")
    expect(rows).to_have_count(1)
    expect(rows).to_have_attribute("data-id", copy)
