"""One message must never break listing, search, the CLI or the page (issue 13 §1), end to end.

A real server with its HTTP API receives each hostile message over SMTP; then every list, search,
info and ``latest`` route and every inspection command works, the hostile messages are listed and
flagged (``ParseError``), their raw source, headers and parts download, mail arriving afterwards is
visible, all of it still after a restart (the index rebuilt from the files, too), and a second
SMTP client keeps getting answers the whole time.
"""

from __future__ import annotations

import dataclasses
import json
import mailbox
import time
from pathlib import Path
from typing import Any

import pytest
from support.http import get_json, request
from support.mail import send as send_mail
from support.processes import run_cli
from support.servers import Servers
from support.wire import Wire

from smtp_sink.server import SinkServer

HEAD = b"From: Ann <ann@example.test>\r\nTo: bob@example.test\r\nSubject: poison %s\r\n"


def nested(depth: int) -> bytes:
    opens = b"".join(b"--b%d\r\nContent-Type: multipart/mixed; boundary=b%d\r\n\r\n" % (n, n + 1) for n in range(depth))
    closes = b"".join(b"--b%d--\r\n" % n for n in range(depth, -1, -1))
    return b"Content-Type: multipart/mixed; boundary=b0\r\n\r\n" + opens + b"--b%d\r\n\r\ndeep\r\n" % depth + closes


def attachments(count: int, content_type: bytes = b"application/octet-stream") -> bytes:
    one = (b"--p\r\nContent-Type: " + content_type
           + b"\r\nContent-Disposition: attachment; filename=a.bin\r\n\r\nDATA\r\n")
    return b"Content-Type: multipart/mixed; boundary=p\r\n\r\n" + one * count + b"--p--\r\n"


# name -> (headers and body after HEAD, flagged?)
POISON: dict[str, tuple[bytes, bool]] = {
    "charset-undefined": (b"Content-Type: text/plain; charset=undefined\r\n\r\nbody\r\n", True),
    "charset-nul": (b'Content-Type: text/plain; charset="utf\x008"\r\n\r\nbody\r\n', True),
    "rfc2231-nul": (b"Content-Type: text/plain; charset*=x%00''abc\r\n\r\nbody\r\n", True),
    "charset-idna": (b"Content-Type: text/plain; charset=idna\r\n\r\nbody \xe9\xff\xfe\r\n", True),
    "nested-1000": (nested(1000), True),
    "parts-3000": (attachments(3000), True),
    "folded-type": (attachments(1, b"image/\r\n png"), False),
    "control-type": (attachments(1, b"image/p\x01ng"), False),
    "to-20000-a": (b"Cc: " + b"a" * 20000 + b"\r\n\r\nbody\r\n", False),
    "script-64k": (b"Content-Type: text/html\r\n\r\n" + b"<script>" * 8192 + b"\r\n", False),
    "header-line-3mb": (b"X-Long: " + b"y" * 3_000_000 + b"\r\n\r\nbody\r\n", True),  # past MAX_HEADER_BYTES
}
ROUTES = ["/api/v1/messages", "/api/v1/messages?limit=5&start=1", "/api/v1/search?query=poison",
          "/api/v1/search?query=subject:poison", "/api/v1/info", "/api/v1/message/latest"]


def send(server: SinkServer, raw: bytes) -> None:
    send_mail(server, raw, sender="sender@example.test", timeout=30)


def wait_total(server: SinkServer, count: int) -> dict[str, Any]:
    deadline = time.monotonic() + 20
    while True:
        page = get_json(server, "/api/v1/messages?limit=100")
        if page["total"] >= count or time.monotonic() > deadline:
            return page
        time.sleep(0.05)


class Talker:
    """A second SMTP client that keeps talking: one NOOP round trip between any two requests."""

    def __init__(self, server: SinkServer) -> None:
        self.wire = Wire(server.smtp_port)
        assert self.wire.code() == 220 and self.wire.cmd("EHLO talker")[0] == 250
        self.worst = 0.0

    def noop(self) -> None:
        started = time.perf_counter()
        assert self.wire.cmd("NOOP")[0] == 250
        self.worst = max(self.worst, time.perf_counter() - started)


@dataclasses.dataclass
class Poisoned:
    server: SinkServer
    ids: dict[str, str]  # POISON name -> message id


@pytest.fixture
def poisoned(start_server: Servers) -> Poisoned:
    """A running server whose store holds one good message, then each hostile one (sent over SMTP)."""
    server = start_server(http=True)
    send(server, HEAD % b"good" + b"\r\nfine\r\n")
    ids = {}
    for name, (rest, _) in POISON.items():
        send(server, HEAD % name.encode() + rest)
        ids[name] = wait_total(server, len(ids) + 2)["messages"][0]["ID"]
    return Poisoned(server, ids)


