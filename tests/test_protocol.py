"""The sans-I/O SMTP session (smtp_sink.protocol.SMTPSession) without sockets: RFC 5321 rules.

Every state x every command is one row of a table; the rest covers syntax errors, limits,
DATA scanning (dot-stuffing, terminators split across chunks, bare-LF smuggling), pipelining
and SMTPUTF8.
"""

from __future__ import annotations

import base64

import pytest

from smtp_sink.config import Config
from smtp_sink.protocol import (
    AUTH_LINE_MAX,
    CLOSE,
    COMMAND_LINE_MAX,
    MAIL_LINE_MAX,
    MessageReceived,
    Output,
    Policy,
    Settings,
    SMTPSession,
    State,
)
from smtp_sink.replies import Code, Reply, reply

MESSAGE = "message"  # stands for a MessageReceived in summaries
CLOSED = "close"  # stands for CLOSE


def new_session(**settings: object) -> SMTPSession:
    return SMTPSession(Settings.from_config(Config(), hostname="sink.test", **settings), peer="192.0.2.1")


def summary(outputs: list[Output]) -> list[object]:
    """Replies as their Code, a message as MESSAGE, CLOSE as CLOSED."""
    result: list[object] = []
    for item in outputs:
        if isinstance(item, Reply):
            result.append(item.code)
        elif isinstance(item, MessageReceived):
            result.append(MESSAGE)
        else:
            assert item is CLOSE
            result.append(CLOSED)
    return result


def send(session: SMTPSession, *lines: str | bytes) -> list[object]:
    """Feed each line (CRLF added) separately; the summary of everything that came out."""
    out: list[object] = []
    for line in lines:
        data = line if isinstance(line, bytes) else line.encode()
        out += summary(session.feed(data + b"\r\n"))
    return out


def messages(outputs: list[Output]) -> list[MessageReceived]:
    return [item for item in outputs if isinstance(item, MessageReceived)]


# -- driving a session into each state --------------------------------------------------------

EHLO = "EHLO client.example"
MAIL = "MAIL FROM:<sender@example.test>"
RCPT = "RCPT TO:<rcpt@example.test>"

SETUP: dict[str, list[str]] = {
    "CONNECTED": [],
    "GREETED": [EHLO],
    "MAIL": [EHLO, MAIL],
    "RCPT": [EHLO, MAIL, RCPT],
    # DATA-adjacent: a message was just completed; the session is back in GREETED
    "AFTER_DATA": [EHLO, MAIL, RCPT, "DATA", "hello", "."],
}
REACHED = {
    "CONNECTED": State.CONNECTED,
    "GREETED": State.GREETED,
    "MAIL": State.MAIL,
    "RCPT": State.RCPT,
    "AFTER_DATA": State.GREETED,
}


def drive(state: str, **settings: object) -> SMTPSession:
    """A session brought into ``state`` (a key of SETUP) by real commands."""
    session = new_session(**settings)
    out = send(session, *SETUP[state])
    assert all(item in (Code.OK, Code.START_MAIL_INPUT, MESSAGE) for item in out), out
    assert session.state is REACHED[state]
    return session


# -- the state x command table ----------------------------------------------------------------

STATES = list(SETUP)
C, G, M, R, A = STATES  # CONNECTED, GREETED, MAIL, RCPT, AFTER_DATA
SAME = None  # the state does not change


def everywhere(code: Code, after: State | None = SAME) -> dict[str, tuple[Code, State | None]]:
    return {state: (code, after) for state in STATES}


# command -> state -> (reply code, state afterwards)
TABLE: dict[str, dict[str, tuple[Code, State | None]]] = {
    "HELO client.example": everywhere(Code.OK, State.GREETED),
    "EHLO client.example": everywhere(Code.OK, State.GREETED),
    "MAIL FROM:<other@example.test>": {
        C: (Code.BAD_SEQUENCE, SAME), G: (Code.OK, State.MAIL), M: (Code.BAD_SEQUENCE, SAME),
        R: (Code.BAD_SEQUENCE, SAME), A: (Code.OK, State.MAIL),
    },
    "RCPT TO:<other@example.test>": {
        C: (Code.BAD_SEQUENCE, SAME), G: (Code.BAD_SEQUENCE, SAME), M: (Code.OK, State.RCPT),
        R: (Code.OK, State.RCPT), A: (Code.BAD_SEQUENCE, SAME),
    },
    "DATA": {
        C: (Code.BAD_SEQUENCE, SAME), G: (Code.BAD_SEQUENCE, SAME), M: (Code.BAD_SEQUENCE, SAME),
        R: (Code.START_MAIL_INPUT, State.DATA), A: (Code.BAD_SEQUENCE, SAME),
    },
    "RSET": {**everywhere(Code.OK, State.GREETED), C: (Code.OK, State.CONNECTED)},
    "NOOP": everywhere(Code.OK),
    "NOOP with an argument": everywhere(Code.OK),
    "QUIT": everywhere(Code.CLOSING, State.QUIT),
    "VRFY someone@example.test": everywhere(Code.CANNOT_VERIFY),
    "EXPN staff": everywhere(Code.MAILBOX_UNAVAILABLE),
    "HELP": everywhere(Code.HELP),
    "HELP STATUS": everywhere(Code.SYSTEM_STATUS),
    "HELP MAIL": everywhere(Code.HELP),
    "HELP NOSUCHTOPIC": everywhere(Code.PARAMETER_NOT_IMPLEMENTED),
    "SEND FROM:<a@example.test>": everywhere(Code.NOT_IMPLEMENTED),
    "SOML FROM:<a@example.test>": everywhere(Code.NOT_IMPLEMENTED),
    "SAML FROM:<a@example.test>": everywhere(Code.NOT_IMPLEMENTED),
    "TURN": everywhere(Code.NOT_IMPLEMENTED),
    "XYZZY": everywhere(Code.SYNTAX_ERROR),
    "": everywhere(Code.SYNTAX_ERROR),
}

