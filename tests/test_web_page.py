"""The web page in a real browser: Playwright for Python driving Debian's chromium."""

from __future__ import annotations

import smtplib
from collections.abc import Iterator
from email.message import EmailMessage

import pytest
from playwright.sync_api import Browser, Page, expect
from support.servers import Servers

from smtp_sink.server import SinkServer


@pytest.fixture
def page(browser: Browser, web_server: SinkServer) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1200, "height": 800})
    page = context.new_page()
    page.goto(f"http://127.0.0.1:{web_server.http_port}/")
    page.wait_for_selector("body[data-live]")  # the event stream is open
    yield page
    context.close()


def send(server: SinkServer, subject: str, html: str, text: str = "plain text part") -> None:
    message = EmailMessage()
    message["From"] = "Ann <ann@example.test>"
    message["To"] = "bob@example.test"
    message["Subject"] = subject
    message.set_content(text)
    message.add_alternative(html, subtype="html")
    with smtplib.SMTP("127.0.0.1", server.smtp_port) as smtp:
        smtp.send_message(message, to_addrs=["bob@example.test", "secret@example.test"])


def test_message_appears_without_reload_and_opens_with_html(page: Page, web_server: SinkServer) -> None:
    expect(page.locator("#empty")).to_be_visible()
    send(web_server, "Live arrival", "<h1 id='greeting'>Hello in <b>HTML</b></h1>")
    item = page.locator("#messages li", has_text="Live arrival")
    expect(item).to_be_visible(timeout=10_000)  # pushed by the event stream, no reload
    item.click()
    expect(page.locator("#subject")).to_have_text("Live arrival")
    expect(page.frame_locator("#html").locator("#greeting")).to_have_text("Hello in HTML")
    expect(page.locator("#envelope")).to_contain_text("secret@example.test")  # Bcc from the envelope
    page.locator("#tabs button[data-tab=text]").click()
    expect(page.locator("#text")).to_contain_text("plain text part")


def test_script_in_message_html_never_runs(page: Page, web_server: SinkServer) -> None:
    hits: list[str] = []
    failed: list[str] = []
    page.on("requestfinished", lambda request: hits.append(request.url) if "pwned" in request.url else None)
    page.on("requestfailed", lambda request: failed.append(request.failure or "") if "pwned" in request.url else None)
    port = web_server.http_port
    evil = (
        f"<p id='content'>evil mail</p>"
        f"<script>fetch('http://127.0.0.1:{port}/api/v1/messages?pwned=script');"
        f"parent.document.title='pwned';</script>"
        f"<img src='x' onerror=\"fetch('http://127.0.0.1:{port}/api/v1/messages?pwned=onerror')\">"
        f"<img src='http://127.0.0.1:{port}/api/v1/messages?pwned=remote-image'>"
    )
    send(web_server, "Evil", evil)
    page.locator("#messages li", has_text="Evil").click()
    expect(page.frame_locator("#html").locator("#content")).to_have_text("evil mail")
    page.wait_for_timeout(1000)
    assert hits == []  # no script, handler or remote image reached the server
    assert failed and all(reason == "csp" for reason in failed)  # the remote image was stopped by the CSP
    assert page.title() == "smtp-sink"


def test_delete_one_and_delete_all(page: Page, web_server: SinkServer) -> None:
    for subject in ("first", "second", "third"):
        send(web_server, subject, f"<p>{subject}</p>")
    expect(page.locator("#messages li")).to_have_count(3, timeout=10_000)
    page.locator("#messages li", has_text="second").click()
    page.locator("#delete-one").click()
    expect(page.locator("#messages li")).to_have_count(2)
    assert len(web_server.store.ids()) == 2
    page.once("dialog", lambda dialog: dialog.accept())
    page.locator("#delete-all").click()
    expect(page.locator("#messages li")).to_have_count(0)
    assert web_server.store.ids() == []


def test_search_and_narrow_screen(browser: Browser, web_server: SinkServer) -> None:
    send(web_server, "Invoice 42", "<p>pay</p>")
    send(web_server, "Newsletter", "<p>read</p>")
    context = browser.new_context(viewport={"width": 390, "height": 800})
    page = context.new_page()
    page.goto(f"http://127.0.0.1:{web_server.http_port}/")
    page.wait_for_selector("body[data-live]")
    expect(page.locator("#messages li")).to_have_count(2, timeout=10_000)
    page.locator("#query").fill("invoice")
    expect(page.locator("#messages li")).to_have_count(1)
    page.locator("#messages li").click()
    expect(page.locator("#list")).to_be_hidden()  # one column on a phone
    page.locator("#back").click()
    expect(page.locator("#list")).to_be_visible()
    context.close()


def test_page_works_behind_basic_auth(browser: Browser, start_server: Servers) -> None:
    """With [http] auth the browser logs in once; the list, the event stream and the HTML frame work."""
    server = start_server(http={"auth": "dev:pw"})
    anonymous = browser.new_context()
    assert anonymous.request.get(f"http://127.0.0.1:{server.http_port}/").status == 401
    anonymous.close()
    context = browser.new_context(http_credentials={"username": "dev", "password": "pw"})
    page = context.new_page()
    page.goto(f"http://127.0.0.1:{server.http_port}/")
    page.wait_for_selector("body[data-live]")  # the event stream opened with the credentials
    send(server, "Behind a password", "<p id='p'>protected</p>")
    item = page.locator("#messages li", has_text="Behind a password")
    expect(item).to_be_visible(timeout=10_000)
    item.click()
    expect(page.frame_locator("#html").locator("#p")).to_have_text("protected")
    context.close()
