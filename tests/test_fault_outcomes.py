"""Fault rules have typed outcomes (Refuse, Disconnect, Delay, Throttle) that the session carries
out in one place, at every stage; a rule may send any 4xx/5xx code, not only those of the table."""

from __future__ import annotations

import pytest
from support.wire import Wire, connect

from smtp_sink.config import Config
from smtp_sink.policy import MailboxPolicy
from smtp_sink.protocol import CLOSE, START_TLS, MessageReceived, Output, Settings, SMTPSession, State
from smtp_sink.replies import Code, Reply, explain
from smtp_sink.rules import Delay, Disconnect, Refuse, Rule, RuleSet, Stage, Throttle
from smtp_sink.server import SinkServer

# What a client sends to reach each stage (after the greeting), and the normal reply to it.
REACH: dict[Stage, tuple[list[bytes], bytes, int | None]] = {
    Stage.CONNECT: ([], b"", Code.READY),
    Stage.HELO: ([], b"EHLO c.test\r\n", Code.OK),
    Stage.STARTTLS: ([b"EHLO c.test\r\n"], b"STARTTLS\r\n", Code.READY),
    Stage.AUTH: ([b"EHLO c.test\r\n"], b"AUTH PLAIN AHUAcA==\r\n", Code.AUTH_SUCCEEDED),
    Stage.MAIL: ([b"EHLO c.test\r\n"], b"MAIL FROM:<a@example.test>\r\n", Code.OK),
    Stage.RCPT: ([b"EHLO c.test\r\n", b"MAIL FROM:<a@example.test>\r\n"], b"RCPT TO:<b@example.test>\r\n", Code.OK),
    Stage.DATA: ([b"EHLO c.test\r\n", b"MAIL FROM:<a@example.test>\r\n", b"RCPT TO:<b@example.test>\r\n"],
                 b"DATA\r\n", Code.START_MAIL_INPUT),
    Stage.AFTER_DATA: ([b"EHLO c.test\r\n", b"MAIL FROM:<a@example.test>\r\n", b"RCPT TO:<b@example.test>\r\n",
                        b"DATA\r\n", b"Subject: s\r\n\r\nbody\r\n"], b".\r\n", None),  # the caller stores it
}
PIPELINED = b"NOOP\r\nQUIT\r\n"  # sent with the triggering line: never executed after a hang-up


def run(rule: Rule, stage: Stage) -> tuple[SMTPSession, list[Output]]:
    """A session with ``rule``, brought to ``stage``; the outputs of the line that reaches it."""
    settings = Settings.from_config(Config(), starttls=True, auth="accept-any")
    session = SMTPSession(settings, MailboxPolicy(Config().policy, rules=RuleSet([rule])), peer="192.0.2.1")
    greeting = session.greeting()
    before, line, _ = REACH[stage]
    if stage is Stage.CONNECT:
        return session, greeting
    for data in before:
        session.feed(data)
    return session, session.feed(line + PIPELINED)


def test_each_action_has_its_typed_outcome() -> None:
    assert Rule(stage="rcpt", code=450, text="later").outcome == Refuse(Reply(450, ("later",)))
    assert Rule(stage="rcpt", code=421).outcome == Refuse(Reply(421, (explain(421),)), close=True)
    assert Rule(stage="rcpt", action="disconnect").outcome == Disconnect()
    assert Rule(stage="rcpt", action="delay", seconds=1.5).outcome == Delay(1.5)
    assert Rule(stage="rcpt", action="throttle", rate=100).outcome == Throttle(100)


def test_any_4xx_or_5xx_code_is_a_plain_int_reply() -> None:
    outcome = Rule(stage="mail", code=432, text="password transition needed").outcome
    assert isinstance(outcome, Refuse) and type(outcome.reply.code) is int and outcome.reply.code == 432
    assert outcome.reply.encode() == b"432 password transition needed\r\n"
    assert Rule(stage="mail", code=471).outcome.reply.text == explain(471)  # type: ignore[union-attr]
    assert "not in this server's table" in explain(471)


@pytest.mark.parametrize("stage", list(Stage), ids=str)
def test_disconnect_ends_the_session_silently_at_every_stage(stage: Stage) -> None:
    session, out = run(Rule(stage=stage, action="disconnect"), stage)
    assert out == [CLOSE]
    assert session.state is State.QUIT and session.feed(b"NOOP\r\n") == []


@pytest.mark.parametrize("stage", list(Stage), ids=str)
def test_421_replies_then_closes_at_every_stage(stage: Stage) -> None:
    session, out = run(Rule(stage=stage, code=421, text="going down"), stage)
    assert out == [Reply(421, ("going down",)), CLOSE]
    assert session.state is State.QUIT


@pytest.mark.parametrize("stage", list(Stage), ids=str)
def test_a_refusal_is_sent_instead_and_the_session_goes_on(stage: Stage) -> None:
    _, out = run(Rule(stage=stage, code=550, text="no"), stage)
    assert out[0] == Reply(550, ("no",))
    assert not any(isinstance(item, MessageReceived) for item in out)
    if stage is not Stage.CONNECT:  # the pipelined NOOP and QUIT run (after a 554-style greeting: only QUIT)
        assert [item.code for item in out if isinstance(item, Reply)][1:] == [Code.OK, Code.CLOSING]


@pytest.mark.parametrize("stage", list(Stage), ids=str)
@pytest.mark.parametrize("rule", [Rule(stage="mail", action="delay", seconds=2.0),
                                  Rule(stage="mail", action="throttle", rate=10)], ids=["delay", "throttle"])
def test_delay_and_throttle_go_out_first_then_everything_as_usual(rule: Rule, stage: Stage) -> None:
    rule = Rule(stage=stage, action=rule.action, seconds=rule.seconds, rate=rule.rate)
    _, out = run(rule, stage)
    assert out[0] == rule.outcome
    if stage is Stage.AFTER_DATA:
        assert isinstance(out[1], MessageReceived)  # stored, then answered 250 by the caller
    else:
        assert isinstance(out[1], Reply) and out[1].code == REACH[stage][2]
    if stage is Stage.STARTTLS:
        assert out[2:] == [START_TLS]  # pipelined plaintext after STARTTLS is discarded
    elif stage not in (Stage.CONNECT, Stage.DATA):  # (after 354 the pipelined lines are message content)
        assert [item.code for item in out[2:] if isinstance(item, Reply)] == [Code.OK, Code.CLOSING]
        assert out[-1] is CLOSE


def test_a_code_outside_the_table_over_a_socket_and_another_client_keeps_talking(server: SinkServer) -> None:
    server.rules.add(Rule(stage="rcpt", code=432, text="try another way"))
    with connect(server.smtp_port) as wire, connect(server.smtp_port) as other:
        assert wire.cmd("EHLO c.test")[0] == other.cmd("EHLO o.test")[0] == 250
        assert wire.cmd("MAIL FROM:<a@example.test>")[0] == 250
        assert wire.cmd("RCPT TO:<b@example.test>") == (432, ["try another way"])
        assert other.cmd("NOOP")[0] == 250
        assert wire.cmd("QUIT")[0] == 221 and wire.closed()
    with Wire(server.smtp_port) as third:
        assert third.reply()[0] == 220
