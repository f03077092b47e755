"""``smtp-send --interactive``: raw commands, each reply explained from smtp_sink/replies.py."""

from __future__ import annotations

import os
import pty
import select
import shutil
import ssl
import subprocess
import sys
import time
from pathlib import Path

from support.client import CLIENT, only_message, self_signed, smtp_send
from support.wire import free_port

from smtp_sink.replies import Code, explain
from smtp_sink.server import SinkServer


def meaning(code: Code) -> str:
    """How the client shows a reply's explanation."""
    return f"({int(code)}: {explain(code)})"


def test_interactive_mode_explains_each_reply(server: SinkServer) -> None:
    script = "EHLO lab\nMAIL FROM:<a@example.test>\nRCPT TO:<b@example.test>\nDATA\nSubject: typed\n\nhi\n.\nQUIT\n"
    result = smtp_send("--server", f"127.0.0.1:{server.smtp_port}", "--interactive", stdin=script)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "(220: <domain> Service ready)" in out
    assert "(354: Start mail input; end with <CRLF>.<CRLF>)" in out
    assert "(221: <domain> Service closing transmission channel)" in out
    assert out.count("(250: Requested mail action okay, completed)") == 4
    assert "C: MAIL FROM:<a@example.test>" in out  # piped input is echoed as the dialogue
    assert only_message(server)["Subject"] == "typed"


def test_interactive_errors_are_explained(server: SinkServer) -> None:
    result = smtp_send("--server", f"127.0.0.1:{server.smtp_port}", "-i", stdin="MAIL FROM:<a@example.test>\nBOGUS\n")
    assert result.returncode == 0, result.stderr
    assert meaning(Code.BAD_SEQUENCE) in result.stdout
    assert meaning(Code.SYNTAX_ERROR) in result.stdout


class Terminal:
    """The client on a pseudo-terminal, as a person at a keyboard runs it."""

    def __init__(self, *args: str) -> None:
        self.master, slave = pty.openpty()
        self.process = subprocess.Popen(
            [sys.executable, str(CLIENT), *args], stdin=slave, stdout=slave, stderr=slave,
            env={**os.environ, "TERM": "dumb"},
        )
        os.close(slave)
        self.output = b""

    def read_until(self, text: str, timeout: float = 10) -> str:
        deadline = time.monotonic() + timeout
        while text.encode() not in self.output:
            ready, _, _ = select.select([self.master], [], [], max(0.0, deadline - time.monotonic()))
            assert ready, f"{text!r} did not appear in {self.output!r}"
            try:
                chunk = os.read(self.master, 4096)
            except OSError:  # EIO: the client has exited
                chunk = b""
            assert chunk, f"{text!r} did not appear before the client exited: {self.output!r}"
            self.output += chunk
        before, _, self.output = self.output.partition(text.encode())
        return before.decode(errors="replace") + text

    def type(self, keys: bytes) -> None:
        os.write(self.master, keys)

    def close(self) -> int:
        code = self.process.wait(timeout=10)
        os.close(self.master)
        return code


def test_interactive_on_a_terminal_with_history_and_ctrl_d(server: SinkServer) -> None:
    terminal = Terminal("-i", "--server", f"127.0.0.1:{server.smtp_port}")
    try:
        assert meaning(Code.READY) in terminal.read_until("smtp> ")
        terminal.type(b"NOOP\r")
        assert meaning(Code.OK) in terminal.read_until("smtp> ")
        terminal.type(b"\x10\r")  # Ctrl-P: the previous line from readline's history
        again = terminal.read_until("smtp> ")
        assert "NOOP" in again and meaning(Code.OK) in again
        terminal.type(b"\x04")  # Ctrl-D at the prompt ends the session
    finally:
        code = terminal.close()
    assert code == 0


def test_bare_checkout_still_explains_from_the_table(server: SinkServer, tmp_path: Path) -> None:
    # python -S: no site-packages, so the installed smtp_sink is out of reach ...
    probe = subprocess.run([sys.executable, "-S", "-c", "import smtp_sink"], cwd=tmp_path, capture_output=True)
    assert probe.returncode != 0
    # ... yet run as clients/smtp_client.py it finds smtp_sink/replies.py next to it.
    result = smtp_send("-i", "--server", f"127.0.0.1:{server.smtp_port}", python=("-S",), cwd=tmp_path,
                       stdin="NOOP\nQUIT\n")
    assert result.returncode == 0, result.stderr
    assert meaning(Code.OK) in result.stdout and meaning(Code.CLOSING) in result.stdout


def test_client_copied_alone_explains_the_code_class(server: SinkServer, tmp_path: Path) -> None:
    alone = tmp_path / "smtp_client.py"
    shutil.copy(CLIENT, alone)
    result = subprocess.run(
        [sys.executable, "-S", str(alone), "-i", "--server", f"127.0.0.1:{server.smtp_port}"],
        input="NOOP\nBOGUS\nQUIT\n", capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert "(250: 2xx: positive completion)" in result.stdout
    assert "(500: 5xx: permanent negative completion)" in result.stdout
    assert explain(Code.OK) not in result.stdout


def test_interactive_starttls_against_aiosmtpd(tmp_path: Path) -> None:
    from aiosmtpd.controller import Controller

    cert, key = self_signed(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)

    class Handler:
        pass

    port = free_port()
    controller = Controller(Handler(), hostname="127.0.0.1", port=port, tls_context=context, require_starttls=True)
    controller.start()
    try:
        result = smtp_send("-i", "--insecure", "--server", f"127.0.0.1:{port}",
                           stdin="EHLO lab\nSTARTTLS\nEHLO lab\nMAIL FROM:<a@example.test>\nQUIT\n")
    finally:
        controller.stop()
    assert result.returncode == 0, result.stderr
    before, _, after = result.stdout.partition("(TLS is on; say EHLO again)")
    assert "250-STARTTLS" in before and "STARTTLS" not in after  # not offered again inside TLS
    assert "S: 250 OK" in after  # MAIL accepted: this server takes it only over TLS
    assert "530" not in result.stdout
