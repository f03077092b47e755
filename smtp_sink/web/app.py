"""The HTTP side (aiohttp, on the SMTP server's event loop): a Mailpit-compatible JSON API
(``/api/v1/...``), run-time fault rules, a Server-Sent Events stream and the web page.

Security: message HTML is only ever served with a Content-Security-Policy that forbids
scripts and remote loads (the page shows it in a sandboxed iframe); downloads carry
``Content-Disposition: attachment`` and ``nosniff``; ids are validated (no path traversal);
state-changing calls from another site are refused (``Origin``/``Sec-Fetch-Site``); with
``[http] auth`` every request needs HTTP basic auth (required when not bound to loopback).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hmac
import json
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from aiohttp import web

from .. import __version__
from ..config import is_loopback
from ..message import Summary, headers, part
from ..rules import Rule, RuleError
from ..store import Deleted, Marked

if TYPE_CHECKING:
    from ..server import SinkServer

log = logging.getLogger("smtp_sink")
T = TypeVar("T")
STATIC = Path(__file__).parent / "static"
SERVER_KEY: web.AppKey[SinkServer] = web.AppKey("server", object)  # type: ignore[arg-type]
AUTH_KEY: web.AppKey[bytes] = web.AppKey("auth", bytes)  # b"user:password", or b"" for none
PAGE_CSP = "default-src 'self'; img-src 'self' data:; style-src 'self'; frame-src 'self'; object-src 'none'"
MESSAGE_CSP = "default-src 'none'; img-src data: cid:; style-src 'unsafe-inline'; font-src data:; sandbox"


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"Error": message}, status=status)


def _server(request: web.Request) -> SinkServer:
    return request.app[SERVER_KEY]


async def _off_loop(request: web.Request, work: Callable[[], T]) -> T:
    """Run store work (SQLite, file reads, parsing, indexing a backlog) in the store's worker
    thread, so a slow query never holds up the SMTP sessions on the event loop."""
    return await _server(request).in_store_thread(work)


@web.middleware
async def guard(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                ) -> web.StreamResponse:
    """Check basic auth; refuse cross-site state changes; add security headers; KeyError is 404."""
    expected = request.app[AUTH_KEY]
    if expected and not _authorized(request.headers.get("Authorization", ""), expected):
        return web.json_response({"Error": "authentication required"}, status=401,
                                 headers={"WWW-Authenticate": 'Basic realm="smtp-sink", charset="UTF-8"'})
    if not expected and not _local_host(request.host):
        # DNS rebinding: a site whose name now resolves to 127.0.0.1 must not read captured mail
        return _error(403, f"Host {request.host[:100]!r} is not a loopback name; use http://127.0.0.1")
    if request.method not in ("GET", "HEAD", "OPTIONS"):
        site = request.headers.get("Sec-Fetch-Site")
        origin = request.headers.get("Origin")
        if site not in (None, "same-origin", "none") or (
            origin is not None and origin != f"{request.scheme}://{request.host}"
        ):
            return _error(403, "cross-site request refused")
    try:
        response = await handler(request)
    except KeyError as exc:
        response = _error(404, f"message not found: {exc.args[0] if exc.args else ''}")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    response.headers.setdefault("Content-Security-Policy", PAGE_CSP)
    return response


def _local_host(host: str) -> bool:
    """A Host header naming this machine: localhost, *.localhost, or a loopback address."""
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    name = name.strip("[]").lower()
    return name == "localhost" or name.endswith(".localhost") or is_loopback(name)


def _authorized(header: str, expected: bytes) -> bool:
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        given = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        return False
    return hmac.compare_digest(given, expected)


async def list_messages(request: web.Request) -> web.Response:
    return await _page(request, None)


async def search(request: web.Request) -> web.Response:
    query = request.query.get("query", "").strip()
    if not query:
        return _error(400, "query is required")
    return await _page(request, query)


def _int(request: web.Request, name: str, default: int) -> int:
    try:
        return max(0, int(request.query.get(name, default)))
    except ValueError:
        raise web.HTTPBadRequest(text=json.dumps({"Error": f"{name} must be a number"}),
                                 content_type="application/json") from None


async def _page(request: web.Request, query: str | None) -> web.Response:
    start, limit = _int(request, "start", 0), _int(request, "limit", 50)
    store = _server(request).store
    page = await _off_loop(request, lambda: store.query(start=start, limit=min(limit, 1000) or 50, search=query))
    count = len(page.messages)
    return web.json_response({
        "total": page.total,
        "unread": page.unread,
        "count": count,
        "messages_count": page.matched if query else page.total,
        "start": start,
        "tags": [],
        "messages": [summary.to_json() for summary in page.messages],
    })


async def message(request: web.Request) -> web.Response:
    store = _server(request).store

    def work() -> dict[str, Any]:
        message_id = store.resolve(request.match_info["id"])
        data = store.detail(message_id)
        store.mark_read([message_id], True)
        data["Read"] = True
        return data

    return web.json_response(await _off_loop(request, work))


async def _raw(request: web.Request) -> bytes:
    store = _server(request).store
    return await _off_loop(request, lambda: store.read(store.resolve(request.match_info["id"])))


async def raw(request: web.Request) -> web.Response:
    return web.Response(body=await _raw(request), content_type="text/plain", charset="utf-8")


async def message_headers(request: web.Request) -> web.Response:
    return web.json_response(headers(await _raw(request)))


async def message_part(request: web.Request) -> web.Response:
    content_type, filename, body = part(await _raw(request), request.match_info["part"])
    safe_name = "".join(c for c in filename if c.isprintable() and c not in '"\\/') or "part"
    return web.Response(body=body, headers={
        "Content-Type": content_type if "/" in content_type else "application/octet-stream",
        "Content-Disposition": f'attachment; filename="{safe_name}"',
        "Content-Security-Policy": MESSAGE_CSP,
    })


async def message_html(request: web.Request) -> web.Response:
    """The HTML body for the page's sandboxed iframe: scripts and remote loads blocked by CSP."""
    store = _server(request).store
    html = (await _off_loop(request, lambda: store.detail(store.resolve(request.match_info["id"])))).get("HTML", "")
    return web.Response(text=html, content_type="text/html", headers={"Content-Security-Policy": MESSAGE_CSP})


