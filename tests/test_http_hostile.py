"""The HTTP side against hostile messages, hostile requests and hostile pages (issue 13).

Every test runs the real server over real sockets; hostile messages are written straight into
the store folder as ``<id>.eml`` files, as a process dropping mail there would.
"""

from __future__ import annotations

import http.client
import http.server
import json
import logging
import smtplib
import socket
import threading
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from support.browser import chromium
from support.config import make_config
from support.http import request, send_json
from support.servers import Servers
from support.wire import connect

from bench.http_fairness import big_attachment
from smtp_sink.errors import NotFound
from smtp_sink.ids import new_id
from smtp_sink.message import part, summarize
from smtp_sink.server import SinkServer
from smtp_sink.sink import Sink
from smtp_sink.web.app import create_app

SIMPLE = b"From: ann@example.test\r\nTo: bob@example.test\r\nSubject: small\r\n\r\nsmall body\r\n"
FRAME_HEADERS = ("X-Content-Type-Options", "Referrer-Policy", "X-Frame-Options", "Content-Security-Policy")


def drop(server: SinkServer, raw: bytes) -> str:
    """Put a message into the store folder as a file (as another process would); return its id."""
    message_id = new_id()
    path = Path(server.store.path)
    path.mkdir(parents=True, exist_ok=True)
    (path / f"{message_id}.eml").write_bytes(raw)
    return message_id


def many_parts(count: int) -> bytes:
    """A multipart message of ``count`` tiny text parts (the issue's ``part/1`` stall)."""
    head = b"From: a@example.test\r\nSubject: many parts\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
    return head + b"--b\r\nContent-Type: text/plain\r\n\r\nx\r\n" * count + b"--b--\r\n"


def counts(server: SinkServer) -> tuple[int, int]:
    status, _, body = request(server, "/api/v1/messages")
    assert status == 200, body
    listing = json.loads(body)
    return listing["total"], listing["unread"]


def assert_guarded(headers: dict[str, str], *, framed_by_page: bool = False) -> None:
    """The security headers: no sniffing, no referrer, and no framing (the view: by the page only)."""
    for name in FRAME_HEADERS:
        assert name in headers, (name, headers)
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "no-referrer"
    if framed_by_page:
        assert headers["X-Frame-Options"] == "SAMEORIGIN"
        assert "frame-ancestors 'self'" in headers["Content-Security-Policy"]
    else:
        assert headers["X-Frame-Options"] == "DENY"
        assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]


# -- one slow request holds up nobody ---------------------------------------------------------


def slow_download(seconds: float = 2.0) -> bytes:
    """A message whose attachment takes about ``seconds`` to extract on this machine (measured on
    :func:`smtp_sink.message.part` with a small one; at most 160 MB): bounded parsing still has
    to read every byte of a part it hands out."""
    probe = big_attachment(4_000_000)
    start = time.perf_counter()
    part(probe, "2")
    scale = min(max(seconds / (time.perf_counter() - start), 1.0), 40.0)
    return big_attachment(int(4_000_000 * scale))


DROPPED = b"From: a@example.test\r\nTo: b@example.test\r\nSubject: dropped\r\n\r\n" + b"text " * 400 + b"\r\n"


def drop_many(server: SinkServer, seconds: float = 2.0) -> None:
    """Enough messages dropped into the store at once that the next listing, which indexes them
    all, takes about ``seconds`` on this machine (measured on :func:`smtp_sink.message.summarize`;
    between 2,000 and 40,000)."""
    start = time.perf_counter()
    for _ in range(200):
        summarize(new_id(), DROPPED)
    per_message = (time.perf_counter() - start) / 200
    count = int(min(max(seconds / max(per_message, 1e-6) / 2, 2000), 40000))  # indexing also reads and inserts
    path = Path(server.store.path)
    for _ in range(count):
        (path / f"{new_id()}.eml").write_bytes(DROPPED)


