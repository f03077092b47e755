"""``[webhook]``: POST Mailpit's JSON summary of each new message to a URL.

The summary is the one the ``new`` event carries (:meth:`Summary.to_json`), encoded in the thread
that indexed the message. One worker thread sends, in arrival order, with a ``timeout`` per
attempt; a failure (no connection, a timeout, 408, 429 or a 5xx answer) is tried again up to
``retries`` times, waiting 0.5 s, 1 s, 2 s... (at most 30 s) in between; another 4xx, or a redirect,
is not. At most ``rate`` requests a second go out (retries included). Messages arriving faster
wait in a queue of :data:`QUEUE` (beyond it they are dropped, logged). Nothing here touches the
event loop, so the SMTP reply is never delayed.

Mailpit differs: it sends at most one webhook per ``--webhook-limit`` seconds and drops the others,
and never retries.
"""

from __future__ import annotations

import http.client
import json
import logging
import queue
import threading
import time
import urllib.error
import urllib.request
from typing import Any

from . import __version__
from .config import WebhookConfig
from .summary import Summary

__all__ = ["Webhook"]
log = logging.getLogger("smtp_sink")

QUEUE = 1000  # summaries waiting to be sent; more are dropped (logged)
BACKOFF_FIRST = 0.5  # seconds before the first retry, doubled for each next one
BACKOFF_MAX = 30.0
STOP_WAIT = 1.0  # seconds close() waits for a request in flight
RETRY_STATUSES = frozenset({408, 429})  # and every 5xx


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect is an answer like any other (urllib would turn the POST into a GET)."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class Webhook:
    """The webhook of one sink: :meth:`offer` each store event, :meth:`close` at shutdown."""

    def __init__(self, config: WebhookConfig) -> None:
        self.config = config
        self._queue: queue.Queue[tuple[str, bytes] | None] = queue.Queue(QUEUE)
        self._stop = threading.Event()
        self._opener = urllib.request.build_opener(_NoRedirects())
        self._next = 0.0  # monotonic time the next request may start (the rate limit)
        self._dropped = 0
        self._thread = threading.Thread(target=self._run, name="smtp-sink-webhook", daemon=True)
        self._thread.start()

    def offer(self, event: object) -> None:
        """A store event (a :class:`Summary` is a new message): queue its JSON; returns at once."""
        if not isinstance(event, Summary) or self._stop.is_set():
            return
        body = json.dumps(event.to_json()).encode()
        try:
            self._queue.put_nowait((event.id, body))
        except queue.Full:
            self._dropped += 1
            if self._dropped == 1 or self._dropped % 100 == 0:
                log.warning("webhook: %d summaries wait already; %d not sent so far", QUEUE, self._dropped)

    def close(self) -> None:
        """Stop sending: what waits is dropped, a request in flight gets :data:`STOP_WAIT` seconds."""
        self._stop.set()
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        self._queue.put(None)
        self._thread.join(STOP_WAIT)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None or self._stop.is_set():
                return
            try:
                self._deliver(*item)
            except Exception:  # a bug: the next message still goes
                log.exception("webhook for %s failed", item[0])

    def _deliver(self, message_id: str, body: bytes) -> None:
        """POST one summary, retrying with back-off."""
        attempts = 1 + self.config.retries
        for attempt in range(attempts):
            if not self._wait_turn():
                return
            retry, problem = self._post(body)
            if problem is None:
                return
            if not retry or attempt + 1 == attempts:
                log.warning("webhook %s for %s: %s (%d attempt%s; not sent)", self.config.url, message_id, problem,
                            attempt + 1, "" if attempt == 0 else "s")
                return
            log.info("webhook %s for %s: %s; trying again", self.config.url, message_id, problem)
            if self._stop.wait(min(BACKOFF_FIRST * 2 ** attempt, BACKOFF_MAX)):
                return

    def _wait_turn(self) -> bool:
        """Wait until the rate limit lets the next request go; False when stopping."""
        if self.config.rate <= 0:
            return not self._stop.is_set()
        now = time.monotonic()
        if self._next > now and self._stop.wait(self._next - now):
            return False
        self._next = max(now, self._next) + 1 / self.config.rate
        return not self._stop.is_set()

    def _post(self, body: bytes) -> tuple[bool, str | None]:
        """One POST: (worth retrying, what went wrong or None)."""
        request = urllib.request.Request(self.config.url, data=body, method="POST", headers={
            "Content-Type": "application/json", "User-Agent": f"smtp-sink/{__version__}"})
        try:
            with self._opener.open(request, timeout=self.config.timeout) as response:
                response.read(65536)
                status = response.status
        except urllib.error.HTTPError as exc:
            status = exc.code
            exc.close()
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:  # refused, timed out, reset...
            reason = getattr(exc, "reason", exc)
            return True, f"no answer ({reason})"
        if 200 <= status < 300:
            return False, None
        return status in RETRY_STATUSES or status >= 500, f"answered {status}"
