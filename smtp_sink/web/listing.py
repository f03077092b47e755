"""The message list: ``GET /api/v1/messages``, ``/search``, ``PUT``/``DELETE /api/v1/messages``, ``/info``."""

from __future__ import annotations

from aiohttp import web

from .common import SMTP_PORT_KEY, APIError, error, json_body, json_off_loop, message_ids, number, off_loop, show, sink
from .mailpit import info_json, page_json


async def list_messages(request: web.Request) -> web.Response:
    """``GET /api/v1/messages``: one page of summaries, newest first."""
    return await _page(request, None)


async def search(request: web.Request) -> web.Response:
    """``GET /api/v1/search?query=``: one page of the messages matching the query."""
    query = request.query.get("query", "").strip()
    if not query:
        return error(400, "query is required")
    return await _page(request, query)


async def _page(request: web.Request, query: str | None) -> web.Response:
    start, limit = number(request, "start", 0), number(request, "limit", 50)
    store = sink(request).store
    return await json_off_loop(request, lambda: page_json(store.query(start, min(limit, 1000) or 50, query)))


async def set_read(request: web.Request) -> web.Response:
    """``PUT /api/v1/messages``: set the read flag of ``IDs`` (every message without)."""
    body = await json_body(request, ("IDs", "Read"))
    read = body.get("Read", True)
    if not isinstance(read, bool):
        raise APIError(400, f"Read: expected true or false, got {show(read)}")
    ids, store = message_ids(body), sink(request).store
    await off_loop(request, lambda: store.mark_read(ids, read))
    return web.Response(text="ok", content_type="text/plain")


async def delete(request: web.Request) -> web.Response:
    """Delete the messages listed in ``IDs``; every message for no body, ``{}`` or ``{"IDs": []}``."""
    ids = message_ids(await json_body(request, ("IDs",)))
    store = sink(request).store
    if ids is None:
        await off_loop(request, store.delete_all)
    else:
        await off_loop(request, lambda: store.delete([store.resolve(i) for i in ids]))
    return web.Response(text="ok", content_type="text/plain")


async def info(request: web.Request) -> web.Response:
    """``GET /api/v1/info``: version, store and counts."""
    store, smtp_port = sink(request).store, request.app[SMTP_PORT_KEY]
    return await json_off_loop(request, lambda: info_json(*store.counts(), str(store.path), smtp_port))


ROUTES = [
    web.get("/api/v1/messages", list_messages),
    web.put("/api/v1/messages", set_read),
    web.delete("/api/v1/messages", delete),
    web.get("/api/v1/search", search),
    web.get("/api/v1/info", info),
]