def check_server(server: SinkServer, ids: dict[str, str], talker: Talker, total: int) -> None:
    """Every route answers; each hostile message is listed, flagged as expected and downloadable."""
    for route in ROUTES:
        status, _, body = request(server, route, timeout=30)
        assert status == 200, (route, body[:300])
        talker.noop()
    listed = {m["ID"]: m for m in get_json(server, "/api/v1/messages?limit=100")["messages"]}
    assert len(listed) == total == get_json(server, "/api/v1/info")["Messages"]
    found = {m["ID"] for m in get_json(server, "/api/v1/search?query=poison&limit=100")["messages"]}
    assert set(ids.values()) <= found
    for name, message_id in ids.items():
        flagged = POISON[name][1]
        summary = listed[message_id]
        assert summary["Subject"] == f"poison {name}" and summary["To"] == [{"Name": "", "Address": "bob@example.test"}]
        assert bool(summary["ParseError"]) == flagged, (name, summary["ParseError"])
        detail = get_json(server, f"/api/v1/message/{message_id}")
        assert bool(detail["ParseError"]) == flagged and detail["Subject"] == f"poison {name}"
        status, _, raw = request(server, f"/api/v1/message/{message_id}/raw", timeout=30)
        assert status == 200 and raw == (server.store.path / f"{message_id}.eml").read_bytes()
        headers = get_json(server, f"/api/v1/message/{message_id}/headers")
        assert headers["Subject"] == [f"poison {name}"]
        for entry in detail["Attachments"][:1] + detail["Inline"][:1]:
            status, got, data = request(server, f"/api/v1/message/{message_id}/part/{entry['PartID']}", timeout=30)
            assert status == 200 and data == b"DATA", (name, status, data[:200])
            assert got["Content-Type"].split(";")[0] == entry["ContentType"]
        talker.noop()


def cli(store: Path, *args: str) -> bytes:
    """Run an inspection command; it must succeed without a traceback. Returns its output."""
    done = run_cli(*args, store=store, text=False)
    stderr = done.stderr.decode("utf-8", "replace")
    assert done.returncode == 0 and "Traceback" not in stderr, (args, stderr[-2000:])
    return done.stdout


def check_cli(store: Path, ids: dict[str, str], total: int) -> None:
    """list, search, wait, show (latest, each hostile message: JSON, headers, raw) and export."""
    page = json.loads(cli(store, "list", "--json", "--limit", "0"))
    assert page["total"] == total
    flags = {m["ID"]: m["ParseError"] for m in page["messages"]}
    assert {name for name, message_id in ids.items() if flags[message_id]} == {n for n, (_, f) in POISON.items() if f}
    assert len(cli(store, "list", "--limit", "0").splitlines()) == total + 2  # header line, rows, count line
    found = json.loads(cli(store, "search", "poison", "--json", "--limit", "0"))["messages"]
    assert {m["ID"] for m in found} >= set(ids.values())
    assert cli(store, "wait", "--subject", "poison", "--timeout", "5").decode().strip() == page["messages"][0]["ID"]
    assert json.loads(cli(store, "show", "latest", "--json"))["ID"] == page["messages"][0]["ID"]
    for name in ("nested-1000", "charset-idna", "parts-3000"):  # one process each: a sample of the kinds
        message_id = ids[name]
        shown = json.loads(cli(store, "show", message_id, "--json"))
        assert shown["ParseError"] and shown["Subject"] == f"poison {name}"
        assert f"Subject: poison {name}" in cli(store, "show", message_id, "--headers").decode()
        assert cli(store, "show", message_id, "--raw") == (store / f"{message_id}.eml").read_bytes()
    assert cli(store, "show", ids["parts-3000"], "--part", "1") == b"DATA"
    mbox = store.parent / "all.mbox"
    cli(store, "export", "--mbox", str(mbox))
    assert len(mailbox.mbox(str(mbox))) == total


def test_hostile_messages_never_break_the_api_the_cli_or_later_mail(poisoned: Poisoned) -> None:
    server, ids = poisoned.server, poisoned.ids
    talker = Talker(server)
    total = len(POISON) + 1
    check_server(server, ids, talker, total)
    check_cli(server.store.path, ids, total)  # the CLI beside the running server

    send(server, HEAD % b"after" + b"\r\narrived after the poison\r\n")  # mail arriving afterwards is visible
    latest = get_json(server, "/api/v1/message/latest")
    assert latest["Subject"] == "poison after" and latest["ParseError"] == ""
    assert get_json(server, "/api/v1/search?query=arrived")["messages_count"] == 1
    talker.noop()
    talker.wire.close()
    assert talker.worst < 2.0, f"a NOOP round trip took {talker.worst:.2f} s while hostile mail was read"


def test_hostile_messages_survive_a_restart_and_an_index_rebuild(poisoned: Poisoned, start_server: Servers) -> None:
    store, ids = poisoned.server.store.path, poisoned.ids
    start_server.stop(poisoned.server)
    check_cli(store, ids, len(POISON) + 1)  # no server running
    again = start_server(http=True)  # a new server on the same store
    talker = Talker(again)
    check_server(again, ids, talker, len(POISON) + 1)
    send(again, HEAD % b"after restart" + b"\r\nstill arriving\r\n")
    assert get_json(again, "/api/v1/message/latest")["Subject"] == "poison after restart"
    talker.wire.close()
    start_server.stop(again)
    for index_file in store.glob("index.sqlite*"):  # the index is a cache: rebuilt from the files
        index_file.unlink()
    rebuilt = start_server(http=True)
    talker = Talker(rebuilt)
    check_server(rebuilt, ids, talker, len(POISON) + 2)
    assert get_json(rebuilt, "/api/v1/message/latest")["Subject"] == "poison after restart"
    talker.wire.close()
