"""The SQLite index of a store (``<store>/index.sqlite``): summaries, read flags, tags, search.

The index is a cache of the ``.eml`` files: deleting it, or a corrupt or older-schema file,
makes it rebuild from the files. Read flags and tags are the two things the files do not hold:
a rebuild carries them over from the old file whenever it can still be read (an older schema,
wrong counters), else they start afresh (every message unread, the tags it got at arrival).

It holds one narrow row per message (id, read flag, size, attachment and inline counts), its
summary as JSON beside it, the tags (``tags`` and ``message_tags``: a name is one tag in any
case, the first spelling is kept), an FTS5 trigram table of the text :mod:`smtp_sink.search`
matches (Mailpit's free text and each address field, lower-cased and cleaned), and counters kept
by triggers. Listing a page costs O(page) and counting O(1) however big the store is; a search
value of three or more characters is found through the trigram index, a shorter one by a scan.
WAL mode and a busy timeout make it safe for several processes (the server writes, the CLI
reads and marks). One connection per :class:`Index`, guarded by a lock (threads share it).
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import shutil
import sqlite3
import stat
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import TagsConfig
from .ids import encode
from .search import TRIGRAM, SearchError, Term, clean, parse
from .summary import Address, Summary
from .tags import TagError, arrival_tags, clean_tag, parse_filters, unique_tags

__all__ = [
    "INDEX_FILE", "SCHEMA_VERSION", "Index", "IndexCorrupt", "IndexUnavailable", "Page", "Query", "damaged",
    "id_floor", "inconsistency", "parse_query", "transient",
]
log = logging.getLogger("smtp_sink")

SCHEMA_VERSION = 3  # 3: duplicates (dupkey, dup)
INDEX_FILE = "index.sqlite"
_CHUNK = 500  # ids per IN (...) list
SEARCH_SECONDS = 5.0  # a search still running after this long is stopped (SearchError)
_PROGRESS_STEPS = 1000  # SQLite VM steps between looks at the clock

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS messages (
    n INTEGER PRIMARY KEY,          -- rowid, shared with the summaries and search tables
    id TEXT NOT NULL UNIQUE,        -- the message id: sorting by it sorts by arrival
    read INTEGER NOT NULL DEFAULT 0,
    size INTEGER NOT NULL DEFAULT 0,
    attachments INTEGER NOT NULL DEFAULT 0,
    inline INTEGER NOT NULL DEFAULT 0,
    dupkey BLOB,                    -- duplicates.duplicate_key: the same Message-ID, or the same data
    dup INTEGER NOT NULL DEFAULT 0  -- 1: an older message holds the same dupkey (kept by triggers)
);
CREATE INDEX IF NOT EXISTS messages_unread ON messages(id) WHERE read = 0;
-- Duplicates (docs/retries.md): the oldest message of a dupkey is the original, every later one a
-- duplicate. Each insert or delete changes at most two flags, each found in O(log n).
CREATE INDEX IF NOT EXISTS messages_dupkey ON messages(dupkey, id);
CREATE INDEX IF NOT EXISTS messages_duplicate ON messages(id) WHERE dup = 1;
-- An insert sets its own flag (Index.insert: an older row with its dupkey exists); a row older than
-- the original (a file put back) makes the original a duplicate.
CREATE TRIGGER IF NOT EXISTS messages_dup_insert AFTER INSERT ON messages
WHEN new.dupkey IS NOT NULL AND new.dup = 0 BEGIN
    UPDATE messages SET dup = 1 WHERE dup = 0 AND n = (
        SELECT n FROM messages WHERE dupkey = new.dupkey AND id > new.id ORDER BY id LIMIT 1);
END;
CREATE TRIGGER IF NOT EXISTS messages_dup_delete AFTER DELETE ON messages
WHEN old.dupkey IS NOT NULL AND old.dup = 0 BEGIN
    UPDATE messages SET dup = 0 WHERE n = (SELECT n FROM messages WHERE dupkey = old.dupkey ORDER BY id LIMIT 1);
END;
CREATE TABLE IF NOT EXISTS summaries (
    n INTEGER PRIMARY KEY,          -- messages.n
    summary TEXT NOT NULL           -- Summary.to_json() without Read and Tags
);
CREATE VIRTUAL TABLE IF NOT EXISTS search USING fts5(
    text, subject, from_, to_, cc, bcc, reply_to, return_path, message_id,
    tokenize = 'trigram case_sensitive 1'
);
CREATE TABLE IF NOT EXISTS tags (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE COLLATE NOCASE
);
CREATE TABLE IF NOT EXISTS message_tags (
    n INTEGER NOT NULL,             -- messages.n
    tag INTEGER NOT NULL,           -- tags.id
    PRIMARY KEY (n, tag)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS message_tags_by_tag ON message_tags(tag);
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
    DELETE FROM summaries WHERE n = old.n;
    DELETE FROM search WHERE rowid = old.n;
    DELETE FROM message_tags WHERE n = old.n;
END;
CREATE TRIGGER IF NOT EXISTS messages_read AFTER UPDATE OF read ON messages BEGIN
    UPDATE stats SET unread = unread + (new.read = 0) - (old.read = 0);
END;
PRAGMA user_version = {SCHEMA_VERSION};
"""


