"""Reading a stored message for display: summaries, details, parts and headers.

Parsing uses the stdlib ``email`` package with ``policy.default`` and never rewrites the stored
bytes. Field names follow Mailpit's API v1 (``ID``, ``From``, ``Snippet``, ...) so its clients
work unchanged. Part ids are numbered like Mailpit's (enmime): the children of the top
multipart are ``"1"``, ``"2"``...; the children of a nested multipart ``"2"`` are ``"2.1"``,
``"2.2"``...; a message that is not multipart has the single part ``"0"``.
"""

from __future__ import annotations

import contextlib
import email.header
import email.utils
import html
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email import policy
from email.message import Message
from email.parser import BytesHeaderParser, BytesParser
from typing import Any

from . import trace
from .ids import id_time

SNIPPET_LENGTH = 250
TEXT_SEARCH_LENGTH = 65536  # characters of body text kept for search
# A summary reads at most this many body bytes of each MIME part (enough for the snippet and the
# searched text in any transfer encoding); the rest of a big part is never parsed or decoded.
SUMMARY_PART_BYTES = 256 * 1024
_SUMMARY_HEADER_BYTES = 65536  # a part's header block kept whole up to this size
_SPACE_RE = re.compile(r"\s+")
_TAG_RE = re.compile(r"<[^>]*>")
_DROP_RE = re.compile(r"<(script|style|head)\b.*?</\1\s*>", re.IGNORECASE | re.DOTALL)
_BLOCK_RE = re.compile(r"<\s*(br|/p|/div|/tr|/h[1-6]|/li)\b[^>]*>", re.IGNORECASE)
_BLANK_RE = re.compile(rb"\r?\n\r?\n")
# A header line the stdlib parser reads as a header (its headerRE) or a continuation.
_HEADER_LINE_RE = re.compile(rb"(?:[\041-\071\073-\176]*:|[\t ])[^\r\n]*")
# A mailbox list without quotes, comments, groups, escapes or encoded words: "a@b", "<a@b>",
# "Name <a@b>", comma-separated. Parsed here; anything else goes to the stdlib's parser.
_SIMPLE_ADDRESS_RE = re.compile(
    r"\s*(?:([A-Za-z0-9_-]+(?: +[A-Za-z0-9_-]+)*) *)?(<)?([A-Za-z0-9_+-]+(?:\.[A-Za-z0-9_+-]+)*"
    r"@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*)(?(2)>)\s*"
)

# Structure is parsed with compat32 (fast, lazy); the display headers are decoded one by one
# with policy.default's header classes. policy.default re-parses a header on every access,
# which made a whole-message parse about ten times slower.
_parser = BytesParser(policy=policy.compat32)
_header_parser = BytesHeaderParser(policy=policy.compat32)
_header_factory = policy.default.header_factory


@dataclass(frozen=True)
class Address:
    """A mailbox: display name and address (Mailpit's ``{"Name", "Address"}``)."""

    name: str
    address: str

    def to_json(self) -> dict[str, str]:
        return {"Name": self.name, "Address": self.address}


