"""End to end over real sockets: a real server on a free port, raw SMTP and smtplib clients,
real files in the store. Reply codes are compared with :class:`smtp_sink.replies.Code` members."""

from __future__ import annotations

import email
import email.policy
import email.utils
import os
import re
import smtplib
import threading
import time
from email.message import EmailMessage

import pytest
from support import wait_until
from support.servers import Servers
from support.wire import Wire, connect

import smtp_sink
from smtp_sink import trace
from smtp_sink.ids import id_time, is_id
from smtp_sink.replies import Code
from smtp_sink.server import SinkServer

SENDER = "ann@example.test"
RCPT = "bob@example.test"


# -- helpers ---------------------------------------------------------------------------------


def queued_id(text: str) -> str:
    """The message id named by a final 250 reply ("OK: queued as <id>")."""
    found = re.fullmatch(r"OK: queued as (\S+)", text)
    assert found and is_id(found.group(1)), text
    return found.group(1)


def split_trace(raw: bytes, recipients: int) -> tuple[bytes, bytes]:
    """Split a stored file into (trace headers, what the client sent): Return-Path, one
    X-Original-To per recipient, the session's X-Sink-Session (issue 17), then the server's own
    Received line last (smtp_sink.trace)."""
    found = re.match(
        rb"Return-Path: <[^\r\n]*>\r\n(?:X-Original-To: [^\r\n]*\r\n){%d}"
        rb"(?:X-Sink-Session: [0-9A-Z]{26}\r\n)?"
        rb"Received: [^\r\n]*(?:\r\n\t[^\r\n]*)*\r\n" % recipients,
        raw,
    )
    assert found, raw[:500]
    assert trace.read(raw).length == found.end()  # the reader agrees where the client's data starts
    return raw[: found.end()], raw[found.end() :]


def body_of(server: SinkServer, message_id: str, recipients: int = 1) -> bytes:
    return split_trace(server.store.read(message_id), recipients)[1]


def open_transaction(wire: Wire, *recipients: str, hello: str = "EHLO client.test") -> None:
    """HELO/EHLO, MAIL and RCPT, then DATA answered 354."""
    assert wire.cmd(hello)[0] == Code.OK
    assert wire.cmd(f"MAIL FROM:<{SENDER}>")[0] == Code.OK
    for rcpt in recipients or (RCPT,):
        assert wire.cmd(f"RCPT TO:<{rcpt}>")[0] == Code.OK
    assert wire.cmd("DATA")[0] == Code.START_MAIL_INPUT


def assert_nothing_stored(server: SinkServer) -> None:
    wait_until(lambda: not server.connections)  # the server has seen the session end
    assert server.store.ids() == []
    assert list(server.store.path.glob("*.eml")) == []
    assert list(server.store.tmp.iterdir()) == []


# -- every command and its reply code --------------------------------------------------------

