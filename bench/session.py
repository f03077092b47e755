"""Micro-benchmark of the sans-I/O session, commands and DATA: ``python -m bench.session``.

No sockets and no disk: a session is fed the bytes a client sends, in the chunk sizes the server
reads, and the time is measured (the best of ``--repeat`` runs, so load from elsewhere shows as
noise, not as a slowdown). It isolates what the session does per command (the command table's
check, the handlers) and per message (``data_reader.py``: the terminator scan, the unstuffing,
the size accounting). Run it before and after a change to either, ``PYTHONPATH=<other checkout>``
for the other side.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass

from smtp_sink.config import Config
from smtp_sink.protocol import MessageReceived, Settings, SMTPSession

KIB, MIB = 1024, 1024 * 1024
ENVELOPE = b"EHLO bench.test\r\nMAIL FROM:<a@bench.test>\r\nRCPT TO:<b@bench.test>\r\nDATA\r\n"


def plain(size: int) -> bytes:
    """``size`` bytes of 76-character text lines, no line starting with a dot."""
    line = b"x" * 76 + b"\r\n"
    return (line * (size // len(line) + 1))[:size - 2] + b"\r\n"


def dotted(size: int) -> bytes:
    """Every other line starts with a dot (stuffed on the wire: the worst case for unstuffing)."""
    pair = b"..a quoted line starting with a dot" + b"y" * 40 + b"\r\n" + b"x" * 76 + b"\r\n"
    return (pair * (size // len(pair) + 1))[:size - 2] + b"\r\n"


@dataclass(frozen=True)
class Case:
    """``count`` messages of ``body`` fed ``chunk`` bytes at a time, with ``max_message_size``."""

    name: str
    body: bytes
    chunk: int
    count: int
    max_message_size: int = 0
    stored: bool = True  # False: the message is over the limit (552, nothing stored)


def cases() -> list[Case]:
    stuffed = dotted(10 * MIB)
    unstuffed_size = len(stuffed.replace(b"\r\n.", b"\r\n"))  # the size RFC 1870 counts
    return [
        Case("1 KiB, one chunk (x2000)", plain(KIB), 64 * KIB, 2000),
        Case("100 KiB, 64 KiB chunks (x200)", plain(100 * KIB), 64 * KIB, 200),
        Case("10 MiB, 256 KiB chunks (x3)", plain(10 * MIB), 256 * KIB, 3),
        Case("10 MiB dot-stuffed, 256 KiB chunks (x3)", dotted(10 * MIB), 256 * KIB, 3),
        # raw size over the limit, unstuffed under it: the dot counting of RFC 1870 runs
        Case("10 MiB dot-stuffed, exactly at the limit (x3)", stuffed, 256 * KIB, 3, unstuffed_size),
        Case("10 MiB over a 5 MiB limit (x3)", plain(10 * MIB), 256 * KIB, 3, 5 * MIB, stored=False),
    ]


def run(case: Case) -> float:
    """Seconds to feed ``case.count`` messages through one session each."""
    settings = Settings.from_config(Config(), max_message_size=case.max_message_size, output_budget=0)
    wire = case.body + b".\r\n"
    chunks = [wire[i:i + case.chunk] for i in range(0, len(wire), case.chunk)]
    got = 0
    start = time.perf_counter()
    for _ in range(case.count):
        session = SMTPSession(settings)
        session.feed(ENVELOPE)
        for chunk in chunks:
            for item in session.feed(chunk):
                got += type(item) is MessageReceived
    elapsed = time.perf_counter() - start
    expected = case.count if case.stored else 0
    assert got == expected, (case.name, got, expected)
    return elapsed


COMMANDS = b"EHLO bench.test\r\n" + b"MAIL FROM:<a@bench.test>\r\nRCPT TO:<b@bench.test>\r\nRSET\r\nNOOP\r\n" * 2500


def run_commands() -> float:
    """Seconds to execute 10,001 pipelined commands in one feed (no output budget)."""
    session = SMTPSession(Settings.from_config(Config(), output_budget=0))
    start = time.perf_counter()
    replies = session.feed(COMMANDS)
    elapsed = time.perf_counter() - start
    assert len(replies) == 10_001
    return elapsed


def best(fn: Callable[[], float], repeat: int) -> float:
    return min(fn() for _ in range(repeat))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.session", description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=7, help="runs per case; the best is printed (default 7)")
    args = parser.parse_args(argv)
    seconds = best(run_commands, args.repeat)
    print(f"{'10,001 pipelined commands':45} {seconds * 1000:8.1f} ms  {seconds / 10_001 * 1e6:27.2f} us/command")
    for case in cases():
        seconds = best(lambda case=case: run(case), args.repeat)
        volume = len(case.body) * case.count / MIB
        print(f"{case.name:45} {seconds * 1000:8.1f} ms  {volume / seconds:8.0f} MiB/s  "
              f"{seconds / case.count * 1e6:9.1f} us/message")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
