"""The fast path of the SMTP session (``SMTPSession._fast_command``: plain ``MAIL FROM:<a>``,
``RCPT TO:<b>`` and ``DATA``) against the general path (the command table only, ``fast = False``):
for generated sessions, under several configurations, both give byte-identical replies, the same
messages with the same envelopes, and end in the same state. And over a socket, the server's
replies to the common commands are exactly the general path's bytes."""

from __future__ import annotations

import socket

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smtp_sink import protocol
from smtp_sink.config import Config, PolicyConfig
from smtp_sink.policy import MailboxPolicy
from smtp_sink.protocol import CLOSE, START_TLS, MessageReceived, Settings, SMTPSession
from smtp_sink.replies import Reply
from smtp_sink.rules import Rule, RuleSet
from smtp_sink.server import SinkServer

ADDRESSES = ["a@b.test", "x.y@c.test", "Postmaster", "postmaster", "user@[127.0.0.1]", "@r.test:z@d.test",
             "bad address", "no-at", "", "ü@d.test", "f@ok.test", "sp ace@x.test", "a@b.test>", "<a@b.test",
             "a" * 70 + "@long.test", "a@" + "d" * 300 + ".test", "q\"@x.test", "\"quoted\"@x.test"]
LINES = st.one_of(
    st.sampled_from([
        b"EHLO c.test", b"HELO c.test", b"DATA", b"data", b"DATA x", b"RSET", b"NOOP", b"QUIT", b"VRFY a@b.test",
        b"MAIL FROM:<a@b.test> SIZE=10", b"MAIL FROM:<a@b.test> BODY=8BITMIME", b"MAIL FROM:<a@b.test> SMTPUTF8",
        b"MAIL FROM: <a@b.test>", b"RCPT TO: <a@b.test>", b"RCPT TO:<a@b.test> NOTIFY=NEVER",
        b"MAIL FROM:<a@b.test>>", b"RCPT TO:<<a@b.test>", b"MAIL  FROM:<a@b.test>", b"AUTH PLAIN AHUAcA==",
        b"Subject: hi\r\n\r\nbody\r\n.", b".", b"MAIL FROM:<a@b.test>\xff", b"RCPT TO:<\xc3\xbc@d.test>",
        b"MAIL FROM:<" + b"x" * 600 + b"@b.test>", b"HELP", b"STARTTLS", b"EHLO h\xc3\xbcst", b"EHLO a b",
        b"EHLO \x7f", b"HELO x\xc2\x85y", b"EHLO",
    ]),
    st.builds(lambda verb, address: verb + address.encode() + b">",
              st.sampled_from([b"MAIL FROM:<", b"RCPT TO:<", b"mail from:<", b"Rcpt To:<"]),
              st.sampled_from(ADDRESSES)),
)
POLICY = PolicyConfig(forbidden=("f@ok.test",), forwards={"x.y@c.test": "fw@d.test"}, unknown="accept")
CONFIGS = {
    "defaults": ({}, None),
    "two recipients, no SMTPUTF8": ({"max_recipients": 2, "smtputf8": False}, None),
    "login required": ({"auth": "users", "users": (("u", "p"),)}, None),
    "accept-any login": ({"auth": "accept-any"}, None),
    "mailbox policy": ({}, POLICY),
    "small budget": ({"output_budget": 80}, None),
    "STARTTLS offered, no size limit": ({"starttls": True, "max_message_size": 0}, None),
    "TLS required for AUTH": ({"auth": "accept-any", "require_tls": True}, None),
}
RULES = [
    Rule(stage="mail", code=451, schedule="nth", n=2),
    Rule(stage="rcpt", code=550, recipient="x.y@c.test"),
    Rule(stage="data", code=452, schedule="every", n=3),
    Rule(stage="after-data", code=554, schedule="first", n=1),
]


def make_session(config: str, fast: bool, rules: bool) -> SMTPSession:
    changes, policy_config = CONFIGS[config]
    session_settings = Settings.from_config(Config(), hostname="sink.test", **changes)
    policy = MailboxPolicy(policy_config or PolicyConfig(), rules=RuleSet(list(RULES) if rules else []))
    session = SMTPSession(session_settings, policy, peer="192.0.2.1")
    session.fast = fast
    return session


def wire(outputs: list[object]) -> list[object]:
    """What a caller sees: reply bytes, messages (envelope fields and data), markers."""
    seen: list[object] = []
    for item in outputs:
        if isinstance(item, Reply):
            # a reply whose wire form was made ahead (once per server, address or EHLO variant) is
            # exactly what encoding its code and lines gives
            assert item.encode() == Reply(item.code, item.lines).encode()
            seen.append(item.encode())
        elif isinstance(item, MessageReceived):
            env = item.envelope
            seen.append(("message", env.helo, env.esmtp, env.mail_from, tuple(env.rcpt_to), env.smtputf8, env.peer,
                         env.tls, env.auth_user, bytes(item.data)))
        elif item is CLOSE or item is START_TLS:
            seen.append(repr(item))
        else:
            seen.append(repr(item))
    return seen


