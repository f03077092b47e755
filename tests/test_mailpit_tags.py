"""Tags as Mailpit has them (spec §4), over real sockets: ``/api/v1/tags`` (list, set, rename,
delete), tags at arrival (``X-Tags``, plus addresses, ``[tags]``), in summaries and events, and
the CLI (``smtp-sink list --tag``, ``smtp-sink tag``)."""

from __future__ import annotations

import dataclasses
import http.client
import json
import urllib.parse
from pathlib import Path
from typing import Any

import pytest
from support import wait_until
from support.config import toml_config
from support.http import get_json, request, send_json
from support.mail import send
from support.processes import cli_json, run_cli

from smtp_sink.server import SinkServer
from smtp_sink.tags import clean_tag, title_case, unique_tags


def message(subject: str, tags: str | None = None, to: str = "bob@example.test") -> str:
    header = f"X-Tags: {tags}\r\n" if tags is not None else ""
    return f"From: ann@example.test\r\nTo: {to}\r\nSubject: {subject}\r\n{header}\r\nbody of {subject}\r\n"


def ids_by_subject(server: SinkServer) -> dict[str, str]:
    return {m["Subject"]: m["ID"] for m in get_json(server, "/api/v1/messages?limit=0")["messages"]}


def tags_by_subject(server: SinkServer) -> dict[str, list[str]]:
    return {m["Subject"]: m["Tags"] for m in get_json(server, "/api/v1/messages?limit=0")["messages"]}


@pytest.fixture
def tagged(web_server: SinkServer) -> SinkServer:
    """Three messages: one/two tagged at arrival, three untagged."""
    send(web_server, message("one", "Urgent, work "))
    send(web_server, message("two", "urgent,Dirty! \"Tag\""))  # urgent is Urgent (first spelling kept)
    send(web_server, message("three"))
    wait_until(lambda: get_json(web_server, "/api/v1/messages")["total"] == 3, what="3 listed")
    return web_server


def test_tags_at_arrival_and_in_lists(tagged: SinkServer) -> None:
    assert tags_by_subject(tagged) == {"one": ["Urgent", "work"], "two": ["Dirty Tag", "Urgent"], "three": []}
    assert get_json(tagged, "/api/v1/tags") == ["Dirty Tag", "Urgent", "work"]  # alphabetical, any case
    assert get_json(tagged, "/api/v1/messages")["tags"] == ["Dirty Tag", "Urgent", "work"]
    one = ids_by_subject(tagged)["one"]
    assert get_json(tagged, f"/api/v1/message/{one}")["Tags"] == ["Urgent", "work"]
    assert get_json(tagged, "/api/v1/info")["Tags"] == {"Dirty Tag": 1, "Urgent": 2, "work": 1}


def test_set_tags_replaces_them_and_ignores_unknown_ids(tagged: SinkServer) -> None:
    ids = ids_by_subject(tagged)
    body = {"IDs": [ids["one"], ids["three"], "01ARZ3NDEKTSV4RRFFQ69G5FAV"], "Tags": ["WORK", "new one", "new ONE"]}
    status, _, answer = send_json(tagged, "/api/v1/tags", "PUT", body)
    assert (status, answer) == (200, b"ok")
    assert tags_by_subject(tagged) == {"one": ["new one", "work"], "two": ["Dirty Tag", "Urgent"],
                                       "three": ["new one", "work"]}
    # keys in any case (as Go reads JSON); null Tags removes them all
    assert send_json(tagged, "/api/v1/tags", "PUT", {"ids": [ids["three"]], "tags": None})[0] == 200
    assert tags_by_subject(tagged)["three"] == []
    # unknown ids make no tag (Mailpit's bug, decision 13)
    unknown = {"IDs": ["01ARZ3NDEKTSV4RRFFQ69G5FAV"], "Tags": ["ghost"]}
    assert send_json(tagged, "/api/v1/tags", "PUT", unknown)[0] == 200
    assert "ghost" not in get_json(tagged, "/api/v1/tags")


@pytest.mark.parametrize(("body", "words"), [
    (b"", "empty body"),
    (b'{"IDs": "x", "Tags": []}', "IDs"),
    (b'{"IDs": [], "Tags": "urgent"}', "Tags"),
    (b"[1]", ""),
])
def test_set_tags_refuses_bad_bodies(tagged: SinkServer, body: bytes, words: str) -> None:
    status, _, answer = request(tagged, "/api/v1/tags", "PUT", body, {"Content-Type": "application/json"})
    assert status == 400 and words in json.loads(answer)["Error"]
    assert get_json(tagged, "/api/v1/tags") == ["Dirty Tag", "Urgent", "work"]


