"""Differential test: the same SMTP sessions against aiosmtpd and against smtp-sink.

aiosmtpd is the maintained asyncio SMTP server of the Python world and serves as an
independent oracle. Every session below is replayed byte for byte over raw sockets against
both servers and the reply CODES are compared. Where the two disagree, the difference is
listed in :data:`DIFFERENCES` with the RFC section that says which answer is right; any other
disagreement fails the test. The aiosmtpd side of each difference is asserted too, so the
table cannot silently go stale when aiosmtpd changes.
"""

from __future__ import annotations

import base64
import socket
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from aiosmtpd.controller import Controller
from support.servers import Servers
from support.wire import free_port

from smtp_sink.replies import Code

# -- the sessions -----------------------------------------------------------------------------

# One step: the bytes to send at once and how many replies they produce.
Step = tuple[bytes, int]


def cmd(*lines: str) -> Step:
    """One command, or several pipelined in one send (RFC 2920): one reply each."""
    return b"".join(line.encode("utf-8", "surrogateescape") + b"\r\n" for line in lines), len(lines)


def raw(data: bytes, replies: int = 1) -> Step:
    """Exact bytes (message content, odd line endings) producing ``replies`` replies."""
    return data, replies


EHLO = cmd("EHLO client.example")
MAIL = cmd("MAIL FROM:<sender@example.test>")
RCPT = cmd("RCPT TO:<rcpt@example.test>")
BODY = raw(b"Subject: t\r\n\r\nhello\r\n.\r\n")
QUIT = cmd("QUIT")
LONG = "x" * 600

