"""The SQLite index of a store (``<store>/index.sqlite``): summaries, read flags, full-text search.

The index is a cache of the ``.eml`` files: deleting it, or a corrupt or older-schema file,
makes it rebuild from the files. It holds one row per message (the summary as JSON and the read
flag), an FTS5 table over subject, sender, recipients and body text, and counters kept by
triggers, so listing a page costs O(page) and counting costs O(1) however big the store is.
WAL mode and a busy timeout make it safe for several processes (the server writes, the CLI
reads and marks). One connection per :class:`Index`, guarded by a lock (threads share it).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .ids import encode
from .message import Summary

SCHEMA_VERSION = 1
INDEX_FILE = "index.sqlite"
_TERM_RE = re.compile(r'(?:(\w+):)?("[^"]*"?|\S+)')
_WORD_RE = re.compile(r"[^\W_]", re.UNICODE)

# Search prefixes -> FTS columns. A plain word matches every column.
PREFIXES = {
    "from": "sender",
    "to": "recipients",
    "cc": "recipients",
    "bcc": "recipients",
    "subject": "subject",
    "body": "body",
}

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS messages (
    n INTEGER PRIMARY KEY,          -- rowid, shared with the fts table
    id TEXT NOT NULL UNIQUE,        -- the message id: sorting by it sorts by arrival
    read INTEGER NOT NULL DEFAULT 0,
    summary TEXT NOT NULL           -- Summary.to_json() without Read
);
CREATE INDEX IF NOT EXISTS messages_unread ON messages(id) WHERE read = 0;
CREATE VIRTUAL TABLE IF NOT EXISTS fts USING fts5(
    subject, sender, recipients, body, tokenize = 'unicode61 remove_diacritics 2'
);
CREATE TABLE IF NOT EXISTS stats (
    k INTEGER PRIMARY KEY CHECK (k = 0),
    total INTEGER NOT NULL,
    unread INTEGER NOT NULL
);
INSERT OR IGNORE INTO stats VALUES (0, 0, 0);
CREATE TRIGGER IF NOT EXISTS messages_insert AFTER INSERT ON messages BEGIN
    UPDATE stats SET total = total + 1, unread = unread + (new.read = 0);
END;
CREATE TRIGGER IF NOT EXISTS messages_delete AFTER DELETE ON messages BEGIN
    UPDATE stats SET total = total - 1, unread = unread - (old.read = 0);
    DELETE FROM fts WHERE rowid = old.n;
END;
CREATE TRIGGER IF NOT EXISTS messages_read AFTER UPDATE OF read ON messages BEGIN
    UPDATE stats SET unread = unread + (new.read = 0) - (old.read = 0);
END;
PRAGMA user_version = {SCHEMA_VERSION};
"""


@dataclass
class Page:
    """One page of a listing or search: ``total``/``unread`` count the whole store,
    ``matched`` the messages the query matches (``total`` when there is no query)."""

    total: int
    unread: int
    messages: list[Summary]
    matched: int = 0
    start: int = 0


@dataclass
class Query:
    """A parsed search: FTS expression plus column filters."""

    fts: str = ""
    since_id: str = ""
    after_id: str = ""
    read: bool | None = None
    empty: bool = False  # a term that can match nothing (e.g. only punctuation)
    terms: list[tuple[str, str]] = field(default_factory=list)


def id_floor(when: float) -> str:
    """The smallest id a message arriving at Unix time ``when`` can have."""
    return encode(max(0, int(when * 1000)), 10) + "0" * 16


def _phrase(column: str | None, value: str) -> str:
    """One FTS5 term: the value as a quoted phrase whose last word is a prefix."""
    quoted = '"' + value.replace('"', '""') + '"*'
    return f"{column} : {quoted}" if column else quoted


