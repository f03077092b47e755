"""One test per code of the reply table: each is provoked on purpose through the real server."""

from __future__ import annotations

import base64
from collections.abc import Callable

import pytest
from support.servers import Servers
from support.wire import Wire, connect

from smtp_sink.replies import Code
from smtp_sink.rules import Rule
from smtp_sink.server import SinkServer

POLICY = """
[smtp]
max_recipients = 2
max_message_size = 1000
[policy]
mailboxes = ["ann@example.test", "bob@example.test", "carl@example.test"]
unknown = "550"
forbidden = ["root@*"]
forwards = { "old@example.test" = "ann@example.test" }
moved = { "gone@example.test" = "gone@elsewhere.test" }
"""


@pytest.fixture
def sink(start_server: Servers) -> SinkServer:
    return start_server(toml=POLICY)


def greeted(server: SinkServer) -> Wire:
    wire = connect(server.smtp_port)
    assert wire.cmd("EHLO c.test")[0] == 250
    return wire


def in_transaction(server: SinkServer) -> Wire:
    wire = greeted(server)
    assert wire.cmd("MAIL FROM:<x@example.test>")[0] == 250
    return wire


def code_after(wire: Wire, *commands: str) -> int:
    code = 0
    for command in commands:
        code = wire.cmd(command)[0]
    return code


def p211(s: SinkServer) -> int: return code_after(connect(s.smtp_port), "HELP STATUS")
def p214(s: SinkServer) -> int: return code_after(connect(s.smtp_port), "HELP")
def p220(s: SinkServer) -> int: return Wire(s.smtp_port).code()
def p221(s: SinkServer) -> int: return code_after(connect(s.smtp_port), "QUIT")
def p250(s: SinkServer) -> int: return code_after(connect(s.smtp_port), "NOOP")
def p251(s: SinkServer) -> int: return code_after(in_transaction(s), "RCPT TO:<old@example.test>")
def p252(s: SinkServer) -> int:
    s.policy.mailboxes.clear()  # nothing configured: nothing can be verified
    return code_after(connect(s.smtp_port), "VRFY someone@example.test")
def p354(s: SinkServer) -> int: return code_after(in_transaction(s), "RCPT TO:<ann@example.test>", "DATA")


def p421(s: SinkServer) -> int:
    s.rules.add(Rule(stage="connect", code=421, text="closing"))
    return Wire(s.smtp_port).code()


def p450(s: SinkServer) -> int:
    s.rules.add(Rule(stage="rcpt", code=450, text="mailbox busy"))
    return code_after(in_transaction(s), "RCPT TO:<ann@example.test>")


def p451(s: SinkServer) -> int:
    s.rules.add(Rule(stage="after-data", code=451, text="local error"))
    wire = in_transaction(s)
    code_after(wire, "RCPT TO:<ann@example.test>", "DATA")
    wire.send("Subject: x\r\n\r\nx\r\n.\r\n")
    return wire.code()


def p452(s: SinkServer) -> int:
    return code_after(in_transaction(s), "RCPT TO:<ann@example.test>", "RCPT TO:<bob@example.test>",
                      "RCPT TO:<carl@example.test>")


def p500(s: SinkServer) -> int: return code_after(connect(s.smtp_port), "FROBNICATE")
def p501(s: SinkServer) -> int: return code_after(connect(s.smtp_port), "HELO")
def p502(s: SinkServer) -> int: return code_after(connect(s.smtp_port), "TURN")
def p503(s: SinkServer) -> int: return code_after(greeted(s), "RCPT TO:<ann@example.test>")
def p504(s: SinkServer) -> int: return code_after(connect(s.smtp_port), "HELP FROBNICATE")
def p550(s: SinkServer) -> int: return code_after(in_transaction(s), "RCPT TO:<stranger@example.test>")
def p551(s: SinkServer) -> int: return code_after(in_transaction(s), "RCPT TO:<gone@example.test>")
def p552(s: SinkServer) -> int: return code_after(greeted(s), "MAIL FROM:<x@example.test> SIZE=5000")
def p553(s: SinkServer) -> int: return code_after(in_transaction(s), "RCPT TO:<root@example.test>")
def p554(s: SinkServer) -> int: return code_after(in_transaction(s), "RCPT TO:<stranger@example.test>", "DATA")
def p555(s: SinkServer) -> int: return code_after(greeted(s), "MAIL FROM:<x@example.test> FOO=1")


AUTH_PLAIN = "AUTH PLAIN " + base64.b64encode(b"\0ann@example.test\0s3cret").decode()
WRONG_PLAIN = "AUTH PLAIN " + base64.b64encode(b"\0ann@example.test\0wrong").decode()


def auth_sink(start: Servers, **auth: object) -> SinkServer:
    """A server with ``[auth] mode = "users"`` (and so TLS) on."""
    return start(auth={"mode": "users", "users": {"ann@example.test": "s3cret"}, **auth})


def a235(start: Servers) -> int: return code_after(greeted(auth_sink(start)), AUTH_PLAIN)
def a334(start: Servers) -> int: return code_after(greeted(auth_sink(start)), "AUTH LOGIN")
def a454(start: Servers) -> int:
    server = auth_sink(start)
    server.rules.add(Rule(stage="starttls", code=454, text="TLS not available"))
    return code_after(greeted(server), "STARTTLS")
def a530(start: Servers) -> int: return code_after(greeted(auth_sink(start)), "MAIL FROM:<x@example.test>")
def a535(start: Servers) -> int: return code_after(greeted(auth_sink(start)), WRONG_PLAIN)
def a538(start: Servers) -> int: return code_after(greeted(auth_sink(start, require_tls=True)), AUTH_PLAIN)


AUTH_PROVOKE: dict[int, Callable[[Servers], int]] = {
    int(name[1:]): func for name, func in globals().items() if name[:1] == "a" and name[1:].isdigit()
}


PROVOKE: dict[int, Callable[[SinkServer], int]] = {
    int(name[1:]): func for name, func in globals().items() if name[:1] == "p" and name[1:].isdigit()
}
SMTP_CODES = [211, 214, 220, 221, 250, 251, 252, 354, 421, 450, 451, 452,
              500, 501, 502, 503, 504, 550, 551, 552, 553, 554, 555]


def test_every_seed_code_has_a_provocation() -> None:
    assert sorted(PROVOKE) == SMTP_CODES
    assert all(Code(code) for code in SMTP_CODES)  # and each is in the one table


def test_every_code_of_the_table_is_provoked_by_a_test() -> None:
    assert sorted([*PROVOKE, *AUTH_PROVOKE]) == sorted(int(code) for code in Code)


@pytest.mark.parametrize("code", sorted(AUTH_PROVOKE))
def test_auth_and_tls_code_is_provoked_on_purpose(start_server: Servers, code: int) -> None:
    assert AUTH_PROVOKE[code](start_server) == code


@pytest.mark.parametrize("code", SMTP_CODES)
def test_code_is_provoked_on_purpose(sink: SinkServer, code: int) -> None:
    assert PROVOKE[code](sink) == code
