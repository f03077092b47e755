"""The HTTP API against the real running server: Mailpit's shapes, run-time rules, events, security."""

from __future__ import annotations

import json
import smtplib
import subprocess
import threading
import time
import urllib.request
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from support import wait_until
from support.http import request
from support.processes import run_cli
from support.wire import connect

from smtp_sink.ids import encode
from smtp_sink.server import SinkServer


def api(server: SinkServer, path: str, method: str = "GET", body: Any = None,
        headers: dict[str, str] | None = None) -> tuple[int, Any, dict[str, str]]:
    """A request (``body``: bytes, or a value sent as JSON): status, the answer (parsed when JSON), headers."""
    if body is not None and not isinstance(body, bytes):
        body, headers = json.dumps(body).encode(), {"Content-Type": "application/json", **(headers or {})}
    status, got, raw = request(server, path, method, body, headers)
    text = raw.decode("utf-8", "replace")
    return status, json.loads(text) if text[:1] in "[{" else text, got


def send(server: SinkServer, subject: str = "hello", html: str | None = None,
         bcc: bool = False) -> dict[str, tuple[int, bytes]]:
    """Send a multipart message to bob and carl (and hidden); return the refused recipients."""
    message = EmailMessage()
    message["From"] = "Ann <ann@example.test>"
    message["To"] = "Bob <bob@example.test>"
    message["Cc"] = "carl@example.test"
    message["Subject"] = subject
    message.set_content("plain body")
    if html:
        message.add_alternative(html, subtype="html")
    message.add_attachment(b"PDFDATA", maintype="application", subtype="pdf", filename="r.pdf")
    rcpts = ["bob@example.test", "carl@example.test"] + (["hidden@example.test"] if bcc else [])
    with smtplib.SMTP("127.0.0.1", server.smtp_port) as smtp:
        return smtp.send_message(message, to_addrs=rcpts)


def wait_listed(server: SinkServer, count: int) -> dict[str, Any]:
    wait_until(lambda: api(server, "/api/v1/messages")[1]["total"] >= count, timeout=5, what=f"{count} listed")
    return api(server, "/api/v1/messages")[1]


def test_messages_list_has_mailpits_shape(web_server: SinkServer) -> None:
    send(web_server, bcc=True)
    body = wait_listed(web_server, 1)
    assert list(body) == ["total", "unread", "count", "messages_count", "messages_unread", "start", "tags", "messages"]
    assert (body["total"], body["unread"], body["count"], body["messages_count"], body["start"]) == (1, 1, 1, 1, 0)
    (summary,) = body["messages"]
    for key in ("ID", "MessageID", "Read", "From", "To", "Cc", "Bcc", "ReplyTo", "Subject", "Created", "Size",
                "Attachments", "Snippet", "Tags"):
        assert key in summary, key
    assert summary["From"] == {"Name": "Ann", "Address": "ann@example.test"}
    assert summary["Bcc"] == [{"Name": "", "Address": "hidden@example.test"}]
    assert summary["Attachments"] == 1 and summary["Snippet"] == "plain body"


def test_pagination_and_search(web_server: SinkServer) -> None:
    for i in range(12):
        send(web_server, subject=f"number {i}")
    wait_listed(web_server, 12)
    status, page, _ = api(web_server, "/api/v1/messages?start=10&limit=5")
    assert status == 200 and page["count"] == 2 and page["start"] == 10
    assert [m["Subject"] for m in page["messages"]] == ["number 1", "number 0"]
    status, found, _ = api(web_server, "/api/v1/search?query=subject:%22number%207%22")
    assert status == 200 and [m["Subject"] for m in found["messages"]] == ["number 7"]
    assert api(web_server, "/api/v1/search?query=")[0] == 400
    assert api(web_server, "/api/v1/messages?limit=abc")[1]["count"] == 12  # Mailpit: not a number, 50