CASES = [(state, command) for command in TABLE for state in STATES]


@pytest.mark.parametrize(("state", "command"), CASES, ids=[f"{s}-{c or 'empty'}" for s, c in CASES])
def test_state_command_table(state: str, command: str) -> None:
    session = drive(state)
    before = session.state
    code, after = TABLE[command][state]
    expected: list[object] = [code, CLOSED] if after is State.QUIT else [code]
    assert send(session, command) == expected
    assert session.state is (before if after is SAME else after)


@pytest.mark.parametrize("command", [c for c in TABLE if c], ids=str)
@pytest.mark.parametrize("state", [G, R])
def test_commands_are_case_insensitive(state: str, command: str) -> None:
    for variant in (command.lower(), command.swapcase(), command.title()):
        session = drive(state)
        assert send(session, variant)[0] == TABLE[command][state][0], variant


@pytest.mark.parametrize("command", [c for c in TABLE if c and not c.startswith("QUIT")], ids=str)
def test_in_data_every_command_is_message_content(command: str) -> None:
    session = drive(R)
    out = session.feed(b"DATA\r\n" + command.encode() + b"\r\n.\r\n")
    assert summary(out) == [Code.START_MAIL_INPUT, MESSAGE]
    assert messages(out)[0].data == command.encode() + b"\r\n"


# -- HELO/EHLO -------------------------------------------------------------------------------


@pytest.mark.parametrize("line", ["HELO", "EHLO", "HELO ", "EHLO   ", "HELO two words", "EHLO a b"])
def test_helo_without_single_name_is_501(line: str) -> None:
    session = new_session()
    assert send(session, line) == [Code.PARAMETER_SYNTAX]
    assert session.state is State.CONNECTED


@pytest.mark.parametrize("name", [b"a\x01b", b"a\tb", b"a\x7fb", b"a\x00b", b"a\rb", b"\x1b[31mred"])
@pytest.mark.parametrize("verb", [b"HELO", b"EHLO"])
def test_helo_with_control_characters_is_501(verb: bytes, name: bytes) -> None:
    session = new_session()
    assert send(session, verb + b" " + name) == [Code.PARAMETER_SYNTAX]
    assert session.state is State.CONNECTED
    assert send(session, verb + b" fine.example") == [Code.OK]


def test_helo_accepts_address_literal() -> None:
    session = new_session()
    assert send(session, "HELO [192.0.2.7]", "EHLO [IPv6:2001:db8::1]") == [Code.OK, Code.OK]


def test_ehlo_advertises_extensions() -> None:
    session = new_session(max_message_size=1000)
    out = session.feed(b"EHLO client.example\r\n")
    assert out[0].code == Code.OK
    assert set(out[0].lines[1:]) == {"SIZE 1000", "8BITMIME", "PIPELINING", "SMTPUTF8", "HELP"}
    session = new_session(smtputf8=False, max_message_size=0)
    keywords = session.feed(b"EHLO client.example\r\n")[0].lines[1:]
    assert "SMTPUTF8" not in keywords
    assert "SIZE" in keywords


def test_helo_and_ehlo_reset_the_transaction() -> None:
    for verb in ("HELO", "EHLO"):
        session = drive(R)
        assert send(session, f"{verb} again.example", "DATA", RCPT) == [
            Code.OK, Code.BAD_SEQUENCE, Code.BAD_SEQUENCE]
        assert session.envelope.rcpt_to == []


# -- MAIL / RCPT syntax ------------------------------------------------------------------------

