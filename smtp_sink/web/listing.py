"""The message list, as Mailpit answers it: ``GET``/``PUT``/``DELETE /api/v1/messages``,
``GET``/``DELETE /api/v1/search`` and ``GET /api/v1/info``.

Query parameters are read as Mailpit reads them (Go's ``strconv.Atoi``): a ``start`` that is not
a whole number above 0 is 0, a ``limit`` that is not a whole number from 0 up is 50; ``limit=0``
lists every message (``start`` ignored) but gives a search no messages, only its counts. A
``before`` date that does not parse is ignored. The one 400 kept from issue 13 is a search whose
``start`` + ``limit`` passes 2^63 - 1, where Mailpit's own arithmetic overflows and panics.

``PUT`` and ``DELETE /api/v1/messages`` take a JSON object (keys in any case, as Go reads them; a
field of the wrong type, ``null`` included, an unknown or a repeated field is 400, never a
default) or a form-encoded body (``ids=a&ids=b&Read=true``, as the PyPI client sends).
"""

from __future__ import annotations

import time
import urllib.parse
from typing import Any

from aiohttp import web

from ..search import SearchError, parse_date
from .common import MAX_QUERY_NUMBER, APIError, json_body, json_off_loop, message_ids, off_loop, show, sink
from .mailpit import info_json, page_json

FORM = "application/x-www-form-urlencoded"
_TRUE = {"1", "t", "T", "TRUE", "true", "True"}  # Go's strconv.ParseBool
_FALSE = {"0", "f", "F", "FALSE", "false", "False"}


def go_atoi(text: str | None) -> int | None:
    """Go's ``strconv.Atoi``: an optional sign and ASCII digits within 64 bits, else None."""
    if not text:
        return None
    digits = text[1:] if text[0] in "+-" else text
    if not (digits.isascii() and digits.isdigit()):
        return None
    value = int(text)
    return value if -MAX_QUERY_NUMBER - 1 <= value <= MAX_QUERY_NUMBER else None


def start_limit(request: web.Request) -> tuple[int, int, float | None]:
    """Mailpit's ``getStartLimit``: ``(start, limit, before)``; ``before`` a Unix time or None."""
    start: int | None = go_atoi(request.query.get("start"))
    limit = go_atoi(request.query.get("limit"))
    before = None
    if request.query.get("before"):
        found = parse_date(request.query["before"][:100])  # in this machine's time zone, as Mailpit's
        before = found.timestamp() if found is not None else None
    start = start if start is not None and start > 0 else 0
    return start, (limit if limit is not None and limit > -1 else 50), before


async def list_messages(request: web.Request) -> web.Response:
    """``GET /api/v1/messages``: newest first; ``limit=0`` lists them all."""
    start, limit, before = start_limit(request)
    store = sink(request).store

    def work() -> dict[str, Any]:
        page = store.query(0 if limit == 0 else start, None if limit == 0 else limit, before=before)
        page.start = start
        page.matched, page.matched_unread = page.total, page.unread  # before= does not change a list's counts
        return page_json(page)

    return await json_off_loop(request, work)


def _query(request: web.Request) -> str:
    """The required ``query`` parameter (trimmed); 400 when blank."""
    query = request.query.get("query", "").strip()
    if not query:
        raise APIError(400, "Error: no search query")
    return query


async def search(request: web.Request) -> web.Response:
    """``GET /api/v1/search?query=``: the matches, newest first; ``limit=0`` gives only the counts."""
    query, tz = _query(request), request.query.get("tz")
    start, limit, before = start_limit(request)
    if start + limit > MAX_QUERY_NUMBER:
        raise APIError(400, f"start + limit is out of range (at most {MAX_QUERY_NUMBER})")
    store = sink(request).store
    return await json_off_loop(request, lambda: page_json(_searching(
        lambda: store.query(start, limit, query, tz=tz, before=before))))


def _searching(work: Any) -> Any:
    """``work()``, a query too big to run answered 400."""
    try:
        return work()
    except SearchError as exc:
        raise APIError(400, str(exc)) from None


async def delete_search(request: web.Request) -> web.Response:
    """``DELETE /api/v1/search?query=``: delete every match."""
    query, tz = _query(request), request.query.get("tz")
    store = sink(request).store
    await off_loop(request, lambda: _searching(lambda: store.delete_matching(query, tz)))
    return web.Response(text="ok", content_type="text/plain")


