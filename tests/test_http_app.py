"""The web app built from a Sink alone: no SMTP listener, no server module."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from aiohttp.test_utils import TestClient, TestServer
from support.config import make_config

from smtp_sink.sink import Sink
from smtp_sink.trace import Envelope
from smtp_sink.web.app import create_app


def fill(sink: Sink, count: int) -> None:
    envelope = Envelope(helo="c.test", esmtp=True, mail_from="ann@example.test", rcpt_to=["bob@example.test"],
                        peer="127.0.0.1")
    for i in range(count):
        sink.save(envelope, f"Subject: note {i}\r\nFrom: ann@example.test\r\n\r\nbody {i}\r\n".encode())


async def test_app_with_aiohttp_test_client(tmp_path: Path) -> None:
    config = make_config(tmp_path / "mail")
    sink = Sink(config)
    await sink.start()
    fill(sink, 3)
    async with TestClient(TestServer(create_app(sink, config.http))) as client:
        listing = await client.get("/api/v1/messages?limit=2")
        assert listing.status == 200
        body = await listing.json()
        assert (body["total"], body["count"]) == (3, 2)
        assert [m["Subject"] for m in body["messages"]] == ["note 2", "note 1"]
        latest = await client.get("/api/v1/message/latest")
        assert (await latest.json())["Text"] == "body 2\n"
        assert latest.headers["X-Content-Type-Options"] == "nosniff"
        assert (await client.get("/api/v1/message/00000000000000000000000000")).status == 404
        refused = await client.delete("/api/v1/messages", headers={"Sec-Fetch-Site": "cross-site"})
        assert refused.status == 403
        bad = await client.put("/api/v1/messages", data="{not json")
        assert bad.status == 400 and (await bad.json())["Error"].startswith("invalid JSON")
        assert (await client.delete("/api/v1/messages", json={"IDs": []})).status == 200
        assert (await (await client.get("/api/v1/messages")).json())["total"] == 0
    await sink.stop()


async def test_a_missing_part_of_an_existing_message_is_named_as_the_part(tmp_path: Path) -> None:
    """Not "message not found": the message is there, its part 7 is not."""
    config = make_config(tmp_path / "mail")
    sink = Sink(config)
    await sink.start()
    fill(sink, 1)
    (message_id,) = sink.store.ids()
    async with TestClient(TestServer(create_app(sink, config.http))) as client:
        found = await client.get(f"/api/v1/message/{message_id}/part/0")
        assert found.status == 200 and await found.read() == b"body 0\r\n"
        missing = await client.get(f"/api/v1/message/{message_id}/part/7")
        assert missing.status == 404
        assert (await missing.json())["Error"] == f"part 7 of message {message_id} not found"
        gone = await client.get("/api/v1/message/01ARZ3NDEKTSV4RRFFQ69G5FAV/part/0")
        assert (await gone.json())["Error"] == "message 01ARZ3NDEKTSV4RRFFQ69G5FAV not found"
    await sink.stop()


SINK_ALONE = textwrap.dedent("""
    import asyncio, json, sys, urllib.request
    from smtp_sink.config import Config, HTTPConfig, StoreConfig
    from smtp_sink.sink import Sink
    from smtp_sink.trace import Envelope
    from smtp_sink.web.app import HTTPServer

    def get(port, path):
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
            return json.load(response)

    async def main():
        sink = Sink(Config(store=StoreConfig(path=sys.argv[1])))
        await sink.start()
        envelope = Envelope(helo="c.test", mail_from="ann@example.test", rcpt_to=["bob@example.test"])
        sink.save(envelope, b"Subject: over a socket\\r\\n\\r\\nhello\\r\\n")
        http = HTTPServer(sink, HTTPConfig(port=0))
        await http.start()
        loop = asyncio.get_running_loop()
        listing = await loop.run_in_executor(None, get, http.port, "/api/v1/messages")
        opened = await loop.run_in_executor(None, get, http.port, "/api/v1/message/latest")
        again = await loop.run_in_executor(None, get, http.port, "/api/v1/messages")
        await http.stop()
        await sink.stop()
        print(json.dumps({"listing": listing, "opened": opened, "again": again,
                          "modules": sorted(m for m in sys.modules if m.startswith("smtp_sink"))}))

    asyncio.run(main())
""")


def test_the_web_app_serves_a_sink_alone_over_a_real_socket(tmp_path: Path) -> None:
    """A fresh interpreter builds a Sink and its HTTP listener, nothing else, and fetches over TCP:
    the web side never needs the SMTP server (nor imports it)."""
    result = subprocess.run([sys.executable, "-c", SINK_ALONE, str(tmp_path / "mail")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    assert found["listing"]["total"] == 1 and found["listing"]["unread"] == 1
    assert found["listing"]["messages"][0]["Subject"] == "over a socket"
    assert found["opened"]["Text"] == "hello\n" and found["opened"]["Read"] is True
    assert found["again"]["unread"] == 0  # opening it marked it read
    assert "smtp_sink.server" not in found["modules"]
    assert "smtp_sink.web.app" in found["modules"]
