"""The load: Postfix's smtp-source driving a server, timed and checked; and the loopback reference."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from .servers import Server
from .tools import HOST, SMTP_SOURCE, BenchError, free_port, postfix_env, proc_cpu, proc_status, stop

MIB = 1024 * 1024


@dataclass(frozen=True)
class Workload:
    """``messages`` of ``size`` payload bytes over ``sessions`` parallel sessions."""

    key: str
    messages: int
    size: int
    sessions: int
    keep_connection: bool  # smtp-source -d: the next message over the same connection

    def describe(self) -> str:
        size = f"{self.size // MIB} MiB" if self.size >= MIB else f"{self.size // 1024} KiB"
        how = "one connection per session" if self.keep_connection else "new connection per message"
        return f"({self.key}) {self.messages:,} x {size}, {self.sessions} sessions, {how}"

    def scaled(self, factor: float) -> Workload:
        return Workload(self.key, max(self.sessions * 2, int(self.messages * factor)), self.size, self.sessions,
                        self.keep_connection)


WORKLOADS = {
    "a": Workload("a", 2_000, 1024, 10, False),
    "b": Workload("b", 5_000, 1024, 10, True),
    "c": Workload("c", 1_000, 100 * 1024, 10, False),
    "d": Workload("d", 20, 10 * MIB, 2, False),
}


@dataclass
class Run:
    """One timed run: seconds, messages, payload bytes, the server's CPU seconds while smtp-source
    ran (user, system), and our server's peak RSS if asked for."""

    seconds: float
    messages: int
    payload: int
    peak_rss: int | None = None
    cpu_user: float = 0.0
    cpu_sys: float = 0.0
    noop: list[float] | None = None  # seconds of each NOOP round trip of a separate client during the run

    @property
    def cpu_per_message(self) -> tuple[float, float]:
        """Server CPU per message in microseconds: ``(user, system)``."""
        return self.cpu_user / self.messages * 1e6, self.cpu_sys / self.messages * 1e6

    @property
    def rate(self) -> float:
        return self.messages / self.seconds

    @property
    def mbps(self) -> float:
        return self.payload / self.seconds / MIB


def smtp_source(port: int, messages: int, size: int, sessions: int, keep: bool, timeout: float = 900) -> float:
    """Send with smtp-source; return the wall seconds. Raises BenchError if it reports any failure."""
    cmd = [str(SMTP_SOURCE), "-s", str(sessions), "-m", str(messages), "-l", str(size),
           "-f", "bench@example.test", "-t", "sink@example.test", "-M", "bench.example.test", "-S", "bench"]
    if keep:
        cmd.append("-d")
    cmd.append(f"{HOST}:{port}")
    start = time.perf_counter()
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, env=postfix_env(), timeout=timeout)
    except subprocess.TimeoutExpired:
        raise BenchError(f"smtp-source did not finish within {timeout:.0f} s") from None
    seconds = time.perf_counter() - start
    if done.returncode != 0 or "fatal" in done.stderr or "warning" in done.stderr:
        raise BenchError(f"smtp-source failed (status {done.returncode}): {done.stderr.strip()[-300:]}")
    return seconds


def verify(server: Server, folder: Path, expected: int, size: int, timeout: float = 30.0) -> None:
    """Check the server stored ``expected`` files of at least ``size`` bytes each. Raises BenchError."""
    if server.count is None:
        return
    deadline = time.monotonic() + timeout  # a server may still be flushing after its 250 replies
    while True:
        count, total = server.count(folder)
        if count >= expected or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    if count != expected:
        raise BenchError(f"{server.label} stored {count} files, expected {expected}")
    if total < expected * size * 0.98:  # Postfix -d and maildir store LF line ends (the wire has CRLF)
        raise BenchError(f"{server.label} stored {total} bytes, less than {expected} x {size}")