MAIL_501 = [
    "MAIL",
    "MAIL FROM",
    "MAIL FROM <a@example.test>",
    "MAIL TO:<a@example.test>",
    "MAIL FROM:",
    "MAIL FROM:   ",
    "MAIL FROM:<not an address>",
    "MAIL FROM:<a@example.test",
    "MAIL FROM:<a@example.test>SIZE=10",
    "MAIL FROM:<@example.test>",
    "MAIL FROM:<a@>",
    "MAIL FROM:<a..b@example.test>",
    "MAIL FROM:<.a@example.test>",
    "MAIL FROM:<a@-example.test>",
    "MAIL FROM:<Postmaster>",
    "MAIL FROM:<" + "x" * 65 + "@example.test>",
    "MAIL FROM:<a@example.test> SIZE=",
    "MAIL FROM:<a@example.test> SIZE=abc",
    "MAIL FROM:<a@example.test> SIZE",
    "MAIL FROM:<a@example.test> BODY=NONSENSE",
    "MAIL FROM:<a@example.test> SMTPUTF8=yes",
    "MAIL FROM:<a@example.test> =x",
]


@pytest.mark.parametrize("line", MAIL_501)
def test_mail_syntax_errors_are_501(line: str) -> None:
    session = drive(G)
    assert send(session, line) == [Code.PARAMETER_SYNTAX]
    assert session.state is State.GREETED
    assert send(session, MAIL) == [Code.OK]


RCPT_501 = [
    "RCPT",
    "RCPT TO",
    "RCPT TO <b@example.test>",
    "RCPT FROM:<b@example.test>",
    "RCPT TO:",
    "RCPT TO:<>",
    "RCPT TO:<not an address>",
    "RCPT TO:<b@example.test",
    "RCPT TO:<bob>",
]


@pytest.mark.parametrize("line", RCPT_501)
def test_rcpt_syntax_errors_are_501(line: str) -> None:
    session = drive(M)
    assert send(session, line) == [Code.PARAMETER_SYNTAX]
    assert session.state is State.MAIL
    assert session.envelope.rcpt_to == []


@pytest.mark.parametrize(
    ("state", "line"), [(R, "DATA now"), (R, "RSET now"), (G, "QUIT now"), (R, "QUIT now")]
)
def test_arguments_to_argumentless_commands_are_501(state: str, line: str) -> None:
    session = drive(state)
    before = session.state
    assert send(session, line) == [Code.PARAMETER_SYNTAX]
    assert session.state is before


def test_mail_accepted_forms() -> None:
    forms = {
        "MAIL FROM:<a@example.test>": "a@example.test",
        "MAIL FROM: <a@example.test>": "a@example.test",
        "MAIL FROM:a@example.test": "a@example.test",
        'MAIL FROM:<"quoted local"@example.test>': '"quoted local"@example.test',
        "MAIL FROM:<a@[192.0.2.1]>": "a@[192.0.2.1]",
        "MAIL FROM:<a@example.test> SIZE=100 BODY=8BITMIME": "a@example.test",
        "MAIL FROM:<a@example.test> body=7bit": "a@example.test",
        "MAIL FROM:<>": "",
        "MAIL FROM:<> SIZE=10": "",
        "MAIL FROM:<@relay.example,@hop.example:a@example.test>": "a@example.test",
    }
    for line, address in forms.items():
        session = drive(G)
        assert send(session, line) == [Code.OK], line
        assert session.envelope.mail_from == address


def test_null_sender_transaction_delivers() -> None:
    session = drive(G)
    out = session.feed(b"MAIL FROM:<>\r\nRCPT TO:<b@example.test>\r\nDATA\r\nbounce\r\n.\r\n")
    assert summary(out) == [Code.OK, Code.OK, Code.START_MAIL_INPUT, MESSAGE]
    assert messages(out)[0].envelope.mail_from == ""


@pytest.mark.parametrize("path", ["<Postmaster>", "<postmaster>", "<POSTMASTER>", "Postmaster",
                                  "<postmaster@example.test>"])
def test_postmaster_recipient_is_accepted(path: str) -> None:
    session = drive(M)
    assert send(session, f"RCPT TO:{path}") == [Code.OK]
    assert session.envelope.rcpt_to == [path.strip("<>")]


def test_source_route_is_accepted_and_dropped() -> None:
    session = drive(M)
    assert send(session, "RCPT TO:<@relay.example,@hop.example:user@example.test>") == [Code.OK]
    assert session.envelope.rcpt_to == ["user@example.test"]


# -- parameters and limits ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "line"),
    [
        (G, "MAIL FROM:<a@example.test> FOO=1"),
        (G, "MAIL FROM:<a@example.test> XFORWARD"),
        (M, "RCPT TO:<b@example.test> FOO=1"),
        (M, "RCPT TO:<b@example.test> NOTIFY=NEVER"),
    ],
)
def test_unknown_parameter_is_555(state: str, line: str) -> None:
    session = drive(state)
    assert send(session, line) == [Code.PARAMETERS_NOT_RECOGNIZED]
    assert session.state is REACHED[state]