def parse_query(search: str | None = None, **filters: Any) -> Query:
    """Build a :class:`Query` from a search string and the filters ``from_``, ``to``, ``subject``,
    ``since`` (Unix time), ``after`` (an id: only newer messages) and ``read`` (bool).

    Words are ANDed; ``from:``, ``to:``, ``subject:`` (also ``cc:``, ``bcc:``, ``body:``) limit a
    word to a field; ``"quoted words"`` match as a phrase; ``is:read`` and ``is:unread`` filter
    on the read flag. Matching is by word prefix: ``exam`` finds ``alice@example.test``.
    """
    query = Query()
    terms: list[tuple[str | None, str]] = []
    for prefix, value in _TERM_RE.findall(search or ""):
        key = prefix.lower()
        value = value.strip('"')
        if key == "is" and value.lower() in ("read", "unread"):
            query.read = value.lower() == "read"
        elif key in PREFIXES:
            terms.append((PREFIXES[key], value))
        else:
            terms.append((None, f"{prefix}:{value}" if prefix else value))
    for name, column in (("from_", "sender"), ("from", "sender"), ("to", "recipients"), ("subject", "subject")):
        if filters.get(name):
            terms.append((column, str(filters[name])))
    parts = []
    for column, value in terms:
        if not _WORD_RE.search(value):
            if value:
                query.empty = True
            continue
        parts.append(_phrase(column, value))
        query.terms.append((column or "", value))
    query.fts = " AND ".join(parts)
    since = filters.get("since")
    if since:
        query.since_id = id_floor(float(since))
    if filters.get("after"):
        query.after_id = str(filters["after"])
    if filters.get("read") is not None:
        query.read = bool(filters["read"])
    return query


class IndexCorrupt(Exception):
    """The index file is damaged; the caller rebuilds it."""


