"""Recording SMTP sessions on the event loop, cheaply; writing them from a thread (issue 17).

The server (:class:`~smtp_sink.server.SMTPConnection`) holds one :class:`Recording` per
connection and calls it at a few points: after each feed of input (:meth:`Recording.took`: the
command lines the session executed, which :class:`~smtp_sink.protocol.SMTPSession` collects in
its ``transcript`` with credentials masked and message data as a byte count, and the outputs
it returned), when a message is stored, when TLS starts, and when the connection ends. Each
call appends one small tuple (the Reply objects themselves, never formatted, never a copy of
message data) and reads no clock of its own: the time is the loop's, read once per chunk.

A finished recording goes on a queue; the :class:`Recorder`'s thread turns a batch of them into
display events (replies paired with their commands, data as its size) and writes them to the
:class:`~smtp_sink.sessions.SessionStore`. So nothing is formatted, encoded or written on the loop.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import os
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .config import SessionsConfig
from .ids import new_id
from .protocol import CLOSE, Delay, MessageReceived, Output, Throttle
from .replies import Reply
from .sessions import SessionStore

if TYPE_CHECKING:
    from .protocol import SMTPSession

__all__ = ["Recorder", "Recording", "raw_events", "row"]

log = logging.getLogger("smtp_sink")

WRITE_PERIOD = 0.2  # seconds between two batches written by the thread
WRITE_BATCH = 100  # sessions written in one transaction
MAX_MESSAGE_IDS = 10000  # ids of stored messages kept per session (a kept connection may send many)
_NO_LINES: tuple[bytes | int, ...] = ()


class _Delivered:
    """Marker in a recorded output list where the session handed a message over to be stored."""

    def __repr__(self) -> str:
        return "DELIVERED"


DELIVERED = _Delivered()


class Recording:
    """One session's raw record, appended to on the event loop (see the module doc).

    ``events`` holds tuples: ``("F", t, chunk, lines, outputs)`` for a feed (``lines`` from the
    session's transcript, ``outputs`` as returned, messages replaced by :data:`DELIVERED`),
    ``("M", t, message_id or None, size, reply)`` once a message was stored (or not),
    ``("T", t, version, cipher)`` and ``("N", t, text)``."""

    __slots__ = (
        "_recorder",
        "auth_user",
        "chunk",
        "clock",
        "dropped",
        "ended",
        "events",
        "helo",
        "id",
        "message_ids",
        "outcome",
        "peer",
        "room",
        "started",
        "tls",
    )

    def __init__(self, recorder: Recorder, peer: str, clock: float) -> None:
        self._recorder = recorder
        self.id = new_id()
        self.peer = peer
        self.started = time.time()
        self.clock = clock  # the loop's time at started: event times are offsets from it
        self.events: list[tuple[Any, ...]] = []
        self.room = recorder.max_events  # events that may still be kept
        self.dropped = 0
        self.chunk = 0  # chunks of input received (the server counts them)
        self.outcome = ""
        self.ended = 0.0
        self.helo = ""
        self.auth_user: str | None = None
        self.tls: tuple[str, str] | None = None
        self.message_ids: list[str] = []

    def took(self, session: SMTPSession | None, outputs: list[Output], now: float) -> None:
        """A feed (or the greeting, or held-back outputs) ran: keep its input lines and outputs
        (past the cap only their number: a kept connection sending thousands of messages costs a
        subtraction per feed)."""
        lines: Sequence[bytes | int] = _NO_LINES
        transcript = None if session is None else session.transcript
        if transcript:
            lines = transcript
        count = len(lines) + len(outputs)
        if not count:
            return
        self.room -= count
        if self.room >= 0:
            if transcript and session is not None:
                session.transcript = []
            for item in outputs:
                kind = item.__class__
                if kind is MessageReceived or kind is Delay:
                    outputs = self._own(outputs)  # no message data kept; stop at a delay
                    break
            self.events.append(("F", now, self.chunk, lines, outputs))
        else:
            self.dropped += count
            if transcript:
                transcript.clear()
        if outputs and outputs[-1] is CLOSE:  # QUIT answered, or a fault rule ended it: the session is over
            last = outputs[-2] if len(outputs) > 1 else None
            self.finish(session, "quit" if isinstance(last, Reply) and last.code == 221 else "rule")

    @staticmethod
    def _own(outputs: list[Output]) -> list[Any]:
        """``outputs`` without message data (a marker instead), up to a delay rule's Delay (what
        follows it is executed, and recorded, when the delay ends)."""
        kept: list[Any] = []
        for item in outputs:
            if isinstance(item, MessageReceived):
                kept.append(DELIVERED)
            else:
                kept.append(item)
                if isinstance(item, Delay):
                    break
        return kept

    def delivered(self, message_id: str | None, size: int, reply: Reply, now: float) -> None:
        """A message was handed to the store: its id (None: not stored) and the reply it got."""
        if message_id is not None and len(self.message_ids) < MAX_MESSAGE_IDS:
            self.message_ids.append(message_id)
        if self.room >= 0:  # paired with the DELIVERED of a kept feed (past the cap: the id alone)
            self.events.append(("M", now, message_id, size, reply))

    def tls_started(self, version: str, cipher: str, now: float) -> None:
        """The TLS handshake succeeded (STARTTLS or implicit TLS)."""
        self.tls = (version, cipher)
        self.events.append(("T", now, version, cipher))

    def note(self, text: str, now: float) -> None:
        """Something worth showing in the transcript (a failed handshake...)."""
        if self.room > 0:
            self.room -= 1
            self.events.append(("N", now, text))
        else:
            self.dropped += 1

    def end(self, outcome: str) -> None:
        """How the session ended, unless an earlier call said so (QUIT before the disconnect...)."""
        if not self.outcome:
            self.outcome = outcome

    def finish(self, session: SMTPSession | None, outcome: str = "disconnect") -> None:
        """The connection is over: queue the recording for the writer (once)."""
        if self.ended:
            return
        self.end(outcome)
        self.ended = time.time()
        if session is not None:
            self.helo, self.auth_user = session.helo, session.auth_user
        self._recorder.finished(self)


class Recorder:
    """The sessions of one SMTP process: recordings begin here and are written by its thread."""

    def __init__(self, folder: str | os.PathLike[str], config: SessionsConfig) -> None:
        self.enabled = config.enabled
        self.max_events = config.max_events
        self.store = SessionStore(folder, config.max_sessions, config.max_age)
        self._queue: collections.deque[Recording] = collections.deque()
        self._queued = 0  # recordings finished (counted on the loop)
        self._written = 0  # ... and written (or given up on) by the thread
        self._wake = threading.Event()
        self._done = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None

    def begin(self, peer: str, clock: float) -> Recording | None:
        """A new connection's recording (None when recording is off)."""
        if not self.enabled:
            return None
        if self._thread is None:
            self._start()
        return Recording(self, peer, clock)

    def finished(self, recording: Recording) -> None:
        """Queue a finished recording (on the loop: no I/O; the thread looks every WRITE_PERIOD)."""
        self._queue.append(recording)
        self._queued += 1

    def _start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="smtp-sink-sessions", daemon=True)
        self._thread.start()

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every recording finished so far is written; False if that took over ``timeout``."""
        target = self._queued
        if self._thread is None or not self._thread.is_alive():
            self._write_batch()  # not running (never started or stopped): write here
            return self._written >= target
        self._wake.set()
        with self._done:
            return self._done.wait_for(lambda: self._written >= target, timeout)

    def settle(self, loop: asyncio.AbstractEventLoop, timeout: float = 10.0) -> bool:
        """From another thread (tests, the pytest plugin): let the loop finish what it is doing (a
        session that just answered QUIT is then finished), then :meth:`flush`."""
        passed = threading.Event()
        try:
            loop.call_soon_threadsafe(passed.set)
        except RuntimeError:  # the loop is closed: nothing is running on it
            passed.set()
        passed.wait(timeout)
        return self.flush(timeout)

    def close(self) -> None:
        """Write what is queued and stop the thread."""
        self._stopping = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(30)
        self._write_batch()

    def _run(self) -> None:
        while not self._stopping:
            self._wake.wait(WRITE_PERIOD)
            self._wake.clear()
            self._write_batch()

    def _write_batch(self) -> None:
        while True:  # at most WRITE_BATCH a transaction: a burst of sessions ending costs little memory
            batch: list[Recording] = []
            while self._queue and len(batch) < WRITE_BATCH:
                batch.append(self._queue.popleft())
            if batch:
                try:
                    self.store.write([row(r) for r in batch])
                except Exception:  # a full disk, a damaged file: the sessions are lost, the server goes on
                    log.exception("cannot write %d session transcripts to %s", len(batch), self.store.path)
            with self._done:
                self._written += len(batch)
                self._done.notify_all()
            if len(batch) < WRITE_BATCH:
                return


# -- off the loop: a recording as JSON (rendered into display events when read) ----------------


def _output(item: Any) -> Any:
    """One output as JSON: a reply as ``[code, [lines]]``, a marker as its name, a rule's delay or throttle."""
    if item.__class__ is Reply:
        return [item.code, item.lines]
    if isinstance(item, Delay):
        return ["DELAY", item.seconds]
    if isinstance(item, Throttle):
        return ["THROTTLE", item.rate]
    return repr(item)  # DELIVERED, CLOSE, START_TLS


