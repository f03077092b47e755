"""End to end over real sockets: every command, every 503 sequence, what lands on disk."""

from __future__ import annotations

import email
import email.policy
import os
import smtplib
import socket
import threading
import time
from email.message import EmailMessage

import pytest
from smtp_wire import Wire, connect

import smtp_sink
from smtp_sink.ids import is_id
from smtp_sink.server import ServerThread, SinkServer


def body_of(server: SinkServer, message_id: str) -> bytes:
    """Stored bytes after the trace headers."""
    raw = server.store.read(message_id)
    marker = raw.rfind(b"X-Original-To: ")
    return raw[raw.index(b"\r\n", marker) + 2 :]


def queued_id(text: str) -> str:
    message_id = text.rsplit(" ", 1)[-1]
    assert is_id(message_id), text
    return message_id


COMMANDS = [
    # (command, code) in one session, in order
    ("HELP", 214),
    ("HELP MAIL", 214),
    ("HELP STATUS", 211),
    ("HELP FROBNICATE", 504),
    ("NOOP", 250),
    ("VRFY someone@example.test", 252),
    ("EXPN staff", 550),
    ("SEND FROM:<a@example.test>", 502),
    ("SOML FROM:<a@example.test>", 502),
    ("SAML FROM:<a@example.test>", 502),
    ("TURN", 502),
    ("FROBNICATE", 500),
    ("HELO", 501),
    ("EHLO client.example.test", 250),
    ("HELO client.example.test", 250),
    ("MAIL FROM:<not an address>", 501),
    ("MAIL FROM <a@example.test>", 501),
    ("MAIL FROM:<a@example.test> FOO=1", 555),
    ("EHLO client.example.test", 250),
    ("MAIL FROM:<a@example.test> SIZE=100 BODY=8BITMIME SMTPUTF8", 250),
    ("RCPT TO:<b@example.test> NOTIFY=NEVER", 555),
    ("RCPT TO:<b@example.test>", 250),
    ("RSET", 250),
    ("mail from:<a@example.test>", 250),
    ("rcpt to:<b@example.test>", 250),
    ("data", 354),
]


def test_every_command_and_its_reply_code(server: SinkServer) -> None:
    with connect(server.smtp_port) as wire:
        for command, code in COMMANDS:
            assert wire.cmd(command)[0] == code, command
        wire.send(b"Subject: t\r\n\r\nbody\r\n.\r\n")
        code, lines = wire.reply()
        assert code == 250
        assert server.store.ids() == [queued_id(lines[0])]
        assert wire.cmd("QUIT")[0] == 221
        assert wire.closed()


def test_ehlo_advertises_the_extensions(server: SinkServer) -> None:
    with connect(server.smtp_port) as wire:
        code, lines = wire.cmd("EHLO c.test")
    assert code == 250
    assert set(lines[1:]) == {"SIZE 33554432", "8BITMIME", "PIPELINING", "SMTPUTF8", "HELP"}


@pytest.mark.parametrize(
    "sequence",
    [
        ["MAIL FROM:<a@example.test>"],  # before HELO/EHLO
        ["EHLO c.test", "RCPT TO:<b@example.test>"],  # RCPT before MAIL
        ["EHLO c.test", "DATA"],  # DATA before MAIL
        ["EHLO c.test", "MAIL FROM:<a@example.test>", "DATA"],  # DATA before RCPT
        ["EHLO c.test", "MAIL FROM:<a@example.test>", "MAIL FROM:<a@example.test>"],  # nested MAIL
        ["EHLO c.test", "MAIL FROM:<a@example.test>", "RCPT TO:<b@example.test>", "MAIL FROM:<c@example.test>"],
        ["EHLO c.test", "MAIL FROM:<a@example.test>", "RSET", "RCPT TO:<b@example.test>"],  # RSET ends it
    ],
)
def test_every_503_sequence(server: SinkServer, sequence: list[str]) -> None:
    with connect(server.smtp_port) as wire:
        for command in sequence[:-1]:
            assert wire.cmd(command)[0] == 250, command
        assert wire.cmd(sequence[-1])[0] == 503


def test_dot_stuffing_round_trip(server: SinkServer) -> None:
    text = ".starts with a dot\n..two dots\n.\n...\nend.\n"
    with smtplib.SMTP("127.0.0.1", server.smtp_port) as smtp:  # smtplib stuffs the dots
        smtp.sendmail("a@example.test", ["b@example.test"], f"Subject: dots\n\n{text}")
    (message_id,) = server.store.ids()
    assert body_of(server, message_id) == b"Subject: dots\r\n\r\n" + text.replace("\n", "\r\n").encode()


