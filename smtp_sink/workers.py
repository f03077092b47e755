"""``smtp-sink serve --workers N``: N SMTP processes on one port, and this process (the parent)
serving HTTP, indexing and looking after them.

Start-up: the parent opens the store and its index, makes the TLS certificate once, reserves the
SMTP (and implicit-TLS) port by binding a ``SO_REUSEPORT`` socket that never listens (so port 0
works, and the port stays ours while a worker restarts), starts HTTP, then starts the workers
(:mod:`smtp_sink.worker`, each binding the same port with ``SO_REUSEPORT``: the kernel spreads
new connections among them) and logs "ready" once every one serves. A worker that cannot start
stops the start-up with its reason.

While running: each worker tells the parent every id it stored; the parent indexes them as its
own saves, so the web page's events and ``smtp-sink watch`` see every worker's mail. Fault rules
and the session count are shared (:mod:`smtp_sink.shared`). A worker that dies (a crash, ``kill
-9``) is logged and replaced; its acknowledged messages are already in place (a 250 follows the
rename), and a rescan of the folder indexes any whose id it had not passed on yet.

Shutdown (SIGTERM, SIGINT): every worker gets SIGTERM (421 to its sessions, then it exits),
then HTTP stops and the parent indexes what is pending.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import pickle
import shutil
import signal
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from .config import AUTO_WORKERS, MAX_WORKERS, Config
from .ids import is_id
from .server import SMTPServer, listen_error, run_loop
from .shared import SharedRuleSet, SharedState
from .sink import Sink
from .worker import SETUP_SIZE

if TYPE_CHECKING:
    from .web.app import HTTPServer

log = logging.getLogger("smtp_sink")
START_TIMEOUT = 60.0  # seconds a worker may take to start serving
STOP_TIMEOUT = 15.0  # seconds the workers may take to close their sessions before SIGKILL
RUNTIME_PREFIX = "smtp-sink-workers-"  # the runtime folder: <prefix><parent pid>-<random>
RESTART_PAUSE = 1.0  # a worker that died within this many seconds of starting is restarted after this pause


def worker_count(setting: int) -> int:
    """How many SMTP processes ``[smtp] workers`` asks for (``auto``: the CPUs this process may use)."""
    if setting != AUTO_WORKERS:
        return setting
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, MAX_WORKERS))


def _runtime_folder() -> Path:
    """A private folder for the shared state: in /dev/shm (memory) where there is one. Folders left
    by a parent that was killed (its pid in the name, no such process now) are removed first."""
    root = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else tempfile.gettempdir()
    for stale in Path(root).glob(f"{RUNTIME_PREFIX}*-*"):
        pid = stale.name[len(RUNTIME_PREFIX):].split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(stale, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=f"{RUNTIME_PREFIX}{os.getpid()}-", dir=root))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _reserve(host: str, port: int, listener: str, flag: str) -> socket.socket:
    """Bind (never listen) a ``SO_REUSEPORT`` socket: the port is ours, the workers listen on it."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                             flags=socket.AI_PASSIVE)[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise listen_error(exc, listener, host, port, flag) from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise listen_error(exc, listener, host, port, flag) from None
    return sock


@dataclasses.dataclass
class _Worker:
    """One SMTP process the parent looks after."""

    number: int
    proc: asyncio.subprocess.Process
    started: float
    pid: int = 0
    task: asyncio.Task[None] | None = None


