"""The servers under test: how to start each one on a port and a folder, and how to count what it stored."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from .tools import HOST, MAILDEV, POSTFIX_SINK, BenchError, free_port, postfix_env, stop, wait_smtp


def _files(folder: Path, suffix: str = "") -> tuple[int, int]:
    """(number of files, total bytes) directly in ``folder`` whose names end with ``suffix``."""
    count = size = 0
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        return 0, 0
    for entry in entries:
        if entry.is_file() and entry.name.endswith(suffix):
            count += 1
            size += entry.stat().st_size
    return count, size


def ours_env() -> dict[str, str]:
    """The environment without SMTP_SINK_* settings, so only the flags configure our server."""
    return {k: v for k, v in os.environ.items() if not k.startswith("SMTP_SINK_")}


@dataclass(frozen=True)
class Server:
    """One server under test."""

    key: str
    label: str
    command: Callable[[int, Path], list[str]]
    stores: bool  # writes one file per message (its count is checked after every run)
    count: Callable[[Path], tuple[int, int]] | None = None  # (files, bytes) it stored in the folder
    env: Callable[[], dict[str, str]] = field(default=ours_env)

    def start(self, port: int, folder: Path) -> subprocess.Popen[bytes]:
        """Start on ``port`` storing into ``folder``; return once it greets. Raises BenchError."""
        folder = folder.resolve()  # the server runs in another working directory
        folder.mkdir(parents=True, exist_ok=True)
        os.chmod(folder, 0o777)  # Postfix's smtp-sink writes as nobody
        proc = subprocess.Popen(
            self.command(port, folder), cwd=folder.parent, env=self.env(),
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        try:
            wait_smtp(port, proc)
        except BenchError as exc:
            stop(proc)
            err = proc.stderr.read().decode(errors="replace").strip() if proc.stderr else ""
            raise BenchError(f"{self.label}: {exc}: {err[-500:]}") from None
        return proc


def _ours(loop: str | None) -> Callable[[int, Path], list[str]]:
    def command(port: int, folder: Path) -> list[str]:
        cmd = [sys.executable, "-m", "smtp_sink", "serve", "--no-http", "--host", HOST, "--port", str(port),
               "--store", str(folder), "--log-level", "warning"]
        return cmd + (["--loop", loop] if loop else [])

    return command


def _postfix(dump: bool) -> Callable[[int, Path], list[str]]:
    def command(port: int, folder: Path) -> list[str]:
        cmd = [str(POSTFIX_SINK)]
        if os.geteuid() == 0:
            cmd += ["-u", "nobody"]  # required when run as root
        if dump:
            cmd += ["-d", f"{folder}/"]  # one file per message, named by a random hex number
        return [*cmd, f"{HOST}:{port}", "1024"]

    return command


def _aiosmtpd(handler: str, with_folder: bool) -> Callable[[int, Path], list[str]]:
    def command(port: int, folder: Path) -> list[str]:
        cmd = [sys.executable, "-m", "aiosmtpd", "-n", "-l", f"{HOST}:{port}", "-c", handler]
        return cmd + ([f"{folder}/maildir"] if with_folder else [])  # Maildir creates it (and new/, cur/, tmp/)

    return command


def _maildev(port: int, folder: Path) -> list[str]:
    return ["node", str(MAILDEV / "dist" / "bin" / "maildev.js"), "-s", str(port), "--ip", HOST,
            "--mail-directory", str(folder), "--disable-web", "--silent"]


OURS = "ours"
SERVERS = [
    Server(OURS, "smtp-sink (ours, default loop)", _ours(None), True, lambda f: _files(f, ".eml")),
    Server("ours-asyncio", "smtp-sink (ours, --loop asyncio)", _ours("asyncio"), True, lambda f: _files(f, ".eml")),
    Server("postfix-d", "Postfix smtp-sink -d (C, file per msg)", _postfix(True), True, _files, postfix_env),
    Server("postfix", "Postfix smtp-sink (discards)", _postfix(False), False, None, postfix_env),
    Server("aiosmtpd-mailbox", "aiosmtpd Mailbox (maildir)", _aiosmtpd("aiosmtpd.handlers.Mailbox", True), True,
           lambda f: _files(f / "maildir" / "new")),
    Server("aiosmtpd-sink", "aiosmtpd Sink (discards)", _aiosmtpd("aiosmtpd.handlers.Sink", False), False),
    Server("maildev", "MailDev (.eml files)", _maildev, True, lambda f: _files(f, ".eml")),
]
BY_KEY = {server.key: server for server in SERVERS}


@contextmanager
def serve_ours(folder: Path) -> Iterator[tuple[int, int]]:
    """A ``smtp-sink serve`` process (HTTP on) over the store ``folder``: yields (SMTP port, HTTP port)."""
    smtp_port, http_port = free_port(), free_port()
    env = ours_env() | {"SMTP_SINK_HTTP_HOST": HOST, "SMTP_SINK_HTTP_PORT": str(http_port)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "smtp_sink", "serve", "--host", HOST, "--port", str(smtp_port),
         "--store", str(folder), "--log-level", "warning"],
        env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_smtp(smtp_port, proc, timeout=600)
        yield smtp_port, http_port
    finally:
        stop(proc)