LONG = "x" * 600
# (commands sent first, each expected to succeed; the command; the expected code)
COMMANDS: list[tuple[list[str], str, Code]] = [
    ([], "NOOP", Code.OK),
    ([], "NOOP with an argument", Code.OK),
    ([], "HELP", Code.HELP),
    ([], "HELP MAIL", Code.HELP),
    ([], "help data", Code.HELP),
    ([], "HELP STATUS", Code.SYSTEM_STATUS),
    ([], "HELP FROBNICATE", Code.PARAMETER_NOT_IMPLEMENTED),
    ([], "VRFY someone@example.test", Code.CANNOT_VERIFY),
    ([], "VRFY <someone@example.test>", Code.CANNOT_VERIFY),
    ([], "VRFY", Code.PARAMETER_SYNTAX),
    ([], "EXPN staff", Code.MAILBOX_UNAVAILABLE),
    ([], "EXPN", Code.PARAMETER_SYNTAX),
    ([], "SEND FROM:<a@example.test>", Code.NOT_IMPLEMENTED),
    ([], "SOML FROM:<a@example.test>", Code.NOT_IMPLEMENTED),
    ([], "SAML FROM:<a@example.test>", Code.NOT_IMPLEMENTED),
    ([], "TURN", Code.NOT_IMPLEMENTED),
    ([], "STARTTLS", Code.NOT_IMPLEMENTED),
    ([], "AUTH PLAIN", Code.NOT_IMPLEMENTED),
    ([], "BDAT 10 LAST", Code.NOT_IMPLEMENTED),
    ([], "FROBNICATE", Code.SYNTAX_ERROR),
    ([], "", Code.SYNTAX_ERROR),
    ([], f"NOOP {LONG}", Code.SYNTAX_ERROR),
    ([], "HELO", Code.PARAMETER_SYNTAX),
    ([], "EHLO", Code.PARAMETER_SYNTAX),
    ([], "HELO client.test", Code.OK),
    ([], "ehlo client.test", Code.OK),
    ([], "EHLO [127.0.0.1]", Code.OK),
    ([], "RSET", Code.OK),
    ([], "RSET now", Code.PARAMETER_SYNTAX),
    ([], "QUIT now", Code.PARAMETER_SYNTAX),
    ([], "QUIT", Code.CLOSING),
    (["EHLO c.test"], f"MAIL FROM:<{SENDER}>", Code.OK),
    (["EHLO c.test"], "mail from:<>", Code.OK),
    (["EHLO c.test"], f"MAIL FROM: <{SENDER}>", Code.OK),
    (["EHLO c.test"], f"MAIL FROM:{SENDER}", Code.OK),
    (["EHLO c.test"], f"MAIL FROM:<{SENDER}> SIZE=1000 BODY=8BITMIME", Code.OK),
    (["EHLO c.test"], "MAIL FROM:<jöe@example.test> SMTPUTF8", Code.OK),
    (["EHLO c.test"], "MAIL FROM:<jöe@example.test>", Code.MAILBOX_NAME_NOT_ALLOWED),
    (["EHLO c.test"], f"MAIL FROM <{SENDER}>", Code.PARAMETER_SYNTAX),
    (["EHLO c.test"], "MAIL FROM:<not an address>", Code.PARAMETER_SYNTAX),
    (["EHLO c.test"], "MAIL FROM:", Code.PARAMETER_SYNTAX),
    (["EHLO c.test"], f"MAIL FROM:<{SENDER}> SIZE=lots", Code.PARAMETER_SYNTAX),
    (["EHLO c.test"], f"MAIL FROM:<{SENDER}> SIZE=999999999999", Code.EXCEEDED_STORAGE),
    (["EHLO c.test"], f"MAIL FROM:<{SENDER}> BODY=BINARYMIME", Code.PARAMETER_NOT_IMPLEMENTED),
    (["EHLO c.test"], f"MAIL FROM:<{SENDER}> BODY=9BIT", Code.PARAMETER_SYNTAX),
    (["EHLO c.test"], f"MAIL FROM:<{SENDER}> FOO=1", Code.PARAMETERS_NOT_RECOGNIZED),
    (["HELO c.test"], f"MAIL FROM:<{SENDER}> SIZE=10", Code.PARAMETERS_NOT_RECOGNIZED),
    (["EHLO c.test", f"MAIL FROM:<{SENDER}>"], f"RCPT TO:<{RCPT}>", Code.OK),
    (["EHLO c.test", f"MAIL FROM:<{SENDER}>"], "RCPT TO:<Postmaster>", Code.OK),
    (["EHLO c.test", f"MAIL FROM:<{SENDER}>"], "RCPT TO:<>", Code.PARAMETER_SYNTAX),
    (["EHLO c.test", f"MAIL FROM:<{SENDER}>"], "RCPT TO:<no at sign>", Code.PARAMETER_SYNTAX),
    (["EHLO c.test", f"MAIL FROM:<{SENDER}>"], f"RCPT <{RCPT}>", Code.PARAMETER_SYNTAX),
    (["EHLO c.test", f"MAIL FROM:<{SENDER}>"], f"RCPT TO:<{RCPT}> NOTIFY=NEVER", Code.PARAMETERS_NOT_RECOGNIZED),
    (["EHLO c.test", f"MAIL FROM:<{SENDER}>"], "RCPT TO:<jöe@example.test>", Code.MAILBOX_NAME_NOT_ALLOWED),
    (["EHLO c.test", f"MAIL FROM:<{SENDER}>", f"RCPT TO:<{RCPT}>"], "DATA", Code.START_MAIL_INPUT),
    (["EHLO c.test", f"MAIL FROM:<{SENDER}>", f"RCPT TO:<{RCPT}>"], "DATA now", Code.PARAMETER_SYNTAX),
    (["EHLO c.test", f"MAIL FROM:<{SENDER}>", f"RCPT TO:<{RCPT}>"], "RSET", Code.OK),
]


