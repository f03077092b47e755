"""Mailpit's JSON shapes that are built from more than one value (importable without aiohttp:
the CLI's ``--json`` prints the same). A message summary and detail are in :mod:`smtp_sink.message`."""

from __future__ import annotations

from typing import Any

from .. import __version__
from ..index import Page

__all__ = ["info_json", "page_json"]


def page_json(page: Page) -> dict[str, Any]:
    """``GET /api/v1/messages`` and ``/api/v1/search``: ``total``/``unread`` count the store,
    ``messages_count`` the messages the query matches (the store's total without one), ``start``
    the offset of this page, ``count`` the messages on it."""
    return {
        "total": page.total,
        "unread": page.unread,
        "count": len(page.messages),
        "messages_count": page.matched,
        "start": page.start,
        "tags": [],
        "messages": [summary.to_json() for summary in page.messages],
    }


def info_json(total: int, unread: int, database: str, smtp_port: int) -> dict[str, Any]:
    """``GET /api/v1/info``: the version, the store and its counts."""
    return {
        "Version": __version__,
        "LatestVersion": "",
        "Database": database,
        "DatabaseSize": 0,
        "Messages": total,
        "Unread": unread,
        "Tags": {},
        "RuntimeStats": {"SMTPAccepted": total, "SMTPPort": smtp_port},
    }
