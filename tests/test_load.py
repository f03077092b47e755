"""Load: many sessions at once, every 250 has its file and no file lacks a 250; idle sessions are closed."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

import pytest
from support.processes import Processes

from smtp_sink.store import Store

SESSIONS = 500
MESSAGES = 10_000


def rss_kib(pid: int) -> int:
    text = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+)", text).group(1))


async def read_reply(reader: asyncio.StreamReader) -> bytes:
    while True:
        line = await reader.readline()
        if not line:
            raise ConnectionError("closed")
        if line[3:4] != b"-":
            return line


async def session(port: int, index: int, count: int, gate: Gate, accepted: list[str]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    assert (await read_reply(reader)).startswith(b"220")
    writer.write(b"EHLO load.test\r\n")
    assert (await read_reply(reader)).startswith(b"250")
    await gate.arrive()  # every session is open before any message flows
    for n in range(count):
        body = b"Subject: load %d-%d\r\n\r\n%s\r\n" % (index, n, b"x" * 900)
        writer.write(b"MAIL FROM:<s%d@load.test>\r\nRCPT TO:<r%d@load.test>\r\nDATA\r\n" % (index, n))
        for expected in (b"250", b"250", b"354"):
            assert (await read_reply(reader)).startswith(expected)
        writer.write(body + b".\r\n")
        final = await read_reply(reader)
        assert final.startswith(b"250"), final
        accepted.append(final.split()[-1].decode())
    writer.write(b"QUIT\r\n")
    assert (await read_reply(reader)).startswith(b"221")
    writer.close()


class Gate:
    """Opens when ``count`` sessions have arrived."""

    def __init__(self, count: int) -> None:
        self.waiting = count
        self.open = asyncio.Event()

    async def arrive(self) -> None:
        self.waiting -= 1
        if self.waiting == 0:
            self.open.set()
        await self.open.wait()


async def drive(port: int, messages: int = MESSAGES) -> list[str]:
    accepted: list[str] = []
    gate = Gate(SESSIONS)
    await asyncio.gather(*(session(port, i, messages // SESSIONS, gate, accepted) for i in range(SESSIONS)))
    return accepted


@pytest.mark.slow
def test_500_sessions_10000_messages_exact_accounting(start_process: Processes) -> None:
    server = start_process()
    store_dir = server.store
    time.sleep(0.3)
    start = rss_kib(server.pid)
    # A first round of 500 sessions (1,000 messages) sizes the allocator's pools and the index
    # cache; after it, memory must come back to that level whatever the load.
    warm = asyncio.run(drive(server.port, 2 * SESSIONS))
    time.sleep(1.0)
    baseline = rss_kib(server.pid)
    started = time.monotonic()
    accepted = asyncio.run(drive(server.port))
    elapsed = time.monotonic() - started
    assert len(accepted) == MESSAGES
    on_disk = Store(store_dir).ids()
    assert sorted(warm + accepted) == on_disk  # every 250 has its file, no file without a 250
    assert list((store_dir / "tmp").iterdir()) == []
    time.sleep(1.0)  # the index catches up once SMTP is quiet
    after = rss_kib(server.pid)
    print(f"\n{MESSAGES} messages over {SESSIONS} sessions in {elapsed:.1f}s; "
          f"RSS {start} KiB at start, {baseline} after the first 500 sessions, {after} after {MESSAGES} more")
    assert after - baseline < 10 * 1024, f"RSS grew from {baseline} to {after} KiB"
    assert server.stop() == 0
    log = server.log()
    assert " ERROR " not in log and "Traceback" not in log


async def hold_idle(port: int, count: int) -> int:
    async def one() -> bool:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        await read_reply(reader)
        reply = await asyncio.wait_for(read_reply(reader), 30)  # the 421 after the idle timeout
        eof = await asyncio.wait_for(reader.read(), 30)
        writer.close()
        return reply.startswith(b"421") and eof == b""

    results = await asyncio.gather(*(one() for _ in range(count)))
    return sum(results)


@pytest.mark.slow
def test_1000_idle_connections_are_closed_by_the_idle_timeout(start_process: Processes, tmp_path: Path) -> None:
    config = tmp_path / "idle.toml"
    config.write_text("[smtp]\nidle_timeout = 2.0\nmax_connections = 2000\n")
    server = start_process("--config", str(config))
    started = time.monotonic()
    closed = asyncio.run(hold_idle(server.port, 1000))
    assert closed == 1000
    assert time.monotonic() - started < 20
