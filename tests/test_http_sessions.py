"""``GET /api/v1/sessions`` and ``GET /api/v1/session/{id}`` (issue 17) over real HTTP, with
sessions made by real SMTP clients; the message detail's ``SessionID``."""

from __future__ import annotations

import json
import smtplib
import subprocess
import urllib.parse

import pytest
from support.http import get_json, request
from support.sessions import recorded, wait_session
from support.wire import Wire

from smtp_sink.rules import Rule
from smtp_sink.server import SinkServer

MAIL = b"Subject: api\r\n\r\nhi\r\n"


def deliver(server: SinkServer) -> None:
    with smtplib.SMTP("127.0.0.1", server.smtp_port) as client:
        client.sendmail("app@example.com", ["user@example.com"], MAIL)


def test_list_newest_first_with_counts_and_paging(web_server: SinkServer) -> None:
    for _ in range(3):
        deliver(web_server)
    made = [s.id for s in recorded(web_server)]
    listed = get_json(web_server, "/api/v1/sessions")
    assert [s["ID"] for s in listed["sessions"]] == made
    assert (listed["total"], listed["sessions_count"], listed["start"], listed["count"]) == (3, 3, 0, 3)
    first = listed["sessions"][0]
    assert first["Outcome"] == "quit" and first["Client"] == "127.0.0.1" and len(first["MessageIDs"]) == 1
    assert "Events" not in first and first["Refused"] is False
    page = get_json(web_server, "/api/v1/sessions?start=1&limit=1")
    assert [s["ID"] for s in page["sessions"]] == made[1:2] and page["count"] == 1 and page["total"] == 3


def test_filters_by_outcome_client_and_time(web_server: SinkServer) -> None:
    deliver(web_server)
    web_server.rules.add(Rule(stage="rcpt", code=550, text="unknown user"))
    with pytest.raises(smtplib.SMTPException):
        deliver(web_server)
    web_server.rules.clear()
    with Wire(web_server.smtp_port) as wire:
        wire.code()
    refused_or_gone = wait_session(web_server, lambda s: s.outcome == "disconnect")
    def ids(query: str) -> list[str]:
        return [s["ID"] for s in get_json(web_server, "/api/v1/sessions?" + query)["sessions"]]
    assert ids("outcome=disconnect") == [refused_or_gone.id]
    assert len(ids("outcome=refused")) == 1 and len(ids("outcome=delivered")) == 1
    assert len(ids("outcome=undelivered")) == 2 and len(ids("outcome=quit")) == 2
    assert len(ids("client=127.0.0.1")) == 3 and ids("client=192.0.2.1") == []
    started = refused_or_gone.started
    assert ids(f"since={started}") == [refused_or_gone.id]
    assert len(ids(f"until={started}")) == 2
    iso = urllib.parse.quote("2000-01-01T00:00:00Z")
    assert len(ids(f"since={iso}")) == 3 and ids(f"until={iso}") == []
    for bad in ("outcome=lost", "since=yesterday", "limit=-1"):
        status, _, body = request(web_server, "/api/v1/sessions?" + bad)
        assert status == 400 and json.loads(body)["Error"], bad


def test_detail_has_every_event_and_the_findings(web_server: SinkServer) -> None:
    with Wire(web_server.smtp_port) as wire:
        wire.code()
        wire.cmd("HELO api.example")
        wire.send(b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\n")
        assert [wire.code(), wire.code()] == [250, 250]
    session = wait_session(web_server)
    detail = get_json(web_server, f"/api/v1/session/{session.id}")
    assert detail["ID"] == session.id and detail["Helo"] == "api.example" and detail["Outcome"] == "disconnect"
    assert [e["Kind"] for e in detail["Events"]] == ["S", "C", "S", "C", "S", "C", "S"]
    assert detail["Events"][3] == {"Time": detail["Events"][3]["Time"], "Kind": "C",
                                   "Text": "MAIL FROM:<a@example.com>", "Chunk": 2}
    assert [f["Check"] for f in detail["Findings"]] == ["pipelining-not-advertised", "no-quit"]
    assert set(detail["Findings"][0]) == {"Check", "Severity", "Evidence", "Reference"}


def test_unknown_session_is_404(web_server: SinkServer) -> None:
    for path in ("/api/v1/session/01M8P6GN9V02GKGEY11FTJRKCF", "/api/v1/session/not-an-id"):
        status, _, body = request(web_server, path)
        assert status == 404 and json.loads(body)["Error"].startswith("session ")


def test_message_detail_names_its_session_and_curl_follows_it(web_server: SinkServer) -> None:
    deliver(web_server)
    detail = get_json(web_server, "/api/v1/message/latest")
    [session] = recorded(web_server)
    assert detail["SessionID"] == session.id
    out = subprocess.run(["curl", "-sf", f"http://127.0.0.1:{web_server.http_port}/api/v1/session/{session.id}"],
                         capture_output=True, check=True, timeout=30).stdout
    assert json.loads(out)["MessageIDs"] == [detail["ID"]]


def test_openapi_lists_the_session_routes(web_server: SinkServer) -> None:
    paths = get_json(web_server, "/api/v1/swagger.json")["paths"]
    assert "/api/v1/sessions" in paths and "/api/v1/session/{id}" in paths