def test_parameters_after_helo_are_555() -> None:
    session = new_session()
    assert send(session, "HELO client.example", "MAIL FROM:<a@example.test> SIZE=10") == [
        Code.OK, Code.PARAMETERS_NOT_RECOGNIZED]


def test_smtputf8_parameter_refused_when_disabled() -> None:
    session = drive(G, smtputf8=False)
    assert send(session, "MAIL FROM:<a@example.test> SMTPUTF8") == [Code.PARAMETERS_NOT_RECOGNIZED]


def test_size_over_limit_is_552() -> None:
    session = drive(G, max_message_size=1000)
    assert send(session, "MAIL FROM:<a@example.test> SIZE=1001") == [Code.EXCEEDED_STORAGE]
    assert session.state is State.GREETED
    assert send(session, "MAIL FROM:<a@example.test> SIZE=1000") == [Code.OK]


def test_size_without_limit_accepts_anything() -> None:
    session = drive(G, max_message_size=0)
    assert send(session, "MAIL FROM:<a@example.test> SIZE=99999999999999") == [Code.OK]


def test_body_binarymime_is_504() -> None:
    session = drive(G)
    assert send(session, "MAIL FROM:<a@example.test> BODY=BINARYMIME") == [Code.PARAMETER_NOT_IMPLEMENTED]


def test_too_many_recipients_is_452_and_the_rest_still_deliver() -> None:
    session = drive(M, max_recipients=2)
    assert send(session, "RCPT TO:<a@example.test>", "RCPT TO:<b@example.test>", "RCPT TO:<c@example.test>") == [
        Code.OK, Code.OK, Code.INSUFFICIENT_STORAGE]
    out = session.feed(b"DATA\r\nx\r\n.\r\n")
    assert summary(out) == [Code.START_MAIL_INPUT, MESSAGE]
    assert messages(out)[0].envelope.rcpt_to == ["a@example.test", "b@example.test"]


# -- 503 and 554 sequences --------------------------------------------------------------------


@pytest.mark.parametrize(
    "lines",
    [
        [MAIL],
        [RCPT],
        ["DATA"],
        [EHLO, RCPT],
        [EHLO, "DATA"],
        [EHLO, MAIL, "DATA"],
        [EHLO, MAIL, MAIL],
        [EHLO, MAIL, RCPT, MAIL],
        [EHLO, MAIL, RCPT, "RSET", RCPT],
        [EHLO, MAIL, RCPT, "RSET", "DATA"],
        [EHLO, MAIL, "RCPT TO:<bad address>", "DATA"],
        [EHLO, MAIL, RCPT, "DATA", "x", ".", "DATA"],
        [EHLO, MAIL, RCPT, "DATA", "x", ".", RCPT],
        ["HELO client.example", MAIL, RCPT, "HELO client.example", "DATA"],
    ],
    ids=lambda lines: "-".join(line.split(" ")[0] for line in lines),
)
def test_out_of_order_is_503(lines: list[str]) -> None:
    session = new_session()
    out = send(session, *lines)
    assert out[-1] == Code.BAD_SEQUENCE
    assert Code.BAD_SEQUENCE not in out[:-1]


class RefuseAll(Policy):
    def check_recipient(self, envelope, address):
        return reply(Code.MAILBOX_UNAVAILABLE, f"<{address}>: no such mailbox")


def test_data_is_554_when_every_recipient_was_refused_by_policy() -> None:
    session = SMTPSession(Settings.from_config(Config()), RefuseAll())
    assert send(session, EHLO, MAIL, RCPT, "RCPT TO:<x@example.test>", "DATA") == [
        Code.OK, Code.OK, Code.MAILBOX_UNAVAILABLE, Code.MAILBOX_UNAVAILABLE, Code.TRANSACTION_FAILED]


def test_data_is_554_when_the_only_recipient_needed_smtputf8() -> None:
    session = drive(M)
    assert send(session, "RCPT TO:<用户@例子.测试>", "DATA") == [
        Code.MAILBOX_NAME_NOT_ALLOWED, Code.TRANSACTION_FAILED]
    # the transaction is still open: a valid recipient makes DATA work
    assert send(session, RCPT, "DATA") == [Code.OK, Code.START_MAIL_INPUT]


def test_one_refused_one_accepted_recipient_delivers_to_the_accepted_one() -> None:
    session = drive(M)
    out = session.feed("RCPT TO:<ü@example.test>\r\nRCPT TO:<b@example.test>\r\nDATA\r\nx\r\n.\r\n".encode())
    assert summary(out) == [Code.MAILBOX_NAME_NOT_ALLOWED, Code.OK, Code.START_MAIL_INPUT, MESSAGE]
    assert messages(out)[0].envelope.rcpt_to == ["b@example.test"]