@pytest.mark.parametrize(("before", "command", "code"), COMMANDS, ids=[c[1][:40] or "(empty)" for c in COMMANDS])
def test_command_reply_code(server: SinkServer, before: list[str], command: str, code: Code) -> None:
    with connect(server.smtp_port) as wire:
        for line in before:
            assert wire.cmd(line)[0] == Code.OK, line
        assert wire.cmd(command)[0] == code
        if code == Code.CLOSING:
            assert wire.closed()
        elif code == Code.START_MAIL_INPUT:
            wire.send(b".\r\n")
            assert wire.code() == Code.OK
        else:  # every refusal leaves the session usable
            assert wire.cmd("NOOP")[0] == Code.OK


def test_non_utf8_command_is_500_and_the_session_goes_on(server: SinkServer) -> None:
    with connect(server.smtp_port) as wire:
        wire.send(b"EHLO caf\xe9\r\n")
        assert wire.code() == Code.SYNTAX_ERROR
        assert wire.cmd("EHLO client.test")[0] == Code.OK


def test_data_when_every_recipient_was_refused_is_554(server: SinkServer) -> None:
    with connect(server.smtp_port) as wire:
        assert wire.cmd("EHLO c.test")[0] == Code.OK
        assert wire.cmd(f"MAIL FROM:<{SENDER}>")[0] == Code.OK
        assert wire.cmd("RCPT TO:<jöe@example.test>")[0] == Code.MAILBOX_NAME_NOT_ALLOWED
        assert wire.cmd("DATA")[0] == Code.TRANSACTION_FAILED


def test_recipients_past_max_recipients_get_452(start_server: Servers) -> None:
    server = start_server(max_recipients=2)
    with connect(server.smtp_port) as wire:
        assert wire.cmd("EHLO c.test")[0] == Code.OK
        assert wire.cmd(f"MAIL FROM:<{SENDER}>")[0] == Code.OK
        codes = [wire.cmd(f"RCPT TO:<r{i}@example.test>")[0] for i in range(4)]
        assert codes == [Code.OK, Code.OK, Code.INSUFFICIENT_STORAGE, Code.INSUFFICIENT_STORAGE]
        assert wire.cmd("DATA")[0] == Code.START_MAIL_INPUT
        wire.send(b"Subject: two\r\n\r\nx\r\n.\r\n")
        assert wire.code() == Code.OK
    assert server.store.read(server.store.ids()[0]).count(b"X-Original-To: ") == 2


def test_ehlo_lists_the_extensions_and_helo_does_not(start_server: Servers) -> None:
    server = start_server(hostname="mx.example.test", max_message_size=12345)
    with connect(server.smtp_port) as wire:
        code, lines = wire.cmd("EHLO client.test")
        assert code == Code.OK
        assert lines == ["mx.example.test Hello client.test [127.0.0.1]",
                         "SIZE 12345", "8BITMIME", "PIPELINING", "SMTPUTF8", "HELP"]
        assert wire.cmd("HELO client.test") == (Code.OK, ["mx.example.test Hello client.test [127.0.0.1]"])


def test_greeting_and_quit_name_the_hostname(start_server: Servers) -> None:
    server = start_server(hostname="mx.example.test")
    wire = Wire(server.smtp_port)
    assert wire.reply() == (Code.READY, [f"mx.example.test ESMTP smtp-sink {smtp_sink.__version__} ready"])
    assert wire.cmd("QUIT") == (Code.CLOSING, ["mx.example.test Service closing transmission channel"])
    assert wire.closed()
    wire.close()


# -- every 503 sequence ----------------------------------------------------------------------

BAD_SEQUENCES = {
    "MAIL before HELO": ["MAIL FROM:<a@example.test>"],
    "RCPT before HELO": ["RCPT TO:<b@example.test>"],
    "DATA before HELO": ["DATA"],
    "RCPT before MAIL": ["EHLO c.test", "RCPT TO:<b@example.test>"],
    "DATA before MAIL": ["EHLO c.test", "DATA"],
    "DATA before RCPT": ["EHLO c.test", "MAIL FROM:<a@example.test>", "DATA"],
    "MAIL after MAIL": ["EHLO c.test", "MAIL FROM:<a@example.test>", "MAIL FROM:<a@example.test>"],
    "MAIL after RCPT": ["EHLO c.test", "MAIL FROM:<a@example.test>", "RCPT TO:<b@example.test>",
                        "MAIL FROM:<c@example.test>"],
    "RCPT after RSET": ["EHLO c.test", "MAIL FROM:<a@example.test>", "RSET", "RCPT TO:<b@example.test>"],
    "DATA after RSET": ["EHLO c.test", "MAIL FROM:<a@example.test>", "RCPT TO:<b@example.test>", "RSET", "DATA"],
    "RCPT after a new EHLO": ["EHLO c.test", "MAIL FROM:<a@example.test>", "EHLO c.test", "RCPT TO:<b@example.test>"],
    "DATA after a new HELO": ["EHLO c.test", "MAIL FROM:<a@example.test>", "RCPT TO:<b@example.test>",
                              "HELO c.test", "DATA"],
    "MAIL after RSET before HELO": ["RSET", "MAIL FROM:<a@example.test>"],
}


