"""The envelope in a stored message: the trace headers the server writes, and their reader.

Every ``.eml`` file starts with a block the server writes (the order of Postfix's local delivery)::

    Return-Path: <sender>
    X-Original-To: rcpt               one per envelope recipient (Bcc included)
    X-Sink-Auth: user                 only after AUTH
    X-Sink-Session: <session id>      the SMTP session that delivered it (issue 17)
    X-Sink-TLS-Probe: expired         only when the client took the TLS probe (tls_probe.py)
    Received: from helo ([peer])      RFC 5321 section 4.4; always last
    \tby host (smtp-sink 1.2) with ESMTPSA id <message id>[ for <rcpt>];
    \t<date>

A message made by the HTTP API (``POST /api/v1/send``) gets the same block, its ``Received`` line
saying so: ``from api ([peer]) by host (smtp-sink 1.2) with HTTP id ...`` (``X-Sink-Auth`` names
the HTTP basic-auth user).

and then exactly what the client sent. The reader takes the envelope from the top and stops at
the first ``Received:``, which in this layout is always the server's own (at least one
``X-Original-To`` comes before it): header lines in the client's data, the same names
included, are content and can never forge the envelope, a login or a TLS-probe flag.

Files written by earlier versions have the server's ``Received`` right after ``Return-Path``,
then ``X-Sink-Auth`` and the ``X-Original-To`` lines; they still read (their login is safe, and a
single recipient is taken from the ``for <rcpt>`` clause; with several recipients the end of their
block cannot be told apart from content). A file without the server's ``Received`` (dropped into the
folder by hand) gives its leading ``Return-Path`` and ``X-Original-To`` lines, never a login.
"""

from __future__ import annotations

import email.utils
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import Message

from . import __version__

__all__ = ["HEADER_NAMES", "Envelope", "Trace", "read", "trace_headers"]

HEADER_NAMES = frozenset({"return-path", "x-original-to", "x-sink-auth", "x-sink-session", "x-sink-tls-probe",
                          "received"})
SIGNATURE = "(smtp-sink"  # in the server's own Received line: "by host (smtp-sink 1.2) with ..."
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
_SPACE_RE = re.compile(r"\s+")


@dataclass(slots=True)
class Envelope:
    """One mail transaction: who said hello, the sender and the recipients (what the server writes
    into the trace headers of the message it stores)."""

    helo: str = ""
    esmtp: bool = False
    mail_from: str = ""
    rcpt_to: list[str] = field(default_factory=list)
    smtputf8: bool = False
    peer: str = ""
    tls: bool = False
    auth_user: str | None = None
    api: bool = False  # made by the HTTP API, not received over SMTP
    tls_probe: str = ""  # the TLS probe this client took (its TLS session had the bad certificate)
    session: str = ""  # the id of the recorded SMTP session (see smtp_sink.sessions); "": none


@dataclass(frozen=True)
class Trace:
    """What the server recorded about a message: its envelope and who logged in.

    ``own``: the block was written by smtp-sink (its ``Received`` line was found where it
    belongs); ``length``: bytes of that block at the start of the file (0 when unknown), so
    ``raw[length:]`` is what the client sent."""

    mail_from: str = ""
    rcpt_to: tuple[str, ...] = ()
    auth_user: str | None = None
    own: bool = False
    length: int = 0
    tls_probe: str = ""  # X-Sink-TLS-Probe: the client sent this over a TLS probe it should have refused
    session: str = ""  # the recorded SMTP session that delivered it (X-Sink-Session; own blocks only)


# -- writing ------------------------------------------------------------------------------


def _clean(text: str) -> str:
    """Text safe inside a header: no control characters (no header injection)."""
    return _CONTROL_RE.sub("?", text)


_date_cache: tuple[int, str] = (-1, "")


def _date(when: float | None) -> str:
    """RFC 5322 date of ``when`` (now if None) in local time; the current second's is cached."""
    global _date_cache
    if when is not None:
        return email.utils.formatdate(when, localtime=True)
    now = time.time()
    second = int(now)
    cached = _date_cache
    if cached[0] == second:
        return cached[1]
    date = email.utils.formatdate(second, localtime=True)
    _date_cache = (second, date)
    return date


