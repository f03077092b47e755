"""Shared helpers: where the tools live, free ports, waiting for a server, process memory, versions."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("BENCH_CACHE", ROOT / "bench" / ".cache"))
POSTFIX = CACHE / "postfix"
POSTFIX_LIB = POSTFIX / "usr" / "lib" / "postfix"
SMTP_SOURCE = POSTFIX / "usr" / "sbin" / "smtp-source"
POSTFIX_SINK = POSTFIX / "usr" / "sbin" / "smtp-sink"
MAILDEV = CACHE / "maildev" / "node_modules" / "maildev"
HOST = "127.0.0.1"


class BenchError(RuntimeError):
    """A run that did not do what it claims: its figure must not be printed."""


def postfix_env() -> dict[str, str]:
    """The environment Postfix's extracted binaries need to find their shared libraries."""
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = f"{POSTFIX_LIB}:{env['LD_LIBRARY_PATH']}" if env.get("LD_LIBRARY_PATH") else str(
        POSTFIX_LIB
    )
    return env


def free_port() -> int:
    """A TCP port nobody listens on at the moment (on 127.0.0.1)."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def wait_smtp(port: int, proc: subprocess.Popen[bytes] | None = None, timeout: float = 30.0) -> float:
    """Block until a 220 greeting arrives on ``port``; return the seconds waited. Raises BenchError."""
    start = time.perf_counter()
    deadline = start + timeout
    while time.perf_counter() < deadline:
        if proc is not None and proc.poll() is not None:
            raise BenchError(f"server exited with status {proc.returncode} before answering")
        try:
            with socket.create_connection((HOST, port), timeout=2) as sock:
                greeting = sock.recv(512)
                if greeting.startswith(b"220"):
                    with contextlib.suppress(OSError):
                        sock.sendall(b"QUIT\r\n")
                        sock.recv(512)
                    return time.perf_counter() - start
        except OSError:
            pass
        time.sleep(0.01)
    raise BenchError(f"no SMTP greeting on port {port} within {timeout:.0f} s")


def stop(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL if it does not exit."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def proc_status(pid: int, key: str) -> int:
    """A ``/proc/PID/status`` memory field (``VmRSS``, ``VmHWM``) in bytes."""
    text = Path(f"/proc/{pid}/status").read_text()
    match = re.search(rf"^{key}:\s+(\d+) kB", text, re.M)
    if not match:
        raise BenchError(f"no {key} in /proc/{pid}/status")
    return int(match.group(1)) * 1024


def proc_cpu(pid: int) -> tuple[float, float]:
    """``(user, system)`` CPU seconds a process has used so far (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / ticks, int(fields[12]) / ticks


def settle(pid: int, quiet: float = 0.5, timeout: float = 120.0) -> None:
    """Wait until process ``pid`` stops using CPU (e.g. its batched indexing has caught up)."""
    deadline, last = time.monotonic() + timeout, proc_cpu(pid)
    while time.monotonic() < deadline:
        time.sleep(quiet)
        now = proc_cpu(pid)
        if now == last:
            return
        last = now


def loadavg() -> str:
    """The 1, 5 and 15 minute load averages."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def median(values: list[float]) -> float:
    return statistics.median(values)


def machine() -> dict[str, str]:
    """nproc, CPU model, memory and kernel of this machine."""
    model = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    mem = Path("/proc/meminfo").read_text().split("\n", 1)[0].split()[1]
    return {
        "nproc": str(os.cpu_count()),
        "cpu": model,
        "memory": f"{int(mem) // 1024 // 1024} GiB",
        "kernel": os.uname().release,
        "python": sys.version.split()[0],
    }


def _run(cmd: list[str], env: dict[str, str] | None = None) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=30, env=env)
    except (OSError, subprocess.TimeoutExpired):
        return "not installed"
    return (out.stdout + out.stderr).strip().splitlines()[0] if (out.stdout + out.stderr).strip() else "?"


def versions() -> dict[str, str]:
    """Versions of everything the benchmark runs."""
    from importlib import metadata

    def dist(name: str) -> str:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "not installed"

    postfix = "not installed"
    stamp = POSTFIX / "VERSION"
    if stamp.exists():
        postfix = stamp.read_text().strip()
    maildev = "not installed"
    with contextlib.suppress(OSError, ValueError):
        maildev = json.loads((MAILDEV / "package.json").read_text())["version"]
    socat = "not installed"
    if shutil.which("socat"):
        out = subprocess.run(["socat", "-V"], capture_output=True, text=True).stdout
        found = re.search(r"socat version (\S+)", out)
        socat = found.group(1) if found else "?"
    return {
        "smtp-sink (ours)": dist("smtp-sink"),
        "uvloop": dist("uvloop"),
        "aiosmtpd": dist("aiosmtpd"),
        "Postfix smtp-source/smtp-sink": postfix,
        "MailDev": maildev,
        "node": _run(["node", "--version"]),
        "socat": socat,
        "python": sys.version.split()[0],
    }
