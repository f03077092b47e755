"""The message view of the web page (js/message*.js) in Debian's chromium under Playwright: tabs,
preview widths, headers, source download, attachments, envelope, HTML and link checks,
List-Unsubscribe, release to a second sink, tags, the session tab, read and delete events."""

from __future__ import annotations

import dataclasses
import smtplib
import ssl
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect
from support import wait_until
from support.browser import open_page as open_live
from support.checks import checks_server
from support.config import make_config
from support.http import get_json, send_json
from support.images import png
from support.wire import Wire

from smtp_sink import message
from smtp_sink.config import RelayConfig
from smtp_sink.server import SinkServer

WAIT = 10_000


def open_page(browser: Browser, server: SinkServer, width: int = 1200) -> Page:
    """A page on ``server`` with the event stream open, and the page's bus events recorded in
    ``window.busEvents`` (the same api.js module instance the page uses)."""
    page = open_live(browser, server.http_port, width)
    page.evaluate("""async () => {
        const api = await import('/static/js/api.js');
        window.busEvents = [];
        for (const name of ['updated', 'deleted', 'close'])
            api.on(name, (detail) => window.busEvents.push([name, detail]));
    }""")
    return page


@pytest.fixture
def page(browser: Browser, web_server: SinkServer) -> Iterator[Page]:
    page = open_page(browser, web_server)
    yield page
    page.context.close()


def build(subject: str, html: str | None = None, text: str = "plain text part", **headers: str) -> EmailMessage:
    mail = EmailMessage()
    mail["From"] = "Ann <ann@example.test>"
    mail["To"] = "bob@example.test"
    mail["Subject"] = subject
    for name, value in headers.items():
        mail[name.replace("_", "-")] = value
    mail.set_content(text)
    if html is not None:
        mail.add_alternative(html, subtype="html")
    return mail


TO = ("bob@example.test", "secret@example.test")


def send(server: SinkServer, mail: EmailMessage, to: tuple[str, ...] = TO) -> str:
    """Send over SMTP; the stored id."""
    before = set(server.store.ids())
    with smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=10) as smtp:
        smtp.send_message(mail, to_addrs=list(to))
    (new,) = set(server.store.ids()) - before
    return new


def open_message(page: Page, subject: str) -> None:
    page.locator("#messages li", has_text=subject).click(timeout=WAIT)
    expect(page.locator("#subject")).to_have_text(subject, timeout=WAIT)


def dd(page: Page, label: str) -> Any:
    """The envelope value shown for ``label``."""
    return page.locator(f"#envelope dt:text-is('{label}') + dd")


def test_tabs_follow_the_aria_pattern_and_the_keyboard(page: Page, web_server: SinkServer) -> None:
    send(web_server, build("Tabs", "<p id='p'>hello</p>"))
    open_message(page, "Tabs")
    expect(page.locator("#tabs")).to_have_attribute("role", "tablist")
    html_tab, text_tab = page.locator("#tab-html"), page.locator("#tab-text")
    expect(html_tab).to_have_attribute("aria-selected", "true")
    expect(page.locator("#panel-html")).to_be_visible()
    expect(page.locator("#panel-text")).to_be_hidden()
    expect(page.locator("#panel-html")).to_have_attribute("aria-labelledby", "tab-html")
    html_tab.focus()
    page.keyboard.press("ArrowRight")
    expect(text_tab).to_have_attribute("aria-selected", "true")
    expect(text_tab).to_be_focused()
    expect(html_tab).to_have_attribute("aria-selected", "false")
    expect(page.locator("#text")).to_contain_text("plain text part")
    page.keyboard.press("End")  # the last visible tab: the session tab (the message came over SMTP)
    expect(page.locator("#tab-session")).to_be_focused()
    page.keyboard.press("Home")
    expect(html_tab).to_be_focused()


