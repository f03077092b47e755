"""Messages made from Mailpit's ``POST /api/v1/send`` JSON, with the standard ``email`` package.

:func:`compose` checks the body in Mailpit's order and with its error texts (``invalid To address:
x``, ``cannot overwrite header: "Subject"``...) and builds the message the way Mailpit's builder
lays it out: a text part always, the HTML beside it (``multipart/alternative``), attachments with
a ``ContentID`` inline (``multipart/related``), the others attached (``multipart/mixed``); ``Tags``
become an ``X-Tags`` header, ``Headers`` are added with Go's spelling of their names (``x-ip`` ->
``X-Ip``). Bcc addresses are envelope recipients only, as in Mailpit. The bytes are 7-bit (long or
8-bit text quoted-printable or base64), so any upstream can take them when they are relayed.

Stricter than Mailpit, so that what is stored is a message a server would take: every address,
``From`` included, must be a mailbox; header names and values, names and file names cannot hold
line breaks (no header injection).
"""

from __future__ import annotations

import base64
import binascii
import email.errors
import email.policy
import email.utils
import re
from dataclasses import dataclass
from email.headerregistry import Address
from email.message import EmailMessage
from typing import Any

from .addresses import AddressError, parse_mailbox
from .jsonbody import BodyError, pick, show, string, strings

__all__ = ["Composed", "compose", "sniff"]

FIELDS = ("From", "To", "Cc", "Bcc", "ReplyTo", "Subject", "Text", "HTML", "Attachments", "Tags", "Headers")
ADDRESS_FIELDS = ("Email", "Name")
ATTACHMENT_FIELDS = ("Content", "Filename", "ContentType", "ContentID")
# Headers the body sets itself (Mailpit's list; X-Tags too when Tags are given).
RESTRICTED = ("To", "From", "Cc", "Bcc", "Reply-To", "Date", "Subject", "Content-Type", "Mime-Version")
POLICY = email.policy.SMTP.clone(cte_type="7bit")  # CRLF, 7-bit bodies, RFC 2047 headers
POLICY_UTF8 = email.policy.SMTPUTF8.clone(cte_type="7bit")  # when an address is not ASCII (RFC 6532)
_NAME_RE = re.compile(r"[!-9;-~]+")  # a header field name: printable ASCII but the colon (RFC 5322)
_TOKEN_RE = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+")  # names Go writes in its canonical form
_ANGLE_RE = re.compile(r"[^<>]*<([^<>]*)>")  # "Name <a@b>": Go's mail.ParseAddress takes those too
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f\u0085\u2028\u2029]+")
_MEDIA_RE = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]{0,126}/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}")
_CID_RE = re.compile(r"[!-;=?-~]{1,250}")  # printable ASCII without space, < and >
_BINARY = frozenset(b"\x00\x01\x02\x03\x04\x05\x06\x07\x08\x0b\x0e\x0f\x10\x11\x12\x13\x14\x15\x16\x17\x18\x19"
                    b"\x1a\x1c\x1d\x1e\x1f")  # bytes Go's sniffer counts as binary
_SIGNATURES = (  # Go's http.DetectContentType, the common part (prefix, type)
    (b"%PDF-", "application/pdf"), (b"%!PS-Adobe-", "application/postscript"),
    (b"\xfe\xff", "text/plain; charset=utf-16be"), (b"\xff\xfe", "text/plain; charset=utf-16le"),
    (b"\xef\xbb\xbf", "text/plain; charset=utf-8"), (b"GIF87a", "image/gif"), (b"GIF89a", "image/gif"),
    (b"\x89PNG\r\n\x1a\n", "image/png"), (b"\xff\xd8\xff", "image/jpeg"), (b"BM", "image/bmp"),
    (b"\x00\x00\x01\x00", "image/x-icon"), (b"OggS\x00", "application/ogg"), (b"ID3", "audio/mpeg"),
    (b"PK\x03\x04", "application/zip"), (b"\x1f\x8b\x08", "application/x-gzip"),
)
_HTML_TAGS = (b"<!doctype html", b"<html", b"<head", b"<script", b"<iframe", b"<h1", b"<div", b"<font",
              b"<table", b"<a", b"<style", b"<title", b"<b", b"<body", b"<br", b"<p", b"<!--")


@dataclass(frozen=True)
class Composed:
    """A message made by :func:`compose`: its envelope and its bytes."""

    sender: str
    recipients: list[str]
    data: bytes
    smtputf8: bool = False


@dataclass(frozen=True)
class _Attachment:
    data: bytes
    content_type: str
    filename: str
    cid: str