@pytest.mark.parametrize("slow", ["download", "listing"])
def test_a_slow_request_holds_up_neither_smtp_nor_another_request(web_server: SinkServer, slow: str) -> None:
    """While one request is slow (the download of a big attachment, or a listing that first indexes
    thousands of messages dropped into the store), another API request (it needs a reader thread too, but
    no index) and an SMTP NOOP are answered promptly, long before it."""
    small_id = drop(web_server, SIMPLE)
    if slow == "download":
        path = f"/api/v1/message/{drop(web_server, slow_download())}/part/2"
    else:
        assert counts(web_server) == (1, 1)  # indexed now: the listing below has only the new ones to do
        drop_many(web_server)
        path = "/api/v1/messages"
    done: dict[str, float] = {}
    with connect(web_server.smtp_port) as wire:
        assert wire.cmd("EHLO client.test")[0] == 250

        def slow_request() -> None:
            status, _, body = request(web_server, path, timeout=120)
            done["slow"] = time.monotonic()
            assert status == 200, body[:200]

        thread = threading.Thread(target=slow_request)
        started = time.monotonic()
        thread.start()
        time.sleep(0.3)  # the slow request is in and being served
        asked = time.monotonic()
        status, _, body = request(web_server, f"/api/v1/message/{small_id}/headers")
        done["api"] = time.monotonic()
        assert status == 200 and json.loads(body)["Subject"] == ["small"]
        noop = time.monotonic()
        assert wire.cmd("NOOP")[0] == 250
        done["smtp"] = time.monotonic()
        thread.join(120)
    assert not thread.is_alive() and "slow" in done
    took = done["slow"] - started
    assert took > 0.8, f"precondition: the slow request took only {took:.2f} s; make it slower"
    assert done["api"] < done["slow"] and done["smtp"] < done["slow"], done
    assert done["api"] - asked < took / 4, f"API request waited {done['api'] - asked:.2f} s (slow one {took:.2f} s)"
    assert done["smtp"] - noop < took / 4, f"NOOP waited {done['smtp'] - noop:.2f} s (slow one {took:.2f} s)"


def test_the_fairness_benchmark_runs(capsys: pytest.CaptureFixture[str]) -> None:
    """``python -m bench.http_fairness`` (the figures for the closing note), in small."""
    from bench.http_fairness import main

    assert main(["--parts", "3000", "--attachment", "100000", "--rounds", "1", "--least", "0.1"]) == 0
    rows = capsys.readouterr().out.splitlines()[2:]
    assert [row.split("  ")[0] for row in rows] == ["part/1", "detail", "headers", "view (HTML)",
                                                     "big attachment part/2", "big attachment detail", "list page"]
    assert all("NOOPs" in row for row in rows)


def test_reader_threads_stop_with_the_server(start_server: Servers) -> None:
    """The web app's reader threads start with its first request and end when the server stops."""
    server = start_server(http=True)
    assert request(server, "/api/v1/info")[0] == 200
    assert any(t.name.startswith("smtp-sink-http") for t in threading.enumerate())
    start_server.stop(server)
    for _ in range(100):
        if not any(t.name.startswith("smtp-sink-http") for t in threading.enumerate()):
            break
        time.sleep(0.05)
    assert not any(t.name.startswith("smtp-sink-http") for t in threading.enumerate())


# -- security headers on every response -------------------------------------------------------


