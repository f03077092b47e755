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

    def to_json(self) -> dict[str, Any]:
        """Mailpit's message summary, field for field, plus ``MailFrom``/``RcptTo`` (the envelope)
        and ``ParseError``."""
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
            "ParseError": self.parse_error,
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
            parse_error=data.get("ParseError", ""),
        )


def rfc3339(when: float) -> str:
    """A Unix time as RFC 3339 in UTC with milliseconds, e.g. ``2024-05-01T12:00:00.123Z``."""
    stamp = datetime.fromtimestamp(when, timezone.utc).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")
