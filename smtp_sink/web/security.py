"""Security of every HTTP response: basic auth, the Host check, cross-site refusals, framing bans,
and errors that always answer (never an empty reply).

Message HTML is only ever served with a Content-Security-Policy that forbids scripts and remote
loads (the page shows it in a sandboxed iframe); downloads carry ``Content-Disposition:
attachment`` and ``nosniff``; every response forbids framing (``frame-ancestors``,
``X-Frame-Options``; only the page may frame a message's HTML view); calls that change state, and
the message detail and views (they mark the message read), are refused from another site
(``Origin``/``Sec-Fetch-Site``), and so is the event stream (a WebSocket is not bound by the
same-origin policy); no CORS header is ever sent, so no other site can read an answer (a
preflight ``OPTIONS`` gets none either); with ``[http] auth`` every request needs HTTP basic auth
(required when not bound to loopback).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from ..config import is_loopback
from ..errors import NotFound
from ..store import StoreError
from .common import AUTH_KEY, APIError, error

log = logging.getLogger("smtp_sink")
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
# Route names. GETs that change state (they mark the message read) and the event stream (a
# WebSocket is not bound by the same-origin policy) are refused from another site, like PUT,
# POST and DELETE; the probes answer without auth or Host check (they tell nothing else).
MARKS_READ = "message"  # GET /api/v1/message/{id}
VIEW_HTML = "view-html"  # GET /view/{id}.html
VIEW_TEXT = "view-text"  # GET /view/{id}.txt
EVENTS = "events"  # GET /api/events
LINK_CHECK = "link-check"  # GET /api/v1/message/{id}/link-check (marks read; makes the sink send requests)
SAME_SITE_ONLY = frozenset({MARKS_READ, VIEW_HTML, VIEW_TEXT, EVENTS, LINK_CHECK})
LIVEZ, READYZ = "livez", "readyz"
PROBES = frozenset({LIVEZ, READYZ})


@web.middleware
async def guard(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                ) -> web.StreamResponse:
    """Check basic auth, the Host and cross-site requests; map errors to JSON (NotFound is 404 with
    its text, anything unexpected, a KeyError included, is logged and 500): no handler ends in an
    empty reply."""
    refused = _refusal(request)
    if refused is not None:
        return refused
    if request.method == "OPTIONS" and request.path.startswith("/api/v1/"):
        return web.Response(text="", content_type="text/plain")  # Mailpit's answer, without CORS headers
    try:
        response = await handler(request)
    except NotFound as exc:
        return error(404, str(exc))
    except APIError as exc:
        return error(exc.status, exc.message)
    except StoreError as exc:  # e.g. read flags that cannot be saved on a full disk
        return error(507, exc.strerror or str(exc))
    except web.HTTPException as exc:  # aiohttp's own: unknown route 404, 405, 413...
        return _from_http_exception(exc)
    except Exception:
        log.exception("HTTP %s %s failed", request.method, request.path[:200])
        return error(500, "internal error (the server logged it)")
    bad = None if response.prepared else _unsafe_header(response)
    if bad is not None:  # aiohttp would refuse to send it and close the connection without a reply
        log.error("HTTP %s %s: response header %s not sendable", request.method, request.path[:200], bad)
        return error(500, "internal error (the server logged it)")
    return response


def _refusal(request: web.Request) -> web.Response | None:
    """401 without the password, 403 for a foreign Host (no password set) or a cross-site
    request that changes state; None when the request may go on."""
    if request.match_info.route.name in PROBES:
        return None
    expected = request.app[AUTH_KEY]
    if expected and not _authorized(request.headers.get("Authorization", ""), expected):
        return error(401, "authentication required",
                      {"WWW-Authenticate": 'Basic realm="smtp-sink", charset="UTF-8"'})
    if not expected and not _local_host(request.host):
        # DNS rebinding: a site whose name now resolves to 127.0.0.1 must not read captured mail
        return error(403, f"Host {request.host[:100]!r} is not a loopback name; use http://127.0.0.1")
    if _changes_state(request) and _cross_site(request):
        return error(403, "cross-site request refused")
    return None


def _changes_state(request: web.Request) -> bool:
    """PUT, POST, DELETE..., and GET or HEAD of a route in :data:`SAME_SITE_ONLY`."""
    if request.method not in ("GET", "HEAD", "OPTIONS"):
        return True
    return request.match_info.route.name in SAME_SITE_ONLY


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
    return error(exc.status, exc.text if exc.text and exc.status != 404 else exc.reason, kept)


def _unsafe_header(response: web.StreamResponse) -> str | None:
    """The name of a header aiohttp cannot send (CR, LF, NUL or other controls), or None."""
    for name, value in response.headers.items():
        if not value.isprintable() or not name.isprintable():
            return name
    return None


async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
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