@dataclass
class Summary:
    """What a message list shows about one message, plus its envelope."""

    id: str
    message_id: str
    sender: Address | None
    to: list[Address]
    cc: list[Address]
    bcc: list[Address]
    reply_to: list[Address]
    subject: str
    created: float
    size: int
    attachments: int
    snippet: str
    mail_from: str = ""
    rcpt_to: list[str] = field(default_factory=list)
    read: bool = False
    text: str = field(default="", repr=False)  # body text for the search index (not in to_json)

    def to_json(self) -> dict[str, Any]:
        """Mailpit's message summary, field for field, plus ``MailFrom``/``RcptTo`` (the envelope)."""
        return {
            "ID": self.id,
            "MessageID": self.message_id,
            "Read": self.read,
            "From": self.sender.to_json() if self.sender else None,
            "To": [a.to_json() for a in self.to],
            "Cc": [a.to_json() for a in self.cc],
            "Bcc": [a.to_json() for a in self.bcc],
            "ReplyTo": [a.to_json() for a in self.reply_to],
            "Subject": self.subject,
            "Created": rfc3339(self.created),
            "Tags": [],
            "Size": self.size,
            "Attachments": self.attachments,
            "Snippet": self.snippet,
            "MailFrom": self.mail_from,
            "RcptTo": list(self.rcpt_to),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any], *, read: bool = False) -> Summary:
        """The inverse of :meth:`to_json` (the index keeps summaries as JSON)."""

        def addrs(items: list[dict[str, str]]) -> list[Address]:
            return [Address(a["Name"], a["Address"]) for a in items]

        sender = data.get("From")
        return cls(
            id=data["ID"], message_id=data["MessageID"],
            sender=Address(sender["Name"], sender["Address"]) if sender else None,
            to=addrs(data["To"]), cc=addrs(data["Cc"]), bcc=addrs(data["Bcc"]), reply_to=addrs(data["ReplyTo"]),
            subject=data["Subject"], created=id_time(data["ID"]), size=data["Size"],
            attachments=data["Attachments"], snippet=data["Snippet"],
            mail_from=data.get("MailFrom", ""), rcpt_to=list(data.get("RcptTo", [])), read=read,
        )


@dataclass
class _Parts:
    text: str = ""
    html: str = ""
    inline: list[dict[str, Any]] = field(default_factory=list)
    attachments: list[dict[str, Any]] = field(default_factory=list)


def rfc3339(when: float) -> str:
    """A Unix time as RFC 3339 in UTC with milliseconds, e.g. ``2024-05-01T12:00:00.123Z``."""
    stamp = datetime.fromtimestamp(when, timezone.utc).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


def parse(raw: bytes) -> Message:
    """The whole message as an :class:`email.message.EmailMessage`."""
    return _parser.parsebytes(raw)


def _header_end(raw: bytes, start: int = 0, limit: int = _SUMMARY_HEADER_BYTES) -> int:
    """Where the body starts after the header block at ``start`` (-1: no blank line within ``limit``)."""
    blank = _BLANK_RE.search(raw, start, start + limit)
    return -1 if blank is None else blank.end()


def _cut(raw: bytes, start: int, end: int, keep: int) -> bytes:
    """``raw[start:end]`` with its body cut to ``keep`` bytes at a line end (kept whole if short)."""
    if end - start <= keep + _SUMMARY_HEADER_BYTES:
        return raw[start:end]
    body = _header_end(raw, start)
    stop = max(body, start) + keep
    line_end = raw.rfind(b"\n", start, stop)
    piece = raw[start:line_end + 1] if line_end > start else raw[start:stop]
    return piece if piece.endswith(b"\n") else piece + b"\r\n"


def _skeleton(raw: bytes, keep: int = SUMMARY_PART_BYTES) -> bytes:
    """``raw`` with the body of every MIME part cut to ``keep`` bytes. Every line starting with
    ``--`` (each boundary, and anything that may look like one) is kept, so the structure parses
    exactly as the whole message does; only long part bodies are shortened."""
    pieces, pos, size = [], 0, len(raw)
    while pos < size:
        found = raw.find(b"\n--", pos)
        end = size if found < 0 else found + 1
        pieces.append(_cut(raw, pos, end, keep))
        pos = end
    return b"".join(pieces)


def _plain_header_block(head: bytes) -> bool:
    """True if ``head`` is CRLF lines the parser takes as headers, ending in an empty line."""
    if head[-4:] != b"\r\n\r\n" or head.count(b"\n") != head.count(b"\r\n") or head.count(b"\r") != head.count(b"\n"):
        return False
    lines = head[:-4].split(b"\r\n")
    first = lines[0]
    return (bool(_HEADER_LINE_RE.fullmatch(first)) or first.startswith(b"From ")) and all(
        _HEADER_LINE_RE.fullmatch(line) for line in lines[1:])


