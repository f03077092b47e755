"""Tags, as Mailpit's API has them: ``GET``/``PUT /api/v1/tags``, ``PUT``/``DELETE /api/v1/tags/{tag}``.

Bodies are JSON objects read as Go reads them (keys in any case) and checked strictly: a field of
the wrong type (``null`` for ``Tags`` means none, as in Go), an unknown or a repeated field is
400. An empty body is 400 (Mailpit's ``EOF``). Unknown message ids are ignored.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ..tags import TagError
from .common import APIError, json_body, json_off_loop, off_loop, show, sink

EMPTY = "empty body: send a JSON object"


def _strings(body: dict[str, Any], name: str, *, null: bool = False) -> list[str]:
    """A field that must be a list of strings (absent: ``[]``; ``null`` too when allowed)."""
    value = body.get(name, [])
    if value is None and null:
        return []
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise APIError(400, f"{name}: expected a list of strings, got {show(value)}")
    return value


async def _body(request: web.Request, names: tuple[str, ...]) -> dict[str, Any]:
    if not (await request.read()).strip():
        raise APIError(400, f"{EMPTY} with {', '.join(names)}")
    return await json_body(request, names)


def _ok() -> web.Response:
    return web.Response(text="ok", content_type="text/plain")


async def list_tags(request: web.Request) -> web.Response:
    """``GET /api/v1/tags``: every tag name, alphabetical ignoring case."""
    store = sink(request).store
    return await json_off_loop(request, store.tags)


async def set_tags(request: web.Request) -> web.Response:
    """``PUT /api/v1/tags``: replace the tags of each of ``IDs`` with ``Tags`` (none: remove them)."""
    body = await _body(request, ("IDs", "Tags"))
    ids, names = _strings(body, "IDs"), _strings(body, "Tags", null=True)
    store = sink(request).store
    if ids:
        await off_loop(request, lambda: store.set_tags(ids, names))
    return _ok()


async def _tag_change(request: web.Request, change: Any) -> web.Response:
    try:
        await off_loop(request, change)
    except TagError as exc:
        raise APIError(400, str(exc)) from None
    return _ok()


async def rename_tag(request: web.Request) -> web.Response:
    """``PUT /api/v1/tags/{tag}`` with ``{"Name": new}``: rename a tag in every message."""
    body = await _body(request, ("Name",))
    name = body.get("Name", "")
    if not isinstance(name, str):
        raise APIError(400, f"Name: expected a string, got {show(name)}")
    store, old = sink(request).store, request.match_info["tag"]
    return await _tag_change(request, lambda: store.rename_tag(old, name))


async def delete_tag(request: web.Request) -> web.Response:
    """``DELETE /api/v1/tags/{tag}``: remove a tag from every message (no message is deleted)."""
    store, name = sink(request).store, request.match_info["tag"]
    return await _tag_change(request, lambda: store.delete_tag(name))


ROUTES = [
    web.get("/api/v1/tags", list_tags),
    web.put("/api/v1/tags", set_tags),
    web.put("/api/v1/tags/{tag}", rename_tag),
    web.delete("/api/v1/tags/{tag}", delete_tag),
]
