"""``/api/events`` over a real socket: Mailpit's WebSocket frames (with aiohttp's WebSocket client,
as the web UI or the npm ``mailpit-ws`` package would connect) and the Server-Sent Events stream
that the page uses, on the same path."""

from __future__ import annotations

import asyncio
import json
import smtplib
import socket
from typing import Any

import aiohttp
from support import wait_until
from support.http import get_json, request, send_json

from smtp_sink import __version__
from smtp_sink.server import SinkServer
from smtp_sink.sink import ERRORS_PER_SECOND

Frame = dict[str, Any]


def smtp_send(server: SinkServer, subject: str) -> None:
    with smtplib.SMTP("127.0.0.1", server.smtp_port) as smtp:
        smtp.sendmail("a@example.test", ["b@example.test"], f"Subject: {subject}\r\n\r\nhello\r\n")


async def next_frame(socket: aiohttp.ClientWebSocketResponse, kind: str, seen: list[Frame]) -> Frame:
    """The next frame of type ``kind`` (others are kept in ``seen``: Mailpit does not order events)."""
    while True:
        message = await socket.receive(timeout=5)
        assert message.type == aiohttp.WSMsgType.TEXT, message
        frame = json.loads(message.data)
        assert set(frame) == {"Type", "Data"}
        seen.append(frame)
        if frame["Type"] == kind:
            return frame


async def stats_reach(socket: aiohttp.ClientWebSocketResponse, total: int, unread: int, seen: list[Frame]) -> None:
    while True:
        frame = await next_frame(socket, "stats", seen)
        if frame["Data"] == {"Total": total, "Unread": unread, "Version": __version__}:
            return


async def test_websocket_gets_mailpits_frames(web_server: SinkServer) -> None:
    """stats after connecting, new, update (read), delete, truncate: each as ``{"Type", "Data"}``."""
    url = f"http://127.0.0.1:{web_server.http_port}/api/events"
    seen: list[Frame] = []
    async with aiohttp.ClientSession() as session, session.ws_connect(url) as socket:
        first = await next_frame(socket, "stats", seen)
        assert first["Data"] == {"Total": 0, "Unread": 0, "Version": __version__}
        await socket.send_str("anything")  # what a client sends is read and discarded
        await asyncio.to_thread(smtp_send, web_server, "first")
        new = (await next_frame(socket, "new", seen))["Data"]
        assert new["Subject"] == "first" and new["Read"] is False
        assert new["To"] == [] and new["Bcc"] == [{"Name": "", "Address": "b@example.test"}]  # from the envelope
        await stats_reach(socket, 1, 1, seen)
        status = (await asyncio.to_thread(request, web_server, f"/api/v1/message/{new['ID']}"))[0]
        assert status == 200  # the detail marks it read
        assert (await next_frame(socket, "update", seen))["Data"] == {"ID": new["ID"], "Read": True}
        await stats_reach(socket, 1, 0, seen)
        await asyncio.to_thread(smtp_send, web_server, "second")
        second = (await next_frame(socket, "new", seen))["Data"]
        reply = await asyncio.to_thread(send_json, web_server, "/api/v1/messages", "DELETE", {"IDs": [new["ID"]]})
        assert reply[0] == 200
        assert (await next_frame(socket, "delete", seen))["Data"] == {"ID": new["ID"]}
        assert (await asyncio.to_thread(request, web_server, "/api/v1/messages", "DELETE"))[0] == 200
        assert (await next_frame(socket, "truncate", seen))["Data"] is None
        await stats_reach(socket, 0, 0, seen)
    assert second["ID"] not in [frame["Data"].get("ID") for frame in seen if frame["Type"] == "delete"]


async def test_marking_all_read_sends_only_stats_and_the_same_path_still_streams(web_server: SinkServer) -> None:
    """Mark-all gives no ``update`` frame (as Mailpit); ``Accept: text/event-stream`` on the same path
    is the Server-Sent Events stream, and a WebSocket client and a stream are served side by side."""
    url = f"http://127.0.0.1:{web_server.http_port}/api/events"
    await asyncio.to_thread(smtp_send, web_server, "one")
    await asyncio.to_thread(wait_until, lambda: get_json(web_server, "/api/v1/messages")["total"] == 1, 5, "listed")
    seen: list[Frame] = []
    async with aiohttp.ClientSession() as session, session.ws_connect(url) as socket:
        await stats_reach(socket, 1, 1, seen)
        async with session.get(url, headers={"Accept": "text/event-stream"}) as stream:
            assert stream.status == 200 and stream.headers["Content-Type"] == "text/event-stream"
            assert await stream.content.readline() == b": connected\n"
            assert await stream.content.readline() == b"\n"
            reply = await asyncio.to_thread(send_json, web_server, "/api/v1/messages", "PUT", {"Read": True})
            assert reply[0] == 200
            await stats_reach(socket, 1, 0, seen)
            assert [frame["Type"] for frame in seen] == ["stats"] * len(seen)
            await asyncio.to_thread(smtp_send, web_server, "two")
            assert (await next_frame(socket, "new", seen))["Data"]["Subject"] == "two"
            lines = [await asyncio.wait_for(stream.content.readline(), 5) for _ in range(3)]
            assert lines[0] == b"event: read\n" and json.loads(lines[1][6:]) == {"IDs": None, "Read": True}
            assert lines[2] == b"\n"
            event = [await asyncio.wait_for(stream.content.readline(), 5) for _ in range(2)]
            assert event[0] == b"event: new\n" and json.loads(event[1][6:])["Subject"] == "two"