def _parse_for_summary(raw: bytes, keep: int = SUMMARY_PART_BYTES) -> Message:
    """The message as :func:`parse` reads it, at most ``keep`` body bytes of each part read.

    A message that is not multipart (most) skips the line-by-line parser: its header block is
    parsed alone and the (cut) body set as the payload, which is what the parser would do. Any
    doubt (bare LF or CR, a line that is no header, no blank line) takes the parser."""
    body = _header_end(raw)
    if body > 0 and _plain_header_block(raw[:body]):
        msg = _header_parser.parsebytes(raw[:body])
        if msg.get_content_maintype() not in ("multipart", "message") and not msg.defects:
            end = len(raw)
            if end - body > keep:  # cut at a line end
                line_end = raw.rfind(b"\n", body, body + keep)
                end = line_end + 1 if line_end >= 0 else body + keep
            msg.set_payload(raw[body:end].decode("ascii", "surrogateescape"))
            return msg
    return parse(_skeleton(raw, keep) if len(raw) > keep else raw)


def envelope(raw: bytes | Message) -> tuple[str, list[str]]:
    """``(mail_from, rcpt_to)`` from the trace block the server wrote (see :mod:`smtp_sink.trace`):
    header lines in the client's data never count."""
    found = trace.read(raw)
    return found.mail_from, list(found.rcpt_to)


def _unescape(value: str) -> str:
    """8-bit header bytes (kept by the parser as surrogate escapes) read as UTF-8."""
    if value.isascii():
        return value
    return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _text(value: object) -> str:
    return _SPACE_RE.sub(" ", str(value)).strip() if value is not None else ""


def _raw_values(msg: Message, name: str) -> list[str]:
    """The values of every ``name`` header as stored: unfolded, 8-bit bytes read as UTF-8."""
    by_name = getattr(msg, "_sink_headers", None)
    if by_name is None:  # one pass over the headers per message, not one per name asked for
        by_name = {}
        for key, value in msg.raw_items():
            by_name.setdefault(key.lower(), []).append(value)
        msg._sink_headers = by_name  # type: ignore[attr-defined]
    return [_SPACE_RE.sub(" ", _unescape(value if isinstance(value, str) else str(value))).strip()
            for value in by_name.get(name.lower(), ())]


def _decoded(msg: Message, name: str) -> str:
    """One header decoded for display (RFC 2047 encoded words), or ``""``."""
    values = _raw_values(msg, name)
    if not values:
        return ""
    if "=?" not in values[0]:  # nothing to decode: skip the (slow) header registry
        return values[0]
    try:
        return _text(_header_factory(name, values[0]))
    except Exception:  # a malformed header is shown as stored
        return values[0]


def addresses(msg: Message, name: str) -> list[Address]:
    """Every mailbox in the ``name`` headers (groups flattened); unparseable ones kept as text."""
    found: list[Address] = []
    for value in _raw_values(msg, name):
        simple = _simple_addresses(value)
        if simple is not None:
            found.extend(simple)
            continue
        items = None
        if "=?" in value or '"' in value or "(" in value or not value.isascii():
            try:  # encoded words, quoting or comments: the full RFC 5322 parser
                items = _header_factory(name, value).addresses
            except Exception:  # the header registry gave up: fall back to the lenient parser
                items = None
        if items is None:
            found.extend(Address(n, a) for n, a in email.utils.getaddresses([value]) if a or n)
            continue
        found.extend(Address(a.display_name or "", a.addr_spec) for a in items)
    return found


def _simple_addresses(value: str) -> list[Address] | None:
    """The mailboxes of a plain list (``a@b``, ``<a@b>``, ``Name <a@b>``, comma-separated) as the
    stdlib's ``getaddresses`` reads them, without its parser; None for anything else."""
    if not value.isascii() or '"' in value or "(" in value or "\\" in value or ":" in value or ";" in value:
        return None
    found = []
    for item in value.split(","):
        match = _SIMPLE_ADDRESS_RE.fullmatch(item)
        if match is None:
            return None
        name, bracket, address = match.groups()
        if name and not bracket:
            return None
        found.append(Address(" ".join(name.split()) if name else "", address))
    return found


def _message_id(msg: Message) -> str:
    values = _raw_values(msg, "Message-ID")
    return values[0].strip().strip("<>") if values else ""


