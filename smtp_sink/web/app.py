"""The HTTP side (aiohttp, on the SMTP server's event loop): a Mailpit-compatible JSON API
(``/api/v1/...``), run-time fault rules, a Server-Sent Events stream and the web page.

Nothing attacker-controlled is parsed or encoded on the event loop: file reads, message
parsing and JSON encoding and decoding run in the app's own reader threads
(:data:`READER_THREADS`), so one slow request holds up neither SMTP nor other requests.

Security: message HTML is only ever served with a Content-Security-Policy that forbids
scripts and remote loads (the page shows it in a sandboxed iframe); downloads carry
``Content-Disposition: attachment`` and ``nosniff``; ids are validated (no path traversal);
every response forbids framing (``frame-ancestors``, ``X-Frame-Options``; only the page may
frame a message's HTML view); calls that change state, and the message detail (it marks the
message read), are refused from another site (``Origin``/``Sec-Fetch-Site``); with
``[http] auth`` every request needs HTTP basic auth (required when not bound to loopback).
JSON bodies are checked strictly: a field of the wrong type is 400 naming it, never a default.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import concurrent.futures
import contextlib
import hmac
import json
import logging
import re
import unicodedata
import urllib.parse
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web

from ..config import HTTPConfig, is_loopback
from ..errors import NotFound
from ..message import Summary, headers
from ..rules import Rule, RuleError
from ..sink import Sink
from ..store import Deleted, Marked, StoreError
from .mailpit import info_json, page_json

log = logging.getLogger("smtp_sink")
T = TypeVar("T")
STATIC = Path(__file__).parent / "static"
READER_THREADS = 4  # file reads, parsing and JSON work of HTTP requests (SQLite is serialised by the index lock)
STOP_WAIT = 2.0  # seconds the app waits at shutdown for reader work in flight
MAX_QUERY_NUMBER = 2**63 - 1  # start and limit: what SQLite can hold
MAX_FILENAME = 200  # characters of a part's file name sent in Content-Disposition
SINK_KEY: web.AppKey[Sink] = web.AppKey("sink", Sink)
AUTH_KEY: web.AppKey[bytes] = web.AppKey("auth", bytes)  # b"user:password", or b"" for none
SMTP_PORT_KEY: web.AppKey[int] = web.AppKey("smtp_port", int)  # shown by /api/v1/info (0: none)
PAGE_CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self'; frame-src 'self'; object-src 'none'; "
            "frame-ancestors 'none'")
_CONTENT_CSP = "default-src 'none'; img-src data: cid:; style-src 'unsafe-inline'; font-src data:; sandbox"
MESSAGE_CSP = _CONTENT_CSP + "; frame-ancestors 'self'"  # /view/{id}.html: the page frames it
DOWNLOAD_CSP = _CONTENT_CSP + "; frame-ancestors 'none'"  # parts: downloads, never framed
SECURITY_HEADERS = {  # on every response (a handler may set its own CSP and X-Frame-Options)
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": PAGE_CSP,
    "X-Frame-Options": "DENY",
    "Cross-Origin-Resource-Policy": "same-origin",
}
MARKS_READ = "message"  # the route name of the one GET that changes state
_MEDIA_TYPE_RE = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]{0,126}/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}")
_ATTR_CHARS = "!#$&+-.^_`|~"  # RFC 5987 attr-char besides letters and digits
_FORBIDDEN_IN_NAME = ("Cc", "Cf", "Cs", "Zl", "Zp")  # control, format (bidi), surrogate, line breaks


class APIError(Exception):
    """A request the API refuses: answered ``status`` with ``{"Error": message}``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class Readers:
    """The reader threads of one web app: run blocking work off the event loop, several at a time."""

    def __init__(self, threads: int = READER_THREADS) -> None:
        # Threads start on first use: an app that is built but never serves costs nothing.
        self._pool = concurrent.futures.ThreadPoolExecutor(threads, thread_name_prefix="smtp-sink-http")
        self._running: set[concurrent.futures.Future[Any]] = set()

    async def run(self, work: Callable[[], T]) -> T:
        """``work()`` in a reader thread."""
        future = self._pool.submit(work)
        self._running.add(future)
        future.add_done_callback(self._running.discard)
        return await asyncio.wrap_future(future)

    async def close(self, wait: float = STOP_WAIT) -> None:
        """Refuse new work, drop queued work and wait up to ``wait`` seconds for work in flight."""
        self._pool.shutdown(wait=False, cancel_futures=True)
        running = list(self._running)
        if running:
            await asyncio.get_running_loop().run_in_executor(
                None, lambda: concurrent.futures.wait(running, timeout=wait))


