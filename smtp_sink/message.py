"""Reading a stored message for display: summaries, details, parts and headers.

Parsing uses the stdlib ``email`` package and never rewrites the stored bytes. Field names follow
Mailpit's API v1 (``ID``, ``From``, ``Snippet``, ...) so its clients work unchanged. Part ids are
numbered like Mailpit's (enmime): the children of the top multipart are ``"1"``, ``"2"``...; the
children of a nested multipart ``"2"`` are ``"2.1"``, ``"2.2"``...; a message that is not multipart
has the single part ``"0"``.

Display parsing is isolated per message and total: :func:`summarize` and :func:`detail` never
raise, :func:`part` raises only :class:`~smtp_sink.errors.NotFound`, :func:`headers` never raises. What could not be
read (a MIME structure the parser gave up on, an unknown charset, a limit below reached) is named
in ``ParseError`` (detail and summary JSON; ``""`` when all was read); everything else is shown.
Time is linear in the message size and capped by the limits below: no regex here can backtrack
over attacker text, and the stdlib's quadratic MIME parameter splitter is replaced.
"""

from __future__ import annotations

import codecs
import contextlib
import email.header
import email.utils
import functools
import hashlib
import html
import itertools
import re
import urllib.parse
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email import policy
from email.feedparser import FeedParser
from email.message import Message
from email.parser import BytesHeaderParser
from typing import TYPE_CHECKING, Any, TypeVar

from . import trace
from .duplicates import duplicate_key
from .errors import NotFound
from .ids import id_time, is_id
from .summary import Address, Summary, rfc3339  # noqa: F401  (rfc3339: re-exported, the tests use it)
from .unsubscribe import list_unsubscribe

T = TypeVar("T")

SNIPPET_BYTES = 200  # Mailpit's Snippet: at most this many UTF-8 bytes, then "..."
TEXT_SEARCH_LENGTH = 65536  # characters of body text kept for search
# A summary reads at most this many body bytes of each MIME part (enough for the snippet and the
# searched text in any transfer encoding); the rest of a big part is never parsed or decoded.
SUMMARY_PART_BYTES = 256 * 1024
_SUMMARY_HEADER_BYTES = 65536  # a part's header block kept whole up to this size

_SPACE_RE = re.compile(r"\s+")
_TAG_RE = re.compile(r"<[^>]*>")

# -- Limits of display parsing -------------------------------------------------------------------
# Each bounds what one message can cost a summary, a detail, a part download or a header listing.
# They apply to display only: the stored bytes are never changed and the raw source (GET
# /api/v1/message/{id}/raw, smtp-sink show --raw) always holds everything.
MAX_PARTS = 1000
"""MIME entities parsed per message (the message, each multipart, each part, each attached
message). Parsing stops before the next one: the parts before it are shown and downloadable, the
later ones are not, and ``ParseError`` says so."""
MAX_DEPTH = 32
"""Levels of nesting below the message (each multipart or attached message around a part adds
one). A part nested deeper stops parsing there, as for :data:`MAX_PARTS`."""
MAX_HEADER_BYTES = 256 * 1024
"""Bytes of one header block (the message's or a part's) that are read. Header lines past it are
neither shown nor listed by :func:`headers`, and ``ParseError`` says so."""
MAX_HEADER_VALUE = 65536
"""Characters of one header value decoded for display (Subject, From, To, Date, ...); the rest
of that value is not shown. Address lists longer than :data:`_REGISTRY_LIMIT` are read by the
lenient linear parser (encoded words in their display names are left as they are)."""
HTML_TEXT_LIMIT = 1024 * 1024
"""Characters of HTML turned into the ``Text`` of an HTML-only message; the rest is not
converted (``HTML`` itself is returned whole)."""
FILENAME_LIMIT = 2048
"""Characters of a part's file name that are decoded; the rest is dropped."""
_REGISTRY_LIMIT = 8192  # longest header value given to the stdlib header registry (quadratic on lists)
_FEED_BYTES = 65536  # bytes handed to the parser at a time (it stops between two feeds)
_PARSE_ERROR_LENGTH = 1000  # characters of ParseError text
_BOUNDARY_LIMIT = 200  # characters of a multipart boundary (RFC 2046: at most 70)
_REFUSED_CODECS = {"idna", "punycode", "undefined"}  # not for text bodies: raise or quadratic time

_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_BAD_ESCAPE_RE = re.compile(r"%(?![0-9A-Fa-f]{2})")  # a % that Go's url.QueryUnescape refuses
_SURROGATE_RE = re.compile("[\ud800-\udfff]")
_LINE_BREAK_RE = re.compile(r"\r?\n")
_TOKEN_RE = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+")  # RFC 7230 token characters (Go's validHeaderFieldByte)
_PARAM_SPLIT_RE = re.compile(r'[;"]')
# HTML to text: _TAG_RE and _BLOCK_RE see only markup up to the last ">" (a tag needs one after
# it), so each match attempt ends at the next ">" and the scans are linear; script/style/head
# elements are found with one forward search per closing tag (_drop_elements), never a lazy ".*?".
_DROP_START_RE = re.compile(r"<(script|style|head)\b", re.IGNORECASE)
# Mailpit's html2text.Strip (the Snippet of an HTML message): a space between a closing block tag
# and the next tag, <br> as a space, a space before <img>; the text of every node but these
# elements', tags removed without a space (text nodes are joined as they are).
_SNIPPET_DROP_RE = re.compile(r"<(script|style|head|title|noscript)\b", re.IGNORECASE)
_SNIPPET_BLOCK_RE = re.compile(r"</(div|p|td|th|h[1-6]|ul|ol|li|address|article|aside|blockquote|dl|dt|footer"
                               r"|header|hr|main|nav|pre|table|thead|tfoot|video)><", re.IGNORECASE)
