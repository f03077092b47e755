"""A message rendered for reading: ``/view/{id}.html``, ``/view/{id}.txt``, ``/view/latest``.

``/view/{id}.html`` is the HTML body with ``cid:`` references rewritten to the part URLs
(``/api/v1/message/{id}/part/{partID}``), as Mailpit serves it, under our Content-Security-Policy
(no scripts, no remote loads, sandboxed). Inside that sandbox those URLs do not load (the parts
are same-origin only), so ``?embed=1``, which is what the web page frames, puts the referenced
parts in the page itself as ``data:`` URLs and makes every link open a new window
(``target="_blank" rel="noreferrer noopener"``, as Mailpit's ``embed=1`` does; no script is
added: ours would not run). Both views, like the message detail, mark the message read. Every
rewrite here is a forward scan: linear in the HTML's length.
"""

from __future__ import annotations

import base64
import re
from typing import Any

from aiohttp import web

from ..errors import NotFound
from ..message import contents, detail
from .common import APIError, off_loop, sink
from .message import media_type, message_id
from .security import MESSAGE_CSP, VIEW_HTML, VIEW_TEXT

MAX_CID = 256  # characters of a Content-ID looked for after "cid:" (longer ones are not rewritten)
_SLASH_TRIES = 8  # "/" inside a Content-ID: how many are tried as part of it
MAX_LINKS = 10_000  # <a> tags given a target by embed=1; the rest of a hostile page is left as it is
MAX_ATTRIBUTES = 1_000  # attributes read in one <a> tag; a tag with more ends the rewriting there
_CID_REF_RE = re.compile(r"""=(["']?)cid:""", re.IGNORECASE)
_CID_END_RE = re.compile(r"""["'\\|/>;\s]""")  # what may follow a Content-ID (Mailpit's set, with real white space)
_A_START_RE = re.compile(r"<a(?=[\s/>])", re.IGNORECASE)
_NAME_RE = re.compile(r"""[^\s"'>/=]+""")
_SPACES_RE = re.compile(r"\s*")
_UNQUOTED_RE = re.compile(r"[^\s>]*")


async def view_html(request: web.Request) -> web.Response:
    """``GET /view/{id}.html[?embed=1]``: the HTML body (404 when there is none); marks it read."""
    embed = request.query.get("embed") == "1"
    body = await off_loop(request, lambda: _html(request, embed))
    return web.Response(body=body.encode("utf-8", "replace"), content_type="text/html", charset="utf-8",
                        headers={"Content-Security-Policy": MESSAGE_CSP, "X-Frame-Options": "SAMEORIGIN"})


def _html(request: web.Request, embed: bool) -> str:
    found, raw, shown = _open(request)
    html: str = shown["HTML"]
    if not html:
        raise APIError(404, "This message does not contain a HTML part")
    listed = [part for part in (*shown["Inline"], *shown["Attachments"]) if part["ContentID"]]
    if not embed:
        prefix = f"/api/v1/message/{found}/part/"
        return rewrite_cids(html, {part["ContentID"]: prefix + part["PartID"] for part in listed})
    data = contents(raw, [part["PartID"] for part in listed])
    urls = {part["ContentID"]: _data_url(*data[part["PartID"]]) for part in listed if part["PartID"] in data}
    return link_targets(rewrite_cids(html, urls))


def _open(request: web.Request) -> tuple[str, bytes, dict[str, Any]]:
    """The id, stored bytes and detail of the message the URL names, marked read (a reader thread)."""
    store = sink(request).store
    found = message_id(request)
    raw = store.read(found)
    shown = detail(found, raw, read=True)
    store.mark_read([found], True, best_effort=True)
    return found, raw, shown


def _data_url(content_type: str, content: bytes) -> str:
    return f"data:{media_type(content_type)};base64,{base64.b64encode(content).decode()}"


async def view_text(request: web.Request) -> web.Response:
    """``GET /view/{id}.txt``: the text body (for an HTML-only message, its text); marks it read."""
    text: str = (await off_loop(request, lambda: _open(request)))[2]["Text"]
    return web.Response(body=text.encode("utf-8", "replace"), content_type="text/plain", charset="utf-8")


async def view_latest(request: web.Request) -> web.Response:
    """``GET /view/latest``: 302 to the web page showing the newest message (``/`` when there is none)."""

    def newest() -> str | None:
        try:
            return message_id(request, "latest")
        except NotFound:
            return None

    found = await off_loop(request, newest)
    raise web.HTTPFound(f"/view/{found}" if found else "/")


