"""``smtp-sink serve`` as a real child process on a free port, its log in a file."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path


class ServerProcess:
    """Start the CLI server; ``port`` is read from its "listening on" log line."""

    def __init__(self, store: Path, *extra: str, log: Path | None = None) -> None:
        self.log_path = log or store.parent / f"serve-{time.monotonic_ns()}.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        # a file, not a pipe: a full pipe would block the server
        self._log = open(self.log_path, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "smtp_sink", "serve", "--port", "0", "--no-http", "--store", str(store), *extra],
            stderr=self._log, stdout=self._log, stdin=subprocess.DEVNULL,
        )
        self.pid = self.proc.pid
        self.store = store
        self.port = 0
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and self.proc.poll() is None:
            found = re.search(r"listening on [\d.]+:(\d+)", self.log())
            if found:
                self.port = int(found.group(1))
                return
            time.sleep(0.05)
        raise AssertionError(f"server did not start:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(15)
        self._log.close()
        return self.proc.returncode