_SNIPPET_BR_RE = re.compile(r"<(?:br /|br)>", re.IGNORECASE)
_SNIPPET_IMG_RE = re.compile(r"<img", re.IGNORECASE)
_MARKUP_RE = re.compile(r"<[A-Za-z/!?][^>]*>")  # what an HTML parser reads as a tag or comment
_GO_SPACE_RE = re.compile(r"[\t\n\f\r ]+")  # Go's \s (ASCII white space)
_SNIPPET_CHUNK = 4096  # characters of stripped HTML cleaned at a time (the snippet needs only its start)
_BLOCK_RE = re.compile(r"<\s*(br|/p|/div|/tr|/h[1-6]|/li)\b[^>]*>", re.IGNORECASE)
_BLANK_RE = re.compile(rb"\r?\n\r?\n")
# A header line the stdlib parser reads as a header (its headerRE) or a continuation.
_HEADER_LINE_RE = re.compile(rb"(?:[\041-\071\073-\176]*:|[\t ])[^\r\n]*")
# A run of such lines, each with its line end as the parser splits lines (CRLF, LF or CR). Each
# line can match one way only and nothing follows the loop: linear.
_HEADER_BLOCK_RE = re.compile(rb"(?:(?:From |[\041-\071\073-\176]*:|[\t ])[^\r\n]*(?:\r\n|\n|\r(?!\n)))*")
# The pieces of a plain mailbox ("a@b", "<a@b>", "Name <a@b>"), each matched alone: no two parts
# of one pattern can take the same characters, so a failed match costs linear time.
_DISPLAY_NAME_RE = re.compile(r"[A-Za-z0-9_-]+(?: +[A-Za-z0-9_-]+)*")
_ADDR_SPEC_RE = re.compile(r"[A-Za-z0-9_+-]+(?:\.[A-Za-z0-9_+-]+)*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*")
# RFC 6838 type/subtype: what a part download may send as its Content-Type.
_MIME_TYPE_RE = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]{0,126}/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}")

# Structure is parsed with compat32 (fast, lazy); the display headers are decoded one by one
# with policy.default's header classes. policy.default re-parses a header on every access,
# which made a whole-message parse about ten times slower.
_header_parser = BytesHeaderParser(policy=policy.compat32)
_header_factory = policy.default.header_factory


@dataclass
class _Parts:
    """A message's bodies and parts as Mailpit (enmime) files them."""

    text: str = ""
    html: str = ""
    inline: list[dict[str, Any]] = field(default_factory=list)  # listed: with a file name or Content-ID
    attachments: list[dict[str, Any]] = field(default_factory=list)  # listed: with a file name or Content-ID
    attachment_count: int = 0  # every attachment, listed or not (a summary's ``Attachments``)


@dataclass
class _Head:
    """The display headers and envelope of one message."""

    message_id: str = ""
    sender: Address | None = None
    to: list[Address] = field(default_factory=list)
    cc: list[Address] = field(default_factory=list)
    bcc: list[Address] = field(default_factory=list)
    reply_to: list[Address] = field(default_factory=list)
    subject: str = ""
    mail_from: str = ""
    rcpt_to: list[str] = field(default_factory=list)
    username: str = ""  # the AUTH user of the session that sent it ("" without AUTH)
    return_path: str = ""  # the envelope sender, else the Return-Path header, else the From address
    x_tags: str = ""  # the first X-Tags header, decoded (tags at arrival)
    tls_probe: str = ""  # the TLS probe the client took (trace.Trace.tls_probe; tags at arrival)
    smtp: dict[str, Any] = field(default_factory=lambda: smtp_fields(None))  # HELO, peer, protocol, TLS
    session: str = ""  # issue 17: the id of the SMTP session that delivered it (X-Sink-Session), "" if none


# -- The bounded parser ----------------------------------------------------------------------------


class _Entity(Message):
    """A compat32 message whose MIME parameters (charset, boundary, name, filename) are split in
    linear time. The stdlib's splitter copies the rest of the header at every ``;`` and recounts
    quotes from its start, quadratic: 64 KB of ``;`` took seconds per lookup."""

    sink_note = ""  # set when this entity could not be read as it says (shown in ParseError)
    sink_headers: dict[str, list[Any]] | None = None  # header values by lower-case name (see _raw_values)

    def _get_params_preserve(self, failobj: Any, header: str) -> Any:
        header = header.lower()  # the raw value: 8-bit bytes stay surrogate escapes, as in the body lines
        value = next((v for k, v in self.raw_items() if k.lower() == header), None)
        if value is None:
            return failobj
        params = []
        for item in _split_params(str(value)):
            name, equals, val = item.partition("=")
            params.append((name.strip(), val.strip()) if equals else (item.strip(), ""))
        try:
            return email.utils.decode_params(params)
        except (ValueError, LookupError):  # e.g. an RFC 2231 section number too long for int()
            return params[:1]

    def get_boundary(self, failobj: Any = None) -> Any:
        """The boundary, or ``failobj`` when it is longer than :data:`_BOUNDARY_LIMIT` (the parser
        tests every line against it; Python 3.11's compiles it into a regex: a megabyte took a second)."""
        boundary = super().get_boundary(failobj)
        if isinstance(boundary, str) and len(boundary) > _BOUNDARY_LIMIT:
            self.sink_note = f"a MIME boundary is longer than {_BOUNDARY_LIMIT} characters: its parts are not read"
            return failobj
        return boundary


def _split_params(value: str) -> list[str]:
    """``value`` split at each ``;`` outside double quotes, items stripped and their names
    lowercased: the stdlib's ``email.message._parseparam`` in one pass. As there, a quote counts
    unless a backslash precedes it."""
    items, start, quoted = [], 0, False
    for match in _PARAM_SPLIT_RE.finditer(value):
        at = match.start()
        if value[at] == ";":
            if not quoted:
                items.append(value[start:at])
                start = at + 1
        elif at == 0 or value[at - 1] != "\\":
            quoted = not quoted
    items.append(value[start:])
    return [_param_item(item) for item in items]


def _param_item(item: str) -> str:
    if "=" in item:
        name, _, val = item.partition("=")
        item = name.strip().lower() + "=" + val.strip()
    return item.strip()


class _Limit(Exception):
    """A display limit was reached: parsing stops there."""


if TYPE_CHECKING:  # the FeedParser internals _BoundedParser extends (typeshed leaves them out)

    class _FeedParser(FeedParser[Message]):
        _msgstack: list[Message]
        _cur: Message

        def _set_headersonly(self) -> None: ...
        def _new_message(self) -> None: ...
        def _parse_headers(self, lines: list[str]) -> None: ...

else:
    _FeedParser = FeedParser


