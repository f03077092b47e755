"""Logging for ``smtp-sink serve`` that does no I/O on the event loop: records go into a bounded
queue and a listener thread formats and writes them (issue 18). A level that is off costs one
cached ``isEnabledFor``; a record that is on costs the loop thread its creation and a queue put.

A log destination that blocks (a full pipe nobody reads) stalls the listener thread only; once
:data:`QUEUE_MAX` records wait, further ones are dropped and counted, and the count is written
before the next line that gets through: memory stays bounded and SMTP goes on.
"""

from __future__ import annotations

import logging
import logging.handlers
import queue
import threading
from collections.abc import Callable
from typing import TextIO

__all__ = ["QUEUE_MAX", "configure"]

QUEUE_MAX = 10000  # records waiting for the listener thread before new ones are dropped
FORMAT = "%(asctime)s %(levelname)s %(message)s"


class _Enqueue(logging.handlers.QueueHandler):
    """Puts the record as it is (formatting happens in the listener thread); drops it when full."""

    def __init__(self, records: queue.Queue[logging.LogRecord]) -> None:
        super().__init__(records)
        self.dropped = 0
        self._lock_dropped = threading.Lock()

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        return record

    def enqueue(self, record: logging.LogRecord) -> None:
        try:
            self.queue.put_nowait(record)
        except queue.Full:
            with self._lock_dropped:
                self.dropped += 1

    def take_dropped(self) -> int:
        with self._lock_dropped:
            dropped, self.dropped = self.dropped, 0
        return dropped


class _Write(logging.StreamHandler):  # type: ignore[type-arg]
    """The listener thread's handler: says how many lines were dropped before the next one."""

    def __init__(self, stream: TextIO, source: _Enqueue) -> None:
        super().__init__(stream)
        self.source = source

    def handle(self, record: logging.LogRecord) -> bool:
        dropped = self.source.take_dropped()
        if dropped:
            note = logging.makeLogRecord({"name": record.name, "levelno": logging.WARNING, "levelname": "WARNING",
                                          "msg": "%d log lines dropped (the log output did not keep up)",
                                          "args": (dropped,)})
            super().handle(note)
        return super().handle(record)


class _Listener(logging.handlers.QueueListener):
    def enqueue_sentinel(self) -> None:
        self.queue.put(self._sentinel)  # type: ignore[attr-defined]  # waits for room (a full queue at stop)


def configure(level: str, stream: TextIO) -> Callable[[], None]:
    """Send every log record at ``level`` or above to ``stream`` through the queue and its thread
    (the root logger's handlers are replaced). Returns the function that writes what is queued and
    stops the thread."""
    records: queue.Queue[logging.LogRecord] = queue.Queue(QUEUE_MAX)
    enqueue = _Enqueue(records)
    write = _Write(stream, enqueue)
    write.setFormatter(logging.Formatter(FORMAT))
    listener = _Listener(records, write)
    root = logging.getLogger()
    for handler in root.handlers[:]:
        root.removeHandler(handler)
    root.addHandler(enqueue)
    root.setLevel(level.upper())
    listener.start()

    def stop() -> None:
        root.removeHandler(enqueue)
        listener.stop()  # writes what is queued, then the thread ends
        write.flush()

    return stop
