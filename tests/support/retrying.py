"""Sending as applications retry, and reading the list over HTTP (tests/test_retries*.py, docs/retries.md)."""

from __future__ import annotations

import smtplib
import time
import urllib.parse
from email.message import EmailMessage
from email.policy import SMTP
from typing import Any

from support.http import get_json


def mail(subject: str, message_id: str | None = "<order-7@shop.example.test>", body: str = "Your order.\n",
         to: str = "ann@example.test") -> bytes:
    """A message as an application builds it (``message_id=None``: without a Message-ID)."""
    message = EmailMessage()
    message["From"] = "shop@example.test"
    message["To"] = to
    message["Subject"] = subject
    if message_id is not None:
        message["Message-ID"] = message_id
    message.set_content(body)
    return message.as_bytes(policy=SMTP)


def send_with_retries(port: int, data: bytes, rcpt: str = "ann@example.test", attempts: int = 5,
                      back_off: float = 0.02) -> list[Exception]:
    """Send ``data`` the way applications retry: a new connection after each lost connection,
    waiting longer each time (exponential back-off). Returns the failures seen; the last attempt
    must succeed."""
    failures: list[Exception] = []
    for attempt in range(attempts):
        try:
            with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
                smtp.sendmail("shop@example.test", [rcpt], data)
            return failures
        except smtplib.SMTPServerDisconnected as exc:  # no reply to DATA: did it arrive? send it again
            failures.append(exc)
            time.sleep(back_off * 2 ** attempt)
    raise AssertionError(f"not sent in {attempts} attempts: {failures}")


def indexed(port: int, query: str = "") -> list[dict[str, Any]]:
    """The message list (or a search) over HTTP, newest first."""
    path = f"/api/v1/search?query={urllib.parse.quote(query)}" if query else "/api/v1/messages"
    messages: list[dict[str, Any]] = get_json(port, path)["messages"]
    return messages


def wait_indexed(port: int, count: int) -> list[dict[str, Any]]:
    """The list once it holds ``count`` messages (indexing runs once SMTP is quiet)."""
    deadline = time.monotonic() + 10
    while len(found := indexed(port)) != count and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(found) == count, found
    return found