async def fields(request: web.Request, names: tuple[str, ...]) -> dict[str, Any] | None:
    """The body's fields, keys matched in any case and given in the spelling of ``names``:
    a JSON object, or a form (``key=value&key=value``: values are lists of strings). None for
    an empty body. An unknown or repeated field, or anything else, is 400."""
    raw = await request.read()  # at most client_max_size (aiohttp answers 413 beyond)
    if not raw.strip():
        return None
    if request.content_type != FORM:
        return await json_body(request, names)
    try:
        pairs = urllib.parse.parse_qsl(raw.decode("utf-8"), keep_blank_values=True, strict_parsing=True,
                                       max_num_fields=100_000)
    except (UnicodeDecodeError, ValueError) as exc:
        raise APIError(400, f"invalid form body: {str(exc)[:200]}") from None
    known = {name.lower(): name for name in names}
    found: dict[str, list[str]] = {}
    for key, value in pairs:
        name = known.get(key.lower())
        if name is None:
            raise APIError(400, f"unknown field {key[:50]!r} (known: {', '.join(names)})")
        found.setdefault(name, []).append(value)
    return dict(found)


def _form_value(body: dict[str, Any], name: str) -> Any:
    """A single form value (a list of one string); a field given twice is 400."""
    values = body[name]
    if isinstance(values, list) and len(values) == 1 and isinstance(values[0], str):
        return values[0]
    raise APIError(400, f"field {name} given {len(values)} times")


async def _read_body(request: web.Request, names: tuple[str, ...]) -> dict[str, Any] | None:
    """A body of ``names`` as JSON would give it (a form's ``IDs`` a list, its ``Read`` a bool)."""
    body = await fields(request, names)
    if body is None or request.content_type != FORM:
        return body
    if "Read" in body:
        value = _form_value(body, "Read")
        if value not in _TRUE | _FALSE:
            raise APIError(400, f"Read: expected true or false, got {show(value)}")
        body["Read"] = value in _TRUE
    if "Search" in body:
        body["Search"] = _form_value(body, "Search")
    return body


async def set_read(request: web.Request) -> web.Response:
    """``PUT /api/v1/messages``: set the read flag (``Read``, default false) of the ``IDs``, of
    the messages the ``Search`` matches (``?tz=`` for its dates), or of every message."""
    body = await _read_body(request, ("IDs", "Read", "Search"))
    if body is None:
        raise APIError(400, 'empty body: send {"Read": true or false} with "IDs" or "Search" (neither: every message)')
    read = body.get("Read", False)
    if not isinstance(read, bool):
        raise APIError(400, f"Read: expected true or false, got {show(read)}")
    search_text = body.get("Search", "")
    if not isinstance(search_text, str):
        raise APIError(400, f"Search: expected a search query (a string), got {show(search_text)}")
    ids, store = message_ids(body), sink(request).store
    if ids and search_text:
        raise APIError(400, "You may specify either IDs or a search query, not both")
    tz = request.query.get("tz")
    if search_text:
        await off_loop(request, lambda: _searching(lambda: store.mark_matching(search_text, read, tz)))
    else:
        await off_loop(request, lambda: store.mark_read(ids, read))
    return web.Response(text="ok", content_type="text/plain")


async def delete(request: web.Request) -> web.Response:
    """Delete the messages listed in ``IDs``; every message for no body, ``{}`` or ``{"IDs": []}``."""
    body = await _read_body(request, ("IDs",))
    ids = message_ids(body or {})
    store = sink(request).store
    if ids is None:
        await off_loop(request, store.delete_all)
    else:
        await off_loop(request, lambda: store.delete([store.resolve(i) for i in ids]))
    return web.Response(text="ok", content_type="text/plain")


async def info(request: web.Request) -> web.Response:
    """``GET /api/v1/info``: Mailpit's ``AppInformation``."""
    running = sink(request)
    store, policy = running.store, running.policy
    return await json_off_loop(request, lambda: info_json(store, time.time(), getattr(policy, "refused", 0)))


ROUTES = [
    web.get("/api/v1/messages", list_messages),
    web.put("/api/v1/messages", set_read),
    web.delete("/api/v1/messages", delete),
    web.get("/api/v1/search", search),
    web.delete("/api/v1/search", delete_search),
    web.get("/api/v1/info", info),
]
