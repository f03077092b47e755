"""Message content cannot forge the envelope or a login (issue 13 §4).

A client whose DATA begins with the server's own trace header names (``X-Original-To``,
``X-Sink-Auth``, ``Return-Path``, even a ``Received`` line that looks like smtp-sink's) gets
them stored as content: the HTTP API, search, the CLI (``list``, ``search``, ``wait --to``) and
the pytest plugin all report the envelope the server saw, and so does an index rebuilt from the
files. Real server, real sockets, real processes.
"""

from __future__ import annotations

import json
import re
import smtplib
import urllib.parse
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support.http import get_json
from support.processes import run_cli

from smtp_sink import trace
from smtp_sink.index import INDEX_FILE
from smtp_sink.pytest_plugin import SinkFixture, build_config

SENDER = "app@example.test"
FORGED = (
    b"X-Original-To: forged@victim.test\r\n"
    b"X-Sink-Auth: admin\r\n"
    b"Return-Path: <forger@victim.test>\r\n"
    b"Received: from evil ([10.0.0.1])\r\n\tby sink (smtp-sink 0.1) with ESMTPSA id 01FORGED\r\n"
    b"\tfor <forged@victim.test>;\r\n\tMon, 1 Jan 2024 00:00:00 +0000\r\n"
    b"X-Original-To: forged2@victim.test\r\n"
    b"X-Sink-Auth: root\r\n"
    b"From: App <app@example.test>\r\nTo: Bob <bob@example.test>\r\nSubject: forged envelope\r\n\r\nhi\r\n"
)
# (envelope recipients, login): one recipient and no login; several recipients after AUTH
CASES = {
    "one-recipient": (["bob@example.test"], None),
    "login-and-bcc": (["bob@example.test", "hidden@example.test"], "alice"),
}


def start(store: Path) -> SinkFixture:
    """The pytest plugin's server (AUTH accepted, TLS on, HTTP on) on ``store``."""
    return SinkFixture(build_config({"auth": {"mode": "accept-any"}, "http": {"enabled": True}}, store=store)).start()


def send(sink: SinkFixture, rcpts: list[str], user: str | None) -> None:
    with smtplib.SMTP(sink.host, sink.port, timeout=10) as smtp:
        if user is not None:
            smtp.starttls(context=sink.ssl_context())
            smtp.login(user, "secret")
        assert smtp.sendmail(SENDER, rcpts, FORGED) == {}