def test_html_preview_widths_and_inline_cid_image(page: Page, web_server: SinkServer) -> None:
    mail = build("Widths", "<p>logo: <img id='logo' src='cid:logo@test'></p>")
    html_part = mail.get_body(("html",))
    assert html_part is not None
    html_part.add_related(png(20, 10), "image", "png", cid="<logo@test>", filename="logo.png")
    send(web_server, mail)
    open_message(page, "Widths")
    logo = page.frame_locator("#html").locator("#logo")
    expect(logo).to_be_visible(timeout=WAIT)
    assert logo.evaluate("img => img.complete && img.naturalWidth") == 20  # the cid: image is shown
    frame = page.locator("#html")

    def width() -> float:
        box = frame.bounding_box()
        assert box is not None
        return box["width"]

    for button, expected in (("phone", 375), ("tablet", 768)):
        page.locator(f"#panel-html .widths button[data-width={button}]").click()
        pressed = page.locator(f"#panel-html .widths button[data-width={button}]")
        expect(pressed).to_have_attribute("aria-pressed", "true")
        wait_until(lambda: width() == expected, what=f"{button} width")  # noqa: B023
    page.locator("#panel-html .widths button[data-width=desktop]").click()
    box = page.locator("#panel-html .frame-box").bounding_box()
    assert box is not None and box["width"] > 375
    wait_until(lambda: abs(width() - box["width"]) <= 2, what="desktop width (the whole pane)")


def test_headers_table_and_source_download(page: Page, web_server: SinkServer) -> None:
    message_id = send(web_server, build("Source", None, X_Custom="custom value"))
    open_message(page, "Source")
    expect(page.locator("#tab-html")).to_be_hidden()  # no HTML part: text first, no HTML tabs
    expect(page.locator("#tab-text")).to_have_attribute("aria-selected", "true")
    page.locator("#tab-headers").click()
    row = page.locator("#headers tbody tr", has=page.locator("th", has_text="X-Custom"))
    expect(row.locator("td")).to_have_text("custom value", timeout=WAIT)
    page.locator("#tab-raw").click()
    expect(page.locator("#raw")).to_contain_text("X-Custom: custom value", timeout=WAIT)
    link = page.locator("#download-eml")
    expect(link).to_have_attribute("href", f"/api/v1/message/{message_id}/raw?dl=1")
    expect(link).to_have_attribute("download", f"{message_id}.eml")
    answer = page.request.get(f"http://127.0.0.1:{web_server.http_port}{link.get_attribute('href')}")
    assert answer.headers["content-disposition"] == f'attachment; filename="{message_id}.eml"'
    assert b"X-Custom: custom value" in answer.body()


def test_attachments_with_type_size_thumbnail_and_download(page: Page, web_server: SinkServer) -> None:
    mail = build("Files", "<p>see attached</p>")
    image = png(64, 48)
    mail.add_attachment(image, maintype="image", subtype="png", filename="chart.png")
    mail.add_attachment(b"%PDF-1.4 fake", maintype="application", subtype="pdf", filename="report.pdf")
    message_id = send(web_server, mail)
    open_message(page, "Files")
    items = page.locator("#attachments li")
    expect(items).to_have_count(2)
    chart = items.filter(has_text="chart.png")
    expect(chart).to_contain_text("image/png")
    expect(chart).to_contain_text("B")
    thumb = chart.locator("img.thumb")
    assert thumb.get_attribute("src", timeout=WAIT).endswith("/thumb")  # type: ignore[union-attr]
    wait_until(lambda: thumb.evaluate("img => img.complete && img.naturalWidth") == 180, what="thumbnail loaded")
    report = items.filter(has_text="report.pdf")
    expect(report).to_contain_text("application/pdf")
    expect(report.locator("img")).to_have_count(0)  # thumbnails for images only
    expect(report.locator("a")).to_have_attribute("href", f"/api/v1/message/{message_id}/part/3")
    link = chart.locator("a")
    expect(link).to_have_attribute("download", "chart.png")
    answer = page.request.get(f"http://127.0.0.1:{web_server.http_port}{link.get_attribute('href')}")
    assert answer.headers["content-disposition"] == 'attachment; filename="chart.png"' and answer.body() == image


def test_envelope_shows_auth_user_tls_client_and_helo(browser: Browser, start_server: Any) -> None:
    server = start_server(http=True, auth={"mode": "accept-any"})
    assert server.tls_ca is not None
    with smtplib.SMTP("127.0.0.1", server.smtp_port, local_hostname="client.example.test", timeout=10) as smtp:
        smtp.starttls(context=ssl.create_default_context(cafile=server.tls_ca))
        smtp.login("alice", "pw")
        smtp.send_message(build("Envelope"), from_addr="bounce@example.test",
                          to_addrs=["bob@example.test", "hidden@example.test"])
    page = open_page(browser, server)
    open_message(page, "Envelope")
    expect(dd(page, "MAIL FROM")).to_have_text("bounce@example.test")
    expect(dd(page, "RCPT TO")).to_have_text("bob@example.test, hidden@example.test")
    expect(dd(page, "Bcc")).to_have_text("hidden@example.test")
    expect(dd(page, "AUTH user")).to_have_text("alice")
    expect(dd(page, "TLS")).to_have_text("yes (ESMTPSA)")
    expect(dd(page, "Client address")).to_have_text("127.0.0.1")
    expect(dd(page, "HELO")).to_have_text("client.example.test")
    page.context.close()


