"""The bundled client (clients/smtp_client.py, ``smtp-send``): sending modes and exit codes over real sockets."""

from __future__ import annotations

import email
import email.policy
import json
import socket
import ssl
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from smtp_sink.clients.smtp_client import Session, SMTPClientError, send_message
from support import ROOT
from support.client import StubServer, only_message, refuse, self_signed, smtp_send
from support.processes import Processes
from support.wire import free_port

from smtp_sink.replies import Code
from smtp_sink.server import SinkServer


@pytest.fixture
def stub() -> Iterator[Callable[[Callable[[str], str]], StubServer]]:
    """Start scripted stub servers: ``stub(refuse({...}))``."""
    servers: list[StubServer] = []

    def start(answer: Callable[[str], str]) -> StubServer:
        servers.append(StubServer(answer))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def test_text_message_with_leading_dots(server: SinkServer) -> None:
    result = smtp_send("--server", f"127.0.0.1:{server.smtp_port}", "--from", "ann@example.test",
                       "--to", "bob@example.test", "--subject", "hello", "--body", ".one\n..two\n.\nend\n")
    assert result.returncode == 0, result.stderr
    message = only_message(server)
    assert message["Subject"] == "hello"
    assert message["Message-ID"] and message["Date"]
    assert message.get_content() == ".one\r\n..two\r\n.\r\nend\r\n"


def test_html_text_and_attachments(server: SinkServer, tmp_path: Path) -> None:
    html = tmp_path / "body.html"
    html.write_text("<p>Hello <b>world</b></p>")
    attachment = tmp_path / "data.bin"
    attachment.write_bytes(bytes(range(256)) * 40)
    result = smtp_send("--server", f"127.0.0.1:{server.smtp_port}", "--to", "bob@example.test",
                       "--body", "plain text", "--html", str(html), "--attach", str(attachment),
                       "--header", "X-Campaign: spring")
    assert result.returncode == 0, result.stderr
    message = only_message(server)
    assert message["X-Campaign"] == "spring"
    assert message.get_body(("plain",)).get_content().strip() == "plain text"
    assert "<b>world</b>" in message.get_body(("html",)).get_content()
    (part,) = list(message.iter_attachments())
    assert part.get_filename() == "data.bin"
    assert part.get_content() == attachment.read_bytes()


def test_cc_and_bcc(server: SinkServer) -> None:
    result = smtp_send("--server", f"127.0.0.1:{server.smtp_port}", "--to", "to@example.test",
                       "--cc", "cc@example.test", "--bcc", "hidden@example.test")
    assert result.returncode == 0, result.stderr
    message = only_message(server)
    assert message["Cc"] == "cc@example.test"
    assert message["Bcc"] is None
    raw = server.store.read(server.store.ids()[0])
    assert raw.count(b"hidden@example.test") == 1  # only in the server's X-Original-To trace header
    assert message.get_all("X-Original-To") == ["to@example.test", "cc@example.test", "hidden@example.test"]


def test_eml_file_with_lf_endings_and_envelope_from_headers(server: SinkServer, tmp_path: Path) -> None:
    eml = tmp_path / "saved.eml"
    eml.write_bytes(b"From: Ann <ann@example.test>\nTo: bob@example.test\nBcc: secret@example.test\n"
                    b"Subject: from file\n\n.dot first\nbody\n")
    result = smtp_send("--server", f"127.0.0.1:{server.smtp_port}", "--eml", str(eml))
    assert result.returncode == 0, result.stderr
    raw = server.store.read(server.store.ids()[0])
    assert raw.endswith(b"To: bob@example.test\r\nSubject: from file\r\n\r\n.dot first\r\nbody\r\n")
    assert b"Bcc:" not in raw
    assert b"Return-Path: <ann@example.test>" in raw
    assert b"X-Original-To: secret@example.test" in raw


