"""One message: detail, raw source, headers, parts and their thumbnails (Mailpit's
``/api/v1/message/{id}...``). ``{id}`` may be ``latest`` on every route (:func:`message_id`)."""

from __future__ import annotations

import asyncio
import re
import unicodedata
import urllib.parse

from aiohttp import web

from .. import thumbnail
from ..errors import NotFound
from ..message import headers
from ..search import SearchError
from .common import APIError, json_off_loop, off_loop, sink
from .security import DOWNLOAD_CSP, MARKS_READ

MAX_FILENAME = 200  # characters of a part's file name sent in Content-Disposition
_MEDIA_TYPE_RE = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]{0,126}/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}")
_ATTR_CHARS = "!#$&+-.^_`|~"  # RFC 5987 attr-char besides letters and digits
_FORBIDDEN_IN_NAME = ("Cc", "Cf", "Cs", "Zl", "Zp")  # control, format (bidi), surrogate, line breaks


def message_id(request: web.Request, given: str | None = None) -> str:
    """The id the URL names (or ``given``), ``latest`` resolved: the newest message, or the newest
    that the search ``?query=`` matches (``?tz=``: the zone of its dates). In a reader thread;
    :class:`~smtp_sink.errors.NotFound` for none, 400 for a bad query."""
    query = request.query
    try:
        return sink(request).store.resolve(request.match_info["id"] if given is None else given,
                                           query.get("query"), query.get("tz"))
    except SearchError as exc:
        raise APIError(400, str(exc)) from None


async def message(request: web.Request) -> web.Response:
    """``GET /api/v1/message/{id}``: the message (Mailpit's ``Message``); opening it marks it read."""
    store = sink(request).store
    return await json_off_loop(request, lambda: store.open_message(message_id(request)))


def _read(request: web.Request) -> tuple[str, bytes]:
    """The id and stored bytes of the message the URL names (in a reader thread)."""
    found = message_id(request)
    return found, sink(request).store.read(found)


async def raw(request: web.Request) -> web.Response:
    """``GET /api/v1/message/{id}/raw[?dl=1]``: the stored bytes, as plain text (``dl=1``: as a
    download named ``<id>.eml``)."""
    found, data = await off_loop(request, lambda: _read(request))
    response = web.Response(body=data, content_type="text/plain", charset="utf-8")
    if request.query.get("dl") == "1":
        response.headers["Content-Disposition"] = f'attachment; filename="{found}.eml"'
    return response


async def message_headers(request: web.Request) -> web.Response:
    """``GET /api/v1/message/{id}/headers``: every header (Go's canonical names, sorted)."""
    return await json_off_loop(request, lambda: headers(_read(request)[1]))


async def message_part(request: web.Request) -> web.Response:
    """``GET /api/v1/message/{id}/part/{part}``: one part's content, as a download."""
    store, part_id = sink(request).store, request.match_info["part"]
    content_type, filename, body = await off_loop(request, lambda: store.part(message_id(request), part_id))
    return web.Response(body=body, headers={
        "Content-Type": media_type(content_type),
        "Content-Disposition": content_disposition(filename),
        "Content-Security-Policy": DOWNLOAD_CSP,
    })


async def part_thumbnail(request: web.Request) -> web.Response:
    """``GET /api/v1/message/{id}/part/{part}/thumb``: a 180x120 JPEG of an image part (blank
    white for anything else); an unknown message or part is 400, as Mailpit answers."""
    store, part_id = sink(request).store, request.match_info["part"]

    try:
        content_type, filename, data = await off_loop(request, lambda: store.part(message_id(request), part_id))
    except NotFound as exc:
        raise APIError(400, str(exc)) from None
    jpeg = await asyncio.wrap_future(thumbnail.submit(content_type, data))  # one image decoded at a time
    return web.Response(body=jpeg, headers={
        "Content-Type": "image/jpeg",
        "Content-Disposition": content_disposition(filename, "inline"),
        "Content-Security-Policy": DOWNLOAD_CSP,
    })


def media_type(value: str) -> str:
    """``type/subtype`` when ``value`` is one (RFC 6838 names), else ``application/octet-stream``:
    a folded or control-laden Content-Type from a message never reaches the response headers."""
    value = value.strip().lower()
    return value if len(value) <= 255 and _MEDIA_TYPE_RE.fullmatch(value) else "application/octet-stream"


def content_disposition(filename: str, kind: str = "attachment") -> str:
    """``attachment`` (or ``kind``) with the file name: ``filename="..."`` in ASCII, plus RFC
    6266's ``filename*=UTF-8''...`` (RFC 5987 encoding) when the name is not plain ASCII."""
    name = _clean_filename(filename) or "part"
    fallback = "".join(c if " " <= c <= "~" and c not in '"\\' else "_" for c in name)
    if fallback == name:
        return f'{kind}; filename="{name}"'
    encoded = urllib.parse.quote(name.encode("utf-8", "replace"), safe=_ATTR_CHARS)
    return f"{kind}; filename=\"{fallback}\"; filename*=UTF-8''{encoded}"


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


MESSAGE = "/api/v1/message/{id}"
ROUTES = [
    web.get(MESSAGE, message, name=MARKS_READ),
    web.get(MESSAGE + "/raw", raw),
    web.get(MESSAGE + "/headers", message_headers),
    web.get(MESSAGE + "/part/{part}", message_part),
    web.get(MESSAGE + "/part/{part}/thumb", part_thumbnail),
]
