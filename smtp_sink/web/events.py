"""``GET /api/events``: Server-Sent Events of the store (new, delete, read)."""

from __future__ import annotations

import asyncio
import json

from aiohttp import web

from ..store import Deleted, Marked
from ..summary import Summary
from .common import sink


def _event(event: object) -> bytes | None:
    """A store event as one Server-Sent Event (encoded where it happens, not on the loop)."""
    if isinstance(event, Summary):
        kind, data = "new", event.to_json()
    elif isinstance(event, Deleted):
        kind, data = "delete", {"IDs": list(event.ids), "All": event.all}
    elif isinstance(event, Marked):
        kind, data = "read", {"IDs": None if event.ids is None else list(event.ids), "Read": event.read}
    else:
        return None
    return f"event: {kind}\ndata: {json.dumps(data)}\n\n".encode()


async def events(request: web.Request) -> web.StreamResponse:
    """Server-Sent Events: ``new`` (a message summary), ``delete`` (ids or all), ``read``."""
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=1000)
    loop = asyncio.get_running_loop()

    def push(event: object) -> None:  # called from the thread that indexed, deleted or marked
        item = _event(event)
        if item is not None:
            loop.call_soon_threadsafe(_offer, queue, item)

    # Subscribe before the client sees the stream open: it refreshes its list on open, so
    # nothing that arrives in between is missed.
    unsubscribe = sink(request).subscribe(push)
    try:
        await response.prepare(request)
        await response.write(b": connected\n\n")
        while True:
            try:
                item = await asyncio.wait_for(queue.get(), 15)
            except asyncio.TimeoutError:
                await response.write(b": keep-alive\n\n")
                continue
            await response.write(item)
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        unsubscribe()
    return response


def _offer(queue: asyncio.Queue[bytes], item: bytes) -> None:
    """Queue an event for a stream; a client too slow to take 1000 misses the newer ones."""
    if not queue.full():
        queue.put_nowait(item)


ROUTES = [web.get("/api/events", events)]