SESSIONS: dict[str, list[Step]] = {
    "ehlo_mail": [EHLO, MAIL, RCPT, cmd("DATA"), BODY, QUIT],
    "helo_mail": [cmd("HELO client.example"), MAIL, RCPT, cmd("DATA"), BODY, QUIT],
    "lower_case": [cmd("ehlo c.example", "mail from:<a@example.test>", "rcpt to:<b@example.test>", "data"),
                   BODY, cmd("quit")],
    "mixed_case_keywords": [cmd("EhLo c.example", "MaIl FrOm:<a@example.test>", "RcPt To:<b@example.test>")],
    "before_helo": [MAIL, RCPT, cmd("DATA"), cmd("RSET"), cmd("NOOP"), QUIT],
    "rcpt_before_mail": [EHLO, RCPT, QUIT],
    "data_before_rcpt": [EHLO, cmd("DATA"), MAIL, cmd("DATA"), QUIT],
    "nested_mail": [EHLO, MAIL, MAIL, RCPT, MAIL, QUIT],
    "helo_without_name": [cmd("HELO"), cmd("EHLO"), cmd("HELO client.example"), QUIT],
    "mail_syntax": [EHLO, cmd("MAIL"), cmd("MAIL FROM"), cmd("MAIL TO:<a@example.test>"), cmd("MAIL FROM:"),
                    cmd("MAIL FROM:<a@example.test"), QUIT],
    "mail_not_an_address": [EHLO, cmd("MAIL FROM:<not an address>"), QUIT],
    "rcpt_syntax": [EHLO, MAIL, cmd("RCPT"), cmd("RCPT TO"), cmd("RCPT FROM:<a@example.test>"), cmd("RCPT TO:"),
                    cmd("RCPT TO:<>"), QUIT],
    "mail_params": [EHLO, cmd("MAIL FROM:<a@example.test> SIZE=100"), cmd("RSET"),
                    cmd("MAIL FROM:<a@example.test> SIZE=999999999999"),
                    cmd("MAIL FROM:<a@example.test> FOO=1"),
                    cmd("MAIL FROM:<a@example.test> BODY=8BITMIME"), cmd("RSET"),
                    cmd("MAIL FROM:<a@example.test> BODY=7BIT"), cmd("RSET"),
                    cmd("MAIL FROM:<a@example.test> BODY=NONSENSE"),
                    cmd("MAIL FROM:<a@example.test> SMTPUTF8=yes"),
                    cmd("MAIL FROM:<a@example.test> SIZE=abc"), QUIT],
    "rcpt_params": [EHLO, MAIL, cmd("RCPT TO:<b@example.test> FOO=1"), RCPT, QUIT],
    "args_to_argless_commands": [EHLO, MAIL, RCPT, cmd("DATA now"), cmd("RSET now"), cmd("QUIT now"),
                                 cmd("NOOP with some args"), QUIT],
    "pipelined_envelope": [EHLO, cmd("MAIL FROM:<a@example.test>", "RCPT TO:<b@example.test>",
                                     "RCPT TO:<c@example.test>", "DATA"), BODY, QUIT],
    "pipelined_everything": [EHLO, raw(b"MAIL FROM:<a@example.test>\r\nRCPT TO:<b@example.test>\r\nDATA\r\n"
                                       b"Subject: p\r\n\r\nbody\r\n.\r\nNOOP\r\nQUIT\r\n", 6)],
    "pipelined_with_errors": [EHLO, cmd("RCPT TO:<b@example.test>", "MAIL FROM:<a@example.test>", "DATA",
                                        "RCPT TO:<b@example.test>", "MAIL FROM:<x@example.test>", "RSET"), QUIT],
    "dot_stuffing": [EHLO, MAIL, RCPT, cmd("DATA"),
                     raw(b"..leading dot\r\n..\r\n...\r\nmid.dle\r\n.\r\n"), QUIT],
    "empty_message": [EHLO, MAIL, RCPT, cmd("DATA"), raw(b".\r\n"), QUIT],
    "two_messages": [EHLO, MAIL, RCPT, cmd("DATA"), BODY, MAIL, RCPT, cmd("DATA"), BODY, QUIT],
    "rset_mid_transaction": [EHLO, MAIL, RCPT, cmd("RSET"), RCPT, cmd("DATA"), MAIL, RCPT, QUIT],
    "ehlo_resets_transaction": [EHLO, MAIL, RCPT, EHLO, RCPT, MAIL, QUIT],
    "help": [cmd("HELP"), EHLO, cmd("HELP"), cmd("HELP MAIL"), cmd("HELP rcpt"), cmd("HELP NOSUCHTOPIC"),
             cmd("HELP STATUS"), QUIT],
    "vrfy": [cmd("VRFY someone@example.test"), cmd("VRFY <someone@example.test>"), cmd("VRFY"), EHLO,
             cmd("VRFY postmaster"), QUIT],
    "expn": [EHLO, cmd("EXPN staff"), QUIT],
    "noop": [cmd("NOOP"), cmd("NOOP anything at all"), EHLO, MAIL, cmd("NOOP"), RCPT, QUIT],
    "obsolete_commands": [EHLO, cmd("SEND FROM:<a@example.test>"), cmd("SOML FROM:<a@example.test>"),
                          cmd("SAML FROM:<a@example.test>"), cmd("TURN"), QUIT],
    "unknown_and_empty": [cmd("FOO"), cmd(""), cmd("MAILFROM:<a@example.test>"), EHLO, cmd("XYZZY arg"), QUIT],
    "non_ascii_verb": [EHLO, raw(b"\xffNOOP\r\n"), cmd("NOOP"), QUIT],
    "long_line": [EHLO, cmd("NOOP " + LONG), cmd("NOOP"), QUIT],
    "null_sender": [EHLO, cmd("MAIL FROM:<>"), RCPT, cmd("DATA"), BODY, QUIT],
    "space_after_colon": [EHLO, cmd("MAIL FROM: <a@example.test>"), cmd("RCPT TO: <b@example.test>"), QUIT],
    "bare_addresses": [EHLO, cmd("MAIL FROM:a@example.test"), cmd("RCPT TO:b@example.test"), QUIT],
    "postmaster": [EHLO, MAIL, cmd("RCPT TO:<Postmaster>"), cmd("RCPT TO:<postmaster@example.test>"), QUIT],
    "source_route": [EHLO, MAIL, cmd("RCPT TO:<@relay.example,@hop.example:user@example.test>"), QUIT],
    "smtputf8": [EHLO, cmd("MAIL FROM:<ünïcode@exämple.test> SMTPUTF8"), cmd("RCPT TO:<用户@例子.测试>"),
                 cmd("DATA"), raw("Subject: ü\r\n\r\nü\r\n.\r\n".encode()), QUIT],
    "non_ascii_without_smtputf8": [EHLO, cmd("MAIL FROM:<ünïcode@exämple.test>"), MAIL,
                                   cmd("RCPT TO:<用户@例子.测试>"), QUIT],
    "helo_params": [cmd("HELO client.example"), cmd("MAIL FROM:<a@example.test> SIZE=10"), QUIT],
    "bare_lf_smuggling": [EHLO, MAIL, RCPT, cmd("DATA"),
                          raw(b"Subject: s\r\n\r\nx\n.\nMAIL FROM:<evil@example.test>\n.\r\nend\r\n"
                              b"\r.\rRSET\r\n.\nQUIT\r\n.\r\n"), QUIT],
    "binary_body": [EHLO, cmd("MAIL FROM:<a@example.test> BODY=8BITMIME"), RCPT, cmd("DATA"),
                    raw(b"Subject: b\r\n\r\n\x00\xff\xfe\x80 bytes\r\n\tx\r\n.\r\n"), QUIT],
    "long_data_line": [EHLO, MAIL, RCPT, cmd("DATA"), raw(b"Subject: l\r\n\r\n" + b"y" * 2000 + b"\r\n.\r\n"),
                       cmd("NOOP"), QUIT],
}


