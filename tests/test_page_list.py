"""The web page's list in a real browser (Playwright + Debian's chromium, real server, real SMTP):
read state, indicators, tags, bulk actions, paging, live updates without request storms, search
syntax and the URL, themes, keys, notifications, phone width."""

from __future__ import annotations

import json
import re
import smtplib
import urllib.request
from collections.abc import Iterator
from email.message import EmailMessage
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Route, expect

from smtp_sink.server import SinkServer

LIST_REQUEST = re.compile(r"/api/v1/(messages|search)(\?|$)")
expect.set_options(timeout=10_000)  # the machine is shared: give every expectation 10 s


def mail(subject: str, *, tags: str = "", attachment: bool = False,
         sender: str = "Ann <ann@example.test>") -> EmailMessage:
    """A small message (with an X-Tags header and a PDF attachment when asked)."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = "bob@example.test"
    message["Subject"] = subject
    if tags:
        message["X-Tags"] = tags
    message.set_content(f"Body of {subject}")
    if attachment:
        message.add_attachment(b"%PDF-1.4 tiny", maintype="application", subtype="pdf", filename="invoice.pdf")
    return message


def send(server: SinkServer, *messages: EmailMessage) -> None:
    """Deliver ``messages`` over one SMTP connection."""
    with smtplib.SMTP("127.0.0.1", server.smtp_port) as smtp:
        for message in messages:
            smtp.send_message(message)


def api(server: SinkServer, path: str, method: str = "GET", body: object = None) -> Any:
    """Call the JSON API as a same-origin client would."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{server.http_port}{path}", data=data, method=method,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request) as response:
        text = response.read()
        return json.loads(text) if response.headers.get_content_type() == "application/json" else text.decode()


def ids_by_subject(server: SinkServer) -> dict[str, str]:
    return {m["Subject"]: m["ID"] for m in api(server, "/api/v1/messages?limit=0")["messages"]}


def open_page(context: BrowserContext, server: SinkServer, path: str = "/") -> Page:
    page = context.new_page()
    page.goto(f"http://127.0.0.1:{server.http_port}{path}")
    page.wait_for_selector("body[data-live]")
    return page


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    context = browser.new_context(viewport={"width": 1200, "height": 800})
    yield context
    context.close()


@pytest.fixture
def page(context: BrowserContext, web_server: SinkServer) -> Page:
    return open_page(context, web_server)


def row(page: Page, subject: str) -> Any:
    return page.locator("#messages li", has_text=subject)


def test_read_toggle_and_unread_count_in_title(page: Page, web_server: SinkServer) -> None:
    send(web_server, mail("Alpha"), mail("Beta"))
    expect(page.locator("#messages li.unread")).to_have_count(2, timeout=10_000)
    expect(page).to_have_title("(2) smtp-sink", timeout=10_000)
    row(page, "Alpha").locator("button.read-toggle").click()
    expect(row(page, "Alpha")).to_have_class(re.compile(r"\bread\b"))
    expect(page).to_have_title("(1) smtp-sink", timeout=10_000)
    expect(page.locator("#count")).to_have_text("2 messages, 1 unread")
    read = {m["Subject"]: m["Read"] for m in api(web_server, "/api/v1/messages")["messages"]}
    assert read == {"Alpha": True, "Beta": False}
    row(page, "Alpha").locator("button.read-toggle").click()
    expect(row(page, "Alpha")).to_have_class(re.compile(r"\bunread\b"))
    expect(page).to_have_title("(2) smtp-sink", timeout=10_000)


