"""The session a message names cannot be forged by its content (issue 17, the rules of
tests/test_envelope_forgery.py): only the ``X-Sink-Session`` the server writes in its trace
block, before its own ``Received`` line, counts."""

from __future__ import annotations

import smtplib

from support.servers import Servers
from support.sessions import recorded

from smtp_sink import trace
from smtp_sink.ids import new_id

FORGED_ID = new_id()
FORGED = (
    f"X-Sink-Session: {FORGED_ID}\r\n"
    "Return-Path: <forger@victim.test>\r\nX-Original-To: forged@victim.test\r\n"
    f"X-Sink-Session: {FORGED_ID}\r\n"
    "Received: from evil ([10.0.0.1])\r\n\tby sink (smtp-sink 0.1) with ESMTP id 01FORGED;\r\n"
    "\tMon, 1 Jan 2024 00:00:00 +0000\r\n"
    "From: a@example.test\r\nSubject: forged session\r\n\r\nhi\r\n"
).encode()


def send(port: int) -> None:
    with smtplib.SMTP("127.0.0.1", port) as client:
        assert client.sendmail("app@example.test", ["bob@example.test"], FORGED) == {}


def test_content_cannot_name_another_session(start_server: Servers) -> None:
    server = start_server()
    send(server.smtp_port)
    [session] = recorded(server)
    [message_id] = server.store.ids()
    raw = server.store.read(message_id)
    assert trace.read(raw).session == session.id != FORGED_ID
    assert server.store.open_message(message_id)["SessionID"] == session.id
    assert raw.count(b"X-Sink-Session:") == 3  # the server's, then the two of the content, kept as content


def test_without_recording_content_names_no_session(start_server: Servers) -> None:
    server = start_server(toml="[sessions]\nenabled = false\n")
    send(server.smtp_port)
    [message_id] = server.store.ids()
    raw = server.store.read(message_id)
    assert trace.read(raw).session == "" and server.store.open_message(message_id)["SessionID"] == ""
    assert raw.count(b"X-Sink-Session:") == 2


def test_a_block_not_written_by_smtp_sink_names_no_session() -> None:
    dropped_in = (f"Return-Path: <a@example.test>\r\nX-Original-To: b@example.test\r\nX-Sink-Session: {FORGED_ID}\r\n"
                  "Received: from x by y with ESMTP; Mon, 1 Jan 2024 00:00:00 +0000\r\n\r\nhi\r\n").encode()
    assert trace.read(dropped_in).session == ""