def _bcc(msg: Message, rcpt_to: list[str], to: list[Address], cc: list[Address]) -> list[Address]:
    """Bcc header mailboxes plus envelope recipients named in neither To nor Cc."""
    bcc = addresses(msg, "Bcc")
    seen = {a.address.lower() for a in [*to, *cc, *bcc]}
    for rcpt in rcpt_to:
        if rcpt.lower() not in seen:
            seen.add(rcpt.lower())
            bcc.append(Address("", rcpt))
    return bcc


def html_to_text(markup: str) -> str:
    """Readable text from HTML: scripts and styles dropped, tags removed, entities decoded."""
    markup = _DROP_RE.sub(" ", markup)
    markup = _BLOCK_RE.sub("\n", markup)
    return html.unescape(_TAG_RE.sub(" ", markup))


def snippet(text: str, length: int = SNIPPET_LENGTH) -> str:
    """The first ``length`` characters of ``text`` with whitespace collapsed (``...`` if cut)."""
    text = _SPACE_RE.sub(" ", text).strip()
    return text if len(text) <= length else text[:length].rstrip() + "..."


def _walk(part: Message, part_id: str, top: bool) -> Iterator[tuple[str, Message, bool]]:
    """Leaf parts with their Mailpit part ids and whether they sit in a multipart/related."""
    if part.get_content_maintype() != "multipart" or not isinstance(part.get_payload(), list):
        yield part_id, part, False
        return
    related = part.get_content_subtype() == "related"
    for number, child in enumerate(part.get_payload(), 1):
        child_id = str(number) if top else f"{part_id}.{number}"
        for leaf_id, leaf, in_related in _walk(child, child_id, False):
            yield leaf_id, leaf, in_related or related


def leaves(msg: Message) -> Iterator[tuple[str, Message, bool]]:
    """``(part_id, part, in_related)`` for every leaf part of a message."""
    if msg.get_content_maintype() == "multipart":
        yield from _walk(msg, "0", True)
    else:
        yield "0", msg, False


def _payload(part: Message) -> bytes:
    """The decoded content of a leaf part (a message/rfc822 part as its bytes)."""
    if part.get_content_maintype() == "message":
        inner = part.get_payload()
        if isinstance(inner, list) and inner:
            return inner[0].as_bytes()
    data = part.get_payload(decode=True)
    return data if isinstance(data, bytes) else b""


def _decoded_text(part: Message) -> str:
    """A text part as a string: transfer encoding undone, decoded from its charset."""
    charset = part.get_content_charset() or "utf-8"
    data = _payload(part)
    try:
        text = data.decode(charset, "replace")
    except LookupError:  # unknown charset
        text = data.decode("utf-8", "replace")
    return text.replace("\r\n", "\n")  # for display; the stored bytes keep their CRLF


def _filename(part: Message) -> str:
    """The part's file name (RFC 2231 and RFC 2047 forms decoded), or ``""``."""
    try:
        name = part.get_filename() or ""
    except (ValueError, TypeError):
        return ""
    if "=?" in name:
        with contextlib.suppress(ValueError, LookupError, UnicodeDecodeError):
            name = str(email.header.make_header(email.header.decode_header(name)))
    return _text(name)


def _parts(msg: Message, sizes: bool = True) -> _Parts:
    """Split a message into its text, HTML, inline parts and attachments (``sizes``: decode each
    inline part and attachment to report its size; a summary only counts them)."""
    found = _Parts()
    for part_id, part, in_related in leaves(msg):
        ctype = part.get_content_type()
        disposition = (part.get_content_disposition() or "").lower()
        filename = _filename(part)
        if disposition != "attachment" and not filename:
            if ctype == "text/plain" and not found.text:
                found.text = _decoded_text(part)
                continue
            if ctype == "text/html" and not found.html:
                found.html = _decoded_text(part)
                continue
            if ctype.startswith("text/") or ctype.startswith("multipart/"):
                continue
        content_id = (_raw_values(part, "Content-ID") or [""])[0].strip("<>")
        entry = {
            "PartID": part_id,
            "FileName": filename,
            "ContentType": ctype,
            "ContentID": content_id,
            "Size": len(_payload(part)) if sizes else 0,
        }
        inline = disposition == "inline" or (disposition != "attachment" and in_related and content_id)
        (found.inline if inline else found.attachments).append(entry)
    if not found.text and found.html:
        found.text = _SPACE_RE.sub(" ", html_to_text(found.html)).strip()
    return found