# -- SMTPUTF8 -----------------------------------------------------------------------------------


def test_non_ascii_sender_needs_smtputf8() -> None:
    session = drive(G)
    assert send(session, "MAIL FROM:<ünï@exämple.test>") == [Code.MAILBOX_NAME_NOT_ALLOWED]
    assert send(session, "MAIL FROM:<ünï@exämple.test> SMTPUTF8") == [Code.OK]
    assert session.envelope.smtputf8
    assert send(session, "RCPT TO:<用户@例子.测试>") == [Code.OK]
    out = session.feed("DATA\r\nSubject: ü\r\n\r\n€\r\n.\r\n".encode())
    assert summary(out) == [Code.START_MAIL_INPUT, MESSAGE]
    message = messages(out)[0]
    assert message.envelope.mail_from == "ünï@exämple.test"
    assert message.envelope.rcpt_to == ["用户@例子.测试"]
    assert message.data == "Subject: ü\r\n\r\n€\r\n".encode()


def test_non_ascii_recipient_needs_smtputf8_on_mail() -> None:
    session = drive(M)
    assert send(session, "RCPT TO:<ü@example.test>") == [Code.MAILBOX_NAME_NOT_ALLOWED]
    assert session.envelope.rcpt_to == []


# -- line handling -----------------------------------------------------------------------------


def test_command_line_limit_is_512_octets_including_crlf() -> None:
    session = drive(G)
    fits = "NOOP " + "x" * (COMMAND_LINE_MAX - 2 - 5)
    assert len(fits) + 2 == COMMAND_LINE_MAX
    assert send(session, fits) == [Code.OK]
    assert send(session, fits + "x") == [Code.SYNTAX_ERROR]
    assert send(session, "NOOP") == [Code.OK]
    assert session.state is State.GREETED


def test_mail_line_may_be_longer_for_extension_parameters() -> None:
    session = drive(G)
    line = "MAIL FROM:<a@example.test> SIZE=100" + " BODY=8BITMIME" * 40
    assert COMMAND_LINE_MAX < len(line) + 2 <= MAIL_LINE_MAX
    assert send(session, line) == [Code.OK]
    session = drive(G)
    assert send(session, "MAIL FROM:<a@example.test>" + " BODY=7BIT" * 200) == [Code.SYNTAX_ERROR]


def test_line_over_the_buffer_limit_is_discarded_and_answered_at_its_lf() -> None:
    session = drive(G)
    assert session.feed(b"NOOP " + b"x" * (AUTH_LINE_MAX + 100)) == []
    for _ in range(20):  # keeps coming without a newline: nothing is answered, nothing piles up
        assert session.feed(b"y" * 4096) == []
        assert len(session._buf) <= AUTH_LINE_MAX
    assert summary(session.feed(b"tail\r\nNOOP\r\n" + MAIL.encode() + b"\r\n")) == [
        Code.SYNTAX_ERROR, Code.OK, Code.OK]
    assert session.state is State.MAIL


@pytest.mark.parametrize(
    "line", [b"NOOP \xff\xfe", b"\xffNOOP", b"MAIL FROM:<\xe9@example.test>", b"HELO \xc3(", b"VRFY \xed\xa0\x80"]
)
def test_non_utf8_command_is_500_and_the_session_continues(line: bytes) -> None:
    session = drive(G)
    assert send(session, line) == [Code.SYNTAX_ERROR]
    assert send(session, "NOOP") == [Code.OK]


def test_bare_lf_ends_a_command_line() -> None:
    session = new_session()
    assert summary(session.feed(b"EHLO client.example\nNOOP\n")) == [Code.OK, Code.OK]


def test_nothing_is_answered_after_quit_or_close() -> None:
    session = drive(G)
    assert summary(session.feed(b"QUIT\r\nNOOP\r\n")) == [Code.CLOSING, CLOSED]
    assert session.feed(b"NOOP\r\n") == []
    session = drive(R)
    session.feed(b"DATA\r\npartial")
    session.close()
    assert session.feed(b"\r\n.\r\nNOOP\r\n") == []


def test_help_status_names_the_state() -> None:
    session = drive(M)
    out = session.feed(b"HELP STATUS\r\n")[0]
    assert out.code == Code.SYSTEM_STATUS
    assert "state mail" in out.text
    assert "client.example" in out.text


# -- DATA --------------------------------------------------------------------------------------


def deliver(body: bytes, **settings: object) -> list[Output]:
    """Send ``DATA`` + body (which must include the terminator) in one chunk."""
    session = drive(R, **settings)
    return session.feed(b"DATA\r\n" + body)