READERS_KEY: web.AppKey[Readers] = web.AppKey("readers", Readers)


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"Error": message}, status=status, headers=headers)


def _sink(request: web.Request) -> Sink:
    return request.app[SINK_KEY]


async def _off_loop(request: web.Request, work: Callable[[], T]) -> T:
    """Run blocking work (file reads, parsing, SQLite, JSON) in a reader thread of the app."""
    return await request.app[READERS_KEY].run(work)


async def _json_off_loop(request: web.Request, work: Callable[[], Any], status: int = 200) -> web.Response:
    """A JSON response whose data is gathered and encoded in a reader thread."""
    body = await _off_loop(request, lambda: json.dumps(work()).encode())
    return web.Response(body=body, status=status, content_type="application/json", charset="utf-8")


@web.middleware
async def guard(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                ) -> web.StreamResponse:
    """Check basic auth, the Host and cross-site requests; map errors to JSON (NotFound is 404 with
    its text, anything unexpected, a KeyError included, is logged and 500): no handler ends in an
    empty reply."""
    refused = _refusal(request)
    if refused is not None:
        return refused
    try:
        response = await handler(request)
    except NotFound as exc:
        return _error(404, str(exc))
    except APIError as exc:
        return _error(exc.status, exc.message)
    except StoreError as exc:  # e.g. read flags that cannot be saved on a full disk
        return _error(507, exc.strerror or str(exc))
    except web.HTTPException as exc:  # aiohttp's own: unknown route 404, 405, 413...
        return _from_http_exception(exc)
    except Exception:
        log.exception("HTTP %s %s failed", request.method, request.path[:200])
        return _error(500, "internal error (the server logged it)")
    bad = None if response.prepared else _unsafe_header(response)
    if bad is not None:  # aiohttp would refuse to send it and close the connection without a reply
        log.error("HTTP %s %s: response header %s not sendable", request.method, request.path[:200], bad)
        return _error(500, "internal error (the server logged it)")
    return response


def _refusal(request: web.Request) -> web.Response | None:
    """401 without the password, 403 for a foreign Host (no password set) or a cross-site
    request that changes state; None when the request may go on."""
    expected = request.app[AUTH_KEY]
    if expected and not _authorized(request.headers.get("Authorization", ""), expected):
        return _error(401, "authentication required",
                      {"WWW-Authenticate": 'Basic realm="smtp-sink", charset="UTF-8"'})
    if not expected and not _local_host(request.host):
        # DNS rebinding: a site whose name now resolves to 127.0.0.1 must not read captured mail
        return _error(403, f"Host {request.host[:100]!r} is not a loopback name; use http://127.0.0.1")
    if _changes_state(request) and _cross_site(request):
        return _error(403, "cross-site request refused")
    return None


def _changes_state(request: web.Request) -> bool:
    """PUT, POST, DELETE..., and GET or HEAD of a message detail (it marks the message read)."""
    if request.method not in ("GET", "HEAD", "OPTIONS"):
        return True
    return request.match_info.route.name == MARKS_READ


def _cross_site(request: web.Request) -> bool:
    """Sent by a page of another site (or another port) or a sandboxed frame (``Origin: null``)."""
    site = request.headers.get("Sec-Fetch-Site")
    origin = request.headers.get("Origin")
    return site not in (None, "same-origin", "none") or (
        origin is not None and origin != f"{request.scheme}://{request.host}")


def _from_http_exception(exc: web.HTTPException) -> web.StreamResponse:
    """aiohttp's HTTP exceptions as JSON errors (keeping ``Allow``, ``Location``)."""
    kept = {name: exc.headers[name] for name in ("Allow", "Location") if name in exc.headers}
    if exc.status < 400:
        return web.Response(status=exc.status, headers=kept)
    return _error(exc.status, exc.text if exc.text and exc.status != 404 else exc.reason, kept)


def _unsafe_header(response: web.StreamResponse) -> str | None:
    """The name of a header aiohttp cannot send (CR, LF, NUL or other controls), or None."""
    for name, value in response.headers.items():
        if not value.isprintable() or not name.isprintable():
            return name
    return None


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """Every response (errors, static files, the event stream) gets the security headers."""
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)


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
    """``GET /api/v1/messages``: one page of summaries, newest first."""
    return await _page(request, None)