@pytest.mark.parametrize("sequence", BAD_SEQUENCES.values(), ids=BAD_SEQUENCES.keys())
def test_bad_sequence_is_503_and_the_session_recovers(server: SinkServer, sequence: list[str]) -> None:
    with connect(server.smtp_port) as wire:
        for command in sequence[:-1]:
            assert wire.cmd(command)[0] == Code.OK, command
        assert wire.cmd(sequence[-1])[0] == Code.BAD_SEQUENCE
        wire.cmd("RSET")
        open_transaction(wire)
        wire.send(b"Subject: after 503\r\n\r\nx\r\n.\r\n")
        assert wire.code() == Code.OK
    assert len(server.store.ids()) == 1


def test_rcpt_after_a_completed_message_is_503(server: SinkServer) -> None:
    with connect(server.smtp_port) as wire:
        open_transaction(wire)
        wire.send(b"Subject: one\r\n\r\nx\r\n.\r\n")
        assert wire.code() == Code.OK
        assert wire.cmd(f"RCPT TO:<{RCPT}>")[0] == Code.BAD_SEQUENCE
        assert wire.cmd("DATA")[0] == Code.BAD_SEQUENCE
        assert wire.cmd(f"MAIL FROM:<{SENDER}>")[0] == Code.OK  # a new transaction may start


def test_rcpt_after_refused_mail_is_503(server: SinkServer) -> None:
    with connect(server.smtp_port) as wire:
        assert wire.cmd("EHLO c.test")[0] == Code.OK
        assert wire.cmd(f"MAIL FROM:<{SENDER}> SIZE=999999999999")[0] == Code.EXCEEDED_STORAGE
        assert wire.cmd(f"RCPT TO:<{RCPT}>")[0] == Code.BAD_SEQUENCE


# -- dot-stuffing ----------------------------------------------------------------------------


def test_dot_stuffing_on_the_wire_is_undone(server: SinkServer) -> None:
    sent = b".first line starts with a dot\r\n..two\r\n...\r\n..\r\nmiddle . dot\r\nend.\r\n\r\n..\r\n"
    with connect(server.smtp_port) as wire:
        open_transaction(wire)
        wire.send(sent + b".\r\n")
        code, lines = wire.reply()
    assert code == Code.OK
    assert body_of(server, queued_id(lines[0])) == (
        b"first line starts with a dot\r\n.two\r\n..\r\n.\r\nmiddle . dot\r\nend.\r\n\r\n.\r\n"
    )


def test_dot_stuffing_round_trip_through_smtplib(server: SinkServer) -> None:
    # smtplib stuffs every line that starts with a dot, including a lone "." inside the text
    text = "Subject: dots\r\n\r\n.\r\n..\r\n.starts\r\n..starts\r\n. \r\nlast\r\n."
    with smtplib.SMTP("127.0.0.1", server.smtp_port) as smtp:
        assert smtp.sendmail(SENDER, [RCPT], text.encode()) == {}
    (message_id,) = server.store.ids()
    assert body_of(server, message_id) == text.encode() + b"\r\n"  # smtplib ends the text with CRLF


def test_bare_lf_dot_is_content_not_a_terminator(server: SinkServer) -> None:
    sent = b"Subject: smuggle\r\n\r\nA\n.\nMAIL FROM:<evil@x.test>\n.\r\nB\r\n"
    with connect(server.smtp_port) as wire:
        open_transaction(wire)
        wire.send(sent + b".\r\n")
        code, lines = wire.reply()
        assert code == Code.OK
        assert wire.cmd("NOOP")[0] == Code.OK  # exactly one reply: one message
    assert server.store.ids() == [queued_id(lines[0])]
    assert body_of(server, server.store.ids()[0]) == sent


def test_terminator_split_across_writes(server: SinkServer) -> None:
    with connect(server.smtp_port) as wire:
        open_transaction(wire)
        for piece in (b"Subject: split\r\n\r\nbody\r", b"\n", b".", b"\r", b"\n"):
            wire.send(piece)
            time.sleep(0.02)
        assert wire.code() == Code.OK
    assert body_of(server, server.store.ids()[0]) == b"Subject: split\r\n\r\nbody\r\n"