def summarize(message_id: str, raw: bytes, size: int | None = None) -> Summary:
    """The summary of a stored message (used when indexing): one parse that reads at most
    :data:`SUMMARY_PART_BYTES` of each part's body and decodes no attachment."""
    msg = _parse_for_summary(raw)
    mail_from, rcpt_to = envelope(msg)
    to, cc = addresses(msg, "To"), addresses(msg, "Cc")
    senders = addresses(msg, "From")
    parts = _parts(msg, sizes=False)
    return Summary(
        id=message_id,
        message_id=_message_id(msg),
        sender=senders[0] if senders else None,
        to=to, cc=cc, bcc=_bcc(msg, rcpt_to, to, cc), reply_to=addresses(msg, "Reply-To"),
        subject=_decoded(msg, "Subject"),
        created=id_time(message_id),
        size=len(raw) if size is None else size,
        attachments=len(parts.attachments),
        snippet=snippet(parts.text[:TEXT_SEARCH_LENGTH]),
        mail_from=mail_from, rcpt_to=rcpt_to,
        text=parts.text[:TEXT_SEARCH_LENGTH],
    )


def _date(msg: Message, message_id: str) -> str:
    """The Date header as RFC 3339 (the arrival time when it is missing or unparseable)."""
    try:
        when = email.utils.parsedate_to_datetime(_decoded(msg, "Date"))
    except (TypeError, ValueError, IndexError):
        when = None
    if when is None:
        return rfc3339(id_time(message_id))
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.isoformat().replace("+00:00", "Z")


def detail(message_id: str, raw: bytes, *, read: bool = False) -> dict[str, Any]:
    """Mailpit's ``GET /api/v1/message/{ID}`` for a stored message."""
    msg = parse(raw)
    mail_from, rcpt_to = envelope(msg)
    to, cc = addresses(msg, "To"), addresses(msg, "Cc")
    senders = addresses(msg, "From")
    parts = _parts(msg)
    return {
        "ID": message_id,
        "MessageID": _message_id(msg),
        "Read": read,
        "From": senders[0].to_json() if senders else None,
        "To": [a.to_json() for a in to],
        "Cc": [a.to_json() for a in cc],
        "Bcc": [a.to_json() for a in _bcc(msg, rcpt_to, to, cc)],
        "ReplyTo": [a.to_json() for a in addresses(msg, "Reply-To")],
        "ReturnPath": mail_from,
        "Subject": _decoded(msg, "Subject"),
        "Date": _date(msg, message_id),
        "Created": rfc3339(id_time(message_id)),
        "Tags": [],
        "Text": parts.text,
        "HTML": parts.html,
        "Size": len(raw),
        "Inline": parts.inline,
        "Attachments": parts.attachments,
        "MailFrom": mail_from,
        "RcptTo": rcpt_to,
    }


def part(raw: bytes, part_id: str) -> tuple[str, str, bytes]:
    """``(content_type, filename, decoded bytes)`` of one part; :class:`KeyError` if there is none."""
    for leaf_id, leaf, _ in leaves(parse(raw)):
        if leaf_id == part_id:
            return leaf.get_content_type(), _filename(leaf), _payload(leaf)
    raise KeyError(part_id)


def headers(raw: bytes) -> dict[str, list[str]]:
    """Header name -> values in order, as stored (unfolded, not decoded); names keep first spelling.

    Folding (a line break before white space) becomes one space, as Go's textproto does."""
    found: dict[str, list[str]] = {}
    names: dict[str, str] = {}
    for name, value in _header_parser.parsebytes(raw).items():
        key = names.setdefault(name.lower(), name)
        found.setdefault(key, []).append(re.sub(r"\r?\n[ \t]+", " ", str(value)).strip())
    return found