class _BoundedParser(_FeedParser):
    """The stdlib's feed parser (compat32) within :data:`MAX_PARTS`, :data:`MAX_DEPTH` and
    :data:`MAX_HEADER_BYTES`; ``root`` keeps what was parsed when it stopped or failed."""

    def __init__(self, headers_only: bool = False) -> None:
        super().__init__(_Entity, policy=policy.compat32)
        if headers_only:
            self._set_headersonly()
        self.root: Message | None = None
        self.entities = 0
        self.headers_done = False
        self.notes: list[str] = []

    def _new_message(self) -> None:
        if len(self._msgstack) > MAX_DEPTH:
            raise _Limit(f"MIME parts nested more than {MAX_DEPTH} deep: the deeper parts are not shown")
        if self.entities >= MAX_PARTS:
            raise _Limit(f"more than {MAX_PARTS} MIME parts: the later parts are not shown")
        self.entities += 1
        super()._new_message()
        if self.root is None:
            self.root = self._cur

    def _parse_headers(self, lines: list[str]) -> None:
        if sum(map(len, lines)) > MAX_HEADER_BYTES:
            kept, size = 0, 0
            while size + len(lines[kept]) <= MAX_HEADER_BYTES:
                size += len(lines[kept])
                kept += 1
            lines = lines[:kept]
            self.notes.append(f"a header block is longer than {MAX_HEADER_BYTES} bytes: the rest is not read")
        super()._parse_headers(lines)
        self.headers_done = True


def _parse_chunks(chunks: Iterable[bytes], headers_only: bool = False) -> tuple[Message, list[str]]:
    """Parse the bytes of ``chunks`` as one message; never raises. Returns the message (as far
    as it was parsed) and notes on what was not read."""
    parser = _BoundedParser(headers_only)
    try:
        for chunk in chunks:
            for start in range(0, len(chunk), _FEED_BYTES):
                parser.feed(chunk[start:start + _FEED_BYTES].decode("ascii", "surrogateescape"))
                if headers_only and parser.headers_done:
                    break
            if headers_only and parser.headers_done:
                break
        parser.close()
    except _Limit as exc:
        parser.notes.append(str(exc))
    except Exception as exc:  # the stdlib parser gave up: keep what it had read
        parser.notes.append(f"MIME structure unreadable after {parser.entities} part(s) ({_describe(exc)}): "
                            "the rest is not shown")
    return (parser.root if parser.root is not None else _Entity()), parser.notes


def _capped(raw: bytes) -> tuple[tuple[bytes, ...], list[str]]:
    """``raw`` as the display parses it: when its header block is longer than
    :data:`MAX_HEADER_BYTES`, the header lines past that are left out, found with C-speed
    searches (so a huge header block is never read line by line). Returns the pieces and notes."""
    if len(raw) <= MAX_HEADER_BYTES:
        return (raw,), []
    cut = raw.rfind(b"\n", 0, MAX_HEADER_BYTES) + 1
    block = _HEADER_BLOCK_RE.match(raw, 0, cut)  # always matches (perhaps nothing)
    if cut == 0 or block is None or block.end() < cut:
        return (raw,), []  # the header block ends within the limit
    blanks = [at for at in (raw.find(b"\n\n", cut - 1), raw.find(b"\n\r\n", cut - 1)) if at >= 0]
    note = f"a header block is longer than {MAX_HEADER_BYTES} bytes: the rest is not read"
    return ((raw[:cut], raw[min(blanks) + 1:]) if blanks else (raw[:cut],)), [note]


def _parse(raw: bytes) -> tuple[Message, list[str]]:
    chunks, notes = _capped(raw)
    msg, parse_notes = _parse_chunks(chunks)
    return msg, notes + parse_notes


def parse(raw: bytes) -> Message:
    """The message as the display reads it (within the limits above); never raises."""
    return _parse(raw)[0]


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


def _skeleton(raw: bytes, keep: int = SUMMARY_PART_BYTES) -> Iterator[bytes]:
    """``raw`` with the body of every MIME part cut to ``keep`` bytes, in pieces of about
    :data:`_FEED_BYTES` (made as the parser asks for them). Every line starting with ``--`` (each
    boundary, and anything that may look like one) is kept, so the structure parses exactly as
    the whole message does; only long part bodies are shortened."""
    batch: list[bytes] = []
    batched, pos, size = 0, 0, len(raw)
    while pos < size:
        found = raw.find(b"\n--", pos)
        end = size if found < 0 else found + 1
        piece = _cut(raw, pos, end, keep)
        batch.append(piece)
        batched += len(piece)
        if batched >= _FEED_BYTES:
            yield b"".join(batch)
            batch, batched = [], 0
        pos = end
    if batch:
        yield b"".join(batch)


def _plain_header_block(head: bytes) -> bool:
    """True if ``head`` is CRLF lines the parser takes as headers, ending in an empty line."""
    if head[-4:] != b"\r\n\r\n" or head.count(b"\n") != head.count(b"\r\n") or head.count(b"\r") != head.count(b"\n"):
        return False
    lines = head[:-4].split(b"\r\n")
    first = lines[0]
    return (bool(_HEADER_LINE_RE.fullmatch(first)) or first.startswith(b"From ")) and all(
        _HEADER_LINE_RE.fullmatch(line) for line in lines[1:])


def _parse_for_summary(raw: bytes, keep: int = SUMMARY_PART_BYTES) -> tuple[Message, list[str]]:
    """The message as :func:`parse` reads it, at most ``keep`` body bytes of each part read.

    A message that is not multipart (most) skips the line-by-line parser: its header block is
    parsed alone and the (cut) body set as the payload, which is what the parser would do. Any
    doubt (bare LF or CR, a line that is no header, no blank line) takes the parser."""
    pieces, notes = _capped(raw)
    if notes:  # a huge header block: its first MAX_HEADER_BYTES, then the body as usual
        rest = pieces[1] if len(pieces) > 1 else b""
        msg, more = _parse_chunks(itertools.chain(pieces[:1], _skeleton(rest, keep) if len(rest) > keep else (rest,)))
        return msg, notes + more
    body = _header_end(raw)
    if body > 0 and _plain_header_block(raw[:body]):
        msg, notes = _parse_chunks((raw[:body],), headers_only=True)
        if msg.get_content_maintype() not in ("multipart", "message") and not msg.defects and not notes:
            end = len(raw)
            if end - body > keep:  # cut at a line end
                line_end = raw.rfind(b"\n", body, body + keep)
                end = line_end + 1 if line_end >= 0 else body + keep
            msg.set_payload(raw[body:end].decode("ascii", "surrogateescape"))
            return msg, notes
    return _parse_chunks(_skeleton(raw, keep) if len(raw) > keep else (raw,))


def envelope(raw: bytes | Message) -> tuple[str, list[str]]:
    """``(mail_from, rcpt_to)`` from the trace block the server wrote (see :mod:`smtp_sink.trace`):
    header lines in the client's data never count."""
    found = trace.read(raw)
    return found.mail_from, list(found.rcpt_to)