def test_attachment_size_and_times(page: Page, web_server: SinkServer) -> None:
    send(web_server, mail("With file", attachment=True), mail("Plain"))
    expect(page.locator("#messages li")).to_have_count(2, timeout=10_000)
    with_file = row(page, "With file")
    expect(with_file.locator(".attachment")).to_have_attribute("title", "1 attachment")
    expect(row(page, "Plain").locator(".attachment")).to_have_count(0)
    size = api(web_server, "/api/v1/messages")["messages"][1]["Size"]
    expect(with_file.locator(".size")).to_have_attribute("title", f"{size} bytes")
    expect(with_file.locator(".size")).to_have_text(re.compile(r"^\d+(\.\d)? (B|kB)$"))
    time = with_file.locator("time")
    expect(time).to_have_text("just now")
    expect(time).to_have_attribute("title", re.compile(r"\d{1,2}:\d{2}"))  # the absolute time on hover
    expect(time).to_have_attribute("datetime", re.compile(r"^\d{4}-\d\d-\d\dT"))


def test_tag_chips_update_live_and_filter(page: Page, web_server: SinkServer) -> None:
    send(web_server, mail("Invoice 1", tags="billing"), mail("Hello"))
    expect(row(page, "Invoice 1").locator("button.tag")).to_have_text(["billing"], timeout=10_000)
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url) if LIST_REQUEST.search(r.url) else None)
    hello = ids_by_subject(web_server)["Hello"]
    api(web_server, "/api/v1/tags", "PUT", {"IDs": [hello], "Tags": ["greeting", "vip"]})
    expect(row(page, "Hello").locator("button.tag")).to_have_text(["greeting", "vip"], timeout=10_000)
    assert requests == []  # the update frame was applied in place
    row(page, "Invoice 1").locator("button.tag", has_text="billing").click()
    expect(page.locator("#query")).to_have_value("tag:billing")
    expect(page.locator("#messages li")).to_have_count(1)
    expect(page.locator("#messages li")).to_contain_text("Invoice 1")
    assert "q=tag%3Abilling" in page.url


def test_bulk_read_tag_delete(page: Page, web_server: SinkServer) -> None:
    send(web_server, *(mail(f"Bulk {n}") for n in range(1, 5)))
    expect(page.locator("#messages li")).to_have_count(4, timeout=10_000)
    expect(page.locator("#bulk-read")).to_be_disabled()
    row(page, "Bulk 4").locator("input.select").click()
    row(page, "Bulk 2").locator("input.select").click(modifiers=["Shift"])  # a range: 4, 3, 2
    expect(page.locator("#selection-count")).to_have_text("3 selected")
    page.locator("#bulk-read").click()
    expect(page.locator("#messages li.read")).to_have_count(3)
    expect(page).to_have_title("(1) smtp-sink", timeout=10_000)
    read = {m["Subject"]: m["Read"] for m in api(web_server, "/api/v1/messages")["messages"]}
    assert read == {"Bulk 1": False, "Bulk 2": True, "Bulk 3": True, "Bulk 4": True}
    page.locator("#bulk-tag-name").fill("done")
    page.locator("#bulk-tag").click()
    expect(page.locator("#messages li button.tag", has_text="done")).to_have_count(3)
    tagged = {m["Subject"] for m in api(web_server, "/api/v1/search?query=tag:done")["messages"]}
    assert tagged == {"Bulk 2", "Bulk 3", "Bulk 4"}
    page.locator("#bulk-unread").click()
    expect(page.locator("#messages li.unread")).to_have_count(4)
    page.locator("#bulk-delete").click()
    expect(page.locator("#messages li")).to_have_count(1)
    expect(page.locator("#messages li")).to_contain_text("Bulk 1")
    assert len(web_server.store.ids()) == 1
    page.locator("#select-all").check()
    expect(page.locator("#selection-count")).to_have_text("1 selected")


def test_paging(page: Page, web_server: SinkServer) -> None:
    send(web_server, *(mail(f"Paged {n:03d}") for n in range(120)))
    expect(page.locator("#page-info")).to_have_text("1–50 of 120", timeout=15_000)
    expect(page.locator("#messages li")).to_have_count(50)
    expect(page.locator("#messages li").first).to_contain_text("Paged 119")
    expect(page.locator("#prev")).to_be_disabled()
    page.locator("#next").click()
    expect(page.locator("#page-info")).to_have_text("51–100 of 120")
    expect(page.locator("#messages li").first).to_contain_text("Paged 069")
    page.locator("#next").click()
    expect(page.locator("#messages li")).to_have_count(20)
    expect(page.locator("#next")).to_be_disabled()
    page.locator("#prev").click()
    page.locator("#prev").click()
    expect(page.locator("#page-info")).to_have_text("1–50 of 120")


