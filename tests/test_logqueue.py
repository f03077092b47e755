"""``smtp-sink serve`` writes its log lines from a thread (smtp_sink/logqueue.py): a log output that
blocks (a pipe nobody reads) does not stop SMTP, and every line still arrives once it is read."""

from __future__ import annotations

import os
import re
import signal
import smtplib
import subprocess
import sys
from pathlib import Path

from support.processes import clean_env

MESSAGES = 800  # about 200 bytes of log lines each at info level: more than a pipe holds (64 KiB)


def test_a_blocked_log_output_does_not_stop_smtp(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "smtp_sink", "serve", "--port", "0", "--no-http", "--store", str(tmp_path / "mail"),
         "--log-level", "info"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=clean_env())
    assert proc.stderr is not None
    try:
        head = b""
        while b"smtp-sink ready" not in head:  # read until it listens, then never again until the end
            line = proc.stderr.readline()
            assert line, head.decode()
            head += line
        port = int(re.search(rb"listening on [\d.]+:(\d+)", head).group(1))  # type: ignore[union-attr]
        for n in range(MESSAGES):  # a new connection for each: connect, stored, disconnect lines
            with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
                smtp.sendmail("a@b.test", [f"r{n}@d.test"], b"Subject: log\r\n\r\nx\r\n")
        proc.send_signal(signal.SIGTERM)
        rest = proc.stderr.read().decode()
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert len(re.findall(r" INFO stored \S+ size=\d+ from=<a@b.test> to=r\d+@d.test", rest)) == MESSAGES
    assert "smtp-sink stopped" in rest and "dropped" not in rest
    assert len(os.listdir(tmp_path / "mail")) >= MESSAGES