def test_detail_smtp_fields_come_from_the_servers_own_trace_block(web_server: SinkServer) -> None:
    message_id = send(web_server, build("Plain"), to=("bob@example.test",))
    detail = get_json(web_server, f"/api/v1/message/{message_id}")
    assert detail["SMTP"] == {"Helo": detail["SMTP"]["Helo"], "Peer": "127.0.0.1", "Protocol": "ESMTP", "TLS": False}
    assert detail["SMTP"]["Helo"]  # smtplib's EHLO name
    # a file without the server's trace block (dropped in by hand, or a forged Received line) tells nothing
    forged = (b"Received: from evil ([6.6.6.6]) by x (smtp-sink 1.0) with ESMTPS id 1;\r\n\tdate\r\n"
              b"Subject: s\r\n\r\nbody\r\n")
    assert message.detail("x", forged)["SMTP"] == {"Helo": "", "Peer": "", "Protocol": "", "TLS": False}


def test_html_check_link_check_and_list_unsubscribe(browser: Browser, start_server: Any, tmp_path: Path) -> None:
    server = checks_server(start_server, tmp_path / "mail", allow_internal=True)
    port = server.http_port
    html = (f"<div style='display:flex'><a href='http://127.0.0.1:{port}/livez'>live</a> "
            f"<a href='http://127.0.0.1:{port}/nowhere'>gone</a></div>")
    send(server, build("Checks", html, List_Unsubscribe="<https://example.test/unsub?u=1>, <mailto:off@example.test>",
                       List_Unsubscribe_Post="List-Unsubscribe=One-Click"))
    page = open_page(browser, server)
    open_message(page, "Checks")
    unsubscribe = dd(page, "List-Unsubscribe")
    expect(unsubscribe.locator("a")).to_have_count(2)
    expect(unsubscribe.locator("a").first).to_have_attribute("href", "https://example.test/unsub?u=1")
    expect(unsubscribe).to_contain_text("One-Click")
    page.locator("#tab-checks").click()
    expect(page.locator("#html-check-score")).to_contain_text("supported", timeout=WAIT)
    report = get_json(server, "/api/v1/message/latest/html-check")
    flex = page.locator("#html-check-warnings li.warning[data-slug=css-display-flex]")
    expect(flex).to_contain_text("display:flex")
    supported = round(report["Total"]["Supported"] * 10) / 10
    expect(page.locator("#html-check-score")).to_contain_text(f"{supported:g}% supported")
    expect(flex.locator(".families li[data-family=gmail]")).to_have_count(1)
    assert flex.locator(".families li").count() >= 5  # one chip per client family
    page.locator("#tab-links").click()
    expect(page.locator("#link-check-table")).to_have_count(0)  # nothing is requested until asked
    page.locator("#run-link-check").click()
    rows = page.locator("#link-check-table tbody tr")
    expect(rows).to_have_count(2, timeout=WAIT)
    expect(rows.nth(0)).to_contain_text("200")
    expect(rows.nth(1)).to_contain_text("404")
    expect(rows.nth(1)).to_have_class("bad")
    expect(page.locator("#link-check-summary")).to_have_text("2 links, 1 with errors")
    page.context.close()