def test_empty_message(server: SinkServer) -> None:
    with connect(server.smtp_port) as wire:
        open_transaction(wire)
        wire.send(b".\r\n")
        code, lines = wire.reply()
    assert code == Code.OK
    assert body_of(server, queued_id(lines[0])) == b""


# -- size, recipients, arrival order ---------------------------------------------------------


def test_one_hundred_recipients_and_their_headers(server: SinkServer) -> None:
    recipients = [f"r{i:03d}@example.test" for i in range(100)]
    with smtplib.SMTP("127.0.0.1", server.smtp_port) as smtp:
        assert smtp.sendmail(SENDER, recipients, b"Subject: many\r\n\r\nx\r\n") == {}
    (message_id,) = server.store.ids()
    trace, body = split_trace(server.store.read(message_id), 100)
    assert re.findall(rb"X-Original-To: ([^\r\n]*)\r\n", trace) == [r.encode() for r in recipients]
    assert b"\tfor <" not in trace  # "for" names a single recipient only
    assert body == b"Subject: many\r\n\r\nx\r\n"


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_five_mib_of_random_bytes_stored_byte_identical(start_server: Servers, loop: str) -> None:
    server = start_server(loop=loop)
    payload = os.urandom(5 << 20)  # 8-bit, bare CR and LF, lines starting with dots
    stuffed = (b"\r\n" + payload).replace(b"\r\n.", b"\r\n..")[2:]  # the client's job
    assert b"\r\n.\r\n" not in stuffed
    with connect(server.smtp_port) as wire:
        assert wire.cmd("EHLO big.test")[0] == Code.OK
        assert wire.cmd(f"MAIL FROM:<{SENDER}> BODY=8BITMIME SIZE={len(stuffed) + 5}")[0] == Code.OK
        assert wire.cmd(f"RCPT TO:<{RCPT}>")[0] == Code.OK
        assert wire.cmd("DATA")[0] == Code.START_MAIL_INPUT
        wire.send(stuffed + b"\r\n.\r\n")
        code, lines = wire.reply()
    assert code == Code.OK
    assert body_of(server, queued_id(lines[0])) == payload + b"\r\n"


def test_message_of_exactly_max_message_size_is_taken_one_more_byte_is_552(start_server: Servers) -> None:
    limit = 10_000
    server = start_server(max_message_size=limit)
    exact = b"Subject: limit\r\n\r\n" + b"y" * (limit - 20) + b"\r\n"
    assert len(exact) == limit
    with connect(server.smtp_port) as wire:
        open_transaction(wire)
        wire.send(exact + b".\r\n")
        code, lines = wire.reply()
        assert code == Code.OK
        assert body_of(server, queued_id(lines[0])) == exact
        assert wire.cmd(f"MAIL FROM:<{SENDER}>")[0] == Code.OK
        assert wire.cmd(f"RCPT TO:<{RCPT}>")[0] == Code.OK
        assert wire.cmd("DATA")[0] == Code.START_MAIL_INPUT
        wire.send(b"z" + exact + b".\r\n")
        assert wire.code() == Code.EXCEEDED_STORAGE
    assert len(server.store.ids()) == 1


def test_max_message_size_552_stores_nothing_and_the_session_goes_on(start_server: Servers) -> None:
    server = start_server(max_message_size=10_000)
    with connect(server.smtp_port) as wire:
        assert wire.cmd("EHLO c.test")[0] == Code.OK
        assert wire.cmd(f"MAIL FROM:<{SENDER}> SIZE=10001")[0] == Code.EXCEEDED_STORAGE
        assert wire.cmd(f"MAIL FROM:<{SENDER}> SIZE=10000")[0] == Code.OK
        assert wire.cmd(f"RCPT TO:<{RCPT}>")[0] == Code.OK
        assert wire.cmd("DATA")[0] == Code.START_MAIL_INPUT
        for _ in range(50):  # 1 MB in pieces, far over the limit
            wire.send(b"x" * 20_000 + b"\r\n")
        wire.send(b".\r\n")
        assert wire.code() == Code.EXCEEDED_STORAGE
        assert wire.cmd("NOOP")[0] == Code.OK
        assert wire.cmd(f"RCPT TO:<{RCPT}>")[0] == Code.BAD_SEQUENCE  # the transaction ended
    assert_nothing_stored(server)