class NoopProbe:
    """A separate client timing ``NOOP`` round trips (one every PERIOD seconds) while a load runs."""

    PERIOD = 0.002

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection((HOST, port), timeout=30)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._reply()  # 220
        self.sock.sendall(b"EHLO probe.test\r\n")
        self._reply()
        self.times: list[float] = []
        self.error = ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _reply(self) -> bytes:
        got = b""
        while not got.endswith(b"\r\n") or got.splitlines()[-1][3:4] == b"-":
            chunk = self.sock.recv(4096)
            if not chunk:
                raise BenchError("the NOOP client's connection closed")
            got += chunk
        return got

    def _run(self) -> None:
        clock = time.perf_counter
        try:
            while not self._stop.wait(self.PERIOD):
                start = clock()
                self.sock.sendall(b"NOOP\r\n")
                if not self._reply().startswith(b"250"):
                    raise BenchError("NOOP was not answered 250")
                self.times.append(clock() - start)
        except (OSError, BenchError) as exc:
            self.error = str(exc)

    def __enter__(self) -> NoopProbe:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)
        with contextlib.suppress(OSError):
            self.sock.sendall(b"QUIT\r\n")
        self.sock.close()
        if self.error:
            raise BenchError(f"NOOP client: {self.error}")


def run_once(server: Server, workload: Workload, work: Path, peak_rss: bool = False, noop: bool = False) -> Run:
    """Start the server with an empty folder, drive it, verify what it stored, stop it. ``noop``: a
    separate client times NOOP round trips meanwhile (:class:`NoopProbe`)."""
    folder = work / f"{server.key}-{workload.key}"
    shutil.rmtree(folder, ignore_errors=True)
    port = free_port()
    proc = server.start(port, folder)
    probe: NoopProbe | None = None
    try:
        probe = NoopProbe(port) if noop else None
        user, system = proc_cpu(proc.pid)
        with probe or contextlib.nullcontext():
            seconds = smtp_source(port, workload.messages, workload.size, workload.sessions,
                                  workload.keep_connection)
        user_after, system_after = proc_cpu(proc.pid)
        verify(server, folder, workload.messages, workload.size)
        hwm = proc_status(proc.pid, "VmHWM") if peak_rss else None
        if proc.poll() is not None:
            raise BenchError(f"{server.label} exited during the run")
    finally:
        stop(proc)
        shutil.rmtree(folder, ignore_errors=True)
    return Run(seconds, workload.messages, workload.messages * workload.size, hwm, user_after - user,
               system_after - system, probe.times if probe is not None else None)


def loopback_reference(workload: Workload, work: Path) -> Run:
    """The physical limit for (d): the same payload bytes through loopback sockets into files, with
    socat, one stream per session in parallel (each stream carries its share of the messages)."""
    if shutil.which("socat") is None:
        raise BenchError("socat is not installed")
    folder = work / "socat"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    per_stream = workload.messages // workload.sessions
    line = b"X" * 79 + b"\r\n"  # the lines smtp-source sends for -l
    payload = folder / "payload"
    with payload.open("wb") as out:
        block = line * (workload.size // len(line)) + line[: workload.size % len(line)]
        for _ in range(per_stream):
            out.write(block)
    receivers, ports = [], []
    try:
        for n in range(workload.sessions):
            port = free_port()
            ports.append(port)
            receivers.append(subprocess.Popen(
                ["socat", "-u", f"TCP-LISTEN:{port},bind={HOST},reuseaddr", f"CREATE:{folder}/out{n}"],
                stdin=subprocess.DEVNULL,
            ))
        time.sleep(0.3)  # let the listeners bind
        errors: list[str] = []

        def send(port: int) -> None:
            done = subprocess.run(["socat", "-u", f"FILE:{payload}", f"TCP:{HOST}:{port}"], capture_output=True)
            if done.returncode:
                errors.append(done.stderr.decode(errors="replace"))

        start = time.perf_counter()
        threads = [threading.Thread(target=send, args=(p,)) for p in ports]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for r in receivers:
            r.wait(60)
        seconds = time.perf_counter() - start
        if errors:
            raise BenchError(f"socat failed: {errors[0][-300:]}")
        written = sum((folder / f"out{n}").stat().st_size for n in range(workload.sessions))
        if written != per_stream * workload.sessions * workload.size:
            raise BenchError(f"socat wrote {written} bytes, expected {per_stream * workload.sessions * workload.size}")
    finally:
        for r in receivers:
            stop(r)
        shutil.rmtree(folder, ignore_errors=True)
    return Run(seconds, per_stream * workload.sessions, written)