def run(session: SMTPSession, chunks: list[bytes]) -> list[object]:
    seen = wire(session.greeting())
    for chunk in chunks:
        seen += wire(session.feed(chunk))
        while session.pending:
            seen += wire(session.resume())
    env = session.envelope
    return [*seen, session.state, env.mail_from, tuple(env.rcpt_to), session.messages]


@settings(max_examples=600, deadline=None)
@given(
    config=st.sampled_from(sorted(CONFIGS)),
    rules=st.booleans(),
    lines=st.lists(LINES, min_size=1, max_size=25),
    greet=st.booleans(),
    cuts=st.lists(st.integers(min_value=0, max_value=4000), max_size=6),
)
def test_the_fast_path_answers_like_the_command_table(config: str, rules: bool, lines: list[bytes], greet: bool,
                                                      cuts: list[int]) -> None:
    if greet:
        lines = [b"EHLO c.test", *lines]
    data = b"".join(line + b"\r\n" for line in lines)
    points = sorted({c % (len(data) + 1) for c in cuts})
    chunks = [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]
    fast = run(make_session(config, True, rules), chunks)
    general = run(make_session(config, False, rules), chunks)
    assert fast == general


def test_a_plain_transaction_takes_the_fast_path() -> None:
    """The test above compares something: the usual commands do go the fast way."""
    protocol._mailboxes.clear()
    session = make_session("defaults", True, False)
    session.feed(b"EHLO c.test\r\nMAIL FROM:<fast@path.test>\r\nRCPT TO:<to@path.test>\r\n")
    assert "fast@path.test" in protocol._mailboxes and "to@path.test" in protocol._mailboxes
    general = make_session("defaults", False, False)
    general.feed(b"EHLO c.test\r\nMAIL FROM:<general@path.test>\r\n")
    assert "general@path.test" not in protocol._mailboxes


def test_the_address_cache_stays_bounded() -> None:
    protocol._mailboxes.clear()
    session = make_session("defaults", True, False)
    session.feed(b"EHLO c.test\r\n")
    for n in range(protocol.MAILBOX_CACHE * 3):
        session.feed(f"MAIL FROM:<s{n}@x.test>\r\nRSET\r\n".encode())
        assert len(protocol._mailboxes) <= protocol.MAILBOX_CACHE


def _exchange(sock: socket.socket, line: bytes) -> bytes:
    sock.sendall(line + b"\r\n")
    got = b""
    while not got.endswith(b"\r\n") or got.splitlines()[-1][3:4] == b"-":
        got += sock.recv(4096)
    return got


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sender=st.sampled_from(["a@b.test", "x.y@c.test", "user@[127.0.0.1]", "@r.test:z@d.test"]),
       recipient=st.sampled_from(ADDRESSES[:6]))
def test_over_a_socket_the_replies_are_the_general_paths_bytes(server: SinkServer, sender: str,
                                                               recipient: str) -> None:
    commands = [b"EHLO c.test", f"MAIL FROM:<{sender}>".encode(), f"RCPT TO:<{recipient}>".encode(), b"DATA"]
    general = SMTPSession(server.smtp.settings, MailboxPolicy(PolicyConfig()), peer="127.0.0.1")
    general.fast = False
    expected = [b"".join(wire(general.greeting()))]  # type: ignore[arg-type]
    expected += [b"".join(wire(general.feed(line + b"\r\n"))) for line in commands]  # type: ignore[arg-type]
    with socket.create_connection(("127.0.0.1", server.smtp_port), timeout=10) as sock:
        got = [b""]
        while not got[0].endswith(b"\r\n"):
            got[0] += sock.recv(4096)
        got += [_exchange(sock, line) for line in commands]
        got.append(_exchange(sock, b"Subject: x\r\n\r\nbody\r\n."))
    expected.append(b"250 OK: queued as ")
    assert got[:-1] == expected[:-1] and got[-1].startswith(expected[-1])


@given(st.text(max_size=12))
def test_the_quick_helo_name_check_agrees_with_the_rule(name: str) -> None:
    assert protocol._valid_helo_name(name) == (bool(name) and all(" " < ch != "\x7f" for ch in name))


def test_replies_made_ahead_encode_as_their_lines() -> None:
    for made in (protocol.accepted("01JDQ9ZP3X8V2Y5K7M4N6R8T0W"), protocol._host_reply("220", "h.test"),
                 protocol._host_reply("221", "h.test"), protocol._OK, protocol._START_INPUT):
        assert made.wire and made.encode() == Reply(made.code, made.lines).encode()