def test_every_response_forbids_framing_and_sniffing(web_server: SinkServer) -> None:
    """Pages, static files, JSON, errors from aiohttp itself (unknown route, wrong method, too
    large), refusals, downloads and the event stream: all carry the security headers."""
    message_id = drop(web_server, SIMPLE)
    port = web_server.http_port
    cases: list[tuple[str, str, bytes | None, dict[str, str], int]] = [
        ("GET", "/", None, {}, 200),
        ("GET", "/static/js/main.js", None, {}, 200),
        ("GET", "/api/v1/messages", None, {}, 200),
        ("GET", "/api/v1/info", None, {}, 200),
        ("GET", f"/api/v1/message/{message_id}/raw", None, {}, 200),
        ("GET", f"/api/v1/message/{message_id}/part/0", None, {}, 200),
        ("GET", "/no/such/route", None, {}, 404),
        ("GET", "/static/missing.js", None, {}, 404),
        ("GET", "/api/v1/message/NOTANID", None, {}, 404),
        ("POST", "/api/v1/info", b"", {}, 405),
        ("GET", "/api/v1/search?query=", None, {}, 400),
        ("PUT", "/api/v1/messages", b"x" * (1 << 21), {"Content-Type": "application/json"}, 413),
        ("DELETE", "/api/v1/messages", None, {"Sec-Fetch-Site": "cross-site"}, 403),
        ("GET", "/api/v1/messages", None, {"Host": "evil.example"}, 403),
    ]
    for method, path, body, headers, expected in cases:
        status, got, _ = request(web_server, path, method, body, headers)
        assert status == expected, (method, path, status)
        assert_guarded(got)
    html_id = drop(web_server, SIMPLE.replace(b"\r\n\r\n", b"\r\nContent-Type: text/html\r\n\r\n"))
    status, got, _ = request(web_server, f"/view/{html_id}.html")
    assert status == 200
    assert_guarded(got, framed_by_page=True)
    stream = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    stream.request("GET", "/api/events")
    response = stream.getresponse()
    assert response.status == 200 and response.getheader("Content-Type") == "text/event-stream"
    assert_guarded(dict(response.getheaders()))
    stream.close()


def test_401_carries_the_security_headers(start_server: Servers) -> None:
    server = start_server(http={"auth": "a:b"})
    status, headers, _ = request(server, "/api/v1/messages")
    assert status == 401
    assert_guarded(headers)


# -- requests from another site ---------------------------------------------------------------


@pytest.mark.parametrize("method", ["GET", "HEAD"])
@pytest.mark.parametrize("foreign", [{"Sec-Fetch-Site": "cross-site"}, {"Sec-Fetch-Site": "same-site"},
                                     {"Origin": "http://evil.test"}, {"Origin": "null"}])
def test_a_cross_site_detail_request_is_refused_and_marks_nothing_read(
        web_server: SinkServer, method: str, foreign: dict[str, str]) -> None:
    """GET of a message detail marks it read, so it changes state: refused from another site."""
    message_id = drop(web_server, SIMPLE)
    status, headers, _ = request(web_server, f"/api/v1/message/{message_id}", method, headers=foreign)
    assert status == 403
    assert_guarded(headers)
    assert counts(web_server) == (1, 1)  # still unread
    # reading the list or the raw message from another site changes nothing and stays allowed
    assert request(web_server, f"/api/v1/message/{message_id}/raw", headers=foreign)[0] == 200
    same = {"Sec-Fetch-Site": "same-origin", "Origin": f"http://127.0.0.1:{web_server.http_port}"}
    assert request(web_server, f"/api/v1/message/{message_id}", headers=same)[0] == 200
    assert counts(web_server) == (1, 0)


class _AttackerSite:
    """A web site on another origin (``http://localhost:<port>``) serving one page."""

    def __init__(self, page: str) -> None:
        body = page.encode()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://localhost:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> _AttackerSite:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def browser() -> Iterator[Any]:
    """Chromium for one test (conftest's lasts the module): Playwright's event loop must be gone
    before this module's async tests run theirs."""
    with chromium() as launched:
        yield launched


def test_a_foreign_page_can_neither_frame_the_sink_nor_mark_mail_read(web_server: SinkServer, browser: Any) -> None:
    """In a real browser, a page of another site frames the web page and a message's HTML view
    (clickjacking) and loads a message detail as an image: both frames are refused by the
    browser, and the image request reaches the server but does not mark the message read."""
    message_id = drop(web_server, SIMPLE)
    sink = f"http://127.0.0.1:{web_server.http_port}"
    detail = f"{sink}/api/v1/message/{message_id}"
    page_html = (f"<iframe src='{sink}/'></iframe><iframe src='{sink}/view/{message_id}.html'></iframe>"
                 f"<img src='{detail}'>")
    with _AttackerSite(page_html) as site:
        context = browser.new_context()
        page = context.new_page()
        requested: list[str] = []
        page.on("request", lambda sent: requested.append(sent.url))
        page.goto(site.url)
        page.wait_for_load_state("networkidle")
        frames = [frame.url for frame in page.frames if frame != page.main_frame]
        context.close()
    assert len(frames) == 2 and all(url.startswith("chrome-error://") for url in frames), frames
    assert detail in requested  # the browser did send it
    assert counts(web_server) == (1, 1)  # and it did not mark the message read