def test_rename_tag(tagged: SinkServer) -> None:
    assert send_json(tagged, "/api/v1/tags/urgent", "PUT", {"Name": "Important!"})[0] == 200
    assert tags_by_subject(tagged) == {"one": ["Important", "work"], "two": ["Dirty Tag", "Important"], "three": []}
    assert send_json(tagged, "/api/v1/tags/important", "PUT", {"name": "IMPORTANT"})[0] == 200  # case only
    assert get_json(tagged, "/api/v1/tags") == ["Dirty Tag", "IMPORTANT", "work"]
    path = "/api/v1/tags/" + urllib.parse.quote("Dirty Tag")
    status, _, answer = send_json(tagged, path, "PUT", {"Name": "work"})
    assert (status, json.loads(answer)) == (400, {"Error": "tag already exists: work"})
    status, _, answer = send_json(tagged, "/api/v1/tags/nope", "PUT", {"Name": "x"})
    assert (status, json.loads(answer)) == (400, {"Error": "tag not found: nope"})
    status, _, answer = send_json(tagged, "/api/v1/tags/work", "PUT", {"Name": "!!!"})
    assert (status, json.loads(answer)) == (400, {"Error": "invalid tag name: "})
    assert request(tagged, "/api/v1/tags/work", "PUT")[0] == 400  # empty body
    assert get_json(tagged, "/api/v1/search?query=tag:important")["messages_count"] == 2


def test_delete_tag_keeps_the_messages(tagged: SinkServer) -> None:
    status, _, answer = request(tagged, "/api/v1/tags/URGENT", "DELETE")
    assert (status, answer) == (200, b"ok")
    assert tags_by_subject(tagged) == {"one": ["work"], "two": ["Dirty Tag"], "three": []}
    status, _, answer = request(tagged, "/api/v1/tags/urgent", "DELETE")
    assert (status, json.loads(answer)) == (400, {"Error": "tag not found: urgent"})


def test_unused_tags_go_with_their_messages(tagged: SinkServer) -> None:
    one = ids_by_subject(tagged)["one"]
    assert send_json(tagged, "/api/v1/messages", "DELETE", {"IDs": [one]})[0] == 200
    assert get_json(tagged, "/api/v1/tags") == ["Dirty Tag", "Urgent"]


def test_new_message_event_carries_its_tags(web_server: SinkServer) -> None:
    """The ``new`` event's summary (as the webhook's) has the tags the message got on arrival."""
    connection = http.client.HTTPConnection("127.0.0.1", web_server.http_port, timeout=10)
    connection.request("GET", "/api/events", headers={"Accept": "text/event-stream"})
    response = connection.getresponse()
    assert response.readline().startswith(b": connected")
    send(web_server, message("evented", "Alpha,beta"), to=["bob+vip@example.test"])
    data: dict[str, Any] = {}
    while not data:
        line = response.readline()
        if line.startswith(b"data: "):
            event = json.loads(line[6:])
            data = event.get("Data", event) if isinstance(event, dict) else {}
    connection.close()
    # vip: from the envelope recipient (in Bcc, as Mailpit adds it)
    assert data["Subject"] == "evented" and data["Tags"] == ["Alpha", "beta", "vip"]


def test_tags_config(start_server: Any, tmp_path: Path) -> None:
    """``[tags]``: Title Case, plus addresses off, filters (a search query -> tags)."""
    config = toml_config('[tags]\ntitle_case = true\nplus_addresses = false\n'
                         '[tags.filters]\n"subject:invoice" = "Billing, money"\n', tmp_path / "mail")
    web = dataclasses.replace(config.http, enabled=True, port=0)
    server = start_server(config=dataclasses.replace(config, http=web))
    send(server, message("Invoice 7", "x-tag1, fOO bar"), to=["bob+plus@example.test"])
    wait_until(lambda: get_json(server, "/api/v1/messages")["total"] == 1, what="listed")
    assert tags_by_subject(server) == {"Invoice 7": ["Billing", "FOO Bar", "money", "X-Tag1"]}


def test_cli_list_by_tag_and_tag_command(tagged: SinkServer, tmp_path: Path) -> None:
    store = tmp_path / "mail"
    assert [m["Subject"] for m in cli_json(store, "list", "--tag", "URGENT")["messages"]] == ["two", "one"]
    three = ids_by_subject(tagged)["three"]
    assert cli_json(store, "tag", three, "Later", "soon") == {"ID": three, "Tags": ["Later", "soon"]}
    assert cli_json(store, "tag", three, "soon", "--remove") == {"ID": three, "Tags": ["Later"]}
    assert cli_json(store, "tag", "latest", "only", "--set") == {"ID": three, "Tags": ["only"]}
    assert cli_json(store, "tag") == {"Dirty Tag": 1, "only": 1, "Urgent": 2, "work": 1}
    assert tags_by_subject(tagged)["three"] == ["only"]
    listed = run_cli("tag", three, store=store)
    assert listed.returncode == 0 and listed.stdout.strip() == "only"
    bad = run_cli("tag", "01ARZ3NDEKTSV4RRFFQ69G5FAV", "x", store=store)
    assert bad.returncode != 0 and "no message" in bad.stderr


# -- names, on their own ----------------------------------------------------------------------------

def test_tag_names_are_cleaned_as_mailpit() -> None:
    assert clean_tag('Dirty! "Tag"') == "Dirty Tag"
    assert clean_tag("a@b.c_d-e") == "a@b.c_d-e"
    assert clean_tag("x" * 150) == "x" * 100
    assert unique_tags(["Urgent", "urgent", " ", "!!", "b"]) == ["Urgent", "b"]
    assert title_case("x-tag1") == "X-Tag1" and title_case("fOO bar") == "FOO Bar"