@dataclass(frozen=True)
class Difference:
    """One expected difference: reply number ``index`` of ``session`` (0 = first after 220)."""

    aiosmtpd: int | str
    ours: int
    reason: str


HELP_214 = "RFC 5321 section 4.1.1.8 / 4.2.3: HELP is answered 214 (help message); aiosmtpd sends 250"
HELP_504 = ("RFC 5321 section 4.2.3: 504 command parameter not implemented for an unknown HELP topic; "
            "aiosmtpd sends 501 syntax error although the syntax is valid")
OBSOLETE_502 = ("RFC 5321 section 4.2.4 / 4.5.1: SEND, SOML, SAML and TURN are recognized but not "
                "implemented: 502; aiosmtpd sends 500 (unrecognized)")
EXPN_550 = ("RFC 5321 section 3.5.2: EXPN of a name that is not a list is 550; aiosmtpd does not "
            "implement EXPN at all (502, allowed by section 7.3)")
HELP_STATUS_211 = ("RFC 5321 section 4.2.3: 211 system status; aiosmtpd knows no STATUS topic (501)")
UNCLOSED_PATH_501 = ("RFC 5321 section 4.1.2: Path = \"<\" [ A-d-l \":\" ] Mailbox \">\": a path without its "
                     "closing '>' is a syntax error; aiosmtpd accepts it")
NULL_FORWARD_PATH_501 = ("RFC 5321 section 4.1.1.3: RCPT TO takes a Forward-path, which cannot be the null "
                         "path '<>' (only MAIL FROM may be null); aiosmtpd accepts it")
NESTED_AFTER_REFUSAL = ("follows from the 553 above: our MAIL was refused, so the next MAIL opens the "
                        "transaction (250) instead of being nested (503)")
NOT_ADDRESS_501 = ("RFC 5321 section 4.1.2: 'not an address' is not a Mailbox (Local-part \"@\" Domain): a "
                   "syntax error in the argument (501); aiosmtpd's RFC 5322 parser accepts it")
NON_ASCII_553 = ("RFC 6531 sections 3.4 and 3.5: without the SMTPUTF8 parameter a non-ASCII address must be refused "
                 "(553 mailbox name not allowed); aiosmtpd accepts it")
