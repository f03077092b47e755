"""The open-file limit: ``smtp-sink serve`` raises the soft RLIMIT_NOFILE to the hard one, and
when that is still short for ``max_connections`` it warns and takes fewer sessions, so a client
over the cap gets 421, never a silent close, and no session's DATA fails for want of a file."""

from __future__ import annotations

import re
import smtplib
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from support.processes import Processes, ServerProcess, clean_env
from support.system import skip_unless_open_file_limit
from support.wire import Wire, connect

from smtp_sink.replies import Code


@pytest.fixture
def limited(start_process: Processes) -> Callable[..., ServerProcess]:
    """``smtp-sink serve`` started with RLIMIT_NOFILE set to (soft, hard), without SMTP_SINK_* from our
    environment (plus ``env``)."""

    def start(soft: int, hard: int, **env: str) -> ServerProcess:
        skip_unless_open_file_limit(hard)
        return start_process(env=clean_env(**env), open_files=(soft, hard))

    return start


def open_sessions(port: int, count: int) -> list[Wire]:
    wires = []
    for _ in range(count):
        wires.append(connect(port))  # 220
    return wires


def deliver(wire: Wire, subject: str) -> int:
    for line in ("EHLO f.test", "MAIL FROM:<a@example.test>", "RCPT TO:<b@example.test>"):
        assert wire.cmd(line)[0] == Code.OK
    assert wire.cmd("DATA")[0] == Code.START_MAIL_INPUT
    wire.send(f"Subject: {subject}\r\n\r\nbody\r\n.\r\n")
    return wire.code()


def test_the_soft_limit_is_raised_to_the_hard_one(limited) -> None:
    server = limited(64, 4096, SMTP_SINK_SMTP_MAX_CONNECTIONS="300")
    wires = open_sessions(server.port, 300)  # far more than 64 open files
    try:
        assert deliver(wires[-1], "last") == Code.OK
    finally:
        for wire in wires:
            wire.close()
    log = server.log()
    assert "open-file limit" not in log and "Too many open files" not in log and "Traceback" not in log


def test_a_short_hard_limit_lowers_the_cap_and_excess_clients_get_421(limited) -> None:
    server = limited(160, 160)
    found = re.search(r"WARNING the open-file limit \(160\) allows (\d+) sessions, not max_connections = 1000",
                      server.log())
    assert found, server.log()
    cap = int(found.group(1))
    assert 10 <= cap < 160
    assert f"ready: up to {cap} sessions" in server.log()
    wires = open_sessions(server.port, cap)
    try:
        refused: list[tuple[int, bool]] = []

        def one_too_many() -> None:
            with Wire(server.port) as wire:
                code = wire.reply()[0]
                refused.append((code, wire.closed()))

        burst = [threading.Thread(target=one_too_many) for _ in range(40)]  # at once
        for thread in burst:
            thread.start()
        # meanwhile a session inside the cap stores its message: no file is missing for it
        assert deliver(wires[0], "during the burst") == Code.OK
        for thread in burst:
            thread.join(30)
        assert refused == [(Code.SERVICE_UNAVAILABLE, True)] * 40  # each told why, then closed
        assert all(deliver(wire, f"session {n}") == Code.OK for n, wire in enumerate(wires[1:6]))
    finally:
        for wire in wires:
            wire.close()
    time.sleep(0.5)
    with smtplib.SMTP("127.0.0.1", server.port, timeout=10) as smtp:  # room again once they left
        assert smtp.sendmail("a@example.test", ["b@example.test"], b"Subject: after\r\n\r\nx\r\n") == {}
    log = server.log()
    assert "Too many open files" not in log and "Traceback" not in log and "ERROR" not in log
    assert len(list((Path(server.log_path).parent / "mail").glob("*.eml"))) == 7
