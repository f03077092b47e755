"""The SMTP listeners: one ``asyncio.BufferedProtocol`` per connection driving :mod:`smtp_sink.protocol`.

This is the only module that does SMTP socket I/O (:class:`SMTPServer`); each complete message
goes to the :class:`~smtp_sink.sink.Sink`. :class:`SinkServer` runs a sink with its listeners
side by side (SMTP, implicit TLS, and HTTP from :mod:`smtp_sink.web.app`, imported only when on);
:func:`serve` and :class:`ServerThread` run one. Replies to pipelined commands go out in one
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
import contextlib
import dataclasses
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, cast

from .config import Config, SMTPConfig, is_loopback
from .errors import ListenError
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
from .recorder import Recorder, Recording
from .replies import Reply
from .sasl import cram_md5_challenge
from .sink import Sink
from .store import StoreError
from .tls import ServerTLS, TLSSetupError
from .tls import setup as setup_tls
from .tls_probe import ImplicitHandshake
from .tls_probe import setup as setup_probe

if TYPE_CHECKING:
    from .web.app import HTTPServer

log = logging.getLogger("smtp_sink")

# A client that does not read its replies is noticed once the kernel's buffers and then the
# transport's fill up: keep both small (replies are small; a reading client never fills them).
READ_COMMANDS = 16384  # bytes one read takes in command mode (commands are short)
READ_DATA = 262144  # ... and in DATA (large reads: fewer wake-ups for big messages)
SEND_BUFFER = 16384  # SO_SNDBUF of a connection (the kernel doubles it), instead of growing to megabytes
WRITE_HIGH = 16384  # the transport's high-water mark: pause_writing past it
TRIM_AFTER = 100  # sessions that ended since the peak before freed memory is returned (see _trim_memory)
DRAIN_SLICE = 0.0005  # seconds of held-back input executed per loop iteration (see SMTPServer._drain)
CLOSE_GRACE = 5.0  # seconds a closed connection may take to flush its replies before it is cut
FD_RESERVE = 64  # open files kept beyond the sessions: listeners, store and index files, HTTP, the loop
BACKLOG = 1024  # listen queue; a listener may accept this many at once (each an open file for a moment)
START_TIMEOUT = 60.0  # seconds ServerThread.start waits for the server


def _limit_buffers(transport: asyncio.Transport) -> None:
    """Small send buffers for a connection (see SEND_BUFFER and WRITE_HIGH)."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
    transport.set_write_buffer_limits(high=WRITE_HIGH)