LONG_TEXT_LINE_250 = ("RFC 5321 section 4.5.3.1: 'implementation techniques that impose no limits on the "
                      "length of these objects should be used'; a sink keeps a 2000-octet line (4.5.3.1.6 "
                      "limits what a client may send, not what a server must refuse); aiosmtpd answers 500")
HELO_PARAMS_555 = ("RFC 5321 section 4.1.1.11: a MAIL parameter the session does not support (no EHLO, so "
                   "no extensions) is 555; aiosmtpd answers 501")

# (session, reply index) -> Difference. Indices count replies, not steps.
DIFFERENCES: dict[tuple[str, int], Difference] = {}


def _diff(session: str, index: int, aiosmtpd: int | str, ours: int, reason: str) -> None:
    DIFFERENCES[(session, index)] = Difference(aiosmtpd, ours, reason)


_diff("help", 0, 250, Code.HELP, HELP_214)
_diff("help", 2, 250, Code.HELP, HELP_214)
_diff("help", 3, 250, Code.HELP, HELP_214)
_diff("help", 4, 250, Code.HELP, HELP_214)
_diff("help", 5, 501, Code.PARAMETER_NOT_IMPLEMENTED, HELP_504)
for _i in range(1, 5):
    _diff("obsolete_commands", _i, 500, Code.NOT_IMPLEMENTED, OBSOLETE_502)
_diff("help", 6, 501, Code.SYSTEM_STATUS, HELP_STATUS_211)
_diff("expn", 1, 502, Code.MAILBOX_UNAVAILABLE, EXPN_550)
_diff("mail_syntax", 5, 250, Code.PARAMETER_SYNTAX, UNCLOSED_PATH_501)
_diff("mail_not_an_address", 1, 250, Code.PARAMETER_SYNTAX, NOT_ADDRESS_501)
_diff("rcpt_syntax", 6, 250, Code.PARAMETER_SYNTAX, NULL_FORWARD_PATH_501)
_diff("non_ascii_without_smtputf8", 1, 250, Code.MAILBOX_NAME_NOT_ALLOWED, NON_ASCII_553)
_diff("non_ascii_without_smtputf8", 2, 503, Code.OK, NESTED_AFTER_REFUSAL)
_diff("non_ascii_without_smtputf8", 3, 250, Code.MAILBOX_NAME_NOT_ALLOWED, NON_ASCII_553)
_diff("long_data_line", 4, 500, Code.OK, LONG_TEXT_LINE_250)
_diff("helo_params", 1, 501, Code.PARAMETERS_NOT_RECOGNIZED, HELO_PARAMS_555)


# -- running sessions -------------------------------------------------------------------------

CLOSED = "closed"


def run_session(port: int, steps: list[Step]) -> list[int | str]:
    """Replay ``steps`` on a fresh connection; the reply codes after the 220 (``closed`` at EOF)."""
    codes: list[int | str] = []
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        reader = sock.makefile("rb")
        greeting = reader.readline()
        assert greeting.startswith(b"220"), greeting
        for data, count in steps:
            try:
                sock.sendall(data)
            except OSError:
                codes.extend([CLOSED] * count)
                continue
            for _ in range(count):
                codes.append(_read_reply(reader))
    return codes


def _read_reply(reader) -> int | str:
    while True:
        line = reader.readline()
        if not line:
            return CLOSED
        if line[3:4] != b"-":
            return int(line[:3])