def compose(body: Any, hostname: str, max_size: int = 0, max_recipients: int = 0) -> Composed:
    """The message of a send request (``body``: the decoded JSON), or :class:`BodyError` (400;
    413 when the message would exceed ``max_size`` bytes). ``hostname`` names its Message-ID."""
    fields = pick(body, FIELDS, "body")
    sender = pick(fields.get("From"), ADDRESS_FIELDS, "From")
    recipients: list[str] = []
    heads: list[tuple[str, list[Address]]] = []
    for key, header in (("To", "To"), ("Cc", "Cc"), ("Bcc", "Bcc"), ("ReplyTo", "Reply-To")):
        found = _addresses(fields.get(key), key, header)
        if key != "ReplyTo":
            recipients += [a.addr_spec for a in found]
        if key != "Bcc" and found:
            heads.append((header, found))
    recipients = list({r.lower(): r for r in reversed(recipients)}.values())[::-1]  # each once, in order
    if max_recipients and len(recipients) > max_recipients:
        raise BodyError(f"too many recipients: {len(recipients)} (at most {max_recipients}: [smtp] max_recipients)")
    tags = strings(fields.get("Tags"), "Tags")
    headers = _custom_headers(fields.get("Headers"), bool(tags))
    attachments = _attachments(fields.get("Attachments"))
    from_email = string(sender.get("Email"), "From.Email").strip()
    if not from_email:
        raise BodyError("error building message: from not set")
    if not recipients:
        raise BodyError("error building message: no recipients (to, cc, bcc) set")
    from_address = _address(from_email, string(sender.get("Name"), "From.Name"), "From")
    smtputf8 = not (from_address.addr_spec.isascii() and all(r.isascii() for r in recipients))
    msg = EmailMessage(policy=POLICY_UTF8 if smtputf8 else POLICY)
    msg["Date"] = email.utils.formatdate(localtime=True)
    msg["From"] = from_address
    msg["Subject"] = _one_line(string(fields.get("Subject"), "Subject"))
    for header, found in heads:
        msg[header] = found
    if not any(name.lower() == "message-id" for name, _ in headers):
        msg["Message-ID"] = email.utils.make_msgid(domain=hostname)
    if tags:
        msg["X-Tags"] = _one_line(", ".join(tags))
    _body(msg, string(fields.get("Text"), "Text"), string(fields.get("HTML"), "HTML"), attachments)
    for name, value in headers:  # after the body: building it clears Content-* headers
        try:
            msg[name] = value
        except (ValueError, TypeError, email.errors.MessageError) as exc:
            raise BodyError(f"cannot set header {name!r}: {exc}") from None
    data = _bytes(msg)
    if max_size and len(data) > max_size:
        raise BodyError(f"message of {len(data)} bytes exceeds the limit of {max_size} bytes "
                        "([smtp] max_message_size)", 413)
    return Composed(from_address.addr_spec, recipients, data, smtputf8)


def _addresses(value: Any, key: str, header: str) -> list[Address]:
    """``To``, ``Cc``, ``ReplyTo`` (objects with Email and Name) or ``Bcc`` (strings) as addresses."""
    if value is None:
        return []
    if not isinstance(value, list):
        kind = "strings" if key == "Bcc" else "{Email, Name} objects"
        raise BodyError(f"{key}: expected a list of {kind}, got {show(value)}")
    found = []
    for number, item in enumerate(value):
        where = f"{key}[{number}]"
        if key == "Bcc":
            text, name = string(item, where), ""
        else:
            fields = pick(item, ADDRESS_FIELDS, where)
            text, name = string(fields.get("Email"), f"{where}.Email"), string(fields.get("Name"), f"{where}.Name")
        found.append(_address(text, name, header))
    return found


def _address(text: str, name: str, header: str) -> Address:
    """``text`` (``a@b`` or ``Name <a@b>``) as an address with display name ``name``; Mailpit's
    ``invalid <header> address: <text>`` when it is not a mailbox."""
    bare = text.strip()
    match = _ANGLE_RE.fullmatch(bare)
    if match:
        bare = match.group(1).strip()
    try:
        local, _, domain = parse_mailbox(bare).rpartition("@")
    except AddressError:
        raise BodyError(f"invalid {header} address: {text[:300]}") from None
    if local.startswith('"'):  # a quoted local part: Address quotes it again as needed
        local = re.sub(r"\\(.)", r"\1", local[1:-1])
    return Address(display_name=_one_line(name), username=local, domain=domain)


def _custom_headers(value: Any, tagged: bool) -> list[tuple[str, str]]:
    """``Headers`` as (name in Go's spelling, value); Mailpit's restricted names refused."""
    if value is None:
        return []
    if not isinstance(value, dict):
        raise BodyError(f"Headers: expected an object of header names and string values, got {show(value)}")
    restricted = {name.lower() for name in RESTRICTED} | ({"x-tags"} if tagged else set())
    found = []
    for key, text in value.items():
        if key.lower() in restricted:
            raise BodyError(f'cannot overwrite header: "{key[:100]}"')
        if not _NAME_RE.fullmatch(key):
            raise BodyError(f"Headers: {key[:100]!r} is not a header name (printable ASCII, no colon or space)")
        text = string(text, f"Headers.{key}")
        if "\r" in text or "\n" in text:
            raise BodyError(f"Headers.{key}: a header value cannot contain CR or LF")
        found.append((canonical(key), text))
    return found


