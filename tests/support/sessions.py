"""Reading the sessions a test server recorded (issue 17)."""

from __future__ import annotations

import time
from collections.abc import Callable

from smtp_sink.server import SinkServer
from smtp_sink.session_lint import with_findings
from smtp_sink.sessions import Session, SessionStore


def recorded(server: SinkServer) -> list[Session]:
    """Every session the server recorded so far, newest first, with their findings (the loop is
    let finish what it does, then the transcripts are written)."""
    server.smtp.recorder.settle(server.smtp.loop)
    page = SessionStore(server.store.path).list(limit=0, events=True)
    return [with_findings(s) for s in page.sessions]


def wait_session(server: SinkServer, matching: Callable[[Session], bool] = lambda s: True,
                 timeout: float = 10.0) -> Session:
    """The newest recorded session ``matching`` accepts, waiting for it (a client that closes
    without QUIT is noticed a moment later)."""
    deadline = time.monotonic() + timeout
    while True:
        found = [s for s in recorded(server) if matching(s)]
        if found:
            return found[0]
        if time.monotonic() > deadline:
            raise AssertionError(f"no such session within {timeout} s; recorded: "
                                 f"{[(s.client, s.outcome, s.commands) for s in recorded(server)]}")
        time.sleep(0.05)