def test_verbose_transcript(server: SinkServer) -> None:
    result = smtp_send("-v", "--server", f"127.0.0.1:{server.smtp_port}", "--to", "you@example.test",
                       "--subject", "hi", "--body", "hello")
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    assert lines[0].startswith("S: 220 ")
    assert any(line.startswith("C: EHLO ") for line in lines)
    assert "S: 250-PIPELINING" in lines
    assert "C: MAIL FROM:<smtp-send@localhost> SIZE=" in " ".join(lines)
    assert "C: RCPT TO:<you@example.test>" in lines
    assert "C: Subject: hi" in lines and "C: hello" in lines and "C: ." in lines
    assert any(line.startswith("S: 250 OK: queued as ") for line in lines)
    assert lines[-2:] == ["C: QUIT", "S: 221 smtp-sink.localhost Service closing transmission channel"]


def test_installed_console_script(server: SinkServer) -> None:
    result = subprocess.run(
        ["smtp-send", "-v", "--server", f"127.0.0.1:{server.smtp_port}", "--to", "you@example.test",
         "--subject", "hi", "--body", "hello"],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "C: hello" in result.stdout
    assert only_message(server)["Subject"] == "hi"


def test_json_record(server: SinkServer) -> None:
    result = smtp_send("--json", "--server", f"127.0.0.1:{server.smtp_port}", "--to", "a@example.test",
                       "--to", "b@example.test")
    assert result.returncode == 0
    record = json.loads(result.stdout)
    assert set(record) == {"server", "from", "accepted", "refused", "final", "exit_code", "transcript"}
    assert record["accepted"] == ["a@example.test", "b@example.test"]
    assert record["refused"] == {} and record["exit_code"] == 0
    assert record["final"]["code"] == 250 and server.store.ids()[0] in record["final"]["text"]
    commands = [step["command"] for step in record["transcript"]]
    assert commands[0] is None and commands[-1] == "QUIT" and "<message>" in commands
    for step in record["transcript"]:
        assert set(step) == {"command", "code", "text", "seconds"}
        assert isinstance(step["code"], int) and step["seconds"] >= 0


def test_exit_1_some_recipients_refused_message_still_sent(stub) -> None:
    server = stub(refuse({"green@": "550 No such user here"}))
    result = smtp_send("--server", f"127.0.0.1:{server.port}", "--to", "jones@beta.test",
                       "--to", "green@beta.test", "--to", "brown@beta.test")
    assert result.returncode == 1
    assert "recipient green@beta.test refused: 550 No such user here" in result.stderr
    assert "." in server.received  # the message was sent to the others


def test_exit_3_transient_refusal(stub) -> None:
    server = stub(refuse({"": "451 try again later"}))
    result = smtp_send("--server", f"127.0.0.1:{server.port}", "--to", "a@beta.test")
    assert result.returncode == 3
    assert "451 try again later" in result.stderr


def test_exit_5_message_refused(stub) -> None:
    server = stub(refuse({}, data="554 no thanks"))
    result = smtp_send("--server", f"127.0.0.1:{server.port}", "--to", "a@beta.test")
    assert result.returncode == 5
    assert "message refused: 554 no thanks" in result.stderr


def test_exit_4_connection_failure() -> None:
    port = free_port()
    result = smtp_send("--server", f"127.0.0.1:{port}", "--to", "a@b.test")
    assert result.returncode == 4
    assert result.stderr.strip() == f"smtp-send: cannot connect to 127.0.0.1:{port}: Connection refused"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--to", "not-an-address"], "smtp-send: malformed address 'not-an-address' in --to"),
        (["--to", "a@b.test", "--attach", "/nonexistent/file.pdf"],
         "smtp-send: cannot read --attach file '/nonexistent/file.pdf': No such file or directory"),
        (["--to", "a@b.test", "--header", "no colon"], "smtp-send: bad --header 'no colon': expected 'Name: value'"),
        (["--server", "host:notaport", "--to", "a@b.test"],
         "smtp-send: bad --server 'host:notaport': expected HOST[:PORT]"),
        ([], "smtp-send: no recipients: give --to (or --cc/--bcc)"),
        (["--to", "a@b.test", "--body-file", "/"], "smtp-send: cannot read --body-file file '/': Is a directory"),
        (["--eml", "/no.eml"], "smtp-send: cannot read --eml file '/no.eml': No such file or directory"),
        (["--to", "a@b.test", "--from", "me at home"], "smtp-send: malformed address 'me at home' in --from"),
        (["--to", "a@b.test", "--subject", "hi\nBcc: x@y.test"],
         "smtp-send: --subject 'hi\\nBcc: x@y.test': a header cannot hold a line break"),
        (["--to", "a@\udcffb.test"], "smtp-send: --to: not valid UTF-8 text"),  # the raw byte 0xff on the command line
        (["--to", "a@b.test", "--timeout", "-1"],
         "smtp-send: error: argument --timeout: expected a positive number of seconds, got '-1'"),
    ],
)
def test_exit_2_bad_usage_is_one_clear_line(args: list[str], message: str) -> None:
    result = smtp_send(*args)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == message  # argparse prints its usage lines first
    assert "Traceback" not in result.stderr