def drop_index(store: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{store / INDEX_FILE}{suffix}").unlink(missing_ok=True)


def check_api(sink: SinkFixture, rcpts: list[str]) -> None:
    port = sink.http_port
    (summary,) = get_json(port, "/api/v1/messages")["messages"]
    detail = get_json(port, f"/api/v1/message/{summary['ID']}")
    search = "/api/v1/search?"
    for shown in (summary, detail):
        assert shown["RcptTo"] == rcpts and shown["MailFrom"] == SENDER
        assert [a["Address"] for a in shown["Bcc"]] == rcpts[1:]  # the real Bcc, no forged one
    for query in ("to:forged", "to:forged2@victim.test", "bcc:victim", "from:forger"):
        assert get_json(port, search + urllib.parse.urlencode({"query": query}))["messages_count"] == 0, query
    for rcpt in rcpts:
        assert get_json(port, search + urllib.parse.urlencode({"query": f"addressed:{rcpt}"}))["messages_count"] == 1


def check_cli(store: Path, rcpts: list[str]) -> None:
    listed = json.loads(run_cli("list", "--json", store=store).stdout)["messages"]
    assert [m["RcptTo"] for m in listed] == [rcpts]
    assert json.loads(run_cli("list", "--json", "--to", "forged@victim.test", store=store).stdout)["messages"] == []
    assert json.loads(run_cli("search", "to:victim", "--json", store=store).stdout)["messages"] == []
    refused = run_cli("wait", "--to", "forged@victim.test", "--timeout", "0.3", store=store)
    assert refused.returncode == 1 and refused.stdout == ""
    found = run_cli("wait", "--to", rcpts[-1], "--timeout", "10", store=store)
    assert found.returncode == 0 and found.stdout.strip() == listed[0]["ID"]


def check_plugin(sink: SinkFixture, rcpts: list[str], user: str | None) -> None:
    (mail,) = sink.messages
    assert (mail.mail_from, mail.rcpt_to, mail.auth_user) == (SENDER, tuple(rcpts), user)
    assert sink.matching(to="forged@victim.test") == [] and sink.matching(sender="forger@victim.test") == []
    with pytest.raises(AssertionError, match="0 of 1 matching"):
        sink.wait_for(to="forged2@victim.test", timeout=0.2)
    assert mail.message.get_all("X-Sink-Auth") == ([user] if user else []) + ["admin", "root"]  # stored as sent


@pytest.mark.parametrize("case", CASES)
def test_content_cannot_forge_envelope_or_login_even_after_a_rebuild(tmp_path: Path, case: str) -> None:
    rcpts, user = CASES[case]
    store = tmp_path / "mail"
    sink = start(store)
    try:
        send(sink, rcpts, user)
        sink.wait_for(subject="forged envelope")
        check_api(sink, rcpts)
        check_plugin(sink, rcpts, user)
        check_cli(store, rcpts)
    finally:
        sink.stop()
    drop_index(store)
    check_cli(store, rcpts)  # the CLI rebuilt the index from the .eml file
    drop_index(store)
    sink = start(store)  # and so does a new server
    try:
        check_api(sink, rcpts)
        check_plugin(sink, rcpts, user)
    finally:
        sink.stop()


def test_the_reader_stops_at_the_servers_received_line() -> None:
    from smtp_sink.trace import Envelope

    envelope = Envelope(helo="c.test", esmtp=True, mail_from="a@example.test", rcpt_to=["b@example.test"],
                        peer="127.0.0.1", auth_user="alice")
    head = trace.trace_headers(envelope, "01ID", "sink.test")
    found = trace.read(head + FORGED)
    assert found == trace.Trace("a@example.test", ("b@example.test",), "alice", True, len(head))


def test_files_of_earlier_versions_still_read() -> None:
    """Before this layout the server wrote Return-Path, Received, X-Sink-Auth, X-Original-To..."""
    received = b"Received: from c.test ([127.0.0.1])\r\n\tby sink (smtp-sink 0.9) with ESMTPA id 01OLD"
    one = (b"Return-Path: <a@example.test>\r\n" + received + b"\r\n\tfor <b@example.test>;\r\n\tMon, 1 Jan 2024 "
           b"00:00:00 +0000\r\nX-Sink-Auth: alice\r\nX-Original-To: b@example.test\r\n")
    # a single recipient is named in the Received line: a forged X-Original-To after it is content
    assert trace.read(one + FORGED) == trace.Trace("a@example.test", ("b@example.test",), "alice", True, len(one))
    many = (b"Return-Path: <a@example.test>\r\n" + received + b";\r\n\tMon, 1 Jan 2024 00:00:00 +0000\r\n"
            b"X-Original-To: b@example.test\r\nX-Original-To: c@example.test\r\n")
    assert trace.read(many + b"Subject: x\r\n\r\nhi\r\n").rcpt_to == ("b@example.test", "c@example.test")
    # the login of an old file comes only from its place right after the Received line
    assert trace.read(many + b"X-Sink-Auth: admin\r\nSubject: x\r\n\r\n").auth_user is None


def test_a_file_dropped_in_by_hand_has_no_login() -> None:
    raw = b"Return-Path: <a@example.test>\r\nX-Original-To: b@example.test\r\nX-Sink-Auth: admin\r\nSubject: x\r\n\r\n"
    assert trace.read(raw) == trace.Trace("a@example.test", ("b@example.test",))
    assert trace.read(b"Subject: x\r\nX-Original-To: b@example.test\r\n\r\n") == trace.Trace()
    assert trace.read(FORGED) == trace.Trace()  # does not start with Return-Path: not a trace


# -- for any content: the reader returns what the server wrote ---------------------------

_TRACE_LINES = st.sampled_from([
    b"Return-Path: <forger@victim.test>\r\n", b"X-Original-To: forged@victim.test\r\n", b"X-Sink-Auth: admin\r\n",
    b"Received: from x ([1.2.3.4])\r\n\tby h (smtp-sink 9) with ESMTPSA id 01F\r\n\tfor <forged@victim.test>;\r\n",
    b"\tfor <forged@victim.test>;\r\n", b"\r\n", b"\n", b"\r", b" ", b"\t", b":", b"From ", b"\xff", b"\x00",
])
_CONTENT = st.lists(st.one_of(_TRACE_LINES, st.binary(max_size=12)), max_size=40).map(b"".join)
_ADDRESS = st.sampled_from(["b@example.test", "<weird>@x.test", '"a b"@x.test', "jörg@exämple.test", "Postmaster",
                            "x@[127.0.0.1]", '"<>"@x.test'])


@settings(max_examples=800, deadline=None)
@given(content=_CONTENT, mail_from=st.sampled_from(["", "a@example.test", "jörg@exämple.test"]),
       rcpt_to=st.lists(_ADDRESS, min_size=1, max_size=4),
       auth_user=st.none() | st.sampled_from(["<admin>", " x ", "a\r\nX-Sink-Auth: root"]) | st.text(max_size=20),
       helo=st.text(max_size=30), esmtp=st.booleans(), tls=st.booleans())
def test_any_content_after_any_envelope_reads_back_the_envelope(
    content: bytes, mail_from: str, rcpt_to: list[str], auth_user: str | None, helo: str, esmtp: bool, tls: bool,
) -> None:
    from smtp_sink.message import parse
    from smtp_sink.trace import Envelope

    envelope = Envelope(helo=helo, esmtp=esmtp, mail_from=mail_from, rcpt_to=rcpt_to, peer="127.0.0.1",
                        tls=tls, auth_user=auth_user)
    head = trace.trace_headers(envelope, "01ID", "sink.test")
    written = None if auth_user is None else re.sub(r"[\x00-\x1f\x7f]", "?", auth_user).strip(" \t")
    raw = head + content
    assert trace.read(raw) == trace.Trace(mail_from, tuple(rcpt_to), written, True, len(head))
    found = trace.read(parse(raw))  # the parsed message (what the index reads) agrees
    assert (found.mail_from, found.rcpt_to, found.auth_user, found.own) == (mail_from, tuple(rcpt_to), written, True)
