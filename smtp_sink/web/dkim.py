"""``GET /api/v1/message/{id}/dkim``: the DKIM check of a stored message
(:mod:`smtp_sink.checks.dkim_check`; ``latest`` and ``latest?query=`` work). The keys are read, the
message read and verified, and the JSON encoded in a reader thread: dkimpy never runs on the loop."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ..checks.dkim_check import keys_of, verify
from ..checks.dkim_keys import DKIMKeyError
from .common import APIError, json_off_loop, sink
from .message import message_id


def _dkim(request: web.Request) -> dict[str, Any]:
    """The report (in a reader thread); 500 naming the setting when the keys cannot be read."""
    the_sink = sink(request)
    store, checks = the_sink.store, the_sink.config.checks
    found = message_id(request)
    raw, sender = store.read(found), store.summary(found).sender  # an unknown message is 404 first
    try:
        keys = keys_of(checks.dkim_keys, checks.dkim_keys_file)
    except DKIMKeyError as exc:
        raise APIError(500, str(exc)) from None
    return verify(raw, keys, sender.address if sender else "").to_json()


async def dkim_check(request: web.Request) -> web.Response:
    """Each DKIM signature of the message: verified with the configured keys, and its alignment."""
    return await json_off_loop(request, lambda: _dkim(request))


ROUTES = [web.get("/api/v1/message/{id}/dkim", dkim_check)]
