"""Property tests of the DATA reader: for any bytes, what is stored equals what was sent."""

from __future__ import annotations

import smtplib

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.data import content_strategy, expected, stuff

from smtp_sink import trace
from smtp_sink.config import Config
from smtp_sink.protocol import MessageReceived, Settings, SMTPSession
from smtp_sink.server import SinkServer


def run_session(wire_bytes: bytes, cuts: list[int]) -> list[MessageReceived]:
    session = SMTPSession(Settings.from_config(Config(), max_message_size=0))
    session.feed(b"EHLO p\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\nDATA\r\n")
    events = []
    points = sorted({c % (len(wire_bytes) + 1) for c in cuts})
    start = 0
    for point in [*points, len(wire_bytes)]:
        events += session.feed(wire_bytes[start:point])
        start = point
    return [e for e in events if isinstance(e, MessageReceived)]


@settings(max_examples=1500, deadline=None)
@given(content=content_strategy, cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=8))
def test_any_content_any_chunking_round_trips(content: bytes, cuts: list[int]) -> None:
    messages = run_session(stuff(content) + b"QUIT\r\n", cuts)
    assert len(messages) == 1
    assert messages[0].data == expected(content)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=content_strategy)
def test_any_content_round_trips_over_a_socket(server: SinkServer, content: bytes) -> None:
    with smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=10) as smtp:
        smtp.ehlo()
        smtp.mail("a@b.test")
        smtp.rcpt("c@d.test")
        code, text = smtp.docmd("DATA")
        assert code == 354
        smtp.send(stuff(content))
        code, text = smtp.getreply()
        assert code == 250
    message_id = text.decode().rsplit(" ", 1)[-1]
    raw = server.store.read(message_id)
    assert raw[trace.read(raw).length :] == expected(content)  # after the server's trace block
