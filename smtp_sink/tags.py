"""Tags: Mailpit's rules for their names and for the tags a message gets when it arrives.

A tag name is cleaned as Mailpit's ``CleanTag`` does: each character other than ASCII letters,
digits, ``-``, ``_``, ``.``, ``@`` and space becomes a space, white space is collapsed and
trimmed, and the name is cut to :data:`MAX_TAG_LENGTH` characters; an empty result is no tag.
Tags are one and the same in any case (``Urgent`` is ``urgent``): the index keeps the spelling
it saw first.

At arrival (:func:`arrival_tags`, with the ``[tags]`` configuration) a message is tagged with the
comma-separated names of its first ``X-Tags`` header, the ``+tag`` parts of its From, To, Cc and
Bcc addresses (``user+a+b@x`` gives ``a`` and ``b``), optionally in Title Case, and optionally
with the user name it was sent with (AUTH), and always with ``tls-not-verified`` when its client
took the TLS probe (:mod:`smtp_sink.tls_probe`). The ``[tags] filters`` (a search query, then
tags) are applied by the index, which runs the queries.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from .config import TagsConfig
from .summary import Summary

__all__ = ["MAX_TAG_LENGTH", "TagError", "arrival_tags", "clean_tag", "parse_filters", "title_case", "unique_tags"]

MAX_TAG_LENGTH = 100
TLS_NOT_VERIFIED = "tls-not-verified"  # the tag of mail sent over a TLS probe (tls_findings.ACCEPTED)
_INVALID_RE = re.compile(r"[^a-zA-Z0-9\- _.@]")
_WORD_CHARS = frozenset("'_")  # inside a word, as in Unicode word breaking (don't, snake_case)


class TagError(ValueError):
    """A tag operation that cannot be done (unknown tag, empty or taken name), in Mailpit's words."""


def clean_tag(name: str) -> str:
    """Mailpit's ``CleanTag`` (see the module doc): ``'Dirty! "Tag"'`` -> ``'Dirty Tag'``."""
    return " ".join(_INVALID_RE.sub(" ", name).split())[:MAX_TAG_LENGTH].rstrip()


def unique_tags(names: Iterable[str]) -> list[str]:
    """``names`` cleaned, without empty ones and without repeats in any case (the first spelling wins)."""
    found: dict[str, str] = {}
    for name in names:
        cleaned = clean_tag(name)
        if cleaned:
            found.setdefault(cleaned.lower(), cleaned)
    return list(found.values())


def title_case(name: str) -> str:
    """The first letter of each word upper case, the rest kept (``x-tag1`` -> ``X-Tag1``,
    ``fOO bar`` -> ``FOO Bar``): Go's ``cases.Title(language.Und, cases.NoLower)``."""
    chars = list(name)
    for at, char in enumerate(chars):
        before = chars[at - 1] if at else " "
        joined = before.isalnum() or before in _WORD_CHARS or (
            before == "." and at >= 2 and chars[at - 2].isalnum() and char.isalnum())
        if not joined:
            chars[at] = char.upper()
    return "".join(chars)


def plus_tags(address: str) -> list[str]:
    """The ``+`` parts of an address's local part: ``user+a+b@example.test`` -> ``['a', 'b']``."""
    plus = address.find("+")
    if plus < 0:
        return []
    at = address.find("@", plus + 1)
    return address[plus + 1:at].split("+") if at >= 0 else []


def arrival_tags(summary: Summary, config: TagsConfig) -> list[str]:
    """The tags a message gets when it arrives (see the module doc), cleaned and unique."""
    found: list[str] = []
    styled: list[str] = []
    if config.x_tags and summary.x_tags.strip():
        styled += summary.x_tags.strip().split(",")
    if config.plus_addresses:
        for address in [*summary.to, *summary.cc, *summary.bcc, *([summary.sender] if summary.sender else [])]:
            styled += plus_tags(address.address)
    found += [title_case(name) for name in styled] if config.title_case else styled
    if config.username and summary.username:
        found.append(summary.username)
    if summary.tls_probe:  # the server's trace block says so (content cannot): see tls_findings.py
        found.append(TLS_NOT_VERIFIED)
    return unique_tags(found)


def parse_filters(filters: dict[str, str]) -> list[tuple[str, list[str]]]:
    """``[tags] filters`` (search query -> comma-separated tags) as ``(query, tags)`` pairs; a
    filter without a valid tag is left out."""
    pairs = []
    for query, names in filters.items():
        tags = unique_tags(names.split(","))
        if query.strip() and tags:
            pairs.append((query, tags))
    return pairs
