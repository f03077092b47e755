"""``smtp-sink serve`` as a real process: errors, signals, logs, event loops."""

from __future__ import annotations

import re
import signal
import smtplib
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from server_process import ServerProcess
from smtp_wire import connect

import smtp_sink


def test_port_in_use_is_one_line_and_exit_1(tmp_path: Path) -> None:
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    port = busy.getsockname()[1]
    try:
        result = subprocess.run(
            [sys.executable, "-m", "smtp_sink", "serve", "--port", str(port), "--no-http", "--store", str(tmp_path)],
            capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL,
        )
    finally:
        busy.close()
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if "INFO" not in line]
    assert errors == [f"smtp-sink: cannot listen on 127.0.0.1:{port}: address already in use"]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_sends_421_to_open_sessions_and_exits_0(tmp_path: Path, sig: signal.Signals) -> None:
    server = ServerProcess(tmp_path / "mail")
    wire = connect(server.port)
    assert wire.cmd("EHLO c.test")[0] == 250
    server.proc.send_signal(sig)
    code, lines = wire.reply()
    assert code == 421 and "shutting down" in lines[0]
    assert wire.closed()
    assert server.proc.wait(15) == 0
    server.stop()
    assert "Traceback" not in server.log()


def test_store_flag_info_log_and_debug_log(tmp_path: Path) -> None:
    store = tmp_path / "elsewhere"
    server = ServerProcess(store, "-v")
    with smtplib.SMTP("127.0.0.1", server.port) as smtp:
        smtp.sendmail("a@example.test", ["b@example.test", "c@example.test"], b"Subject: log\r\n\r\nx\r\n")
    assert server.stop() == 0
    (eml,) = store.glob("*.eml")
    log = server.log()
    assert re.search(r"INFO connect from 127\.0\.0\.1", log)
    assert re.search(rf"INFO stored {eml.stem} size=\d+ from=<a@example\.test> to=b@example\.test,c@example\.test", log)
    assert re.search(r"DEBUG C\[127\.0\.0\.1\]: b'mail FROM:<a@example\.test>", log, re.I)
    assert re.search(r"DEBUG S\[127\.0\.0\.1\]: b'250 ", log)


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_both_event_loops_serve(tmp_path: Path, loop: str) -> None:
    server = ServerProcess(tmp_path / "mail", "--loop", loop)
    with smtplib.SMTP("127.0.0.1", server.port) as smtp:
        smtp.sendmail("a@example.test", ["b@example.test"], b"Subject: loop\r\n\r\nx\r\n")
    assert server.stop() == 0
    assert f"event loop: {loop}" in server.log()
    assert len(list((tmp_path / "mail").glob("*.eml"))) == 1


def test_version() -> None:
    result = subprocess.run([sys.executable, "-m", "smtp_sink", "--version"], capture_output=True, text=True)
    assert result.stdout.strip() == f"smtp-sink {smtp_sink.__version__}"