def test_check_descriptions_keep_only_text_code_and_web_links(page: Page) -> None:
    """caniemail's descriptions (HTML from the server's Markdown renderer) are rebuilt from an allow-list."""
    rebuilt = page.evaluate("""async () => {
        const { safeRich } = await import('/static/js/message-checks.js');
        const node = safeRich('<img src=x onerror="window.pwned=1"><script>window.pwned=2</script>'
            + '<a href="javascript:window.pwned=3">js</a> <a href="https://caniemail.com/x" onclick="x()">ok</a>'
            + ' <code>display:flex</code> <b style="color:red">bold</b>');
        document.body.append(node);
        await new Promise((r) => setTimeout(r, 200));
        return { html: node.innerHTML, pwned: window.pwned || 0 };
    }""")
    assert rebuilt["pwned"] == 0
    html = rebuilt["html"]
    assert "<img" not in html and "<script" not in html and "javascript:" not in html and "onclick" not in html
    assert "style" not in html
    assert '<a href="https://caniemail.com/x" rel="noopener noreferrer" target="_blank">ok</a>' in html
    assert "<code>display:flex</code>" in html and "<b>bold</b>" in html


def test_release_to_a_second_sink_and_the_error_without_relay(browser: Browser, start_server: Any,
                                                              tmp_path: Path) -> None:
    upstream = start_server(tmp_path / "upstream")
    config = make_config(tmp_path / "sink", http=True)
    relay = RelayConfig(host="127.0.0.1", port=upstream.smtp_port)
    sink = start_server(config=dataclasses.replace(config, relay=relay))
    send(sink, build("Release me", "<p>go</p>"))
    page = open_page(browser, sink)
    open_message(page, "Release me")
    page.locator("#release summary").click()
    field = page.locator("#release-to")
    expect(field).to_have_value("bob@example.test, secret@example.test")  # prefilled with the envelope
    field.fill("carol@example.test, dave@example.test")
    page.locator("#release-send").click()
    expect(page.locator("#release-status")).to_have_text("Released to carol@example.test, dave@example.test.",
                                                         timeout=WAIT)
    wait_until(lambda: len(upstream.store.ids()) == 1, what="the upstream got the message")
    (released,) = upstream.store.ids()
    detail = message.detail(released, upstream.store.read(released))
    assert detail["Subject"] == "Release me"
    assert detail["RcptTo"] == ["carol@example.test", "dave@example.test"]
    page.context.close()
    # without [relay]: the server's error text is shown
    plain = start_server(tmp_path / "plain", http=True)
    send(plain, build("No relay"))
    page = open_page(browser, plain)
    open_message(page, "No relay")
    page.locator("#release summary").click()
    page.locator("#release-send").click()
    expect(page.locator("#release-status")).to_have_text(
        "Release failed: message relay is not configured ([relay] host)", timeout=WAIT)
    page.context.close()


def test_tags_editor_adds_and_removes_and_tells_the_list(page: Page, web_server: SinkServer) -> None:
    message_id = send(web_server, build("Tag me", "<p>t</p>", X_Tags="first"))
    open_message(page, "Tag me")
    expect(page.locator("#tags .chip")).to_have_text(["first\u00d7"])
    page.locator("#tag-input").fill("urgent")
    page.locator("#tag-input").press("Enter")
    expect(page.locator("#tags .chip[data-tag=urgent]")).to_be_visible(timeout=WAIT)
    assert sorted(get_json(web_server, f"/api/v1/message/{message_id}")["Tags"]) == ["first", "urgent"]
    page.locator("#tags .chip[data-tag=first] button").click()
    expect(page.locator("#tags .chip")).to_have_count(1, timeout=WAIT)
    assert get_json(web_server, f"/api/v1/message/{message_id}")["Tags"] == ["urgent"]
    updates = [d for name, d in page.evaluate("window.busEvents") if name == "updated" and "Tags" in d]
    assert [sorted(u["Tags"]) for u in updates] == [["first", "urgent"], ["urgent"]]
    assert all(u["ID"] == message_id for u in updates)