async def test_tag_changes_are_update_frames_and_a_tag_rename_or_delete_is_prune(web_server: SinkServer) -> None:
    """Setting tags on a message sends ``update`` ``{"ID", "Tags"}``; renaming or deleting a tag,
    which changes every message that has it, sends ``prune`` (Mailpit's frames)."""
    url = f"http://127.0.0.1:{web_server.http_port}/api/events"
    await asyncio.to_thread(smtp_send, web_server, "tagged")
    await asyncio.to_thread(wait_until, lambda: get_json(web_server, "/api/v1/messages")["total"] == 1, 5, "listed")
    message_id = get_json(web_server, "/api/v1/messages")["messages"][0]["ID"]
    seen: list[Frame] = []
    async with aiohttp.ClientSession() as session, session.ws_connect(url) as socket:
        await stats_reach(socket, 1, 1, seen)
        body = {"IDs": [message_id], "Tags": ["alpha", "beta"]}
        assert (await asyncio.to_thread(send_json, web_server, "/api/v1/tags", "PUT", body))[0] == 200
        update = await next_frame(socket, "update", seen)
        assert update["Data"] == {"ID": message_id, "Tags": ["alpha", "beta"]}
        rename = await asyncio.to_thread(send_json, web_server, "/api/v1/tags/alpha", "PUT", {"Name": "gamma"})
        assert rename[0] == 200
        assert (await next_frame(socket, "prune", seen))["Data"] is None
        assert (await asyncio.to_thread(request, web_server, "/api/v1/tags/beta", "DELETE"))[0] == 200
        assert (await next_frame(socket, "prune", seen))["Data"] is None


def refused_commands(server: SinkServer, count: int) -> None:
    """One SMTP session: RCPT to busy@ (a 450 rule set up by the caller), then ``count`` unknown
    commands (500 each), pipelined."""
    with socket.create_connection(("127.0.0.1", server.smtp_port), timeout=10) as sock:
        wire = sock.makefile("rb")
        wire.readline()
        sock.sendall(b"EHLO x\r\nMAIL FROM:<a@example.test>\r\nRCPT TO:<busy@example.test>\r\n"
                     + b"BOGUS\r\n" * count + b"QUIT\r\n")
        while wire.readline():
            pass


async def test_refused_replies_are_mailpits_error_frames_at_a_bounded_rate(web_server: SinkServer) -> None:
    """A 4xx reply is an ``error`` frame of Level ``warning``, a 5xx of Level ``error`` (Mailpit's
    BroadCastClientError: Type ``smtpd``, the client's IP, the reply line); a flood of bad commands
    gives at most ERRORS_PER_SECOND frames a second, and the socket stays served."""
    server = web_server
    rule = {"stage": "rcpt", "recipient": "busy@*", "code": 450, "text": "try later"}
    assert (await asyncio.to_thread(send_json, server, "/api/v1/rules", "POST", rule))[0] == 201
    url = f"http://127.0.0.1:{server.http_port}/api/events"
    seen: list[Frame] = []
    async with aiohttp.ClientSession() as session, session.ws_connect(url) as socket_:
        await next_frame(socket_, "stats", seen)
        await asyncio.to_thread(refused_commands, server, 500)
        warning = await next_frame(socket_, "error", seen)
        assert warning["Data"] == {"Level": "warning", "Type": "smtpd", "IP": "127.0.0.1", "Message": "450 try later"}
        error = await next_frame(socket_, "error", seen)
        assert error["Data"]["Level"] == "error" and error["Data"]["Message"].startswith("500 ")
        await asyncio.sleep(0.5)  # whatever else came in this second
        while True:
            try:
                message = await socket_.receive(timeout=0.2)
            except asyncio.TimeoutError:
                break
            seen.append(json.loads(message.data))
        assert 2 <= len([f for f in seen if f["Type"] == "error"]) <= ERRORS_PER_SECOND * 2  # not 501 frames
        await asyncio.to_thread(smtp_send, server, "still served")
        assert (await next_frame(socket_, "new", seen))["Data"]["Subject"] == "still served"


async def test_a_websocket_from_another_site_is_refused(web_server: SinkServer) -> None:
    """A WebSocket is not bound by the same-origin policy: a page of another site must not listen."""
    url = f"http://127.0.0.1:{web_server.http_port}/api/events"
    async with aiohttp.ClientSession() as session:
        for headers in ({"Origin": "https://elsewhere.test"}, {"Sec-Fetch-Site": "cross-site"}):
            try:
                async with session.ws_connect(url, headers=headers):
                    raise AssertionError("the upgrade was accepted")
            except aiohttp.WSServerHandshakeError as exc:
                assert exc.status == 403
        async with session.ws_connect(url, headers={"Origin": f"http://127.0.0.1:{web_server.http_port}"}) as socket:
            assert (await next_frame(socket, "stats", []))["Data"]["Total"] == 0
