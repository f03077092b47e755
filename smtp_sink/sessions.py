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

import collections
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

__all__ = ["DB_NAME", "KINDS", "OUTCOMES", "Event", "Page", "Session", "SessionStore", "TLSInfo", "render"]

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
    ``refused``: a 5xx answered the connection, a MAIL, RCPT or DATA command, or the message data;
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


# -- display events from the recorder's raw events (see smtp_sink.recorder.raw_events) ---------------


def _reply_text(code: int, lines: list[str]) -> str:
    last = len(lines) - 1
    return "\n".join(f"{code}{'-' if n < last else ' '}{line}" for n, line in enumerate(lines)) or str(code)


def _line_text(line: str) -> str:
    """A command line without its CRLF (a bare CR or LF is kept: the lint reads them)."""
    return line[:-2] if line.endswith("\r\n") else line


class _Renderer:
    """Pairs each command with the outputs it caused, in order: the display events of a session."""

    def __init__(self, raw: list[Any], message_ids: list[str], dropped: int) -> None:
        self.raw, self.message_ids, self.dropped = raw, message_ids, dropped
        self.events: list[Event] = []
        self.stored = collections.deque(e for e in raw if e[0] == "M")

    def add(self, t: float, kind: str, text: str, chunk: int) -> None:
        self.events.append(Event(round(max(0.0, float(t)), 6), kind, text, chunk))

    def output(self, t: float, item: Any, chunk: int) -> None:
        if isinstance(item, list) and isinstance(item[0], int):
            self.add(t, "S", _reply_text(item[0], item[1]), chunk)
        elif item == "DELIVERED":
            if not self.stored:
                self.add(t, "N", "message not stored: the connection closed first", chunk)
                return
            _, _, message_id, size, code, lines = self.stored.popleft()
            if message_id is not None:
                self.add(t, "M", f"message {message_id} stored ({size} bytes)", chunk)
            self.add(t, "S", _reply_text(code, lines), chunk)
        elif isinstance(item, list) and item[0] == "DELAY":
            self.add(t, "N", f"fault rule: delay {item[1]:g} s", chunk)
        elif isinstance(item, list) and item[0] == "THROTTLE":
            self.add(t, "N", f"fault rule: throttle to {item[1]} bytes/s", chunk)
        elif item == "START_TLS":
            self.add(t, "N", "TLS handshake", chunk)
        elif item == "CLOSE":
            self.add(t, "N", "connection closed by the server", chunk)

    @staticmethod
    def answers(item: Any) -> bool:
        """The output that answers a command: a reply, a stored message's reply, or the close."""
        return (isinstance(item, list) and isinstance(item[0], int)) or item in ("DELIVERED", "CLOSE")

    def feed(self, t: float, chunk: int, lines: list[str | int], outputs: list[Any]) -> None:
        at = 0
        for number, line in enumerate(lines):
            if isinstance(line, int):
                self.add(t, "D", f"{line} bytes of message data", chunk)
                if number == len(lines) - 1:
                    continue  # the last input of the feed: what is left answers it (or nothing yet)
            else:
                self.add(t, "C", _line_text(line), chunk)
            while at < len(outputs):  # the outputs up to and including the answer
                item = outputs[at]
                at += 1
                self.output(t, item, chunk)
                if self.answers(item):
                    break
        for item in outputs[at:]:  # the greeting, a data phase's end, held-back outputs
            self.output(t, item, chunk)

    def render(self) -> tuple[Event, ...]:
        for event in self.raw:
            kind = event[0]
            if kind == "F":
                self.feed(event[1], event[2], event[3], event[4])
            elif kind == "T":
                self.add(event[1], "T", f"TLS {event[2]} {event[3]}", 0)
            elif kind == "N":
                self.add(event[1], "N", str(event[2]), 0)
        last = self.events[-1].time if self.events else 0.0
        shown = {e[2] for e in self.raw if e[0] == "M"}
        for message_id in self.message_ids:  # stored past the cap: the id is still shown
            if message_id not in shown:
                self.add(last, "M", f"message {message_id} stored", 0)
        # one D event per data phase: a count followed at once by a larger one is dropped
        events = [e for n, e in enumerate(self.events)
                  if not (e.kind == "D" and n + 1 < len(self.events) and self.events[n + 1].kind == "D")]
        if self.dropped:
            events.append(Event(events[-1].time if events else 0.0, "X", f"({self.dropped} more events dropped)", 0))
        return tuple(events)


def render(raw: list[Any], message_ids: list[str], dropped: int) -> tuple[Event, ...]:
    """The display events of a recorded session from its raw events (bounded by ``max_events``)."""
    return _Renderer(raw, message_ids, dropped).render()


def _row_session(row: sqlite3.Row, events: bool) -> Session:
    tls = TLSInfo(row["tls_version"], row["tls_cipher"]) if row["tls_version"] else None
    message_ids = json.loads(row["message_ids"])
    decoded: tuple[Event, ...] = ()
    if events:
        decoded = render(json.loads(row["events"]), message_ids, row["dropped"])
    return Session(
        id=row["id"], client=row["client"], helo=row["helo"], tls=tls, auth_user=row["auth_user"],
        started=row["started"], ended=row["ended"], outcome=row["outcome"], refused=bool(row["refused"]),
        message_ids=tuple(message_ids), events=decoded, dropped=row["dropped"],
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