def trace_headers(envelope: Envelope, message_id: str, hostname: str, when: float | None = None) -> bytes:
    """The block written before the client's data: ``Return-Path``, one ``X-Original-To`` per
    recipient, ``X-Sink-Auth`` after AUTH, ``X-Sink-TLS-Probe`` when the client took the TLS
    probe, and the server's ``Received`` (RFC 5321 section 4.4) last
    (``from api ... with HTTP`` for a message of the HTTP API).

    Addresses cannot hold CR or LF (``addresses.py`` refuses control characters); the HELO name
    and the AUTH user are cleaned here."""
    protocol = "ESMTP" if envelope.esmtp else "SMTP"
    if envelope.esmtp:  # RFC 3848: ESMTPS with TLS, ESMTPA with AUTH, ESMTPSA with both
        protocol += ("S" if envelope.tls else "") + ("A" if envelope.auth_user is not None else "")
    rcpt_to = envelope.rcpt_to
    helo = envelope.helo
    if envelope.api:
        protocol, helo = "HTTP", "api"
    if not (helo.isascii() and helo.isprintable()):
        helo = _clean(helo)
    if len(rcpt_to) == 1:
        text = f"Return-Path: <{envelope.mail_from}>\r\nX-Original-To: {rcpt_to[0]}\r\n"
        recipient = f"\r\n\tfor <{rcpt_to[0]}>"
    else:
        text = f"Return-Path: <{envelope.mail_from}>\r\n" + "".join([f"X-Original-To: {r}\r\n" for r in rcpt_to])
        recipient = ""
    if envelope.auth_user is not None:
        text += f"X-Sink-Auth: {_clean(envelope.auth_user)}\r\n"
    if envelope.session:  # an id of smtp_sink.ids (made by the server): nothing to clean
        text += f"X-Sink-Session: {envelope.session}\r\n"
    if envelope.tls_probe:  # a probe name (config.TLSProbe): no control characters
        text += f"X-Sink-TLS-Probe: {envelope.tls_probe}\r\n"
    text += (
        f"Received: from {helo or 'unknown'} ([{envelope.peer}])\r\n"
        f"\tby {hostname} (smtp-sink {__version__}) with {protocol} id {message_id}{recipient};\r\n"
        f"\t{_date(when)}\r\n"
    )
    return text.encode("utf-8")


# -- reading ------------------------------------------------------------------------------

_Field = tuple[str, str, int, int]  # (lower-case name, value as stored, end of its first line, end of the field)


def _byte_fields(raw: bytes | bytearray) -> Iterator[_Field]:
    """The header fields at the start of ``raw``, one at a time (only those asked for are read):
    continuation lines joined, 8-bit bytes read as UTF-8. Stops at the first line that is no header."""
    pos, size = 0, len(raw)
    if raw.startswith(b"From "):  # an mbox "From " line, as the email parser skips it
        pos = raw.find(b"\n") + 1 or size
    name: bytes | bytearray | None = None
    parts: list[bytes | bytearray] = []
    first_end = 0
    while pos < size:
        end = raw.find(b"\n", pos)
        end = size if end < 0 else end
        line = raw[pos:end - 1] if end > pos and raw[end - 1:end] == b"\r" else raw[pos:end]
        if name is not None and line[:1] in (b" ", b"\t"):
            parts.append(line)
            pos = end + 1
            continue
        if name is not None:
            yield _decoded(name, parts, first_end, pos)
        colon = line.find(b":")
        if colon <= 0:
            return
        name, parts = line[:colon], [line[colon + 1:]]
        pos = first_end = min(end + 1, size)
    if name is not None:
        yield _decoded(name, parts, first_end, min(pos, size))


def _decoded(name: bytes | bytearray, parts: list[bytes | bytearray], first_end: int, end: int) -> _Field:
    return name.decode("ascii", "replace").lower(), b"\r\n".join(parts).decode("utf-8", "replace"), first_end, end