def test_session_tab_shows_the_smtp_transcript_as_text(page: Page, web_server: SinkServer) -> None:
    """Issue 17: the Session tab draws GET /api/v1/session/{SessionID}; client text stays text."""
    helo = "<img/src=x/onerror=document.title='pwned'>"
    with Wire(web_server.smtp_port) as wire:
        wire.code()
        assert wire.cmd(f"HELO {helo}")[0] == 250
        wire.send(b"MAIL FROM:<ann@example.test>\r\nRCPT TO:<bob@example.test>\r\n")  # pipelined after HELO
        assert [wire.code(), wire.code(), wire.cmd("DATA")[0]] == [250, 250, 354]
        wire.send(bytes(build("Session", "<p>s</p>")) + b"\r\n.\r\n")
        assert wire.code() == 250
        assert wire.cmd("QUIT")[0] == 221
    session_id = get_json(web_server, "/api/v1/message/latest")["SessionID"]
    open_message(page, "Session")
    page.locator("#tab-session").click()
    expect(page.locator("#panel-session")).to_be_visible()
    info = page.locator("#session-info")
    expect(info).to_contain_text(session_id, timeout=WAIT)
    expect(info.locator("dt:text-is('HELO') + dd")).to_have_text(helo)  # as text, never markup
    expect(info.locator("dt:text-is('Outcome') + dd")).to_have_text("quit")
    rows = page.locator("#session-events tbody tr")
    expect(rows.first).to_contain_text("220 ")
    expect(page.locator("#session-events")).to_contain_text("MAIL FROM:<ann@example.test>")
    expect(page.locator("#session-events")).to_contain_text("bytes of message data")
    expect(page.locator("#session-findings")).to_contain_text("pipelining-not-advertised")
    assert page.locator("#session img").count() == 0 and page.title() != "pwned"


def test_session_tab_waits_for_a_session_still_open(page: Page, web_server: SinkServer) -> None:
    """A session is written once it ends: the tab says so and shows it when the client quits."""
    with Wire(web_server.smtp_port) as wire:
        wire.code()
        for line in ("EHLO open.example", "MAIL FROM:<ann@example.test>", "RCPT TO:<bob@example.test>", "DATA"):
            assert wire.cmd(line)[0] in (250, 354)
        wire.send(bytes(build("Still open", "<p>s</p>")) + b"\r\n.\r\n")
        assert wire.code() == 250
        open_message(page, "Still open")
        page.locator("#tab-session").click()
        expect(page.locator("#session")).to_contain_text("still open", timeout=WAIT)
        assert wire.cmd("QUIT")[0] == 221
    expect(page.locator("#session-info dt:text-is('Outcome') + dd")).to_have_text("quit", timeout=WAIT)
    expect(page.locator("#session-info dt:text-is('HELO') + dd")).to_have_text("open.example")


def test_session_tab_is_hidden_for_a_message_without_a_session(page: Page, web_server: SinkServer) -> None:
    status = send_json(web_server, "/api/v1/send", "POST", {"From": {"Email": "ann@example.test"},
                       "To": [{"Email": "bob@example.test"}], "Subject": "No session", "Text": "t"})[0]
    assert status == 200
    open_message(page, "No session")
    assert get_json(web_server, "/api/v1/message/latest")["SessionID"] == ""
    expect(page.locator("#tab-session")).to_be_hidden()
    expect(page.locator("#tab-links")).to_be_visible()


def test_opening_marks_read_and_deleting_emits_deleted_and_close(page: Page, web_server: SinkServer) -> None:
    message_id = send(web_server, build("Read me", "<p>r</p>"))
    assert get_json(web_server, "/api/v1/messages")["unread"] == 1
    open_message(page, "Read me")
    wait_until(lambda: ["updated", {"ID": message_id, "Read": True}] in page.evaluate("window.busEvents"),
               what="updated Read event")
    assert get_json(web_server, "/api/v1/messages")["unread"] == 0
    page.locator("#delete-one").click()
    expect(page.locator("#view")).to_be_hidden(timeout=WAIT)
    events = page.evaluate("window.busEvents")
    assert ["deleted", {"ids": [message_id]}] in events and ["close", {}] in events
    assert web_server.store.ids() == []


def test_message_view_fits_a_phone_without_horizontal_scrolling(browser: Browser, web_server: SinkServer) -> None:
    mail = build("Phone " + "long-subject-" * 8, "<p>small</p>", X_Tags="a-rather-long-tag-name")
    mail.add_attachment(png(64, 48), maintype="image", subtype="png", filename="a-very-long-file-name-" * 4 + ".png")
    send(web_server, mail)
    page = open_page(browser, web_server, width=375)
    page.locator("#messages li").click(timeout=WAIT)
    expect(page.locator("#subject")).to_contain_text("Phone", timeout=WAIT)
    page.locator("#release summary").click()
    for tab in ("html", "headers", "raw", "checks"):
        page.locator(f"#tab-{tab}").click()
        expect(page.locator(f"#panel-{tab}")).to_be_visible()
        page.wait_for_load_state()
        overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
        assert overflow <= 0, f"{tab}: {overflow} px of horizontal scrolling"
        if tab == "html":
            box = page.locator("#html").bounding_box()
            assert box is not None and box["width"] <= 375
    page.context.close()


