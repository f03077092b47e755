"""What the HTTP handlers share: the app's keys, its reader threads, errors and strict request parsing.

Nothing attacker-controlled is parsed or encoded on the event loop: file reads, message
parsing and JSON encoding and decoding run in the app's own reader threads
(:data:`READER_THREADS`), so one slow request holds up neither SMTP nor other requests.
JSON bodies are checked strictly: a field of the wrong type is 400 naming it, never a default.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
from collections.abc import Callable
from typing import Any, TypeVar

from aiohttp import web

from ..sink import Sink

T = TypeVar("T")
READER_THREADS = 4  # file reads, parsing and JSON work of HTTP requests (SQLite is serialised by the index lock)
STOP_WAIT = 2.0  # seconds the app waits at shutdown for reader work in flight
MAX_QUERY_NUMBER = 2**63 - 1  # start and limit: what SQLite can hold
SINK_KEY: web.AppKey[Sink] = web.AppKey("sink", Sink)
AUTH_KEY: web.AppKey[bytes] = web.AppKey("auth", bytes)  # b"user:password", or b"" for none
SMTP_PORT_KEY: web.AppKey[int] = web.AppKey("smtp_port", int)  # shown by /api/v1/info (0: none)


class APIError(Exception):
    """A request the API refuses: answered ``status`` with ``{"Error": message}``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class Readers:
    """The reader threads of one web app: run blocking work off the event loop, several at a time."""

    def __init__(self, threads: int = READER_THREADS) -> None:
        # Threads start on first use: an app that is built but never serves costs nothing.
        self._pool = concurrent.futures.ThreadPoolExecutor(threads, thread_name_prefix="smtp-sink-http")
        self._running: set[concurrent.futures.Future[Any]] = set()

    async def run(self, work: Callable[[], T]) -> T:
        """``work()`` in a reader thread."""
        future = self._pool.submit(work)
        self._running.add(future)
        future.add_done_callback(self._running.discard)
        return await asyncio.wrap_future(future)

    async def close(self, wait: float = STOP_WAIT) -> None:
        """Refuse new work, drop queued work and wait up to ``wait`` seconds for work in flight."""
        self._pool.shutdown(wait=False, cancel_futures=True)
        running = list(self._running)
        if running:
            await asyncio.get_running_loop().run_in_executor(
                None, lambda: concurrent.futures.wait(running, timeout=wait))


READERS_KEY: web.AppKey[Readers] = web.AppKey("readers", Readers)


def error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"Error": message}, status=status, headers=headers)


def sink(request: web.Request) -> Sink:
    return request.app[SINK_KEY]


async def off_loop(request: web.Request, work: Callable[[], T]) -> T:
    """Run blocking work (file reads, parsing, SQLite, JSON) in a reader thread of the app."""
    return await request.app[READERS_KEY].run(work)


async def json_off_loop(request: web.Request, work: Callable[[], Any], status: int = 200) -> web.Response:
    """A JSON response whose data is gathered and encoded in a reader thread."""
    body = await off_loop(request, lambda: json.dumps(work()).encode())
    return web.Response(body=body, status=status, content_type="application/json", charset="utf-8")


def number(request: web.Request, name: str, default: int) -> int:
    """A query parameter that must be a whole number from 0 to :data:`MAX_QUERY_NUMBER`."""
    text = request.query.get(name)
    if text is None:
        return default
    if not (text.isascii() and text.isdigit()):
        if text[:1] == "-" and text[1:].isascii() and text[1:].isdigit():
            raise APIError(400, f"{name} must not be negative, got {text[:30]}")
        raise APIError(400, f"{name} must be a whole number, got {text[:30]!r}")
    if len(text.lstrip("0")) > len(str(MAX_QUERY_NUMBER)) or int(text) > MAX_QUERY_NUMBER:
        raise APIError(400, f"{name} is out of range (at most {MAX_QUERY_NUMBER}), got {text[:30]}")
    return int(text)


def decode_json(raw: bytes) -> dict[str, Any]:
    """A JSON object from a request body; :class:`APIError` (400) for anything else."""
    try:
        body = json.loads(raw, object_pairs_hook=no_duplicates)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise APIError(400, f"invalid JSON: {str(exc)[:200]}") from None
    if not isinstance(body, dict):
        raise APIError(400, "expected a JSON object")
    return body


def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for key, value in pairs:
        if key in found:
            raise ValueError(f"field {key[:50]!r} given twice")
        found[key] = value
    return found


async def json_body(request: web.Request, fields: tuple[str, ...] | None = None) -> dict[str, Any]:
    """The request's JSON object; empty (a missing or blank body) as ``{}``. With ``fields``,
    keys are matched without regard to case, as Go's JSON decoder (Mailpit) does, and returned
    in the spelling of ``fields``; an unknown or repeated field is 400."""
    raw = await request.read()  # at most client_max_size (aiohttp answers 413 beyond)
    if not raw.strip():
        return {}
    body = await off_loop(request, lambda: decode_json(raw))
    if fields is None:
        return body
    known = {name.lower(): name for name in fields}
    found: dict[str, Any] = {}
    for key, value in body.items():
        name = known.get(key.lower())
        if name is None:
            raise APIError(400, f"unknown field {key[:50]!r} (known: {', '.join(fields)})")
        if name in found:
            raise APIError(400, f"field {name} given twice")
        found[name] = value
    return found


def show(value: Any) -> str:
    """A JSON value, short, for an error message."""
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."


def message_ids(body: dict[str, Any]) -> list[str] | None:
    """The ``IDs`` of a body: None (every message) when missing or ``[]``, else a list of strings."""
    if "IDs" not in body:
        return None
    ids = body["IDs"]
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise APIError(400, f"IDs: expected a list of message ids (strings), got {show(ids)}; "
                            "leave it out or send [] to mean every message")
    return ids or None