def _unescape(value: str) -> str:
    """8-bit header bytes (kept by the parser as surrogate escapes) read as UTF-8; any other lone
    surrogate (some decoders make them) becomes U+FFFD: the result is always valid UTF-8."""
    if value.isascii() or _SURROGATE_RE.search(value) is None:
        return value
    try:
        return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except UnicodeEncodeError:  # a surrogate that is no escaped byte
        return value.encode("utf-8", "surrogatepass").decode("utf-8", "replace")


def _text(value: object) -> str:
    return _SPACE_RE.sub(" ", str(value)).strip() if value is not None else ""


def _describe(exc: BaseException) -> str:
    """An exception as one short line for ParseError."""
    text = " ".join(_CONTROL_RE.sub(" ", f"{type(exc).__name__}: {exc}").split())
    return text if len(text) <= 200 else text[:199] + "…"


def _parse_error(notes: list[str]) -> str:
    """The ParseError text: each note once, in order, at most :data:`_PARSE_ERROR_LENGTH` characters."""
    text = "; ".join(dict.fromkeys(notes))
    return text if len(text) <= _PARSE_ERROR_LENGTH else text[:_PARSE_ERROR_LENGTH - 1] + "…"


def _guarded(notes: list[str], what: str, compute: Callable[[], T], default: T) -> T:
    """``compute()``, or ``default`` with a note when it fails: one field never costs the others."""
    try:
        return compute()
    except Exception as exc:
        notes.append(f"{what}: {_describe(exc)}")
        return default


def _raw_values(msg: Message, name: str) -> list[str]:
    """The values of every ``name`` header as stored: unfolded, 8-bit bytes read as UTF-8, each
    cut to :data:`MAX_HEADER_VALUE` characters."""
    by_name = msg.sink_headers if isinstance(msg, _Entity) else None
    if by_name is None:  # one pass over the headers per message, not one per name asked for
        by_name = {}
        for key, value in msg.raw_items():
            by_name.setdefault(key.lower(), []).append(value)
        if isinstance(msg, _Entity):
            msg.sink_headers = by_name
    return [_SPACE_RE.sub(" ", _unescape((value if isinstance(value, str) else str(value))[:MAX_HEADER_VALUE])).strip()
            for value in by_name.get(name.lower(), ())]


def _decoded(msg: Message, name: str) -> str:
    """One header decoded for display (RFC 2047 encoded words), or ``""``."""
    values = _raw_values(msg, name)
    if not values:
        return ""
    if "=?" not in values[0]:  # nothing to decode: skip the (slow) header registry
        return values[0]
    try:
        return _unescape(_text(_header_factory(name, values[0])))
    except Exception:  # a malformed header is shown as stored
        return values[0]


def addresses(msg: Message, name: str) -> list[Address]:
    """Every mailbox in the ``name`` headers (groups flattened); unparseable ones kept as text."""
    found: list[Address] = []
    for value in _raw_values(msg, name):
        found.extend(_mailboxes(name, value))
    return found


def _mailboxes(name: str, value: str) -> list[Address]:
    """The mailboxes of one address header value (never raises)."""
    simple = _simple_addresses(value)
    if simple is not None:
        return simple
    needs_registry = "=?" in value or '"' in value or "(" in value or not value.isascii()
    if needs_registry and len(value) <= _REGISTRY_LIMIT:
        try:  # encoded words, quoting or comments: the full RFC 5322 parser
            return [Address(_unescape(a.display_name or ""), _unescape(a.addr_spec))
                    for a in _header_factory(name, value).addresses]
        except Exception:  # the header registry gave up: fall back to the lenient parser
            pass
    try:
        return [Address(n, a) for n, a in email.utils.getaddresses([value]) if a or n]
    except Exception:  # e.g. parentheses nested past the recursion limit
        return [Address(value, "")]


def _simple_addresses(value: str) -> list[Address] | None:
    """The mailboxes of a plain list (``a@b``, ``<a@b>``, ``Name <a@b>``, comma-separated) as the
    stdlib's ``getaddresses`` reads them, without its parser; None for anything else."""
    if not value.isascii() or '"' in value or "(" in value or "\\" in value or ":" in value or ";" in value:
        return None
    found = []
    for item in value.split(","):
        item = item.strip()
        name = ""
        if item.endswith(">"):
            left = item.find("<")
            if left < 0:
                return None
            name, item = item[:left].rstrip(" "), item[left + 1:-1]
            if name and not _DISPLAY_NAME_RE.fullmatch(name):
                return None
        if not _ADDR_SPEC_RE.fullmatch(item):
            return None
        found.append(Address(" ".join(name.split()), item))
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


def _head(msg: Message, notes: list[str]) -> _Head:
    """The display headers and the envelope; a header that cannot be read is left empty and noted."""
    found = _guarded(notes, "envelope", lambda: trace.read(msg), trace.Trace())
    mail_from, rcpt_to = found.mail_from, list(found.rcpt_to)
    to = _guarded(notes, "To", lambda: addresses(msg, "To"), list[Address]())
    cc = _guarded(notes, "Cc", lambda: addresses(msg, "Cc"), list[Address]())
    senders = _guarded(notes, "From", lambda: addresses(msg, "From"), list[Address]())
    sender = senders[0] if senders else None
    return _Head(
        message_id=_guarded(notes, "Message-ID", lambda: _message_id(msg), ""),
        sender=sender,
        to=to, cc=cc, bcc=_guarded(notes, "Bcc", lambda: _bcc(msg, rcpt_to, to, cc), []),
        reply_to=_guarded(notes, "Reply-To", lambda: addresses(msg, "Reply-To"), []),
        subject=_guarded(notes, "Subject", lambda: _decoded(msg, "Subject"), ""),
        mail_from=mail_from, rcpt_to=rcpt_to, username=found.auth_user or "",
        return_path=mail_from or _return_path_header(msg) or (sender.address if sender else ""),
        x_tags=_guarded(notes, "X-Tags", lambda: _decoded(msg, "X-Tags"), ""), tls_probe=found.tls_probe,
        smtp=_guarded(notes, "Received", lambda: smtp_fields(msg if found.own else None), smtp_fields(None)),
        session=found.session if is_id(found.session) else "",
    )


_OWN_RECEIVED_RE = re.compile(r"from (\S+) \(\[([^\]]*)\]\)\s+by \S+ \(smtp-sink [^)]*\) with (\S+) id ")