def test_link_check_can_follow_redirects_and_view_links_open_the_message(browser: Browser, start_server: Any,
                                                                          tmp_path: Path) -> None:
    """``/view/latest`` answers 302 to ``/view/{id}``, the page, which opens that message."""
    server = checks_server(start_server, tmp_path / "mail", allow_internal=True)
    link = f"http://127.0.0.1:{server.http_port}/view/latest"
    send(server, build("Redirects", f"<a href='{link}'>newest</a>"))
    page = open_page(browser, server)
    page.goto(link)
    expect(page.locator("#subject")).to_have_text("Redirects", timeout=WAIT)  # the deep link opened it
    page.locator("#tab-links").click()
    page.locator("#run-link-check").click()
    expect(page.locator("#link-check-table tbody tr")).to_contain_text("302", timeout=WAIT)
    page.locator("#link-check-follow").check()
    page.locator("#run-link-check").click()
    expect(page.locator("#link-check-table tbody tr")).to_contain_text("200", timeout=WAIT)
    page.context.close()


def test_mark_unread_flags_it_and_closes_the_view(page: Page, web_server: SinkServer) -> None:
    message_id = send(web_server, build("Unread again", "<p>u</p>"))
    open_message(page, "Unread again")
    wait_until(lambda: get_json(web_server, "/api/v1/messages")["unread"] == 0, what="read")
    page.locator("#mark-unread").click()
    expect(page.locator("#view")).to_be_hidden(timeout=WAIT)
    assert get_json(web_server, "/api/v1/messages")["unread"] == 1
    assert ["updated", {"ID": message_id, "Read": False}] in page.evaluate("window.busEvents")


def test_colours_come_from_the_theme_properties(page: Page, web_server: SinkServer) -> None:
    """Every colour of the view is a custom property of base.css, so the light and dark themes apply."""
    send(web_server, build("Themed", "<p>t</p>", X_Tags="one"))
    open_message(page, "Themed")
    page.locator("#tab-text").click()

    def colours() -> list[str]:
        return page.evaluate("""() => [
            getComputedStyle(document.querySelector('#tab-text')).backgroundColor,
            getComputedStyle(document.querySelector('#tab-html')).color,
            getComputedStyle(document.querySelector('#text')).backgroundColor,
            getComputedStyle(document.querySelector('#tags .chip')).borderTopColor,
            getComputedStyle(document.querySelector('#envelope dt')).color]""")

    before = colours()
    page.evaluate("""() => { const s = document.documentElement.style;
        s.setProperty('--accent', 'rgb(1, 2, 3)'); s.setProperty('--fg', 'rgb(4, 5, 6)');
        s.setProperty('--surface', 'rgb(7, 8, 9)'); s.setProperty('--border', 'rgb(10, 11, 12)');
        s.setProperty('--muted', 'rgb(13, 14, 15)'); }""")
    assert colours() == ["rgb(1, 2, 3)", "rgb(4, 5, 6)", "rgb(7, 8, 9)", "rgb(10, 11, 12)", "rgb(13, 14, 15)"] != before


def test_a_slow_answer_for_an_earlier_click_never_replaces_the_later_message(page: Page,
                                                                            web_server: SinkServer) -> None:
    slow_id = send(web_server, build("Slow one", "<p>1</p>"))
    send(web_server, build("Quick one", "<p>2</p>"))
    held: list[Any] = []
    slow_url = f"**/api/v1/message/{slow_id}"
    page.route(slow_url, lambda route: held.append(route))  # the first detail answer is held back
    page.locator("#messages li", has_text="Slow one").click(timeout=WAIT)
    wait_until(lambda: page.evaluate("1") == 1 and len(held) == 1, what="the slow request")
    open_message(page, "Quick one")
    with page.expect_request_finished(lambda request: request.url.endswith(f"/api/v1/message/{slow_id}")):
        held[0].continue_()  # now the earlier click's answer arrives
    # two frames later its JSON has been read and handled (dropped)
    page.evaluate("() => new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)))")
    expect(page.locator("#subject")).to_have_text("Quick one")
    page.locator("#tab-text").click()
    expect(page.locator("#text")).to_have_text("plain text part")
