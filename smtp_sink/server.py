"""The SMTP listener: one ``asyncio.BufferedProtocol`` per connection driving :mod:`smtp_sink.protocol`.

This is the only module that does socket I/O. Replies to pipelined commands go out in one
``transport.write``; a client that does not read its replies stops being executed and read
(back-pressure, see SMTPConnection); idle sessions, command lines not finished in time and
too slow DATA get 421 and are closed; on shutdown every open session gets 421; an unexpected
error closes its session with 451 or 421 and leaves the others alone. With TLS on,
STARTTLS upgrades a connection in place (``loop.start_tls``) and a second listener speaks
implicit TLS (RFC 8314).
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import dataclasses
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from .config import Config, SMTPConfig, is_loopback
from .policy import Capacity, MailboxPolicy
from .protocol import (
    CLOSE,
    START_TLS,
    Delay,
    MessageReceived,
    Output,
    Policy,
    Settings,
    SMTPSession,
    State,
    Throttle,
    accepted,
    shutting_down,
    store_failed,
)
from .replies import Reply
from .rules import RuleSet
from .sasl import cram_md5_challenge
from .store import Store, StoreError
from .tls import ServerTLS, TLSSetupError
from .tls import setup as setup_tls

log = logging.getLogger("smtp_sink")
T = TypeVar("T")
# Indexing (parsing each message for the summary) costs more CPU than receiving it, and the
# worker thread competes with the SMTP thread for the GIL. So it waits until mail stops
# flowing, unless someone watches (event-stream subscribers) or the backlog grows large.
# Queries never wait: they index what is pending first (Store.refresh).
CAPACITY_INTERVAL = 0.5  # seconds between two looks at the store's free space and writability
INDEX_DELAY = 0.02  # seconds between a save and the first look at indexing
INDEX_QUIET = 0.25  # index once no message arrived for this long
INDEX_BACKLOG = 20000  # ... or once this many wait


# A client that does not read its replies is noticed once the kernel's buffers and then the
# transport's fill up: keep both small (replies are small; a reading client never fills them).
READ_COMMANDS = 16384  # bytes one read takes in command mode (commands are short)
READ_DATA = 262144  # ... and in DATA (large reads: fewer wake-ups for big messages)
SEND_BUFFER = 16384  # SO_SNDBUF of a connection (the kernel doubles it), instead of growing to megabytes
WRITE_HIGH = 16384  # the transport's high-water mark: pause_writing past it
TRIM_AFTER = 100  # sessions that ended since the peak before freed memory is returned (see _trim_memory)
DRAIN_SLICE = 0.0005  # seconds of held-back input executed per loop iteration (see SinkServer._drain)
CLOSE_GRACE = 5.0  # seconds a closed connection may take to flush its replies before it is cut
FD_RESERVE = 64  # open files kept beyond the sessions: listeners, store and index files, HTTP, the loop
BACKLOG = 1024  # listen queue; a listener may accept this many at once (each an open file for a moment)
START_TIMEOUT = 60.0  # seconds ServerThread.start waits for the server


def _limit_buffers(transport: asyncio.BaseTransport) -> None:
    """Small send buffers for a connection (see SEND_BUFFER and WRITE_HIGH)."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
    transport.set_write_buffer_limits(high=WRITE_HIGH)  # type: ignore[attr-defined]


def _close(transport: asyncio.BaseTransport, loop: asyncio.AbstractEventLoop) -> None:
    """Close once the replies are sent, or cut it after CLOSE_GRACE s if the client does not read them."""
    transport.close()
    if transport.get_write_buffer_size():  # type: ignore[attr-defined]
        loop.call_later(CLOSE_GRACE, _abort, transport)


def _abort(transport: asyncio.BaseTransport) -> None:
    with contextlib.suppress(Exception):  # already gone
        transport.abort()  # type: ignore[attr-defined]