def smtp_fields(msg: Message | None) -> dict[str, Any]:
    """``{"Helo", "Peer", "Protocol", "TLS"}`` from the server's own ``Received`` line (the first
    one of a message whose trace block smtp-sink wrote; ``None``: all empty). ``Protocol`` is
    RFC 3848's (``ESMTPSA``...; ``HTTP`` for the HTTP API), ``TLS`` true when the session was
    encrypted (STARTTLS or implicit TLS)."""
    values = _raw_values(msg, "Received") if msg is not None else []
    found = _OWN_RECEIVED_RE.search(" ".join(_text(values[0]).split())) if values else None
    if found is None:
        return {"Helo": "", "Peer": "", "Protocol": "", "TLS": False}
    helo, peer, protocol = found.groups()
    return {"Helo": helo, "Peer": peer, "Protocol": protocol,
            "TLS": protocol.startswith("ESMTPS") or protocol.startswith("UTF8SMTPS")}


def _return_path_header(msg: Message) -> str:
    """The first Return-Path header without its ``<>`` (ours when the server wrote a trace block)."""
    values = _raw_values(msg, "Return-Path")
    return values[0].strip().strip("<>").strip() if values else ""


def _bare_head(raw: bytes, notes: list[str]) -> _Head:
    """The headers and envelope from the header block alone (when reading the whole message failed)."""
    try:
        return _head(_parse_chunks(_capped(raw)[0], headers_only=True)[0], notes)
    except Exception as exc:
        notes.append(f"headers: {_describe(exc)}")
        return _Head()


def html_to_text(markup: str) -> str:
    """Readable text from HTML: scripts and styles dropped, tags removed, entities decoded.
    Linear time; only the first :data:`HTML_TEXT_LIMIT` characters are converted."""
    markup = _drop_elements(markup[:HTML_TEXT_LIMIT])
    markup = _sub_tags(_BLOCK_RE, "\n", markup)
    return html.unescape(_sub_tags(_TAG_RE, " ", markup))


def _sub_tags(pattern: re.Pattern[str], replacement: str, markup: str) -> str:
    """``pattern.sub`` for a pattern that ends with ``>``, run only up to the last ``>``: every
    match attempt then stops at the next ``>``, so a run of ``<`` without one costs linear time."""
    end = markup.rfind(">") + 1
    return pattern.sub(replacement, markup[:end]) + markup[end:]


@functools.lru_cache(maxsize=64)
def _end_tag(name: str) -> re.Pattern[str]:
    return re.compile(rf"</{re.escape(name)}\s*>", re.IGNORECASE)


def _drop_elements(markup: str, starts: re.Pattern[str] = _DROP_START_RE) -> str:
    """``markup`` with each element whose start tag ``starts`` finds (script, style and head by
    default; start tag to the first matching end tag) replaced by a space. One forward search per
    end tag, and none again for a name whose end tag is missing: linear, where a lazy ``.*?``
    regex rescanned to the end for every start tag."""
    pieces, pos, search, unclosed = [], 0, 0, set()
    while (start := starts.search(markup, search)) is not None:
        name = start.group(1).lower()
        end = None if name in unclosed else _end_tag(name).search(markup, start.end())
        if end is None:
            unclosed.add(name)
            search = start.end()
            continue
        pieces += [markup[pos:start.start()], " "]
        pos = search = end.end()
    pieces.append(markup[pos:])
    return "".join(pieces)


def snippet(text: str, html_body: str = "") -> str:
    """Mailpit's ``Snippet`` (``tools.CreateSnippet``): the HTML body as text when there is one
    (even when that text is empty), else the text body, white space collapsed, cut at
    :data:`SNIPPET_BYTES` UTF-8 bytes with ``...`` added. Linear in the bodies' length."""
    html_body = html_body.strip()
    if html_body:
        return _truncated(_clean_snippet(strip_html(html_body)))
    text = _GO_SPACE_RE.sub(" ", text.strip().replace("\ufeff", " ")).strip()
    return _truncated(text)


def strip_html(markup: str) -> str:
    """Mailpit's ``html2text.Strip`` of the first :data:`HTML_TEXT_LIMIT` characters (before its
    clean-up of white space): the text of the nodes, entities decoded."""
    markup = _SNIPPET_BLOCK_RE.sub(lambda found: f"</{found.group(1)}> <", markup[:HTML_TEXT_LIMIT])
    markup = _SNIPPET_IMG_RE.sub(lambda found: " " + found.group(), _SNIPPET_BR_RE.sub(" ", markup))
    markup = _drop_elements(markup, _SNIPPET_DROP_RE)
    return html.unescape(_sub_tags(_MARKUP_RE, "", markup))


def _clean_snippet(text: str) -> str:
    """Mailpit's ``clean``: non-printable characters as spaces, ASCII white space collapsed,
    trimmed; only as much of ``text`` as the snippet can show is cleaned."""
    pieces, shown = [], 0
    for start in range(0, len(text), _SNIPPET_CHUNK):
        chunk = text[start:start + _SNIPPET_CHUNK]
        if not chunk.isprintable():
            chunk = "".join(char if char.isprintable() else " " for char in chunk)
        pieces.append(chunk)
        shown += len(chunk) - chunk.count(" ")
        if shown > SNIPPET_BYTES:  # more than the cut keeps, whatever the spaces collapse to
            break
    return _GO_SPACE_RE.sub(" ", "".join(pieces)).strip()


def _truncated(text: str) -> str:
    """``text`` when it is at most :data:`SNIPPET_BYTES` UTF-8 bytes, else cut as Go's ``truncate``
    cuts it (never inside a character, and one whole character earlier at a character's end)
    followed by ``...``."""
    data = text.encode("utf-8", "surrogatepass")
    if len(data) <= SNIPPET_BYTES:
        return text
    end = SNIPPET_BYTES
    while end > 0 and data[end - 1] & 0xC0 == 0x80:  # back to the first byte of the character
        end -= 1
    if end > 0 and data[end - 1] & 0xC0 == 0xC0:  # and before it
        end -= 1
    return data[:end].decode("utf-8", "surrogatepass") + "..."


def _is_multipart(part: Message) -> bool:
    return part.get_content_maintype() == "multipart" and isinstance(part.get_payload(), list)