def ehlo_keywords(port: int) -> set[str]:
    """The EHLO keywords a server advertises (first word of each line after the greeting line)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        reader = sock.makefile("rb")
        reader.readline()
        sock.sendall(b"EHLO client.example\r\n")
        words = []
        while True:
            line = reader.readline().decode()
            words.append(line[4:].split(" ")[0].strip().upper())
            if line[3:4] != "-":
                break
    return set(words[1:])


class AcceptAll:
    """aiosmtpd handler: accept every message, keep its content (dot-stuffing undone)."""

    def __init__(self) -> None:
        self.contents: list[bytes] = []

    async def handle_DATA(self, server, session, envelope) -> str:
        self.contents.append(envelope.original_content)
        return "250 OK"


HANDLER = AcceptAll()


@pytest.fixture(scope="module")
def aiosmtpd_port() -> Iterator[int]:
    """aiosmtpd on 127.0.0.1 with its defaults (SMTPUTF8 on, 32 MiB size limit, no AUTH)."""
    controller = Controller(HANDLER, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield controller.port
    finally:
        controller.stop()


TRACE_PREFIXES = (b"Return-Path:", b"Received:", b"X-Original-To:", b"X-Sink-Auth:", b"X-Sink-Session:", b"\t")


def without_trace_headers(stored: bytes) -> bytes:
    """The message as the client sent it: the trace header lines the store adds are removed."""
    pos = 0
    while stored.startswith(TRACE_PREFIXES, pos):
        pos = stored.index(b"\r\n", pos) + 2
    return stored[pos:]


# -- the tests --------------------------------------------------------------------------------


def test_enough_sessions() -> None:
    assert len(SESSIONS) >= 25
    for session, index in DIFFERENCES:
        assert session in SESSIONS, session
        assert index < sum(count for _, count in SESSIONS[session]), (session, index)


def assert_same_codes(name: str, steps: list[Step], ours_port: int, theirs_port: int,
                      differences: dict[tuple[str, int], Difference]) -> None:
    """Replay ``steps`` on both servers; the codes must match but for the listed differences."""
    theirs = run_session(theirs_port, steps)
    ours = run_session(ours_port, steps)
    expected = list(theirs)
    for index, code in enumerate(theirs):
        diff = differences.get((name, index))
        if diff is not None:
            assert code == diff.aiosmtpd, f"aiosmtpd changed at reply {index}: table is stale ({diff.reason})"
            expected[index] = int(diff.ours)
    assert ours == expected, f"aiosmtpd {theirs}"


@pytest.mark.parametrize("name", list(SESSIONS))
def test_same_codes_as_aiosmtpd(name: str, server, aiosmtpd_port: int) -> None:
    assert_same_codes(name, SESSIONS[name], server.smtp_port, aiosmtpd_port, DIFFERENCES)


CONTENT_SESSIONS = ["ehlo_mail", "helo_mail", "lower_case", "pipelined_envelope", "pipelined_everything",
                    "dot_stuffing", "empty_message", "two_messages", "null_sender", "smtputf8",
                    "bare_lf_smuggling", "binary_body"]


@pytest.mark.parametrize("name", CONTENT_SESSIONS)
def test_same_message_content_as_aiosmtpd(name: str, server, aiosmtpd_port: int) -> None:
    """What we store (trace headers aside) is byte for byte what aiosmtpd hands its handler."""
    HANDLER.contents.clear()
    run_session(aiosmtpd_port, SESSIONS[name])
    run_session(server.smtp_port, SESSIONS[name])
    stored = sorted(without_trace_headers(server.store.read(i)) for i in server.store.ids())
    accepted = sorted(HANDLER.contents)
    assert accepted, f"aiosmtpd received no message in {name}"
    assert stored == accepted


def test_long_data_line_is_kept(server) -> None:
    """The one content difference (LONG_TEXT_LINE_250): we store the 2000-octet line unchanged."""
    run_session(server.smtp_port, SESSIONS["long_data_line"])
    [message_id] = server.store.ids()
    assert without_trace_headers(server.store.read(message_id)) == b"Subject: l\r\n\r\n" + b"y" * 2000 + b"\r\n"


def test_ehlo_keywords_match(server, aiosmtpd_port: int) -> None:
    # RFC 2920: PIPELINING is supported by aiosmtpd (it reads a stream) but not advertised.
    expected_differences = {"PIPELINING"}
    ours = ehlo_keywords(server.smtp_port)
    theirs = ehlo_keywords(aiosmtpd_port)
    assert ours - theirs == expected_differences
    assert theirs - ours == set()


# -- AUTH (RFC 4954) against aiosmtpd's own AUTH ---------------------------------------------------

def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


GOOD_PLAIN = "AUTH PLAIN " + _b64("\0ann@example.test\0s3cret")
AUTH_SESSIONS: dict[str, list[Step]] = {
    "plain_initial": [EHLO, cmd(GOOD_PLAIN), MAIL, RCPT, cmd("DATA"), BODY, QUIT],
    "plain_continuation": [EHLO, cmd("AUTH PLAIN"), cmd(_b64("\0ann@example.test\0s3cret")), MAIL, QUIT],
    "login": [EHLO, cmd("AUTH LOGIN"), cmd(_b64("ann@example.test")), cmd(_b64("s3cret")), MAIL, QUIT],
    "login_initial": [EHLO, cmd("AUTH LOGIN " + _b64("ann@example.test")), cmd(_b64("s3cret")), QUIT],
    "wrong_password": [EHLO, cmd("AUTH PLAIN " + _b64("\0ann@example.test\0nope")), MAIL, cmd(GOOD_PLAIN), QUIT],
    "unknown_user": [EHLO, cmd("AUTH LOGIN"), cmd(_b64("bob@example.test")), cmd(_b64("s3cret")), QUIT],
    "mail_before_auth": [EHLO, MAIL, QUIT],
    "unknown_mechanism": [EHLO, cmd("AUTH GSSAPI"), cmd("NOOP"), QUIT],
    "cancelled": [EHLO, cmd("AUTH LOGIN"), cmd("*"), cmd("NOOP"), QUIT],
    "not_base64": [EHLO, cmd("AUTH PLAIN !!!"), cmd("AUTH LOGIN"), cmd("%%%"), cmd("NOOP"), QUIT],
    "auth_twice": [EHLO, cmd(GOOD_PLAIN), cmd(GOOD_PLAIN), QUIT],
    "auth_before_ehlo": [cmd(GOOD_PLAIN), EHLO, cmd(GOOD_PLAIN), QUIT],
    "pipelined_auth": [EHLO, cmd(GOOD_PLAIN, "MAIL FROM:<a@example.test>", "RCPT TO:<b@example.test>"), QUIT],
}
# Every AUTH session above answers exactly as aiosmtpd does; a future difference goes here.
AUTH_DIFFERENCES: dict[tuple[str, int], Difference] = {}


class CheckUsers:
    """aiosmtpd authenticator with the same one-user table as our ``[auth] users``."""

    def __call__(self, server, session, envelope, mechanism, auth_data):
        from aiosmtpd.smtp import AuthResult, LoginPassword

        ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
            b"ann@example.test", b"s3cret")
        return AuthResult(success=ok, handled=False)


@pytest.fixture(scope="module")
def aiosmtpd_auth_port() -> Iterator[int]:
    """aiosmtpd requiring AUTH (PLAIN, LOGIN) on plaintext, like ``[auth] mode = "users"``."""
    controller = Controller(AcceptAll(), hostname="127.0.0.1", port=free_port(), authenticator=CheckUsers(),
                            auth_required=True, auth_require_tls=False)
    controller.start()
    try:
        yield controller.port
    finally:
        controller.stop()


@pytest.fixture
def auth_server(start_server: Servers):
    return start_server(auth={"mode": "users", "users": {"ann@example.test": "s3cret"}}, tls={"mode": "off"})


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")  # on purpose: plaintext like ours
@pytest.mark.parametrize("name", list(AUTH_SESSIONS))
def test_same_auth_codes_as_aiosmtpd(name: str, auth_server, aiosmtpd_auth_port: int) -> None:
    assert_same_codes(name, AUTH_SESSIONS[name], auth_server.smtp_port, aiosmtpd_auth_port, AUTH_DIFFERENCES)