def test_ids_sort_by_arrival_within_and_across_server_runs(start_server: Servers) -> None:
    first = start_server()
    sent = []
    for _ in range(2):
        with smtplib.SMTP("127.0.0.1", first.smtp_port) as smtp:
            for i in range(15):
                smtp.ehlo()
                smtp.mail(SENDER)
                smtp.rcpt(RCPT)
                code, text = smtp.data(f"Subject: {i}\r\n\r\nx\r\n".encode())
                assert code == Code.OK
                sent.append(queued_id(text.decode()))
    second = start_server()  # a later server on the same store folder
    with smtplib.SMTP("127.0.0.1", second.smtp_port) as smtp:
        smtp.ehlo()
        smtp.mail(SENDER)
        smtp.rcpt(RCPT)
        sent.append(queued_id(smtp.data(b"Subject: later\r\n\r\nx\r\n")[1].decode()))
    assert len(set(sent)) == len(sent) == 31
    assert sent == sorted(sent) == second.store.ids()
    assert abs(id_time(sent[-1]) - time.time()) < 60


# -- pipelining ------------------------------------------------------------------------------


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_pipelined_commands_answered_in_order(start_server: Servers, loop: str) -> None:
    server = start_server(loop=loop)
    with connect(server.smtp_port) as wire:
        wire.send(
            "EHLO pipe.test\r\nMAIL FROM:<a@example.test>\r\nRCPT TO:<b@example.test>\r\n"
            "RCPT TO:<c@example.test>\r\nRCPT TO:<d@example.test>\r\nDATA\r\n"
        )
        replies = [wire.reply() for _ in range(6)]
        assert [code for code, _ in replies] == [Code.OK] * 5 + [Code.START_MAIL_INPUT]
        assert replies[1][1] == ["<a@example.test>... Sender ok"]
        assert [lines for _, lines in replies[2:5]] == [
            [f"<{r}@example.test>... Recipient ok"] for r in "bcd"
        ]
        wire.send("Subject: pipelined\r\n\r\nbody\r\n.\r\nQUIT\r\n")
        code, lines = wire.reply()
        assert code == Code.OK
        assert wire.reply()[0] == Code.CLOSING
        assert wire.closed()
    trace, body = split_trace(server.store.read(queued_id(lines[0])), 3)
    assert re.findall(rb"X-Original-To: ([^\r\n]*)", trace) == [b"b@example.test", b"c@example.test", b"d@example.test"]
    assert body == b"Subject: pipelined\r\n\r\nbody\r\n"


def test_two_messages_and_quit_in_one_write(server: SinkServer) -> None:
    message = b"MAIL FROM:<a@example.test>\r\nRCPT TO:<b@example.test>\r\nDATA\r\nSubject: m\r\n\r\nx\r\n.\r\n"
    with connect(server.smtp_port) as wire:
        wire.send(b"EHLO p.test\r\n" + message + message + b"QUIT\r\n")
        codes = [wire.code() for _ in range(10)]
        assert wire.closed()
    assert codes == [Code.OK] + [Code.OK, Code.OK, Code.START_MAIL_INPUT, Code.OK] * 2 + [Code.CLOSING]
    assert len(server.store.ids()) == 2


# -- nothing is stored without the final dot -------------------------------------------------


@pytest.mark.parametrize(
    "cut", [b"", b"\r\n", b"\r\n.", b"\r\n.\r"], ids=["mid-line", "CRLF", "CRLF-dot", "CRLF-dot-CR"]
)
def test_disconnect_mid_data_stores_nothing(server: SinkServer, cut: bytes) -> None:
    with connect(server.smtp_port) as wire:
        open_transaction(wire)
        wire.send(b"Subject: cut\r\n\r\n" + b"half a message " * 5000 + cut)
    assert_nothing_stored(server)
    with smtplib.SMTP("127.0.0.1", server.smtp_port) as smtp:  # the server is fine afterwards
        assert smtp.sendmail(SENDER, [RCPT], b"Subject: next\r\n\r\nx\r\n") == {}
    assert len(server.store.ids()) == 1


@pytest.mark.parametrize("command", [b"RSET", b"QUIT"])
def test_rset_or_quit_before_the_final_dot_is_content_and_stores_nothing(server: SinkServer, command: bytes) -> None:
    with connect(server.smtp_port) as wire:
        open_transaction(wire)
        wire.send(b"Subject: cut\r\n\r\nhalf a message\r\n" + command + b"\r\n")
        assert not wire.closed(timeout=0.3)  # still in DATA: no reply, no close
        assert wire.buf == b""
    assert_nothing_stored(server)


