"""The pytest plugin's sessions (issue 17): ``smtp_sink.sessions``, ``message.session``, and a
retry back-off made assertable by the start times of successive sessions. These tests use the
installed plugin's ``smtp_sink`` fixture itself, with real smtplib clients."""

from __future__ import annotations

import smtplib
import socket
import time

import pytest

from smtp_sink.pytest_plugin import SinkFixture

MAIL = b"Subject: plugin\r\n\r\nhi\r\n"


def test_each_message_knows_its_session(smtp_sink: SinkFixture) -> None:
    with smtplib.SMTP(smtp_sink.host, smtp_sink.port) as client:
        client.ehlo("plugin.example")
        client.sendmail("app@example.com", ["ann@example.com"], MAIL)
        client.sendmail("app@example.com", ["bob@example.com"], MAIL)
    ann, bob = smtp_sink.messages
    session = ann.session
    assert session is not None and bob.session == session and ann.session_id == session.id
    assert session.helo == "plugin.example" and session.outcome == "quit" and session.findings == ()
    assert session.message_ids == (ann.id, bob.id)
    assert [c.split()[0].upper() for c in session.commands] == ["EHLO", *["MAIL", "RCPT", "DATA"] * 2, "QUIT"]
    assert smtp_sink.sessions == [session]


@pytest.mark.smtp_sink(sessions={"enabled": False})
def test_without_recording_message_session_is_none(smtp_sink: SinkFixture) -> None:
    with smtplib.SMTP(smtp_sink.host, smtp_sink.port) as client:
        client.sendmail("app@example.com", ["ann@example.com"], MAIL)
    [message] = smtp_sink.messages
    assert message.session is None and smtp_sink.sessions == []


def flaky_app_send(host: str, port: int, backoff: float) -> int:
    """An application that retries a refused connection, doubling its wait each time."""
    attempts, wait = 0, backoff
    while True:
        attempts += 1
        try:
            with smtplib.SMTP(host, port) as client:
                client.sendmail("app@example.com", ["ann@example.com"], MAIL)
                return attempts
        except smtplib.SMTPConnectError:
            time.sleep(wait)
            wait *= 2


def test_retry_back_off_is_assertable(smtp_sink: SinkFixture) -> None:
    smtp_sink.add_rule("connect", code=421, text="busy, try later", schedule="first", n=2)
    assert flaky_app_send(smtp_sink.host, smtp_sink.port, backoff=0.2) == 3
    first, second, third = smtp_sink.sessions
    assert (first.outcome, second.outcome, third.outcome) == ("rule", "rule", "quit")
    assert first.replies == ["421 busy, try later"] and not first.message_ids and third.message_ids
    gaps = [second.started - first.started, third.started - second.started]
    assert gaps[0] >= 0.2 and gaps[1] >= 0.4  # the back-off doubled (lower bounds: load only adds time)
    [message] = smtp_sink.messages
    assert message.session == third


def test_a_dropped_connection_is_waited_for(smtp_sink: SinkFixture) -> None:
    with socket.create_connection((smtp_sink.host, smtp_sink.port)) as raw:
        raw.recv(100)
        raw.sendall(b"EHLO gone.example\r\n")
        raw.recv(1000)
    [session] = smtp_sink.wait_for_sessions(1)
    assert session.outcome == "disconnect" and [f.check for f in session.findings] == ["no-quit"]