# -- strict JSON bodies -----------------------------------------------------------------------


@pytest.mark.parametrize("body", [
    {"IDs": ""}, {"IDs": 0}, {"IDs": False}, {"IDs": {}}, {"IDs": None}, {"IDs": "01ARZ3NDEKTSV4RRFFQ69G5FAV"},
    {"IDs": [1]}, {"IDs": [None]}, {"IDs": [["x"]]}, {"ids": 0},
])
def test_delete_with_ids_of_the_wrong_type_is_400_and_deletes_nothing(web_server: SinkServer, body: Any) -> None:
    for _ in range(2):
        drop(web_server, SIMPLE)
    status, headers, answer = send_json(web_server, "/api/v1/messages", "DELETE", body)
    assert status == 400, answer
    assert json.loads(answer)["Error"].startswith("IDs: expected a list of message ids")
    assert_guarded(headers)
    assert len(web_server.store.ids()) == 2 and counts(web_server) == (2, 2)


@pytest.mark.parametrize(("raw", "error"), [
    (b'{"id": ["01ARZ3NDEKTSV4RRFFQ69G5FAV"]}', "unknown field 'id'"),  # a typo must not mean "all"
    (b'{"IDs": [], "ids": ["01ARZ3NDEKTSV4RRFFQ69G5FAV"]}', "field IDs given twice"),
    (b'{"IDs": [], "IDs": ["01ARZ3NDEKTSV4RRFFQ69G5FAV"]}', "invalid JSON: field 'IDs' given twice"),
    (b'[]', "expected a JSON object"),
    (b'null', "expected a JSON object"),
    (b'"IDs"', "expected a JSON object"),
    (b'{"IDs": [', "invalid JSON"),
    (b'\xff\xfe{\x00}\x00\xff', "invalid JSON"),
    (b'[' * 100_000, "invalid JSON"),
])
def test_delete_with_a_body_that_is_not_a_plain_ids_object_is_400(
        web_server: SinkServer, raw: bytes, error: str) -> None:
    drop(web_server, SIMPLE)
    status, _, answer = request(web_server, "/api/v1/messages", "DELETE", raw, {"Content-Type": "application/json"})
    assert status == 400, answer
    assert json.loads(answer)["Error"].startswith(error)
    assert len(web_server.store.ids()) == 1


@pytest.mark.parametrize("raw", [None, b"", b"  \r\n", b"{}", b'{"IDs": []}', b'{"ids": []}'])
def test_only_an_empty_body_or_empty_ids_deletes_everything(web_server: SinkServer, raw: bytes | None) -> None:
    for _ in range(2):
        drop(web_server, SIMPLE)
    assert counts(web_server) == (2, 2)
    assert request(web_server, "/api/v1/messages", "DELETE", raw)[0] == 200
    assert web_server.store.ids() == [] and counts(web_server) == (0, 0)


@pytest.mark.parametrize("body", [{"Read": "false"}, {"Read": 0}, {"Read": 1}, {"Read": None}, {"Read": []},
                                  {"IDs": [], "Read": "true"}, {"read": "no"}])
def test_put_with_read_that_is_not_a_boolean_is_400_and_changes_nothing(web_server: SinkServer, body: Any) -> None:
    drop(web_server, SIMPLE)
    status, _, answer = send_json(web_server, "/api/v1/messages", "PUT", body)
    assert status == 400, answer
    assert json.loads(answer)["Error"].startswith("Read: expected true or false")
    assert counts(web_server) == (1, 1)


@pytest.mark.parametrize(("body", "error"), [({"IDs": "all", "Read": True}, "IDs: expected a list"),
                                             ({"IDs": [7], "Read": True}, "IDs: expected a list"),
                                             ({"IDs": ["x"], "Search": "x", "Read": True},
                                              "You may specify either IDs or a search query, not both")])
