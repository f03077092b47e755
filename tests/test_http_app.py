"""The aiohttp application through aiohttp's own test client (no SMTP listener needed)."""

from __future__ import annotations

from pathlib import Path

from aiohttp.test_utils import TestClient, TestServer
from conftest import make_config

from smtp_sink.server import SinkServer
from smtp_sink.trace import Envelope
from smtp_sink.web.app import create_app


async def test_app_with_aiohttp_test_client(tmp_path: Path) -> None:
    server = SinkServer(make_config(tmp_path / "mail"))
    server.store.open()
    envelope = Envelope(helo="c.test", esmtp=True, mail_from="ann@example.test", rcpt_to=["bob@example.test"],
                        peer="127.0.0.1")
    for i in range(3):
        server.store.save(envelope, f"Subject: note {i}\r\nFrom: ann@example.test\r\n\r\nbody {i}\r\n".encode(),
                          "smtp-sink.localhost")
    server.store.index_pending()
    async with TestClient(TestServer(create_app(server))) as client:
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
    server.store.close()