class Supervisor:
    """The parent of ``serve --workers N`` (see the module doc)."""

    def __init__(self, config: Config, count: int) -> None:
        self.config, self.count = config, count
        self.folder = _runtime_folder()
        self.state = SharedState.create(self.folder)
        self.sink = Sink(config, rules=SharedRuleSet(self.state, config.rules, create=True))
        self.smtp = SMTPServer(self.sink)  # not listening: its TLS set-up and log lines
        self.http: HTTPServer | None = None
        self.workers: dict[int, _Worker] = {}
        self._sockets: list[socket.socket] = []
        self._worker_config = config
        self._stopping = False

    @property
    def pids(self) -> list[int]:
        """The worker processes' ids, by worker number."""
        return [self.workers[n].pid for n in sorted(self.workers)]

    async def start(self) -> None:
        """Store and index, TLS, ports, HTTP, then the workers (see the module doc)."""
        config = self.config
        smtp, tls = config.smtp, config.tls
        await self.sink.start()
        try:
            await self.smtp.prepare()  # a generated certificate is made here, once
            plain = _reserve(smtp.host, smtp.port, "SMTP", "--port")
            self._sockets.append(plain)
            self.smtp.port = plain.getsockname()[1]
            tls_port = tls.port
            if self.smtp.tls is not None:
                implicit = _reserve(smtp.host, tls.port, "implicit TLS", "--tls-port")
                self._sockets.append(implicit)
                self.smtp.tls_port = tls_port = implicit.getsockname()[1]
            self._worker_config = dataclasses.replace(
                config, smtp=dataclasses.replace(smtp, port=self.smtp.port),
                tls=dataclasses.replace(tls, port=tls_port))
            if config.http.enabled:
                from .web.app import HTTPServer  # aiohttp is imported only when HTTP is on

                http = HTTPServer(self.sink, config.http, smtp_port=self.smtp.port)
                self.http = http
                try:
                    await http.start()
                except OSError as exc:
                    raise listen_error(exc, "HTTP", config.http.host, config.http.port,
                                       "--http-port (or turn HTTP off with --no-http)") from None
            await asyncio.gather(*(self._start_worker(n) for n in range(self.count)))
        except BaseException:
            await self.stop()
            raise
        self.smtp.log_listening()
        if self.http is not None:
            self.http.log_listening()
        self._log_workers()
        log.info("smtp-sink ready: up to %d sessions", smtp.max_connections)

    def _log_workers(self) -> None:
        log.info("SMTP in %d worker processes (pids %s); HTTP and indexing in this one (pid %d)",
                 self.count, " ".join(map(str, self.pids)), os.getpid())

    async def _start_worker(self, number: int) -> None:
        """Start worker ``number`` and wait until it serves; RuntimeError with its reason if it cannot."""
        ours, theirs = socket.socketpair()
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "smtp_sink.worker", str(theirs.fileno()),
                pass_fds=(theirs.fileno(),), stdin=asyncio.subprocess.DEVNULL)
        finally:
            theirs.close()
        worker = self.workers[number] = _Worker(number, proc, time.monotonic())
        reader, writer = await asyncio.open_unix_connection(sock=ours)
        setup = pickle.dumps((self._worker_config, number, str(self.folder)))
        writer.write(len(setup).to_bytes(SETUP_SIZE, "big") + setup)
        try:
            first = await asyncio.wait_for(reader.readline(), START_TIMEOUT)
        except asyncio.TimeoutError:
            first = b"X did not start within %d s\n" % START_TIMEOUT
        if not first.startswith(b"R "):
            reason = first[2:].decode("utf-8", "replace").strip()
            if first.startswith(b"X "):
                await proc.wait()
            else:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                status = await proc.wait()
                reason = reason or f"exited with status {status}"
            writer.close()
            raise RuntimeError(f"SMTP worker {number}: {reason}")
        worker.pid = int(first[2:])
        worker.task = asyncio.get_running_loop().create_task(self._watch(worker, reader, writer))

    async def _watch(self, worker: _Worker, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Take the worker's lines until it ends; then restart it, unless stopping."""
        rest = b""
        while data := await reader.read(65536):
            lines = (rest + data).split(b"\n")
            rest = lines.pop()
            for line in lines:
                self._take(line)
        status = await worker.proc.wait()
        writer.close()
        self.state.reset_worker(worker.number)
        if self._stopping:
            return
        log.warning("SMTP worker %d (pid %d) exited with status %d: starting a new one", worker.number,
                    worker.pid, status)
        loop = asyncio.get_running_loop()
        try:  # messages it stored but had not announced yet
            await loop.run_in_executor(None, self.sink.store.rescan)
        except Exception:  # the files are safe; the next query rescans
            log.exception("rescanning the store after worker %d ended failed", worker.number)
        if time.monotonic() - worker.started < RESTART_PAUSE:
            await asyncio.sleep(RESTART_PAUSE)
        while not self._stopping:
            try:
                await self._start_worker(worker.number)
                self._log_workers()
                return
            except RuntimeError as exc:
                log.error("%s; trying again in %g s", exc, RESTART_PAUSE)
                await asyncio.sleep(RESTART_PAUSE)

    def _take(self, line: bytes) -> None:
        """One line from a worker: a stored message (index it) or an error reply (an event)."""
        kind = line[:2]
        try:
            if kind == b"M ":
                _, name, size = line.split(b" ", 2)
                message_id = name.decode("ascii", "replace")
                if is_id(message_id):
                    self.sink.adopt(message_id, int(size))
            elif kind == b"E ":
                level, peer, text = json.loads(line[2:])
                self.sink.client_error(500 if level == "error" else 400, str(peer), str(text))
        except ValueError:  # a bug in a worker: say so, keep reading (a rescan finds its messages)
            log.error("unreadable line from an SMTP worker: %r", line[:200])

    async def stop(self) -> None:
        """SIGTERM to every worker, wait for them (SIGKILL after STOP_TIMEOUT s), stop HTTP, index
        what is pending, and remove the runtime folder."""
        self._stopping = True
        for worker in self.workers.values():
            if worker.proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    worker.proc.send_signal(signal.SIGTERM)
        tasks = [w.task for w in self.workers.values() if w.task is not None]
        procs = [w.proc.wait() for w in self.workers.values()]
        done = asyncio.gather(*tasks, *procs, return_exceptions=True)
        try:
            await asyncio.wait_for(asyncio.shield(done), STOP_TIMEOUT)
        except asyncio.TimeoutError:
            for worker in self.workers.values():
                if worker.proc.returncode is None:
                    log.warning("SMTP worker %d did not stop within %g s: killing it", worker.number, STOP_TIMEOUT)
                    with contextlib.suppress(ProcessLookupError):
                        worker.proc.kill()
            await done
        if self.http is not None:
            await self.http.stop()
        await self.sink.stop()
        for sock in self._sockets:
            sock.close()
        shutil.rmtree(self.folder, ignore_errors=True)
        log.info("smtp-sink stopped")


def serve_workers(config: Config) -> None:
    """Run ``serve --workers N`` until SIGINT or SIGTERM."""

    async def main() -> None:
        supervisor = Supervisor(config, worker_count(config.smtp.workers))
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await supervisor.start()
        await stop.wait()
        log.info("shutting down")
        await supervisor.stop()

    run_loop(main, config.smtp.loop)