def test_message_detail_raw_headers_part_read_delete(web_server: SinkServer) -> None:
    send(web_server, html="<p>hi <b>there</b></p>")
    wait_listed(web_server, 1)
    status, detail, _ = api(web_server, "/api/v1/message/latest")
    assert status == 200 and detail["Read"] is True
    assert detail["Text"].strip() == "plain body" and "<b>there</b>" in detail["HTML"]
    (attachment,) = detail["Attachments"]
    assert attachment["FileName"] == "r.pdf" and attachment["ContentType"] == "application/pdf"
    status, raw, _ = api(web_server, f"/api/v1/message/{detail['ID']}/raw")
    assert status == 200 and raw.startswith("Return-Path: <ann@example.test>")
    status, headers, _ = api(web_server, f"/api/v1/message/{detail['ID']}/headers")
    assert headers["Subject"] == ["hello"]
    status, data, got = api(web_server, f"/api/v1/message/{detail['ID']}/part/{attachment['PartID']}")
    assert data == "PDFDATA"
    assert got["Content-Disposition"] == 'attachment; filename="r.pdf"'
    assert got["X-Content-Type-Options"] == "nosniff"
    assert api(web_server, "/api/v1/messages", "PUT", {"IDs": [detail["ID"]], "Read": False})[0] == 200
    assert api(web_server, "/api/v1/messages")[1]["unread"] == 1
    assert api(web_server, "/api/v1/messages", "DELETE", {"IDs": [detail["ID"]]})[0] == 200
    assert api(web_server, "/api/v1/messages")[1]["total"] == 0
    assert api(web_server, f"/api/v1/message/{detail['ID']}")[0] == 404


def test_delete_with_empty_body_deletes_all(web_server: SinkServer) -> None:
    for _ in range(3):
        send(web_server)
    wait_listed(web_server, 3)
    assert api(web_server, "/api/v1/messages", "DELETE")[0] == 200
    assert api(web_server, "/api/v1/messages")[1]["total"] == 0
    assert web_server.store.ids() == []


@pytest.mark.parametrize("path", ["/api/v1/message/..%2F..%2Fetc%2Fpasswd", "/api/v1/message/../../etc/passwd",
                                  "/api/v1/message/NOTANID/raw", "/api/v1/message/latest"])
def test_unknown_and_malicious_ids_are_404(web_server: SinkServer, path: str) -> None:
    status, body, _ = api(web_server, path)
    assert status == 404
    assert "root:" not in json.dumps(body)


def test_html_view_is_served_with_a_csp_that_blocks_scripts(web_server: SinkServer) -> None:
    send(web_server, html='<p>x</p><script>alert(1)</script><img src="http://remote.test/x.png">')
    message_id = wait_listed(web_server, 1)["messages"][0]["ID"]
    status, html, headers = api(web_server, f"/view/{message_id}.html")
    assert status == 200 and "<script>" in html  # served as it is, made harmless by the policy
    csp = headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "sandbox" in csp and "script-src" not in csp


@pytest.mark.parametrize("headers", [{"Origin": "http://evil.test"}, {"Sec-Fetch-Site": "cross-site"}])
def test_cross_site_state_changes_are_refused(web_server: SinkServer, headers: dict[str, str]) -> None:
    send(web_server)
    wait_listed(web_server, 1)
    status, body, _ = api(web_server, "/api/v1/messages", "DELETE", headers=headers)
    assert status == 403 and body == {"Error": "cross-site request refused"}
    assert len(web_server.store.ids()) == 1
    assert api(web_server, "/api/v1/rules", "POST", {"stage": "rcpt", "code": 550}, headers)[0] == 403
    same = {"Origin": f"http://127.0.0.1:{web_server.http_port}", "Sec-Fetch-Site": "same-origin"}
    assert api(web_server, "/api/v1/messages", "DELETE", headers=same)[0] == 200