@dataclass
class Page:
    """One page of a listing or search: ``total``/``unread`` count the whole store, ``matched``
    and ``matched_unread`` the messages the query matches (the store's counts without one),
    ``tags`` every tag in the store."""

    total: int
    unread: int
    messages: list[Summary]
    matched: int = 0
    start: int = 0
    matched_unread: int = 0
    tags: list[str] = field(default_factory=list)


@dataclass
class Query:
    """A parsed search (:func:`smtp_sink.search.parse`) plus the id bounds of the CLI and the
    ``before=`` cursor."""

    terms: list[Term] = field(default_factory=list)
    after_id: str = ""  # only messages with a greater id (newer)
    before_id: str = ""  # only messages with a smaller id (older)


def id_floor(when: float) -> str:
    """The smallest id a message arriving at Unix time ``when`` can have."""
    return _ms_floor(int(when * 1000))


def _ms_floor(millis: int) -> str:
    """The smallest id of a message arriving at ``millis`` ms after the epoch (clamped to the id range)."""
    return encode(min(max(0, millis), 2**48 - 1), 10) + "0" * 16


def parse_query(search: str | None = None, tz: str | None = None, **filters: Any) -> Query:
    """A :class:`Query` from a search string in Mailpit's syntax (see :mod:`smtp_sink.search`;
    ``tz``: the zone of its dates) and filters: ``from_`` (the From header or the envelope
    sender contains it), ``to`` (To, Cc or Bcc, which holds the envelope recipients, contains
    it), ``subject`` (contains it), ``tag`` (has that tag), ``since`` and ``before`` (Unix times:
    arrived at or after / before), ``after`` (an id: only newer messages) and ``read`` (bool).
    Raises :class:`~smtp_sink.search.SearchError` for a query too big to run."""
    query = Query(parse(search or "", tz))
    text = {"from_": ("from_", "return_path"), "from": ("from_", "return_path"), "to": ("to_", "cc", "bcc")}
    for name, columns in text.items():
        if filters.get(name):
            query.terms.append(Term("text", clean(str(filters[name])), columns))
    if filters.get("subject"):
        query.terms.append(Term("text", str(filters["subject"]).lower(), ("subject",)))
    if filters.get("tag"):
        query.terms.append(Term("tag", clean_tag(str(filters["tag"]))))
    if filters.get("since"):
        query.terms.append(Term("created", int(float(filters["since"]) * 1000), op=">="))
    if filters.get("before"):
        query.before_id = id_floor(float(filters["before"]))
    if filters.get("after"):
        query.after_id = str(filters["after"])
    if filters.get("read") is not None:
        query.terms.append(Term("read", bool(filters["read"])))
    return query


def _fts_phrase(term: Term) -> str:
    """An FTS5 expression: the value as one string (a substring, with trigrams) in the term's columns."""
    return "{" + " ".join(term.columns) + '} : "' + str(term.value).replace('"', '""') + '"'


@dataclass
class Where:
    """A query as SQL on ``messages``: ``sets`` (``(select, params, exclude)``: the row must, or
    must not, be among the rows ``select`` gives) and plain ``clauses`` with their ``params``."""

    sets: list[tuple[str, list[Any], bool]] = field(default_factory=list)
    clauses: list[str] = field(default_factory=list)
    params: list[Any] = field(default_factory=list)

    def inline(self) -> tuple[list[str], list[Any]]:
        """Every condition as one SQL clause, the sets as subqueries."""
        clauses = [f"n {'NOT IN' if exclude else 'IN'} ({select})" for select, _, exclude in self.sets]
        return clauses + self.clauses, [p for _, bound, _ in self.sets for p in bound] + self.params


