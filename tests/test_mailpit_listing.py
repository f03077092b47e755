"""The message list as Mailpit answers it (spec §1.1-1.5, §2.1, §2.7), over real sockets: paging
(``limit=0``, ``start``, the ``before=`` cursor), ``PUT``/``DELETE /api/v1/messages`` with JSON
and form bodies (decision 4), ``/api/v1/info``'s counters, and hostile search queries."""

from __future__ import annotations

import dataclasses
import json
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Any

import pytest
from support import wait_until
from support.config import toml_config
from support.http import get_json, request, send_json
from support.mail import send

from smtp_sink.search import MAX_QUERY_LENGTH, MAX_SCANS, MAX_TERMS
from smtp_sink.server import SinkServer

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def message(subject: str) -> str:
    return f"From: ann@example.test\r\nTo: bob@example.test\r\nSubject: {subject}\r\n\r\nbody of {subject}\r\n"


@pytest.fixture
def five(web_server: SinkServer) -> SinkServer:
    """Five messages, m0 (oldest) to m4, a few ms apart (their Created differ)."""
    for number in range(5):
        send(web_server, message(f"m{number}"))
        time.sleep(0.005)
    wait_until(lambda: get_json(web_server, "/api/v1/messages")["total"] == 5, what="5 listed")
    return web_server


def subjects(body: dict[str, Any]) -> list[str]:
    return [m["Subject"] for m in body["messages"]]


def ids(server: SinkServer) -> dict[str, str]:
    return {m["Subject"]: m["ID"] for m in get_json(server, "/api/v1/messages?limit=0")["messages"]}


def read_flags(server: SinkServer) -> dict[str, bool]:
    return {m["Subject"]: m["Read"] for m in get_json(server, "/api/v1/messages?limit=0")["messages"]}


def test_limit_zero_and_start_as_mailpit(five: SinkServer) -> None:
    """List: ``limit=0`` is everything and ignores ``start`` (still echoed); search: ``limit=0`` is
    no messages with the full count (decision 11)."""
    body = get_json(five, "/api/v1/messages?limit=0&start=3")
    assert subjects(body) == ["m4", "m3", "m2", "m1", "m0"] and body["start"] == 3 and body["count"] == 5
    body = get_json(five, "/api/v1/messages?limit=2&start=1")
    assert subjects(body) == ["m3", "m2"] and (body["total"], body["messages_count"], body["count"]) == (5, 5, 2)
    assert subjects(get_json(five, "/api/v1/messages?limit=-1&start=-4")) == ["m4", "m3", "m2", "m1", "m0"]
    body = get_json(five, "/api/v1/search?query=body&limit=0")
    assert (body["messages"], body["messages_count"], body["count"]) == ([], 5, 0)
    assert subjects(get_json(five, "/api/v1/search?query=body&start=4")) == ["m0"]
    assert subjects(get_json(five, "/api/v1/search?query=body&start=9")) == []


def test_before_cursor_pages_by_time(five: SinkServer) -> None:
    first = get_json(five, "/api/v1/messages?limit=2")
    cursor = first["messages"][-1]["Created"]
    body = get_json(five, "/api/v1/messages?limit=2&before=" + urllib.parse.quote(cursor))
    assert subjects(body) == ["m2", "m1"] and body["messages_count"] == 5  # counts ignore the cursor
    body = get_json(five, "/api/v1/search?query=body&before=" + urllib.parse.quote(cursor))
    assert subjects(body) == ["m2", "m1", "m0"] and body["messages_count"] == 3
    assert len(get_json(five, "/api/v1/messages?before=not-a-date")["messages"]) == 5  # ignored


def test_messages_unread_counts(five: SinkServer) -> None:
    wanted = ids(five)
    assert send_json(five, "/api/v1/messages", "PUT", {"Read": True, "IDs": [wanted["m1"], wanted["m2"]]})[0] == 200
    body = get_json(five, "/api/v1/messages")
    assert (body["unread"], body["messages_unread"]) == (3, 3)
    body = get_json(five, "/api/v1/search?query=" + urllib.parse.quote("-subject:m1"))
    assert (body["messages_count"], body["messages_unread"], body["unread"]) == (4, 3, 3)