async def _json_body(request: web.Request) -> dict[str, Any]:
    text = await request.text()
    if not text.strip():
        return {}
    try:
        body = json.loads(text)
    except json.JSONDecodeError as exc:
        raise web.HTTPBadRequest(text=json.dumps({"Error": f"invalid JSON: {exc}"}),
                                 content_type="application/json") from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text=json.dumps({"Error": "expected a JSON object"}), content_type="application/json")
    return body


def _ids(body: dict[str, Any]) -> list[str] | None:
    ids = body.get("IDs") or body.get("ids")
    if ids is None or ids == []:
        return None
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise web.HTTPBadRequest(text=json.dumps({"Error": "IDs must be a list of strings"}),
                                 content_type="application/json")
    return ids


async def set_read(request: web.Request) -> web.Response:
    body = await _json_body(request)
    read = body.get("Read", body.get("read", True))
    ids, store = _ids(body), _server(request).store
    await _off_loop(request, lambda: store.mark_read(ids, bool(read)))
    return web.Response(text="ok", content_type="text/plain")


async def delete(request: web.Request) -> web.Response:
    body = await _json_body(request)
    ids = _ids(body)
    store = _server(request).store
    if ids is None:
        await _off_loop(request, store.delete_all)
    else:
        await _off_loop(request, lambda: store.delete([store.resolve(i) for i in ids]))
    return web.Response(text="ok", content_type="text/plain")


async def info(request: web.Request) -> web.Response:
    server = _server(request)
    total, unread = await _off_loop(request, server.store.counts)
    return web.json_response({
        "Version": __version__,
        "LatestVersion": "",
        "Database": str(server.store.path),
        "DatabaseSize": 0,
        "Messages": total,
        "Unread": unread,
        "Tags": {},
        "RuntimeStats": {"SMTPAccepted": total, "SMTPPort": server.smtp_port},
    })


async def list_rules(request: web.Request) -> web.Response:
    return web.json_response([rule.to_json() for rule in _server(request).rules.list()])