def canonical(name: str) -> str:
    """A header name as Go writes it (``x-ip`` -> ``X-Ip``); a name with other characters is kept."""
    if not _TOKEN_RE.fullmatch(name):
        return name
    return "-".join(word[:1].upper() + word[1:].lower() for word in name.split("-"))


def _attachments(value: Any) -> list[_Attachment]:
    """``Attachments``: base64 content (a ``data:...;base64,`` prefix allowed), type sniffed when not given."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise BodyError(f"Attachments: expected a list of objects, got {show(value)}")
    found = []
    for number, item in enumerate(value):
        where = f"Attachments[{number}]"
        fields = pick(item, ATTACHMENT_FIELDS, where)
        filename = _one_line(string(fields.get("Filename"), f"{where}.Filename"))
        content = string(fields.get("Content"), f"{where}.Content").rsplit(",", 1)[-1]
        try:
            data = base64.b64decode(content.replace("\r", "").replace("\n", ""), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise BodyError(f'error decoding base64 attachment "{filename[:200]}": {exc}') from None
        content_type = string(fields.get("ContentType"), f"{where}.ContentType").strip() or sniff(data)
        cid = string(fields.get("ContentID"), f"{where}.ContentID").strip().strip("<>")
        if cid and not _CID_RE.fullmatch(cid):
            raise BodyError(f"{where}.ContentID: printable ASCII without spaces or angle brackets, got {show(cid)}")
        found.append(_Attachment(data, content_type, filename, cid))
    return found


def sniff(data: bytes) -> str:
    """The content type Go's ``http.DetectContentType`` gives ``data`` (its common signatures):
    HTML, PDF, images, archives..., else ``text/plain; charset=utf-8`` for text, else
    ``application/octet-stream``."""
    head = data[:512]
    for prefix, kind in _SIGNATURES:
        if head.startswith(prefix):
            return kind
    if head.startswith(b"RIFF") and head[8:14] == b"WEBPVP":
        return "image/webp"
    start = head.lstrip(b"\t\n\x0c\r ").lower()
    for tag in _HTML_TAGS:
        if start.startswith(tag) and start[len(tag):len(tag) + 1] in (b" ", b">"):
            return "text/html; charset=utf-8"
    if start.startswith(b"<?xml"):
        return "text/xml; charset=utf-8"
    if _BINARY.isdisjoint(head):
        return "text/plain; charset=utf-8"
    return "application/octet-stream"


def _content_type(text: str, filename: str) -> tuple[str, str, dict[str, str]]:
    """``type/subtype; key=value`` as (maintype, subtype, params)."""
    header = email.policy.default.header_factory("content-type", text)
    media = f"{header.maintype}/{header.subtype}"
    if header.defects or not _MEDIA_RE.fullmatch(media) or _CONTROL_RE.search(text):
        raise BodyError(f"attachment {filename[:100]!r}: ContentType is not a content type such as image/png, "
                        f"got {show(text)}")
    return header.maintype, header.subtype, dict(header.params)


def _body(msg: EmailMessage, text: str, html: str, attachments: list[_Attachment]) -> None:
    """The MIME tree: mixed[related[alternative[text, html], inline...], attachment...], layers
    left out when not needed."""
    msg.set_content(text, charset="utf-8")
    inline = [a for a in attachments if a.cid]
    for item in inline:  # related[text, inline...]
        maintype, subtype, params = _content_type(item.content_type, item.filename)
        msg.add_related(item.data, maintype, subtype, disposition="inline", cid=f"<{item.cid}>",
                        filename=item.filename or None, params=params)
    if html:  # the text part becomes alternative[text, html]
        first = next(msg.iter_parts()) if inline else msg
        first.add_alternative(html, subtype="html", charset="utf-8")
    for item in attachments:  # mixed[..., attachment...]
        if not item.cid:
            maintype, subtype, params = _content_type(item.content_type, item.filename)
            msg.add_attachment(item.data, maintype, subtype, filename=item.filename or None, params=params)
    for part in msg.walk():  # the parts the email package made as messages of their own
        if part is not msg:
            del part["MIME-Version"]


def _bytes(msg: EmailMessage) -> bytes:
    """The message as bytes (CRLF line ends)."""
    try:
        return msg.as_bytes()
    except (ValueError, TypeError, email.errors.MessageError) as exc:
        raise BodyError(f"error building message: {exc}") from None


def _one_line(text: str) -> str:
    """Text for a header: line breaks and other control characters become spaces."""
    return _CONTROL_RE.sub(" ", text) if not text.isprintable() else text