@pytest.mark.parametrize(
    ("wire", "stored"),
    [
        (b".\r\n", b""),
        (b"\r\n.\r\n", b"\r\n"),
        (b"hello\r\n.\r\n", b"hello\r\n"),
        (b"..leading dot\r\n.\r\n", b".leading dot\r\n"),
        (b"..\r\n.\r\n", b".\r\n"),
        (b"...\r\n.\r\n", b"..\r\n"),
        (b"a\r\n..\r\nb\r\n.\r\n", b"a\r\n.\r\nb\r\n"),
        (b"a\r\n.x\r\n..y\r\n.\r\n", b"a\r\nx\r\n.y\r\n"),
        (b"mid.dle\r\nend.\r\n.\r\n", b"mid.dle\r\nend.\r\n"),
        (b"a\r\n..\r\n..\r\n.\r\n", b"a\r\n.\r\n.\r\n"),
        (b"bare\n..lf\r\n.\r\n", b"bare\n..lf\r\n"),
        (b"\x00\xff\x80binary\r\n.\r\n", b"\x00\xff\x80binary\r\n"),
    ],
)
def test_dot_unstuffing_is_exact(wire: bytes, stored: bytes) -> None:
    out = deliver(wire)
    assert summary(out) == [Code.START_MAIL_INPUT, MESSAGE]
    assert messages(out)[0].data == stored


BODY = b"Subject: split\r\n\r\n..dot\r\nline\r\n"
WIRE = b"DATA\r\n" + BODY + b".\r\n" + b"NOOP\r\n"


def feed_parts(parts: list[bytes], **settings: object) -> list[Output]:
    session = drive(R, **settings)
    out: list[Output] = []
    for part in parts:
        out += session.feed(part)
    return out


def test_terminator_fed_byte_by_byte() -> None:
    out = feed_parts([WIRE[i : i + 1] for i in range(len(WIRE))])
    assert summary(out) == [Code.START_MAIL_INPUT, MESSAGE, Code.OK]
    assert messages(out)[0].data == b"Subject: split\r\n\r\n.dot\r\nline\r\n"


def test_terminator_split_at_every_boundary() -> None:
    for cut in range(len(WIRE) + 1):
        out = feed_parts([WIRE[:cut], WIRE[cut:]])
        assert summary(out) == [Code.START_MAIL_INPUT, MESSAGE, Code.OK], cut
        assert messages(out)[0].data == b"Subject: split\r\n\r\n.dot\r\nline\r\n", cut


def test_terminator_split_in_three_around_the_end() -> None:
    start = len(b"DATA\r\n") + len(BODY) - 4
    for first in range(start, len(WIRE)):
        for second in range(first, len(WIRE) + 1):
            out = feed_parts([WIRE[:first], WIRE[first:second], WIRE[second:]])
            assert summary(out) == [Code.START_MAIL_INPUT, MESSAGE, Code.OK], (first, second)
            assert messages(out)[0].data.endswith(b"line\r\n"), (first, second)


def test_empty_message_split_right_after_354() -> None:
    for parts in ([b"DATA\r\n", b".\r\n"], [b"DATA\r\n", b".", b"\r\n"], [b"DATA\r\n.", b"\r", b"\n"]):
        out = feed_parts(parts)
        assert summary(out) == [Code.START_MAIL_INPUT, MESSAGE], parts
        assert messages(out)[0].data == b""


@pytest.mark.parametrize(
    ("variant", "kept"),
    [
        (b"\n.\n", b"\n.\n"),
        (b"\r.\r", b"\r.\r"),
        (b"\n.\r\n", b"\n.\r\n"),
        (b"\r.\r\n", b"\r.\r\n"),
        (b"\n.\r", b"\n.\r"),
        # CRLF then a line ".<LF>MAIL...": a line starting with a dot, so the dot is unstuffed
        (b"\r\n.\n", b"\r\n\n"),
    ],
)
def test_bare_lf_and_cr_do_not_end_data(variant: bytes, kept: bytes) -> None:
    smuggled = b"MAIL FROM:<evil@example.test>\r\nRCPT TO:<x@example.test>\r\nafter\r\n"
    wire = b"DATA\r\nbefore" + variant + smuggled + b".\r\nNOOP\r\n"
    for parts in ([wire], [wire[i : i + 1] for i in range(len(wire))]):
        out = feed_parts(parts)
        assert summary(out) == [Code.START_MAIL_INPUT, MESSAGE, Code.OK]
        assert messages(out)[0].data == b"before" + kept + smuggled


