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
import errno
import json
import os
import re
import shutil
import sqlite3
import stat
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .ids import encode
from .summary import Summary

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
    for name, field_column in (("from_", "sender"), ("from", "sender"), ("to", "recipients"), ("subject", "subject")):
        if filters.get(name):
            terms.append((field_column, str(filters[name])))
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
    """The index file is damaged or inconsistent; the caller rebuilds it."""


class IndexUnavailable(OSError):
    """The index cannot be opened or written now (disk full, read-only, locked): not damage."""


# SQLite result codes (the low byte of an extended code) that say "not now", never "damaged".
_TRANSIENT_CODES = {5, 6, 7, 8, 10, 13, 14}  # BUSY LOCKED NOMEM READONLY IOERR FULL CANTOPEN
_TRANSIENT_WORDS = ("locked", "disk is full", "disk i/o error", "readonly", "unable to open", "out of memory")
_DAMAGE_WORDS = ("no such table", "no such column", "no such index", "malformed")
_REQUIRED = {
    ("table", "messages"), ("table", "stats"), ("table", "fts"), ("table", "fts_docsize"), ("index", "messages_unread"),
    ("trigger", "messages_insert"), ("trigger", "messages_delete"), ("trigger", "messages_read"),
}


def transient(exc: BaseException) -> bool:
    """True for an SQLite error that comes from the environment (full disk, lock, I/O), not damage."""
    if isinstance(exc, IndexUnavailable):
        return True
    if not isinstance(exc, sqlite3.OperationalError):
        return False
    code = getattr(exc, "sqlite_errorcode", None)  # Python 3.11+
    if code is not None:
        return code & 0xFF in _TRANSIENT_CODES
    return any(word in str(exc).lower() for word in _TRANSIENT_WORDS)


def damaged(exc: BaseException) -> bool:
    """True for an SQLite error that means the file is corrupt or lost part of its schema."""
    if isinstance(exc, IndexCorrupt):
        return True
    if isinstance(exc, sqlite3.OperationalError):
        return not transient(exc) and any(word in str(exc).lower() for word in _DAMAGE_WORDS)
    return type(exc) is sqlite3.DatabaseError  # "file is not a database", "disk image is malformed"


def inconsistency(db: sqlite3.Connection) -> str | None:
    """What is wrong with an index of the current schema version (None: consistent). One read
    transaction: schema objects, the ``stats`` row, and its counters against the rows."""
    db.execute("BEGIN")
    try:
        found = set(db.execute("SELECT type, name FROM sqlite_master"))
        missing = sorted(name for kind, name in _REQUIRED - found)
        if missing:
            return f"missing {', '.join(missing)}"
        stats = db.execute("SELECT total, unread FROM stats WHERE k = 0").fetchone()
        if stats is None:
            return "no stats row"
        # counted over the id index, the unread index and the search table's size table: a few ms per 100k
        rows = db.execute("SELECT count(*) FROM messages").fetchone()[0]
        unread = db.execute("SELECT count(*) FROM messages WHERE read = 0").fetchone()[0]
        if tuple(stats) != (rows, unread):
            return f"counters say {stats[0]} messages, {stats[1]} unread; the table holds {rows}, {unread} unread"
        searchable = db.execute("SELECT count(*) FROM fts_docsize").fetchone()[0]
        if searchable != rows:
            return f"{searchable} rows in the search table for {rows} messages"
        return None
    finally:
        db.execute("COMMIT")


