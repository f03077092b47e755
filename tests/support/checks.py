"""What the message-check tests share: a message with an HTML (and text) part, sent over SMTP, and
a server with a ``[checks]`` section."""

from __future__ import annotations

import dataclasses
import email.policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from smtp_sink.config import ChecksConfig
from smtp_sink.server import SinkServer
from support.config import make_config
from support.mail import send


def html_message(html: str | None, text: str = "Plain part.", subject: str = "check me") -> bytes:
    """A message with a text part and, unless ``html`` is None, an HTML alternative."""
    msg = EmailMessage(policy=email.policy.SMTP)
    msg["From"] = "app@example.test"
    msg["To"] = "bob@example.test"
    msg["Subject"] = subject
    msg.set_content(text)
    if html is not None:
        msg.add_alternative(html, subtype="html")
    return msg.as_bytes()


def deliver(server: SinkServer, raw: bytes) -> str:
    """Send ``raw`` over SMTP; the id it was stored under."""
    before = set(server.store.ids())
    send(server, raw)
    (new,) = set(server.store.ids()) - before
    return new


def checks_server(start_server: Any, store: Path, **checks: Any) -> SinkServer:
    """A server with HTTP on and these ``[checks]`` keys."""
    config = make_config(store, http=True)
    server: SinkServer = start_server(config=dataclasses.replace(config, checks=ChecksConfig(**checks)))
    return server