def test_live_events_applied_without_list_requests(page: Page, web_server: SinkServer) -> None:
    send(web_server, mail("Before"))
    expect(page.locator("#messages li")).to_have_count(1, timeout=10_000)
    page.wait_for_timeout(1000)  # let the connect-time reconcile finish
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url) if LIST_REQUEST.search(r.url) else None)
    send(web_server, *(mail(f"Live {n}") for n in range(30)))
    expect(page.locator("#messages li")).to_have_count(31, timeout=10_000)
    expect(page.locator("#messages li").first).to_contain_text("Live 29")
    expect(page.locator("#count")).to_have_text("31 messages, 31 unread", timeout=10_000)
    ids = ids_by_subject(web_server)
    api(web_server, "/api/v1/messages", "PUT", {"IDs": [ids["Live 3"]], "Read": True})
    expect(row(page, "Live 3")).to_have_class(re.compile(r"\bread\b"), timeout=10_000)
    api(web_server, "/api/v1/messages", "DELETE", {"IDs": [ids["Live 4"]]})
    expect(row(page, "Live 4")).to_have_count(0, timeout=10_000)
    expect(page.locator("#count")).to_have_text("30 messages, 29 unread", timeout=10_000)
    assert requests == []  # every event applied in place


def test_live_burst_during_search_is_one_request(page: Page, web_server: SinkServer) -> None:
    page.locator("#query").fill("subject:match")
    expect(page.locator("#empty")).to_have_text("No message matches this search.", timeout=10_000)
    page.wait_for_timeout(1000)
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url) if LIST_REQUEST.search(r.url) else None)
    send(web_server, *(mail(f"match {n}" if n % 2 else f"other {n}") for n in range(40)))
    expect(page.locator("#messages li")).to_have_count(20, timeout=10_000)
    assert 1 <= len(requests) <= 3, requests  # coalesced: not one request per arrival
    assert all("/api/v1/search" in url for url in requests)


def test_events_during_a_list_request_are_replayed_on_its_answer(page: Page, web_server: SinkServer) -> None:
    """A list answer computed before some events must not undo them (nor show an arrival twice)."""
    send(web_server, mail("First"))
    expect(page.locator("#messages li")).to_have_count(1)
    first = ids_by_subject(web_server)["First"]

    def hold(route: Route) -> None:
        stale = route.fetch()  # the answer as the server has it now
        send(web_server, *(mail(f"During {n}") for n in range(5)))
        api(web_server, "/api/v1/messages", "PUT", {"IDs": [first], "Read": True})
        expect(page.locator("#messages li")).to_have_count(6)  # the page applied these events meanwhile
        expect(row(page, "First")).to_have_class(re.compile(r"\bread\b"))
        route.fulfill(response=stale)
        answered.append(True)

    answered: list[bool] = []
    page.route(LIST_REQUEST, hold, times=1)
    page.locator("#home").click()  # asks for the list again
    while not answered:
        page.wait_for_timeout(100)
    page.wait_for_timeout(1000)  # the stale answer has been shown
    expect(page.locator("#messages li")).to_have_count(6)
    expect(row(page, "First")).to_have_class(re.compile(r"\bread\b"))
    expect(page.locator("#messages li").first).to_contain_text("During 4")


