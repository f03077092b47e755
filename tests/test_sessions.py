"""Session transcripts (issue 17 part 1 and 7): every SMTP session recorded over real sockets,
delivered or not, bounded, stored beside the messages and surviving a restart."""

from __future__ import annotations

import base64
import smtplib
import socket
import ssl
import time
from pathlib import Path

import pytest
from support.processes import Processes
from support.servers import Servers
from support.sessions import recorded, wait_session
from support.wire import Wire

from smtp_sink import ids, trace
from smtp_sink.config import SessionsConfig
from smtp_sink.rules import Rule
from smtp_sink.server import SinkServer
from smtp_sink.sessions import DB_NAME, SessionStore

MAIL = b"Subject: recorded\r\n\r\nthe body SECRET-BODY-TEXT\r\n"


def send(server: SinkServer, port: int | None = None) -> None:
    with smtplib.SMTP("127.0.0.1", port or server.smtp_port) as client:
        client.sendmail("app@example.com", ["user@example.com"], MAIL)


def test_a_delivering_session_is_recorded_with_commands_replies_and_its_message(server: SinkServer) -> None:
    before = time.time()
    with smtplib.SMTP("127.0.0.1", server.smtp_port) as client:
        client.ehlo("app.example")
        client.sendmail("app@example.com", ["user@example.com"], MAIL)
    [session] = recorded(server)
    assert ids.is_id(session.id) and session.client == "127.0.0.1" and session.helo == "app.example"
    assert session.outcome == "quit" and not session.refused and session.tls is None and session.auth_user is None
    assert before <= session.started <= session.ended <= time.time()
    assert [c.split(" ")[0].upper() for c in session.commands] == ["EHLO", "MAIL", "RCPT", "DATA", "QUIT"]
    assert session.replies[0].startswith("220 ") and session.replies[-1].startswith("221 ")
    kinds = [e.kind for e in session.events]
    assert kinds == ["S", "C", "S", "C", "S", "C", "S", "C", "S", "D", "M", "S", "C", "S", "N"]
    times = [e.time for e in session.events]
    assert times == sorted(times) and times[-1] <= session.duration + 0.05  # loop clock vs wall clock
    [message_id] = session.message_ids
    assert f"250 OK: queued as {message_id}" in session.replies
    data_event = next(e for e in session.events if e.kind == "D")
    assert data_event.text == f"{len(MAIL) + 3} bytes of message data"  # with the terminator, never the content
    # the message names its session, and the detail gives it
    raw = (server.store.path / f"{message_id}.eml").read_bytes()
    assert trace.read(raw).session == session.id
    assert server.store.open_message(message_id)["SessionID"] == session.id
    assert b"SECRET-BODY-TEXT" not in (server.store.path / DB_NAME).read_bytes()


def test_auth_user_is_recorded_never_the_password(start_server: Servers) -> None:
    server = start_server(auth={"mode": "users", "users": {"ann": "s3cret-pass"}}, tls={"mode": "off"})
    with smtplib.SMTP("127.0.0.1", server.smtp_port) as client:
        client.ehlo()
        client.user, client.password = "ann", "s3cret-pass"
        client.auth("PLAIN", client.auth_plain)
        client.sendmail("ann@example.com", ["user@example.com"], MAIL)
    with smtplib.SMTP("127.0.0.1", server.smtp_port) as client:
        client.ehlo()
        client.docmd("AUTH", "LOGIN")
        client.docmd(base64.b64encode(b"ann").decode())
        client.docmd(base64.b64encode(b"s3cret-pass").decode())
    first, login = recorded(server)[::-1]
    assert first.auth_user == "ann" and login.auth_user == "ann"
    stored = (server.store.path / DB_NAME).read_bytes()
    for secret in (b"s3cret-pass", base64.b64encode(b"\0ann\0s3cret-pass"), base64.b64encode(b"s3cret-pass")):
        assert secret not in stored
    assert "AUTH PLAIN (initial response hidden)" in first.commands
    assert login.commands[1:4] == ["AUTH LOGIN", "(AUTH response hidden)", "(AUTH response hidden)"]