def leaves(msg: Message) -> Iterator[tuple[str, Message, int]]:
    """``(part_id, part, depth)`` for every leaf part of a message, depth first (iterative: the
    depth of the tree costs no stack). Ids as enmime numbers them: a message that is not
    multipart is the one part ``"0"``; the children of the top multipart are ``"1"``, ``"2"``...;
    those of a nested multipart ``"2"`` are ``"2.1"``, ``"2.2"``...; ``depth`` is 1 for the top's."""
    if not _is_multipart(msg):
        yield "0", msg, 0
        return
    stack = [(iter(enumerate(msg.get_payload(), 1)), "")]
    while stack:
        children, prefix = stack[-1]
        for number, child in children:
            child_id = f"{prefix}{number}"
            if _is_multipart(child):
                stack.append((iter(enumerate(child.get_payload(), 1)), child_id + "."))
                break
            yield child_id, child, len(stack)
        else:
            stack.pop()


def _payload(part: Message) -> bytes:
    """The decoded content of a leaf part (a message/rfc822 part as its bytes); never raises."""
    try:
        if part.get_content_maintype() == "message":
            inner = part.get_payload()
            if isinstance(inner, list) and inner and isinstance(inner[0], Message):
                return inner[0].as_bytes()
        data = part.get_payload(decode=True)
    except Exception:  # an undecodable payload is given as stored
        data = part.get_payload()
        data = data.encode("ascii", "surrogateescape") if isinstance(data, str) else b""
    return data if isinstance(data, bytes) else b""


def _codec(charset: str | None) -> tuple[str, str]:
    """``(codec, problem)`` for a charset name: UTF-8 and a note for one Python cannot decode text
    with (unknown, a NUL in the name, a bytes codec like base64, or idna/punycode/undefined)."""
    if not charset:
        return "utf-8", ""
    try:
        name = codecs.lookup(charset).name
        b"".decode(name)  # LookupError for codecs that are not text encodings
    except Exception:
        name = ""
    if not name or name in _REFUSED_CODECS:
        return "utf-8", f"unknown charset {charset[:40]!r}, shown as UTF-8"
    return name, ""


def _decode(data: bytes, charset: str | None) -> tuple[str, str]:
    """``(text, problem)``: ``data`` decoded from ``charset`` (UTF-8 if it cannot be used)."""
    name, problem = _codec(charset)
    try:
        return _unescape(data.decode(name, "replace")), problem
    except Exception as exc:
        return data.decode("utf-8", "replace"), f"charset {charset!r:.40} failed ({_describe(exc)}), shown as UTF-8"


def _charset(part: Message) -> tuple[str | None, str]:
    try:
        return part.get_content_charset(), ""
    except Exception as exc:  # e.g. an RFC 2231 charset naming an unusable codec
        return None, f"unreadable charset parameter ({_describe(exc)}), shown as UTF-8"


def _decoded_text(part: Message, problems: list[str]) -> str:
    """A text part as a string: transfer encoding undone, decoded from its charset."""
    charset, problem = _charset(part)
    text, decode_problem = _decode(_payload(part), charset)
    problems += [p for p in (problem, decode_problem) if p]
    return text.replace("\r\n", "\n")  # for display; the stored bytes keep their CRLF


def _content_type(part: Message) -> str:
    """The part's ``type/subtype`` (lowercase, RFC 6838 characters), else ``application/octet-stream``."""
    try:
        ctype = part.get_content_type()
    except Exception:
        return "application/octet-stream"
    return ctype if _MIME_TYPE_RE.fullmatch(ctype) else "application/octet-stream"


def _filename(part: Message) -> str:
    """The part's file name (RFC 2231 and RFC 2047 forms decoded, control characters removed),
    or ``""``; never raises."""
    try:
        value = part.get_param("filename", None, "content-disposition")
        if value is None:
            value = part.get_param("name", None, "content-type")
    except Exception:
        return ""
    if isinstance(value, tuple):  # RFC 2231: (charset, language, text as latin-1)
        charset, _, text = value
        data = text[:FILENAME_LIMIT].encode("latin-1", "surrogateescape")
        name = _decode(data, charset or "us-ascii")[0]
    elif isinstance(value, str):
        name = _unescape(value[:FILENAME_LIMIT])
    else:
        return ""
    if "=?" in name:
        with contextlib.suppress(Exception):  # shown as stored
            name = str(email.header.make_header(email.header.decode_header(name)))
    return _CONTROL_RE.sub("", _text(_unescape(name)))


@dataclass
class _Leaf:
    """One leaf part with what filing it needs (enmime's ``Part`` fields)."""

    part_id: str
    part: Message
    order: tuple[int, int]  # (depth, position depth first): sorting by it gives breadth-first order
    content_type: str
    disposition: str  # "attachment", "inline", ... or ""
    filename: str
    content_id: str


def _leaf(part_id: str, part: Message, order: tuple[int, int], problems: list[str]) -> _Leaf:
    note = getattr(part, "sink_note", "")
    if note:
        problems.append(note)
    return _Leaf(part_id, part, order, _content_type(part), (part.get_content_disposition() or "").lower(),
                 _filename(part), _content_id(part))


def _content_id(part: Message) -> str:
    """The Content-ID as enmime reads it: ``<>`` trimmed, then %-escapes and ``+`` decoded (kept
    as it is when an escape is malformed)."""
    values = _raw_values(part, "Content-ID")
    if not values:
        return ""
    value = values[0].strip().lstrip("<").rstrip(">")
    if ("%" in value or "+" in value) and _BAD_ESCAPE_RE.search(value) is None:
        value = urllib.parse.unquote_plus(value, errors="replace")
    return _CONTROL_RE.sub("", value)


def _parts(msg: Message, notes: list[str], sizes: bool = True) -> _Parts:
    """Split a message into its text, HTML, inline parts and attachments as Mailpit (enmime)
    does (``sizes``: decode each listed part for its size and checksums; a summary only counts
    and names them). A part that cannot be read is noted and skipped; the others are still filed."""
    found = _Parts()
    leaves_found: list[_Leaf] = []
    for position, (part_id, part, depth) in enumerate(leaves(msg)):
        problems: list[str] = []
        try:
            leaves_found.append(_leaf(part_id, part, (depth, position), problems))
        except Exception as exc:
            problems.append(_describe(exc))
        notes += [f"part {part_id}: {problem}" for problem in problems]
    inline: list[_Leaf] = []
    attachments: list[_Leaf] = []
    if _is_multipart(msg):
        inline, attachments = _file_multipart(msg, leaves_found, found, notes)
    elif leaves_found:
        inline, attachments = _file_single_part(leaves_found[0], found, notes)
    found.attachment_count = len(attachments)
    found.inline = [_entry(leaf, sizes) for leaf in inline if leaf.filename or leaf.content_id]
    found.attachments = [_entry(leaf, sizes) for leaf in attachments if leaf.filename or leaf.content_id]
    if not found.text and found.html:
        found.text = _SPACE_RE.sub(" ", html_to_text(found.html)).strip()
    return found


