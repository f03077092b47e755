"""``GET /api/v1/message/{id}/link-check`` over real sockets, against a local aiohttp web server:
Mailpit's shape and statuses (spec 8.2), HEAD then GET (decision 8), redirects, timeouts, the cap on
links and on concurrency, and the refusal of internal addresses (request forgery) both ways:
refused by default, reached with ``[checks] allow_internal = true``; checked on the address a name
resolves to, and again after a redirect."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from support.checks import checks_server, deliver, html_message
from support.http import get_json, request

from smtp_sink.checks.internal import is_internal
from smtp_sink.checks.link_check import MAX_LINKS, LinkChecker, collect
from smtp_sink.server import SinkServer


@dataclass
class Target:
    """A local web server: what it was asked (``(method, path)``) and the most requests it had
    in flight at once."""

    base: str = ""
    asked: list[tuple[str, str]] = field(default_factory=list)
    in_flight: int = 0
    most_in_flight: int = 0


def _app(target: Target) -> web.Application:
    async def answer(request: web.Request) -> web.StreamResponse:
        target.asked.append((request.method, request.path))
        target.in_flight += 1
        target.most_in_flight = max(target.most_in_flight, target.in_flight)
        try:
            return await _route(request)
        finally:
            target.in_flight -= 1

    app = web.Application()
    app.router.add_route("*", "/{path:.*}", answer)
    return app


async def _route(request: web.Request) -> web.StreamResponse:
    path, query = request.path, request.query
    if path == "/ok":
        return web.Response()
    if path == "/moved":
        raise web.HTTPMovedPermanently("/ok")
    if path == "/away":  # a redirect to wherever ?to= says
        raise web.HTTPFound(query["to"])
    if path == "/loop":
        raise web.HTTPFound(f"/loop?n={int(query.get('n', '0')) + 1}")
    if path == "/no-head":
        if request.method == "HEAD":
            raise web.HTTPMethodNotAllowed("HEAD", ["GET"])
        return web.Response(text="got it")
    if path == "/slow":
        await asyncio.sleep(float(query.get("s", "3")))
        return web.Response()
    if path == "/pause":
        await asyncio.sleep(0.05)
        return web.Response()
    if path == "/teapot":
        return web.Response(status=599)
    raise web.HTTPNotFound()


@contextlib.contextmanager
def target_server(host: str = "127.0.0.1") -> Iterator[Target]:
    """A :class:`Target` served by aiohttp on its own loop and thread until the block ends."""
    target, loop, ready = Target(), asyncio.new_event_loop(), threading.Event()
    runner = web.AppRunner(_app(target), access_log=None)

    async def start() -> None:
        await runner.setup()
        site = web.TCPSite(runner, host, 0)
        await site.start()
        port = runner.addresses[0][1]
        target.base = f"http://{host}:{port}"
        ready.set()

    thread = threading.Thread(target=loop.run_forever, name="link-target", daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(start(), loop).result(10)
    try:
        yield target
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


@pytest.fixture
def target() -> Iterator[Target]:
    with target_server() as found:
        yield found


def link_check(server: SinkServer, message_id: str, query: str = "") -> Any:
    return get_json(server, f"/api/v1/message/{message_id}/link-check{query}")


def links_message(base: str, paths: list[str], text: str = "") -> bytes:
    anchors = "".join(f'<a href="{base}{path}">link</a> ' for path in paths)
    return html_message(f"<p>{anchors}</p>", text=text or "Plain part.")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_internal_addresses_are_refused_by_default(web_server: SinkServer, target: Target) -> None:
    """Without ``allow_internal``: a loopback literal and a name resolving to loopback are 451,
    counted as errors, and the web server is never asked."""
    port = target.base.rsplit(":", 1)[1]
    links = [f"{target.base}/ok", f"http://localhost:{port}/ok"]
    message_id = deliver(web_server, html_message("".join(f'<a href="{link}">x</a>' for link in links)))
    result = link_check(web_server, message_id, "?follow=true")
    assert result == {"Errors": 2, "Links": [
        {"URL": link, "StatusCode": 451, "Status": "Blocked private/reserved address"} for link in links]}
    assert target.asked == []


def test_with_allow_internal_each_link_gets_its_status(start_server: Any, tmp_path: Path, target: Target) -> None:
    """Mailpit's shape: each link once, in order of discovery (HTML: a, stylesheet link, img; then the
    text), HEAD only, redirects reported unless ``follow`` is ``true`` or ``1``."""
    server = checks_server(start_server, tmp_path / "mail", allow_internal=True)
    base = target.base
    html = (f'<img src="{base}/ok?img"><a href="{base}/ok">ok</a><a href="{base}/missing">gone</a>'
            f'<link rel="stylesheet" href="{base}/ok?css"><a href="{base}/moved">moved</a><a href="{base}/ok">again</a>'
            '<a href="mailto:x@example.test">mail</a><a href="#top">top</a>')
    message_id = deliver(server, html_message(html, text=f"See {base}/ok?text and <{base}/ok?angle>."))
    expected = [
        (f"{base}/ok", 200, "OK"), (f"{base}/missing", 404, "Not Found"), (f"{base}/moved", 301, "Moved Permanently"),
        (f"{base}/ok?css", 200, "OK"), (f"{base}/ok?img", 200, "OK"), (f"{base}/ok?text", 200, "OK"),
        (f"{base}/ok?angle", 200, "OK")]
    result = link_check(server, message_id)
    assert result == {"Errors": 1, "Links": [{"URL": u, "StatusCode": c, "Status": s} for u, c, s in expected]}
    assert {method for method, _ in target.asked} == {"HEAD"}
    for query in ("?follow=true", "?follow=1"):
        followed = link_check(server, message_id, query)
        assert followed["Links"][2] == {"URL": f"{base}/moved", "StatusCode": 200, "Status": "OK"}
    assert link_check(server, message_id, "?follow=yes")["Links"][2]["StatusCode"] == 301
    assert link_check(server, "latest") == result  # decision 3
    detail = get_json(server, f"/api/v1/message/{message_id}")
    assert detail["Read"] is True  # Mailpit opens the message for the check: it is read


def test_head_refused_then_get(start_server: Any, tmp_path: Path, target: Target) -> None:
    """Decision 8: a server answering 405 to HEAD is asked again with GET."""
    server = checks_server(start_server, tmp_path / "mail", allow_internal=True)
    message_id = deliver(server, links_message(target.base, ["/no-head"]))
    result = link_check(server, message_id)
    assert result["Links"] == [{"URL": f"{target.base}/no-head", "StatusCode": 200, "Status": "OK"}]
    assert target.asked == [("HEAD", "/no-head"), ("GET", "/no-head")]


def test_failures_are_status_0_with_a_reason(start_server: Any, tmp_path: Path, target: Target) -> None:
    """A timeout, a refused connection, a redirect loop and an unknown code: Mailpit's 0 (or the code)
    with a short reason; each failure counts as an error. The timeout is the configured one."""
    server = checks_server(start_server, tmp_path / "mail", allow_internal=True, link_timeout=0.5)
    closed = f"http://127.0.0.1:{free_port()}/ok"
    message_id = deliver(server, html_message(
        f'<a href="{target.base}/slow?s=5">slow</a><a href="{closed}">closed</a>'
        f'<a href="{target.base}/loop">loop</a><a href="{target.base}/teapot">odd</a>'))
    result = link_check(server, message_id, "?follow=true")
    slow, refused, loop, odd = result["Links"]
    assert slow["StatusCode"] == 0 and "timeout" in slow["Status"], slow
    assert refused == {"URL": closed, "StatusCode": 0, "Status": "connection refused"}
    assert loop == {"URL": f"{target.base}/loop", "StatusCode": 0, "Status": "too many redirects"}
    assert sum(path == "/loop" for _, path in target.asked) == 4  # the link and three redirects
    assert odd == {"URL": f"{target.base}/teapot", "StatusCode": 599, "Status": ""}
    assert result["Errors"] == 4


def test_links_and_concurrency_are_capped(start_server: Any, tmp_path: Path, target: Target) -> None:
    """At most MAX_LINKS unique links; never more than two requests at once to one host."""
    server = checks_server(start_server, tmp_path / "mail", allow_internal=True)
    paths = [f"/pause?n={n}" for n in range(MAX_LINKS + 20)]
    message_id = deliver(server, links_message(target.base, paths))
    result = link_check(server, message_id)
    assert [link["URL"] for link in result["Links"]] == [target.base + path for path in paths[:MAX_LINKS]]
    assert result["Errors"] == 0 and len(target.asked) == MAX_LINKS
    assert target.most_in_flight == 2


def test_another_sites_page_cannot_run_the_check(start_server: Any, tmp_path: Path, target: Target) -> None:
    """The check marks the message read and sends requests: refused to a page of another site, as
    the message detail is; nothing is read, nothing asked."""
    server = checks_server(start_server, tmp_path / "mail", allow_internal=True)
    message_id = deliver(server, links_message(target.base, ["/ok"]))
    for headers in ({"Sec-Fetch-Site": "cross-site"}, {"Origin": "https://evil.test"}):
        status, _, body = request(server, f"/api/v1/message/{message_id}/link-check", headers=headers)
        assert status == 403 and json.loads(body) == {"Error": "cross-site request refused"}
    assert target.asked == [] and get_json(server, "/api/v1/messages")["unread"] == 1
    assert link_check(server, message_id)["Errors"] == 0  # the same request from no other site


def test_unknown_messages_are_404(web_server: SinkServer) -> None:
    assert request(web_server, "/api/v1/message/latest/link-check")[0] == 404
    status, _, body = request(web_server, "/api/v1/message/01ARZ3NDEKTSV4RRFFQ69G5FAV/link-check")
    assert status == 404 and "not found" in json.loads(body)["Error"]
    message_id = deliver(web_server, html_message(None, text="no links here"))
    assert link_check(web_server, message_id) == {"Errors": 0, "Links": []}


async def test_a_redirect_to_an_internal_address_is_refused() -> None:
    """The check is made again on every hop, on the address the name resolves to: a permitted server
    (127.0.0.2 here) redirecting to ``localhost`` (127.0.0.1, refused) gets 451, and the refused
    server is never asked. Real sockets; only what counts as internal is narrowed for the test."""
    with target_server("127.0.0.1") as inside, target_server("127.0.0.2") as outside:
        port = inside.base.rsplit(":", 1)[1]
        redirect = f"{outside.base}/away?to=http://localhost:{port}/ok"
        checker = LinkChecker(allow_internal=False, timeout=5,
                              blocked=lambda address: address != "127.0.0.2" and is_internal(address))
        result = await checker.check([redirect, f"{outside.base}/ok"], follow=True)
        assert result["Links"] == [
            {"URL": redirect, "StatusCode": 451, "Status": "Blocked private/reserved address"},
            {"URL": f"{outside.base}/ok", "StatusCode": 200, "Status": "OK"}]
        assert inside.asked == [] and ("HEAD", "/away") in outside.asked
        unfollowed = await checker.check([redirect], follow=False)
        assert unfollowed["Links"][0]["StatusCode"] == 302
        literal = await LinkChecker(allow_internal=False, timeout=5).check([f"http://[::1]:{port}/ok"], follow=False)
        assert literal["Links"][0]["StatusCode"] == 451 and inside.asked == []


def test_links_are_collected_as_mailpit_collects_them() -> None:
    """Unanchored URL test on attribute values (the whole value kept); text URLs need a character
    before them (Mailpit's pattern); angle-bracketed ones may be folded across lines."""
    html = '<a href="see http://a.test/x">1</a><a href="/relative">2</a><a href="http://a.test/x">3</a>'
    text = "http://first.test/ is skipped; go to https://b.test/y?q=1, or <https://c.test/long\npath>."
    assert collect(html, text) == ["see http://a.test/x", "http://a.test/x", "https://b.test/y?q=1,",
                                   "https://c.test/longpath"]