def where(query: Query, rows: tuple[int, int] | None = None) -> Where:
    """The SQL of a query (``rows``: only row numbers in this range, checked inside each set)."""
    found = Where()
    within, bounds = ("", []) if rows is None else (" AND {} BETWEEN ? AND ?", list(rows))
    lookups: dict[bool, list[str]] = {False: [], True: []}  # trigram lookups: all must match / none may
    for term in query.terms:
        if term.kind == "text" and len(str(term.value)) >= TRIGRAM:
            lookups[term.exclude].append(_fts_phrase(term))
        elif term.kind == "text":  # too short for trigrams: scan the column values
            scan = " OR ".join(f"instr({column}, ?)" for column in term.columns)
            found.sets.append((f"SELECT rowid FROM search WHERE ({scan}){within.format('rowid')}",
                               [term.value] * len(term.columns) + bounds, term.exclude))
        elif term.kind == "tag":
            found.sets.append(("SELECT mt.n FROM message_tags mt JOIN tags t ON t.id = mt.tag WHERE t.name = ?"
                               + within.format("mt.n"), [term.value, *bounds], term.exclude))
        elif term.kind == "tagged":
            found.sets.append(("SELECT DISTINCT n FROM message_tags WHERE 1" + within.format("n"), bounds,
                               term.exclude))
        elif term.kind == "read":
            found.clauses.append("read = ?")
            found.params.append(int(bool(term.value)))
        elif term.kind == "duplicate":  # is:duplicate (docs/retries.md)
            found.clauses.append(f"dup = {0 if term.exclude else 1}")
        elif term.kind in ("attachments", "inline"):
            found.clauses.append(f"{term.kind} {'=' if term.exclude else '>'} 0")
        elif term.kind == "created":  # ids sort by arrival: compare with the first id of that millisecond
            found.clauses.append("id >= ?" if term.op == ">=" else "id < ?")
            found.params.append(_ms_floor(int(term.value) + (0 if term.op == ">=" else 1)))
        elif term.kind == "size":
            found.clauses.append(f"size {term.op} ?")
            found.params.append(term.value)
    for exclude, joiner in ((True, " OR "), (False, " AND ")):
        if lookups[exclude]:
            found.sets.insert(0, ("SELECT rowid FROM search WHERE search MATCH ?" + within.format("rowid"),
                                  [joiner.join(lookups[exclude]), *bounds], exclude))
    for clause, bound in (("id > ?", query.after_id), ("id < ?", query.before_id)):
        if bound:
            found.clauses.append(clause)
            found.params.append(bound)
    return found


def search_row(summary: Summary) -> tuple[str, ...]:
    """The search table's columns for a message: Mailpit's free text (From, Subject, To, Cc, Bcc,
    Reply-To, Return-Path, body text and attachment names), the subject (lower case, not
    cleaned), each address field (one line per address: name and address) and the Message-ID."""
    lists = [summary.to, summary.cc, summary.bcc, summary.reply_to]
    sender = [summary.sender] if summary.sender else []
    text = clean(" ".join([
        _header(sender), summary.subject, *map(_header, lists), summary.mail_from, summary.text,
        *summary.attachment_names,
    ]))
    row = (text, summary.subject.lower(), *(_addresses(items) for items in [sender, *lists]),
           clean(summary.mail_from), clean(summary.message_id))
    return tuple(map(_safe, row))


def _header(addresses: list[Address]) -> str:
    return ", ".join(f"{a.name} <{a.address}>" if a.name else a.address for a in addresses)


def _addresses(addresses: list[Address]) -> str:
    """One line per address (a search value never holds a line break: it cannot span two)."""
    return "\n".join(clean(f"{a.name} {a.address}") for a in addresses)


class IndexCorrupt(Exception):
    """The index file is damaged or inconsistent; the caller rebuilds it."""


class IndexUnavailable(OSError):
    """The index cannot be opened or written now (disk full, read-only, locked): not damage."""


