"""``GET /api/events``: the store's events, live. A WebSocket upgrade gets Mailpit's socket (text
frames ``{"Type", "Data"}``: ``new``, ``update``, ``delete``, ``truncate``, ``prune``, ``stats``);
any other request our Server-Sent Events stream (``new``, ``delete``, ``read``), which the web
page uses.

One :class:`Hub` per app listens to the sink while someone is connected and encodes each event
once, in the thread that caused it, never on the event loop. Every client has a bounded queue: a
Server-Sent Events client too slow to take :data:`SSE_QUEUE` events misses the newer ones; a
WebSocket client whose :data:`WS_QUEUE` frames are not taken is dropped, as Mailpit drops it. A
``stats`` frame follows any change, debounced (:data:`STATS_DELAY`), and each new connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from typing import Any

from aiohttp import web

from .. import __version__
from ..sink import ClientError, Sink
from ..store import Deleted, Marked, Tagged
from ..summary import Summary
from .common import READERS_KEY, SINK_KEY, Readers
from .security import EVENTS

log = logging.getLogger("smtp_sink")
SSE_QUEUE = 1000  # events queued for one Server-Sent Events client
WS_QUEUE = 256  # frames queued for one WebSocket client before it is dropped (Mailpit's buffer)
STATS_DELAY = 0.25  # seconds from the first change to the stats frame that reports it (Mailpit's)
PRUNE_OVER = 200  # deletions of more messages than this are one "prune" frame (Mailpit's)
KEEP_ALIVE = 15.0  # seconds between keep-alive comments on an idle Server-Sent Events stream
PING = 54.0  # seconds between WebSocket pings (Mailpit's); no pong within half of it closes
MAX_CLIENT_FRAME = 65536  # bytes of one frame a WebSocket client may send (read and discarded)


def sse_frame(event: object) -> bytes | None:
    """A store event as one Server-Sent Event, or None for an event the stream does not carry."""
    if isinstance(event, Summary):
        kind, data = "new", event.to_json()
    elif isinstance(event, Deleted):
        kind, data = "delete", {"IDs": list(event.ids), "All": event.all}
    elif isinstance(event, Marked):
        kind, data = "read", {"IDs": None if event.ids is None else list(event.ids), "Read": event.read}
    else:
        return None
    return f"event: {kind}\ndata: {json.dumps(data)}\n\n".encode()


def ws_frames(event: object) -> list[str]:
    """A store event as Mailpit's WebSocket frames (``[]`` for none: marking every message read
    only changes the stats, as in Mailpit)."""
    if isinstance(event, Summary):
        return [_frame("new", event.to_json())]
    if isinstance(event, Deleted):
        if event.all:
            return [_frame("truncate", None)]
        if len(event.ids) > PRUNE_OVER:
            return [_frame("prune", None)]
        return [_frame("delete", {"ID": message_id}) for message_id in event.ids]
    if isinstance(event, Marked) and event.ids is not None:
        return [_frame("update", {"ID": message_id, "Read": event.read}) for message_id in event.ids]
    if isinstance(event, Tagged):  # Mailpit: update {ID, Tags} per message; renaming or deleting a tag: prune
        if event.everywhere:
            return [_frame("prune", None)]
        return [_frame("update", {"ID": message_id, "Tags": list(tags)}) for message_id, tags in event.tags]
    if isinstance(event, ClientError):  # Mailpit's BroadCastClientError
        return [_frame("error", {"Level": event.level, "Type": "smtpd", "IP": event.peer, "Message": event.line})]
    return []


def _frame(kind: str, data: Any) -> str:
    return json.dumps({"Type": kind, "Data": data})


class _Socket:
    """One WebSocket client: its queue of frames, dropped when full."""

    def __init__(self, request: web.Request) -> None:
        self.queue: asyncio.Queue[str] = asyncio.Queue(WS_QUEUE)
        self.transport = request.transport
        self.dropped = False

    def offer(self, frame: str) -> None:
        if self.dropped:
            return
        try:
            self.queue.put_nowait(frame)
        except asyncio.QueueFull:  # it does not read: cut it off (its handler then ends)
            self.dropped = True
            log.warning("event socket dropped: %d frames not taken", WS_QUEUE)
            if self.transport is not None:
                self.transport.abort()


class Hub:
    """The event fan-out of one web app: subscribed to the sink while a client is connected."""

    def __init__(self, sink: Sink, readers: Readers) -> None:
        self.sink, self.readers = sink, readers
        self.streams: set[asyncio.Queue[bytes]] = set()
        self.sockets: set[_Socket] = set()
        self._unsubscribe: Callable[[], None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stats_due: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Future[Any]] = set()

    def join(self, client: asyncio.Queue[bytes] | _Socket) -> None:
        """Start sending events to a client (subscribing to the sink for the first one)."""
        if isinstance(client, _Socket):
            self.sockets.add(client)
            self.stats_soon()  # Mailpit sends stats after each connection
        else:
            self.streams.add(client)
        if self._unsubscribe is None:
            self._loop = asyncio.get_running_loop()
            self._unsubscribe = self.sink.subscribe(self._push)

    def leave(self, client: asyncio.Queue[bytes] | _Socket) -> None:
        """Stop sending to a client (unsubscribing when it was the last)."""
        if isinstance(client, _Socket):
            self.sockets.discard(client)
        else:
            self.streams.discard(client)
        if not self.sockets and not self.streams and self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    def _push(self, event: object) -> None:
        """Called in the thread that indexed, deleted or marked: encode there, hand to the loop."""
        stream = sse_frame(event) if self.streams else None
        frames = ws_frames(event) if self.sockets else []
        changed = not isinstance(event, ClientError)  # an error reply changes no counts: no stats frame
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(self._fan_out, stream, frames, changed)

    def _fan_out(self, stream: bytes | None, frames: list[str], changed: bool) -> None:
        if stream is not None:
            for queue in list(self.streams):
                if not queue.full():  # a client too slow to take SSE_QUEUE events misses the newer ones
                    queue.put_nowait(stream)
        for socket in list(self.sockets):
            for frame in frames:
                socket.offer(frame)
        if changed:
            self.stats_soon()

    def stats_soon(self) -> None:
        """Send a stats frame :data:`STATS_DELAY` from now, unless one is due already."""
        if self._stats_due is not None or not self.sockets:
            return
        self._stats_due = asyncio.get_running_loop().call_later(STATS_DELAY, self._send_stats)

    def _send_stats(self) -> None:
        self._stats_due = None
        task = asyncio.ensure_future(self._stats())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _stats(self) -> None:
        try:
            total, unread = await self.readers.run(self.sink.store.counts)
        except Exception:  # the index cannot be read now: the next change tries again
            log.exception("event stats failed")
            return
        frame = _frame("stats", {"Total": total, "Unread": unread, "Version": __version__})
        for socket in list(self.sockets):
            socket.offer(frame)

    async def close(self, app: web.Application | None = None) -> None:
        """Stop: cancel pending stats, cut the sockets, end the streams and unsubscribe."""
        if self._stats_due is not None:
            self._stats_due.cancel()
            self._stats_due = None
        for task in list(self._tasks):
            task.cancel()
        sockets = [socket for socket in self.sockets if socket.transport is not None]
        for socket in sockets:
            socket.dropped = True
            socket.transport.abort()  # type: ignore[union-attr]
        for queue in self.streams:  # wake each stream's handler (a client gone would hold it otherwise)
            while queue.full():
                queue.get_nowait()
            queue.put_nowait(b"")
        self.sockets.clear()
        self.streams.clear()
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None


HUB_KEY: web.AppKey[Hub] = web.AppKey("events_hub", Hub)


def setup(app: web.Application) -> None:
    """Give the app its event hub (closed when the app shuts down)."""
    hub = Hub(app[SINK_KEY], app[READERS_KEY])
    app[HUB_KEY] = hub
    app.on_shutdown.append(hub.close)


async def events(request: web.Request) -> web.StreamResponse:
    """``GET /api/events``: Mailpit's WebSocket for an upgrade request, else Server-Sent Events."""
    socket = web.WebSocketResponse(heartbeat=PING, max_msg_size=MAX_CLIENT_FRAME)
    if socket.can_prepare(request).ok:
        return await _websocket(request, socket)
    return await _stream(request)


