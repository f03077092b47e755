"""The message checks (:mod:`smtp_sink.checks`): ``GET /api/v1/message/{id}/html-check``,
``/link-check`` and ``/sa-check`` (``latest`` and ``latest?query=`` work for each). The message is read and parsed, and
its HTML checked, in a reader thread; the link check and spamd are asked on the event loop, with
timeouts."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ..checks.html_check import HTMLTooLarge, check
from ..checks.link_check import LinkChecker, collect
from ..checks.spam_check import report
from .common import APIError, json_off_loop, off_loop, sink
from .message import message_id
from .security import LINK_CHECK


def _html_check(request: web.Request) -> dict[str, Any]:
    """The check of the message's HTML part (in a reader thread); 400 without one."""
    store = sink(request).store
    html = store.detail(message_id(request))["HTML"]
    if not html:
        raise APIError(400, "message does not contain HTML")
    try:
        return check(html)
    except HTMLTooLarge as exc:
        raise APIError(400, str(exc)) from None


async def html_check(request: web.Request) -> web.Response:
    """How well email clients support the message's HTML (Mailpit's HTMLCheckResponse)."""
    return await json_off_loop(request, lambda: _html_check(request))


async def link_check(request: web.Request) -> web.Response:
    """The status of each link in the message (``?follow=true`` or ``1``: follow redirects). Opening
    the message for this marks it read, as in Mailpit; so, like the detail, it is refused to
    another site's page (which could also make the sink send requests for it): see ``security``."""
    the_sink = sink(request)
    store, config = the_sink.store, the_sink.config.checks
    found = await off_loop(request, lambda: store.open_message(message_id(request)))
    links = await off_loop(request, lambda: collect(found["HTML"], found["Text"]))
    follow = request.query.get("follow") in ("true", "1")
    checker = LinkChecker(allow_internal=config.allow_internal, timeout=config.link_timeout)
    return web.json_response(await checker.check(links, follow))


async def sa_check(request: web.Request) -> web.Response:
    """spamd's verdict on the stored message; 404 while ``[checks] spamassassin`` is empty."""
    the_sink = sink(request)
    address = the_sink.config.checks.spamassassin
    if not address:
        raise APIError(404, "SpamAssassin is not configured ([checks] spamassassin)")
    store = the_sink.store
    raw = await off_loop(request, lambda: store.read(message_id(request)))
    return web.json_response(await report(address, raw))


ROUTES = [
    web.get("/api/v1/message/{id}/html-check", html_check),
    web.get("/api/v1/message/{id}/link-check", link_check, name=LINK_CHECK),
    web.get("/api/v1/message/{id}/sa-check", sa_check),
]
