"""The page's fault-rules badge and panel, in a real browser over a real server: a rule added in the
page is what an SMTP client then gets; a bad rule shows the server's message naming the key."""

from __future__ import annotations

import smtplib
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect
from support.browser import live_page

from smtp_sink.rules import Rule
from smtp_sink.server import SinkServer

WAIT = 10_000  # ms: auto-waiting bound of every expect


@pytest.fixture
def page(browser: Browser, web_server: SinkServer) -> Iterator[Page]:
    with live_page(browser, web_server.http_port) as page:
        yield page


def open_panel(page: Page) -> None:
    page.locator("#rules-badge button").click()
    expect(page.locator("#rules-panel")).to_be_visible(timeout=WAIT)


def test_rule_added_in_the_page_refuses_the_recipient(page: Page, web_server: SinkServer) -> None:
    badge = page.locator("#rules-badge button")
    expect(badge).to_have_text("No fault rules", timeout=WAIT)
    open_panel(page)
    panel = page.locator("#rules-panel")
    expect(panel.locator(".rules-empty")).to_be_visible()
    panel.get_by_label("Stage").select_option("rcpt")
    panel.get_by_label("Recipient").fill("bob@example.test")
    panel.get_by_label("Code").fill("550")
    panel.get_by_label("Reply text").fill("Mailbox unavailable (page rule)")
    panel.get_by_role("button", name="Add rule").click()
    expect(panel.locator("tbody tr")).to_have_count(1, timeout=WAIT)
    expect(panel.locator("tbody tr")).to_contain_text("to bob@example.test")
    expect(panel.locator("tbody tr")).to_contain_text("reply 550 Mailbox unavailable (page rule)")
    expect(badge).to_have_text("1 fault rule")
    assert [rule.recipient for rule in web_server.rules.rules()] == ["bob@example.test"]

    with smtplib.SMTP("127.0.0.1", web_server.smtp_port) as smtp:
        smtp.ehlo()
        smtp.mail("ann@example.test")
        assert smtp.rcpt("carol@example.test")[0] == 250  # the glob matches only bob
        assert smtp.rcpt("bob@example.test") == (550, b"Mailbox unavailable (page rule)")


def test_form_shows_only_the_fields_of_the_action_and_schedule(page: Page, web_server: SinkServer) -> None:
    open_panel(page)
    panel = page.locator("#rules-panel")
    expect(panel.get_by_label("Code")).to_be_visible()
    expect(panel.get_by_label("Seconds")).to_be_hidden()
    panel.get_by_label("Stage").select_option("helo")
    expect(panel.get_by_label("Sender")).to_be_hidden()  # no sender before MAIL
    panel.get_by_label("Action").select_option("delay")
    expect(panel.get_by_label("Code")).to_be_hidden()
    panel.get_by_label("Seconds").fill("2.5")
    panel.get_by_label("Schedule").select_option("probability")
    panel.get_by_label("Probability").fill("0.25")
    panel.get_by_label("Seed").fill("7")
    panel.get_by_role("button", name="Add rule").click()
    expect(panel.locator("tbody tr")).to_contain_text("delay 2.5 s", timeout=WAIT)
    expect(panel.locator("tbody tr")).to_contain_text("25% of matches (seed 7)")
    assert web_server.rules.rules() == [Rule(stage="helo", action="delay", seconds=2.5,  # type: ignore[arg-type]
                                             schedule="probability", probability=0.25, seed=7)]  # type: ignore[arg-type]


def test_bad_rule_shows_the_server_message_naming_the_key(page: Page, web_server: SinkServer) -> None:
    open_panel(page)
    panel = page.locator("#rules-panel")
    panel.get_by_label("Code").fill("250")
    panel.get_by_role("button", name="Add rule").click()
    error = panel.get_by_role("alert")
    expect(error).to_have_text("rule: code: a fault rule replies with a failure (4xx or 5xx), not 250", timeout=WAIT)
    expect(panel.get_by_label("Code")).to_have_attribute("aria-invalid", "true")
    panel.get_by_label("Code").fill("451")
    panel.get_by_label("Schedule").select_option("nth")
    panel.get_by_label("n", exact=True).fill("0")
    panel.get_by_role("button", name="Add rule").click()
    expect(error).to_have_text("rule: n: must be at least 1, got 0")
    expect(panel.get_by_label("n", exact=True)).to_have_attribute("aria-invalid", "true")
    expect(panel.get_by_label("Code")).not_to_have_attribute("aria-invalid", "true")
    assert web_server.rules.rules() == []
    panel.get_by_label("n", exact=True).fill("2")
    panel.get_by_role("button", name="Add rule").click()
    expect(error).to_be_hidden(timeout=WAIT)
    expect(panel.locator("tbody tr")).to_contain_text("only match #2")