async def search(request: web.Request) -> web.Response:
    """``GET /api/v1/search?query=``: one page of the messages matching the query."""
    query = request.query.get("query", "").strip()
    if not query:
        return _error(400, "query is required")
    return await _page(request, query)


def _number(request: web.Request, name: str, default: int) -> int:
    """A query parameter that must be a whole number from 0 to :data:`MAX_QUERY_NUMBER`."""
    text = request.query.get(name)
    if text is None:
        return default
    if not (text.isascii() and text.isdigit()):
        if text[:1] == "-" and text[1:].isascii() and text[1:].isdigit():
            raise APIError(400, f"{name} must not be negative, got {text[:30]}")
        raise APIError(400, f"{name} must be a whole number, got {text[:30]!r}")
    if len(text.lstrip("0")) > len(str(MAX_QUERY_NUMBER)) or int(text) > MAX_QUERY_NUMBER:
        raise APIError(400, f"{name} is out of range (at most {MAX_QUERY_NUMBER}), got {text[:30]}")
    return int(text)


async def _page(request: web.Request, query: str | None) -> web.Response:
    start, limit = _number(request, "start", 0), _number(request, "limit", 50)
    store = _sink(request).store
    return await _json_off_loop(request, lambda: page_json(store.query(start, min(limit, 1000) or 50, query)))


async def message(request: web.Request) -> web.Response:
    """The message detail; opening it marks it read."""
    store = _sink(request).store
    return await _json_off_loop(request, lambda: store.open_message(request.match_info["id"]))


def _read(request: web.Request) -> bytes:
    """The stored bytes of the message the URL names (in a reader thread)."""
    store = _sink(request).store
    return store.read(store.resolve(request.match_info["id"]))


async def raw(request: web.Request) -> web.Response:
    """``GET /api/v1/message/{id}/raw``: the stored bytes, as plain text."""
    return web.Response(body=await _off_loop(request, lambda: _read(request)), content_type="text/plain",
                        charset="utf-8")


async def message_headers(request: web.Request) -> web.Response:
    """``GET /api/v1/message/{id}/headers``: every header, as stored."""
    return await _json_off_loop(request, lambda: headers(_read(request)))


async def message_part(request: web.Request) -> web.Response:
    """``GET /api/v1/message/{id}/part/{part}``: one part's content, as a download."""
    store, match = _sink(request).store, request.match_info
    content_type, filename, body = await _off_loop(request, lambda: store.part(match["id"], match["part"]))
    return web.Response(body=body, headers={
        "Content-Type": media_type(content_type),
        "Content-Disposition": content_disposition(filename),
        "Content-Security-Policy": DOWNLOAD_CSP,
    })


def media_type(value: str) -> str:
    """``type/subtype`` when ``value`` is one (RFC 6838 names), else ``application/octet-stream``:
    a folded or control-laden Content-Type from a message never reaches the response headers."""
    value = value.strip().lower()
    return value if len(value) <= 255 and _MEDIA_TYPE_RE.fullmatch(value) else "application/octet-stream"


def content_disposition(filename: str) -> str:
    """``attachment`` with the file name: ``filename="..."`` in ASCII, plus RFC 6266's
    ``filename*=UTF-8''...`` (RFC 5987 encoding) when the name is not plain ASCII."""
    name = _clean_filename(filename) or "part"
    fallback = "".join(c if " " <= c <= "~" and c not in '"\\' else "_" for c in name)
    if fallback == name:
        return f'attachment; filename="{name}"'
    encoded = urllib.parse.quote(name.encode("utf-8", "replace"), safe=_ATTR_CHARS)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{encoded}"


def _clean_filename(filename: str) -> str:
    """The name as text (8-bit bytes read as UTF-8), without control, format or separator
    characters, path separators or surrounding blanks, at most :data:`MAX_FILENAME` characters."""
    try:
        filename = filename.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except UnicodeEncodeError:  # a surrogate that is no escaped byte
        filename = filename.encode("utf-8", "replace").decode("utf-8")
    if not (filename.isascii() and filename.isprintable()):
        filename = "".join(c for c in filename if unicodedata.category(c) not in _FORBIDDEN_IN_NAME)
    return filename.replace("/", "_").replace("\\", "_").strip()[:MAX_FILENAME]


