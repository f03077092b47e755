"""Mailpit's JSON shapes that are built from more than one value (importable without aiohttp:
the CLI's ``--json`` prints the same). A message summary and detail are in :mod:`smtp_sink.message`."""

from __future__ import annotations

import os
import resource
import time
from pathlib import Path
from typing import Any, Protocol

from .. import __version__
from ..index import INDEX_FILE, Page

__all__ = ["Counted", "info_json", "page_json"]


class Counted(Protocol):
    """What ``/api/v1/info`` reads of a store (:class:`smtp_sink.store.Store`)."""

    path: Path
    started: float  # Unix time the counters start at
    deleted: int  # messages deleted since then
    saved_bytes: int  # bytes of the messages saved since then

    @property
    def saved(self) -> int: ...  # messages saved since then

    def counts(self) -> tuple[int, int]: ...  # (total, unread)

    def index_size(self) -> int: ...

    def tag_counts(self) -> dict[str, int]: ...


def page_json(page: Page) -> dict[str, Any]:
    """``GET /api/v1/messages`` and ``/api/v1/search`` (Mailpit's ``MessagesSummary``, its key
    order): ``total``/``unread`` count the store, ``messages_count``/``messages_unread`` the
    messages the query matches (the store's counts without one), ``start`` the offset asked for,
    ``count`` the messages on this page, ``tags`` every tag in the store."""
    return {
        "total": page.total,
        "unread": page.unread,
        "count": len(page.messages),
        "messages_count": page.matched,
        "messages_unread": page.matched_unread,
        "start": page.start,
        "tags": list(page.tags),
        "messages": [summary.to_json() for summary in page.messages],
    }


def info_json(store: Counted, now: float | None = None, rejected: int = 0) -> dict[str, Any]:
    """``GET /api/v1/info`` (Mailpit's ``AppInformation``): the version (``LatestVersion`` is
    ``"disabled"``: no look-up on the network), the index file and its size, the counts, each
    tag with its number of messages, and what this process did since it started (``rejected``:
    the recipients it refused)."""
    now = time.time() if now is None else now
    total, unread = store.counts()
    return {
        "Version": __version__,
        "LatestVersion": "disabled",
        "Database": str(store.path / INDEX_FILE),
        "DatabaseSize": store.index_size(),
        "Messages": total,
        "Unread": unread,
        "Tags": dict(sorted(store.tag_counts().items())),
        "RuntimeStats": {
            "Uptime": max(0, int(now - store.started)),
            "Memory": memory(),
            "MessagesDeleted": store.deleted,
            "SMTPAccepted": store.saved,
            "SMTPAcceptedSize": store.saved_bytes,
            "SMTPRejected": rejected,
            "SMTPIgnored": 0,
        },
    }


def memory() -> int:
    """Bytes of memory this process holds (resident set; its peak where /proc is missing)."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if os.uname().sysname == "Darwin" else peak * 1024
