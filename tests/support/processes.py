"""``smtp-sink`` as a real child process: ``serve`` on free ports (its log in a file), and the
inspection commands run to completion."""

from __future__ import annotations

import json
import os
import re
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without any ``SMTP_SINK_*`` variable, plus ``extra``."""
    return {**{k: v for k, v in os.environ.items() if not k.startswith("SMTP_SINK_")}, **extra}


def run_cli(*args: str, store: Path | None = None, text: bool = True, timeout: float = 60,
            cwd: Path | None = None, env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[Any]:
    """``python -m smtp_sink ARGS [--store STORE]`` to completion, stdin closed, output captured,
    without the ``SMTP_SINK_*`` variables of the test run (plus ``env``)."""
    command = [sys.executable, "-m", "smtp_sink", *args, *(["--store", str(store)] if store else [])]
    return subprocess.run(command, capture_output=True, text=text, timeout=timeout, cwd=cwd,
                          stdin=subprocess.DEVNULL, env=clean_env(**(env or {})))


def cli_json(store: Path, *args: str) -> Any:
    """An inspection command with ``--json`` on ``store``; it must succeed. Its parsed output."""
    done = run_cli(*args, "--json", store=store)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


class ServerProcess:
    """``smtp-sink serve`` on free ports, started and ready (its "smtp-sink ready" line logged):
    ``port``, ``tls_port`` (0: no implicit TLS) and ``http_port`` (0: ``--no-http``, the default;
    ``http=True`` serves the web page and API on a free port) are read from its log.

    ``env`` replaces the inherited environment; ``open_files`` sets RLIMIT_NOFILE to (soft, hard)
    in the child before it starts.
    """

    def __init__(self, store: Path, *extra: str, log: Path | None = None, env: Mapping[str, str] | None = None,
                 open_files: tuple[int, int] | None = None, http: bool = False) -> None:
        self.log_path = log or store.parent / f"serve-{time.monotonic_ns()}.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        # a file, not a pipe: a full pipe would block the server
        self._log = open(self.log_path, "w")  # noqa: SIM115 - closed in stop()
        limit = None if open_files is None else lambda: resource.setrlimit(resource.RLIMIT_NOFILE, open_files)
        web = ("--http-port", "0") if http else ("--no-http",)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "smtp_sink", "serve", "--port", "0", *web, "--store", str(store), *extra],
            stderr=self._log, stdout=self._log, stdin=subprocess.DEVNULL, env=env, preexec_fn=limit,
        )
        self.pid = self.proc.pid
        self.store = store
        self.port = self.tls_port = self.http_port = 0
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and self.proc.poll() is None:
            log = self.log()
            found = re.search(r"listening on [\d.]+:(\d+)", log)
            if found and "smtp-sink ready" in log:
                self.port = int(found.group(1))
                tls = re.search(r"implicit TLS on [\d.]+:(\d+)", log)
                self.tls_port = int(tls.group(1)) if tls else 0
                page = re.search(r"web page and API on http://[\d.]+:(\d+)/", log)
                self.http_port = int(page.group(1)) if page else 0
                return
            time.sleep(0.05)
        self.stop()
        raise AssertionError(f"server did not start:\n{self.log()}")

    def log(self) -> str:
        """Everything the server logged so far."""
        return self.log_path.read_text(errors="replace")

    def kill9(self) -> None:
        """SIGKILL: the process dies at once, as in a crash."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> int:
        """SIGTERM and wait (a no-op once stopped); the exit status."""
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(15)
        self._log.close()
        return self.proc.returncode


class Processes:
    """Start :class:`ServerProcess` es (the ``start_process`` fixture); :meth:`stop_all`, the
    fixture's teardown, stops those still running."""

    def __init__(self, store: Path) -> None:
        self.store = store  # the default store folder
        self._started: list[ServerProcess] = []

    def __call__(self, *extra: str, store: Path | None = None, **options: Any) -> ServerProcess:
        """``smtp-sink serve EXTRA`` on ``store`` (default: the test's ``tmp_path / "mail"``);
        ``options`` as for :class:`ServerProcess`."""
        self._started.append(ServerProcess(store or self.store, *extra, **options))
        return self._started[-1]

    def stop_all(self) -> None:
        """Stop every process still running."""
        for process in self._started:
            process.stop()