def test_tls_version_and_cipher_after_starttls_and_with_implicit_tls(start_server: Servers) -> None:
    server = start_server(tls={"mode": "on"})
    context = ssl.create_default_context(cafile=server.tls_ca)
    with smtplib.SMTP("127.0.0.1", server.smtp_port) as client:
        client.starttls(context=context)
        client.sendmail("app@example.com", ["user@example.com"], MAIL)
    with smtplib.SMTP_SSL("127.0.0.1", server.tls_port, context=context) as client:
        client.noop()
    implicit, upgraded = recorded(server)
    for session in (implicit, upgraded):
        assert session.tls is not None and session.tls.version.startswith("TLSv1.")
        assert session.tls.cipher and session.outcome == "quit"
    kinds = [e.kind for e in upgraded.events]
    assert kinds.index("T") > upgraded.commands.index("STARTTLS") and upgraded.message_ids
    assert implicit.events[0].kind == "T" and implicit.events[1].text.startswith("220 ")


def test_pipelined_commands_share_a_chunk_and_replies_pair_with_them(server: SinkServer) -> None:
    with Wire(server.smtp_port) as wire:
        wire.code()
        wire.send(b"EHLO pipe.example\r\n")
        wire.reply()
        wire.send(b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nRCPT TO:<c@example.com>\r\nDATA\r\n")
        assert [wire.code() for _ in range(4)] == [250, 250, 250, 354]
        wire.send(b"Subject: x\r\n\r\nhi\r\n.\r\nQUIT\r\n")
        assert [wire.code(), wire.code()] == [250, 221]
    session = recorded(server)[0]
    pipelined = [e for e in session.events if e.kind == "C" and e.text.split()[0] in ("MAIL", "RCPT", "DATA")]
    assert len({e.chunk for e in pipelined}) == 1 and len(pipelined) == 4
    pairs = [(e.text, session.events[i + 1].text[:3]) for i, e in enumerate(session.events) if e.kind == "C"]
    assert pairs[1:5] == [("MAIL FROM:<a@example.com>", "250"), ("RCPT TO:<b@example.com>", "250"),
                          ("RCPT TO:<c@example.com>", "250"), ("DATA", "354")]
    assert pairs[-1] == ("QUIT", "221")


# -- failed sessions are listed too (part 7): "my app says it sent it but nothing arrived" -----------


def test_refused_at_connect_is_listed(server: SinkServer) -> None:
    server.rules.add(Rule(stage="connect", code=554, text="no service for you"))
    with pytest.raises(smtplib.SMTPConnectError):
        smtplib.SMTP("127.0.0.1", server.smtp_port)
    session = wait_session(server)
    assert session.refused and not session.message_ids
    assert session.replies[0] == "554 no service for you"


@pytest.mark.parametrize("stage", ["mail", "rcpt", "data", "after-data"])
def test_refused_transaction_is_listed(server: SinkServer, stage: str) -> None:
    server.rules.add(Rule(stage=stage, code=550, text=f"refused at {stage}"))  # type: ignore[arg-type]
    with pytest.raises(smtplib.SMTPException), smtplib.SMTP("127.0.0.1", server.smtp_port) as client:
        client.sendmail("app@example.com", ["user@example.com"], MAIL)
    session = recorded(server)[0]
    assert session.refused and session.message_ids == () and session.outcome == "quit"
    assert f"550 refused at {stage}" in session.replies
    assert server.store.ids() == []


def test_a_4xx_is_not_counted_as_refused(server: SinkServer) -> None:
    server.rules.add(Rule(stage="rcpt", code=451, text="try later"))
    with pytest.raises(smtplib.SMTPException), smtplib.SMTP("127.0.0.1", server.smtp_port) as client:
        client.sendmail("app@example.com", ["user@example.com"], MAIL)
    session = recorded(server)[0]
    assert not session.refused and "451 try later" in session.replies


def test_timed_out_session_is_listed(start_server: Servers) -> None:
    server = start_server(idle_timeout=0.3)
    with Wire(server.smtp_port) as wire:
        wire.code()
        wire.cmd("EHLO slow.example")
        assert wire.closed(5)
    session = wait_session(server)
    assert session.outcome == "timeout" and session.replies[-1].startswith("421 ")
    assert "idle timeout" in session.replies[-1]


def test_disconnect_in_the_middle_of_data_is_listed(server: SinkServer) -> None:
    with Wire(server.smtp_port) as wire:
        wire.code()
        for line in ("EHLO gone.example", "MAIL FROM:<a@example.com>", "RCPT TO:<b@example.com>"):
            assert wire.cmd(line)[0] == 250
        assert wire.cmd("DATA")[0] == 354
        wire.send(b"Subject: half\r\n\r\nonly half of it")
        time.sleep(0.1)
    session = wait_session(server)
    assert session.outcome == "disconnect" and session.message_ids == ()
    assert session.events[-1].kind == "D" and session.events[-1].text == "32 bytes of message data"
    assert server.store.ids() == []


def test_disconnect_rule_and_shutdown_and_overload(start_server: Servers) -> None:
    server = start_server(max_connections=1)
    server.rules.add(Rule(stage="mail", action="disconnect"))  # type: ignore[arg-type]
    with Wire(server.smtp_port) as wire:
        wire.code()
        wire.cmd("HELO x.example")
        wire.send(b"MAIL FROM:<a@example.com>\r\n")
        assert wire.closed()
    assert wait_session(server).outcome == "rule"
    server.rules.clear()
    held = Wire(server.smtp_port)
    held.code()
    with Wire(server.smtp_port) as second:
        assert second.code() == 421
    overload = wait_session(server, lambda s: s.outcome == "overload")
    assert "too many connections" in overload.replies[0]
    start_server.stop(server)  # the held session gets 421 "shutting down"
    held.close()
    page = SessionStore(server.store.path).list(events=True)
    assert sorted(s.outcome for s in page.sessions) == ["overload", "rule", "shutdown"]
    [shutdown] = [s for s in page.sessions if s.outcome == "shutdown"]
    assert shutdown.replies[-1].startswith("421 ") and "shutting down" in shutdown.replies[-1]


# -- bounded: events per session, retention; kept beside the messages --------------------------------


def test_events_past_the_cap_become_one_marker(start_server: Servers, tmp_path: Path) -> None:
    server = start_server(toml="[sessions]\nmax_events = 10\n")
    with smtplib.SMTP("127.0.0.1", server.smtp_port) as client:
        for _ in range(3):
            client.sendmail("app@example.com", ["user@example.com"], MAIL)
    session = recorded(server)[0]
    assert len(session.message_ids) == 3  # every message id is kept, past the cap too
    assert session.dropped > 0 and session.events[-1].text == f"({session.dropped} more events dropped)"
    assert len([e for e in session.events if e.kind in "CDS"]) <= 10
    assert [e.text.split()[1] for e in session.events if e.kind == "M"] == list(session.message_ids)


def test_retention_keeps_the_newest_sessions(start_server: Servers) -> None:
    server = start_server(toml="[sessions]\nmax_sessions = 3\n")
    for _ in range(5):
        with smtplib.SMTP("127.0.0.1", server.smtp_port) as client:
            client.noop()
        server.smtp.recorder.settle(server.smtp.loop)  # one batch each: retention is per batch
    page = SessionStore(server.store.path).list()
    assert page.count == 3 and len(page.sessions) == 3


def test_retention_by_age(start_server: Servers) -> None:
    server = start_server(toml="[sessions]\nmax_age = 0.5\n")
    send(server)
    assert len(recorded(server)) == 1
    time.sleep(0.6)
    send(server)
    assert len(recorded(server)) == 1  # the first aged out when the second was written


def test_sessions_survive_a_restart_and_can_be_turned_off(start_server: Servers, tmp_path: Path) -> None:
    server = start_server()
    send(server)
    start_server.stop(server)
    again = start_server()
    assert len(recorded(again)) == 1
    start_server.stop(again)
    off = start_server(toml="[sessions]\nenabled = false\n")
    send(off)
    assert len(recorded(off)) == 1  # the one before; none added
    [message_id] = [i for i in off.store.ids() if off.store.open_message(i)["SessionID"] == ""]
    assert b"X-Sink-Session" not in off.store.read(message_id)


def test_several_smtp_processes_write_into_one_store(start_process: Processes, tmp_path: Path) -> None:
    """Each process writes its finished sessions into the one SQLite file (issue 18's workers)."""
    first, second = start_process(), start_process()
    for process in (first, second):
        for _ in range(3):
            with smtplib.SMTP("127.0.0.1", process.port) as client:
                client.sendmail("app@example.com", ["user@example.com"], MAIL)
    first.stop()
    second.stop()
    page = SessionStore(tmp_path / "mail").list()
    assert page.count == 6 and all(s.outcome == "quit" and len(s.message_ids) == 1 for s in page.sessions)
    stored = {m for s in page.sessions for m in s.message_ids}
    assert stored == {p.stem for p in (tmp_path / "mail").glob("*.eml")}


def test_session_store_list_filters(server: SinkServer) -> None:
    send(server)
    server.rules.add(Rule(stage="rcpt", code=550, text="no"))
    with pytest.raises(smtplib.SMTPException):
        send(server)
    with socket.create_connection(("127.0.0.1", server.smtp_port)) as raw:
        raw.recv(100)
    wait_session(server, lambda s: s.outcome == "disconnect")
    store = SessionStore(server.store.path)
    assert store.list().total == 3
    assert [s.outcome for s in store.list(outcome="disconnect").sessions] == ["disconnect"]
    assert len(store.list(outcome="refused").sessions) == 1
    assert len(store.list(outcome="delivered").sessions) == 1
    assert store.list(outcome="undelivered").total == 2
    assert store.list(client="127.0.0.1").total == 3 and store.list(client="10.0.0.1").total == 0
    newest = store.list(limit=1).sessions[0]
    assert store.list(since=newest.started).total >= 1 and store.list(until=newest.started).total == 2
    assert store.list(start=1, limit=1).sessions[0].id != newest.id


def test_the_defaults_live_in_config() -> None:
    assert SessionsConfig().enabled and SessionsConfig().max_events == 50


def test_a_bad_sessions_key_names_key_and_file(tmp_path: Path) -> None:
    from smtp_sink.config import ConfigError, load

    path = tmp_path / "bad.toml"
    path.write_text("[sessions]\nmax_events = 1\n")
    with pytest.raises(ConfigError, match=r"bad\.toml.*\[sessions\] max_events"):
        load(path, environ={})
    path.write_text('[sessions]\nenabled = "yes"\n')
    with pytest.raises(ConfigError, match=r"\[sessions\] enabled: expected true or false"):
        load(path, environ={})


def test_a_5xx_to_another_command_is_not_refused_but_one_to_mail_is(server: SinkServer) -> None:
    with Wire(server.smtp_port) as wire:
        wire.code()
        assert wire.cmd("EHLO x.example")[0] == 250
        assert wire.cmd("BOGUS")[0] == 500
        assert wire.cmd("QUIT")[0] == 221
    assert not recorded(server)[0].refused
    with Wire(server.smtp_port) as wire:
        wire.code()
        wire.send(b"EHLO x.example\r\nMAIL FROM:<not an address>\r\nQUIT\r\n")  # pipelined: paired in order
        assert [wire.code(), wire.code(), wire.code()] == [250, 501, 221]
    assert recorded(server)[0].refused