def test_one_hundred_recipients(server: SinkServer) -> None:
    recipients = [f"r{i}@example.test" for i in range(100)]
    with smtplib.SMTP("127.0.0.1", server.smtp_port) as smtp:
        assert smtp.sendmail("a@example.test", recipients, b"Subject: many\r\n\r\nx\r\n") == {}
    raw = server.store.read(server.store.ids()[0])
    assert [line.split(b": ")[1] for line in raw.split(b"\r\n") if line.startswith(b"X-Original-To")] == [
        r.encode() for r in recipients
    ]


def test_five_mib_message_is_stored_byte_identical(server: SinkServer) -> None:
    payload = os.urandom(5 << 20)
    # 8-bit content with CRLF lines; undo any accidental terminator or leading dots
    body = b"Subject: big\r\n\r\n" + payload.replace(b"\r", b"").replace(b"\n", b"\r\n").replace(b"\r\n.", b"\r\n_")
    body += b"\r\n"
    with smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=30) as smtp:
        smtp.ehlo()
        smtp.mail("a@example.test", ["BODY=8BITMIME"])
        smtp.rcpt("b@example.test")
        code, text = smtp.data(body)
    assert code == 250
    assert body_of(server, queued_id(text.decode())) == body


def test_pipelined_commands_are_answered_in_order(server: SinkServer) -> None:
    with connect(server.smtp_port) as wire:
        wire.send(
            "EHLO p.test\r\nMAIL FROM:<a@example.test>\r\nRCPT TO:<b@example.test>\r\n"
            "RCPT TO:<bad address>\r\nRCPT TO:<c@example.test>\r\nDATA\r\n"
        )
        assert [wire.code() for _ in range(6)] == [250, 250, 250, 501, 250, 354]
        wire.send("Subject: p\r\n\r\npipelined\r\n.\r\nNOOP\r\nQUIT\r\n")
        assert [wire.code() for _ in range(3)] == [250, 250, 221]
    raw = server.store.read(server.store.ids()[0])
    assert raw.count(b"X-Original-To: ") == 2


@pytest.mark.parametrize("ending", [b"", b"\r\nRSET\r\n", b"\r\nQUIT\r\n"])
def test_no_final_dot_stores_nothing(server: SinkServer, ending: bytes) -> None:
    with connect(server.smtp_port) as wire:
        for command in ("EHLO c.test", "MAIL FROM:<a@example.test>", "RCPT TO:<b@example.test>"):
            wire.cmd(command)
        assert wire.cmd("DATA")[0] == 354
        wire.send(b"Subject: cut\r\n\r\nhalf a message" + ending)
    time.sleep(0.2)
    assert server.store.ids() == []
    assert list(server.store.tmp.iterdir()) == []


def test_smtplib_multipart_with_attachment_parses_back(server: SinkServer) -> None:
    message = EmailMessage()
    message["From"] = "Ann <ann@example.test>"
    message["To"] = "Bob <bob@example.test>"
    message["Subject"] = "Report ✓"
    message.set_content("See attached.\n")
    message.add_alternative("<p>See <b>attached</b>.</p>", subtype="html")
    attachment = os.urandom(20000)
    message.add_attachment(attachment, maintype="application", subtype="pdf", filename="report.pdf")
    with smtplib.SMTP("127.0.0.1", server.smtp_port) as smtp:
        smtp.send_message(message, to_addrs=["bob@example.test", "hidden@example.test"])
    parsed = email.message_from_bytes(server.store.read(server.store.ids()[0]), policy=email.policy.default)
    assert parsed["Subject"] == "Report ✓"
    assert parsed["Return-Path"] == "<ann@example.test>"
    assert parsed.get_all("X-Original-To") == ["bob@example.test", "hidden@example.test"]
    (part,) = list(parsed.iter_attachments())
    assert part.get_filename() == "report.pdf"
    assert part.get_content() == attachment
    assert parsed.get_body(("plain",)).get_content() == "See attached.\r\n"  # the wire CRLF, kept