_REFUSABLE = (b"", b"MAIL", b"RCPT", b"DATA", b"(data)")  # the greeting, the transaction, the message data


def _refuses(lines: Sequence[bytes | int], outputs: list[Any], verb: bytes) -> tuple[bool, bytes]:
    """Whether a 5xx in this feed answered the greeting, MAIL, RCPT, DATA or the message data (each
    input line is answered by the next reply, as :func:`smtp_sink.sessions.render` pairs them);
    and the verb the outputs left over answer (the next feed's held-back outputs)."""
    at, last = 0, len(lines) - 1
    for number, line in enumerate(lines):
        verb = b"(data)" if line.__class__ is int else bytes(line[:4]).upper()  # type: ignore[index]
        if line.__class__ is int and number == last:
            break  # what is left answers it (or nothing yet)
        while at < len(outputs):
            item = outputs[at]
            at += 1
            if item.__class__ is Reply:
                if item.code >= 500 and verb in _REFUSABLE:
                    return True, verb
                break
            if item is DELIVERED or item is CLOSE:
                break
    for item in outputs[at:]:
        if item.__class__ is Reply and item.code >= 500 and verb in _REFUSABLE:
            return True, verb
    return False, verb


def raw_events(recording: Recording) -> tuple[list[Any], bool]:
    """The recording's events as JSON-ready lists (see :func:`smtp_sink.sessions.render`), times
    relative to its start, and whether a 5xx refused the connection, a MAIL, RCPT or DATA, or the
    message data. Plain conversions only: the display pairing of commands and replies waits for a reader."""
    clock, events, refused, verb = recording.clock, [], False, b""
    for event in recording.events:
        kind = event[0]
        if kind == "F":
            _, t, chunk, lines, outputs = event
            if not refused:
                refused, verb = _refuses(lines, outputs, verb)
            events.append(["F", t - clock, chunk,
                           [line.decode("utf-8", "backslashreplace") if line.__class__ is bytes else line
                            for line in lines], [_output(item) for item in outputs]])
        elif kind == "M":
            _, t, message_id, size, reply = event
            events.append(["M", t - clock, message_id, size, reply.code, reply.lines])
        else:
            events.append([kind, event[1] - clock, *event[2:]])
    return events, refused


def row(recording: Recording) -> dict[str, Any]:
    """A recording as a row of :class:`~smtp_sink.sessions.SessionStore` (in the writer thread)."""
    events, refused = raw_events(recording)
    tls = recording.tls or ("", "")
    return {
        "id": recording.id, "started": recording.started, "ended": recording.ended or time.time(),
        "client": recording.peer, "helo": recording.helo, "tls_version": tls[0], "tls_cipher": tls[1],
        "auth_user": recording.auth_user, "outcome": recording.outcome or "disconnect", "refused": int(refused),
        "messages": len(recording.message_ids), "message_ids": json.dumps(recording.message_ids),
        "events": json.dumps(events), "dropped": recording.dropped, "pid": os.getpid(),
    }