async def _websocket(request: web.Request, socket: web.WebSocketResponse) -> web.WebSocketResponse:
    hub = request.app[HUB_KEY]
    await socket.prepare(request)
    client = _Socket(request)
    hub.join(client)
    writer = asyncio.ensure_future(_write(socket, client))
    try:
        async for _ in socket:  # what the client sends is read and discarded, as Mailpit does
            pass
    finally:
        hub.leave(client)
        writer.cancel()
    return socket


async def _write(socket: web.WebSocketResponse, client: _Socket) -> None:
    with contextlib.suppress(ConnectionError, RuntimeError):  # the client went away
        while True:
            await socket.send_str(await client.queue.get())


async def _stream(request: web.Request) -> web.StreamResponse:
    """Server-Sent Events: ``new`` (a message summary), ``delete`` (ids or all), ``read``."""
    hub = request.app[HUB_KEY]
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=SSE_QUEUE)
    # Subscribe before the client sees the stream open: it refreshes its list on open, so
    # nothing that arrives in between is missed.
    hub.join(queue)
    try:
        await response.prepare(request)
        await response.write(b": connected\n\n")
        while True:
            try:
                item = await asyncio.wait_for(queue.get(), KEEP_ALIVE)
            except asyncio.TimeoutError:
                await response.write(b": keep-alive\n\n")
                continue
            if not item:  # the app is shutting down (see Hub.close)
                break
            await response.write(item)
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        hub.leave(queue)
    return response


ROUTES = [web.get("/api/events", events, name=EVENTS)]