@pytest.mark.parametrize("command", ["RSET", "QUIT"])
def test_rset_or_quit_after_rcpt_stores_nothing(server: SinkServer, command: str) -> None:
    with connect(server.smtp_port) as wire:
        assert wire.cmd("EHLO c.test")[0] == Code.OK
        assert wire.cmd(f"MAIL FROM:<{SENDER}>")[0] == Code.OK
        assert wire.cmd(f"RCPT TO:<{RCPT}>")[0] == Code.OK
        assert wire.cmd(command)[0] in (Code.OK, Code.CLOSING)
    assert_nothing_stored(server)


# -- MIME and the stored file ----------------------------------------------------------------


def test_smtplib_multipart_with_attachment_parses_back(server: SinkServer) -> None:
    message = EmailMessage()
    message["From"] = f"Ann <{SENDER}>"
    message["To"] = f"Bob <{RCPT}>"
    message["Subject"] = "Quarterly report ✓"
    message.set_content("See the attachment.\n")
    message.add_alternative("<p>See the <b>attachment</b>.</p>\n", subtype="html")
    attachment = os.urandom(100_000) + b"\r\n.\r\n" + b"\x00" * 10
    message.add_attachment(attachment, maintype="application", subtype="octet-stream", filename="data.bin")
    with smtplib.SMTP("127.0.0.1", server.smtp_port) as smtp:
        assert smtp.send_message(message, to_addrs=[RCPT, "hidden@example.test"]) == {}
    (message_id,) = server.store.ids()
    assert (server.store.path / f"{message_id}.eml").is_file()
    parsed = email.message_from_bytes(server.store.read(message_id), policy=email.policy.default)
    assert parsed["Subject"] == "Quarterly report ✓"
    assert parsed["Return-Path"] == f"<{SENDER}>"
    assert parsed.get_all("X-Original-To") == [RCPT, "hidden@example.test"]
    (part,) = parsed.iter_attachments()
    assert part.get_filename() == "data.bin"
    assert part.get_content() == attachment
    assert parsed.get_body(("html",)).get_content().strip() == "<p>See the <b>attachment</b>.</p>"
    assert parsed.get_body(("plain",)).get_content().strip() == "See the attachment."


def test_250_reply_names_the_file_written(server: SinkServer) -> None:
    with smtplib.SMTP("127.0.0.1", server.smtp_port) as smtp:
        smtp.ehlo()
        smtp.mail(SENDER)
        smtp.rcpt(RCPT)
        code, text = smtp.data(b"Subject: id\r\n\r\nx\r\n")
    message_id = queued_id(text.decode())
    assert code == Code.OK
    assert [path.name for path in server.store.path.glob("*.eml")] == [f"{message_id}.eml"]
    assert b"\r\nSubject: id\r\n" in (server.store.path / f"{message_id}.eml").read_bytes()


def test_file_mode_and_no_leftovers_in_tmp(server: SinkServer) -> None:
    with smtplib.SMTP("127.0.0.1", server.smtp_port) as smtp:
        smtp.sendmail(SENDER, [RCPT], b"Subject: perms\r\n\r\nx\r\n")
    (path,) = server.store.path.glob("*.eml")
    assert path.stat().st_mode & 0o777 == 0o644
    assert list(server.store.tmp.iterdir()) == []


@pytest.mark.parametrize(("hello", "protocol"), [("EHLO", "ESMTP"), ("HELO", "SMTP")])
def test_trace_headers_exact(server: SinkServer, hello: str, protocol: str) -> None:
    with connect(server.smtp_port) as wire:
        open_transaction(wire, hello=f"{hello} client.example.test")
        wire.send(b"From: ann@example.test\r\nTo: bob@example.test\r\nSubject: t\r\n\r\nx\r\n.\r\n")
        code, lines = wire.reply()
    assert code == Code.OK
    message_id = queued_id(lines[0])
    trace, body = split_trace(server.store.read(message_id), 1)
    version = smtp_sink.__version__
    head = trace.decode().split("\r\n")
    session = head.pop(2)  # issue 17: the session that delivered it, before the server's Received
    assert session.startswith("X-Sink-Session: ") and is_id(session[16:])
    assert head[:5] == [
        f"Return-Path: <{SENDER}>",
        f"X-Original-To: {RCPT}",
        "Received: from client.example.test ([127.0.0.1])",
        f"\tby smtp-sink.localhost (smtp-sink {version}) with {protocol} id {message_id}",
        f"\tfor <{RCPT}>;",
    ]
    assert head[5].startswith("\t")
    assert abs(email.utils.parsedate_to_datetime(head[5][1:]).timestamp() - time.time()) < 60
    assert head[6:] == [""]
    assert body.startswith(b"From: ann@example.test\r\n")