async def message_html(request: web.Request) -> web.Response:
    """The HTML body for the page's sandboxed iframe: scripts and remote loads blocked by CSP."""
    store = _sink(request).store

    def work() -> bytes:
        html: str = store.detail(store.resolve(request.match_info["id"])).get("HTML", "")
        return html.encode("utf-8", "replace")

    return web.Response(body=await _off_loop(request, work), content_type="text/html", charset="utf-8",
                        headers={"Content-Security-Policy": MESSAGE_CSP, "X-Frame-Options": "SAMEORIGIN"})


def _decode_json(raw: bytes) -> dict[str, Any]:
    """A JSON object from a request body; :class:`APIError` (400) for anything else."""
    try:
        body = json.loads(raw, object_pairs_hook=_no_duplicates)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise APIError(400, f"invalid JSON: {str(exc)[:200]}") from None
    if not isinstance(body, dict):
        raise APIError(400, "expected a JSON object")
    return body


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for key, value in pairs:
        if key in found:
            raise ValueError(f"field {key[:50]!r} given twice")
        found[key] = value
    return found


async def _json_body(request: web.Request, fields: tuple[str, ...] | None = None) -> dict[str, Any]:
    """The request's JSON object; empty (a missing or blank body) as ``{}``. With ``fields``,
    keys are matched without regard to case, as Go's JSON decoder (Mailpit) does, and returned
    in the spelling of ``fields``; an unknown or repeated field is 400."""
    raw = await request.read()  # at most client_max_size (aiohttp answers 413 beyond)
    if not raw.strip():
        return {}
    body = await _off_loop(request, lambda: _decode_json(raw))
    if fields is None:
        return body
    known = {name.lower(): name for name in fields}
    found: dict[str, Any] = {}
    for key, value in body.items():
        name = known.get(key.lower())
        if name is None:
            raise APIError(400, f"unknown field {key[:50]!r} (known: {', '.join(fields)})")
        if name in found:
            raise APIError(400, f"field {name} given twice")
        found[name] = value
    return found


def _show(value: Any) -> str:
    """A JSON value, short, for an error message."""
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _ids(body: dict[str, Any]) -> list[str] | None:
    """The ``IDs`` of a body: None (every message) when missing or ``[]``, else a list of strings."""
    if "IDs" not in body:
        return None
    ids = body["IDs"]
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise APIError(400, f"IDs: expected a list of message ids (strings), got {_show(ids)}; "
                            "leave it out or send [] to mean every message")
    return ids or None


async def set_read(request: web.Request) -> web.Response:
    """``PUT /api/v1/messages``: set the read flag of ``IDs`` (every message without)."""
    body = await _json_body(request, ("IDs", "Read"))
    read = body.get("Read", True)
    if not isinstance(read, bool):
        raise APIError(400, f"Read: expected true or false, got {_show(read)}")
    ids, store = _ids(body), _sink(request).store
    await _off_loop(request, lambda: store.mark_read(ids, read))
    return web.Response(text="ok", content_type="text/plain")


async def delete(request: web.Request) -> web.Response:
    """Delete the messages listed in ``IDs``; every message for no body, ``{}`` or ``{"IDs": []}``."""
    ids = _ids(await _json_body(request, ("IDs",)))
    store = _sink(request).store
    if ids is None:
        await _off_loop(request, store.delete_all)
    else:
        await _off_loop(request, lambda: store.delete([store.resolve(i) for i in ids]))
    return web.Response(text="ok", content_type="text/plain")


async def info(request: web.Request) -> web.Response:
    """``GET /api/v1/info``: version, store and counts."""
    store, smtp_port = _sink(request).store, request.app[SMTP_PORT_KEY]
    return await _json_off_loop(request, lambda: info_json(*store.counts(), str(store.path), smtp_port))


async def list_rules(request: web.Request) -> web.Response:
    """``GET /api/v1/rules``: the fault rules in force."""
    rules = _sink(request).rules
    return await _json_off_loop(request, lambda: [rule.to_json() for rule in rules.rules()])


async def add_rule(request: web.Request) -> web.Response:
    """``POST /api/v1/rules``: add a fault rule (the body is a ``[[rules]]`` table as JSON)."""
    body = await _json_body(request)
    try:
        rule = _sink(request).rules.add(Rule.from_mapping(body))
    except (RuleError, TypeError) as exc:
        return _error(400, f"rule: {exc}")
    return await _json_off_loop(request, rule.to_json, status=201)