def _body(leaf: _Leaf, notes: list[str]) -> str:
    problems: list[str] = []
    try:
        return _decoded_text(leaf.part, problems)
    except Exception as exc:
        problems.append(_describe(exc))
        return ""
    finally:
        notes += [f"part {leaf.part_id}: {problem}" for problem in problems]


def _file_single_part(leaf: _Leaf, found: _Parts, notes: list[str]) -> tuple[list[_Leaf], list[_Leaf]]:
    """A message that is not multipart: its body is the text or HTML, unless it is an
    attachment (a text part marked so, or anything not text/plain or text/html). Returns the
    ``(inline, attachments)`` leaves."""
    if leaf.content_type in ("text/plain", "text/html") and leaf.disposition != "attachment":
        body = _body(leaf, notes)
        if leaf.content_type == "text/html":
            found.html = body
        else:
            found.text = body
        return [], []
    return ([leaf], []) if leaf.disposition == "inline" else ([], [leaf])


def _file_multipart(msg: Message, leaves_found: list[_Leaf], found: _Parts, notes: list[str]
                    ) -> tuple[list[_Leaf], list[_Leaf]]:
    """enmime's ``parseMultiPartBody``: Text is the first text/plain part (breadth first) of a
    multipart/alternative, else every text/plain part (depth first) joined by ``\n--\n``; HTML
    the first text/html part (depth first); neither may be an attachment. Attachments are the parts
    marked attachment or typed application/octet-stream; inline parts those marked inline, then
    those with no disposition that are not text/plain, text/html or octet-stream (breadth first).
    Returns the ``(inline, attachments)`` leaves."""
    breadth = sorted(leaves_found, key=lambda leaf: leaf.order)
    plain = [leaf for leaf in leaves_found if leaf.content_type == "text/plain" and leaf.disposition != "attachment"]
    if msg.get_content_subtype() == "alternative":
        first = min(plain, key=lambda leaf: leaf.order, default=None)
        found.text = _body(first, notes) if first is not None else ""
    else:
        found.text = "\n--\n".join(_body(leaf, notes) for leaf in plain)
    html_part = next((leaf for leaf in leaves_found
                      if leaf.content_type == "text/html" and leaf.disposition != "attachment"), None)
    if html_part is not None:
        found.html = _body(html_part, notes)
    octet = "application/octet-stream"
    attachments = [leaf for leaf in breadth if leaf.disposition == "attachment" or leaf.content_type == octet]
    inline = [leaf for leaf in breadth if leaf.disposition == "inline"] + [
        leaf for leaf in breadth
        if not leaf.disposition and leaf.content_type not in (octet, "text/plain", "text/html")]
    return inline, attachments


def _entry(leaf: _Leaf, sizes: bool) -> dict[str, Any]:
    """Mailpit's ``Attachment``: the file name falls back to the Content-ID; ``Size`` and
    ``Checksums`` are of the decoded content (computed only with ``sizes``)."""
    content = _content(leaf.part) if sizes else b""
    return {
        "PartID": leaf.part_id,
        "FileName": leaf.filename or leaf.content_id,
        "ContentType": leaf.content_type,
        "ContentID": leaf.content_id,
        "Size": len(content),
        "Checksums": {
            "MD5": hashlib.md5(content).hexdigest() if sizes else "",
            "SHA1": hashlib.sha1(content).hexdigest() if sizes else "",
            "SHA256": hashlib.sha256(content).hexdigest() if sizes else "",
        },
    }


def _content(part: Message) -> bytes:
    """A part's content as Mailpit serves it: transfer encoding undone and, for a text part in
    another charset than UTF-8, converted to UTF-8 (as enmime does); never raises."""
    data = _payload(part)
    if part.get_content_maintype() != "text":
        return data
    charset, _ = _charset(part)
    name, problem = _codec(charset)
    if problem or name in ("utf-8", "ascii"):
        return data
    try:
        return data.decode(name, "replace").encode("utf-8", "surrogatepass")
    except Exception:
        return data


def _created(message_id: str) -> float:
    try:
        return id_time(message_id)
    except ValueError:  # not an id (the store only passes ids)
        return 0.0


def summarize(message_id: str, raw: bytes, size: int | None = None) -> Summary:
    """The summary of a stored message (used when indexing): one parse that reads at most
    :data:`SUMMARY_PART_BYTES` of each part's body and decodes no attachment. Never raises: what
    could not be read is left out and named in ``parse_error``."""
    size = len(raw) if size is None else size
    notes: list[str] = []
    try:
        msg, notes = _parse_for_summary(raw)
        head = _head(msg, notes)
        parts = _guarded(notes, "parts", lambda: _parts(msg, notes, sizes=False), _Parts())
    except Exception as exc:  # past every guard (e.g. out of memory): the header block alone
        notes.append(f"message: {_describe(exc)}")
        head, parts = _bare_head(raw, notes), _Parts()
    found = _summary(message_id, head, parts, size, notes)
    found.duplicate_key = duplicate_key(raw, found.message_id)  # duplicates (docs/retries.md)
    return found


def _summary(message_id: str, head: _Head, parts: _Parts, size: int, notes: list[str]) -> Summary:
    """The fields a summary and a detail share, derived once from the parsed head and parts."""
    text = parts.text[:TEXT_SEARCH_LENGTH]
    return Summary(
        id=message_id,
        message_id=head.message_id,
        sender=head.sender,
        to=head.to, cc=head.cc, bcc=head.bcc, reply_to=head.reply_to,
        subject=head.subject,
        created=_created(message_id),
        size=size,
        attachments=parts.attachment_count,
        snippet=snippet(parts.text, parts.html),
        mail_from=head.mail_from, rcpt_to=head.rcpt_to,
        text=text,
        parse_error=_parse_error(notes),
        username=head.username, inline=len(parts.inline), x_tags=head.x_tags, tls_probe=head.tls_probe,
        attachment_names=[entry["FileName"] for entry in parts.attachments if entry["FileName"]],
    )


