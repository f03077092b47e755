"""Relaying captured mail to a real SMTP server (``[relay]``): release on request, auto-relay on arrival.

What goes upstream is the message as the client sent it: the stored bytes without smtp-sink's
trace block, and without a ``Bcc`` header if it has one (a Bcc header is never passed on).
Date and Message-ID are kept (Mailpit rewrites them). ``override_from`` replaces the From address
(keeping the display name, the old address in ``X-Original-From``, as Mailpit does) and the envelope
sender; ``return_path`` replaces the envelope sender of released mail. The session is the project's
own client (:mod:`smtp_sink.clients.smtp_client`): STARTTLS or implicit TLS with the upstream's
certificate checked (against ``ca_file`` when set), then AUTH PLAIN, LOGIN or CRAM-MD5.

Nothing here runs on the event loop: release runs in :attr:`Relay` threads of its own, and
auto-relay in one worker thread fed by a bounded queue, after the message is stored and the SMTP
client has its reply (auto-relay never delays or changes that reply).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import email.policy
import email.utils
import logging
import queue
import re
import threading
from collections.abc import Callable
from email.headerregistry import Address
from email.parser import BytesHeaderParser
from typing import Any

from . import trace
from .clients.smtp_client import (  # type: ignore[import-not-found, unused-ignore]  # see below
    Result,
    Session,
    SMTPClientError,
    deliver,
    tls_context,
)
from .config import RelayAuth, RelayConfig, is_loopback, relay_address
from .errors import NotFound

__all__ = ["Relay", "RelayError", "ReleaseRefused", "outgoing", "webui_json"]
log = logging.getLogger("smtp_sink")

# clients/ is installed as smtp_sink.clients (setuptools package-dir), which mypy cannot map: it
# checks clients/smtp_client.py on its own and takes the names imported here as they come.
RELAY_TIMEOUT = 30.0  # seconds the upstream may take for each step of a session
AUTO_QUEUE = 1000  # messages waiting for auto-relay; more are not relayed (logged)
RELEASE_THREADS = 2  # releases at the same time
MAX_ADDRESS_FIELD = 65536  # bytes of a From or Sender header parsed for the envelope sender
_PARSER = BytesHeaderParser(policy=email.policy.default)


class RelayError(Exception):
    """The upstream could not be reached, or refused the message; the text names it and its reply."""


class ReleaseRefused(ValueError):
    """A release request smtp-sink refuses before connecting (Mailpit's texts)."""


class Relay:
    """The upstream server of ``[relay]`` (``host`` set): release and auto-relay.

    ``read(id)`` gives a stored message's bytes (for auto-relay); ``hostname`` is said in EHLO."""

    def __init__(self, config: RelayConfig, read: Callable[[str], bytes], hostname: str) -> None:
        self.config = config
        self.hostname = hostname
        self._read = read
        self._allowed = _regex(config.allowed_recipients)
        self._blocked = _regex(config.blocked_recipients)
        self._matching = _regex(config.relay_matching)
        self._pool = concurrent.futures.ThreadPoolExecutor(RELEASE_THREADS, thread_name_prefix="smtp-sink-release")
        self._queue: queue.Queue[tuple[str, str, tuple[str, ...]] | None] = queue.Queue(AUTO_QUEUE)
        self._worker: threading.Thread | None = None
        self._closed = False
        self._lock = threading.Lock()

    @property
    def where(self) -> str:
        """``host:port`` of the upstream."""
        return f"{self.config.host}:{self.config.port}"

    @property
    def auto(self) -> bool:
        """True when messages are relayed as they arrive (``relay_all`` or ``relay_matching``)."""
        return self.config.relay_all or bool(self.config.relay_matching)

    # -- release ------------------------------------------------------------------------------

    def recipients(self, to: list[str]) -> list[str]:
        """The bare addresses of a release's ``To`` list, checked as Mailpit checks them
        (``allowed_recipients``, ``blocked_recipients``); :class:`ReleaseRefused` otherwise."""
        addresses, not_allowed, blocked = [], [], []
        for text in to:
            address = relay_address(text)
            if not address:
                raise ReleaseRefused(f"Invalid email address: {text[:300]}")
            if self._allowed is not None and not self._allowed.search(address):
                not_allowed.append(text)
            elif self._blocked is not None and self._blocked.search(address):
                blocked.append(text)
            addresses.append(address)
        if not_allowed:
            raise ReleaseRefused(f"Failed: {_plural(not_allowed)} do not match the allowlist: {', '.join(not_allowed)}")
        if blocked:
            raise ReleaseRefused(f"Failed: {_plural(blocked)} found on blocklist: {', '.join(blocked)}")
        if not addresses:
            raise ReleaseRefused("No valid addresses found")
        return addresses

    def release(self, raw: bytes, to: list[str]) -> None:
        """Send a stored message (its bytes, trace block included) to ``to``; :class:`ReleaseRefused`
        or :class:`RelayError`."""
        recipients = self.recipients(to)
        data, sender = outgoing(raw, self.config.override_from)
        self.send(self.config.return_path or sender, recipients, data)

    async def release_async(self, raw: bytes, to: list[str]) -> None:
        """:meth:`release` in a release thread (never on the event loop)."""
        await asyncio.get_running_loop().run_in_executor(self._pool, self.release, raw, to)

    # -- auto-relay ---------------------------------------------------------------------------

    def auto_recipients(self, rcpt_to: tuple[str, ...] | list[str]) -> list[str]:
        """The envelope recipients auto-relay sends to: not blocked, and matching ``relay_matching``
        unless ``relay_all`` (``allowed_recipients`` is for release only, as in Mailpit)."""
        chosen = [r for r in rcpt_to if self._blocked is None or not self._blocked.search(r)]
        if self.config.relay_all or self._matching is None:
            return chosen if self.config.relay_all else []
        return [r for r in chosen if self._matching.search(r)]

    def submit(self, message_id: str, mail_from: str, rcpt_to: tuple[str, ...] | list[str]) -> None:
        """Queue a stored message for auto-relay (returns at once; a full queue drops it, logged)."""
        if self._closed:
            return
        try:
            self._queue.put_nowait((message_id, mail_from, tuple(rcpt_to)))
        except queue.Full:
            log.warning("auto-relay: %d messages wait already; %s is not relayed", AUTO_QUEUE, message_id)
            return
        with self._lock:
            if self._worker is None and not self._closed:
                self._worker = threading.Thread(target=self._work, name="smtp-sink-relay", daemon=True)
                self._worker.start()

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            try:
                self._auto_relay(*item)
            except Exception:  # a bug: the next message still goes
                log.exception("auto-relay of %s failed", item[0])

    def _auto_relay(self, message_id: str, mail_from: str, rcpt_to: tuple[str, ...]) -> None:
        recipients = self.auto_recipients(rcpt_to)
        if not recipients:
            return
        try:
            data, _ = outgoing(self._read(message_id), self.config.override_from)
            self.send(mail_from, recipients, data)
        except NotFound:
            log.info("auto-relay: %s was deleted before it could be relayed", message_id)
        except (RelayError, ReleaseRefused) as exc:
            log.warning("auto-relay of %s to %s failed: %s", message_id, ", ".join(recipients), exc)
        else:
            log.info("auto-relay: %s sent to %s via %s", message_id, ", ".join(recipients), self.where)

    def close(self) -> None:
        """Stop: messages still waiting for auto-relay are dropped, a session in progress finishes."""
        self._closed = True
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        self._queue.put(None)
        self._pool.shutdown(wait=False, cancel_futures=True)

    # -- the SMTP session ------------------------------------------------------------------------

    def send(self, sender: str, recipients: list[str], data: bytes) -> None:
        """One transaction with the upstream; :class:`RelayError` naming its reply."""
        config = self.config
        if config.override_from:
            sender = relay_address(config.override_from)
        try:
            encrypted = config.tls or config.starttls
            context = tls_context(config.allow_insecure, config.ca_file or None) if encrypted else None
            session = Session(config.host, config.port, timeout=RELAY_TIMEOUT, tls=context if config.tls else None)
        except SMTPClientError as exc:
            raise RelayError(str(exc)) from None
        try:
            session.hello(self.hostname)
            if context is not None and config.starttls:
                session.starttls(context, self.hostname)
            self._login(session)
            result = deliver(session, sender, recipients, data, all_or_nothing=config.forward_smtp_errors)
            session.quit()
        except SMTPClientError as exc:
            raise RelayError(f"{self.where}: {exc}") from None
        finally:
            session.close()
        self._check(result, sender)

    def _login(self, session: Session) -> None:
        """AUTH as configured; a password is never sent unencrypted beyond this machine."""
        config = self.config
        if config.auth is RelayAuth.NONE:
            return
        if config.auth is not RelayAuth.CRAM_MD5 and not session.encrypted and not is_loopback(config.host):
            raise RelayError(f'{self.where}: not sending the password (auth = "{config.auth}") over an unencrypted '
                             "connection: set [relay] starttls or tls")
        secret = config.secret if config.auth is RelayAuth.CRAM_MD5 else config.password
        session.login(config.username, secret, mechanism=config.auth.value.upper())

    def _check(self, result: Result, sender: str) -> None:
        """Raise :class:`RelayError` unless the upstream took the message."""
        refused = ", ".join(f"<{address}>: {reply}" for address, reply in result.refused.items())
        final = result.final
        if final is None and result.refused:
            raise RelayError(f"{self.where} refused the recipient {refused}")
        if final is None or final.code >= 300:
            raise RelayError(f"{self.where} refused the message from <{sender}>: {final}")
        if refused:
            log.warning("relay: %s refused %s; the message went to the others", self.where, refused)


def outgoing(raw: bytes, override_from: str = "") -> tuple[bytes, str]:
    """What goes upstream for a stored message, and its sender (the first Sender, else From address;
    the envelope's sender when there is neither): the client's bytes without smtp-sink's trace block
    or a ``Bcc`` header, and with ``override_from`` as the From address. :class:`ReleaseRefused`
    when the From header cannot be read."""
    recorded = trace.read(raw)
    data = raw[recorded.length:] if recorded.own and recorded.length else raw
    fields = _fields(data)
    sender = _sender(data, fields, recorded)
    bcc = _first(fields, b"bcc")
    if bcc is not None:
        data = data[:bcc[1]] + data[bcc[2]:]
    if override_from:
        data = _override_from(data, relay_address(override_from))
    return data, sender


_Field = tuple[bytes, int, int]  # (lower-case name, start, end after its last line)


def _fields(data: bytes) -> list[_Field]:
    """The header fields at the start of ``data``."""
    fields: list[_Field] = []
    pos, size = 0, len(data)
    while pos < size:
        end = data.find(b"\n", pos)
        end = size if end < 0 else end + 1
        if data[pos:pos + 1] in (b" ", b"\t") and fields:
            fields[-1] = (fields[-1][0], fields[-1][1], end)
        else:
            colon = data.find(b":", pos, end)
            if colon <= pos or data[pos:end].strip() == b"":
                break
            fields.append((data[pos:colon].strip().lower(), pos, end))
        pos = end
    return fields


def _first(fields: list[_Field], name: bytes) -> _Field | None:
    return next((field for field in fields if field[0] == name), None)


def _address(field: bytes) -> Address | None:
    """The first address of an address header field (its bytes), None when it has none."""
    if len(field) > MAX_ADDRESS_FIELD:
        raise ReleaseRefused(f"Failed: unable to parse From header: longer than {MAX_ADDRESS_FIELD} bytes")
    try:
        header = next(iter(_PARSER.parsebytes(field).values()), None)
        addresses = getattr(header, "addresses", ())
        first = addresses[0] if addresses else None
    except Exception as exc:  # the email package on a hostile header
        raise ReleaseRefused(f"Failed: unable to parse From header: {exc}") from None
    return first if first is not None and "@" in first.addr_spec else None


def _sender(data: bytes, fields: list[_Field], recorded: trace.Trace) -> str:
    """The first address of Sender, else of From (Mailpit's envelope sender), else the envelope's."""
    for name in (b"sender", b"from"):
        field = _first(fields, name)
        if field is None:
            continue
        address = _address(data[field[1]:field[2]])
        if address is not None:
            return str(address.addr_spec)
        if name == b"from":
            raise ReleaseRefused("No From header found")
    if recorded.own:
        return recorded.mail_from
    raise ReleaseRefused("Failed: unable to parse From header: mail: header not in message")


def _override_from(data: bytes, address: str) -> bytes:
    """The first From header with ``address`` (its display name kept) and ``X-Original-From``
    with the old address first; a From header added when there is none."""
    newline = b"\r\n" if b"\r\n" in data[:1000] else b"\n"
    field = _first(_fields(data), b"from")
    if field is None:
        return b"From: " + address.encode() + newline + data
    try:
        old = _address(data[field[1]:field[2]])
    except ReleaseRefused:  # unreadable: replaced whole
        old = None
    name = old.display_name if old is not None else ""
    line = email.utils.formataddr((name, address), charset="utf-8").encode("utf-8")
    original = b"X-Original-From: " + (old.addr_spec if old is not None else "").encode("utf-8") + newline
    return original + data[:field[1]] + b"From: " + line + newline + data[field[2]:]


def webui_json(config: RelayConfig) -> dict[str, Any]:
    """Mailpit's ``MessageRelay`` of ``GET /api/v1/webui`` (every key, zero values when off).
    ``PreserveMessageIDs`` is true: smtp-sink never rewrites a relayed Message-ID."""
    enabled = bool(config.host)
    return {
        "Enabled": enabled,
        "SMTPServer": f"{config.host}:{config.port}" if enabled else "",
        "ReturnPath": config.return_path if enabled else "",
        "AllowedRecipients": config.allowed_recipients if enabled else "",
        "BlockedRecipients": config.blocked_recipients if enabled else "",
        "OverrideFrom": relay_address(config.override_from) if enabled and config.override_from else "",
        "PreserveMessageIDs": enabled,
        "RecipientAllowlist": config.allowed_recipients if enabled else "",
    }


def _regex(pattern: str) -> re.Pattern[str] | None:
    """A compiled ``[relay]`` expression (checked at config time), None when empty."""
    return re.compile(pattern) if pattern else None


def _plural(items: list[str]) -> str:
    """Mailpit's ``1 Address`` / ``2 Addresses``."""
    return f"{len(items)} Address{'' if len(items) == 1 else 'es'}"