async def clear_rules(request: web.Request) -> web.Response:
    """``DELETE /api/v1/rules``: remove every fault rule."""
    _sink(request).rules.clear()
    return web.Response(text="ok", content_type="text/plain")


def _event(event: object) -> bytes | None:
    """A store event as one Server-Sent Event (encoded where it happens, not on the loop)."""
    if isinstance(event, Summary):
        kind, data = "new", event.to_json()
    elif isinstance(event, Deleted):
        kind, data = "delete", {"IDs": list(event.ids), "All": event.all}
    elif isinstance(event, Marked):
        kind, data = "read", {"IDs": None if event.ids is None else list(event.ids), "Read": event.read}
    else:
        return None
    return f"event: {kind}\ndata: {json.dumps(data)}\n\n".encode()


async def events(request: web.Request) -> web.StreamResponse:
    """Server-Sent Events: ``new`` (a message summary), ``delete`` (ids or all), ``read``."""
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=1000)
    loop = asyncio.get_running_loop()

    def push(event: object) -> None:  # called from the thread that indexed, deleted or marked
        item = _event(event)
        if item is not None:
            loop.call_soon_threadsafe(_offer, queue, item)

    # Subscribe before the client sees the stream open: it refreshes its list on open, so
    # nothing that arrives in between is missed.
    unsubscribe = _sink(request).subscribe(push)
    try:
        await response.prepare(request)
        await response.write(b": connected\n\n")
        while True:
            try:
                item = await asyncio.wait_for(queue.get(), 15)
            except asyncio.TimeoutError:
                await response.write(b": keep-alive\n\n")
                continue
            await response.write(item)
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        unsubscribe()
    return response


async def index_page(request: web.Request) -> web.FileResponse:
    """``GET /``: the web page."""
    return web.FileResponse(STATIC / "index.html")


def _offer(queue: asyncio.Queue[bytes], item: bytes) -> None:
    """Queue an event for a stream; a client too slow to take 1000 misses the newer ones."""
    if not queue.full():
        queue.put_nowait(item)


def create_app(sink: Sink, http: HTTPConfig, *, smtp_port: int = 0) -> web.Application:
    """The aiohttp application of a sink (``http``: its settings; ``smtp_port``: shown by
    ``/api/v1/info``), with its own reader threads (stopped with it)."""
    app = web.Application(middlewares=[guard], client_max_size=1 << 20)
    app[SINK_KEY] = sink
    app[AUTH_KEY] = http.auth.encode("utf-8")
    app[SMTP_PORT_KEY] = smtp_port
    app[READERS_KEY] = Readers()
    app.on_response_prepare.append(_security_headers)
    app.on_cleanup.append(_stop_readers)
    message_route = "/api/v1/message/{id}"
    app.add_routes([
        web.get("/api/v1/messages", list_messages),
        web.put("/api/v1/messages", set_read),
        web.delete("/api/v1/messages", delete),
        web.get("/api/v1/search", search),
        web.get(message_route, message, name=MARKS_READ),
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


async def _stop_readers(app: web.Application) -> None:
    await app[READERS_KEY].close()


class HTTPServer:
    """The HTTP listener of a sink (on the event loop it is started on)."""

    def __init__(self, sink: Sink, http: HTTPConfig, *, smtp_port: int = 0) -> None:
        self.http = http
        # shutdown_timeout: open event streams never finish by themselves; do not wait for them.
        self.runner = web.AppRunner(create_app(sink, http, smtp_port=smtp_port), access_log=None,
                                    handle_signals=False, shutdown_timeout=0.5)
        self.port = 0

    async def start(self) -> None:
        """Listen and serve (an OSError when the port cannot be opened)."""
        http = self.http
        await self.runner.setup()
        await web.TCPSite(self.runner, http.host, http.port, reuse_address=True).start()
        self.port = next((address[1] for address in self.runner.addresses if isinstance(address, tuple)), http.port)

    def log_listening(self) -> None:
        """Say where the web page and API are."""
        http = self.http
        log.info("web page and API on http://%s:%d/%s", http.host, self.port, " (basic auth)" if http.auth else "")
        if not is_loopback(http.host):
            log.warning("the web page and API listen on %s, beyond this machine, over plain HTTP: "
                        "captured mail and the basic-auth password cross the network unencrypted", http.host)

    async def stop(self) -> None:
        """Stop serving (open event streams are cut)."""
        with contextlib.suppress(Exception):
            await self.runner.cleanup()