def test_badge_follows_rules_added_elsewhere_marks_chaos_and_clear_works(page: Page, web_server: SinkServer) -> None:
    badge = page.locator("#rules-badge button")
    expect(badge).to_have_text("No fault rules", timeout=WAIT)
    web_server.rules.add(Rule(stage="mail", code=451, text="greylisted"))  # type: ignore[arg-type]
    put = page.request.put(f"http://127.0.0.1:{web_server.http_port}/api/v1/chaos",
                           data={"Recipient": {"ErrorCode": 452, "Probability": 30}})
    assert put.ok, put.text()
    page.evaluate("window.dispatchEvent(new Event('focus'))")  # coming back to the tab re-reads the rules
    expect(badge).to_have_text("2 fault rules (1 chaos)", timeout=WAIT)
    open_panel(page)
    panel = page.locator("#rules-panel")
    rows = panel.locator("tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.nth(0)).not_to_contain_text("chaos")
    expect(rows.nth(1).locator(".chip")).to_have_text("chaos")
    expect(rows.nth(1)).to_contain_text("reply 452 Chaos recipient error")
    expect(rows.nth(1)).to_contain_text("30% of matches")
    panel.get_by_role("button", name="Clear all rules").click()
    expect(panel.locator(".rules-empty")).to_be_visible(timeout=WAIT)
    expect(badge).to_have_text("No fault rules")
    assert web_server.rules.rules() == []
    page.keyboard.press("Escape")
    expect(panel).to_be_hidden()


def test_badge_polls_gently(browser: Browser, web_server: SinkServer) -> None:
    """One GET /api/v1/rules per 5 s of page time (a fake clock), and never two at once."""
    context = browser.new_context()
    page = context.new_page()
    page.clock.install()
    seen: list[str] = []
    page.on("request", lambda request: seen.append(request.url) if request.url.endswith("/api/v1/rules") else None)
    page.goto(f"http://127.0.0.1:{web_server.http_port}/")
    expect(page.locator("#rules-badge button")).to_have_text("No fault rules", timeout=WAIT)
    assert len(seen) == 1
    web_server.rules.add(Rule(stage="rcpt", code=550))  # type: ignore[arg-type]
    for _ in range(6):  # half a minute, step by step: one poll each
        with page.expect_response(lambda response: response.url.endswith("/api/v1/rules"), timeout=WAIT):
            page.clock.run_for(5_000)
    expect(page.locator("#rules-badge button")).to_have_text("1 fault rule", timeout=WAIT)
    assert len(seen) == 7
    page.clock.run_for(60_000)  # twelve ticks at once: they share the request in flight
    expect(page.locator("#rules-badge button")).to_have_text("1 fault rule", timeout=WAIT)
    assert len(seen) <= 9, seen
    context.close()


def test_panel_fits_a_phone(browser: Browser, web_server: SinkServer) -> None:
    """At 375 px the open panel scrolls only vertically (no horizontal scrolling)."""
    web_server.rules.add(Rule(stage="rcpt", recipient="someone.with.a.long.address@example.test", code=550,  # type: ignore[arg-type]
                              text="Mailbox unavailable, a long reply text to wrap on a narrow screen"))
    context = browser.new_context(viewport={"width": 375, "height": 740})
    page = context.new_page()
    page.goto(f"http://127.0.0.1:{web_server.http_port}/")
    open_panel(page)
    expect(page.locator("#rules-panel tbody tr")).to_have_count(1, timeout=WAIT)
    widths = page.evaluate("() => { const d = document.getElementById('rules-panel');"
                           " return [d.getBoundingClientRect().right, d.scrollWidth, d.clientWidth,"
                           " document.documentElement.scrollWidth]; }")
    right, scroll_width, client_width, page_width = widths
    assert right <= 375 and page_width <= 375, widths
    assert scroll_width <= client_width, widths  # nothing inside overflows sideways
    context.close()
