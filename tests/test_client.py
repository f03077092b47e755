"""The bundled client (clients/smtp_client.py, ``smtp-send``) against real servers."""

from __future__ import annotations

import email
import email.policy
import json
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from smtp_sink.clients.smtp_client import SMTPClientError, send_message

from smtp_sink.server import SinkServer

ROOT = Path(__file__).resolve().parent.parent


def smtp_send(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "clients" / "smtp_client.py"), *args],
        capture_output=True, text=True, timeout=60, input=stdin,
    )


def only_message(server: SinkServer) -> email.message.EmailMessage:
    (message_id,) = server.store.ids()
    return email.message_from_bytes(server.store.read(message_id), policy=email.policy.default)


class StubServer:
    """A scripted SMTP server on a raw socket: ``answer(line) -> reply`` decides each reply."""

    def __init__(self, answer: Callable[[str], str]) -> None:
        self.answer = answer
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.port = self.sock.getsockname()[1]
        self.received: list[str] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.sock.accept()
        reader = conn.makefile("rb")
        conn.sendall(b"220 stub ready\r\n")
        in_data = False
        for raw in reader:
            line = raw.decode().rstrip("\r\n")
            self.received.append(line)
            if in_data:
                if line == ".":
                    in_data = False
                    conn.sendall(b"250 stored\r\n")
                continue
            reply = self.answer(line)
            conn.sendall(reply.encode() + b"\r\n")
            if reply.startswith("354"):
                in_data = True
            if line.upper() == "QUIT":
                break
        conn.close()

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def stub() -> Iterator[Callable[[Callable[[str], str]], StubServer]]:
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


def refuse(rcpt_codes: dict[str, str], data: str = "354 go ahead", ehlo: str = "250-stub\r\n250 PIPELINING"):
    def answer(line: str) -> str:
        verb = line.split(" ")[0].upper()
        if verb == "EHLO":
            return ehlo
        if verb == "RCPT":
            for address, reply in rcpt_codes.items():
                if address in line:
                    return reply
            return "250 ok"
        if verb == "DATA":
            return data
        if verb == "QUIT":
            return "221 bye"
        return "250 ok"

    return answer


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
    free = socket.socket()
    free.bind(("127.0.0.1", 0))
    port = free.getsockname()[1]
    free.close()
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
    ],
)
def test_exit_2_bad_usage_is_one_clear_line(args: list[str], message: str) -> None:
    result = smtp_send(*args)
    assert result.returncode == 2
    assert result.stderr.strip() == message


def test_interactive_mode_explains_each_reply(server: SinkServer) -> None:
    script = "EHLO lab\nMAIL FROM:<a@example.test>\nRCPT TO:<b@example.test>\nDATA\nSubject: typed\n\nhi\n.\nQUIT\n"
    result = smtp_send("--server", f"127.0.0.1:{server.smtp_port}", "--interactive", stdin=script)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "(220: <domain> Service ready)" in out
    assert "(354: Start mail input; end with <CRLF>.<CRLF>)" in out
    assert "(221: <domain> Service closing transmission channel)" in out
    assert out.count("(250: Requested mail action okay, completed)") == 4
    assert only_message(server)["Subject"] == "typed"


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

    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
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


def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    """A throw-away certificate for 127.0.0.1 (cryptography)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
def test_starttls_then_auth_against_aiosmtpd(tmp_path: Path, mechanism: str) -> None:
    import ssl

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

    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
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
    assert untrusted.returncode == 4 and "TLS handshake failed" in untrusted.stderr
