"""The running sink without sockets: store, index scheduling, fault rules, policy, capacity, events.

A :class:`Sink` is what the doors share: the SMTP listeners (:mod:`smtp_sink.server`) hand it
each received message, the web app (:mod:`smtp_sink.web.app`) reads the store and the rules
through it and subscribes to its events, the pytest plugin reaches it through its server. It
opens no port, so it is built and tested on its own.

Messages made by the HTTP API (``POST /api/v1/send``) are saved the same way (:meth:`Sink.save`,
from any thread). After a message is stored, auto-relay (``[relay] relay_all``/``relay_matching``)
queues it for the upstream and the webhook (``[webhook] url``) posts its summary once indexed: both
in threads of their own (:mod:`smtp_sink.relay`, :mod:`smtp_sink.webhook`), never on the reply path.

Indexing (parsing each message for its summary) costs more CPU than receiving it, and the
indexer thread competes with the SMTP thread for the GIL. So it waits until mail stops flowing,
unless someone watches (event subscribers) or the backlog grows large. Queries never wait: they
index what is pending first (:meth:`Store.refresh`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .config import Config
from .ids import new_id
from .policy import Capacity, MailboxPolicy
from .protocol import Policy
from .relay import Relay
from .rules import RuleSet
from .store import Store, StoredMessage, StoreError, StoreEvent
from .tls_findings import TLSFindings
from .trace import Envelope, trace_headers
from .webhook import Webhook

ERRORS_PER_SECOND = 10  # at most this many ClientError events a second (a flood of bad commands)


@dataclass(frozen=True)
class ClientError:
    """Sink event: the server answered a client with a 4xx (``warning``) or 5xx (``error``) reply
    (Mailpit's ``error`` frame: ``line`` is the reply's last line, ``peer`` the client's address)."""

    level: str
    peer: str
    line: str


SinkEvent = StoreEvent | ClientError

__all__ = ["Sink", "save_message"]
log = logging.getLogger("smtp_sink")

CAPACITY_INTERVAL = 0.5  # seconds between two looks at the store's free space and writability
INDEX_DELAY = 0.02  # seconds between a save and the first look at indexing
INDEX_QUIET = 0.25  # index once no message arrived for this long
INDEX_BACKLOG = 20000  # ... or once this many wait


def save_message(store: Store, envelope: Envelope, data: bytes | bytearray, hostname: str) -> StoredMessage:
    """Store one received message: the trace headers of :mod:`smtp_sink.trace` (the envelope,
    naming ``hostname``), then ``data``. Raises :class:`StoreError`."""
    message_id = new_id()
    return store.save(trace_headers(envelope, message_id, hostname), data, message_id)


class Sink:
    """What a running smtp-sink is, without sockets (see the module doc)."""

    def __init__(self, config: Config, policy: Policy | None = None, rules: RuleSet | None = None) -> None:
        self.config = config
        # fault rules; add, list and clear them at run time (``rules``: shared by processes, --workers)
        self.rules = rules if rules is not None else RuleSet(config.rules)
        self.capacity = Capacity()  # can the store take mail: refreshed on a timer (see start)
        self.policy = policy or MailboxPolicy(config.policy, self.capacity, self.rules)
        store = config.store
        self.store = Store(store.path, fsync=store.fsync, max_messages=store.max_messages, max_age=store.max_age,
                           on_event=self._publish, tags=config.tags)
        self._subscribers: list[Callable[[SinkEvent], None]] = []
        self._errors_since, self._errors = 0.0, 0  # the ClientError rate limit's window
        # Index inserts run in one worker thread, batched, off the reply path (see _schedule_index).
        self._indexer = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="smtp-sink-index")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0  # the thread running the loop (saves from others schedule through it)
        self._index_scheduled = False
        self._last_saved = 0.0
        self._capacity_task: asyncio.Task[None] | None = None
        # [relay]: release and auto-relay (None: no upstream configured)
        self.relay = Relay(config.relay, self.store.read, config.smtp.hostname) if config.relay.host else None
        self.webhook: Webhook | None = None  # [webhook] url: started with the sink
        # [tls] probe: clients that took the bad certificate, or refused it (tls_findings.py)
        self.tls_findings = TLSFindings("" if config.tls.probe == "off" else str(config.tls.probe))
        self._unsubscribe_webhook: Callable[[], None] | None = None

    async def start(self) -> None:
        """Open the store and its index (rebuilt from the files if needed), look at the free space
        and start watching it. Raises RuntimeError when the store folder cannot be used."""
        self._loop = loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        try:
            self.store.open()
        except OSError as exc:
            raise RuntimeError(f"cannot use store folder {self.store.path}: {exc.strerror or exc}") from None
        try:  # open the index before the first client
            await loop.run_in_executor(self._indexer, lambda: self.store.index)
        except Exception:  # the .eml files are safe; queries retry opening it
            log.exception("opening the index failed")
        self.refresh_capacity()
        self._capacity_task = loop.create_task(self._watch_capacity())
        if self.config.webhook.url:
            self.webhook = Webhook(self.config.webhook)
            self._unsubscribe_webhook = self.subscribe(self.webhook.offer)

    async def stop(self) -> None:
        """Stop watching, relaying and posting webhooks, index what is pending and close the index."""
        if self._capacity_task is not None:
            self._capacity_task.cancel()
        if self._unsubscribe_webhook is not None:
            self._unsubscribe_webhook()
        if self.relay is not None:
            self.relay.close()
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._indexer, self.store.close)
        except Exception:  # the .eml files are safe; the next start rescans them
            log.exception("indexing at shutdown failed")
        self._indexer.shutdown(wait=False)
        if self.webhook is not None:  # after the last summaries were announced (none is sent any more)
            await loop.run_in_executor(None, self.webhook.close)

    # -- messages -------------------------------------------------------------------------------

    def save(self, envelope: Envelope, data: bytes | bytearray) -> StoredMessage:
        """Store a received message (from the loop's thread or any other), schedule its indexing and
        queue it for auto-relay. Raises :class:`StoreError` (after looking at the capacity again: on
        a full disk the next MAIL gets 452 at once)."""
        probed = self.tls_findings.probe if envelope.tls else ""  # under the TLS probe every TLS session took it
        if probed:
            envelope.tls_probe = probed  # written into the trace block: X-Sink-TLS-Probe
        try:
            stored = save_message(self.store, envelope, data, self.config.smtp.hostname)
        except StoreError as exc:
            log.error("message from <%s> not stored: %s", envelope.mail_from, exc.strerror)
            self.refresh_capacity()
            raise
        if log.isEnabledFor(logging.INFO):  # a line per message: build it only when it is written
            log.info("stored %s size=%d from=<%s> to=%s%s", stored.id, stored.size, envelope.mail_from,
                     ",".join(envelope.rcpt_to), " (HTTP API)" if envelope.api else "")
        loop = self._loop
        if loop is not None and threading.get_ident() != self._loop_thread:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: a query indexes it
                loop.call_soon_threadsafe(self._schedule_index)
        else:
            self._schedule_index()
        if self.relay is not None and self.relay.auto:
            self.relay.submit(stored.id, envelope.mail_from, envelope.rcpt_to)
        if probed:
            self.tls_findings.accepted(envelope, stored.id)
        return stored

    def adopt(self, message_id: str, size: int) -> None:
        """A message an SMTP worker process stored (``serve --workers``): index and announce it as
        if it was saved here (on the loop's thread)."""
        self.store.adopt(message_id, size)
        self._schedule_index()

    def _schedule_index(self) -> None:
        """Look at indexing the saved messages in INDEX_DELAY seconds (see INDEX_QUIET). Not started
        (no loop): they stay pending until the next query indexes them."""
        loop = self._loop
        if loop is None:
            return
        self._last_saved = loop.time()
        if not self._index_scheduled:
            self._index_scheduled = True
            loop.call_later(INDEX_DELAY, self._index_batch)

    def _index_batch(self) -> None:
        loop = self._loop
        assert loop is not None
        busy = loop.time() - self._last_saved < INDEX_QUIET
        if busy and not self.watched and self.store.pending < INDEX_BACKLOG:
            loop.call_later(INDEX_QUIET, self._index_batch)  # look again later
            return
        self._index_scheduled = False
        with contextlib.suppress(RuntimeError):  # stopped meanwhile: close() indexes what is pending
            loop.run_in_executor(self._indexer, self.store.index_pending).add_done_callback(_log_index_error)

    # -- events -----------------------------------------------------------------------------------

    @property
    def watched(self) -> bool:
        """True while someone subscribes to events (a web page is open): index promptly."""
        return bool(self._subscribers)

    def subscribe(self, callback: Callable[[SinkEvent], None]) -> Callable[[], None]:
        """Call ``callback(event)`` for each new message (its :class:`~smtp_sink.summary.Summary`,
        once indexed), each deletion (:class:`~smtp_sink.store.Deleted`) and read-flag change
        (:class:`~smtp_sink.store.Marked`), in the thread that indexed, deleted or marked, and each
        4xx/5xx reply to a client (:class:`ClientError`, on the event loop, at most
        :data:`ERRORS_PER_SECOND`). Returns a function that unsubscribes."""
        self._subscribers.append(callback)

        def unsubscribe() -> None:
            with contextlib.suppress(ValueError):
                self._subscribers.remove(callback)

        return unsubscribe

    def client_error(self, code: int, peer: str, line: str) -> None:
        """Tell subscribers that ``peer`` got the 4xx/5xx reply ``line`` (nothing without
        subscribers; beyond :data:`ERRORS_PER_SECOND` in a second the rest are left out)."""
        if not self._subscribers:
            return
        now = time.monotonic()
        if now - self._errors_since >= 1.0:
            self._errors_since, self._errors = now, 0
        if self._errors >= ERRORS_PER_SECOND:
            return
        self._errors += 1
        self._publish(ClientError("warning" if code < 500 else "error", peer, line))

    def _publish(self, event: SinkEvent) -> None:
        for callback in list(self._subscribers):
            try:
                callback(event)
            except Exception:  # a broken listener must not break the store
                log.exception("event subscriber %r failed", callback)

    # -- capacity ---------------------------------------------------------------------------------

    def refresh_capacity(self) -> str | None:
        """Look again whether the store can take mail (writable, at least ``min_free_space`` free):
        one ``statvfs``. Sets :attr:`capacity` (MAIL and DATA answer 452 while it has a problem)
        and returns the problem, or None."""
        path, minimum = self.store.path, self.config.store.min_free_space
        problem = None
        try:
            stat = os.statvfs(path)
            if not os.access(path, os.W_OK):
                problem = f"store folder {path} is not writable"
            elif stat.f_bavail * stat.f_frsize < minimum:
                problem = f"less than min_free_space={minimum} bytes free in {path}"
        except FileNotFoundError:
            problem = None  # removed while running: the next save recreates it
        except OSError as exc:
            problem = f"store folder {path}: {exc.strerror}"
        if problem != self.capacity.problem:
            (log.warning if problem else log.info)("store: %s", problem or "can take mail again")
        self.capacity.problem = problem
        return problem

    async def _watch_capacity(self) -> None:
        """Refresh :attr:`capacity` every CAPACITY_INTERVAL seconds (never inside a session)."""
        while True:
            await asyncio.sleep(CAPACITY_INTERVAL)
            self.refresh_capacity()


def _log_index_error(future: asyncio.Future[Any]) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.error("indexing failed", exc_info=future.exception())