def _raise_open_file_limit() -> int | None:
    """Raise the soft RLIMIT_NOFILE to the hard limit where allowed; the soft limit now (None: no such limit)."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not Unix
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):  # e.g. macOS caps it below the hard limit: keep the soft one
            pass
    return soft if soft != resource.RLIM_INFINITY else 1 << 30


def _open_files() -> int:
    """How many files this process has open now."""
    for folder in ("/proc/self/fd", "/dev/fd"):
        with contextlib.suppress(OSError):
            return len(os.listdir(folder))
    return 32  # unknown: a guess


def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's malloc_trim: gives freed heap pages back to the system (None elsewhere)."""
    try:
        import ctypes

        return ctypes.CDLL(None).malloc_trim  # type: ignore[no-any-return]
    except (ImportError, OSError, AttributeError):  # not glibc (musl, macOS)
        return None


_TRIM = _malloc_trim()


def _log_index_error(future: asyncio.Future[Any]) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.error("indexing failed", exc_info=future.exception())


class SMTPConnection(asyncio.BufferedProtocol):
    """One client connection.

    Flow control: a session executes input only while its client reads the replies. When the
    transport's write buffer passes its high-water mark (``pause_writing``), or a feed stops at the
    session's output budget (``SMTPSession.pending``), nothing more is read; held-back input is
    executed once the buffer drains (``resume_writing``). Reads go into one buffer shared by all
    connections (one connection reads at a time) and are copied out: READ_COMMANDS bytes at most
    in command mode, READ_DATA in DATA. So a client that pipelines without reading costs at most
    one command-mode read plus the write buffer.
    """

    def __init__(self, server: SinkServer, tls: bool = False) -> None:
        self.server = server
        self.tls = tls  # accepted on the implicit-TLS port
        self.transport: asyncio.Transport | None = None
        self.session: SMTPSession | None = None
        self.last_active = 0.0
        self.peer = ""
        self._upgrading: asyncio.Task[None] | None = None  # the STARTTLS handshake
        self._gone = False  # connection_lost ran
        self._debug = log.isEnabledFor(logging.DEBUG)
        self._rate = 0  # bytes per second, set by a throttle rule
        self._held = False  # reading paused by a delay or throttle rule
        self._write_paused = False  # the client does not read its replies (pause_writing)
        self._reading = True  # the transport is reading
        self._paused_at = 0.0  # when reading stopped (deadlines do not run while we hold the input)
        self._resuming = False  # a resume of held-back input is scheduled
        self._line_since: float | None = None  # when the unfinished command line began
        self._data_phase = 0  # the session's DATA phase _data_since belongs to
        self._data_since = 0.0  # when that DATA phase began

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass
        server = self.server
        peer = transport.get_extra_info("peername")
        self.peer = peer[0] if isinstance(peer, tuple) else str(peer or "")
        self.last_active = server.loop.time()
        if len(server.connections) >= server.max_connections:
            log.warning("refused %s: %d connections open (max_connections)", self.peer, len(server.connections))
            self._send(shutting_down(server.settings.hostname, "too many connections, try again later"))
            transport.close()
            return
        server.connections.add(self)
        log.info("connect from %s%s", self.peer, " (implicit TLS)" if self.tls else "")
        _limit_buffers(transport)
        try:
            self.session = SMTPSession(server.settings, server.policy, peer=self.peer, tls=self.tls,
                                       challenge=fresh_challenge)
            if self._debug:
                self.session.transcript = []
            self._execute(self.session.greeting())
        except Exception:
            self._fail("greeting")

    def get_buffer(self, sizehint: int) -> memoryview:
        session = self.session
        if session is not None and session.state is State.DATA:
            return self.server.read_buffer
        return self.server.read_buffer[:READ_COMMANDS]

    def buffer_updated(self, nbytes: int) -> None:
        self.data_received(self.server.read_buffer[:nbytes].tobytes())

    def data_received(self, data: bytes) -> None:
        session = self.session
        if session is None:
            return
        self.last_active = self.server.loop.time()
        try:
            self._execute(session.feed(data))
            if self._rate and not self._held:  # throttle rule: this many bytes take len/rate seconds
                self._hold(len(data) / self._rate, [])
        except Exception:
            self._fail("input")

    def _execute(self, outputs: list[Output]) -> None:
        """Carry out a feed's outputs, then go on with held-back input or read more (see class doc)."""
        session = self.session
        assert session is not None
        if self._debug and session.transcript:
            for line in session.transcript:
                log.debug("C[%s]: %r", self.peer, line)
            session.transcript.clear()
        if outputs:
            self._emit(outputs)
        self._flow()
        now = self.server.loop.time()
        if session.partial_line:
            if self._line_since is None:
                self._line_since = now
        else:
            self._line_since = None
        if session.data_phase != self._data_phase:
            self._data_phase, self._data_since = session.data_phase, now

    def _flow(self) -> None:
        """Resume held-back input when the client keeps up; read only when nothing is held back."""
        session, transport = self.session, self.transport
        assert session is not None and transport is not None
        stalled = self._write_paused or self._held or self._upgrading is not None or transport.is_closing()
        if session.pending and not stalled and not self._resuming:
            self._resuming = True
            self.server.run_later(self)  # round-robin with other busy sessions, I/O in between
        self._set_reading(not (stalled or session.pending))

    def resume(self) -> None:
        """Execute the next batch of held-back input (called by SinkServer.run_later)."""
        self._resuming = False
        session = self.session
        if session is None or self._gone or self.transport is None or self.transport.is_closing():
            return
        if self._write_paused or self._held or self._upgrading is not None:
            return  # resume_writing / _release / the handshake calls _flow again
        try:
            self._execute(session.resume())
        except Exception:
            self._fail("input")

    def _set_reading(self, on: bool) -> None:
        transport = self.transport
        if on == self._reading or transport is None or transport.is_closing() or self._upgrading is not None:
            return
        self._reading = on
        now = self.server.loop.time()
        if on:
            transport.resume_reading()
            shift = now - self._paused_at  # deadlines count only the time the client had to send
            if self._line_since is not None:
                self._line_since += shift
            self._data_since += shift
        else:
            transport.pause_reading()
            self._paused_at = now

    def _emit(self, outputs: list[Output]) -> None:
        """Carry out the session's outputs in order: one write per batch of replies."""
        transport = self.transport
        assert transport is not None
        if len(outputs) == 1 and type(outputs[0]) is Reply and not self._debug:  # the usual: one reply
            transport.write(outputs[0].encode())  # type: ignore[union-attr]
            return
        chunks = []
        for i, item in enumerate(outputs):
            kind = type(item)
            if kind is Reply:
                chunks.append(item.encode())  # type: ignore[union-attr]
            elif kind is MessageReceived:
                chunks.append(self.server.deliver(item).encode())  # type: ignore[arg-type]
            elif item is CLOSE:
                self._write(b"".join(chunks))
                _close(transport, self.server.loop)
                return
            elif item is START_TLS:
                self._write(b"".join(chunks))
                self._set_reading(False)  # nothing more in plaintext: start_tls takes over
                self._upgrading = self.server.loop.create_task(self._start_tls())
                return
            elif kind is Delay:
                self._write(b"".join(chunks))
                self._hold(item.seconds, outputs[i + 1 :])  # type: ignore[union-attr]
                return
            elif kind is Throttle:
                self._rate = item.rate  # type: ignore[union-attr]
        self._write(b"".join(chunks))

    async def _start_tls(self) -> None:
        """Run the TLS handshake after ``220 Ready to start TLS``; the session then starts over."""
        server, old = self.server, self.transport
        assert old is not None and server.tls is not None and self.session is not None
        try:
            transport = await server.loop.start_tls(
                old, self, server.tls.context, server_side=True, ssl_handshake_timeout=server.handshake_timeout
            )
        except (OSError, asyncio.TimeoutError, ConnectionError) as exc:  # ssl.SSLError is an OSError
            log.info("STARTTLS handshake with %s failed: %s", self.peer, exc or type(exc).__name__)
            old.close()
            self.connection_lost(None)
            return
        finally:
            self._upgrading = None
        self.transport = transport  # type: ignore[assignment]
        self._reading, self._write_paused = True, False  # a new transport, reading
        _limit_buffers(transport)
        self.last_active = server.loop.time()
        self.session.tls_started()
        ssl_object = transport.get_extra_info("ssl_object")
        log.info("TLS with %s: %s %s", self.peer, ssl_object.version(), ssl_object.cipher()[0])

    def _hold(self, seconds: float, then: list[Output]) -> None:
        """Stop reading for ``seconds`` (delay and throttle rules), then send ``then``."""
        self._held = True
        self._set_reading(False)
        self.server.loop.call_later(seconds, self._release, then)

    def _release(self, then: list[Output]) -> None:
        self._held = False
        if self.session is None or self.transport is None or self.transport.is_closing():
            return
        try:
            self._execute(then)
        except Exception:
            self._fail("input")

    def _write(self, out: bytes) -> None:
        if out:
            if self._debug:
                log.debug("S[%s]: %r", self.peer, out[:500])
            assert self.transport is not None
            self.transport.write(out)

    def _fail(self, during: str) -> None:
        """An unexpected error (a bug, a policy that raised): log it, answer, close; others go on.

        Inside a transaction the client gets 451 (this message is not taken), else 421.
        """
        log.exception("session with %s failed (%s): closing it", self.peer, during)
        session, transport = self.session, self.transport
        busy = session is not None and session.state in (State.MAIL, State.RCPT, State.DATA)
        if transport is not None and not transport.is_closing() and self._upgrading is None:
            answer = store_failed() if busy else shutting_down(self.server.settings.hostname, "internal error")
            with contextlib.suppress(Exception):
                self._write(answer.encode())
            _close(transport, self.server.loop)
        if session is not None:
            session.close()

    def overdue(self, now: float, smtp: SMTPConfig) -> str | None:
        """Why this session must end now (idle, a command or DATA too slow), or None."""
        if self.last_active < now - smtp.idle_timeout:
            return "idle timeout"
        session = self.session
        if not self._reading or session is None:
            return None  # we hold its input (back-pressure, rules, handshake): not the client's delay
        if smtp.command_timeout and self._line_since is not None and now - self._line_since > smtp.command_timeout:
            return f"command not completed within {smtp.command_timeout:g} s"
        if smtp.data_min_rate and session.state is State.DATA:
            elapsed = now - self._data_since
            if elapsed > smtp.data_rate_grace and session.data_bytes < smtp.data_min_rate * elapsed:
                return f"message data slower than {smtp.data_min_rate} bytes/s"
        return None

    def eof_received(self) -> bool:
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        if self._gone:
            return
        self._gone = True
        self.server.connections.discard(self)
        if self.session is not None:
            self.session.close()
            log.info("disconnect %s", self.peer)

    def pause_writing(self) -> None:
        """The client is not reading its replies: stop executing and reading its commands."""
        self._write_paused = True
        self._set_reading(False)

    def resume_writing(self) -> None:
        self._write_paused = False
        if self.session is not None and not self._gone:
            self._flow()

    def close_with(self, why: str) -> None:
        """Send 421 and close (shutdown, timeouts)."""
        if self._upgrading is not None:  # mid-handshake: no plaintext 421 into a TLS stream
            self._upgrading.cancel()
        elif self.transport is not None:
            if not self.transport.is_closing():
                self._send(shutting_down(self.server.settings.hostname, why))
            _close(self.transport, self.server.loop)  # (again, if closing already: it gets its grace)
        if self.session is not None:
            self.session.close()

    def _send(self, item: Reply) -> None:
        assert self.transport is not None
        self.transport.write(item.encode())