def test_rules_api(web_server: SinkServer) -> None:
    status, rule, _ = api(web_server, "/api/v1/rules", "POST",
                          {"stage": "rcpt", "code": 550, "text": ["no", "way"], "schedule": "nth", "n": 1})
    assert status == 201 and rule["code"] == 550 and rule["text"] == ["no", "way"]
    assert send(web_server) == {"bob@example.test": (550, b"no\nway")}
    assert api(web_server, "/api/v1/rules")[1][0]["stage"] == "rcpt"
    assert api(web_server, "/api/v1/rules", "POST", {"stage": "rcpt", "code": 250})[1] == {
        "Error": "rule: code: a fault rule replies with a failure (4xx or 5xx), not 250"}
    assert api(web_server, "/api/v1/rules", "DELETE")[0] == 200
    assert api(web_server, "/api/v1/rules")[1] == []


def test_event_stream_announces_new_messages(web_server: SinkServer) -> None:
    lines: list[str] = []

    def listen() -> None:
        with urllib.request.urlopen(f"http://127.0.0.1:{web_server.http_port}/api/events", timeout=10) as stream:
            for raw in stream:
                lines.append(raw.decode().rstrip("\n"))
                if lines[-1].startswith("data: ") and "streamed" in lines[-1]:
                    return

    listener = threading.Thread(target=listen)
    listener.start()
    time.sleep(0.3)
    send(web_server, subject="streamed")
    listener.join(10)
    assert "event: new" in lines
    assert json.loads(lines[-1][6:])["Subject"] == "streamed"


def test_info(web_server: SinkServer) -> None:
    send(web_server)
    wait_listed(web_server, 1)
    status, info, _ = api(web_server, "/api/v1/info")
    assert status == 200 and info["Messages"] == 1 and info["Version"]


def test_rules_cli_against_the_running_server(web_server: SinkServer) -> None:
    base = f"http://127.0.0.1:{web_server.http_port}"

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return run_cli("rules", "--api", base, *args)

    added = cli("add", "--stage", "rcpt", "--recipient", "bob@example.test", "--code", "550",
                "--text", "not the second time", "--schedule", "nth", "--n", "2")
    assert added.returncode == 0, added.stderr
    assert added.stdout.strip() == ("added: at rcpt recipient=bob@example.test: reply 550 'not the second time', nth 2")
    assert "1. at rcpt" in cli("list").stdout
    assert [send(web_server) for _ in range(3)] == [{}, {"bob@example.test": (550, b"not the second time")}, {}]
    assert json.loads(cli("list", "--json").stdout)[0]["n"] == 2
    assert cli("clear").stdout.strip() == "rules cleared"
    assert cli("list").stdout.strip() == "no rules"
    bad = cli("add", "--stage", "rcpt", "--code", "250")
    assert bad.returncode == 2 and bad.stderr.strip() == (
        "smtp-sink: rule: code: a fault rule replies with a failure (4xx or 5xx), not 250")
    unreachable = run_cli("rules", "--api", "http://127.0.0.1:1", "list")
    assert unreachable.returncode == 1 and "cannot reach the HTTP API at http://127.0.0.1:1" in unreachable.stderr


def test_a_slow_query_does_not_hold_up_smtp(web_server: SinkServer) -> None:
    """Indexing 4,000 files dropped into the store (a rescan) happens in a reader thread of the
    web app: an SMTP session on the same event loop is answered while the HTTP request is still
    being served."""
    store = Path(web_server.store.path)
    body = b"From: a@example.test\r\nTo: b@example.test\r\nSubject: dropped\r\n\r\n" + b"text " * 400 + b"\r\n"
    for number in range(4000):
        (store / f"{encode(1_700_000_000_000 + number, 10)}{'0' * 16}.eml").write_bytes(body)
    with connect(web_server.smtp_port) as wire:
        finished: dict[str, float] = {}

        def listing() -> None:
            assert api(web_server, "/api/v1/messages")[1]["total"] == 4000
            finished["http"] = time.monotonic()

        thread = threading.Thread(target=listing)
        thread.start()
        time.sleep(0.05)  # the request is in
        assert wire.cmd("NOOP")[0] == 250
        finished["smtp"] = time.monotonic()
        thread.join(60)
    assert finished["smtp"] < finished["http"], "the SMTP reply waited for the HTTP query"