def _message_fields(msg: Message) -> Iterator[_Field]:
    """The header fields of a parsed message (8-bit bytes, kept as surrogate escapes, read as UTF-8)."""
    for name, value in msg.raw_items():
        text = str(value)
        if not text.isascii():
            text = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        yield name.lower(), text, 0, 0


def _value(text: str, first_line: bool = False, path: bool = True) -> str:
    """A trace header's value: unfolded (or only its first line), outer white space removed, and
    for a ``path`` (an address) one pair of angle brackets."""
    if first_line:
        text = text.split("\n", 1)[0]
    text = text.replace("\r\n", "").replace("\n", "").strip(" \t\r")
    if path and text.startswith("<") and text.endswith(">"):
        text = text[1:-1]
    return text


def _received_end(raw: bytes | bytearray | Message, field: _Field) -> int:
    """Where the server's own ``Received`` field ends: after the line that follows the one ending
    in ``;`` (``... id <id>;`` or ``for <rcpt>;``, then the date). Lines the client's data adds
    to it (continuation lines) are not counted."""
    if isinstance(raw, Message) or not field[3]:
        return 0
    semicolon = raw.find(b";\r\n", field[2], field[3])
    end = -1 if semicolon < 0 else raw.find(b"\r\n", semicolon + 3, field[3])
    return field[3] if end < 0 else end + 2


def _own_received(value: str) -> bool:
    """True for the ``Received`` line smtp-sink writes (``by host (smtp-sink 1.2) with ...``)."""
    return f"{SIGNATURE} " in value or f"{SIGNATURE})" in value


def read(source: bytes | bytearray | Message) -> Trace:
    """The :class:`Trace` at the top of a stored message (its bytes, or a parsed message)."""
    fields = _message_fields(source) if isinstance(source, Message) else _byte_fields(source)
    first = next(fields, None)
    if first is None or first[0] != "return-path":
        return Trace()
    mail_from = _value(first[1])
    field = next(fields, None)
    if field is not None and field[0] == "received":
        return _legacy(mail_from, field, fields) if _own_received(field[1]) else Trace(mail_from)
    rcpt_to = []
    while field is not None and field[0] == "x-original-to":
        rcpt_to.append(_value(field[1]))
        field = next(fields, None)
    auth_user = None
    if field is not None and field[0] == "x-sink-auth":
        auth_user = _value(field[1], path=False)
        field = next(fields, None)
    session = ""
    if field is not None and field[0] == "x-sink-session":  # issue 17; before the server's Received
        session = _value(field[1], path=False)
        field = next(fields, None)
    tls_probe = ""
    if field is not None and field[0] == "x-sink-tls-probe":
        tls_probe = _value(field[1], path=False)
        field = next(fields, None)
    if rcpt_to and field is not None and field[0] == "received" and _own_received(field[1]):
        return Trace(mail_from, tuple(rcpt_to), auth_user, True, _received_end(source, field), tls_probe, session)
    return Trace(mail_from, tuple(rcpt_to))  # not written by smtp-sink: no login


def _legacy(mail_from: str, received: _Field, fields: Iterator[_Field]) -> Trace:
    """The layout of earlier versions: ``Received``, ``X-Sink-Auth``, then ``X-Original-To`` lines
    (one line each: the client's data may add continuation lines to the last one)."""
    length = received[3]
    field = next(fields, None)
    auth_user = None
    if field is not None and field[0] == "x-sink-auth":
        auth_user, length = _value(field[1], first_line=True, path=False), field[2]
        field = next(fields, None)
    # "... id <id> for <rcpt>; <date>": a single recipient is named in the Received line itself
    single = _SPACE_RE.sub(" ", received[1]).rpartition(";")[0].rstrip().endswith(">")
    rcpt_to = []
    while field is not None and field[0] == "x-original-to":
        rcpt_to.append(_value(field[1], True))
        length = field[2]
        if single:
            break
        field = next(fields, None)
    return Trace(mail_from, tuple(rcpt_to), auth_user, True, length)
