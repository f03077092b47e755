"""Recorded SMTP sessions (issue 17): :class:`Session` and its :class:`Event` list, and
:class:`SessionStore`, the SQLite file ``<store>/sessions.sqlite3`` they are kept in.

The server records each session on the event loop as cheap tuples (:mod:`smtp_sink.recorder`)
and a thread of each SMTP process writes finished sessions here in batches. SQLite serialises
the writers, so several SMTP processes (``--workers``) may share one store folder; readers (the
HTTP API, the CLI, the pytest plugin) open the file on their own. Retention (``[sessions]
max_sessions`` and ``max_age``) is applied by every batch written. The file is not the message
index: deleting messages leaves their sessions, and rebuilding the index keeps them.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .findings import Finding
from .ids import is_id

__all__ = ["DB_NAME", "KINDS", "OUTCOMES", "Event", "Page", "Session", "SessionStore", "TLSInfo"]

DB_NAME = "sessions.sqlite3"
BUSY_TIMEOUT = 10.0  # seconds a writer or reader waits for another process's write
# How a session ended: QUIT answered; the client went away; an idle, command or data timeout
# (421); a fault rule closed it; the server shut down (421); an internal error (421/451);
# refused at once because max_connections were open (421).
OUTCOMES = ("quit", "disconnect", "timeout", "rule", "shutdown", "error", "overload")
# Event kinds: C a command line, D message data (its size), S a reply, M a message stored,
# T TLS started, N a note (a delay rule, a failed handshake...), X events dropped past the cap.
KINDS = ("C", "D", "S", "M", "T", "N", "X")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY, started REAL NOT NULL, ended REAL NOT NULL, client TEXT NOT NULL,
    helo TEXT NOT NULL, tls_version TEXT NOT NULL, tls_cipher TEXT NOT NULL, auth_user TEXT,
    outcome TEXT NOT NULL, refused INTEGER NOT NULL, messages INTEGER NOT NULL, message_ids TEXT NOT NULL,
    events TEXT NOT NULL, dropped INTEGER NOT NULL, pid INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS sessions_started ON sessions (started);
CREATE TABLE IF NOT EXISTS session_messages (
    message_id TEXT PRIMARY KEY, session_id TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS session_messages_session ON session_messages (session_id);
"""
_COLUMNS = ("id", "started", "ended", "client", "helo", "tls_version", "tls_cipher", "auth_user", "outcome",
            "refused", "messages", "message_ids", "events", "dropped", "pid")


@dataclass(frozen=True, slots=True)
class TLSInfo:
    """The TLS of a session (STARTTLS or implicit TLS), from its SSL object."""

    version: str
    cipher: str


@dataclass(frozen=True, slots=True)
class Event:
    """One step of a session: ``time`` in seconds since it started, ``kind`` one of :data:`KINDS`,
    ``text`` (a command line without its CRLF, a reply's lines joined by newlines...), and the
    ``chunk`` of input it arrived in (commands of one chunk were sent without waiting for a reply)."""

    time: float
    kind: str
    text: str
    chunk: int = 0

    def to_json(self) -> dict[str, Any]:
        """The API's shape."""
        return {"Time": self.time, "Kind": self.kind, "Text": self.text, "Chunk": self.chunk}


@dataclass(frozen=True)
class Session:
    """One recorded SMTP session (see the module doc). ``started``/``ended`` are Unix times;
    ``refused``: a 5xx answered the connection, MAIL, RCPT, DATA or the message data;
    ``findings``: the command-stream lint (filled in by :func:`smtp_sink.session_lint.with_findings`)."""

    id: str
    client: str
    helo: str
    tls: TLSInfo | None
    auth_user: str | None
    started: float
    ended: float
    outcome: str
    refused: bool
    message_ids: tuple[str, ...]
    events: tuple[Event, ...]
    dropped: int = 0
    findings: tuple[Finding, ...] = field(default=())

    @property
    def duration(self) -> float:
        """Seconds from connect to the end."""
        return max(0.0, self.ended - self.started)

    @property
    def commands(self) -> list[str]:
        """The command lines the client sent, in order (credentials masked)."""
        return [e.text for e in self.events if e.kind == "C"]

    @property
    def replies(self) -> list[str]:
        """The replies the server sent, in order (each with its lines joined by newlines)."""
        return [e.text for e in self.events if e.kind == "S"]

    @property
    def delivered(self) -> bool:
        """At least one message was stored."""
        return bool(self.message_ids)

    def to_json(self, events: bool = True) -> dict[str, Any]:
        """The API's shape: the summary (``events=False``, for lists) or everything recorded."""
        value: dict[str, Any] = {
            "ID": self.id, "Client": self.client, "Helo": self.helo,
            "TLS": None if self.tls is None else {"Version": self.tls.version, "Cipher": self.tls.cipher},
            "AuthUser": self.auth_user, "Started": self.started, "Ended": self.ended, "Outcome": self.outcome,
            "Refused": self.refused, "MessageIDs": list(self.message_ids), "Dropped": self.dropped,
        }
        if events:
            value["Events"] = [e.to_json() for e in self.events]
            value["Findings"] = [f.to_json() for f in self.findings]
        return value


@dataclass(frozen=True)
class Page:
    """One page of a session list: ``total`` matching the filters, ``count`` of every session."""

    sessions: list[Session]
    total: int
    count: int


