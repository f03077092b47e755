"""The record of one message that the index keeps and every list shows: :class:`Summary`, with its
:class:`Address` values, in Mailpit's JSON field names (``ID``, ``From``, ``Snippet``...)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from .ids import id_time


@dataclass(frozen=True)
class Address:
    """A mailbox: display name and address (Mailpit's ``{"Name", "Address"}``)."""

    name: str
    address: str

    def to_json(self) -> dict[str, str]:
        """Mailpit's ``{"Name", "Address"}``."""
        return {"Name": self.name, "Address": self.address}


NO_ADDRESS = Address("", "")  # Mailpit's ``From`` of a message without one


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
    parse_error: str = ""  # what could not be read for display ("" when all was read)
    username: str = ""  # the AUTH user it was sent with ("" for none)
    tags: list[str] = field(default_factory=list)  # its tags, as the index keeps them
    # Read when it is indexed (search, tags at arrival), not kept in the summary JSON:
    inline: int = 0  # inline parts (``has:inline``)
    attachment_names: list[str] = field(default_factory=list, repr=False)  # searched as free text
    x_tags: str = field(default="", repr=False)  # its first X-Tags header (tags at arrival)
    tls_probe: str = field(default="", repr=False)  # the TLS probe its client took (tag tls-not-verified)
    # Duplicates (docs/retries.md): the key is read when it is indexed (an indexed column, not in the
    # JSON); ``duplicate_of`` is the original's id, set by the index ("": not a duplicate).
    duplicate_key: bytes = field(default=b"", repr=False, compare=False)
    duplicate_of: str = ""

    def to_json(self) -> dict[str, Any]:
        """Mailpit's message summary, field for field (``From`` is ``{"Name": "", "Address": ""}``
        when there is none, address lists are ``[]`` when empty), plus ``MailFrom``/``RcptTo``
        (the envelope), ``ParseError`` and ``DuplicateOf`` (the original's id, docs/retries.md)."""
        return {
            "ID": self.id,
            "MessageID": self.message_id,
            "Read": self.read,
            "From": (self.sender or NO_ADDRESS).to_json(),
            "To": [a.to_json() for a in self.to],
            "Cc": [a.to_json() for a in self.cc],
            "Bcc": [a.to_json() for a in self.bcc],
            "ReplyTo": [a.to_json() for a in self.reply_to],
            "Subject": self.subject,
            "Created": rfc3339(self.created),
            "Username": self.username,
            "Tags": list(self.tags),
            "Size": self.size,
            "Attachments": self.attachments,
            "Snippet": self.snippet,
            "MailFrom": self.mail_from,
            "RcptTo": list(self.rcpt_to),
            "ParseError": self.parse_error,
            "DuplicateOf": self.duplicate_of,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any], *, read: bool = False) -> Summary:
        """The inverse of :meth:`to_json` (the index keeps summaries as JSON)."""

        def addrs(items: list[dict[str, str]]) -> list[Address]:
            return [Address(a["Name"], a["Address"]) for a in items]

        found = data.get("From")
        sender = Address(found["Name"], found["Address"]) if found else None
        return cls(
            id=data["ID"], message_id=data["MessageID"],
            sender=sender if sender != NO_ADDRESS else None,
            to=addrs(data["To"]), cc=addrs(data["Cc"]), bcc=addrs(data["Bcc"]), reply_to=addrs(data["ReplyTo"]),
            subject=data["Subject"], created=id_time(data["ID"]), size=data["Size"],
            attachments=data["Attachments"], snippet=data["Snippet"],
            mail_from=data.get("MailFrom", ""), rcpt_to=list(data.get("RcptTo", [])), read=read,
            parse_error=data.get("ParseError", ""), username=data.get("Username", ""),
            tags=list(data.get("Tags", [])), duplicate_of=data.get("DuplicateOf", ""),
        )


def rfc3339(when: float) -> str:
    """A Unix time as RFC 3339 in UTC with milliseconds, e.g. ``2024-05-01T12:00:00.123Z``."""
    stamp = datetime.fromtimestamp(when, timezone.utc).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")
