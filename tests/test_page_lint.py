"""The client-lint badge of the open message (js/message-lint.js) in Debian's chromium under
Playwright: counts by severity, the findings list a click shows, message data shown as text only,
and the badge following the message that is open."""

from __future__ import annotations

import smtplib
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect
from support.browser import open_page

from smtp_sink.server import SinkServer

WAIT = 10_000

BAD = (b"From: App <app@example.test>\r\nTo: bob@example.test\r\nSubject: Leaky\r\n"
       b"Message-ID: <leaky.1@example.test>\r\n"
       b'Bcc: "<img src=x onerror=alert(1)><b>Audit</b>" <audit@example.test>\r\n'
       b"List-Unsubscribe: <https://example.test/u/1>\r\n\r\nHello.\r\n")
CLEAN = (b"From: App <app@example.test>\r\nTo: bob@example.test\r\nSubject: Tidy\r\n"
         b"Date: Mon, 30 Nov 2026 12:00:00 +0000\r\nMessage-ID: <tidy.1@example.test>\r\n\r\nHello.\r\n")


def open_message(page: Page, subject: str) -> None:
    page.locator("#messages li", has_text=subject).click(timeout=WAIT)
    expect(page.locator("#subject")).to_have_text(subject, timeout=WAIT)


@pytest.fixture
def page(browser: Browser, web_server: SinkServer) -> Iterator[Page]:
    with smtplib.SMTP("127.0.0.1", web_server.smtp_port, timeout=10) as smtp:
        smtp.sendmail("app@example.test", ["bob@example.test", "audit@example.test"], BAD)
        smtp.sendmail("app@example.test", ["bob@example.test"], CLEAN)
    page = open_page(browser, web_server.http_port)
    yield page
    page.context.close()


def test_the_badge_counts_and_lists_the_findings_as_text(page: Page) -> None:
    open_message(page, "Leaky")
    badge = page.locator("#lint-badge")
    expect(badge).to_have_text("2 errors \u00b7 1 warning", timeout=WAIT)
    expect(badge).to_have_class("lint-badge error")
    findings = page.locator("#lint-findings")
    expect(findings).to_be_hidden()
    badge.click()
    expect(findings).to_be_visible()
    expect(badge).to_have_attribute("aria-expanded", "true")
    items = findings.locator("li")
    expect(items).to_have_count(3)
    assert [items.nth(n).get_attribute("data-check") for n in range(3)] == [
        "missing-date", "bcc-header-sent", "list-unsubscribe-without-post"]
    bcc = findings.locator("li[data-check=bcc-header-sent]")
    expect(bcc.locator(".evidence")).to_have_text(
        'Bcc: "<img src=x onerror=alert(1)><b>Audit</b>" <audit@example.test> (sent to every recipient)')
    expect(bcc.locator(".reference")).to_have_text("(RFC 5322 section 3.6.3)")
    assert findings.locator("img, b").count() == 0  # the evidence stayed text
    badge.click()
    expect(findings).to_be_hidden()


def test_the_badge_follows_the_open_message(page: Page) -> None:
    open_message(page, "Leaky")
    expect(page.locator("#lint-badge")).to_have_text("2 errors \u00b7 1 warning", timeout=WAIT)
    page.locator("#lint-badge").click()
    open_message(page, "Tidy")
    badge = page.locator("#lint-badge")
    expect(badge).to_have_text("Lint: clean", timeout=WAIT)
    expect(badge).to_have_class("lint-badge clean")
    expect(page.locator("#lint-findings")).to_be_hidden()  # closed again for the new message
    badge.click()
    expect(page.locator("#lint-findings li")).to_have_text(["No findings: the message follows the checked rules."])