def _row_session(row: sqlite3.Row, events: bool) -> Session:
    tls = TLSInfo(row["tls_version"], row["tls_cipher"]) if row["tls_version"] else None
    decoded: tuple[Event, ...] = ()
    if events:
        decoded = tuple(Event(float(t), str(k), str(x), int(c)) for t, k, x, c in json.loads(row["events"]))
    return Session(
        id=row["id"], client=row["client"], helo=row["helo"], tls=tls, auth_user=row["auth_user"],
        started=row["started"], ended=row["ended"], outcome=row["outcome"], refused=bool(row["refused"]),
        message_ids=tuple(json.loads(row["message_ids"])), events=decoded, dropped=row["dropped"],
    )


class SessionStore:
    """``<store>/sessions.sqlite3``: finished sessions, written in batches, read by id or in pages."""

    def __init__(self, folder: str | os.PathLike[str], max_sessions: int = 0, max_age: float = 0.0) -> None:
        self.path = Path(folder) / DB_NAME
        self.max_sessions = max_sessions  # retention applied by write (0: none)
        self.max_age = max_age

    @contextlib.contextmanager
    def _connect(self, create: bool = False) -> Iterator[sqlite3.Connection]:
        if not create and not self.path.exists():
            raise FileNotFoundError(self.path)
        if create:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT, isolation_level=None)
        try:
            db.row_factory = sqlite3.Row
            if create:
                db.execute("PRAGMA journal_mode=WAL")
                db.executescript(_SCHEMA)
            yield db
        finally:
            db.close()

    def write(self, rows: Sequence[dict[str, Any]]) -> None:
        """Insert finished sessions (rows of the table's columns) in one transaction, then apply retention."""
        with self._connect(create=True) as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                db.executemany(f"INSERT OR REPLACE INTO sessions ({', '.join(_COLUMNS)}) VALUES "
                               f"({', '.join('?' * len(_COLUMNS))})", [[row[c] for c in _COLUMNS] for row in rows])
                db.executemany("INSERT OR REPLACE INTO session_messages VALUES (?, ?)",
                               [(m, row["id"]) for row in rows for m in json.loads(row["message_ids"])])
                self._retain(db)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

    def _retain(self, db: sqlite3.Connection) -> None:
        """Drop sessions past ``max_age`` and beyond the newest ``max_sessions`` (with their message links)."""
        if self.max_age > 0:
            self._drop(db, "started < ?", (time.time() - self.max_age,))
        if self.max_sessions > 0:
            found = db.execute("SELECT started FROM sessions ORDER BY started DESC, id DESC LIMIT 1 OFFSET ?",
                               (self.max_sessions,)).fetchone()
            if found is not None:
                self._drop(db, "id IN (SELECT id FROM sessions ORDER BY started DESC, id DESC LIMIT -1 OFFSET ?)",
                           (self.max_sessions,))

    @staticmethod
    def _drop(db: sqlite3.Connection, where: str, args: tuple[Any, ...]) -> None:
        db.execute(f"DELETE FROM session_messages WHERE session_id IN (SELECT id FROM sessions WHERE {where})", args)
        db.execute(f"DELETE FROM sessions WHERE {where}", args)

    def get(self, session_id: str) -> Session | None:
        """The session with this id (everything recorded), or None."""
        if not is_id(session_id):
            return None
        try:
            with self._connect() as db:
                row = db.execute("SELECT * FROM sessions WHERE id = ?", (session_id,)).fetchone()
        except (FileNotFoundError, sqlite3.OperationalError):  # no session recorded yet
            return None
        return None if row is None else _row_session(row, events=True)

    def session_of(self, message_id: str) -> str | None:
        """The id of the session that delivered a message, or None."""
        try:
            with self._connect() as db:
                row = db.execute("SELECT session_id FROM session_messages WHERE message_id = ?",
                                 (message_id,)).fetchone()
        except (FileNotFoundError, sqlite3.OperationalError):
            return None
        return None if row is None else str(row[0])

    def list(self, start: int = 0, limit: int = 50, *, client: str | None = None, outcome: str | None = None,
             since: float | None = None, until: float | None = None, events: bool = False) -> Page:
        """Newest first, ``limit`` from ``start`` (0: all), filtered by client address, outcome (one of
        :data:`OUTCOMES`, or ``refused`` / ``delivered`` / ``undelivered``) and start time
        (``since`` <= started < ``until``)."""
        where: list[str] = []
        args: list[str | float] = []
        if client:
            where.append("client = ?")
            args.append(client)
        if outcome == "refused":
            where.append("refused = 1")
        elif outcome == "delivered":
            where.append("messages > 0")
        elif outcome == "undelivered":
            where.append("messages = 0")
        elif outcome:
            where.append("outcome = ?")
            args.append(outcome)
        if since is not None:
            where.append("started >= ?")
            args.append(since)
        if until is not None:
            where.append("started < ?")
            args.append(until)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        try:
            with self._connect() as db:
                count = db.execute("SELECT count(*) FROM sessions").fetchone()[0]
                total = db.execute(f"SELECT count(*) FROM sessions {clause}", args).fetchone()[0]
                columns = "*" if events else ", ".join(c for c in _COLUMNS if c != "events")
                rows = db.execute(f"SELECT {columns} FROM sessions {clause} ORDER BY started DESC, id DESC "
                                  "LIMIT ? OFFSET ?", [*args, limit or -1, start]).fetchall()
        except (FileNotFoundError, sqlite3.OperationalError):
            return Page([], 0, 0)
        return Page([_row_session(row, events) for row in rows], total, count)