class Index:
    """The SQLite index of one store folder."""

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.path = Path(folder) / INDEX_FILE
        self.lock = threading.RLock()
        self.rebuilt = False  # True when this open started from an empty file
        self.db = self._open()

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=30, check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = NORMAL")
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version not in (0, SCHEMA_VERSION):
            db.close()
            raise IndexCorrupt(f"schema version {version}")
        if version == 0:
            self.rebuilt = True
        db.executescript(_SCHEMA)
        db.execute("SELECT total FROM stats").fetchone()
        return db

    def _open(self) -> sqlite3.Connection:
        """Open the index, replacing a damaged or outdated file with an empty one."""
        try:
            return self._connect()
        except (IndexCorrupt, sqlite3.DatabaseError) as exc:
            if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
                raise
            self.remove_files()
            self.rebuilt = True
            return self._connect()

    def remove_files(self) -> None:
        for suffix in ("", "-wal", "-shm", "-journal"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(f"{self.path}{suffix}")

    def reset(self) -> None:
        """Throw the file away and start an empty one (after corruption was detected)."""
        with self.lock:
            with contextlib.suppress(sqlite3.Error):
                self.db.close()
            self.remove_files()
            self.db = self._connect()
            self.rebuilt = True

    def close(self) -> None:
        with self.lock, contextlib.suppress(sqlite3.Error):
            self.db.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction (``BEGIN IMMEDIATE``: waits for other writers, then holds the lock)."""
        with self.lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                yield self.db
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")

    # -- writing ---------------------------------------------------------------------------

    def insert(self, summaries: Iterable[Summary]) -> list[Summary]:
        """Add summaries; return those that were not indexed yet."""
        added = []
        with self.transaction() as db:
            for summary in summaries:
                data = summary.to_json()
                del data["Read"]
                cursor = db.execute(
                    "INSERT OR IGNORE INTO messages (id, read, summary) VALUES (?, ?, ?)",
                    (summary.id, int(summary.read), json.dumps(data)),  # ASCII: survives any stray surrogate
                )
                if cursor.rowcount != 1:
                    continue
                db.execute(
                    "INSERT INTO fts (rowid, subject, sender, recipients, body) VALUES (?, ?, ?, ?, ?)",
                    (cursor.lastrowid, *map(_safe, (summary.subject, _sender_text(summary),
                                                    _recipient_text(summary), summary.text or summary.snippet))),
                )
                added.append(summary)
        return added

    def remove(self, ids: Iterable[str]) -> list[str]:
        """Remove rows; return the ids that were indexed."""
        removed = []
        with self.transaction() as db:
            for message_id in ids:
                if db.execute("DELETE FROM messages WHERE id = ?", (message_id,)).rowcount:
                    removed.append(message_id)
        return removed

    def set_read(self, ids: Iterable[str] | None, read: bool = True) -> int:
        """Set the read flag of ``ids`` (every message when None); return how many changed."""
        flag = int(read)
        with self.transaction() as db:
            if ids is None:
                return db.execute("UPDATE messages SET read = ? WHERE read != ?", (flag, flag)).rowcount
            return sum(
                db.execute("UPDATE messages SET read = ? WHERE id = ? AND read != ?", (flag, i, flag)).rowcount
                for i in ids
            )

    # -- reading ---------------------------------------------------------------------------

    def ids(self) -> set[str]:
        with self.lock:
            return {row[0] for row in self.db.execute("SELECT id FROM messages")}

    def existing(self, ids: list[str]) -> set[str]:
        """Which of ``ids`` are indexed."""
        found: set[str] = set()
        with self.lock:
            for chunk in range(0, len(ids), 500):
                part = ids[chunk:chunk + 500]
                marks = ",".join("?" * len(part))
                found.update(r[0] for r in self.db.execute(f"SELECT id FROM messages WHERE id IN ({marks})", part))
        return found

    def counts(self) -> tuple[int, int]:
        """``(total, unread)`` for the whole store, O(1)."""
        with self.lock:
            total, unread = self.db.execute("SELECT total, unread FROM stats").fetchone()
        return total, unread

    def get(self, message_id: str) -> Summary | None:
        with self.lock:
            row = self.db.execute("SELECT summary, read FROM messages WHERE id = ?", (message_id,)).fetchone()
        return _summary(row) if row else None

    def latest_id(self) -> str | None:
        with self.lock:
            row = self.db.execute("SELECT max(id) FROM messages").fetchone()
        return row[0] if row else None

    def oldest(self, count: int) -> list[str]:
        with self.lock:
            return [r[0] for r in self.db.execute("SELECT id FROM messages ORDER BY id LIMIT ?", (count,))]

    def older_than(self, message_id: str) -> list[str]:
        with self.lock:
            return [r[0] for r in self.db.execute("SELECT id FROM messages WHERE id < ?", (message_id,))]

    def page(self, start: int = 0, limit: int = 50, search: str | None = None, **filters: Any) -> Page:
        """Newest first: ``limit`` messages from ``start`` that match the query."""
        query = parse_query(search, **filters)
        total, unread = self.counts()
        if query.empty:
            return Page(total, unread, [], 0, start)
        where, params = [], []
        if query.fts:
            where.append("n IN (SELECT rowid FROM fts WHERE fts MATCH ?)")
            params.append(query.fts)
        if query.since_id:
            where.append("id >= ?")
            params.append(query.since_id)
        if query.after_id:
            where.append("id > ?")
            params.append(query.after_id)
        if query.read is not None:
            where.append("read = ?")
            params.append(int(query.read))
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        with self.lock:
            try:
                rows = self.db.execute(
                    f"SELECT summary, read FROM messages{clause} ORDER BY id DESC LIMIT ? OFFSET ?",
                    [*params, max(0, limit), max(0, start)],
                ).fetchall()
                if not where:
                    matched = total
                elif where == ["read = ?"]:
                    matched = unread if not query.read else total - unread
                else:
                    matched = self.db.execute(f"SELECT count(*) FROM messages{clause}", params).fetchone()[0]
            except sqlite3.OperationalError as exc:
                if "fts5" in str(exc) or "syntax" in str(exc):  # a query FTS cannot parse matches nothing
                    return Page(total, unread, [], 0, start)
                raise
        return Page(total, unread, [_summary(row) for row in rows], matched, start)


def _safe(text: str) -> str:
    """Text SQLite can store (UTF-8): a lone surrogate becomes U+FFFD."""
    return text.encode("utf-8", "replace").decode("utf-8") if not text.isascii() else text


def _summary(row: tuple[str, int]) -> Summary:
    return Summary.from_json(json.loads(row[0]), read=bool(row[1]))


def _sender_text(summary: Summary) -> str:
    parts = [summary.mail_from]
    if summary.sender:
        parts += [summary.sender.name, summary.sender.address]
    return " ".join(p for p in parts if p)


def _recipient_text(summary: Summary) -> str:
    parts = list(summary.rcpt_to)
    for address in [*summary.to, *summary.cc, *summary.bcc]:
        parts += [address.name, address.address]
    return " ".join(p for p in parts if p)