class Index:
    """The SQLite index of one store folder (``memory``: a private in-memory one, used when the
    file cannot be opened, e.g. on a full disk).

    ``repair(id)`` re-derives the summary of a row whose stored summary does not read back
    (returns None when the message is gone)."""

    def __init__(
        self, folder: str | os.PathLike[str], *, memory: bool = False,
        repair: Callable[[str], Summary | None] | None = None,
    ) -> None:
        self.path = Path(folder) / INDEX_FILE
        self.memory = memory
        self.repair = repair
        self.lock = threading.RLock()
        self.rebuilt = False  # True when this open started from an empty file
        self.problem: str | None = None  # why an existing file was thrown away
        self.identity: tuple[int, int] | None = None  # (st_dev, st_ino) of the file opened
        self._carried: set[str] = set()  # ids read in a file thrown away: still read once re-added
        self.db = self._open()

    def _connect(self) -> sqlite3.Connection:
        """Connect; create the schema in an empty file, check an existing one (reads only: this
        works on a full disk). Raises :class:`IndexCorrupt` for a file that must be rebuilt."""
        if self.memory:
            db = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
            db.executescript(_SCHEMA)
            self.rebuilt = True
            return db
        self._clear_the_way()
        db = sqlite3.connect(self.path, timeout=30, check_same_thread=False, isolation_level=None)
        try:
            db.execute("BEGIN")  # one snapshot: another process may be creating the schema right now
            version = db.execute("PRAGMA user_version").fetchone()[0]
            objects = db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
            db.execute("COMMIT")
            if version == 0:
                if objects:
                    raise IndexCorrupt("a database that is not an index")
                db.execute("PRAGMA journal_mode = WAL")
                db.executescript(f"BEGIN IMMEDIATE; {_SCHEMA} COMMIT;")  # others see all of it or nothing
                self.rebuilt = True
            elif version != SCHEMA_VERSION:
                raise IndexCorrupt(f"schema version {version}, this program uses {SCHEMA_VERSION}")
            else:
                if db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                    db.execute("PRAGMA journal_mode = WAL")
                problem = inconsistency(db)
                if problem is not None:
                    raise IndexCorrupt(problem)
            db.execute("PRAGMA synchronous = NORMAL")
            opened = os.stat(self.path)
        except BaseException:
            db.close()
            raise
        self.identity = (opened.st_dev, opened.st_ino)
        return db

    def _clear_the_way(self) -> None:
        """Remove whatever is at the index path that is not a file (a folder, a FIFO...)."""
        with contextlib.suppress(FileNotFoundError):
            if not stat.S_ISREG(os.stat(self.path).st_mode):
                self.problem = f"{self.path} is not a file"
                self.remove_files()

    def _open(self) -> sqlite3.Connection:
        """Open the index, replacing a damaged, inconsistent or outdated file with an empty one.
        Raises :class:`IndexUnavailable` when it cannot be opened now (full disk, read-only)."""
        try:
            try:
                return self._connect()
            except (IndexCorrupt, sqlite3.DatabaseError) as exc:
                if transient(exc):
                    raise
                self.problem = str(exc)
                self._carry_read_flags()
                self.remove_files()
                self.rebuilt = True
                return self._connect()
        except (sqlite3.Error, IndexCorrupt, OSError) as exc:
            if isinstance(exc, IndexUnavailable):
                raise
            raise IndexUnavailable(getattr(exc, "errno", None) or errno.EIO,
                                   f"cannot open {self.path}: {exc}") from exc

    def _carry_read_flags(self) -> None:
        """Remember which messages a file about to be thrown away had marked read, if it can tell."""
        with contextlib.suppress(sqlite3.Error, OSError):
            uri = f"{self.path.resolve().as_uri()}?mode=ro"
            old = sqlite3.connect(uri, uri=True, timeout=1)
            try:
                self._carried = {row[0] for row in old.execute("SELECT id FROM messages WHERE read = 1")}
            finally:
                old.close()

    def remove_files(self) -> None:
        """Delete the index file and its journal files."""
        for suffix in ("", "-wal", "-shm", "-journal"):
            target = f"{self.path}{suffix}"
            with contextlib.suppress(FileNotFoundError):
                if os.path.isdir(target) and not os.path.islink(target):
                    shutil.rmtree(target)
                else:
                    os.unlink(target)

    def reset(self) -> None:
        """Throw the file away and start an empty one (after corruption was detected)."""
        with self.lock:
            with contextlib.suppress(sqlite3.Error):
                self.db.close()
            if not self.memory:
                self._carry_read_flags()
                self.remove_files()
            self.db = self._connect()
            self.rebuilt = True

    def close(self) -> None:
        """Close the connection."""
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
                read = summary.read or summary.id in self._carried
                cursor = db.execute(
                    "INSERT OR IGNORE INTO messages (id, read, summary) VALUES (?, ?, ?)",
                    (summary.id, int(read), json.dumps(data)),  # ASCII: survives any stray surrogate
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
        """Every indexed id."""
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
        """The summary of one message (None: not indexed)."""
        with self.lock:
            row = self.db.execute("SELECT id, summary, read FROM messages WHERE id = ?", (message_id,)).fetchone()
            return self._summary(row) if row else None

    def _summary(self, row: tuple[str, str, int]) -> Summary | None:
        """The summary of a row; one that does not read back is re-derived (see ``repair``) and
        rewritten. None when it cannot be (the message is gone)."""
        message_id, text, read = row
        try:
            data = json.loads(text)
            if _well_formed(data, message_id):
                return Summary.from_json(data, read=bool(read))
        except (ValueError, TypeError, KeyError, AttributeError):
            pass
        fixed = self.repair(message_id) if self.repair is not None else None
        if fixed is None:
            return None
        fixed.read = bool(read)
        data = fixed.to_json()
        del data["Read"]
        with contextlib.suppress(sqlite3.OperationalError):  # best effort (e.g. a full disk): fixed next time
            self.db.execute("UPDATE messages SET summary = ? WHERE id = ?", (json.dumps(data), message_id))
        return fixed

    def latest_id(self) -> str | None:
        """The newest indexed id (None: empty)."""
        with self.lock:
            row = self.db.execute("SELECT max(id) FROM messages").fetchone()
        return row[0] if row else None

    def oldest(self, count: int) -> list[str]:
        """The ``count`` oldest ids."""
        with self.lock:
            return [r[0] for r in self.db.execute("SELECT id FROM messages ORDER BY id LIMIT ?", (count,))]

    def older_than(self, message_id: str) -> list[str]:
        """The ids older than ``message_id``."""
        with self.lock:
            return [r[0] for r in self.db.execute("SELECT id FROM messages WHERE id < ?", (message_id,))]

    def page(self, start: int = 0, limit: int = 50, search: str | None = None, **filters: Any) -> Page:
        """Newest first: ``limit`` messages from ``start`` that match the query."""
        query = parse_query(search, **filters)
        total, unread = self.counts()
        if query.empty:
            return Page(total, unread, [], 0, start)
        where: list[str] = []
        params: list[str | int] = []
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
                    f"SELECT id, summary, read FROM messages{clause} ORDER BY id DESC LIMIT ? OFFSET ?",
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
            found = [summary for summary in map(self._summary, rows) if summary is not None]
        return Page(total, unread, found, matched, start)


def _safe(text: str) -> str:
    """Text SQLite can store (UTF-8): a lone surrogate becomes U+FFFD."""
    return text.encode("utf-8", "replace").decode("utf-8") if not text.isascii() else text


_ADDRESS_LISTS = ("To", "Cc", "Bcc", "ReplyTo")
_TYPES = {"MessageID": str, "Subject": str, "Snippet": str, "MailFrom": str, "Size": int, "Attachments": int}


def _is_address(item: object) -> bool:
    return isinstance(item, dict) and isinstance(item.get("Name"), str) and isinstance(item.get("Address"), str)


def _well_formed(data: object, message_id: str) -> bool:
    """True when a stored summary has every field :meth:`Summary.from_json` reads, of the right type."""
    if not isinstance(data, dict) or data.get("ID") != message_id:
        return False
    if not all(isinstance(data.get(key), kind) for key, kind in _TYPES.items()):
        return False
    if data.get("From") is not None and not _is_address(data["From"]):
        return False
    if not all(isinstance(data.get(key), list) and all(map(_is_address, data[key])) for key in _ADDRESS_LISTS):
        return False
    rcpt_to = data.get("RcptTo")
    return isinstance(rcpt_to, list) and all(isinstance(r, str) for r in rcpt_to)


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