def test_put_with_bad_ids_is_400_and_changes_nothing(web_server: SinkServer, body: Any, error: str) -> None:
    drop(web_server, SIMPLE)
    status, _, answer = send_json(web_server, "/api/v1/messages", "PUT", body)
    assert status == 400 and json.loads(answer)["Error"].startswith(error), answer
    assert counts(web_server) == (1, 1)


def test_put_with_a_boolean_read_still_works(web_server: SinkServer) -> None:
    first, second = drop(web_server, SIMPLE), drop(web_server, SIMPLE)
    assert send_json(web_server, "/api/v1/messages", "PUT", {"IDs": [first], "Read": True})[0] == 200
    assert counts(web_server) == (2, 1)
    assert send_json(web_server, "/api/v1/messages", "PUT", {"ids": [first, second], "read": False})[0] == 200
    assert counts(web_server) == (2, 2)
    assert send_json(web_server, "/api/v1/messages", "PUT", {"Read": True})[0] == 200  # no IDs: all
    assert counts(web_server) == (2, 0)
    assert send_json(web_server, "/api/v1/messages", "PUT", {})[0] == 200  # Read defaults to false, as Mailpit's
    assert counts(web_server) == (2, 2)


# -- query parameters -------------------------------------------------------------------------


@pytest.mark.parametrize(("query", "start", "listed"), [
    ("start=9223372036854775808", 0, 2),  # out of Go's int range: Atoi fails, start 0
    ("start=99999999999999999999999999999999", 0, 2),
    ("start=-1", 0, 2),
    ("start=1", 1, 1),
    ("limit=-5", 0, 2),  # a negative limit: 50
    ("limit=1", 0, 1),
    ("limit=9223372036854775808", 0, 2),
    ("start=1e3", 0, 2),
    ("start=%EF%BC%91", 0, 2),  # a fullwidth digit one, which int() would take and Atoi does not
    ("start=1_000", 0, 2),
    ("limit=%201", 0, 2),
    ("limit=abc", 0, 2),
])
@pytest.mark.parametrize("route", ["/api/v1/messages?", "/api/v1/search?query=small&"])
def test_query_numbers_are_read_as_mailpit_reads_them(
        web_server: SinkServer, route: str, query: str, start: int, listed: int) -> None:
    """Mailpit's ``getStartLimit``: a ``start`` that is not a whole number above 0 is 0, a ``limit``
    that is not one from 0 up is 50 (decision 11); never a traceback."""
    drop(web_server, b"Subject: small\r\n\r\nsmall\r\n")
    drop(web_server, b"Subject: small\r\n\r\nsmall\r\n")
    status, headers, answer = request(web_server, route + query)
    assert status == 200, answer
    body = json.loads(answer)
    assert (body["start"], len(body["messages"])) == (start, listed)
    assert_guarded(headers)


@pytest.mark.parametrize("query", ["start=9223372036854775807", "start=9223372036854775800&limit=100"])
def test_out_of_range_query_numbers_are_400_naming_the_parameter(web_server: SinkServer, query: str) -> None:
    """A search page past 2^63 - 1 (where Mailpit's own arithmetic overflows) is 400 naming it."""
    status, headers, answer = request(web_server, "/api/v1/search?query=small&" + query)
    assert status == 400, answer
    assert json.loads(answer)["Error"].startswith("start + limit is out of range")
    assert_guarded(headers)


def test_the_largest_start_and_a_large_limit_are_fine(web_server: SinkServer) -> None:
    drop(web_server, SIMPLE)
    status, _, answer = request(web_server, "/api/v1/messages?start=9223372036854775807&limit=5000")
    assert status == 200 and json.loads(answer)["messages"] == []
    status, _, answer = request(web_server, "/api/v1/messages?start=0&limit=99999")  # capped, as before
    assert status == 200 and json.loads(answer)["count"] == 1


# -- downloads of hostile parts ---------------------------------------------------------------


def with_part(content_type: bytes, disposition: bytes = b"attachment") -> bytes:
    return (b"From: a@example.test\r\nSubject: part\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
            b"--b\r\nContent-Type: text/plain\r\n\r\nbody\r\n"
            b"--b\r\nContent-Type: " + content_type + b"\r\nContent-Disposition: " + disposition +
            b"\r\n\r\nhello\r\n--b--\r\n")