def test_pipelined_transactions_in_one_feed_are_handled_in_order() -> None:
    session = drive(G)
    out = session.feed(
        b"MAIL FROM:<a@example.test>\r\nRCPT TO:<b@example.test>\r\nDATA\r\none\r\n.\r\n"
        b"MAIL FROM:<c@example.test>\r\nRCPT TO:<d@example.test>\r\nRCPT TO:<e@example.test>\r\nDATA\r\n"
        b"..two\r\n.\r\nRSET\r\nQUIT\r\nNOOP\r\n"
    )
    assert summary(out) == [
        Code.OK, Code.OK, Code.START_MAIL_INPUT, MESSAGE,
        Code.OK, Code.OK, Code.OK, Code.START_MAIL_INPUT, MESSAGE,
        Code.OK, Code.CLOSING, CLOSED,
    ]
    first, second = messages(out)
    assert (first.envelope.mail_from, first.envelope.rcpt_to, first.data) == (
        "a@example.test", ["b@example.test"], b"one\r\n")
    assert (second.envelope.mail_from, second.envelope.rcpt_to, second.data) == (
        "c@example.test", ["d@example.test", "e@example.test"], b".two\r\n")
    assert session.messages == 2


def test_refused_data_makes_pipelined_lines_commands() -> None:
    """RFC 2920 section 3.1: after a refused DATA the client's message lines are commands."""
    session = drive(M)
    assert summary(session.feed(b"DATA\r\nNOOP\r\n.\r\n")) == [
        Code.BAD_SEQUENCE, Code.OK, Code.SYNTAX_ERROR]


def test_oversize_message_is_552_without_a_message_event() -> None:
    body = b"x" * 98 + b"\r\n"  # 100 octets as stored
    assert summary(deliver(body + b".\r\n", max_message_size=100)) == [Code.START_MAIL_INPUT, MESSAGE]
    out = deliver(b"y" + body + b".\r\n", max_message_size=100)
    assert summary(out) == [Code.START_MAIL_INPUT, Code.EXCEEDED_STORAGE]
    # the session goes on with a fresh transaction
    session = drive(R, max_message_size=100)
    session.feed(b"DATA\r\n" + b"z" * 5000)
    assert summary(session.feed(b"\r\n.\r\n" + MAIL.encode() + b"\r\n")) == [Code.EXCEEDED_STORAGE, Code.OK]
    assert session.messages == 0


def test_size_limit_is_exact_at_every_chunk_boundary() -> None:
    body = b"x" * 98 + b"\r\n"
    for size, expected in ((100, MESSAGE), (99, Code.EXCEEDED_STORAGE)):
        wire = b"DATA\r\n" + body + b".\r\n"
        for cut in range(len(wire) + 1):
            out = feed_parts([wire[:cut], wire[cut:]], max_message_size=size)
            assert summary(out) == [Code.START_MAIL_INPUT, expected], (size, cut)


def test_no_size_limit_when_zero() -> None:
    out = deliver(b"x" * 100_000 + b"\r\n.\r\n", max_message_size=0)
    assert len(messages(out)[0].data) == 100_002


def test_rset_quit_and_disconnect_inside_data_store_nothing() -> None:
    # RSET and QUIT inside DATA are content; only the terminator ends the message.
    out = deliver(b"RSET\r\nQUIT\r\n.\r\n")
    assert messages(out)[0].data == b"RSET\r\nQUIT\r\n"
    session = drive(R)
    assert summary(session.feed(b"DATA\r\nunfinished\r\n")) == [Code.START_MAIL_INPUT]
    session.close()
    assert session.messages == 0


# -- RFC 1870: the size counts the message, not the stuffing dots --------------------------------


def stuffed_message(size: int) -> tuple[bytes, bytes]:
    """(the message of exactly ``size`` octets, every line starting with a dot; its wire form)."""
    full, rest = divmod(size - 3, 10)  # lines ".ddddddd" and a last one of 3 to 12 octets
    content = b".ddddddd\r\n" * full + b"." + b"d" * rest + b"\r\n"
    assert len(content) == size
    return content, (b"\r\n" + content).replace(b"\r\n.", b"\r\n..")[2:] + b".\r\n"


@pytest.mark.parametrize("stuffed", [True, False], ids=["stuffed", "plain"])
def test_size_limit_counts_the_message_without_stuffing_dots(stuffed: bool) -> None:
    limit = 120
    for size, expected in ((limit, MESSAGE), (limit + 1, Code.EXCEEDED_STORAGE), (limit - 1, MESSAGE)):
        if stuffed:
            content, wire = stuffed_message(size)
        else:
            content = b"p" * (size - 2) + b"\r\n"
            wire = content + b".\r\n"
        data = b"DATA\r\n" + wire
        chunkings = [[data], [data[i : i + 1] for i in range(len(data))]]
        chunkings += [[data[:cut], data[cut:]] for cut in range(len(data) + 1)]
        chunkings += [[data[i : i + 7] for i in range(0, len(data), 7)]]
        for parts in chunkings:
            out = feed_parts(parts, max_message_size=limit)
            assert summary(out) == [Code.START_MAIL_INPUT, expected], (size, [len(p) for p in parts])
            if expected == MESSAGE:
                assert messages(out)[0].data == content


