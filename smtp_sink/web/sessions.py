"""Recorded SMTP sessions (issue 17): ``GET /api/v1/sessions`` (paged, newest first, filtered)
and ``GET /api/v1/session/{id}`` (everything recorded, with the command-stream findings). Read
from ``<store>/sessions.sqlite3`` in a reader thread (see :mod:`smtp_sink.sessions`)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from aiohttp import web

from ..errors import NotFound
from ..session_lint import with_findings
from ..sessions import OUTCOMES, SessionStore
from .common import APIError, json_off_loop, number, sink

LIST_LIMIT = 50  # sessions a page holds when no limit is given
FILTERS = (*OUTCOMES, "refused", "delivered", "undelivered")


def _store(request: web.Request) -> SessionStore:
    return SessionStore(sink(request).store.path)


def _time(request: web.Request, name: str) -> float | None:
    """A time filter: Unix seconds, or an RFC 3339 date (``2026-11-30T12:00:00Z``)."""
    text = request.query.get(name)
    if text is None or text == "":
        return None
    try:
        return float(text) if text.replace(".", "", 1).isdigit() else \
            _aware(datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))).timestamp()
    except (ValueError, OverflowError):
        raise APIError(400, f"{name} must be Unix seconds or an RFC 3339 date, got {text[:40]!r}") from None


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)


async def session_list(request: web.Request) -> web.Response:
    """``GET /api/v1/sessions?start=&limit=&client=&outcome=&since=&until=``: recorded SMTP sessions,
    newest first, delivered or not (``{"total", "sessions_count", "start", "count", "sessions"}``).

    ``outcome``: quit, disconnect, timeout, rule, shutdown, error, overload, or refused (a 5xx),
    delivered, undelivered; ``since``/``until``: when it started, Unix seconds or RFC 3339."""
    query = request.query
    start, limit = number(request, "start", 0), number(request, "limit", LIST_LIMIT)
    outcome = query.get("outcome") or None
    if outcome is not None and outcome not in FILTERS:
        raise APIError(400, f"outcome must be one of {', '.join(FILTERS)}, got {outcome[:40]!r}")
    client = query.get("client") or None
    since, until = _time(request, "since"), _time(request, "until")
    store = _store(request)

    def work() -> dict[str, Any]:
        page = store.list(start, limit, client=client, outcome=outcome, since=since, until=until)
        return {"total": page.count, "sessions_count": page.total, "start": start, "count": len(page.sessions),
                "sessions": [s.to_json(events=False) for s in page.sessions]}

    return await json_off_loop(request, work)


async def session_detail(request: web.Request) -> web.Response:
    """``GET /api/v1/session/{id}``: one recorded SMTP session: client, HELO, TLS, AUTH user, every
    command and reply with its time, how it ended, the messages it delivered, and the findings of
    the command-stream lint."""
    session_id = request.match_info["id"]
    store = _store(request)

    def work() -> dict[str, Any]:
        session = store.get(session_id)
        if session is None:
            raise NotFound("session", session_id)
        return with_findings(session).to_json()

    return await json_off_loop(request, work)


ROUTES = [
    web.get("/api/v1/sessions", session_list),
    web.get("/api/v1/session/{id}", session_detail),
]