def envelope_summary(message_id: str, raw: bytes, size: int) -> Summary:
    """A summary of the envelope alone (from the trace block), for a message of which nothing
    else could be read. The envelope recipients are its Bcc, as in :func:`summarize`."""
    found = trace.read(raw)
    rcpt_to = list(found.rcpt_to)
    return Summary(
        id=message_id, message_id="", sender=None, to=[], cc=[], bcc=[Address("", r) for r in rcpt_to],
        reply_to=[], subject="", created=_created(message_id), size=size, attachments=0, snippet="",
        mail_from=found.mail_from, rcpt_to=rcpt_to, username=found.auth_user or "",
        duplicate_key=duplicate_key(raw, ""),  # duplicates (docs/retries.md): by the client's bytes
    )


def _date(msg: Message, message_id: str) -> str:
    """The Date header as Go writes it, keeping its offset (the arrival time, UTC, when the
    header is missing or unparseable)."""
    try:
        when = email.utils.parsedate_to_datetime(_decoded(msg, "Date"))
        if when.tzinfo is None:  # "-0000": no zone information
            when = when.replace(tzinfo=timezone.utc)
        return go_time(when)
    except Exception:
        return go_time(datetime.fromtimestamp(_created(message_id), timezone.utc))


def go_time(when: datetime) -> str:
    """An aware time as Go's ``encoding/json`` writes a ``time.Time`` (RFC 3339, the fraction only
    when not zero and without trailing zeros, ``Z`` for a zero offset)."""
    text = when.strftime("%Y-%m-%dT%H:%M:%S")
    if when.microsecond:
        text += f".{when.microsecond:06d}".rstrip("0")
    offset = when.utcoffset()
    if not offset:
        return text + "Z"
    minutes = int(offset.total_seconds()) // 60
    sign = "-" if minutes < 0 else "+"
    return f"{text}{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def detail(message_id: str, raw: bytes, *, read: bool = False, tags: list[str] | None = None) -> dict[str, Any]:
    """Mailpit's ``GET /api/v1/message/{ID}`` (its ``Message``, key by key) for a stored message,
    plus ``Read``, the envelope (``MailFrom``, ``RcptTo``) and ``ParseError`` (what could not be
    read, ``""`` when all was). ``tags``: the message's tags (from the index). Never raises."""
    notes: list[str] = []
    try:
        msg, notes = _parse(raw)
        head = _head(msg, notes)
        parts = _guarded(notes, "parts", lambda: _parts(msg, notes), _Parts())
        date = _date(msg, message_id)
        unsubscribe = _guarded(notes, "List-Unsubscribe", lambda: list_unsubscribe(
            _decoded(msg, "List-Unsubscribe"), _decoded(msg, "List-Unsubscribe-Post")), list_unsubscribe("", ""))
    except Exception as exc:  # past every guard (e.g. out of memory): the header block alone
        notes.append(f"message: {_describe(exc)}")
        head, parts, unsubscribe = _bare_head(raw, notes), _Parts(), list_unsubscribe("", "")
        date = go_time(datetime.fromtimestamp(_created(message_id), timezone.utc))
    return {
        "ID": message_id,
        "MessageID": head.message_id,
        "From": (head.sender or Address("", "")).to_json(),
        "To": [a.to_json() for a in head.to],
        "Cc": [a.to_json() for a in head.cc],
        "Bcc": [a.to_json() for a in head.bcc],
        "ReplyTo": [a.to_json() for a in head.reply_to],
        "ReturnPath": head.return_path,
        "Subject": head.subject,
        "ListUnsubscribe": unsubscribe,
        "Date": date,
        "Tags": list(tags or []),
        "Username": head.username,
        "Text": parts.text,
        "HTML": parts.html,
        "Size": len(raw),
        "Inline": parts.inline,
        "Attachments": parts.attachments,
        "Read": read,
        "MailFrom": head.mail_from,
        "RcptTo": list(head.rcpt_to),
        "SMTP": head.smtp,
        "ParseError": _parse_error(notes),
        "SessionID": head.session,  # issue 17: GET /api/v1/session/{SessionID}; "" when not recorded
    }


def part(raw: bytes, part_id: str, within: str = "") -> tuple[str, str, bytes]:
    """``(content_type, filename, content)`` of one part, any leaf part by its id (Mailpit serves
    only listed parts): the type is always a clean ``type/subtype``, the name has no control
    characters and falls back to the Content-ID, the content is as :func:`_content` gives it.
    :class:`NotFound` if there is no such part (or it lies past the display limits), naming it
    ``within`` (e.g. ``message <id>``); nothing else is raised."""
    try:
        for leaf_id, leaf, _ in leaves(parse(raw)):
            if leaf_id == part_id:
                return _content_type(leaf), _filename(leaf) or _content_id(leaf), _content(leaf)
    except Exception as exc:  # a part that cannot be reached is not there
        raise NotFound("part", part_id, within) from exc
    raise NotFound("part", part_id, within)


def headers(raw: bytes) -> dict[str, list[str]]:
    """Mailpit's ``/headers``: canonical name (:func:`canonical_header`) -> values in order of
    appearance, names sorted; values as stored (unfolded as Go's textproto does, not decoded;
    8-bit bytes read as UTF-8). Reads the first :data:`MAX_HEADER_BYTES` of the header block
    only; never raises."""
    found: dict[str, list[str]] = {}
    msg, _ = _parse_chunks(_capped(raw)[0], headers_only=True)
    for name, value in msg.raw_items():
        text = value if isinstance(value, str) else str(value)
        lines = [line.strip(" \t") for line in _LINE_BREAK_RE.split(text)]
        found.setdefault(canonical_header(name), []).append(_unescape(" ".join(lines).strip(" \t")))
    return {name: found[name] for name in sorted(found)}


def canonical_header(name: str) -> str:
    """A header name in Go's canonical form (``textproto.CanonicalMIMEHeaderKey``): the first
    letter and each letter after ``-`` upper case, the others lower case (``Message-Id``,
    ``Mime-Version``); a name with a character that is no token character is left as it is."""
    if not _TOKEN_RE.fullmatch(name):
        return name
    return "-".join(word[:1].upper() + word[1:].lower() for word in name.split("-"))


def contents(raw: bytes, part_ids: Iterable[str]) -> dict[str, tuple[str, bytes]]:
    """``part_id -> (content_type, content)`` of these parts (as :func:`part` gives them) from one
    parse; ids that name no part are left out. Never raises."""
    wanted, found = set(part_ids), {}
    if not wanted:
        return {}
    try:
        for leaf_id, leaf, _ in leaves(parse(raw)):
            if leaf_id in wanted:
                found[leaf_id] = (_content_type(leaf), _content(leaf))
    except Exception:  # what could be read is given
        pass
    return found
