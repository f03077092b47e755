"""``POST /api/v1/message/{id}/release``: send a captured message to the ``[relay]`` server (:mod:`smtp_sink.relay`)."""

from __future__ import annotations

from aiohttp import web

from ..jsonbody import BodyError, strings
from ..relay import RelayError, ReleaseRefused
from .common import APIError, json_body, off_loop, sink


async def release(request: web.Request) -> web.Response:
    """Relay the message (``latest`` works) to the body's ``To`` list; ``ok``. 400 when no relay is
    configured, the request is refused (Mailpit's texts) or the upstream refuses (its reply)."""
    the_sink = sink(request)
    relay = the_sink.relay
    if relay is None:
        raise APIError(400, "message relay is not configured ([relay] host)")
    store = the_sink.store
    raw = await off_loop(request, lambda: store.read(store.resolve(request.match_info["id"])))
    body = await json_body(request, ("To",))
    try:
        await relay.release_async(raw, strings(body.get("To"), "To"))
    except (BodyError, ReleaseRefused) as exc:
        raise APIError(400, str(exc)) from None
    except RelayError as exc:
        raise APIError(400, f"SMTP error: {exc}") from None
    return web.Response(text="ok", content_type="text/plain")


ROUTES = [web.post("/api/v1/message/{id}/release", release)]
