"""Slow clients cannot hold the server's sessions: a command line has a deadline from its first
byte (``command_timeout``) and message data a minimum rate after a grace period
(``data_min_rate``, ``data_rate_grace``). An idle timeout alone restarts on every byte, so
a client trickling one byte at a time would keep its session for ever."""

from __future__ import annotations

import smtplib
import threading
import time

from support.servers import Servers
from support.wire import Wire, connect

from smtp_sink.replies import Code
from smtp_sink.rules import Rule
from smtp_sink.server import SinkServer

TRICKLE = 0.3  # seconds between the bytes of a slow client: far below any idle timeout used here


def trickle(port: int, opening: bytes, outcome: list[tuple[float, bytes]], stop: threading.Event) -> None:
    """Send ``opening``, then one byte every TRICKLE s until the server closes: (seconds, last reply)."""
    with connect(port) as wire:
        wire.send(opening)
        started = time.monotonic()
        wire.sock.settimeout(TRICKLE)
        while not stop.is_set():
            try:
                data = wire.sock.recv(4096)
                if not data:
                    outcome.append((time.monotonic() - started, wire.buf))
                    return
                wire.buf += data
            except TimeoutError:
                pass
            except ConnectionResetError:  # closed while our last byte was on its way
                outcome.append((time.monotonic() - started, wire.buf))
                return
            try:
                wire.send(b"x")
            except OSError:
                outcome.append((time.monotonic() - started, wire.buf))
                return
        outcome.append((float("inf"), wire.buf))


def slow_clients(port: int, count: int, opening: bytes) -> tuple[list[tuple[float, bytes]], threading.Event]:
    outcome: list[tuple[float, bytes]] = []
    stop = threading.Event()
    for _ in range(count):
        threading.Thread(target=trickle, args=(port, opening, outcome, stop), daemon=True).start()
    return outcome, stop


def wait_for(outcome: list, count: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while len(outcome) < count and time.monotonic() < deadline:
        time.sleep(0.05)


def test_clients_trickling_a_command_line_lose_their_sessions(start_server: Servers) -> None:
    server: SinkServer = start_server(max_connections=5, command_timeout=1.5, idle_timeout=30)
    outcome, stop = slow_clients(server.smtp_port, 5, b"EHLO ")
    try:
        time.sleep(0.5)
        with Wire(server.smtp_port) as refused:  # they hold every session
            assert refused.reply()[0] == Code.SERVICE_UNAVAILABLE
        wait_for(outcome, 5, timeout=10)
    finally:
        stop.set()
    assert len(outcome) == 5 and all(seconds < 5 for seconds, _ in outcome), outcome
    for _, replies in outcome:
        assert replies.startswith(b"421 ") and b"command not completed within 1.5 s" in replies
    with smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=10) as smtp:  # a session is free again
        assert smtp.sendmail("a@example.test", ["b@example.test"], b"Subject: in\r\n\r\nx\r\n") == {}


def test_quick_command_lines_and_idle_pauses_are_not_cut(start_server: Servers) -> None:
    server: SinkServer = start_server(command_timeout=1.0, idle_timeout=30)
    with connect(server.smtp_port) as wire:
        for _ in range(3):
            time.sleep(0.7)  # silent between commands: only idle_timeout applies
            wire.send(b"NO")
            time.sleep(0.4)  # a line split in two, well within its deadline
            wire.send(b"OP\r\n")
            assert wire.code() == Code.OK
        time.sleep(1.5)  # longer than command_timeout, but no line begun
        assert wire.cmd("NOOP")[0] == Code.OK


DATA_OPENING = b"EHLO s.test\r\nMAIL FROM:<a@example.test>\r\nRCPT TO:<b@example.test>\r\nDATA\r\n"


def test_message_data_slower_than_the_minimum_rate_is_cut(start_server: Servers) -> None:
    server: SinkServer = start_server(max_connections=4, data_min_rate=1000, data_rate_grace=1.0,
                                        command_timeout=1.0, idle_timeout=30)
    outcome, stop = slow_clients(server.smtp_port, 3, DATA_OPENING)
    try:
        time.sleep(0.3)
        # a fast sender is not affected by the same limits, while they trickle
        body = b"Subject: fast\r\n\r\n" + b"f" * 98 + b"\r\n"
        with smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=10) as smtp:
            assert smtp.sendmail("a@example.test", ["b@example.test"], body * 2000) == {}
        wait_for(outcome, 3, timeout=10)
    finally:
        stop.set()
    assert len(outcome) == 3 and all(seconds < 5 for seconds, _ in outcome), outcome
    for _, replies in outcome:
        *_, last = replies.rstrip(b"\r\n").split(b"\r\n")
        assert last.startswith(b"421 ") and b"slower than 1000 bytes/s" in last, replies
    time.sleep(0.2)
    assert len(server.store.ids()) == 1  # only the fast one; nothing of the slow ones


def test_a_throttle_rule_slower_than_the_minimum_rate_is_not_the_clients_fault(start_server: Servers) -> None:
    server: SinkServer = start_server(data_min_rate=4_000_000, data_rate_grace=0.5)
    server.rules.add(Rule(stage="data", action="throttle", rate=400_000))  # we read slowly on purpose
    body = b"Subject: throttled\r\n\r\n" + (b"t" * 98 + b"\r\n") * 12_000  # 1.2 MB: about 3 s
    with smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=20) as smtp:
        assert smtp.sendmail("a@example.test", ["b@example.test"], body) == {}
    assert len(server.store.ids()) == 1


def test_a_delay_rule_longer_than_the_command_deadline_does_not_cut_the_session(start_server: Servers) -> None:
    server: SinkServer = start_server(command_timeout=0.5)
    server.rules.add(Rule(stage="mail", action="delay", seconds=1.5))
    with connect(server.smtp_port) as wire:
        assert wire.cmd("EHLO d.test")[0] == Code.OK
        wire.send(b"MAIL FROM:<a@example.test>\r\nRCPT TO:<b@exa")  # the rest of RCPT waits behind the delay
        time.sleep(0.3)
        wire.send(b"mple.test>\r\n")
        assert [wire.code() for _ in range(2)] == [Code.OK, Code.OK]
