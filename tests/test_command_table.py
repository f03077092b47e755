"""The command table (``protocol.VERBS``) is the one source of the commands: it decides every 503
before a handler runs, HELP answers from it, and docs/smtp.md lists exactly its verbs."""

from __future__ import annotations

import re

import pytest
from support import ROOT
from support.wire import connect

from smtp_sink.config import Config
from smtp_sink.policy import MailboxPolicy
from smtp_sink.protocol import UNRECOGNIZED, VERBS, Settings, SMTPSession, State
from smtp_sink.replies import Code, Reply
from smtp_sink.rules import Rule, RuleSet
from smtp_sink.server import SinkServer

# One command line per verb (a new verb must be added here, see test_every_verb_has_a_sample).
SAMPLE = {
    "HELO": "HELO c.test", "EHLO": "EHLO c.test", "MAIL": "MAIL FROM:<a@example.test>",
    "RCPT": "RCPT TO:<b@example.test>", "DATA": "DATA", "RSET": "RSET", "NOOP": "NOOP", "QUIT": "QUIT",
    "VRFY": "VRFY b@example.test", "EXPN": "EXPN staff", "HELP": "HELP", "STARTTLS": "STARTTLS",
    "AUTH": "AUTH PLAIN", "SEND": "SEND FROM:<a@example.test>", "SOML": "SOML FROM:<a@example.test>",
    "SAML": "SAML FROM:<a@example.test>", "TURN": "TURN", "BDAT": "BDAT 10 LAST",
}
# Commands that bring a fresh session into each state the table names.
SETUP = {
    State.CONNECTED: [], State.GREETED: ["EHLO c.test"], State.MAIL: ["EHLO c.test", SAMPLE["MAIL"]],
    State.RCPT: ["EHLO c.test", SAMPLE["MAIL"], SAMPLE["RCPT"]],
}


def session_in(state: State) -> SMTPSession:
    """A session with every extension on, brought into ``state`` by real input."""
    settings = Settings.from_config(Config(), starttls=True, auth="accept-any")
    rules = RuleSet([Rule(stage="connect", code=554)] if state is State.NO_SERVICE else [])
    session = SMTPSession(settings, MailboxPolicy(Config().policy, rules=rules), peer="192.0.2.1")
    session.greeting()
    for line in SETUP.get(state, []):
        session.feed(line.encode() + b"\r\n")
    assert session.state is state
    return session


def say(session: SMTPSession, line: str) -> Reply:
    answer = session.feed(line.encode() + b"\r\n")[0]
    assert isinstance(answer, Reply)
    return answer


def test_every_verb_has_a_sample() -> None:
    assert set(SAMPLE) == set(VERBS)


CASES = [(verb, state) for verb in VERBS for state in [*SETUP, State.NO_SERVICE]]


@pytest.mark.parametrize(("verb", "state"), CASES, ids=[f"{v}-{s.name}" for v, s in CASES])
def test_the_table_decides_every_out_of_sequence_reply(verb: str, state: State) -> None:
    """Where the table refuses a verb, the session answers exactly the table's reply (503, or 554
    for DATA after every recipient was refused); where it does not, the handler answers, never 503."""
    answer = say(session_in(state), SAMPLE[verb])
    expected = VERBS[verb].refused.get(state)
    if expected is not None:
        assert answer == expected
    else:
        assert answer.code != Code.BAD_SEQUENCE, answer


def test_after_a_refused_greeting_only_quit_is_served() -> None:
    for verb in [*VERBS, "XYZZY"]:
        if verb != "QUIT":
            assert say(session_in(State.NO_SERVICE), SAMPLE.get(verb, verb)).text == (
                "Bad sequence of commands: no service here, send QUIT")
    assert say(session_in(State.NO_SERVICE), "QUIT").code == Code.CLOSING
    assert State.NO_SERVICE not in VERBS["QUIT"].refused and State.NO_SERVICE in UNRECOGNIZED.refused


def test_flags_refuse_before_the_state_is_looked_at() -> None:
    """The ``unless`` entries: TLS already on, AUTH twice or after HELO, DATA with every recipient refused."""
    encrypted = SMTPSession(Settings.from_config(Config(), starttls=True), tls=True)
    encrypted.feed(b"EHLO c.test\r\n")
    assert say(encrypted, "STARTTLS").text == "Bad sequence of commands: TLS already active"
    helo = session_in(State.CONNECTED)
    say(helo, "HELO c.test")
    assert say(helo, "AUTH PLAIN").text == "Bad sequence of commands: send EHLO first"
    assert say(helo, "AUTH PLAIN AHUAcA==").code == Code.BAD_SEQUENCE
    logged_in = session_in(State.GREETED)
    assert say(logged_in, "AUTH PLAIN AHUAcA==").code == Code.AUTH_SUCCEEDED
    assert say(logged_in, "AUTH PLAIN AHUAcA==").text == "Bad sequence of commands: already authenticated"
    refused = session_in(State.MAIL)
    assert say(refused, "RCPT TO:<ünicode@example.test>").code == Code.MAILBOX_NAME_NOT_ALLOWED
    assert say(refused, "DATA") == VERBS["DATA"].unless[0][1]
    assert say(refused, "DATA").code == Code.TRANSACTION_FAILED


@pytest.mark.parametrize("verb", [verb for verb, entry in VERBS.items() if not entry.arguments])
def test_an_argument_to_a_verb_that_takes_none_is_501_from_the_table(verb: str) -> None:
    legal = State.RCPT if verb == "DATA" else State.GREETED
    assert say(session_in(legal), f"{verb} now") == Reply(Code.PARAMETER_SYNTAX, (f"Syntax: {verb} (no arguments)",))
    assert say(session_in(State.NO_SERVICE), f"{verb} now").code == (
        Code.PARAMETER_SYNTAX if verb == "QUIT" else Code.BAD_SEQUENCE)  # the sequence is checked first


def test_a_verb_that_is_not_offered_is_502_in_every_state() -> None:
    plain = Settings.from_config(Config())  # no TLS, AUTH off
    for lines in SETUP.values():
        session = SMTPSession(plain)
        for line in lines:
            session.feed(line.encode() + b"\r\n")
        assert say(session, "STARTTLS").code == say(session, "AUTH PLAIN").code == Code.NOT_IMPLEMENTED


def test_bad_sequence_is_written_in_one_place() -> None:
    """No handler answers 503 itself: every 503 comes from the table."""
    source = (ROOT / "smtp_sink" / "protocol.py").read_text()
    assert source.count("Code.BAD_SEQUENCE") == 1


def test_help_lists_and_explains_exactly_the_table_over_a_socket(server: SinkServer) -> None:
    with connect(server.smtp_port) as wire:
        code, lines = wire.cmd("HELP")
        assert code == 214 and lines[1].split() == list(VERBS)
        for verb, entry in VERBS.items():
            assert entry.help.startswith(verb + " ") or entry.help.startswith(verb + ":"), entry.help
            assert wire.cmd(f"HELP {verb.lower()}") == (214, [entry.help])
        assert wire.cmd("HELP XYZZY")[0] == 504


def test_docs_list_exactly_the_verbs_of_the_table() -> None:
    page = (ROOT / "docs" / "smtp.md").read_text()
    table = page[page.index("| command | reply |"):]
    table = table[: table.index("\n\n")]
    first_cells = [row.split(" | ")[0] for row in table.splitlines()[2:]]
    documented = {verb for cell in first_cells for verb in re.findall(r"`([A-Z]+)\b", cell)}
    assert documented == set(VERBS)