def fresh_challenge(hostname: str) -> bytes:
    """A CRAM-MD5 challenge no one saw before: random and timestamped (the session stays pure)."""
    return cram_md5_challenge(int.from_bytes(os.urandom(8), "big"), int(time.time()), hostname)


class SinkServer:
    """The SMTP server: listener, store and the set of open connections."""

    def __init__(self, config: Config, policy: Policy | None = None) -> None:
        self.config = config
        smtp, auth = config.smtp, config.auth
        self.settings = Settings.from_config(config)
        tls = config.tls
        # auto: TLS on when clients log in (apps that send passwords insist on TLS) or a cert is given
        self.tls_enabled = tls.mode == "on" or (tls.mode == "auto" and (auth.mode != "off" or bool(tls.cert)))
        self.tls: ServerTLS | None = None
        self.tls_port = 0  # the implicit-TLS port once listening (0: TLS off)
        self._tls_server: asyncio.base_events.Server | None = None
        self.handshake_timeout = min(smtp.idle_timeout, 30.0)
        self.rules = RuleSet(config.rules)  # fault rules; add, list and clear them at run time
        self.capacity = Capacity()  # can the store take mail: refreshed on a timer (see _watch_capacity)
        self.policy = policy or MailboxPolicy(config.policy, self.capacity, self.rules)
        self._capacity_task: asyncio.Task[None] | None = None
        self.store = Store(
            config.store.path, fsync=config.store.fsync,
            max_messages=config.store.max_messages, max_age=config.store.max_age,
        )
        # Index inserts run in one worker thread, batched, off the reply path (see _schedule_index).
        self._indexer = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="smtp-sink-index")
        self._index_scheduled = False
        self._last_saved = 0.0
        self.connections: set[SMTPConnection] = set()
        self.max_connections = smtp.max_connections  # lowered at start when open files are short
        self.read_buffer = memoryview(bytearray(READ_DATA))  # every connection reads into it (see SMTPConnection)
        self._backlog = BACKLOG
        self._runnable: collections.deque[SMTPConnection] = collections.deque()  # see run_later
        self._draining = False
        self._peak = 0  # most sessions open since the last _trim_memory
        self.loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]
        self._server: asyncio.base_events.Server | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self.smtp_port = 0
        self.http: Any = None  # web.app.HTTPServer when [http] enabled
        self.http_port = 0

    async def start(self) -> None:
        """Get the store, its index and TLS ready, then listen (raises OSError when a port is taken).

        No listener opens before everything a session needs is ready, and "listening on" is
        logged once every listener (SMTP, implicit TLS, HTTP) is up, followed by one "ready" line.
        """
        self.loop = asyncio.get_running_loop()
        try:
            self.store.open()
        except OSError as exc:
            raise RuntimeError(f"cannot use store folder {self.store.path}: {exc.strerror or exc}") from None
        try:  # open the index (rebuilt from the files if needed) before the first client
            await self.in_store_thread(lambda: self.store.index)
        except Exception:  # the .eml files are safe; queries retry opening it
            log.exception("opening the index failed")
        if self.tls_enabled:
            await self._prepare_tls()
        self.refresh_capacity()
        self._fit_open_files()
        listeners: list[asyncio.base_events.Server] = []
        try:
            await self._listen(listeners)
        except BaseException:
            for listener in listeners:
                listener.close()
            if self.http is not None:
                await self.http.stop()
            raise
        self._sweeper = self.loop.create_task(self._sweep())
        self._capacity_task = self.loop.create_task(self._watch_capacity())
        self._log_listening()

    async def _listen(self, listeners: list[asyncio.base_events.Server]) -> None:
        """Bind SMTP (and implicit TLS), start HTTP, then start serving SMTP: all or nothing."""
        smtp, tls = self.config.smtp, self.config.tls
        self._server = await self._bind(lambda: SMTPConnection(self), smtp.host, smtp.port)
        listeners.append(self._server)
        self.smtp_port = self._server.sockets[0].getsockname()[1]
        if self.tls is not None:
            self._tls_server = await self._bind(lambda: SMTPConnection(self, tls=True), smtp.host, tls.port,
                                                ssl=self.tls.context, ssl_handshake_timeout=self.handshake_timeout)
            listeners.append(self._tls_server)
            self.tls_port = self._tls_server.sockets[0].getsockname()[1]
        if self.config.http.enabled:
            from .web.app import HTTPServer  # aiohttp is imported only when HTTP is on

            self.http = HTTPServer(self)
            try:
                await self.http.start()
            except OSError as exc:
                http = self.config.http
                raise OSError(exc.errno, exc.strerror, f"{http.host}:{http.port}") from None
            self.http_port = self.http.port
        for listener in listeners:
            await listener.start_serving()

    async def _bind(self, factory: Callable[[], SMTPConnection], host: str, port: int,
                    **options: Any) -> asyncio.base_events.Server:
        """A bound listener, not serving yet; an OSError names the address."""
        try:
            return await self.loop.create_server(
                factory, host, port, reuse_address=True, backlog=self._backlog, start_serving=False, **options
            )
        except OSError as exc:  # name the address: the CLI prints it
            raise OSError(exc.errno, exc.strerror, f"{host}:{port}") from None

    def _log_listening(self) -> None:
        smtp = self.config.smtp
        log.info("smtp-sink listening on %s:%d, storing in %s", smtp.host, self.smtp_port, self.store.path)
        if not is_loopback(smtp.host):
            log.warning("SMTP listens on %s: anyone who can reach this machine can send it mail", smtp.host)
        if self.tls is not None:
            log.info("implicit TLS on %s:%d; STARTTLS on %d; certificate %s%s", smtp.host, self.tls_port,
                     self.smtp_port, self.tls.cert, f" (trust {self.tls.ca})" if self.tls.ca else "")
        log.info("event loop: %s", type(self.loop).__module__.split(".")[0])
        log.info("smtp-sink ready: up to %d sessions", self.max_connections)

    def _fit_open_files(self) -> None:
        """Raise the soft open-file limit to the hard one; lower max_connections if still short.

        Every session is an open file, and each listener may accept its whole backlog at once; a
        reserve stays for the store, the index and HTTP. So a client over the cap is accepted
        and gets 421, and no session's message ever fails for want of a file descriptor.
        """
        room = _raise_open_file_limit()
        if room is None:
            return  # no RLIMIT_NOFILE here (not Unix)
        listeners = 2 if self.tls is not None else 1
        free = room - _open_files() - FD_RESERVE
        self._backlog = max(8, min(BACKLOG, free // (4 * listeners)))
        cap = free - listeners * self._backlog
        wanted = self.config.smtp.max_connections
        if cap < 1:
            raise RuntimeError(f"the open-file limit ({room}) leaves no room for sessions: raise it (ulimit -n)")
        if cap < wanted:
            log.warning("the open-file limit (%d) allows %d sessions, not max_connections = %d: more clients "
                        "get 421 (raise it with ulimit -n)", room, cap, wanted)
            self.max_connections = cap

    def run_later(self, conn: SMTPConnection) -> None:
        """Queue a session with held-back input to go on (see _drain)."""
        self._runnable.append(conn)
        if not self._draining:
            self._draining = True
            self.loop.call_soon(self._drain)

    def _drain(self) -> None:
        """Resume queued sessions one batch each, round-robin, for at most DRAIN_SLICE seconds, then
        let the loop take I/O (new clients, replies of others) before going on: a flood of pipelined
        commands from many clients delays another client by about one slice per round trip."""
        runnable, clock = self._runnable, time.perf_counter
        end = clock() + DRAIN_SLICE
        while runnable:
            runnable.popleft().resume()  # queues itself again if input is still held back
            if clock() >= end:
                break
        if runnable:
            self.loop.call_soon(self._drain)
        else:
            self._draining = False

    async def in_store_thread(self, work: Callable[[], T]) -> T:
        """Run ``work`` in the store's worker thread (the one that indexes), off the event loop."""
        return await asyncio.get_running_loop().run_in_executor(self._indexer, work)

    @property
    def tls_cert(self) -> str | None:
        """The PEM certificate in use (None: TLS off)."""
        return str(self.tls.cert) if self.tls else None

    @property
    def tls_ca(self) -> str | None:
        """The generated authority clients can trust (None: TLS off or a configured certificate)."""
        return str(self.tls.ca) if self.tls and self.tls.ca else None

    async def _prepare_tls(self) -> None:
        """Load or generate the certificate: STARTTLS is offered and implicit TLS listens.

        A configured certificate that does not work, or ``mode = "on"``, stops the start-up;
        a generated one that cannot be made (``mode = "auto"``) leaves TLS off: STARTTLS gets 454.
        """
        smtp, tls = self.config.smtp, self.config.tls
        try:
            self.tls = await self.loop.run_in_executor(
                None, setup_tls, tls.cert, tls.key, self.store.path / "tls", smtp.hostname
            )
        except (TLSSetupError, OSError, ImportError) as exc:
            reason = str(exc) if isinstance(exc, TLSSetupError) else f"cannot make a certificate: {exc}"
            if tls.mode == "on" or tls.cert or tls.key:
                raise RuntimeError(f"TLS: {reason}") from None
            log.warning("TLS off: %s (STARTTLS answers 454)", reason)
            self.settings = dataclasses.replace(self.settings, tls_unavailable=reason)
            return
        self.settings = dataclasses.replace(self.settings, starttls=True)

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

    def deliver(self, message: MessageReceived) -> Reply:
        """Store a complete message and return the final reply to DATA."""
        try:
            stored = self.store.save(message.envelope, message.data, self.settings.hostname)
        except StoreError as exc:
            log.error("message from <%s> not stored: %s", message.envelope.mail_from, exc.strerror)
            self.refresh_capacity()  # a full disk: the next MAIL gets 452 at once
            return store_failed()
        except Exception:  # a bug: this message is refused, the session goes on
            log.exception("message from <%s> not stored", message.envelope.mail_from)
            return store_failed()
        if log.isEnabledFor(logging.INFO):  # a line per message: build it only when it is written
            log.info(
                "stored %s size=%d from=<%s> to=%s",
                stored.id, stored.size, message.envelope.mail_from, ",".join(message.envelope.rcpt_to),
            )
        self._schedule_index()
        return accepted(stored.id)

    def _schedule_index(self) -> None:
        """Look at indexing the saved messages in INDEX_DELAY seconds (see INDEX_QUIET)."""
        self._last_saved = self.loop.time()
        if not self._index_scheduled:
            self._index_scheduled = True
            self.loop.call_later(INDEX_DELAY, self._index_batch)

    def _index_batch(self) -> None:
        busy = self.loop.time() - self._last_saved < INDEX_QUIET
        if busy and not self.store.watched and self.store.pending < INDEX_BACKLOG:
            self.loop.call_later(INDEX_QUIET, self._index_batch)  # look again later
            return
        self._index_scheduled = False
        future = self.loop.run_in_executor(self._indexer, self.store.index_pending)
        future.add_done_callback(_log_index_error)

    async def _sweep(self) -> None:
        """Close sessions that are idle, or too slow to finish a command line or their DATA (421)."""
        smtp = self.config.smtp
        limits = [t for t in (smtp.idle_timeout, smtp.command_timeout, smtp.data_rate_grace) if t > 0]
        period = min(1.0, *(t / 2 for t in limits))
        while True:
            await asyncio.sleep(period)
            now = self.loop.time()
            for conn in list(self.connections):
                why = conn.overdue(now, smtp)
                if why is not None:
                    log.info("%s for %s", why, conn.peer)
                    conn.close_with(f"{why}, closing connection")
                    self.connections.discard(conn)
            self._trim_memory()

    def _trim_memory(self) -> None:
        """After many sessions ended (a flood went away), return the freed heap to the system.

        Their buffers were freed, but the C allocator keeps the pages of a fragmented heap: without
        this the process would stay at its peak size.
        """
        count = len(self.connections)
        self._peak = max(self._peak, count)
        if self._peak - count >= TRIM_AFTER and count <= self._peak // 2:
            self._peak = count
            if _TRIM is not None:
                _TRIM(0)

    async def stop(self) -> None:
        """Stop listening, send 421 to every open session and close it."""
        for task in (self._sweeper, self._capacity_task):
            if task is not None:
                task.cancel()
        for listener in (self._server, self._tls_server):
            if listener is not None:
                listener.close()
        if self.http is not None:
            await self.http.stop()
        for conn in list(self.connections):
            conn.close_with("shutting down")
        self.connections.clear()
        if self._server is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 2)
        try:
            await self.loop.run_in_executor(self._indexer, self.store.close)  # index what is pending
        except Exception:  # the .eml files are safe; the next start rescans them
            log.exception("indexing at shutdown failed")
        self._indexer.shutdown(wait=False)
        log.info("smtp-sink stopped")


def new_event_loop(choice: str) -> asyncio.AbstractEventLoop:
    """An event loop: uvloop when installed and ``choice`` is auto or uvloop, else asyncio's."""
    if choice in ("auto", "uvloop"):
        try:
            import uvloop
        except ImportError:
            if choice == "uvloop":
                raise RuntimeError("--loop uvloop needs uvloop: pip install 'smtp-sink[fast]'") from None
        else:
            return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def run_loop(main: Callable[[], Coroutine[Any, Any, Any]], choice: str) -> Any:
    """Run ``main()`` on a new loop of the chosen kind and close the loop afterwards."""
    loop = new_event_loop(choice)
    try:
        asyncio.set_event_loop(loop)
        return loop.run_until_complete(main())
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        asyncio.set_event_loop(None)
        loop.close()


def serve(config: Config, ready: Callable[[SinkServer], None] | None = None) -> None:
    """Run the server until SIGINT or SIGTERM (the ``smtp-sink serve`` command)."""

    async def main() -> None:
        server = SinkServer(config)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        # Before start(): a signal sent as soon as "listening on" is logged must stop cleanly.
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await server.start()
        if ready is not None:
            ready(server)
        await stop.wait()
        log.info("shutting down")
        await server.stop()

    run_loop(main, config.smtp.loop)


class ServerThread:
    """A server running on its own event loop in a background thread (tests, pytest plugin).

    >>> with ServerThread(config) as server:
    ...     smtplib.SMTP("127.0.0.1", server.smtp_port)
    """

    def __init__(self, config: Config, policy: Policy | None = None) -> None:
        self.server = SinkServer(config, policy)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._starting: asyncio.Task[None] | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def smtp_port(self) -> int:
        return self.server.smtp_port

    def start(self, timeout: float = START_TIMEOUT) -> SinkServer:
        """Start and wait until the server is listening; re-raise a start-up error.

        Raises TimeoutError (after stopping what started) when it is not ready within ``timeout``.
        """
        self._thread = threading.Thread(target=self._run, name="smtp-sink", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            self.stop()
            raise TimeoutError(f"smtp-sink did not start within {timeout:g} s")
        if self._error is not None:
            raise self._error
        return self.server

    def _run(self) -> None:
        try:
            loop = self._loop = new_event_loop(self.server.config.smtp.loop)
        except BaseException as exc:  # e.g. uvloop asked for and missing: handed to the starting thread
            self._error = exc
            self._ready.set()
            return
        try:
            self._starting = loop.create_task(self.server.start())
            loop.run_until_complete(self._starting)
        except BaseException as exc:  # handed to the starting thread
            self._error = exc
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        loop.run_forever()
        loop.run_until_complete(self.server.stop())
        loop.close()

    def _halt(self) -> None:
        """On the loop: cancel a start-up still running, else stop the loop (then the server)."""
        if self._starting is not None and not self._starting.done():
            self._starting.cancel()
        elif self._loop is not None:
            self._loop.stop()

    def stop(self) -> None:
        """Stop the server (open sessions get 421) and join the thread."""
        if self._loop is not None and self._thread is not None and self._thread.is_alive():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                self._loop.call_soon_threadsafe(self._halt)
            self._thread.join(10)

    def __enter__(self) -> SinkServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