async def add_rule(request: web.Request) -> web.Response:
    body = await _json_body(request)
    try:
        rule = Rule.from_mapping(body)
    except RuleError as exc:
        return _error(400, f"rule: {exc}")
    except TypeError as exc:
        return _error(400, f"rule: {exc}")
    _server(request).rules.add(rule)
    return web.json_response(rule.to_json(), status=201)


async def clear_rules(request: web.Request) -> web.Response:
    _server(request).rules.clear()
    return web.Response(text="ok", content_type="text/plain")


async def events(request: web.Request) -> web.StreamResponse:
    """Server-Sent Events: ``new`` (a message summary), ``delete`` (ids or all), ``read``."""
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue(maxsize=1000)
    loop = asyncio.get_running_loop()

    def push(event: object) -> None:  # called from the indexing thread or the loop
        if isinstance(event, Summary):
            item = ("new", event.to_json())
        elif isinstance(event, Deleted):
            item = ("delete", {"IDs": list(event.ids), "All": event.all})
        elif isinstance(event, Marked):
            item = ("read", {"IDs": None if event.ids is None else list(event.ids), "Read": event.read})
        else:
            return
        loop.call_soon_threadsafe(lambda: queue.full() or queue.put_nowait(item))

    # Subscribe before the client sees the stream open: it refreshes its list on open, so
    # nothing that arrives in between is missed.
    unsubscribe = _server(request).store.subscribe(push)
    try:
        await response.prepare(request)
        await response.write(b": connected\n\n")
        while True:
            try:
                kind, data = await asyncio.wait_for(queue.get(), 15)
            except asyncio.TimeoutError:
                await response.write(b": keep-alive\n\n")
                continue
            await response.write(f"event: {kind}\ndata: {json.dumps(data)}\n\n".encode())
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        unsubscribe()
    return response


async def index_page(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / "index.html")


def create_app(server: SinkServer) -> web.Application:
    """The aiohttp application for one SMTP server."""
    app = web.Application(middlewares=[guard], client_max_size=1 << 20)
    app[SERVER_KEY] = server
    app[AUTH_KEY] = server.config.http.auth.encode("utf-8")
    message_route = "/api/v1/message/{id}"
    app.add_routes([
        web.get("/api/v1/messages", list_messages),
        web.put("/api/v1/messages", set_read),
        web.delete("/api/v1/messages", delete),
        web.get("/api/v1/search", search),
        web.get(message_route, message),
        web.get(message_route + "/raw", raw),
        web.get(message_route + "/headers", message_headers),
        web.get(message_route + "/part/{part}", message_part),
        web.get("/view/{id}.html", message_html),
        web.get("/api/v1/info", info),
        web.get("/api/v1/rules", list_rules),
        web.post("/api/v1/rules", add_rule),
        web.delete("/api/v1/rules", clear_rules),
        web.get("/api/events", events),
        web.get("/", index_page),
        web.static("/static", STATIC),
    ])
    return app


class HTTPServer:
    """The HTTP listener next to an SMTP server (same event loop)."""

    def __init__(self, server: SinkServer) -> None:
        self.server = server
        # shutdown_timeout: open event streams never finish by themselves; do not wait for them.
        self.runner = web.AppRunner(create_app(server), access_log=None, handle_signals=False, shutdown_timeout=0.5)
        self.port = 0

    async def start(self) -> None:
        http = self.server.config.http
        await self.runner.setup()
        site = web.TCPSite(self.runner, http.host, http.port, reuse_address=True)
        await site.start()
        sockets = site._server.sockets if site._server else []  # type: ignore[union-attr]
        self.port = sockets[0].getsockname()[1] if sockets else http.port
        log.info("web page and API on http://%s:%d/%s", http.host, self.port, " (basic auth)" if http.auth else "")
        if not is_loopback(http.host):
            log.warning("the web page and API listen on %s, beyond this machine, over plain HTTP: "
                        "captured mail and the basic-auth password cross the network unencrypted", http.host)

    async def stop(self) -> None:
        with contextlib.suppress(Exception):
            await self.runner.cleanup()