def rewrite_cids(html: str, urls: dict[str, str]) -> str:
    """Mailpit's ``linkInlineImages``: each ``=cid:ID``, ``="cid:ID`` or ``='cid:ID`` followed by a
    quote, ``|``, ``\\``, ``/``, ``>``, ``;`` or white space, with ID one of ``urls`` (compared
    without regard to case, the first given wins), has ``cid:ID`` replaced by its URL. (Mailpit's
    pattern also ends an ID at the letter ``s``, a slip of its regular expression; not here.)"""
    lowered: dict[str, str] = {}
    for content_id, url in urls.items():
        lowered.setdefault(content_id.lower(), url)
    if not lowered:
        return html
    pieces, pos = [], 0
    for ref in _CID_REF_RE.finditer(html):
        start = ref.end()
        found = _cid_at(html[start:start + MAX_CID + 1], lowered)
        if found is None:
            continue
        url, length = found
        pieces += [html[pos:start - 4], url]  # start - 4: where "cid:" begins
        pos = start + length
    pieces.append(html[pos:])
    return "".join(pieces)


def _cid_at(window: str, urls: dict[str, str]) -> tuple[str, int] | None:
    """``(url, length)`` when ``window`` starts with a known Content-ID followed by its end."""
    for tries, end in enumerate(_CID_END_RE.finditer(window), 1):
        url = urls.get(window[:end.start()].lower())
        if url is not None:
            return url, end.start()
        if end.group() != "/" or tries > _SLASH_TRIES:  # only "/" may be inside an ID
            return None
    return None


def link_targets(html: str) -> str:
    """Every ``<a ...>`` start tag with ``target="_blank" rel="noreferrer noopener"`` (replacing
    its own target and rel), as Mailpit's ``embed=1`` sets them. A tag left open (no ``>``, or a
    quote that never closes) ends the scan: the rest is inside it, as a browser reads it. Past
    :data:`MAX_LINKS` tags, or at a tag of more than :data:`MAX_ATTRIBUTES` attributes, the rest
    is left as it is (hostile input only: the Python scan stays short)."""
    pieces, pos, done = [], 0, 0
    for start in _A_START_RE.finditer(html):
        if start.start() < pos:
            continue
        done += 1
        if done > MAX_LINKS:
            break
        tag = _attributes(html, start.end())
        if tag is None:
            break
        kept, end = tag
        rest = "".join(" " + text for name, text in kept if name.lower() not in ("target", "rel"))
        pieces += [html[pos:start.start()], f'<a{rest} target="_blank" rel="noreferrer noopener">']
        pos = end
    pieces.append(html[pos:])
    return "".join(pieces)


def _attributes(html: str, pos: int) -> tuple[list[tuple[str, str]], int] | None:
    """The attributes of a start tag from ``pos`` as ``(name, text)`` and where the tag ends (after
    its ``>``); None when it never ends (or has more than :data:`MAX_ATTRIBUTES`)."""
    found: list[tuple[str, str]] = []
    size = len(html)
    while len(found) <= MAX_ATTRIBUTES:
        pos = _SPACES_RE.match(html, pos).end()  # type: ignore[union-attr]  # \s* always matches
        if pos >= size:
            return None
        if html[pos] == ">":
            return found, pos + 1
        if html[pos] == "/":
            pos += 1
            continue
        name = _NAME_RE.match(html, pos)
        name_end = name.end() if name is not None else pos + 1  # a stray quote or "=" starts a name
        after = _SPACES_RE.match(html, name_end).end()  # type: ignore[union-attr]
        if after < size and html[after] == "=":
            value = _SPACES_RE.match(html, after + 1).end()  # type: ignore[union-attr]
            if value < size and html[value] in "\"'":
                close = html.find(html[value], value + 1)
                if close < 0:
                    return None
                value_end = close + 1
            else:
                value_end = _UNQUOTED_RE.match(html, value).end()  # type: ignore[union-attr]
            found.append((html[pos:name_end], html[pos:value_end]))
            pos = value_end
        else:
            found.append((html[pos:name_end], html[pos:name_end]))
            pos = name_end
    return None


ROUTES = [
    web.get("/view/latest", view_latest),
    web.get("/view/{id}.html", view_html, name=VIEW_HTML),
    web.get("/view/{id}.txt", view_text, name=VIEW_TEXT),
]  # GET /view/{id} (the page, opening that message) is the app's, beside GET /
