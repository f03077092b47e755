"""``smtp-sink sessions`` and ``smtp-sink session ID`` (issue 17): the real command, reading the
store folder a real server wrote (the server may be stopped)."""

from __future__ import annotations

import json
import smtplib
from pathlib import Path

from support.processes import run_cli
from support.servers import Servers
from support.sessions import recorded, wait_session
from support.wire import Wire

MAIL = b"Subject: cli\r\n\r\nhi\r\n"


def test_sessions_table_and_json(start_server: Servers, tmp_path: Path) -> None:
    server = start_server()
    with smtplib.SMTP("127.0.0.1", server.smtp_port) as client:
        client.ehlo("cli.example")
        client.sendmail("app@example.com", ["user@example.com"], MAIL)
    with Wire(server.smtp_port) as wire:
        wire.code()
        wire.cmd("HELO \u009b31mred.example")
    gone = wait_session(server, lambda s: s.outcome == "disconnect")
    start_server.stop(server)  # no server needed
    store = tmp_path / "mail"
    table = run_cli("sessions", store=store).stdout.splitlines()
    assert table[0].split() == ["TIME", "CLIENT", "HELO", "OUTCOME", "MESSAGES", "ID"]
    assert table[1].split()[2:] == ["127.0.0.1", "\\x9b31mred.example", "disconnect", "0", gone.id]
    assert table[2].split()[2:5] == ["127.0.0.1", "cli.example", "quit"] and table[2].split()[5] == "1"
    assert table[-1] == "2 of 2 sessions"
    listed = json.loads(run_cli("sessions", "--json", store=store).stdout)
    assert listed["total"] == 2 and [s["Outcome"] for s in listed["sessions"]] == ["disconnect", "quit"]
    only = json.loads(run_cli("sessions", "--json", "--outcome", "delivered", store=store).stdout)
    assert only["sessions_count"] == 1 and only["sessions"][0]["Helo"] == "cli.example"
    assert json.loads(run_cli("sessions", "--json", "--since", "1h", store=store).stdout)["sessions_count"] == 2


def test_session_dialogue_with_relative_times_and_findings(start_server: Servers, tmp_path: Path) -> None:
    server = start_server()
    with smtplib.SMTP("127.0.0.1", server.smtp_port) as client:
        client.sendmail("app@example.com", ["user@example.com"], MAIL)
    with Wire(server.smtp_port) as wire:
        wire.code()
        wire.send(b"HELO bare.example\n")
        wire.code()
    wait_session(server, lambda s: s.outcome == "disconnect")
    quit_session = recorded(server)[1]
    store = tmp_path / "mail"
    lines = run_cli("session", quit_session.id, store=store).stdout.splitlines()
    assert lines[0] == f"session {quit_session.id}" and "outcome quit" in lines[2]
    dialogue = [line.strip() for line in lines if line.strip().startswith("+")]
    assert dialogue[0].split(None, 2)[1:] == ["S:", "220 smtp-sink.localhost ESMTP smtp-sink 0.1.0 ready"]
    assert dialogue[1].split(None, 2)[1:] == ["C:", "ehlo [127.0.0.1]"]
    assert any(" C: (" in line and "bytes of message data)" in line for line in dialogue)
    assert any(f"[message {quit_session.message_ids[0]} stored" in line for line in dialogue)
    assert float(dialogue[0].split()[0]) >= 0 and dialogue[0].startswith("+0.")
    latest = run_cli("session", "latest", store=store).stdout
    assert "C: HELO bare.example\\x0a" in latest
    assert "error: bare-cr-lf-command: HELO bare.example\\n" in latest and "warning: no-quit:" in latest
    as_json = json.loads(run_cli("session", "latest", "--json", store=store).stdout)
    assert [f["Check"] for f in as_json["Findings"]] == ["bare-cr-lf-command", "no-quit"]


def test_errors_are_one_line(tmp_path: Path) -> None:
    missing = run_cli("sessions", store=tmp_path / "nowhere")
    assert missing.returncode == 1 and missing.stderr.startswith("smtp-sink: no store at ")
    (tmp_path / "empty").mkdir()
    for ref in ("latest", "01M8P6GN9V02GKGEY11FTJRKCF"):
        result = run_cli("session", ref, store=tmp_path / "empty")
        assert result.returncode == 1 and len(result.stderr.splitlines()) == 1 and "session" in result.stderr
    bad = run_cli("sessions", "--outcome", "lost", store=tmp_path / "empty")
    assert bad.returncode == 2