def test_trace_headers(server: SinkServer) -> None:
    with connect(server.smtp_port) as wire:
        for command in ("HELO old.test", "MAIL FROM:<>", "RCPT TO:<Postmaster>", "DATA"):
            wire.cmd(command)
        wire.send(b"Subject: bounce\r\n\r\nx\r\n.\r\n")
        _, lines = wire.reply()
    message_id = queued_id(lines[0])
    raw = server.store.read(message_id).decode()
    head = raw.split("Subject: bounce")[0]
    lines = head.split("\r\n")
    assert lines[0] == "Return-Path: <>"
    assert lines[1] == "Received: from old.test ([127.0.0.1])"
    version = smtp_sink.__version__
    assert lines[2] == f"\tby smtp-sink.localhost (smtp-sink {version}) with SMTP id {message_id}"
    assert lines[3] == "\tfor <Postmaster>;"
    assert lines[4].startswith("\t") and email.utils.parsedate_to_datetime(lines[4].strip())
    assert lines[5] == "X-Original-To: Postmaster"


def test_ids_sort_by_arrival(server: SinkServer) -> None:
    sent = []
    with smtplib.SMTP("127.0.0.1", server.smtp_port) as smtp:
        for i in range(20):
            smtp.ehlo()
            smtp.mail("a@example.test")
            smtp.rcpt("b@example.test")
            sent.append(queued_id(smtp.data(f"Subject: {i}\r\n\r\nx\r\n".encode())[1].decode()))
    assert sent == sorted(sent) == server.store.ids()


def test_shutdown_sends_421_to_open_sessions(tmp_path) -> None:
    from conftest import make_config

    thread = ServerThread(make_config(tmp_path / "mail"))
    server = thread.start()
    wires = [connect(server.smtp_port) for _ in range(3)]
    wires[0].cmd("EHLO c.test")
    thread.stop()
    for wire in wires:
        code, lines = wire.reply()
        assert code == 421 and "shutting down" in lines[0]
        assert wire.closed()


def test_idle_timeout_sends_421_and_closes(server_factory) -> None:
    server = server_factory(idle_timeout=0.3)
    with connect(server.smtp_port) as wire:
        started = time.monotonic()
        code, lines = wire.reply()
        assert code == 421 and "idle" in lines[0]
        assert wire.closed()
        assert time.monotonic() - started < 3


def test_max_connections_refuses_the_extra_one(server_factory) -> None:
    server = server_factory(max_connections=2)
    first, second = connect(server.smtp_port), connect(server.smtp_port)
    with Wire(server.smtp_port) as extra:
        code, lines = extra.reply()
        assert code == 421 and "too many connections" in lines[0]
        assert extra.closed()
    first.close()
    time.sleep(0.2)
    with connect(server.smtp_port) as again:  # a freed slot is usable again
        assert again.cmd("NOOP")[0] == 250
    second.close()


def test_max_message_size_refuses_and_stores_nothing(server_factory) -> None:
    server = server_factory(max_message_size=10_000)
    with connect(server.smtp_port) as wire:
        wire.cmd("EHLO c.test")
        assert wire.cmd("MAIL FROM:<a@example.test> SIZE=20000")[0] == 552
        assert wire.cmd("MAIL FROM:<a@example.test>")[0] == 250
        assert wire.cmd("RCPT TO:<b@example.test>")[0] == 250
        assert wire.cmd("DATA")[0] == 354
        wire.send(b"Subject: big\r\n\r\n" + b"x" * 20_000 + b"\r\n.\r\n")
        assert wire.code() == 552
        assert wire.cmd("NOOP")[0] == 250
    assert server.store.ids() == []
    assert list(server.store.tmp.iterdir()) == []


def test_ipv4_client_address_in_received(server: SinkServer) -> None:
    sock = socket.create_connection(("127.0.0.1", server.smtp_port))
    sock.close()
    with smtplib.SMTP("127.0.0.1", server.smtp_port) as smtp:
        smtp.sendmail("a@example.test", ["b@example.test"], b"Subject: ip\r\n\r\nx\r\n")
    assert b"([127.0.0.1])" in server.store.read(server.store.ids()[0])


def test_max_connections_under_50_concurrent_clients(server_factory) -> None:
    import concurrent.futures

    server = server_factory(max_connections=20)
    barrier = threading.Barrier(50)

    def client(_: int) -> tuple[int, Wire]:
        barrier.wait()
        wire = Wire(server.smtp_port)
        return wire.code(), wire

    with concurrent.futures.ThreadPoolExecutor(50) as pool:
        results = list(pool.map(client, range(50)))
    codes = sorted(code for code, _ in results)
    assert codes == [220] * 20 + [421] * 30
    for code, wire in results:
        if code == 421:
            assert wire.closed()
        else:
            assert wire.cmd("NOOP")[0] == 250
        wire.close()
