"""The pytest plugin's view of recorded SMTP sessions (issue 17): ``smtp_sink.sessions`` and each
captured message's ``.session``, read from the test server's store with their findings.

A session is recorded once it ends (QUIT answered, the client gone, a timeout); its transcript
is written by the recorder's thread a moment later. Reading here first lets the server's loop
finish what it is doing and the recorder write what is queued, so a session whose QUIT the
client saw answered is always there; one the client just dropped may take a moment
(:func:`wait_sessions`)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from .session_lint import with_findings
from .sessions import Session, SessionStore

if TYPE_CHECKING:
    from .server import SinkServer

__all__ = ["find", "recorded", "wait_sessions"]

POLL_INTERVAL = 0.02  # seconds between two looks


def recorded(server: SinkServer) -> list[Session]:
    """Every session the server recorded, oldest first, each with its findings."""
    server.smtp.recorder.settle(server.smtp.loop)
    page = SessionStore(server.store.path).list(limit=0, events=True)
    return [with_findings(session) for session in reversed(page.sessions)]


def wait_sessions(server: SinkServer, count: int, timeout: float) -> list[Session]:
    """:func:`recorded` once it holds at least ``count`` sessions; AssertionError after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        found = recorded(server)
        if len(found) >= count:
            return found
        if time.monotonic() >= deadline:
            raise AssertionError(f"smtp_sink.wait_for_sessions({count}): {len(found)} session(s) recorded after "
                                 f"{timeout:g} s (a session is recorded once it ends: QUIT, disconnect, timeout)")
        time.sleep(POLL_INTERVAL)


def find(server: SinkServer, session_id: str, timeout: float) -> Session | None:
    """The session ``session_id`` with its findings, waiting up to ``timeout`` s for it to end and be written."""
    store = SessionStore(server.store.path)
    deadline = time.monotonic() + timeout
    while True:
        server.smtp.recorder.settle(server.smtp.loop)
        found = store.get(session_id)
        if found is not None:
            return with_findings(found)
        if time.monotonic() >= deadline:
            return None
        time.sleep(POLL_INTERVAL)