def test_truncate_and_prune_reconcile(page: Page, web_server: SinkServer) -> None:
    send(web_server, *(mail(f"Many {n}") for n in range(5)))
    expect(page.locator("#messages li")).to_have_count(5, timeout=10_000)
    api(web_server, "/api/v1/messages", "DELETE", {"IDs": []})  # truncate
    expect(page.locator("#messages li")).to_have_count(0, timeout=10_000)
    expect(page.locator("#empty")).to_be_visible()
    send(web_server, mail("Tagged", tags="old"))
    expect(row(page, "Tagged").locator("button.tag")).to_have_text(["old"], timeout=10_000)
    api(web_server, "/api/v1/tags/old", "DELETE")  # a tag removed everywhere: a prune frame
    expect(row(page, "Tagged").locator("button.tag")).to_have_count(0, timeout=10_000)


def test_search_help_url_and_back_button(page: Page, web_server: SinkServer) -> None:
    send(web_server, mail("Invoice 42", attachment=True), mail("Newsletter"), mail("Receipt", sender="shop@store.test"))
    expect(page.locator("#messages li")).to_have_count(3, timeout=10_000)
    page.locator("#search-help-button").click()
    help_panel = page.locator("#search-help")
    expect(help_panel).to_be_visible()
    for name in ("from:", "to:", "cc:", "bcc:", "reply-to:", "addressed:", "subject:", "message-id:", "tag:",
                 "is:read", "is:unread", "is:tagged", "has:attachment", "has:inline", "before:", "after:", "larger:",
                 "smaller:", "-word", '"exact phrase"'):
        expect(help_panel).to_contain_text(name)
    help_panel.get_by_role("button", name="Add has:attachment to the search").click()
    expect(help_panel).to_be_hidden()
    expect(page.locator("#query")).to_have_value("has:attachment")
    expect(page.locator("#messages li")).to_have_count(1)
    expect(page).to_have_url(re.compile(r"\?q=has%3Aattachment$"))
    page.locator("#query").fill("from:shop@store.test")
    expect(page.locator("#messages li")).to_have_count(1)
    expect(page.locator("#messages li")).to_contain_text("Receipt")
    page.go_back()
    expect(page.locator("#query")).to_have_value("has:attachment")
    expect(page.locator("#messages li")).to_contain_text("Invoice 42")
    # a shared link opens with its search
    shared = page.context.new_page()
    shared.goto(f"http://127.0.0.1:{web_server.http_port}/?q=-subject%3Ainvoice")
    expect(shared.locator("#query")).to_have_value("-subject:invoice")
    expect(shared.locator("#messages li")).to_have_count(2, timeout=10_000)
    shared.close()


def test_view_url_opens_message_and_back_closes(context: BrowserContext, web_server: SinkServer) -> None:
    send(web_server, mail("Deep link"), mail("Other"))
    ids = ids_by_subject(web_server)
    page = open_page(context, web_server, f"/view/{ids['Deep link']}")
    expect(page.locator("#subject")).to_have_text("Deep link", timeout=10_000)
    page.locator("#query").fill("other")
    expect(page.locator("#messages li")).to_have_count(1)
    row(page, "Other").click()
    expect(page.locator("#subject")).to_have_text("Other")
    expect(page).to_have_url(re.compile(rf"/view/{ids['Other']}\?q=other$"))
    page.go_back()
    expect(page).to_have_url(re.compile(rf"/view/{ids['Deep link']}\?q=other$"))
    expect(page.locator("#subject")).to_have_text("Deep link")
    page.locator("body").click(position={"x": 1100, "y": 780})
    page.keyboard.press("Escape")  # close: back to the list's URL
    expect(page).to_have_url(re.compile(r"/\?q=other$"))
    expect(page.locator("#view")).to_be_hidden()
    page.go_back()
    expect(page.locator("#view")).to_be_visible()
    expect(page.locator("#subject")).to_have_text("Deep link")


def colours(page: Page) -> tuple[str, str]:
    """The body's computed background and text colours."""
    script = "() => { const s = getComputedStyle(document.body); return [s.backgroundColor, s.color]; }"
    background, colour = page.evaluate(script)
    return str(background), str(colour)