@pytest.mark.parametrize("content_type", [
    b"text/\r\n plain", b"text/plain\r\n\tx", b"te\x01xt/plain", b"text/pl\x7fain", b"a/b\x00c", b"text/pl\xc3\xa9in",
    b"x/" + b"y" * 10_000, b"nonsense", b"/", b"text/html\x0b",
])
def test_a_part_with_a_hostile_content_type_downloads(web_server: SinkServer, content_type: bytes,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    """Folded or control-laden types never reach the response headers: the part downloads (as
    application/octet-stream when its type is no ``type/subtype``), no empty reply, nothing logged."""
    caplog.set_level(logging.ERROR)
    message_id = drop(web_server, with_part(content_type))
    status, headers, body = request(web_server, f"/api/v1/message/{message_id}/part/2")
    assert status == 200 and body == b"hello"
    assert headers["Content-Type"] in ("application/octet-stream", "text/plain", "text/html")
    assert headers["Content-Disposition"].startswith("attachment")
    assert "default-src 'none'" in headers["Content-Security-Policy"]
    assert_guarded(headers)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text


def test_a_part_keeps_a_clean_content_type(web_server: SinkServer) -> None:
    message_id = drop(web_server, with_part(b"Image/PNG; name=x.png"))
    assert request(web_server, f"/api/v1/message/{message_id}/part/2")[1]["Content-Type"] == "image/png"


@pytest.mark.parametrize(("disposition", "fallback", "name"), [
    (b"attachment; filename*=utf-8''%C3%A9t%C3%A9.txt", "_t_.txt", "été.txt"),  # RFC 2231
    (b'attachment; filename="=?utf-8?q?=E6=97=A5=E6=9C=AC.pdf?="', "__.pdf", "日本.pdf"),  # RFC 2047
    (b"attachment; filename*=utf-8''a%22b%5Cc.txt", "a_b_c.txt", 'a"b_c.txt'),  # no path separator
    (b"attachment; filename*=utf-8''..%2F..%2Fetc%2Fpasswd", ".._.._etc_passwd", None),
    (b"attachment; filename*=utf-8''evil%E2%80%AEtxt.exe", "eviltxt.exe", None),  # a bidi override dropped
    (b"attachment; filename*=utf-8''a%01b%7Fc%00d.txt", "abcd.txt", None),
])
def test_attachment_names_are_sent_per_rfc_6266(web_server: SinkServer, disposition: bytes, fallback: str,
                                               name: str | None) -> None:
    message_id = drop(web_server, with_part(b"application/pdf", disposition))
    status, headers, body = request(web_server, f"/api/v1/message/{message_id}/part/2")
    assert status == 200 and body == b"hello"
    value = headers["Content-Disposition"]
    assert value.isascii() and value.isprintable(), value
    assert value.startswith(f'attachment; filename="{fallback}"'), value
    if name is None:
        assert "filename*" not in value
    else:
        encoded = value.split("filename*=UTF-8''", 1)[1]
        assert urllib.parse.unquote(encoded, errors="strict") == name


@pytest.mark.parametrize("disposition", ['attachment; filename="été.txt"'.encode(),
                                         b"attachment; filename*=utf-8''a%0D%0ASet-Cookie: x.txt",
                                         b'attachment; filename="a\r\n\tSet-Cookie: x.txt"'])
def test_a_raw_utf8_or_folded_attachment_name_gives_a_well_formed_header(web_server: SinkServer,
                                                                       disposition: bytes) -> None:
    message_id = drop(web_server, with_part(b"application/pdf", disposition))
    status, headers, _ = request(web_server, f"/api/v1/message/{message_id}/part/2")
    value = headers["Content-Disposition"]
    assert status == 200 and value.isascii() and value.isprintable(), value
    assert value.startswith('attachment; filename="') and ".txt" in value and "Set-Cookie" not in headers


def test_a_long_attachment_name_is_shortened(web_server: SinkServer) -> None:
    message_id = drop(web_server, with_part(b"application/pdf", b'attachment; filename="' + b"n" * 5000 + b'"'))
    value = request(web_server, f"/api/v1/message/{message_id}/part/2")[1]["Content-Disposition"]
    assert value == 'attachment; filename="' + "n" * 200 + '"'


# -- no handler ends in an empty reply --------------------------------------------------------


def test_a_message_file_that_cannot_be_read_gives_a_json_error(web_server: SinkServer) -> None:
    """A ``<id>.eml`` that is a folder (a broken store): every message route answers a JSON error
    with the security headers, never an empty reply; other messages still work."""
    broken = new_id()
    (Path(web_server.store.path) / f"{broken}.eml").mkdir(parents=True)
    good = drop(web_server, SIMPLE)
    for suffix in ("", "/raw", "/headers", "/part/0"):
        status, headers, body = request(web_server, f"/api/v1/message/{broken}{suffix}")
        assert status >= 400 and "Error" in json.loads(body), (suffix, status, body)
        assert_guarded(headers)
    assert request(web_server, f"/api/v1/message/{good}")[0] == 200


async def test_an_unexpected_exception_is_logged_and_answered_500(tmp_path: Path,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    """Any handler that fails (here a route added for the test) gets a logged 500 in JSON, and a
    response carrying a header aiohttp cannot send is a 500 too, not a dropped connection."""
    from aiohttp.test_utils import TestClient, TestServer

    caplog.set_level(logging.ERROR)
    config = make_config(tmp_path / "mail")
    sink = Sink(config)
    sink.store.open()
    app = create_app(sink, config.http)

    async def broken(request: web.Request) -> web.Response:
        raise RuntimeError("a bug")

    async def bad_header(request: web.Request) -> web.Response:
        return web.Response(text="x", headers={"X-Name": "a\r\nSet-Cookie: injected"})

    async def missing(request: web.Request) -> web.Response:
        raise NotFound("message", "01ARZ3NDEKTSV4RRFFQ69G5FAV")

    async def lookup_bug(request: web.Request) -> web.Response:
        return web.Response(text={}["a bug's KeyError"])

    app.router.add_get("/test/broken", broken)
    app.router.add_get("/test/bad-header", bad_header)
    app.router.add_get("/test/missing", missing)
    app.router.add_get("/test/lookup-bug", lookup_bug)
    async with TestClient(TestServer(app)) as client:
        for path, status in (("/test/broken", 500), ("/test/bad-header", 500), ("/test/missing", 404),
                             ("/test/lookup-bug", 500)):
            response = await client.get(path)
            assert response.status == status
            assert "Error" in await response.json()
            assert_guarded(dict(response.headers))
            assert "Set-Cookie" not in response.headers
        assert (await (await client.get("/test/missing")).json())["Error"] == \
            "message 01ARZ3NDEKTSV4RRFFQ69G5FAV not found"
        assert (await client.get("/api/v1/info")).status == 200
    sink.store.close()
    logged = caplog.text
    assert "RuntimeError: a bug" in logged and "X-Name" in logged and "KeyError" in logged


# -- the event stream and list encode off the loop, and still work ----------------------------


def test_the_event_stream_still_carries_events(web_server: SinkServer) -> None:
    stream = http.client.HTTPConnection("127.0.0.1", web_server.http_port, timeout=10)
    stream.request("GET", "/api/events")
    response = stream.getresponse()
    assert response.readline() == b": connected\n"
    with smtplib.SMTP("127.0.0.1", web_server.smtp_port) as smtp:
        smtp.sendmail("a@example.test", ["b@example.test"], b"Subject: live\r\n\r\nx\r\n")
    lines = []
    while not lines or not lines[-1].startswith(b"data: "):
        lines.append(response.readline())
    assert b"event: new\n" in lines and json.loads(lines[-1][6:])["Subject"] == "live"
    stream.close()


def test_a_client_that_disconnects_mid_request_does_not_break_the_server(web_server: SinkServer) -> None:
    slow_id = drop(web_server, many_parts(20_000))
    sock = socket.create_connection(("127.0.0.1", web_server.http_port))
    sock.sendall(f"GET /api/v1/message/{slow_id}/part/1 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    sock.close()
    assert request(web_server, f"/api/v1/message/{slow_id}/part/1")[0] == 200
    assert counts(web_server)[0] == 1
