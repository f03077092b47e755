"""One SMTP process of ``smtp-sink serve --workers N``, started by :mod:`smtp_sink.workers` as
``python -m smtp_sink.worker FD`` (FD: its end of a socket pair with the parent).

It reads its settings from the parent (a pickled :class:`~smtp_sink.config.Config` with the
ports the parent reserved, its worker number and the runtime folder of :mod:`smtp_sink.shared`),
then serves SMTP on the shared port (``SO_REUSEPORT``) with the usual :class:`SMTPServer`. It
stores each message itself (``tmp/`` then ``os.replace``, before the 250) and never indexes: it
tells the parent each new id (:class:`ParentLink`, one write per FLUSH_DELAY), and each 4xx/5xx
reply for the web page's events. Fault rules and the session count are the shared ones.

Lines to the parent: ``R <pid>`` (serving), ``X <reason>`` (could not start), ``M <id> <size>``
(stored), ``E <json>`` (an error reply: level, peer, line). End of file from the parent (it died)
stops the worker, as SIGTERM does: 421 to every open session, then exit. SIGINT is ignored:
Ctrl-C reaches the parent too, which stops the workers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import pickle
import signal
import socket
import sys
import threading
from pathlib import Path

from .config import Config
from .server import SMTPConnection, SMTPServer, run_loop
from .shared import SharedRuleSet, SharedState
from .sink import ClientError, Sink, SinkEvent

log = logging.getLogger("smtp_sink")
SETUP_SIZE = 8  # bytes of the setup's length, before the pickled setup
FLUSH_DELAY = 0.005  # seconds a line to the parent may wait for others to share its write


class ParentLink:
    """The worker's lines to the parent, written at most every FLUSH_DELAY s: under load the parent
    wakes up a few hundred times a second, not once per message (a message reaches the page's
    events a few ms later; one not announced when a worker dies is found by the parent's rescan)."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self._writer = writer
        self._lines: list[bytes] = []
        self._loop = asyncio.get_running_loop()

    def send(self, line: bytes) -> None:
        """Queue one line (ending in a newline) for the next write."""
        if not self._lines:
            self._loop.call_later(FLUSH_DELAY, self.flush)
        self._lines.append(line)

    def flush(self) -> None:
        """Write the queued lines now."""
        if self._lines and not self._writer.is_closing():
            self._writer.write(b"".join(self._lines))
        self._lines.clear()

    async def close(self) -> None:
        """Write what is queued, wait until the parent has it, and close."""
        self.flush()
        with contextlib.suppress(ConnectionError):
            await self._writer.drain()
        self._writer.close()
        with contextlib.suppress(ConnectionError):
            await self._writer.wait_closed()


class WorkerSink(Sink):
    """A :class:`Sink` that stores but does not index: new ids and error replies go to the parent."""

    def __init__(self, config: Config, rules: SharedRuleSet, link: ParentLink) -> None:
        super().__init__(config, rules=rules)
        self._link = link
        self.subscribe(self._forward)  # error replies (rate-limited by client_error) go up

    async def start(self) -> None:
        """Open the store folder and watch its free space (the index is the parent's)."""
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        try:
            self.store.open()
        except OSError as exc:
            raise RuntimeError(f"cannot use store folder {self.store.path}: {exc.strerror or exc}") from None
        self.refresh_capacity()
        self._capacity_task = self._loop.create_task(self._watch_capacity())

    async def stop(self) -> None:
        """Stop watching and relaying; hand over the last ids."""
        if self._capacity_task is not None:
            self._capacity_task.cancel()
        if self.relay is not None:
            self.relay.close()
        self._schedule_index()
        self._indexer.shutdown(wait=False)

    def _schedule_index(self) -> None:
        """Instead of indexing: tell the parent which messages were stored."""
        for message_id, size in self.store.hand_over():
            self._link.send(b"M %s %d\n" % (message_id.encode("ascii"), size))

    def _forward(self, event: SinkEvent) -> None:
        if isinstance(event, ClientError):
            self._link.send(b"E " + json.dumps([event.level, event.peer, event.line]).encode("utf-8") + b"\n")


class WorkerConnections(set[SMTPConnection]):
    """The sessions of this worker; each one leaving is taken off the shared count (see
    :meth:`WorkerServer.full`, which counts it in)."""

    def __init__(self, state: SharedState, worker: int) -> None:
        super().__init__()
        self._state, self._worker = state, worker

    def discard(self, conn: object) -> None:
        """Forget a session (and count it out)."""
        if conn in self:
            super().discard(conn)
            self._state.leave(self._worker)

    def clear(self) -> None:
        """Forget every session (and count them out)."""
        if self:
            count = len(self)
            super().clear()
            self._state.leave(self._worker, count)


class WorkerServer(SMTPServer):
    """The SMTP listeners of one worker: on the shared port, ``max_connections`` counted across workers."""

    def __init__(self, sink: Sink, state: SharedState, worker: int) -> None:
        super().__init__(sink)
        self.reuse_port = True
        self._state, self._worker = state, worker
        self._limit = sink.config.smtp.max_connections
        self.connections = WorkerConnections(state, worker)

    def full(self) -> bool:
        """Full here (open files), or ``max_connections`` open across workers; else this session
        is counted in (the caller adds it to :attr:`connections` at once)."""
        return super().full() or not self._state.admit(self._worker, self._limit)


def _read_setup(sock: socket.socket) -> tuple[Config, int, Path]:
    """The setup the parent sends first: ``(config, worker number, runtime folder)``."""

    def exactly(size: int) -> bytes:
        data = b""
        while len(data) < size:
            chunk = sock.recv(size - len(data))
            if not chunk:
                raise EOFError("the parent closed the connection before the setup")
            data += chunk
        return data

    size = int.from_bytes(exactly(SETUP_SIZE), "big")
    config, worker, folder = pickle.loads(exactly(size))  # from our parent only (a private socket pair)
    return config, worker, Path(folder)


async def _serve(config: Config, worker: int, folder: Path, sock: socket.socket) -> None:
    reader, writer = await asyncio.open_unix_connection(sock=sock)
    link = ParentLink(writer)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)  # SIGINT is ignored: the parent says when
    state = SharedState.attach(folder)
    sink = WorkerSink(config, SharedRuleSet(state, create=False), link)
    smtp = WorkerServer(sink, state, worker)
    try:
        await sink.start()
        await smtp.prepare()
        await smtp.bind()
        await smtp.serve()
    except BaseException as exc:
        smtp.close()
        await sink.stop()
        reason = str(exc) if isinstance(exc, (OSError, RuntimeError)) else repr(exc)
        link.send(b"X " + reason.replace("\n", " ").encode("utf-8", "replace") + b"\n")
        await link.close()
        raise SystemExit(1) from None
    link.send(b"R %d\n" % os.getpid())

    async def parent_gone() -> None:
        await reader.read()  # the parent writes nothing more: this returns at its end of file
        stop.set()

    watch = loop.create_task(parent_gone())
    await stop.wait()
    watch.cancel()
    await smtp.stop()
    await sink.stop()
    await link.close()


def main(argv: list[str] | None = None) -> int:
    """Run one worker: ``python -m smtp_sink.worker FD``."""
    args = sys.argv[1:] if argv is None else argv
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the parent too: it stops the workers in order
    sock = socket.socket(fileno=int(args[0]))
    config, worker, folder = _read_setup(sock)
    logging.basicConfig(level=config.log.level.upper(), stream=sys.stderr,
                        format=f"%(asctime)s %(levelname)s [worker {worker} pid %(process)d] %(message)s")
    sock.setblocking(False)
    run_loop(lambda: _serve(config, worker, folder, sock), config.smtp.loop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