def _close(transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
    """Close once the replies are sent, or cut it after CLOSE_GRACE s if the client does not read them."""
    transport.close()
    try:
        unsent = transport.get_write_buffer_size()
    except AttributeError:  # a TLS transport whose connection is already gone (asyncio's sslproto)
        return
    if unsent:
        loop.call_later(CLOSE_GRACE, _abort, transport)


def _abort(transport: asyncio.Transport) -> None:
    with contextlib.suppress(Exception):  # already gone
        transport.abort()


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

        trim: Callable[[int], int] = ctypes.CDLL(None).malloc_trim
        return trim
    except (ImportError, OSError, AttributeError):  # not glibc (musl, macOS)
        return None


_TRIM = _malloc_trim()

# glibc's malloc for large messages (issue 18): a 10 MiB message is read into a growing buffer; by
# default glibc serves such sizes with fresh mmap()s and gives freed memory back at once, so every
# message touches fresh pages (hundreds to thousands of page faults each). Keeping up to 128 MiB of
# freed heap and serving up to 32 MiB from it lets the next message reuse the pages; _trim_memory
# still returns it all after a flood. A MALLOC_*_ environment variable set by the user wins.
MALLOPT = (("M_TRIM_THRESHOLD", -1, 128 << 20), ("M_MMAP_THRESHOLD", -3, 32 << 20))


def tune_malloc() -> list[str]:
    """Apply :data:`MALLOPT` where glibc is present; return the names of the settings applied."""
    try:
        import ctypes

        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018 - glibc only (musl and macOS have other allocators)
        mallopt: Callable[[int, int], int] = libc.mallopt
    except (ImportError, OSError, AttributeError):
        return []
    applied = []
    for name, param, value in MALLOPT:
        if f"MALLOC_{name[2:]}_" not in os.environ and mallopt(param, value) == 1:
            applied.append(name)
    return applied


_IN_DATA = State.DATA  # read per received chunk: a module constant, not an Enum class attribute (slower)


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

    def __init__(self, server: SMTPServer, tls: bool = False) -> None:
        self.server = server
        self.loop = server.loop
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
        self.record: Recording | None = None  # issue 17: this session's transcript (None: recording off)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """A client connected: greet it (or 421 past ``max_connections``)."""
        self.transport = transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        server = self.server
        peer = transport.get_extra_info("peername")
        self.peer = peer[0] if isinstance(peer, tuple) else str(peer or "")
        self.last_active = self.loop.time()
        self.record = record = server.recorder.begin(self.peer, self.last_active)
        if server.full():
            log.warning("refused %s: %d connections open (max_connections)", self.peer, len(server.connections))
            refusal = shutting_down(server.settings.hostname, "too many connections, try again later")
            self._send(refusal)
            transport.close()
            if record is not None:
                record.took(None, [refusal], self.last_active)
                record.finish(None, "overload")
            return
        server.connections.add(self)
        log.info("connect from %s%s", self.peer, " (implicit TLS)" if self.tls else "")
        _limit_buffers(transport)
        try:
            self.session = SMTPSession(server.settings, server.policy, peer=self.peer, tls=self.tls,
                                       challenge=fresh_challenge)
            if self._debug or record is not None:
                self.session.transcript = []
            if record is not None and self.tls:  # implicit TLS: the handshake is done
                ssl_object = transport.get_extra_info("ssl_object")
                record.tls_started(ssl_object.version(), ssl_object.cipher()[0], self.last_active)
            self._execute(self.session.greeting())
        except Exception:
            self._fail("greeting")

    def get_buffer(self, sizehint: int) -> memoryview:
        """Where the next read goes: the shared buffer (smaller in command mode)."""
        session = self.session
        if session is not None and session.state is _IN_DATA:
            return self.server.read_buffer
        return self.server.read_commands

    def buffer_updated(self, nbytes: int) -> None:
        """``nbytes`` were read into the shared buffer."""
        self.data_received(self.server.read_buffer[:nbytes].tobytes())

    def data_received(self, data: bytes) -> None:
        """Feed the session and carry out what it says."""
        session = self.session
        if session is None:
            return
        self.last_active = self.loop.time()
        if self.record is not None:
            self.record.chunk += 1  # commands of one chunk were sent without waiting for a reply
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
        record = self.record
        if self._debug and session.transcript:
            for line in session.transcript:
                log.debug("C[%s]: %r", self.peer, line if isinstance(line, bytes) else f"({line} bytes of data)")
            if record is None:
                session.transcript.clear()
        now = self.loop.time()
        if record is not None:  # before the replies go out: the transcript is complete when they arrive
            record.took(session, outputs, now)
        if outputs:
            self._emit(outputs)
        self._flow()
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
        if not stalled and not session.pending and self._reading:
            return  # the usual: reading, nothing held back
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
        now = self.loop.time()
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
        first = outputs[0]
        if len(outputs) == 1 and not self._debug:  # the usual: one reply, or one message to store
            if type(first) is MessageReceived:
                first = self.server.deliver(first, self.record)
            if isinstance(first, Reply):
                transport.write(first.encode())
                if first.code >= 400:
                    self._refused(first)
                return
        chunks = []
        for i, item in enumerate(outputs):
            if isinstance(item, MessageReceived):
                answer = self.server.deliver(item, self.record)
                if item.drop:  # store-then-drop rule: stored, the reply is lost (the CLOSE follows)
                    continue
                item = answer
            if isinstance(item, Reply):
                chunks.append(item.encode())
                if item.code >= 400:
                    self._refused(item)
            elif item is CLOSE:
                self._write(b"".join(chunks))
                _close(transport, self.loop)
                return
            elif item is START_TLS:
                self._write(b"".join(chunks))
                self._set_reading(False)  # nothing more in plaintext: start_tls takes over
                self._upgrading = self.loop.create_task(self._start_tls())
                return
            elif isinstance(item, Delay):
                self._write(b"".join(chunks))
                self._hold(item.seconds, outputs[i + 1 :])
                return
            elif isinstance(item, Throttle):
                self._rate = item.rate
        self._write(b"".join(chunks))

    def _refused(self, reply: Reply) -> None:
        """Tell the sink's subscribers (the web page's events) of a 4xx/5xx reply."""
        self.server.sink.client_error(reply.code, self.peer, f"{reply.code} {reply.lines[-1]}")

    async def _start_tls(self) -> None:
        """Run the TLS handshake after ``220 Ready to start TLS``; the session then starts over."""
        server, old = self.server, self.transport
        assert old is not None and server.tls is not None and self.session is not None
        try:
            transport = await self.loop.start_tls(
                old, self, server.tls.context, server_side=True, ssl_handshake_timeout=server.handshake_timeout
            )
            if transport is None:  # the connection closed during the handshake
                raise ConnectionResetError("connection closed")
        except (OSError, asyncio.TimeoutError, ConnectionError) as exc:  # ssl.SSLError is an OSError
            log.info("STARTTLS handshake with %s failed: %s", self.peer, exc or type(exc).__name__)
            if server.sink.tls_findings.probe:  # [tls] probe: this client refused the bad certificate
                server.sink.tls_findings.refused(self.peer, "STARTTLS", exc)
            if self.record is not None:
                self.record.note(f"STARTTLS handshake failed: {exc or type(exc).__name__}", self.loop.time())
            old.close()
            self.connection_lost(None)
            return
        finally:
            self._upgrading = None
        self.transport = transport
        self._reading, self._write_paused = True, False  # a new transport, reading
        _limit_buffers(transport)
        self.last_active = self.loop.time()
        self.session.tls_started()
        ssl_object = transport.get_extra_info("ssl_object")
        log.info("TLS with %s: %s %s", self.peer, ssl_object.version(), ssl_object.cipher()[0])
        if self.record is not None:
            self.record.tls_started(ssl_object.version(), ssl_object.cipher()[0], self.last_active)

    def _hold(self, seconds: float, then: list[Output]) -> None:
        """Stop reading for ``seconds`` (delay and throttle rules), then send ``then``."""
        self._held = True
        self._set_reading(False)
        self.loop.call_later(seconds, self._release, then)

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
        if self.record is not None:
            self.record.end("error")
        busy = session is not None and session.state in (State.MAIL, State.RCPT, State.DATA)
        if transport is not None and not transport.is_closing() and self._upgrading is None:
            answer = store_failed() if busy else shutting_down(self.server.settings.hostname, "internal error")
            with contextlib.suppress(Exception):
                self._write(answer.encode())
            _close(transport, self.loop)
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
        """The client closed its side."""
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        """The connection is gone: end the session."""
        if self._gone:
            return
        self._gone = True
        self.server.connections.discard(self)
        if self.record is not None:
            self.record.finish(self.session)  # "disconnect" unless QUIT, a rule or a timeout ended it
        if self.session is not None:
            if self.session.tls and not self.session.messages and self.server.sink.tls_findings.probe:
                # [tls] probe: the handshake was taken, then the client left without mail (tls_findings.py)
                self.server.sink.tls_findings.hung_up(self.peer, "implicit TLS" if self.tls else "STARTTLS")
            self.session.close()
            log.info("disconnect %s", self.peer)

    def pause_writing(self) -> None:
        """The client is not reading its replies: stop executing and reading its commands."""
        self._write_paused = True
        self._set_reading(False)

    def resume_writing(self) -> None:
        """The client reads its replies again: go on with its commands."""
        self._write_paused = False
        if self.session is not None and not self._gone:
            self._flow()

    def close_with(self, why: str, outcome: str = "timeout") -> None:
        """Send 421 and close (shutdown, timeouts); ``outcome``: how the session transcript says it ended."""
        record = self.record
        if self._upgrading is not None:  # mid-handshake: no plaintext 421 into a TLS stream
            self._upgrading.cancel()
        elif self.transport is not None:
            if not self.transport.is_closing():
                closing = shutting_down(self.server.settings.hostname, why)
                self._send(closing)
                if record is not None:
                    record.took(None, [closing], self.loop.time())
            _close(self.transport, self.loop)  # (again, if closing already: it gets its grace)
        if record is not None:
            record.finish(self.session, outcome)
        if self.session is not None:
            self.session.close()

    def _send(self, item: Reply) -> None:
        assert self.transport is not None
        self.transport.write(item.encode())


def fresh_challenge(hostname: str) -> bytes:
    """A CRAM-MD5 challenge no one saw before: random and timestamped (the session stays pure)."""
    return cram_md5_challenge(int.from_bytes(os.urandom(8), "big"), int(time.time()), hostname)


class SMTPServer:
    """The SMTP side of a sink: the plain and implicit-TLS listeners and their connections.

    Start-up is in steps so that a composition can open every listener before any serves:
    :meth:`prepare` (TLS, the open-file budget), :meth:`bind`, then :meth:`serve`.
    """

    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self.config = config = sink.config
        smtp, auth, tls = config.smtp, config.auth, config.tls
        self.settings = Settings.from_config(config)
        self.policy = sink.policy
        # auto: TLS on when clients log in (apps that send passwords insist on TLS) or a cert is given
        self.tls_enabled = tls.mode == "on" or (tls.mode == "auto" and (auth.mode != "off" or bool(tls.cert)))
        self.tls_enabled |= tls.probe != "off"  # the TLS probe needs TLS (config.check_tls refuses mode off)
        self.tls: ServerTLS | None = None
        self.port = 0  # the SMTP port once bound
        self.tls_port = 0  # the implicit-TLS port once bound (0: TLS off)
        self.handshake_timeout = min(smtp.idle_timeout, 30.0)
        self.connections: set[SMTPConnection] = set()
        self.recorder = Recorder(sink.store.path, config.sessions)  # issue 17: session transcripts
        self.max_connections = smtp.max_connections  # lowered at start when open files are short
        self.read_buffer = memoryview(bytearray(READ_DATA))  # every connection reads into it (see SMTPConnection)
        self.read_commands = self.read_buffer[:READ_COMMANDS]  # its start, for reads in command mode (made once)
        self._backlog = BACKLOG
        self._runnable: collections.deque[SMTPConnection] = collections.deque()  # see run_later
        self._draining = False
        self._peak = 0  # most sessions open since the last _trim_memory
        self._loop: asyncio.AbstractEventLoop | None = None
        self._listeners: list[asyncio.AbstractServer] = []
        self._sweeper: asyncio.Task[None] | None = None
        self.reuse_port = False  # SO_REUSEPORT: the worker processes of serve --workers share the port

    def full(self) -> bool:
        """True when no more session may start (``max_connections``; a worker process of
        ``serve --workers`` counts the sessions of all, see :mod:`smtp_sink.worker`)."""
        return len(self.connections) >= self.max_connections

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The event loop the listeners run on (set by :meth:`prepare`)."""
        assert self._loop is not None, "SMTPServer.prepare() was not called"
        return self._loop

    async def prepare(self) -> None:
        """Get TLS ready (STARTTLS is offered from the first session on) and fit the open files."""
        self._loop = asyncio.get_running_loop()
        if self.tls_enabled:
            await self._prepare_tls()
        self._fit_open_files()

    async def bind(self) -> None:
        """Open the SMTP (and implicit-TLS) port, not serving yet; :class:`ListenError` names the one
        that failed (the ports opened before it are closed again by :meth:`close`)."""
        smtp, tls = self.config.smtp, self.config.tls
        plain = await self._bind(lambda: SMTPConnection(self), smtp.host, smtp.port, "SMTP", "--port")
        self.port = plain.sockets[0].getsockname()[1]
        if self.tls is not None and tls.probe != "off":  # the probe sees each handshake (tls_probe.py)
            context, findings = self.tls.context, self.sink.tls_findings
            implicit = await self._bind(lambda: ImplicitHandshake(
                lambda: SMTPConnection(self, tls=True), context, self.handshake_timeout, findings),
                smtp.host, tls.port, "implicit TLS", "--tls-port")
            self.tls_port = implicit.sockets[0].getsockname()[1]
        elif self.tls is not None:
            implicit = await self._bind(lambda: SMTPConnection(self, tls=True), smtp.host, tls.port, "implicit TLS",
                                        "--tls-port", ssl=self.tls.context,
                                        ssl_handshake_timeout=self.handshake_timeout)
            self.tls_port = implicit.sockets[0].getsockname()[1]

    async def _bind(self, factory: Callable[[], asyncio.BaseProtocol], host: str, port: int, listener: str, flag: str,
                    **options: Any) -> asyncio.Server:
        try:
            if self.reuse_port:  # serve --workers: every worker listens on the same port
                options["reuse_port"] = True
            server = await self.loop.create_server(
                factory, host, port, reuse_address=True, backlog=self._backlog, start_serving=False, **options
            )
        except OSError as exc:
            raise listen_error(exc, listener, host, port, flag) from None
        self._listeners.append(server)
        return server

    async def serve(self) -> None:
        """Start accepting on the bound ports and sweeping idle sessions."""
        for listener in self._listeners:
            await listener.start_serving()
        self._sweeper = self.loop.create_task(self._sweep())

    def log_listening(self) -> None:
        """Say where SMTP (and implicit TLS) listen."""
        smtp = self.config.smtp
        log.info("smtp-sink listening on %s:%d, storing in %s", smtp.host, self.port, self.sink.store.path)
        if not is_loopback(smtp.host):
            log.warning("SMTP listens on %s: anyone who can reach this machine can send it mail", smtp.host)
        if self.tls is not None:
            log.info("implicit TLS on %s:%d; STARTTLS on %d; certificate %s%s", smtp.host, self.tls_port,
                     self.port, self.tls.cert, f" (trust {self.tls.ca})" if self.tls.ca else "")

    def close(self) -> None:
        """Stop accepting (sessions go on until :meth:`stop`)."""
        if self._sweeper is not None:
            self._sweeper.cancel()
        for listener in self._listeners:
            listener.close()

    async def stop(self) -> None:
        """Stop accepting, send 421 to every open session and close it."""
        self.close()
        for conn in list(self.connections):
            conn.close_with("shutting down", "shutdown")
        self.connections.clear()
        await self.loop.run_in_executor(None, self.recorder.close)  # the last session transcripts written
        if self._listeners:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._listeners[0].wait_closed(), 2)

    def deliver(self, message: MessageReceived, record: Recording | None = None) -> Reply:
        """Hand a complete message to the sink and return the final reply to DATA (``record``: the
        session's transcript, whose id goes into the trace block and which learns the message's id)."""
        if record is not None:
            message.envelope.session = record.id
        stored_id = None
        try:
            stored_id = self.sink.save(message.envelope, message.data).id
            answer = accepted(stored_id)
        except StoreError:  # logged by the sink
            answer = store_failed()
        except Exception:  # a bug: this message is refused, the session goes on
            log.exception("message from <%s> not stored", message.envelope.mail_from)
            answer = store_failed()
        if record is not None:
            record.delivered(stored_id, len(message.data), answer, self.loop.time())
        return answer

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

    async def _prepare_tls(self) -> None:
        """Load or generate the certificate: STARTTLS is offered and implicit TLS listens.

        A configured certificate that does not work, or ``mode = "on"``, stops the start-up;
        a generated one that cannot be made (``mode = "auto"``) leaves TLS off: STARTTLS gets 454.
        """
        smtp, tls = self.config.smtp, self.config.tls
        folder = self.sink.store.path / "tls"
        try:
            if tls.probe != "off":  # a bad certificate or protocol instead (tls_probe.py)
                self.tls = await self.loop.run_in_executor(
                    None, setup_probe, tls.cert, tls.key, folder, smtp.hostname, str(tls.probe))
            else:
                self.tls = await self.loop.run_in_executor(None, setup_tls, tls.cert, tls.key, folder, smtp.hostname)
        except (TLSSetupError, OSError, ImportError) as exc:
            reason = str(exc) if isinstance(exc, TLSSetupError) else f"cannot make a certificate: {exc}"
            if tls.mode == "on" or tls.cert or tls.key or tls.probe != "off":
                raise RuntimeError(f"TLS: {reason}") from None
            log.warning("TLS off: %s (STARTTLS answers 454)", reason)
            self.settings = dataclasses.replace(self.settings, tls_unavailable=reason)
            return
        self.settings = dataclasses.replace(self.settings, starttls=True)

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


def listen_error(exc: OSError, listener: str, host: str, port: int, flag: str) -> ListenError:
    """The :class:`ListenError` of a port that could not be opened: the errno's own words (asyncio
    wraps them in "error while attempting to bind on address ..."), the listener and its flag."""
    reason = os.strerror(exc.errno).lower() if exc.errno and exc.errno > 0 else str(exc.strerror or exc)
    error = ListenError(exc.errno, reason, listener, f"{host}:{port}", flag)
    error.filename = f"{host}:{port}"
    return error


class SinkServer:
    """One running smtp-sink: a :class:`Sink` and its listeners side by side (SMTP, implicit TLS,
    HTTP), started and stopped in order.

    Start-up: the store and its index, then TLS, then every port is opened, and only then does
    any serve; "listening on" is logged once every listener is up, followed by one "ready" line.
    Shutdown: stop accepting, stop HTTP, 421 to open sessions, then index what is pending.
    """

    def __init__(self, config: Config, policy: Policy | None = None) -> None:
        self.config = config
        self.sink = Sink(config, policy)
        self.smtp = SMTPServer(self.sink)
        self.http: HTTPServer | None = None  # when [http] enabled, once started
        # the sink's, for short: its store, fault rules (add, list, clear at run time) and policy
        self.store, self.rules, self.policy = self.sink.store, self.sink.rules, self.sink.policy
        self.connections = self.smtp.connections  # the open SMTP sessions

    @property
    def smtp_port(self) -> int:
        """The SMTP port (0 until listening)."""
        return self.smtp.port

    @property
    def tls_port(self) -> int:
        """The implicit-TLS port (0: TLS off, or not listening yet)."""
        return self.smtp.tls_port

    @property
    def http_port(self) -> int:
        """The HTTP port (0: HTTP off, or not listening yet)."""
        return self.http.port if self.http is not None else 0

    @property
    def tls_cert(self) -> str | None:
        """The PEM certificate in use (None: TLS off)."""
        return str(self.smtp.tls.cert) if self.smtp.tls else None

    @property
    def tls_ca(self) -> str | None:
        """The generated authority clients can trust (None: TLS off or a configured certificate)."""
        tls = self.smtp.tls
        return str(tls.ca) if tls and tls.ca else None

    async def start(self) -> None:
        """Get everything a session needs ready, open every port, then serve (see the class doc).
        Raises :class:`ListenError` naming the port that could not be opened."""
        await self.sink.start()
        try:
            await self.smtp.prepare()
            await self.smtp.bind()
            if self.config.http.enabled:
                from .web.app import HTTPServer  # aiohttp is imported only when HTTP is on

                http = self.config.http
                self.http = HTTPServer(self.sink, http, smtp_port=self.smtp.port)
                try:
                    await self.http.start()
                except OSError as exc:
                    raise listen_error(exc, "HTTP", http.host, http.port,
                                       "--http-port (or turn HTTP off with --no-http)") from None
            await self.smtp.serve()
        except BaseException:
            self.smtp.close()
            if self.http is not None:
                await self.http.stop()
                self.http = None
            await self.sink.stop()
            raise
        self.smtp.log_listening()
        if self.http is not None:
            self.http.log_listening()
        log.info("event loop: %s", type(asyncio.get_running_loop()).__module__.split(".")[0])
        log.info("smtp-sink ready: up to %d sessions", self.smtp.max_connections)

    async def stop(self) -> None:
        """Stop listening, send 421 to every open session, then index what is pending."""
        self.smtp.close()
        if self.http is not None:
            await self.http.stop()
        await self.smtp.stop()
        await self.sink.stop()
        log.info("smtp-sink stopped")


def new_event_loop(choice: str) -> asyncio.AbstractEventLoop:
    """An event loop: uvloop when installed and ``choice`` is auto or uvloop, else asyncio's."""
    if choice in ("auto", "uvloop"):
        try:
            import uvloop
        except ImportError:
            if choice == "uvloop":
                # a dependency on CPython/Linux/macOS (pyproject.toml): missing only on other platforms
                raise RuntimeError("--loop uvloop needs uvloop, which is not installed for this Python "
                                   "(pip install uvloop; it exists for CPython on Linux and macOS)") from None
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

    tune_malloc()  # the serve command's process only: a library user's process keeps its allocator settings

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
        """The server's SMTP port (0 until started)."""
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
