"""The SMTP listener: one ``asyncio.Protocol`` per connection driving :mod:`smtp_sink.protocol`.

This is the only module that does socket I/O. Replies to pipelined commands go out in one
``transport.write``; a client that does not read its replies is paused (back-pressure);
idle sessions get 421 and are closed; on shutdown every open session gets 421. With TLS on,
STARTTLS upgrades a connection in place (``loop.start_tls``) and a second listener speaks
implicit TLS (RFC 8314).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from .config import Config, is_loopback
from .policy import MailboxPolicy
from .protocol import (
    CLOSE,
    START_TLS,
    Delay,
    MessageReceived,
    Output,
    Policy,
    Session,
    Settings,
    Throttle,
    accepted,
    shutting_down,
    store_failed,
)
from .replies import Reply
from .rules import RuleSet
from .store import Store, StoreError
from .tls import ServerTLS, TLSSetupError
from .tls import setup as setup_tls

log = logging.getLogger("smtp_sink")
T = TypeVar("T")
# Indexing (parsing each message for the summary) costs more CPU than receiving it, and the
# worker thread competes with the SMTP thread for the GIL. So it waits until mail stops
# flowing, unless someone watches (event-stream subscribers) or the backlog grows large.
# Queries never wait: they index what is pending first (Store.refresh).
INDEX_DELAY = 0.02  # seconds between a save and the first look at indexing
INDEX_QUIET = 0.25  # index once no message arrived for this long
INDEX_BACKLOG = 20000  # ... or once this many wait


def _log_index_error(future: asyncio.Future[Any]) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.error("indexing failed", exc_info=future.exception())


class SMTPConnection(asyncio.Protocol):
    """One client connection."""

    def __init__(self, server: SinkServer, tls: bool = False) -> None:
        self.server = server
        self.tls = tls  # accepted on the implicit-TLS port
        self.transport: asyncio.Transport | None = None
        self.session: Session | None = None
        self.last_active = 0.0
        self.peer = ""
        self._upgrading: asyncio.Task[None] | None = None  # the STARTTLS handshake
        self._gone = False  # connection_lost ran
        self._debug = log.isEnabledFor(logging.DEBUG)
        self._rate = 0  # bytes per second, set by a throttle rule
        self._held = False  # reading paused by a delay or throttle rule

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass
        server = self.server
        peer = transport.get_extra_info("peername")
        self.peer = peer[0] if isinstance(peer, tuple) else str(peer or "")
        self.last_active = server.loop.time()
        if len(server.connections) >= server.config.smtp.max_connections:
            log.warning("refused %s: %d connections open (max_connections)", self.peer, len(server.connections))
            self._send(shutting_down(server.settings.hostname, "too many connections, try again later"))
            transport.close()
            return
        server.connections.add(self)
        self.session = Session(server.settings, server.policy, peer=self.peer, tls=self.tls)
        log.info("connect from %s%s", self.peer, " (implicit TLS)" if self.tls else "")
        self._emit(self.session.greeting())

    def data_received(self, data: bytes) -> None:
        session = self.session
        if session is None:
            return
        self.last_active = self.server.loop.time()
        if self._debug:
            log.debug("C[%s]: %r", self.peer, data[:200])
        outputs = session.feed(data)
        if outputs:
            self._emit(outputs)
        if self._rate and not self._held:  # throttle rule: this many bytes take len/rate seconds
            self._hold(len(data) / self._rate, [])

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
                transport.close()
                return
            elif item is START_TLS:
                self._write(b"".join(chunks))
                transport.pause_reading()  # nothing more in plaintext: start_tls takes over
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
        self.last_active = server.loop.time()
        self.session.tls_started()
        ssl_object = transport.get_extra_info("ssl_object")
        log.info("TLS with %s: %s %s", self.peer, ssl_object.version(), ssl_object.cipher()[0])

    def _hold(self, seconds: float, then: list[Output]) -> None:
        """Stop reading for ``seconds`` (delay and throttle rules), then send ``then``."""
        assert self.transport is not None
        self._held = True
        self.transport.pause_reading()
        self.server.loop.call_later(seconds, self._release, then)

    def _release(self, then: list[Output]) -> None:
        self._held = False
        if self.transport is None or self.transport.is_closing():
            return
        self.transport.resume_reading()
        self._emit(then)

    def _write(self, out: bytes) -> None:
        if out:
            if self._debug:
                log.debug("S[%s]: %r", self.peer, out[:500])
            assert self.transport is not None
            self.transport.write(out)

    def eof_received(self) -> bool:
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        if self.session is not None and not self._gone:
            self._gone = True
            self.session.close()
            self.server.connections.discard(self)
            log.info("disconnect %s", self.peer)

    def pause_writing(self) -> None:
        """The client is not reading its replies: stop reading its commands."""
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.transport is not None and not self.transport.is_closing() and not self._held:
            self.transport.resume_reading()

    def close_with(self, why: str) -> None:
        """Send 421 and close (shutdown, idle timeout)."""
        if self._upgrading is not None:  # mid-handshake: no plaintext 421 into a TLS stream
            self._upgrading.cancel()
        elif self.transport is not None and not self.transport.is_closing():
            self._send(shutting_down(self.server.settings.hostname, why))
            self.transport.close()
        if self.session is not None:
            self.session.close()

    def _send(self, item: Reply) -> None:
        assert self.transport is not None
        self.transport.write(item.encode())


class SinkServer:
    """The SMTP server: listener, store and the set of open connections."""

    def __init__(self, config: Config, policy: Policy | None = None) -> None:
        self.config = config
        smtp, auth = config.smtp, config.auth
        self.settings = Settings(
            hostname=smtp.hostname,
            max_message_size=smtp.max_message_size,
            max_recipients=smtp.max_recipients,
            smtputf8=smtp.smtputf8,
            auth=auth.mode,
            users=tuple(auth.users.items()),
            require_tls=auth.require_tls,
        )
        tls = config.tls
        # auto: TLS on when clients log in (apps that send passwords insist on TLS) or a cert is given
        self.tls_enabled = tls.mode == "on" or (tls.mode == "auto" and (auth.mode != "off" or bool(tls.cert)))
        self.tls: ServerTLS | None = None
        self.tls_port = 0  # the implicit-TLS port once listening (0: TLS off)
        self._tls_server: asyncio.base_events.Server | None = None
        self.handshake_timeout = min(smtp.idle_timeout, 30.0)
        self.rules = RuleSet(config.rules)  # fault rules; add, list and clear them at run time
        self.policy = policy or MailboxPolicy(config.policy, self.storage_problem, self.rules)
        self._storage_checked = -1.0
        self._storage_status: str | None = None
        self.store = Store(
            config.store.path, fsync=config.store.fsync,
            max_messages=config.store.max_messages, max_age=config.store.max_age,
        )
        # Index inserts run in one worker thread, batched, off the reply path (see _schedule_index).
        self._indexer = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="smtp-sink-index")
        self._index_scheduled = False
        self._last_saved = 0.0
        self.connections: set[SMTPConnection] = set()
        self.loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]
        self._server: asyncio.base_events.Server | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self.smtp_port = 0
        self.http: Any = None  # web.app.HTTPServer when [http] enabled
        self.http_port = 0

    async def start(self) -> None:
        """Open the store and start listening (raises OSError when the port is taken)."""
        self.loop = asyncio.get_running_loop()
        try:
            self.store.open()
        except OSError as exc:
            raise RuntimeError(f"cannot use store folder {self.store.path}: {exc.strerror or exc}") from None
        smtp = self.config.smtp
        try:
            self._server = await self.loop.create_server(
                lambda: SMTPConnection(self), smtp.host, smtp.port, reuse_address=True, backlog=1024
            )
        except OSError as exc:  # name the address: the CLI prints it
            raise OSError(exc.errno, exc.strerror, f"{smtp.host}:{smtp.port}") from None
        self.smtp_port = self._server.sockets[0].getsockname()[1]
        if self.tls_enabled:
            try:
                await self._start_tls_listener()
            except BaseException:
                self._server.close()
                raise
        self._sweeper = self.loop.create_task(self._close_idle())
        # Open the index (rebuilding it from the files if needed) without delaying the listener.
        opening = self.loop.run_in_executor(self._indexer, lambda: self.store.index)
        opening.add_done_callback(_log_index_error)
        log.info("smtp-sink listening on %s:%d, storing in %s", smtp.host, self.smtp_port, self.store.path)
        if not is_loopback(smtp.host):
            log.warning("SMTP listens on %s: anyone who can reach this machine can send it mail", smtp.host)
        if self.tls is not None:
            log.info("implicit TLS on %s:%d; STARTTLS on %d; certificate %s%s", smtp.host, self.tls_port,
                     self.smtp_port, self.tls.cert, f" (trust {self.tls.ca})" if self.tls.ca else "")
        if self.config.http.enabled:
            from .web.app import HTTPServer  # aiohttp is imported only when HTTP is on

            self.http = HTTPServer(self)
            try:
                await self.http.start()
            except OSError as exc:
                for listener in (self._server, self._tls_server):
                    if listener is not None:
                        listener.close()
                self._sweeper.cancel()
                http = self.config.http
                raise OSError(exc.errno, exc.strerror, f"{http.host}:{http.port}") from None
            self.http_port = self.http.port

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

    async def _start_tls_listener(self) -> None:
        """Load or generate the certificate, offer STARTTLS and listen for implicit TLS.

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
        context = self.tls.context
        try:
            self._tls_server = await self.loop.create_server(
                lambda: SMTPConnection(self, tls=True), smtp.host, tls.port, ssl=context,
                ssl_handshake_timeout=self.handshake_timeout, reuse_address=True, backlog=1024,
            )
        except OSError as exc:
            raise OSError(exc.errno, exc.strerror, f"{smtp.host}:{tls.port}") from None
        self.tls_port = self._tls_server.sockets[0].getsockname()[1]
        self.settings = dataclasses.replace(self.settings, starttls=True)

    def storage_problem(self) -> str | None:
        """Why the store cannot take mail now (not writable, short of ``min_free_space``), or None.

        Checked at MAIL and DATA, at most once a second (one ``statvfs``), not per message write.
        """
        now = time.monotonic()
        if now - self._storage_checked < 1.0:
            return self._storage_status
        self._storage_checked = now
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
        if problem != self._storage_status:
            (log.warning if problem else log.info)("store: %s", problem or "can take mail again")
        self._storage_status = problem
        return problem

    def deliver(self, message: MessageReceived) -> Reply:
        """Store a complete message and return the final reply to DATA."""
        try:
            stored = self.store.save(message.envelope, message.data, self.settings.hostname)
        except StoreError as exc:
            log.error("message from <%s> not stored: %s", message.envelope.mail_from, exc.strerror)
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

    async def _close_idle(self) -> None:
        timeout = self.config.smtp.idle_timeout
        period = min(1.0, timeout / 2)
        while True:
            await asyncio.sleep(period)
            limit = self.loop.time() - timeout
            for conn in [c for c in self.connections if c.last_active < limit]:
                log.info("idle timeout for %s", conn.peer)
                conn.close_with("idle timeout, closing connection")
                self.connections.discard(conn)

    async def stop(self) -> None:
        """Stop listening, send 421 to every open session and close it."""
        if self._sweeper is not None:
            self._sweeper.cancel()
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
        log.info("event loop: %s", type(loop).__module__.split(".")[0])
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
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def smtp_port(self) -> int:
        return self.server.smtp_port

    def start(self) -> SinkServer:
        """Start and wait until the server is listening; re-raise a start-up error."""
        self._thread = threading.Thread(target=self._run, name="smtp-sink", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise self._error
        return self.server

    def _run(self) -> None:
        loop = self._loop = new_event_loop(self.server.config.smtp.loop)
        try:
            loop.run_until_complete(self.server.start())
        except BaseException as exc:  # handed to the starting thread
            self._error = exc
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        loop.run_forever()
        loop.run_until_complete(self.server.stop())
        loop.close()

    def stop(self) -> None:
        """Stop the server (open sessions get 421) and join the thread."""
        if self._loop is not None and self._thread is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    def __enter__(self) -> SinkServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
