"""The message store: one ``<id>.eml`` file per accepted message.

A message is written to ``<store>/tmp/`` and ``os.replace``d into place before the server
answers 250, so a reader never sees half a message and a crash never leaves one. The store deals
in bytes and ids only: what it is given to save (the trace headers the sink writes with
:mod:`smtp_sink.trace`, then exactly what the client sent) is what it stores. Readers get
:class:`~smtp_sink.errors.NotFound` for an id that names no message.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import logging
import os
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from .config import TagsConfig
from .errors import NotFound
from .ids import is_id, new_id
from .index import Index, IndexUnavailable, Page, damaged, id_floor, transient
from .message import detail, envelope_summary, part, summarize
from .summary import Summary

__all__ = ["Deleted", "Marked", "Page", "Store", "StoreError", "StoredMessage", "Summary", "Tagged"]
log = logging.getLogger("smtp_sink")

_TMP_SUFFIX = ".tmp"
INDEX_CHUNK = 500  # messages parsed and inserted per index transaction
INDEX_CHECK_INTERVAL = 0.5  # seconds between two checks that the index file is still the one at its path


@dataclass(frozen=True)
class Deleted:
    """Store event: these messages were removed (``all``: the store was emptied)."""

    ids: tuple[str, ...]
    all: bool = False


@dataclass(frozen=True)
class Marked:
    """Store event: the read flag of these messages (None: all) was set to ``read``."""

    ids: tuple[str, ...] | None
    read: bool


@dataclass(frozen=True)
class Tagged:
    """Store event: the tags of these messages changed (``tags``: each id with its tags now), or
    (``everywhere``) a tag was renamed or deleted in every message that had it."""

    tags: tuple[tuple[str, tuple[str, ...]], ...]
    everywhere: bool = False


StoreEvent = Summary | Deleted | Marked | Tagged
T = TypeVar("T")
D = TypeVar("D")


class StoreError(OSError):
    """The store cannot take a message (not writable, disk full, ...)."""


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """A message that is safely on disk."""

    id: str
    file: str  # its path
    size: int


class Store:
    """A folder of ``.eml`` files. Safe for several processes: writes are atomic renames.

    ``on_event(event)`` is called for each new message indexed (its :class:`Summary`, tags
    included), each deletion (:class:`Deleted`), read-flag change (:class:`Marked`) and tag change
    (:class:`Tagged`), in the thread that did it (the :class:`~smtp_sink.sink.Sink` fans them out
    to its subscribers). ``tags``: how messages are tagged as they are indexed (``[tags]``)."""

    def __init__(
        self, path: str | os.PathLike[str], *, fsync: bool = False, max_messages: int = 0, max_age: float = 0.0,
        on_event: Callable[[StoreEvent], None] | None = None, tags: TagsConfig | None = None,
    ) -> None:
        self.path = Path(path)
        self.tmp = self.path / "tmp"
        self._prefix = f"{self.path}{os.sep}"  # str paths: cheaper than Path per message
        self._tmp_prefix = f"{self.tmp}{os.sep}"
        self.fsync = fsync
        self.max_messages = max_messages  # retention: keep at most this many (0: no limit)
        self.max_age = max_age  # retention: seconds a message is kept (0: forever)
        self.tagging = tags or TagsConfig()
        self._index: Index | None = None
        self._index_lock = threading.RLock()
        self._pending: deque[tuple[str, int]] = deque()  # saved, not yet indexed (see index_pending)
        self._pending_lock = threading.Lock()  # save() appends on the loop thread, the indexer takes
        self._index_checked_at = 0.0  # when the index file's identity was last compared with the path's
        self._trouble: str | None = None  # why the index cannot be written now (logged once per cause)
        self.on_event = on_event
        self._scanned_mtime = -1
        self._scanned_at = 0.0
        self._saves = 0  # messages this process saved (each rename changes the folder's mtime)
        self._scanned_saves = 0
        self.started = time.time()  # counted since then (/api/v1/info's RuntimeStats):
        self.saved_bytes = 0  # bytes of the messages this process saved
        self.deleted = 0  # messages this process deleted

    def open(self) -> None:
        """Create the folders and remove temporary files left by a process that died."""
        self.tmp.mkdir(parents=True, exist_ok=True)
        for entry in os.scandir(self.tmp):
            pid = entry.name.rsplit(".", 2)[-2] if entry.name.endswith(_TMP_SUFFIX) else ""
            if pid.isdigit() and not _alive(int(pid)):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)

    def save(self, header: bytes, data: bytes | bytearray, message_id: str | None = None) -> StoredMessage:
        """Write ``header`` then ``data`` as one message, atomically, and return where it is.
        ``message_id``: the id the header names (a fresh one when None). Raises :class:`StoreError`."""
        if message_id is None:
            message_id = new_id()
        elif not is_id(message_id):
            raise ValueError(f"not a message id: {message_id[:100]!r}")
        tmp = f"{self._tmp_prefix}{message_id}.{_process_id}{_TMP_SUFFIX}"
        final = f"{self._prefix}{message_id}.eml"
        try:
            try:
                fd = os.open(tmp, _CREATE, 0o644)
            except FileNotFoundError:  # the store folder was removed while running
                self.tmp.mkdir(parents=True, exist_ok=True)
                fd = os.open(tmp, _CREATE, 0o644)
        except OSError as exc:
            raise StoreError(exc.errno, f"cannot create {tmp}: {exc.strerror}") from exc
        size = len(header) + len(data)
        try:
            try:
                written = os.writev(fd, (header, data))
                if written != size:  # a short write (full disk): finish it, or fail with ENOSPC
                    _write_all(fd, [header, data], written)
                if self.fsync:
                    os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, final)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise StoreError(exc.errno, f"cannot write {final}: {exc.strerror}") from exc
        with self._pending_lock:
            self._pending.append((message_id, size))  # indexed later, off the reply path
        self._saves += 1
        self.saved_bytes += size
        return StoredMessage(message_id, final, size)

    # -- hand-over between the processes of one server (serve --workers, smtp_sink.workers) ------

    def hand_over(self) -> list[tuple[str, int]]:
        """Take this process's saves not indexed yet, ``(id, size)`` each: an SMTP worker hands
        them to the process that indexes (it never indexes them itself)."""
        return self._take(len(self._pending))

    def adopt(self, message_id: str, size: int) -> None:
        """A message another process of this server saved: index it with this process's own saves."""
        with self._pending_lock:
            self._pending.append((message_id, size))
        self._saves += 1
        self.saved_bytes += size

    def ids(self) -> list[str]:
        """All message ids, oldest first."""
        try:
            names = os.listdir(self.path)
        except FileNotFoundError:
            return []
        return sorted(name[:-4] for name in names if name.endswith(".eml") and is_id(name[:-4]))

    def file(self, message_id: str) -> Path:
        """The path of a message; :class:`NotFound` for a malformed or unknown id."""
        if not is_id(message_id):
            raise NotFound("message", message_id)
        path = self.path / f"{message_id}.eml"
        if not path.exists():
            raise NotFound("message", message_id)
        return path

    def read(self, message_id: str) -> bytes:
        """The stored bytes of a message (trace headers included); :class:`NotFound` if unknown."""
        try:
            return self.file(message_id).read_bytes()
        except FileNotFoundError:
            raise NotFound("message", message_id) from None

    def delete(self, ids: str | Iterable[str]) -> int:
        """Remove one message (an id) or several (ids) and their index rows; return how many
        files were removed (0, falsy, when a single id was not there)."""
        if isinstance(ids, str):
            ids = [ids]
        removed, listed = [], []
        for message_id in ids:
            if not is_id(message_id):
                continue
            listed.append(message_id)
            try:
                os.unlink(self.path / f"{message_id}.eml")
            except FileNotFoundError:
                continue
            removed.append(message_id)
        gone = set(removed) | set(self._softly(lambda: self.index.remove(listed), []))  # else: the next rescan
        self.deleted += len(removed)
        if gone:
            self._notify(Deleted(tuple(sorted(gone))))
        return len(removed)

    # -- the index and its readers (smtp_sink/index.py) ----------------------------------------

    @property
    def index(self) -> Index:
        """The SQLite index, opened (and brought up to date with the files) on first use. When the
        file cannot be opened (a full disk...) a private in-memory index is built from the files."""
        with self._index_lock:
            if self._index is None:
                self._index = self._open_index()
                self._index_checked_at = time.monotonic()
                self._rescan_softly()
            return self._index

    def _open_index(self) -> Index:
        with contextlib.suppress(OSError):
            self.path.mkdir(parents=True, exist_ok=True)
        try:
            index = Index(self.path, repair=self._summarize, tags=self.tagging)
        except IndexUnavailable as exc:
            self._troubled(f"{exc.strerror}; serving from memory until it can be opened")
            return Index(self.path, memory=True, repair=self._summarize, tags=self.tagging)
        if index.problem:
            log.warning("index %s: %s; rebuilt from the .eml files", index.path, index.problem)
        return index

    def _check_index(self) -> None:
        """Every INDEX_CHECK_INTERVAL s: reopen the index when its file was removed or replaced (the
        store folder deleted while running), or when a memory index can move back to the file. The
        old one is not closed here: a reader still using it finishes (it closes once unused)."""
        now = time.monotonic()
        if self._index is None or now - self._index_checked_at < INDEX_CHECK_INTERVAL:
            return
        self._index_checked_at = now
        index = self._index
        try:
            found = os.stat(index.path)
            if index.identity == (found.st_dev, found.st_ino):
                return
        except OSError:
            pass
        with self._index_lock:
            if index.memory:
                try:
                    self._index = Index(self.path, repair=self._summarize, tags=self.tagging)
                except IndexUnavailable:
                    return
            else:
                log.warning("index %s was removed or replaced: reopening it", index.path)
                self._index = self._open_index()
            self._scanned_mtime = -1
            self._rescan_softly()

    def close(self) -> None:
        """Index what is pending and close the index (a later use opens it again)."""
        with self._index_lock:
            if self._pending:
                self.index_pending()
            if self._index is not None:
                self._index.close()
                self._index = None

    @property
    def saved(self) -> int:
        """Messages this process saved."""
        return self._saves

    @property
    def pending(self) -> int:
        """Messages saved by this process and not indexed yet."""
        return len(self._pending)

    def _notify(self, event: StoreEvent) -> None:
        if self.on_event is not None:
            try:
                self.on_event(event)
            except Exception:  # a broken listener must not break the store
                log.exception("store event listener %r failed", self.on_event)

    def _guard(self, operation: Callable[[], T]) -> T:
        """Run an index operation; a corrupt index file is rebuilt from the files and retried.
        Errors of the environment (full disk, lock) are raised: see :meth:`_softly`."""
        try:
            return operation()
        except sqlite3.DatabaseError as exc:
            if not damaged(exc):
                raise
            log.warning("index %s is damaged (%s): rebuilding it from the .eml files", self.path, exc)
            with self._index_lock:
                self.index.reset()
                self.rescan()
            return operation()

    def _softly(self, operation: Callable[[], T], default: D) -> T | D:
        """:meth:`_guard` for an index write a reader can do without: when the index cannot be
        written now (full disk, read-only, locked), log it once and return ``default``."""
        try:
            result = self._guard(operation)
        except (sqlite3.OperationalError, IndexUnavailable) as exc:
            if not transient(exc):
                raise
            self._troubled(str(exc))
            return default
        if self._trouble is not None:
            log.info("index %s: can be written again", self.path)
            self._trouble = None
        return result

    def _troubled(self, problem: str) -> None:
        if problem != self._trouble:
            log.warning("index %s cannot be updated (%s): serving it as it is, indexing later", self.path, problem)
            self._trouble = problem

    def _summarize(self, message_id: str, size: int | None = None) -> Summary | None:
        """The summary of a stored message (None: removed meanwhile). Never raises for its content:
        a message the display parser fails on gets a summary of its envelope and size."""
        try:
            raw = (self.path / f"{message_id}.eml").read_bytes()
        except OSError:  # removed meanwhile
            return None
        size = len(raw) if size is None else size
        try:
            return summarize(message_id, raw, size)
        except Exception:  # one message never stops indexing
            log.exception("message %s: cannot parse it for the index; listing its envelope only", message_id)
        try:
            return envelope_summary(message_id, raw, size)
        except Exception:  # the trace reader is total; this only keeps indexing going if it ever is not
            log.exception("message %s: cannot read its trace headers", message_id)
            return envelope_summary(message_id, b"", size)

    def index_pending(self) -> int:
        """Index the messages this process saved since the last call, INDEX_CHUNK at a time (so a
        backlog never sits in memory parsed); notify subscribers; apply retention. Returns how many.
        When the index cannot be written now (full disk) they stay pending (logged once)."""
        return self._softly(self._index_pending, 0)

    def _index_pending(self) -> int:
        self._check_index()
        done = 0
        while self._pending:
            done += len(self._index_chunk())
        if done:
            self.prune()
        return done

    def _take(self, count: int) -> list[tuple[str, int]]:
        with self._pending_lock:
            return [self._pending.popleft() for _ in range(min(count, len(self._pending)))]

    def _index_chunk(self) -> list[Summary]:
        """Index up to INDEX_CHUNK pending messages; on any error they stay pending."""
        with self._index_lock:
            index = self.index
            batch = self._take(INDEX_CHUNK)
            if not batch:
                return []
            try:
                known = self._guard(lambda: index.existing([message_id for message_id, _ in batch]))
                summaries = []
                for message_id, size in batch:  # one already indexed (by a rescan) is not parsed again
                    found = index.get(message_id) if message_id in known else self._summarize(message_id, size)
                    if found is not None:
                        summaries.append(found)
                self._guard(lambda: index.insert([s for s in summaries if s.id not in known]))
            except BaseException:
                with self._pending_lock:
                    self._pending.extendleft(reversed(batch))
                raise
        for summary in summaries:
            self._notify(summary)
        return summaries

    def rescan(self) -> tuple[list[str], list[str]]:
        """Bring the index in line with the ``.eml`` files on disk (files added or removed by
        hand); only new files are parsed. Returns ``(added, removed)`` ids."""
        with self._index_lock:
            index = self.index
            try:
                mtime = os.stat(self.path).st_mtime_ns
            except FileNotFoundError:
                mtime = -1
            saves = self._saves
            known = self._guard(index.ids)  # before listing: a message indexed meanwhile is on disk
            on_disk = set(self.ids())
            with self._pending_lock:
                pending = {message_id for message_id, _ in self._pending}
            new = sorted(on_disk - known)
            gone = sorted(known - on_disk)
            added: list[Summary] = []
            for chunk in range(0, len(new), INDEX_CHUNK):
                summaries = [s for s in map(self._summarize, new[chunk:chunk + INDEX_CHUNK]) if s is not None]
                added += self._guard(functools.partial(index.insert, summaries))
            removed = self._guard(lambda: index.remove(gone)) if gone else []
            self._scanned_mtime, self._scanned_at, self._scanned_saves = mtime, time.monotonic(), saves
        for summary in added:
            if summary.id not in pending:  # index_pending announces this process's own saves
                self._notify(summary)
        if removed:
            self._notify(Deleted(tuple(removed)))
        if added:
            self.prune()
        return [s.id for s in added], removed

    def _rescan_softly(self) -> None:
        self._softly(self.rescan, ([], []))

    def refresh(self, min_interval: float = 0.2) -> None:
        """Index pending saves, and rescan when the folder changed (at most every ``min_interval`` s).
        Never fails for want of disk space: the index is then served as it is."""
        if self._index is None:
            self.index  # noqa: B018 - opening rescans
            return
        self._check_index()
        self.index_pending()
        try:
            mtime = os.stat(self.path).st_mtime_ns
        except FileNotFoundError:
            mtime = -1
        # Our own saves change the folder all the time: then rescan (list the folder) at most every
        # min_interval. A change by someone else alone (files dropped in, even during the last
        # rescan) is picked up at once.
        if mtime != self._scanned_mtime and (
            self._saves == self._scanned_saves or time.monotonic() - self._scanned_at >= min_interval
        ):
            self._rescan_softly()

    def prune(self) -> list[str]:
        """Retention: remove the oldest messages past ``max_messages`` or older than ``max_age``."""
        if not self.max_messages and not self.max_age:
            return []
        index = self.index
        doomed: list[str] = []
        if self.max_age:
            doomed += self._guard(lambda: index.older_than(id_floor(time.time() - self.max_age)))
        if self.max_messages:
            excess = self._guard(index.counts)[0] - len(doomed) - self.max_messages
            if excess > 0:
                oldest = self._guard(lambda: index.oldest(len(doomed) + excess))
                doomed = sorted(set(doomed) | set(oldest))
        if doomed:
            self.delete(doomed)
        return doomed

    def query(self, start: int = 0, limit: int | None = 50, search: str | None = None, *, tz: str | None = None,
              **filters: Any) -> Page:
        """Newest first, one page (``limit`` None: every message from ``start``) of the messages
        matching ``search`` in Mailpit's syntax (see :mod:`smtp_sink.search`; ``tz``: the zone of
        its dates) and the filters of :func:`smtp_sink.index.parse_query`. Raises
        :class:`~smtp_sink.search.SearchError` for a query too big to run."""
        self.refresh()
        return self._guard(lambda: self.index.page(start, limit, search, tz=tz, **filters))

    def summary(self, message_id: str) -> Summary:
        """The summary of one message (``latest`` accepted); :class:`NotFound` if unknown."""
        message_id = self.resolve(message_id)
        found = self._guard(lambda: self.index.get(message_id))
        if found is not None:
            return found
        made = self._summarize(message_id)
        if made is None:
            raise NotFound("message", message_id)
        if not self._softly(lambda: self.index.insert([made]), []):  # indexed meanwhile (or unwritable)
            return self._softly(lambda: self.index.get(message_id), None) or made
        return made

    def detail(self, message_id: str) -> dict[str, Any]:
        """Mailpit's message detail (``GET /api/v1/message/{ID}``); :class:`NotFound` if unknown."""
        message_id = self.resolve(message_id)
        raw = self.read(message_id)
        found = self.summary(message_id)  # indexed (and tagged) now if it was not yet
        data = detail(message_id, raw, read=found.read)
        data["Tags"] = found.tags
        return data

    def open_message(self, message_id: str) -> dict[str, Any]:
        """:meth:`detail` of a message someone opens: it is marked read in passing (best effort:
        on a full disk the flag is not saved, the detail is still given)."""
        message_id = self.resolve(message_id)
        found = detail(message_id, self.read(message_id), read=True)
        found["Tags"] = self.summary(message_id).tags  # indexed (and tagged) now if it was not yet
        self.mark_read([message_id], True, best_effort=True)
        return found

    def part(self, message_id: str, part_id: str) -> tuple[str, str, bytes]:
        """``(content_type, filename, decoded bytes)`` of one part (see :func:`smtp_sink.message.part`);
        :class:`NotFound` naming the message or the part."""
        message_id = self.resolve(message_id)
        return part(self.read(message_id), part_id, within=f"message {message_id}")

    def resolve(self, message_id: str, query: str | None = None, tz: str | None = None) -> str:
        """An id, with ``latest`` meaning the newest message (the newest that the search ``query``
        matches, if one is given; ``tz`` for its dates); :class:`NotFound` for a malformed id or
        a ``latest`` that names nothing (an unknown well-formed id is found out when read)."""
        if message_id == "latest":
            latest = self.latest_id(query, tz)
            if latest is None:
                raise NotFound("message", message_id)
            return latest
        if not is_id(message_id):
            raise NotFound("message", message_id)
        return message_id

    def latest_id(self, query: str | None = None, tz: str | None = None) -> str | None:
        """The id of the newest message (that the search ``query`` matches, if given), or None."""
        self.refresh()
        return self._guard(lambda: self.index.latest_id(query, tz))

    def counts(self) -> tuple[int, int]:
        """``(total, unread)``."""
        self.refresh()
        return self._guard(self.index.counts)

    def index_size(self) -> int:
        """Bytes of the index file (``/api/v1/info``'s ``DatabaseSize``)."""
        return self._guard(self.index.size)

    def mark_read(self, ids: Iterable[str] | None = None, read: bool = True, *, best_effort: bool = False) -> int:
        """Set the read flag of ``ids`` (every message when None); return how many changed. When the
        index cannot be written now (a full disk) this raises :class:`StoreError`, or with
        ``best_effort`` (reading a message marks it read in passing) logs it and returns 0."""
        self.refresh()
        listed = None if ids is None else [self.resolve(i) if i == "latest" else i for i in ids]
        changed = self._softly(lambda: self.index.set_read(listed, read), None)
        if changed is None:
            if best_effort:
                return 0
            raise self._unwritable("read flags")
        if changed:
            self._notify(Marked(None if listed is None else tuple(listed), read))
        return changed

    def mark_matching(self, search: str, read: bool = True, tz: str | None = None) -> int:
        """Set the read flag of the messages the search matches; return how many changed."""
        self.refresh()
        changed = self._softly(lambda: self.index.set_read_matching(search, tz, read), None)
        if changed is None:
            raise self._unwritable("read flags")
        if changed:
            self._notify(Marked(tuple(changed), read))
        return len(changed)

    def _unwritable(self, what: str) -> StoreError:
        return StoreError(errno.ENOSPC, f"{what} not saved: the index in {self.path} cannot be written now "
                                        f"({self._trouble})")

    def delete_all(self) -> int:
        """Remove every message; return how many files were removed."""
        listed = self.ids()
        removed = 0
        for message_id in listed:
            try:
                os.unlink(self.path / f"{message_id}.eml")
            except FileNotFoundError:
                continue
            removed += 1
        self.deleted += removed
        self._softly(lambda: self.index.remove(set(listed) | self.index.ids()), [])  # else: the next rescan
        self._notify(Deleted(tuple(listed), all=True))
        return removed

    def delete_matching(self, search: str, tz: str | None = None) -> int:
        """Remove every message the search matches; return how many files were removed."""
        self.refresh()
        return self.delete(self._guard(lambda: self.index.ids_matching(search, tz)))

    # -- tags ---------------------------------------------------------------------------------

    def tags(self) -> list[str]:
        """Every tag, alphabetical (ignoring case)."""
        self.refresh()
        return self._guard(self.index.tags)

    def tag_counts(self) -> dict[str, int]:
        """Tag -> how many messages have it."""
        self.refresh()
        return self._guard(self.index.tag_counts)

    def tags_of(self, message_id: str) -> list[str]:
        """The tags of one message (``latest`` accepted), alphabetical ignoring case; ``[]`` for
        an unknown message."""
        message_id = self.resolve(message_id)
        return self._guard(lambda: self.index.tags_of([message_id])).get(message_id, [])

    def set_tags(self, ids: Iterable[str], tags: Iterable[str]) -> dict[str, list[str]]:
        """Replace the tags of each message in ``ids`` (``latest`` accepted) with ``tags``
        (cleaned as Mailpit cleans them; ``[]`` removes all); unknown ids are ignored. Returns id
        -> its tags now. :class:`StoreError` when the index cannot be written now."""
        self.refresh()
        listed = [self.resolve(i) if i == "latest" else i for i in ids]
        names = list(tags)
        changed = self._softly(lambda: self.index.set_tags(listed, names), None)
        if changed is None:
            raise self._unwritable("tags")
        if changed:
            self._notify(Tagged(tuple((i, tuple(t)) for i, t in changed.items())))
        return changed

    def rename_tag(self, old: str, new: str) -> None:
        """Rename a tag everywhere; :class:`~smtp_sink.tags.TagError` as Mailpit refuses it."""
        self.refresh()

        def rename() -> bool:
            self.index.rename_tag(old, new)
            return True

        if self._softly(rename, None) is None:
            raise self._unwritable("tags")
        self._notify(Tagged((), everywhere=True))

    def delete_tag(self, name: str) -> None:
        """Remove a tag from every message; :class:`~smtp_sink.tags.TagError` when there is none."""
        self.refresh()
        if self._softly(lambda: self.index.delete_tag(name), None) is None:
            raise self._unwritable("tags")
        self._notify(Tagged((), everywhere=True))


def _write_all(fd: int, chunks: list[bytes | bytearray], done: int = 0) -> None:
    """``os.writev`` until every byte after the first ``done`` is written (short writes happen on a full disk)."""
    views = [memoryview(chunk) for chunk in chunks if chunk]
    while views and done >= len(views[0]):
        done -= len(views[0])
        views.pop(0)
    if done:
        views[0] = views[0][done:]
    while views:
        written = os.writev(fd, views)
        if written == 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        while views and written >= len(views[0]):
            written -= len(views[0])
            views.pop(0)
        if written:
            views[0] = views[0][written:]


_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
_process_id = os.getpid()  # in temporary file names (cached; refreshed in a forked child)


def _forked() -> None:
    global _process_id
    _process_id = os.getpid()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forked)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True

