"""Which message a wait is for: one meaning for the pytest plugin's ``wait_for`` and ``smtp-sink wait``.

A :class:`Criteria` is checked against a message :class:`~smtp_sink.summary.Summary` (what the
index holds), so every reader decides alike:

- ``to``: an address, compared whole and ignoring case, with every envelope recipient (Bcc
  included) and every address in the To, Cc and Bcc headers;
- ``sender``: an address, compared whole and ignoring case, with the envelope sender and the
  address in the From header (``""``: the null sender ``<>``, or no From);
- ``subject``: text the subject contains, ignoring case, or a compiled regular expression that
  :meth:`re.Pattern.search` finds in it.

Criteria left out (None) match every message. Searching by word prefix is the search syntax of
:func:`smtp_sink.index.parse_query` (``smtp-sink search``, ``/api/v1/search``), not this.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .summary import Summary

__all__ = ["Criteria", "SubjectMatcher"]

SubjectMatcher = str | re.Pattern[str]


@dataclass(frozen=True)
class Criteria:
    """What a wanted message looks like (see the module doc); None: anything."""

    to: str | None = None
    sender: str | None = None
    subject: SubjectMatcher | None = None

    def matches(self, summary: Summary) -> bool:
        """True when ``summary`` meets every criterion given."""
        if self.to is not None:
            wanted = self.to.lower()
            addresses = [*summary.rcpt_to, *(a.address for a in (*summary.to, *summary.cc, *summary.bcc))]
            if not any(address.lower() == wanted for address in addresses):
                return False
        if self.sender is not None:
            wanted = self.sender.lower()
            senders = [summary.mail_from, summary.sender.address if summary.sender else ""]
            if not any(address.lower() == wanted for address in senders):
                return False
        if isinstance(self.subject, re.Pattern):
            return self.subject.search(summary.subject) is not None
        return self.subject is None or self.subject.casefold() in summary.subject.casefold()

    def describe(self) -> str:
        """The criteria given, as keyword arguments (``to='ann@example.test', subject='Welcome'``)."""
        given = {"to": self.to, "sender": self.sender, "subject": self.subject}
        return ", ".join(f"{key}={value!r}" for key, value in given.items() if value is not None)