# SQLite result codes (the low byte of an extended code) that say "not now", never "damaged".
_TRANSIENT_CODES = {5, 6, 7, 8, 10, 13, 14}  # BUSY LOCKED NOMEM READONLY IOERR FULL CANTOPEN
_TRANSIENT_WORDS = ("locked", "disk is full", "disk i/o error", "readonly", "unable to open", "out of memory")
_DAMAGE_WORDS = ("no such table", "no such column", "no such index", "malformed")
_REQUIRED = {
    ("table", "messages"), ("table", "summaries"), ("table", "stats"), ("table", "search"), ("table", "search_docsize"),
    ("table", "tags"), ("table", "message_tags"), ("index", "messages_unread"), ("index", "message_tags_by_tag"),
    ("trigger", "messages_insert"), ("trigger", "messages_delete"), ("trigger", "messages_read"),
    ("index", "messages_dupkey"), ("index", "messages_duplicate"),  # duplicates (docs/retries.md)
    ("trigger", "messages_dup_insert"), ("trigger", "messages_dup_delete"),
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
        for table in ("search_docsize", "summaries"):
            found = db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            if found != rows:
                return f"{found} rows in {table} for {rows} messages"
        stray = db.execute("SELECT count(*) FROM message_tags WHERE n NOT IN (SELECT n FROM messages)").fetchone()[0]
        if stray:
            return f"{stray} tag rows for messages that are not indexed"
        return None
    finally:
        db.execute("COMMIT")


class Index:
    """The SQLite index of one store folder (``memory``: a private in-memory one, used when the
    file cannot be opened, e.g. on a full disk).

    ``repair(id)`` re-derives the summary of a row whose stored summary does not read back
    (returns None when the message is gone). ``tags``: how a message is tagged when it is added
    (the ``[tags]`` configuration; its filters are search queries run on each new message)."""

    def __init__(
        self, folder: str | os.PathLike[str], *, memory: bool = False,
        repair: Callable[[str], Summary | None] | None = None, tags: TagsConfig | None = None,
    ) -> None:
        self.path = Path(folder) / INDEX_FILE
        self.memory = memory
        self.repair = repair
        self.tagging = tags or TagsConfig()
        self.filters = _filters(self.tagging)
        self.search_seconds = SEARCH_SECONDS  # a search running longer is stopped
        self.lock = threading.RLock()
        self.rebuilt = False  # True when this open started from an empty file
        self.problem: str | None = None  # why an existing file was thrown away
        self.identity: tuple[int, int] | None = None  # (st_dev, st_ino) of the file opened
        self._carried: set[str] = set()  # ids read in a file thrown away: still read once re-added
        self._carried_tags: dict[str, list[str]] = {}  # id -> its tags in a file thrown away
        self.db = self._open()

    def _connect(self) -> sqlite3.Connection:
        """Connect; create the schema in an empty file, check an existing one (reads only: this
        works on a full disk). Raises :class:`IndexCorrupt` for a file that must be rebuilt."""
        if self.memory:
            db = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
            db.executescript(_SCHEMA)
            db.execute("PRAGMA temp_store = MEMORY")
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
            db.execute("PRAGMA temp_store = MEMORY")  # search results: never a temporary file (a full disk)
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
                self._carry_over()
                self.remove_files()
                self.rebuilt = True
                return self._connect()
        except (sqlite3.Error, IndexCorrupt, OSError) as exc:
            if isinstance(exc, IndexUnavailable):
                raise
            raise IndexUnavailable(getattr(exc, "errno", None) or errno.EIO,
                                   f"cannot open {self.path}: {exc}") from exc

    def _carry_over(self) -> None:
        """Remember what a file about to be thrown away knows and the files do not, as far as it
        can still be read: which messages were read, and (from an index with tags) their tags."""
        with contextlib.suppress(sqlite3.Error, OSError):
            uri = f"{self.path.resolve().as_uri()}?mode=ro"
            old = sqlite3.connect(uri, uri=True, timeout=1)
            try:
                self._carried = {row[0] for row in old.execute("SELECT id FROM messages WHERE read = 1")}
                tags: dict[str, list[str]] = {}
                for message_id, name in old.execute(
                        "SELECT m.id, t.name FROM messages m LEFT JOIN message_tags mt ON mt.n = m.n "
                        "LEFT JOIN tags t ON t.id = mt.tag"):
                    found = tags.setdefault(message_id, [])
                    if isinstance(name, str):
                        found.append(name)
                self._carried_tags = tags  # only when all of it could be read
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
                self._carry_over()
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
        """Add summaries, tag them (the tags they had in a file thrown away, else their tags at
        arrival and the filters' tags; ``Summary.tags`` is set); return those not indexed yet."""
        added: list[tuple[int, Summary]] = []
        with self.transaction() as db:
            for summary in summaries:
                data = summary.to_json()
                del data["Read"], data["Tags"], data["DuplicateOf"]
                read = summary.read or summary.id in self._carried
                key = summary.duplicate_key or None
                cursor = db.execute(  # dup: an older message has the same key (docs/retries.md)
                    "INSERT OR IGNORE INTO messages (id, read, size, attachments, inline, dupkey, dup) VALUES "
                    "(?, ?, ?, ?, ?, ?, EXISTS (SELECT 1 FROM messages WHERE dupkey = ? AND id < ?))",
                    (summary.id, int(read), summary.size, summary.attachments, summary.inline, key, key, summary.id),
                )
                if cursor.rowcount != 1:
                    continue
                n = cursor.lastrowid
                assert n is not None
                db.execute("INSERT INTO summaries (n, summary) VALUES (?, ?)",
                           (n, json.dumps(data)))  # ASCII: survives any stray surrogate
                db.execute("INSERT INTO search (rowid, text, subject, from_, to_, cc, bcc, reply_to, return_path, "
                           "message_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", (n, *search_row(summary)))
                added.append((n, summary))
            self._tag_arrivals(db, added)
            originals = _originals(db, [n for n, _ in added])
        for n, summary in added:
            summary.duplicate_of = originals.get(n, "")
        return [summary for _, summary in added]

    def _tag_arrivals(self, db: sqlite3.Connection, added: list[tuple[int, Summary]]) -> None:
        """Tag messages just added: with their tags in a file thrown away if it had them, else
        with their tags at arrival and those of each filter whose query matches them."""
        fresh = []
        for n, summary in added:
            carried = self._carried_tags.pop(summary.id, None)
            names = carried if carried is not None else arrival_tags(summary, self.tagging)
            if carried is None:
                fresh.append(n)
            for name in names:
                self._add_tag(db, n, name)
        if fresh:
            wanted, rows = set(fresh), (min(fresh), max(fresh))
            for query, names in self.filters:
                clauses, params = where(query, rows).inline()
                clauses.append("n BETWEEN ? AND ?")
                sql = f"SELECT n FROM messages WHERE {' AND '.join(clauses)}"
                for (n,) in db.execute(sql, [*params, *rows]).fetchall():
                    if n in wanted:
                        for name in names:
                            self._add_tag(db, n, name)
        found = self._tags_by_n(db, [n for n, _ in added])
        for n, summary in added:
            summary.tags = found.get(n, [])

    def remove(self, ids: Iterable[str]) -> list[str]:
        """Remove rows (and tags no message has any more); return the ids that were indexed."""
        removed = []
        with self.transaction() as db:
            for message_id in ids:
                if db.execute("DELETE FROM messages WHERE id = ?", (message_id,)).rowcount:
                    removed.append(message_id)
            if removed:
                _prune_tags(db)
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

    def set_read_matching(self, search: str, tz: str | None = None, read: bool = True) -> list[str]:
        """Set the read flag of the messages a search matches; return the ids that changed."""
        query = parse_query(search, tz)
        query.terms.append(Term("read", not read))
        with self.transaction() as db:
            changed = self._select_ids(db, query)
            for chunk in _chunks(changed):
                marks = ",".join("?" * len(chunk))
                db.execute(f"UPDATE messages SET read = ? WHERE id IN ({marks})", [int(read), *chunk])
        return changed

    # -- tags ------------------------------------------------------------------------------

    @staticmethod
    def _add_tag(db: sqlite3.Connection, n: int, name: str) -> None:
        """Give row ``n`` the tag ``name`` (made if new; an existing tag keeps its spelling)."""
        db.execute("INSERT OR IGNORE INTO tags (name) VALUES (?)", (name,))
        db.execute("INSERT OR IGNORE INTO message_tags (n, tag) SELECT ?, id FROM tags WHERE name = ?", (n, name))

    def set_tags(self, ids: Iterable[str], names: Iterable[str]) -> dict[str, list[str]]:
        """Replace the tags of each message in ``ids`` with ``names`` (cleaned, unique in any case;
        none: remove all); ids that are not indexed are ignored. Returns id -> its tags now."""
        wanted = unique_tags(names)
        changed: dict[str, list[str]] = {}
        with self.transaction() as db:
            for message_id in dict.fromkeys(ids):
                row = db.execute("SELECT n FROM messages WHERE id = ?", (message_id,)).fetchone()
                if row is None:
                    continue
                n = row[0]
                db.execute("DELETE FROM message_tags WHERE n = ? AND tag NOT IN "
                           f"(SELECT id FROM tags WHERE name IN ({','.join('?' * len(wanted))}))", (n, *wanted))
                for name in wanted:
                    self._add_tag(db, n, name)
                changed[message_id] = self._tags_by_n(db, [n]).get(n, [])
            _prune_tags(db)
        return changed

    def rename_tag(self, old: str, new: str) -> None:
        """Rename a tag (any case finds it; a change of case alone is allowed). :class:`TagError`
        for an empty new name, an unknown tag or a new name another tag has (as Mailpit says it)."""
        new = clean_tag(new)
        if not new:
            raise TagError(f"invalid tag name: {new}")
        if old == new:
            return
        with self.transaction() as db:
            row = db.execute("SELECT id FROM tags WHERE name = ?", (old,)).fetchone()
            if row is None:
                raise TagError(f"tag not found: {old}")
            if db.execute("SELECT 1 FROM tags WHERE name = ? AND id != ?", (new, row[0])).fetchone():
                raise TagError(f"tag already exists: {new}")
            db.execute("UPDATE tags SET name = ? WHERE id = ?", (new, row[0]))

    def delete_tag(self, name: str) -> list[str]:
        """Remove a tag from every message (no message is deleted); :class:`TagError` if unknown.
        Returns the ids of the messages that had it."""
        with self.transaction() as db:
            row = db.execute("SELECT id FROM tags WHERE name = ?", (name,)).fetchone()
            if row is None:
                raise TagError(f"tag not found: {name}")
            had = [r[0] for r in db.execute(
                "SELECT m.id FROM message_tags mt JOIN messages m ON m.n = mt.n WHERE mt.tag = ?", (row[0],))]
            db.execute("DELETE FROM message_tags WHERE tag = ?", (row[0],))
            db.execute("DELETE FROM tags WHERE id = ?", (row[0],))
        return had

    def tags(self) -> list[str]:
        """Every tag, in alphabetical order ignoring case."""
        with self.lock:
            return [r[0] for r in self.db.execute("SELECT name FROM tags ORDER BY name")]

    def tag_counts(self) -> dict[str, int]:
        """Tag -> how many messages have it."""
        with self.lock:
            return dict(self.db.execute(
                "SELECT t.name, count(mt.n) FROM tags t LEFT JOIN message_tags mt ON mt.tag = t.id GROUP BY t.id"))

    def tags_of(self, ids: Sequence[str]) -> dict[str, list[str]]:
        """Id -> its tags (alphabetical, ignoring case), for the ids that have some."""
        found: dict[str, list[str]] = {}
        with self.lock:
            for chunk in _chunks(list(ids)):
                marks = ",".join("?" * len(chunk))
                for message_id, name in self.db.execute(
                        "SELECT m.id, t.name FROM messages m JOIN message_tags mt ON mt.n = m.n "
                        f"JOIN tags t ON t.id = mt.tag WHERE m.id IN ({marks}) ORDER BY t.name", chunk):
                    found.setdefault(message_id, []).append(name)
        return found

    @staticmethod
    def _tags_by_n(db: sqlite3.Connection, ns: Sequence[int]) -> dict[int, list[str]]:
        """Row number -> its tags (alphabetical, ignoring case)."""
        found: dict[int, list[str]] = {}
        for chunk in _chunks(list(ns)):
            marks = ",".join("?" * len(chunk))
            for n, name in db.execute("SELECT mt.n, t.name FROM message_tags mt JOIN tags t ON t.id = mt.tag "
                                      f"WHERE mt.n IN ({marks}) ORDER BY t.name", chunk):
                found.setdefault(n, []).append(name)
        return found

    # -- reading ---------------------------------------------------------------------------

    def ids(self) -> set[str]:
        """Every indexed id."""
        with self.lock:
            return {row[0] for row in self.db.execute("SELECT id FROM messages")}

    def existing(self, ids: list[str]) -> set[str]:
        """Which of ``ids`` are indexed."""
        found: set[str] = set()
        with self.lock:
            for chunk in _chunks(ids):
                marks = ",".join("?" * len(chunk))
                found.update(r[0] for r in self.db.execute(f"SELECT id FROM messages WHERE id IN ({marks})", chunk))
        return found

    def counts(self) -> tuple[int, int]:
        """``(total, unread)`` for the whole store, O(1)."""
        with self.lock:
            total, unread = self.db.execute("SELECT total, unread FROM stats").fetchone()
        return total, unread

    def size(self) -> int:
        """The bytes the index file holds (pages times page size)."""
        with self.lock:
            return int(self.db.execute(
                "SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()").fetchone()[0])

    def get(self, message_id: str) -> Summary | None:
        """The summary of one message, with its tags (None: not indexed)."""
        with self.lock:
            row = self.db.execute("SELECT n, id, read FROM messages WHERE id = ?", (message_id,)).fetchone()
            return self._summaries([row])[0] if row else None

    def _summaries(self, rows: Sequence[tuple[int, str, int]]) -> list[Summary | None]:
        """The summaries of ``(n, id, read)`` rows, with their tags (see :meth:`_summary`)."""
        stored: dict[int, str] = {}
        ns = [row[0] for row in rows]
        for chunk in _chunks(ns):
            marks = ",".join("?" * len(chunk))
            stored.update(self.db.execute(f"SELECT n, summary FROM summaries WHERE n IN ({marks})", chunk))
        tags = self._tags_by_n(self.db, ns)
        originals = _originals(self.db, ns)
        found = []
        for n, message_id, read in rows:
            summary = self._summary(n, message_id, stored.get(n), read)
            if summary is not None:
                summary.tags = tags.get(n, [])
                summary.duplicate_of = originals.get(n, "")
            found.append(summary)
        return found

    def _summary(self, n: int, message_id: str, text: str | None, read: int) -> Summary | None:
        """The summary of a row; one that does not read back is re-derived (see ``repair``) and
        rewritten. None when it cannot be (the message is gone)."""
        try:
            data = json.loads(text) if text is not None else None
            if isinstance(data, dict) and _well_formed(data, message_id):
                return Summary.from_json(data, read=bool(read))
        except (ValueError, TypeError, KeyError, AttributeError):
            pass
        fixed = self.repair(message_id) if self.repair is not None else None
        if fixed is None:
            return None
        fixed.read = bool(read)
        data = fixed.to_json()
        del data["Read"], data["Tags"], data["DuplicateOf"]
        with contextlib.suppress(sqlite3.OperationalError):  # best effort (e.g. a full disk): fixed next time
            self.db.execute("INSERT OR REPLACE INTO summaries (n, summary) VALUES (?, ?)", (n, json.dumps(data)))
        return fixed

    def latest_id(self, search: str | None = None, tz: str | None = None) -> str | None:
        """The newest indexed id (that ``search`` matches, if given); None: none."""
        if search is None or not search.strip():
            with self.lock:
                row = self.db.execute("SELECT max(id) FROM messages").fetchone()
            return row[0] if row else None
        found = self.ids_matching(search, tz, limit=1)
        return found[0] if found else None

    def ids_matching(self, search: str, tz: str | None = None, limit: int | None = None) -> list[str]:
        """The ids a search matches, newest first (at most ``limit``)."""
        with self.lock:
            return self._select_ids(self.db, parse_query(search, tz), limit)

    def _select_ids(self, db: sqlite3.Connection, query: Query, limit: int | None = None) -> list[str]:
        clauses, params = where(query).inline()
        condition = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        with time_limit(db, self.search_seconds):
            return [r[0] for r in db.execute(f"SELECT id FROM messages{condition} ORDER BY id DESC LIMIT ?",
                                             [*params, -1 if limit is None else limit])]

    def oldest(self, count: int) -> list[str]:
        """The ``count`` oldest ids."""
        with self.lock:
            return [r[0] for r in self.db.execute("SELECT id FROM messages ORDER BY id LIMIT ?", (count,))]

    def older_than(self, message_id: str) -> list[str]:
        """The ids older than ``message_id``."""
        with self.lock:
            return [r[0] for r in self.db.execute("SELECT id FROM messages WHERE id < ?", (message_id,))]

    def page(self, start: int = 0, limit: int | None = 50, search: str | None = None, *, tz: str | None = None,
             **filters: Any) -> Page:
        """Newest first: ``limit`` messages (None: all) from ``start`` that match the query (see
        :func:`parse_query`), and the counts."""
        return self.run(parse_query(search, tz, **filters), start, limit)

    def run(self, query: Query, start: int = 0, limit: int | None = 50) -> Page:
        """:meth:`page` for a parsed query. Each set of rows a search term names (a trigram
        lookup, a scan, a tag) is found once, into a temporary table, for the count and the page."""
        found = where(query)
        with self.lock:
            total, unread = self.counts()
            try:
                with time_limit(self.db, self.search_seconds):  # ends before the tables are emptied
                    rows, matched, matched_unread = self._matches(found, start, limit, total, unread)
            finally:
                self._release(len(found.sets))
            summaries = [summary for summary in self._summaries(rows) if summary is not None]
            tags = self.tags()
        return Page(total, unread, summaries, matched, start, matched_unread, tags)

    def _matches(self, found: Where, start: int, limit: int | None, total: int, unread: int
                 ) -> tuple[list[tuple[int, str, int]], int, int]:
        """The ``(n, id, read)`` rows of one page of a query, its match count and unread matches
        (each of its sets filled into a temporary table once, for the counts and the page)."""
        clauses, params = self._materialize(found)
        condition = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        if not clauses:
            matched, matched_unread = total, unread
        elif clauses == ["read = ?"]:
            matched, matched_unread = (total - unread, 0) if params[0] else (unread, unread)
        else:
            matched, matched_unread = self.db.execute(
                f"SELECT count(*), coalesce(sum(read = 0), 0) FROM messages{condition}", params).fetchone()
        if limit == 0 or start >= matched:
            return [], matched, matched_unread
        # Walk the id index newest first while matches are dense (a page costs about
        # (start + limit) * total / matched rows); else fetch the matches and sort them.
        walk = bool(clauses) and limit is not None and (start + limit) * total <= matched * matched
        hint = " INDEXED BY sqlite_autoindex_messages_1" if walk else ""
        rows = self.db.execute(
            f"SELECT n, id, read FROM messages{hint}{condition} ORDER BY id DESC LIMIT ? OFFSET ?",
            [*params, -1 if limit is None else limit, start]).fetchall()
        return rows, matched, matched_unread

    def _materialize(self, found: Where) -> tuple[list[str], list[Any]]:
        """The conditions of ``found``, each of its sets filled into a temporary table."""
        clauses = []
        for number, (select, params, exclude) in enumerate(found.sets):
            self.db.execute(f"CREATE TEMP TABLE IF NOT EXISTS rows{number} (n INTEGER PRIMARY KEY)")
            self.db.execute(f"INSERT OR IGNORE INTO temp.rows{number} {select}", params)
            clauses.append(f"n {'NOT IN' if exclude else 'IN'} temp.rows{number}")
        return clauses + found.clauses, list(found.params)

    def _release(self, count: int) -> None:
        """Empty the temporary tables :meth:`_materialize` filled."""
        for number in range(count):
            with contextlib.suppress(sqlite3.Error):
                self.db.execute(f"DELETE FROM temp.rows{number}")


@contextlib.contextmanager
def time_limit(db: sqlite3.Connection, seconds: float) -> Iterator[None]:
    """Stop the statements run inside after ``seconds`` with :class:`SearchError` (an SQLite
    progress handler); the handler is gone when the block ends."""
    deadline = time.monotonic() + seconds
    db.set_progress_handler(lambda: int(time.monotonic() > deadline), _PROGRESS_STEPS)
    try:
        yield
    except sqlite3.OperationalError as exc:
        if "interrupt" not in str(exc):
            raise
        raise SearchError(f"search stopped after {seconds:g} s: make it more specific") from None
    finally:
        db.set_progress_handler(None, 0)


def _chunks(items: list[Any], size: int = _CHUNK) -> Iterator[list[Any]]:
    for at in range(0, len(items), size):
        yield items[at:at + size]


def _originals(db: sqlite3.Connection, ns: Sequence[int]) -> dict[int, str]:
    """Row number -> the id of the message it duplicates, for those of ``ns`` that are duplicates
    (the oldest message with the same key: one lookup in ``messages_dupkey`` each)."""
    found: dict[int, str] = {}
    for chunk in _chunks(list(ns)):
        marks = ",".join("?" * len(chunk))
        found.update(db.execute(
            "SELECT m.n, (SELECT min(o.id) FROM messages o WHERE o.dupkey = m.dupkey) FROM messages m "
            f"WHERE m.n IN ({marks}) AND m.dup = 1", chunk))
    return found


def _prune_tags(db: sqlite3.Connection) -> None:
    """Remove the tags no message has."""
    db.execute("DELETE FROM tags WHERE NOT EXISTS (SELECT 1 FROM message_tags mt WHERE mt.tag = tags.id)")


def _filters(config: TagsConfig) -> list[tuple[Query, list[str]]]:
    """The ``[tags] filters`` as parsed queries; one that cannot be run is left out (logged)."""
    found = []
    for search, names in parse_filters(config.filters):
        try:
            found.append((parse_query(search), names))
        except ValueError as exc:
            log.warning("[tags] filter %r left out: %s", search[:100], exc)
    return found


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
    if not isinstance(data.get("Username", ""), str):
        return False
    if not all(isinstance(data.get(key), list) and all(map(_is_address, data[key])) for key in _ADDRESS_LISTS):
        return False
    rcpt_to = data.get("RcptTo")
    return isinstance(rcpt_to, list) and all(isinstance(r, str) for r in rcpt_to)