def test_trace_headers_null_sender_and_bcc_only_recipients(start_server: Servers) -> None:
    server = start_server(hostname="mx.example.test")
    visible = "Bob <bob@example.test>"
    with smtplib.SMTP("127.0.0.1", server.smtp_port) as smtp:
        smtp.sendmail("<>", [RCPT, "secret@example.test", "Postmaster"],
                      f"To: {visible}\r\nSubject: bcc\r\n\r\nx\r\n".encode())
    (message_id,) = server.store.ids()
    trace, body = split_trace(server.store.read(message_id), 3)
    parsed = email.message_from_bytes(trace + body, policy=email.policy.default)
    assert parsed["Return-Path"] == "<>"
    assert parsed.get_all("X-Original-To") == [RCPT, "secret@example.test", "Postmaster"]
    assert re.fullmatch(
        rf"from \S+ \(\[127\.0\.0\.1\]\) by mx\.example\.test \(smtp-sink {re.escape(smtp_sink.__version__)}\)"
        rf" with ESMTP id {message_id}; .+",
        " ".join(parsed["Received"].split()),
    )
    assert b"secret" not in body


# -- limits and shutdown ---------------------------------------------------------------------


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_stop_sends_421_to_every_open_session(start_server: Servers, loop: str) -> None:
    server = start_server(loop=loop)
    fresh, greeted, in_data = (connect(server.smtp_port) for _ in range(3))
    assert greeted.cmd("EHLO c.test")[0] == Code.OK
    open_transaction(in_data)
    in_data.send(b"Subject: interrupted\r\n\r\nhalf")
    wait_until(lambda: len(server.connections) == 3)
    start_server.stop(server)
    for wire in (fresh, greeted, in_data):
        assert wire.reply() == (Code.SERVICE_UNAVAILABLE, ["smtp-sink.localhost Service not available, shutting down"])
        assert wire.closed()
        wire.close()
    assert server.store.ids() == []
    assert list(server.store.tmp.iterdir()) == []


def test_idle_timeout_sends_421_and_closes(start_server: Servers) -> None:
    server = start_server(idle_timeout=0.3)
    with connect(server.smtp_port) as wire:
        started = time.monotonic()
        assert wire.cmd("EHLO c.test")[0] == Code.OK
        code, lines = wire.reply()
        waited = time.monotonic() - started
        assert code == Code.SERVICE_UNAVAILABLE
        assert lines == ["smtp-sink.localhost Service not available, idle timeout, closing connection"]
        assert wire.closed()
    assert 0.25 < waited < 2.0
    wait_until(lambda: not server.connections)


def test_a_busy_session_is_not_idle(start_server: Servers) -> None:
    server = start_server(idle_timeout=0.3)
    with connect(server.smtp_port) as wire:
        open_transaction(wire)
        for _ in range(8):  # 0.8 s of slow message data, never 0.3 s of silence
            wire.send(b"slow line\r\n")
            time.sleep(0.1)
        wire.send(b".\r\n")
        assert wire.code() == Code.OK
        for _ in range(4):
            time.sleep(0.1)
            assert wire.cmd("NOOP")[0] == Code.OK
    assert len(server.store.ids()) == 1


def test_idle_timeout_mid_data_stores_nothing(start_server: Servers) -> None:
    server = start_server(idle_timeout=0.3)
    with connect(server.smtp_port) as wire:
        open_transaction(wire)
        wire.send(b"Subject: stalled\r\n\r\nhalf")
        assert wire.code() == Code.SERVICE_UNAVAILABLE
        assert wire.closed()
    assert_nothing_stored(server)


def test_max_connections_refuses_the_extra_one(start_server: Servers) -> None:
    server = start_server(max_connections=2)
    first, second = connect(server.smtp_port), connect(server.smtp_port)
    extra = Wire(server.smtp_port)
    assert extra.reply() == (
        Code.SERVICE_UNAVAILABLE,
        ["smtp-sink.localhost Service not available, too many connections, try again later"],
    )
    assert extra.closed()
    extra.close()
    assert first.cmd("NOOP")[0] == Code.OK and second.cmd("NOOP")[0] == Code.OK  # the two go on
    assert first.cmd("QUIT")[0] == Code.CLOSING
    first.close()
    wait_until(lambda: len(server.connections) == 1)
    with connect(server.smtp_port) as again:  # the freed slot is usable again
        assert again.cmd("NOOP")[0] == Code.OK
    second.close()


def test_max_connections_under_50_concurrent_clients(start_server: Servers) -> None:
    import concurrent.futures

    server = start_server(max_connections=20)
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
