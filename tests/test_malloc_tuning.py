"""glibc's malloc tuned for large messages at ``serve`` start-up (server.tune_malloc): 10 MiB messages
reuse the heap instead of faulting in fresh pages for each; a MALLOC_*_ variable the user set is
left alone. Real ``smtp-sink serve`` processes (mallopt changes the whole process), real messages."""

from __future__ import annotations

import json
import os
import smtplib
import subprocess
import sys
from pathlib import Path

from support.processes import Processes, ServerProcess, clean_env

MESSAGE = b"Subject: big\r\n\r\n" + (b"x" * 78 + b"\r\n") * (10 * 1024 * 1024 // 80)
GLIBC_DEFAULTS = {"MALLOC_MMAP_THRESHOLD_": "131072", "MALLOC_TRIM_THRESHOLD_": "131072"}  # fixed, not adaptive


def minor_faults(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[7])


def faults_per_message(server: ServerProcess, count: int = 4) -> float:
    """Minor page faults of the server per 10 MiB message, after a first one that warms it up."""
    with smtplib.SMTP("127.0.0.1", server.port, timeout=60) as smtp:
        smtp.sendmail("a@b.test", ["c@d.test"], MESSAGE)
        before = minor_faults(server.pid)
        for _ in range(count):
            smtp.sendmail("a@b.test", ["c@d.test"], MESSAGE)
        return (minor_faults(server.pid) - before) / count


def test_large_messages_reuse_the_heap(start_process: Processes, tmp_path: Path) -> None:
    assert os.confstr("CS_GNU_LIBC_VERSION"), "this suite runs on glibc (Debian)"
    untuned = faults_per_message(start_process(store=tmp_path / "a", env=clean_env(**GLIBC_DEFAULTS)))
    tuned = faults_per_message(start_process(store=tmp_path / "b", env=clean_env()))
    pages = len(MESSAGE) // 4096
    assert untuned > pages  # each message in fresh pages (read buffers, the message, its copy)
    # glibc's adaptive default (no MALLOC_ variables, no tuning) faults about a quarter of the pages
    # again for each message on this machine (657 of 2,560 measured); tuned, few: under 1 alone, up to
    # 193 seen in a full CI run (the indexer and session-writer threads allocate in arenas of their own)
    assert tuned < pages / 8 and tuned < untuned / 10, (tuned, untuned)


PROBE = "import json; from smtp_sink.server import tune_malloc; print(json.dumps(tune_malloc()))"


def applied(**env: str) -> list[str]:
    environ = {k: v for k, v in clean_env().items() if not k.startswith("MALLOC_")} | env
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=environ, timeout=60,
                          check=True)
    result: list[str] = json.loads(done.stdout)
    return result


def test_a_setting_from_the_environment_wins() -> None:
    assert applied() == ["M_TRIM_THRESHOLD", "M_MMAP_THRESHOLD"]
    assert applied(MALLOC_TRIM_THRESHOLD_="0") == ["M_MMAP_THRESHOLD"]
