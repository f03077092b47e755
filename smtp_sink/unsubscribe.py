"""Mailpit's reading of a ``List-Unsubscribe`` header (RFC 2369, RFC 8058): the links it offers
and what is wrong with it, as the message detail's ``ListUnsubscribe`` shows them.

The checks and their error texts are Mailpit's (``tools.ListUnsubscribeParser``): comments are
removed, the value must be ``<...>`` entries separated by commas, at most two of them, at most one
``mailto:`` and one ``http(s)://`` link, no spaces inside one, each a valid URL. Every scan is a
forward search (``str.find``), never a regex that could backtrack: linear in the header's length.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["list_unsubscribe"]

_MAILTO_RE = re.compile(r"mailto:[a-zA-Z0-9]")
_HTTP_RE = re.compile(r"https?://[a-zA-Z0-9]", re.IGNORECASE)
_SPACE_RE = re.compile(r"\s")
_JOIN_RE = re.compile(r"\s*,\s*")  # what may stand between two entries
_BAD_ESCAPE_RE = re.compile(r"%(?![0-9A-Fa-f]{2})")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")


def list_unsubscribe(header: str, post: str) -> dict[str, Any]:
    """``{"Header", "Links", "Errors", "HeaderPost"}`` for a List-Unsubscribe header (decoded)
    and its List-Unsubscribe-Post header; all empty when there is no header."""
    if not header:
        return {"Header": "", "Links": [], "Errors": "", "HeaderPost": ""}
    links, errors = parse(header)
    return {"Header": header, "Links": links, "Errors": errors, "HeaderPost": post}


def parse(value: str) -> tuple[list[str], str]:
    """The valid links of a List-Unsubscribe value and the problems found (``", "``-joined)."""
    value = _without_comments(value.strip())
    entries, joins = _entries(value)
    if not entries:
        return [], f'"{value}" no valid unsubscribe links found'
    if not (value.startswith("<") and value.endswith(">")):
        return [], f'"{value}" should be enclosed in <>'
    if len(entries) > 2:
        return [], f'"{value}" should include a maximum of one email and one HTTP link'
    if any(not _JOIN_RE.fullmatch(join) for join in joins):
        return [], f'"{value}" <> should be split with a comma and optional spaces'
    links: list[str] = []
    errors: list[str] = []
    seen: set[str] = set()
    for entry in entries:
        problem = _check(entry, seen)
        if problem:
            errors.append(problem)
        else:
            links.append(entry)
    return links, ", ".join(errors)


def _without_comments(value: str) -> str:
    """``value`` without its ``( ... )`` comments (each up to the first ``)`` after it)."""
    pieces, pos = [], 0
    while (start := value.find("(", pos)) >= 0:
        end = value.find(")", start + 1)
        if end < 0:
            break
        pieces.append(value[pos:start])
        pos = end + 1
    if not pieces:
        return value
    pieces.append(value[pos:])
    return "".join(pieces).strip()


def _entries(value: str) -> tuple[list[str], list[str]]:
    """The ``<...>`` entries of one line (each up to the first ``>``) and the text between them."""
    entries, joins, pos, last_end, newline = [], [], 0, -1, -1
    while (start := value.find("<", pos)) >= 0:
        end = value.find(">", start + 1)
        if end < 0:
            break
        if newline < start:  # the next line end (each searched for once: linear)
            newline = value.find("\n", start + 1)
            newline = len(value) if newline < 0 else newline
        if newline < end:  # an entry does not span lines
            pos = newline + 1
            continue
        if last_end >= 0:
            joins.append(value[last_end:start])
        entries.append(value[start + 1:end])
        pos = last_end = end + 1
    return entries, joins


def _check(entry: str, seen: set[str]) -> str:
    """What is wrong with one entry ("" when it is a link to offer); ``seen`` collects the kinds."""
    if _SPACE_RE.search(entry):
        return f'"{entry}" should not contain spaces'
    if _MAILTO_RE.match(entry):
        kind, twice = "mailto", f'"{entry}" should only contain one mailto:'
    elif _HTTP_RE.match(entry):
        kind, twice = "http", f'"{entry}" should only contain one HTTP link'
    else:
        return f'"{entry}" should start with either http(s):// or mailto:'
    if kind in seen:
        return twice
    seen.add(kind)
    return _url_problem(entry)


def _url_problem(url: str) -> str:
    """Go's ``url.ParseRequestURI`` errors that can happen to a link that starts well."""
    if _CONTROL_RE.search(url):
        return f'parse "{url}": net/url: invalid control character in URL'
    bad = _BAD_ESCAPE_RE.search(url)
    if bad is not None:
        return f'parse "{url}": invalid URL escape "{url[bad.start():bad.start() + 3]}"'
    if url[:4].lower() == "http":
        host = url.split("://", 1)[1].split("/", 1)[0].split("?", 1)[0].rsplit("@", 1)[-1]
        if not host.endswith("]") and ":" in host:
            port = host.rsplit(":", 1)[1]
            if not port.isdigit() and port:
                return f'parse "{url}": invalid port ":{port}" after host'
    return ""
