"""``smtp-sink serve`` as a real child process: start-up errors, signals, logs, flags, loops.

Servers run with ``--port 0``; the port is read from the "listening on host:port" log line
(see tests/server_process.py).
"""

from __future__ import annotations

import base64
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support.mail import send as send_mail
from support.processes import Processes, clean_env, run_cli
from support.wire import connect, free_port

import smtp_sink
from smtp_sink.replies import Code


def busy_port() -> socket.socket:
    """A listening socket on a free loopback port."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    return sock


def send(port: int, recipients: list[str], body: bytes = b"Subject: cli\r\n\r\nx\r\n") -> None:
    assert send_mail(port, body, recipients, sender="ann@example.test") == {}


# -- start-up errors -------------------------------------------------------------------------


def clash_line(result: subprocess.CompletedProcess, port: int, listener: str) -> str:
    """The one error line of a port clash: exit 1, no traceback, nothing said to be listening."""
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr and "listening on" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if not re.match(r"\d{4}-\d\d-\d\d ", line)]  # not a log line
    assert len(errors) == 1, result.stderr
    assert errors[0].startswith(f"smtp-sink: cannot listen on 127.0.0.1:{port} ({listener}): "), errors[0]
    assert "address already in use" in errors[0].lower(), errors[0]
    assert result.stdout == ""
    return errors[0]


def test_smtp_port_in_use_names_the_listener_and_the_flag(tmp_path: Path) -> None:
    with busy_port() as busy:
        port = busy.getsockname()[1]
        result = run_cli("serve", "--port", str(port), "--no-http", "--store", str(tmp_path / "mail"))
    assert clash_line(result, port, "SMTP").endswith("--port")


def test_implicit_tls_port_in_use_names_the_listener_and_the_flag(tmp_path: Path) -> None:
    with busy_port() as busy:
        port = busy.getsockname()[1]
        result = run_cli("serve", "--port", "0", "--no-http", "--auth", "accept-any", "--tls-port", str(port),
                         "--store", str(tmp_path / "mail"))
    assert "--tls-port" in clash_line(result, port, "implicit TLS")


def test_http_port_in_use_names_the_listener_and_the_flag(tmp_path: Path) -> None:
    with busy_port() as busy:
        port = busy.getsockname()[1]
        result = run_cli("serve", "--port", "0", "--http-port", str(port), "--store", str(tmp_path / "mail"))
        from_env = run_cli("serve", "--port", "0", "--store", str(tmp_path / "mail"),
                           env={"SMTP_SINK_HTTP_PORT": str(port)})
    for outcome in (result, from_env):
        assert "--http-port" in clash_line(outcome, port, "HTTP")


def test_address_not_on_this_machine_is_one_line_and_exit_1(tmp_path: Path) -> None:
    result = run_cli("serve", "--host", "192.0.2.1", "--port", "0", "--no-http", "--store", str(tmp_path / "mail"))
    assert result.returncode == 1
    (line,) = result.stderr.splitlines()
    assert line.startswith("smtp-sink: cannot listen on 192.0.2.1:0") and "cannot assign requested address" in line
    assert "not one of this machine's (see --host)" in line and "another port" not in line  # a port will not help


def test_store_that_is_a_file_is_one_line_and_exit_1(tmp_path: Path) -> None:
    not_a_folder = tmp_path / "mail"
    not_a_folder.write_text("")
    result = run_cli("serve", "--port", "0", "--no-http", "--store", str(not_a_folder))
    assert result.returncode == 1
    assert result.stderr.splitlines() == [f"smtp-sink: cannot use store folder {not_a_folder}: Not a directory"]


def test_bad_flag_value_is_a_usage_error_exit_2(tmp_path: Path) -> None:
    result = run_cli("serve", "--loop", "trio", "--store", str(tmp_path))
    assert result.returncode == 2
    assert "invalid choice: 'trio'" in result.stderr
    assert "Traceback" not in result.stderr


# -- signals ---------------------------------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_sends_421_to_open_sessions_and_exits_0(
    start_process: Processes, tmp_path: Path, sig: signal.Signals
) -> None:
    server = start_process()
    greeted, in_data = connect(server.port), connect(server.port)
    assert greeted.cmd("EHLO c.test")[0] == Code.OK
    for command in ("EHLO c.test", "MAIL FROM:<a@example.test>", "RCPT TO:<b@example.test>"):
        assert in_data.cmd(command)[0] == Code.OK
    assert in_data.cmd("DATA")[0] == Code.START_MAIL_INPUT
    in_data.send(b"Subject: half\r\n\r\nhalf a mess")
    server.proc.send_signal(sig)
    for wire in (greeted, in_data):
        code, lines = wire.reply()
        assert code == Code.SERVICE_UNAVAILABLE
        assert lines == ["smtp-sink.localhost Service not available, shutting down"]
        assert wire.closed()
        wire.close()
    assert server.proc.wait(15) == 0
    assert server.stop() == 0
    log = server.log()
    assert "INFO shutting down" in log and "INFO smtp-sink stopped" in log
    assert "Traceback" not in log
    assert list((tmp_path / "mail").glob("*.eml")) == []
    assert list((tmp_path / "mail" / "tmp").iterdir()) == []


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_at_once_after_the_listening_line_exits_0(tmp_path: Path, sig: signal.Signals) -> None:
    # with HTTP on (slower start-up), a signal sent the moment "listening on" appears
    proc = subprocess.Popen(
        [sys.executable, "-m", "smtp_sink", "serve", "--port", "0", "--store", str(tmp_path / "mail")],
        stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True, env=clean_env(SMTP_SINK_HTTP_PORT="0"),
    )
    assert proc.stderr is not None
    for line in proc.stderr:
        if "listening on" in line:
            proc.send_signal(sig)
            break
    rest = proc.stderr.read()
    assert proc.wait(15) == 0
    assert "Traceback" not in rest


# -- flags and logs --------------------------------------------------------------------------


def test_store_flag_puts_the_files_there(
    start_process: Processes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)  # the child's working folder: no ./mail may appear there
    store = tmp_path / "elsewhere"
    server = start_process(store=store)
    send(server.port, ["bob@example.test"])
    assert server.stop() == 0
    (eml,) = store.glob("*.eml")
    assert eml.read_bytes().endswith(b"\r\nSubject: cli\r\n\r\nx\r\n")
    assert not (cwd / "mail").exists()


def test_info_log_has_listening_connect_stored_and_disconnect_lines(start_process: Processes, tmp_path: Path) -> None:
    store = tmp_path / "mail"
    server = start_process(store=store)
    send(server.port, ["bob@example.test", "carol@example.test"])
    assert server.stop() == 0
    (eml,) = store.glob("*.eml")
    log = server.log()
    listening = rf"INFO smtp-sink listening on 127\.0\.0\.1:{server.port}, storing in {re.escape(str(store))}\n"
    assert re.search(listening, log)
    assert re.search(r"INFO connect from 127\.0\.0\.1\n", log)
    size = eml.stat().st_size
    assert re.search(
        rf"INFO stored {eml.stem} size={size} from=<ann@example\.test> to=bob@example\.test,carol@example\.test\n", log
    )
    assert re.search(r"INFO disconnect 127\.0\.0\.1\n", log)
    assert " DEBUG " not in log  # commands only with -v


def test_verbose_logs_commands_and_replies_at_debug(start_process: Processes) -> None:
    server = start_process("-v")
    with connect(server.port) as wire:
        assert wire.cmd("EHLO verbose.test")[0] == Code.OK
        assert wire.cmd("MAIL FROM:<ann@example.test>")[0] == Code.OK
        assert wire.cmd("FROBNICATE")[0] == Code.SYNTAX_ERROR
        assert wire.cmd("QUIT")[0] == Code.CLOSING
    assert server.stop() == 0
    log = server.log()
    assert re.search(r"DEBUG C\[127\.0\.0\.1\]: b'EHLO verbose\.test\\r\\n'", log)
    assert re.search(r"DEBUG C\[127\.0\.0\.1\]: b'MAIL FROM:<ann@example\.test>\\r\\n'", log)
    assert re.search(r"DEBUG S\[127\.0\.0\.1\]: b'250 <ann@example\.test>\.\.\. Sender ok\\r\\n'", log)
    assert re.search(r"DEBUG S\[127\.0\.0\.1\]: b'500 Command unrecognized: FROBNICATE\\r\\n'", log)
    assert re.search(r"DEBUG S\[127\.0\.0\.1\]: b'220 ", log)


def test_log_level_flag_and_hostname_flag(start_process: Processes, tmp_path: Path) -> None:
    server = start_process("--log-level", "debug", "--hostname", "mx.cli.test")
    with connect(server.port) as wire:
        assert wire.cmd("NOOP")[0] == Code.OK
    send(server.port, ["bob@example.test"])
    assert server.stop() == 0
    assert "DEBUG C[127.0.0.1]: b'NOOP\\r\\n'" in server.log()
    assert b"\tby mx.cli.test (smtp-sink" in next((tmp_path / "mail").glob("*.eml")).read_bytes()


def test_environment_settings_reach_the_server(start_process: Processes, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMTP_SINK_SMTP_MAX_RECIPIENTS", "1")  # the child inherits our environment
    server = start_process()
    with connect(server.port) as wire:
        assert wire.cmd("EHLO c.test")[0] == Code.OK
        assert wire.cmd("MAIL FROM:<a@example.test>")[0] == Code.OK
        assert wire.cmd("RCPT TO:<b@example.test>")[0] == Code.OK
        assert wire.cmd("RCPT TO:<c@example.test>")[0] == Code.INSUFFICIENT_STORAGE
    assert server.stop() == 0


def test_version() -> None:
    result = run_cli("--version")
    assert result.returncode == 0
    assert result.stdout == f"smtp-sink {smtp_sink.__version__}\n"


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_both_event_loops_serve(start_process: Processes, tmp_path: Path, loop: str) -> None:
    server = start_process("--loop", loop)
    send(server.port, ["bob@example.test"])
    with connect(server.port) as wire:  # pipelining on this loop's transport
        wire.send("EHLO p.test\r\nMAIL FROM:<a@example.test>\r\nRCPT TO:<b@example.test>\r\nDATA\r\n")
        assert [wire.code() for _ in range(4)] == [Code.OK, Code.OK, Code.OK, Code.START_MAIL_INPUT]
        wire.send("Subject: p\r\n\r\nx\r\n.\r\nQUIT\r\n")
        assert [wire.code() for _ in range(2)] == [Code.OK, Code.CLOSING]
    assert server.stop() == 0
    assert f"INFO event loop: {loop}\n" in server.log()
    assert len(list((tmp_path / "mail").glob("*.eml"))) == 2


# -- start-up: no listener before everything a session needs is ready --------------------------------


def ehlo_at_once(port: int) -> bytes | None:
    """Connect, read the greeting, send EHLO: its reply (None: nobody listens yet)."""
    try:
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    except ConnectionRefusedError:
        return None
    with sock, sock.makefile("rb") as replies:
        assert replies.readline().startswith(b"220 ")
        sock.sendall(b"EHLO early.test\r\n")
        lines = [replies.readline()]
        while lines[-1][3:4] == b"-":
            lines.append(replies.readline())
        assert lines[0].startswith(b"250")
        return b"".join(lines)


def test_a_client_connecting_the_moment_the_port_opens_is_offered_starttls(tmp_path: Path) -> None:
    port, tls_port = free_port(), free_port()
    log = tmp_path / "serve.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "smtp_sink", "serve", "--port", str(port), "--tls-port", str(tls_port),
             "--auth", "accept-any", "--store", str(tmp_path / "mail")],
            stderr=out, stdin=subprocess.DEVNULL, env=clean_env(SMTP_SINK_HTTP_PORT="0"),
        )
        try:
            answers: list[bytes] = []
            deadline = time.monotonic() + 30
            while len(answers) < 20 and time.monotonic() < deadline and proc.poll() is None:
                answer = ehlo_at_once(port)  # in a tight loop from the moment it starts
                if answer is not None:
                    answers.append(answer)
        finally:
            proc.terminate()
            assert proc.wait(15) == 0
    assert len(answers) == 20
    assert all(b"STARTTLS" in answer and b"AUTH" in answer for answer in answers), answers[0]
    lines = log.read_text().splitlines()
    ready = [i for i, line in enumerate(lines) if "smtp-sink ready" in line]
    assert len(ready) == 1, lines  # one "ready" line, after every listener said where it is
    for what in ("smtp-sink listening on", "implicit TLS on", "web page and API on"):
        (where,) = [i for i, line in enumerate(lines) if what in line]
        assert where < ready[0], lines


# -- credentials never reach the log -------------------------------------------------------------------


def test_verbose_log_masks_auth_credentials(start_process: Processes) -> None:
    server = start_process("-v", "--auth", "accept-any")
    plain = base64.b64encode(b"\0ann@example.test\0plain-Secret-1").decode()
    user = base64.b64encode(b"bob@example.test").decode()
    password = base64.b64encode(b"login-Secret-2").decode()
    with connect(server.port) as wire:
        assert wire.cmd("EHLO a.test")[0] == Code.OK
        assert wire.cmd(f"AUTH PLAIN {plain}")[0] == Code.AUTH_SUCCEEDED
    with connect(server.port) as wire:
        assert wire.cmd("EHLO b.test")[0] == Code.OK
        assert wire.cmd("AUTH LOGIN")[0] == Code.AUTH_CHALLENGE
        assert wire.cmd(user)[0] == Code.AUTH_CHALLENGE
        assert wire.cmd(password)[0] == Code.AUTH_SUCCEEDED
    with connect(server.port) as wire:  # pipelined in one segment, and the initial-response form
        wire.send(f"EHLO c.test\r\nAUTH LOGIN {user}\r\n{password}\r\nNOOP\r\n")
        assert [wire.code() for _ in range(3)] == [Code.OK, Code.AUTH_CHALLENGE, Code.AUTH_SUCCEEDED]
        assert wire.code() == Code.OK
    assert server.stop() == 0
    log = server.log()
    for secret in (plain, user, password, "Secret-1", "Secret-2"):
        assert secret not in log
    assert "AUTH PLAIN (initial response hidden)" in log and "(AUTH response hidden)" in log
    assert "EHLO c.test" in log and "NOOP" in log  # the rest is still logged