def test_helo_fallback_when_ehlo_is_refused(stub) -> None:
    server = stub(refuse({}, ehlo="500 what is EHLO"))
    result = smtp_send("-v", "--server", f"127.0.0.1:{server.port}", "--to", "a@b.test")
    assert result.returncode == 0, result.stderr
    assert server.received[0].startswith("EHLO ") and server.received[1].startswith("HELO ")
    mail = next(line for line in server.received if line.startswith("MAIL"))
    assert mail == "MAIL FROM:<smtp-send@localhost>"  # no SIZE: nothing was advertised


def test_library_api(server: SinkServer) -> None:
    result = send_message(b"Subject: lib\r\n\r\nfrom python\r\n", "a@example.test", ["b@example.test"],
                          host="127.0.0.1", port=server.smtp_port)
    assert result.exit_code == 0 and result.accepted == ["b@example.test"]
    assert only_message(server)["Subject"] == "lib"
    with pytest.raises(SMTPClientError) as failure:
        send_message(b"x", "a@example.test", ["b@example.test"], host="127.0.0.1", port=1)
    assert failure.value.exit_code == 4


def test_against_aiosmtpd(tmp_path: Path) -> None:
    from aiosmtpd.controller import Controller

    received = []

    class Handler:
        async def handle_DATA(self, server, session, envelope):
            received.append((envelope.mail_from, envelope.rcpt_tos, envelope.content))
            return "250 OK stored by aiosmtpd"

    port = free_port()
    controller = Controller(Handler(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        result = smtp_send("--server", f"127.0.0.1:{port}", "--from", "a@example.test", "--to", "b@example.test",
                           "--bcc", "c@example.test", "--body", ".dot\nline")
    finally:
        controller.stop()
    assert result.returncode == 0, result.stderr
    ((mail_from, rcpt_tos, content),) = received
    assert mail_from == "a@example.test" and rcpt_tos == ["b@example.test", "c@example.test"]
    assert content.endswith(b"\r\n\r\n.dot\r\nline\r\n")


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
def test_starttls_then_auth_against_aiosmtpd(tmp_path: Path, mechanism: str) -> None:
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult

    cert, key = self_signed(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    logins, received = [], []

    def authenticator(server, session, envelope, used, data):
        logins.append((used, data.login, data.password, session.ssl is not None))
        return AuthResult(success=data.login == b"ann" and data.password == b"s3cret", handled=False)

    class Handler:
        async def handle_DATA(self, server, session, envelope):
            received.append(envelope.content)
            return "250 OK"

    port = free_port()
    controller = Controller(Handler(), hostname="127.0.0.1", port=port, tls_context=context,
                            require_starttls=True, authenticator=authenticator, auth_require_tls=True,
                            auth_exclude_mechanism=["PLAIN"] if mechanism == "LOGIN" else [])
    controller.start()
    try:
        ok = smtp_send("-v", "--server", f"127.0.0.1:{port}", "--starttls", "--insecure", "--user", "ann",
                       "--password", "s3cret", "--to", "b@example.test", "--body", "secret mail")
        bad = smtp_send("--server", f"127.0.0.1:{port}", "--starttls", "--insecure", "--user", "ann",
                        "--password", "wrong", "--to", "b@example.test")
        untrusted = smtp_send("--server", f"127.0.0.1:{port}", "--starttls", "--to", "b@example.test")
    finally:
        controller.stop()
    assert ok.returncode == 0, ok.stderr
    assert logins[0] == (mechanism, b"ann", b"s3cret", True)  # over TLS
    assert "s3cret" not in ok.stdout and "****" in ok.stdout  # credentials masked in the transcript
    assert len(received) == 1 and received[0].endswith(b"secret mail\r\n")
    assert bad.returncode == 5 and "authentication failed: 535" in bad.stderr
    assert untrusted.returncode == 4
    assert untrusted.stderr.startswith(f"smtp-send: TLS handshake with 127.0.0.1:{port} failed: the server's "
                                       "certificate is not trusted (")


def test_body_file_any_line_endings(server: SinkServer, tmp_path: Path) -> None:
    body = tmp_path / "body.txt"
    body.write_bytes(b"crlf\r\n.lf\nlone cr\r..two dots\n.\nend")
    result = smtp_send("--server", f"127.0.0.1:{server.smtp_port}", "--to", "b@example.test", "--body-file", str(body))
    assert result.returncode == 0, result.stderr
    assert only_message(server).get_content() == "crlf\r\n.lf\r\nlone cr\r\n..two dots\r\n.\r\nend\r\n"
    raw = server.store.read(server.store.ids()[0])
    assert raw.count(b"\n") == raw.count(b"\r\n") and raw.count(b"\r") == raw.count(b"\r\n")


def test_eml_with_bad_header_addresses_is_one_line(tmp_path: Path) -> None:
    eml = tmp_path / "bad.eml"
    eml.write_bytes(b"From: a@example.test\nTo: bob\n\nhi\n")
    result = smtp_send("--server", f"127.0.0.1:{free_port()}", "--eml", str(eml))
    assert result.returncode == 2
    assert result.stderr == "smtp-send: malformed address 'bob' in the --eml file's To/Cc/Bcc headers\n"


def test_eml_envelope_from_flags_and_lone_dot_line(server: SinkServer, tmp_path: Path) -> None:
    eml = tmp_path / "saved.eml"
    eml.write_bytes(b"From: header@example.test\rTo: header-to@example.test\rSubject: cr\r\r.\r..\rlast\r")
    result = smtp_send("--server", f"127.0.0.1:{server.smtp_port}", "--eml", str(eml),
                       "--from", "flag@example.test", "--to", "flag-to@example.test")
    assert result.returncode == 0, result.stderr
    raw = server.store.read(server.store.ids()[0])
    assert b"Return-Path: <flag@example.test>\r\n" in raw
    assert only_message(server).get_all("X-Original-To") == ["flag-to@example.test"]
    assert raw.endswith(b"To: header-to@example.test\r\nSubject: cr\r\n\r\n.\r\n..\r\nlast\r\n")


@pytest.mark.parametrize("advertised", [True, False])
def test_8bit_body_only_when_8bitmime_is_advertised(stub, advertised: bool) -> None:
    server = stub(refuse({}, ehlo="250-stub\r\n250 8BITMIME" if advertised else "250 stub"))
    result = smtp_send("--server", f"127.0.0.1:{server.port}", "--to", "a@b.test", "--body", "Grüße aus Köln")
    assert result.returncode == 0, result.stderr
    mail = next(line for line in server.received if line.startswith("MAIL"))
    message = email.message_from_bytes(server.data, policy=email.policy.default)
    assert message.get_content().splitlines() == ["Grüße aus Köln"]
    if advertised:
        assert mail == "MAIL FROM:<smtp-send@localhost> BODY=8BITMIME"
        assert "Grüße".encode() in server.data
    else:
        assert mail == "MAIL FROM:<smtp-send@localhost>"  # no SIZE or BODY: not advertised
        assert server.data.isascii()


def test_smtputf8_addresses(server: SinkServer, stub) -> None:
    sent = smtp_send("-v", "--server", f"127.0.0.1:{server.smtp_port}", "--to", "jörg@exämple.test")
    assert sent.returncode == 0, sent.stderr
    assert "SMTPUTF8" in next(line for line in sent.stdout.splitlines() if line.startswith("C: MAIL FROM:"))
    assert only_message(server).get_all("X-Original-To") == ["jörg@exämple.test"]
    plain = stub(refuse({}))
    refused = smtp_send("--server", f"127.0.0.1:{plain.port}", "--to", "jörg@exämple.test")
    assert refused.returncode == 5
    assert refused.stderr.strip() == "smtp-send: non-ASCII addresses need SMTPUTF8, which the server does not offer"


@pytest.mark.parametrize(
    ("mail", "exit_code", "rset"), [("553 sender not allowed", 5, True), ("421 shutting down", 3, False)]
)
def test_sender_refused(stub, mail: str, exit_code: int, rset: bool) -> None:
    server = stub(refuse({}, mail=mail))
    result = smtp_send("--server", f"127.0.0.1:{server.port}", "--to", "a@b.test")
    assert result.returncode == exit_code
    assert result.stderr.strip() == f"smtp-send: message refused: {mail}"
    assert ("RSET" in server.received) is rset  # after 421 the server has gone: nothing more is sent
    assert "DATA" not in server.received


def test_exit_4_server_never_answers() -> None:
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen()  # the kernel completes the connection; nobody ever speaks
    port = silent.getsockname()[1]
    try:
        result = smtp_send("--timeout", "0.5", "--server", f"127.0.0.1:{port}", "--to", "a@b.test")
    finally:
        silent.close()
    assert result.returncode == 4
    assert result.stderr.strip() == f"smtp-send: no reply from 127.0.0.1:{port} within 0.5 s"


def test_help_from_checkout_and_installed() -> None:
    for command in ([sys.executable, str(ROOT / "clients" / "smtp_client.py"), "--help"], ["smtp-send", "--help"]):
        result = subprocess.run(command, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0
        assert "--interactive" in result.stdout and "130 interrupted" in result.stdout


def test_session_api(server: SinkServer) -> None:
    lines: list[str] = []
    session = Session("127.0.0.1", server.smtp_port, echo=lines.append)
    session.hello("lab")
    assert {"PIPELINING", "SIZE", "8BITMIME", "SMTPUTF8"} <= set(session.extensions)
    assert session.command("NOOP").code == Code.OK
    replies = session.pipeline(["MAIL FROM:<a@example.test>", "RCPT TO:<b@example.test>", "RCPT TO:<bad>"])
    assert [r.code for r in replies] == [Code.OK, Code.OK, Code.PARAMETER_SYNTAX]
    assert session.command("DATA").code == Code.START_MAIL_INPUT
    assert session.data(b"Subject: s\n\n.x\n").code == Code.OK
    session.quit()
    assert lines[0].startswith("S: 220 ") and "C: ..x" in lines and lines[-1].startswith("S: 221 ")
    assert [x.command for x in session.transcript][-3:] == ["DATA", "<message>", "QUIT"]
    assert only_message(server).get_content() == ".x\r\n"


def test_implicit_tls_against_aiosmtpd(tmp_path: Path) -> None:
    from aiosmtpd.controller import Controller

    cert, key = self_signed(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    received = []

    class Handler:
        async def handle_DATA(self, server, session, envelope):
            received.append(envelope.content)
            return "250 OK"

    port = free_port()
    controller = Controller(Handler(), hostname="127.0.0.1", port=port, ssl_context=context)
    controller.start()
    try:
        result = smtp_send("--server", f"127.0.0.1:{port}", "--tls", "--insecure", "--to", "b@example.test",
                           "--body", "over tls")
        plain = smtp_send("--timeout", "0.5", "--server", f"127.0.0.1:{port}", "--to", "b@example.test")
    finally:
        controller.stop()
    assert result.returncode == 0, result.stderr
    assert len(received) == 1 and received[0].endswith(b"over tls\r\n")
    assert plain.returncode == 4  # the server speaks only TLS: no plain-text greeting ever comes


# -- against a real `smtp-sink serve`: failures that say what to do -----------------------------


def test_untrusted_smtp_sink_certificate_suggests_cafile_or_insecure(tmp_path: Path, start_process: Processes) -> None:
    server = start_process("--tls-port", "0", "--auth", "accept-any")
    tls_port = server.tls_port
    try:
        failures = [smtp_send("--server", f"localhost:{server.port}", "--starttls", "--to", "b@example.test"),
                    smtp_send("--server", f"localhost:{tls_port}", "--tls", "--to", "b@example.test")]
        ca = tmp_path / "mail" / "tls" / "ca.pem"
        hints_followed = [
            smtp_send("--server", f"localhost:{server.port}", "--starttls", "--cafile", str(ca),
                      "--to", "b@example.test"),
            smtp_send("--server", f"localhost:{tls_port}", "--tls", "--insecure", "--to", "b@example.test"),
        ]
    finally:
        assert server.stop() == 0
    for failed, port in zip(failures, (server.port, tls_port), strict=True):
        assert failed.returncode == 4
        (line,) = failed.stderr.splitlines()
        assert line.startswith(f"smtp-send: TLS handshake with localhost:{port} failed: the server's certificate is "
                               "not trusted ("), line
        assert line.endswith("for smtp-sink's own certificate pass --cafile <store>/tls/ca.pem "
                             "(e.g. --cafile mail/tls/ca.pem), or --insecure to skip the check"), line
    assert [result.returncode for result in hints_followed] == [0, 0], [r.stderr for r in hints_followed]
    assert len(list((tmp_path / "mail").glob("*.eml"))) == 2


def test_user_against_a_server_without_auth_is_a_refusal_that_says_how_to_turn_auth_on(
        tmp_path: Path, start_process: Processes) -> None:
    plain = start_process("--tls-port", "0", store=tmp_path / "plain")
    tls_first = start_process("--tls-port", "0", "--auth", "accept-any", "--require-tls", store=tmp_path / "tls-first")
    try:
        no_auth = smtp_send("-v", "--server", f"127.0.0.1:{plain.port}", "--user", "ann", "--password", "s3cret",
                            "--to", "b@example.test")
        before_tls = smtp_send("--server", f"127.0.0.1:{tls_first.port}", "--user", "ann", "--password", "s3cret",
                               "--to", "b@example.test")
    finally:
        assert plain.stop() == 0 and tls_first.stop() == 0
    assert no_auth.returncode == before_tls.returncode == 5  # a refusal, not bad usage (2)
    assert no_auth.stderr == ("smtp-send: the server offers no AUTH, so --user cannot log in; for smtp-sink start it "
                              "with `smtp-sink serve --auth accept-any` (any user and password)\n")
    assert "C: AUTH" not in no_auth.stdout and "s3cret" not in no_auth.stdout  # the password never went out
    assert before_tls.stderr == ("smtp-send: the server offers no AUTH before TLS: add --starttls "
                                 "(and --cafile or --insecure)\n")
    assert not list(tmp_path.glob("*/*.eml"))