def test_size_limit_with_stuffing_keeps_only_bounded_memory() -> None:
    """A message far over the limit is dropped while it streams in, stuffed lines or not."""
    session = drive(R, max_message_size=1000)
    session.feed(b"DATA\r\n")
    for _ in range(200):
        session.feed(b"..xx\r\n" * 100)
        assert session.data_held <= 1000 * 2
    assert summary(session.feed(b".\r\n")) == [Code.EXCEEDED_STORAGE]


# -- over-long AUTH lines: one answer however TCP splits them ------------------------------------


def auth_session(mechanism: str) -> SMTPSession:
    session = new_session(auth="accept-any")
    assert summary(session.feed(b"EHLO client.example\r\n")) == [Code.OK]
    assert summary(session.feed(f"AUTH {mechanism}\r\n".encode())) == [Code.AUTH_CHALLENGE]
    return session


def chunkings(line: bytes) -> list[list[bytes]]:
    """Ways TCP may deliver ``line``: whole, split anywhere near the 12,288 limit, byte by byte there."""
    ways = [[line]]
    for cut in (1, 100, 4096, AUTH_LINE_MAX - 2, AUTH_LINE_MAX - 1, AUTH_LINE_MAX, AUTH_LINE_MAX + 1,
                AUTH_LINE_MAX + 2, len(line) - 2, len(line) - 1):
        ways.append([line[:cut], line[cut:]])
    start = AUTH_LINE_MAX - 3
    ways.append([line[:start]] + [line[i : i + 1] for i in range(start, len(line))])
    ways.append([line[i : i + 1000] for i in range(0, len(line), 1000)])
    return ways


@pytest.mark.parametrize("length", [AUTH_LINE_MAX + 1, AUTH_LINE_MAX + 2, AUTH_LINE_MAX + 10, 50_000])
def test_over_long_sasl_response_ends_the_exchange_however_chunked(length: int) -> None:
    response = base64.b64encode(b"u" * length)[: length - 2] + b"\r\n"  # the line is `length` octets
    assert len(response) == length
    for parts in chunkings(response + MAIL.encode() + b"\r\n"):
        session = auth_session("LOGIN")
        out: list[Output] = []
        for part in parts:
            out += session.feed(part)
        # the response is refused with 501, and the next line is a command, not the password
        assert summary(out) == [Code.PARAMETER_SYNTAX, Code.OK], [len(p) for p in parts]
        assert "longer than 12288 octets" in out[0].text
        assert session.state is State.MAIL and session.auth_user is None


def test_sasl_response_at_the_limit_is_read() -> None:
    user = b"\0" + b"u" * 9000 + b"\0p"
    response = base64.b64encode(user) + b"\r\n"
    assert len(response) <= AUTH_LINE_MAX
    for parts in chunkings(response + b"NOOP\r\n")[:3]:
        session = auth_session("PLAIN")
        out = [item for part in parts for item in session.feed(part)]
        assert summary(out) == [Code.AUTH_SUCCEEDED, Code.OK]


@pytest.mark.parametrize("length", [AUTH_LINE_MAX + 1, 30_000])
def test_over_long_auth_command_gets_the_same_answer_however_chunked(length: int) -> None:
    line = b"AUTH PLAIN " + b"A" * (length - len(b"AUTH PLAIN ") - 2) + b"\r\n"
    for parts in chunkings(line + b"NOOP\r\n"):
        session = new_session(auth="accept-any")
        session.feed(b"EHLO client.example\r\n")
        out = [item for part in parts for item in session.feed(part)]
        assert summary(out) == [Code.SYNTAX_ERROR, Code.OK], [len(p) for p in parts]


# -- credentials never reach the transcript (debug logs) --------------------------------------------


def test_transcript_hides_auth_arguments_and_responses() -> None:
    session = new_session(auth="accept-any")
    session.transcript = []
    secret_plain = base64.b64encode(b"\0ann\0s3cret-plain")
    secret_user, secret_pass = base64.b64encode(b"ann"), base64.b64encode(b"s3cret-login")
    session.feed(b"EHLO client.example\r\nAUTH PLAIN " + secret_plain + b"\r\n")
    session.feed(b"RSET\r\n")
    session.auth_user = None  # log in again, pipelined this time
    session.feed(b"AUTH LOGIN\r\n" + secret_user + b"\r\n" + secret_pass + b"\r\nNOOP\r\n")
    session.auth_user = None
    session.feed(b"AUTH LOGIN " + secret_user + b"\r\n*\r\n")
    text = b"\n".join(session.transcript)
    for secret in (secret_plain, secret_user, secret_pass):
        assert secret not in text
    assert session.transcript == [
        b"EHLO client.example\r\n", b"AUTH PLAIN (initial response hidden)", b"RSET\r\n",
        b"AUTH LOGIN\r\n", b"(AUTH response hidden)", b"(AUTH response hidden)", b"NOOP\r\n",
        b"AUTH LOGIN (initial response hidden)", b"*\r\n",
    ]