def test_put_messages_read_defaults_to_false(five: SinkServer) -> None:
    assert send_json(five, "/api/v1/messages", "PUT", {"Read": True})[0] == 200
    assert set(read_flags(five).values()) == {True}
    status, _, body = send_json(five, "/api/v1/messages", "PUT", {})
    assert (status, body) == (200, b"ok")
    assert set(read_flags(five).values()) == {False}  # {} marks everything unread, as Mailpit
    wanted = ids(five)
    body = {"read": True, "ids": [wanted["m0"], "01ARZ3NDEKTSV4RRFFQ69G5FAV"]}
    assert send_json(five, "/api/v1/messages", "PUT", body)[0] == 200  # keys in any case; an unknown id ignored
    assert [s for s, r in read_flags(five).items() if r] == ["m0"]


@pytest.mark.parametrize(("body", "words"), [
    (b"", "empty body"),
    (b'{"IDs": ["01ARZ3NDEKTSV4RRFFQ69G5FAV"], "Search": "m1"}', "either IDs or a search query"),
    (b'{"Read": "yes"}', "Read"),
    (b'{"Search": 5}', "Search"),
    (b'{"Read": true, "Search": "' + b"x " * (MAX_QUERY_LENGTH // 2 + 1) + b'"}', "too long"),
])
def test_put_messages_refuses(five: SinkServer, body: bytes, words: str) -> None:
    status, _, answer = request(five, "/api/v1/messages", "PUT", body, {"Content-Type": "application/json"})
    assert status == 400 and words in json.loads(answer)["Error"]
    assert set(read_flags(five).values()) == {False}


def test_form_bodies_as_the_pypi_client_sends(five: SinkServer) -> None:
    """``ids=a&ids=b`` / ``Read=true`` form bodies mark and delete exactly those ids (decision 4)."""
    wanted = ids(five)
    form = urllib.parse.urlencode([("ids", wanted["m1"]), ("ids", wanted["m3"]), ("Read", "true")]).encode()
    assert request(five, "/api/v1/messages", "PUT", form, FORM)[:3:2] == (200, b"ok")
    assert [s for s, r in read_flags(five).items() if r] == ["m3", "m1"]
    assert request(five, "/api/v1/messages", "PUT", b"Read=maybe", FORM)[0] == 400
    form = urllib.parse.urlencode([("ids", wanted["m0"]), ("ids", wanted["m4"])]).encode()
    assert request(five, "/api/v1/messages", "DELETE", form, FORM)[:3:2] == (200, b"ok")
    assert sorted(ids(five)) == ["m1", "m2", "m3"]


def test_delete_messages_json(five: SinkServer) -> None:
    wanted = ids(five)
    json_type = {"Content-Type": "application/json"}
    status, _, answer = request(five, "/api/v1/messages", "DELETE", b'{"IDs": "x"}', json_type)
    assert status == 400 and "IDs" in json.loads(answer)["Error"] and len(ids(five)) == 5  # strict: nothing deleted
    assert send_json(five, "/api/v1/messages", "DELETE", {"ids": [wanted["m2"]]})[0] == 200
    assert sorted(ids(five)) == ["m0", "m1", "m3", "m4"]
    assert request(five, "/api/v1/messages", "DELETE")[0] == 200  # no body: everything
    assert ids(five) == {}


def test_info_counts_what_this_process_did(five: SinkServer) -> None:
    sizes = sum(m["Size"] for m in get_json(five, "/api/v1/messages")["messages"])
    assert send_json(five, "/api/v1/messages", "DELETE", {"IDs": [ids(five)["m0"]]})[0] == 200
    info = get_json(five, "/api/v1/info")
    assert list(info) == ["Version", "LatestVersion", "Database", "DatabaseSize", "Messages", "Unread", "Tags",
                          "RuntimeStats"]
    assert info["LatestVersion"] == "disabled" and info["Database"].endswith("index.sqlite")
    assert info["DatabaseSize"] > 4096 and (info["Messages"], info["Unread"], info["Tags"]) == (4, 4, {})
    stats = info["RuntimeStats"]
    assert list(stats) == ["Uptime", "Memory", "MessagesDeleted", "SMTPAccepted", "SMTPAcceptedSize", "SMTPRejected",
                           "SMTPIgnored"]
    assert (stats["MessagesDeleted"], stats["SMTPAccepted"], stats["SMTPAcceptedSize"]) == (1, 5, sizes)
    assert stats["Memory"] > 1_000_000 and 0 <= stats["Uptime"] < 600


# -- hostile queries -----------------------------------------------------------------------------

def test_hostile_queries_are_refused_or_bounded(five: SinkServer) -> None:
    """A query too long, with too many terms or too many values too short for the trigram index
    is 400 at once; the biggest allowed one (many long terms, negations, filters, the most short
    values) answers within seconds, while another client keeps sending and listing without
    waiting for it."""
    too_long = "a" * (MAX_QUERY_LENGTH + 1)  # longer than a URL may be: sent as PUT's Search
    status, _, answer = send_json(five, "/api/v1/messages", "PUT", {"Read": True, "Search": too_long})
    assert status == 400 and "too long" in json.loads(answer)["Error"]
    many = " ".join(f"term{n}" for n in range(MAX_TERMS + 1))
    status, _, answer = request(five, "/api/v1/search?query=" + urllib.parse.quote(many))
    assert status == 400 and "terms" in json.loads(answer)["Error"]
    short = " ".join(f"-{n}y" for n in range(MAX_SCANS + 1))  # each a scan of every message
    status, _, answer = request(five, "/api/v1/search?query=" + urllib.parse.quote(short))
    assert status == 400 and "shorter than 3 characters" in json.loads(answer)["Error"]
    kinds = ["-{}", "from:{}", "!subject:{}", "addressed:{}", "{}", "-tag:{}", '"{} x"']
    biggest = " ".join([*(kinds[n % len(kinds)].format(f"w{n:03d}" + "y" * 40) for n in range(MAX_TERMS - MAX_SCANS)),
                        *(f"-{n}z" for n in range(MAX_SCANS))])
    assert len(biggest) <= MAX_QUERY_LENGTH
    results: list[float] = []

    def hostile() -> None:
        for _ in range(5):
            began = time.monotonic()
            status, _, _ = request(five, "/api/v1/search?query=" + urllib.parse.quote(biggest))
            assert status == 200
            results.append(time.monotonic() - began)

    thread = threading.Thread(target=hostile)
    thread.start()
    try:
        for number in range(5):  # the second client: send, then see it listed
            began = time.monotonic()
            send(five, message(f"meanwhile {number}"))
            wait_until(lambda n=number: get_json(five, f"/api/v1/search?query=meanwhile%20{n}")["count"] == 1,
                       timeout=5, what="the second client's message listed")
            assert time.monotonic() - began < 5
    finally:
        thread.join(60)
    assert len(results) == 5 and max(results) < 5, results


def test_info_counts_refused_recipients(start_server: Any, tmp_path: Path) -> None:
    """``SMTPRejected``: the recipients the policy refused since start (Mailpit: RCPTs its
    allowed-recipients pattern refused)."""
    config = toml_config('[policy]\nforbidden = ["*@blocked.test"]\n', tmp_path / "mail")
    server = start_server(config=dataclasses.replace(config, http=dataclasses.replace(config.http, enabled=True,
                                                                                       port=0)))
    refused = send(server, message("partly"), to=["a@blocked.test", "bob@example.test", "b@blocked.test"])
    assert sorted(refused) == ["a@blocked.test", "b@blocked.test"]
    wait_until(lambda: get_json(server, "/api/v1/messages")["total"] == 1, what="listed")
    stats = get_json(server, "/api/v1/info")["RuntimeStats"]
    assert (stats["SMTPRejected"], stats["SMTPAccepted"], stats["SMTPIgnored"]) == (2, 1, 0)