def test_themes_follow_system_switch_and_are_remembered(browser: Browser, web_server: SinkServer) -> None:
    context = browser.new_context(color_scheme="dark")
    try:
        page = open_page(context, web_server)
        expect(page.locator("html")).to_have_attribute("data-theme", "dark")
        dark = colours(page)
        page.locator("#theme-toggle").click()
        expect(page.locator("html")).to_have_attribute("data-theme", "light")
        light = colours(page)
        assert dark != light and dark[0] != light[0]
        assert light[0] == "rgb(246, 247, 249)"
        page.reload()
        page.wait_for_selector("body[data-live]")
        expect(page.locator("html")).to_have_attribute("data-theme", "light")  # remembered, though the system is dark
        assert colours(page) == light
    finally:
        context.close()
    light_system = browser.new_context(color_scheme="light")
    try:
        page = open_page(light_system, web_server)
        expect(page.locator("html")).to_have_attribute("data-theme", "light")
        page.locator("#theme-toggle").click()
        expect(page.locator("html")).to_have_attribute("data-theme", "dark")
        assert colours(page)[0] == dark[0]
    finally:
        light_system.close()


def test_keyboard(page: Page, web_server: SinkServer) -> None:
    send(web_server, mail("Key one"), mail("Key two"), mail("Key three"))
    expect(page.locator("#messages li")).to_have_count(3, timeout=10_000)
    page.locator("body").click(position={"x": 900, "y": 700})
    page.keyboard.press("j")
    page.keyboard.press("j")
    expect(page.locator("#messages li.cursor")).to_contain_text("Key two")
    page.keyboard.press("k")
    page.keyboard.press("ArrowDown")
    page.keyboard.press("Enter")
    expect(page.locator("#subject")).to_have_text("Key two")
    page.keyboard.press("Delete")
    expect(page.locator("#messages li")).to_have_count(2)
    assert "Key two" not in ids_by_subject(web_server)
    page.keyboard.press("/")
    expect(page.locator("#query")).to_be_focused()
    page.keyboard.press("Escape")
    page.keyboard.press("?")
    dialog = page.locator("#keys-dialog")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("open the message")
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()


NOTIFICATION_SPY = """
window.__notifications = [];
const Real = window.Notification;
window.Notification = class extends Real {
  constructor(title, options) { super(title, options); window.__notifications.push(title); }
};
"""


def test_notification_on_new_mail(browser: Browser, web_server: SinkServer) -> None:
    context = browser.new_context(permissions=["notifications"])
    context.add_init_script(NOTIFICATION_SPY)
    try:
        page = open_page(context, web_server)
        assert page.evaluate("Notification.permission") == "granted"
        expect(page.locator("#notify")).to_be_hidden()
        send(web_server, mail("Ping"))
        expect(row(page, "Ping")).to_be_visible(timeout=10_000)
        page.wait_for_function("() => window.__notifications.length > 0", timeout=10_000)
        assert page.evaluate("window.__notifications") == ["Ping"]
        send(web_server, mail("Burst 1"), mail("Burst 2"), mail("Burst 3"))
        page.wait_for_function("() => window.__notifications.length > 1", timeout=10_000)
        page.wait_for_timeout(500)
        assert len(page.evaluate("window.__notifications")) <= 3  # one per burst, not one per message
    finally:
        context.close()


def test_no_horizontal_scrolling_on_a_phone(browser: Browser, web_server: SinkServer) -> None:
    long = "A very long subject line without many breaks " * 4
    send(web_server, mail(long, tags="one,two,three,four", attachment=True, sender=f"{'x' * 60}@example.test"))
    context = browser.new_context(viewport={"width": 375, "height": 740})
    try:
        page = open_page(context, web_server)
        expect(page.locator("#messages li")).to_have_count(1, timeout=10_000)
        assert page.evaluate("document.scrollingElement.scrollWidth") <= 375
        page.locator("#messages li .subject").click()
        expect(page.locator("#view")).to_be_visible()
        expect(page.locator("#subject")).to_contain_text("A very long subject")
        assert page.evaluate("document.scrollingElement.scrollWidth") <= 375
    finally:
        context.close()
