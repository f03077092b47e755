"""Memory of our server: RSS after a few messages compared with RSS after many."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from .servers import Server
from .tools import BenchError, free_port, proc_status, settle, stop
from .workloads import smtp_source, verify


@dataclass
class Growth:
    first: int  # messages before the first reading
    total: int  # messages before the second reading
    rss_first: int
    rss_total: int
    hwm: int


def rss_growth(server: Server, work: Path, first: int, total: int) -> Growth:
    """Send ``first`` 1 KiB messages (10 kept sessions), read VmRSS; send up to ``total``, read again."""
    folder = work / "memory"
    shutil.rmtree(folder, ignore_errors=True)
    port = free_port()
    proc = server.start(port, folder)
    try:
        smtp_source(port, first, 1024, 10, True)
        settle(proc.pid)
        rss_first = proc_status(proc.pid, "VmRSS")
        smtp_source(port, total - first, 1024, 10, True)
        settle(proc.pid)
        rss_total = proc_status(proc.pid, "VmRSS")
        hwm = proc_status(proc.pid, "VmHWM")
        verify(server, folder, total, 1024)
        if proc.poll() is not None:
            raise BenchError(f"{server.label} exited during the run")
    finally:
        stop(proc)
        shutil.rmtree(folder, ignore_errors=True)
    return Growth(first, total, rss_first, rss_total, hwm)
