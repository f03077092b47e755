"""Envelope decisions from ``[policy]``: known mailboxes and domains, forwards, moved users,
forbidden names, mailing lists; the storage check behind 452; and the fault rules.

The same data answers RCPT, VRFY and EXPN, so the three never disagree. The protocol calls
these hooks (see :class:`smtp_sink.protocol.Policy`). Pure like the protocol: no sockets, no
files, no clock; whether the store can take mail is a :class:`Capacity` value someone else refreshes.
"""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase

from .config import PolicyConfig, Unknown
from .protocol import Policy
from .replies import Code, Reply, reply
from .rules import Outcome, RuleSet, Stage
from .trace import Envelope


@dataclass
class Capacity:
    """Whether the store can take mail now: ``problem`` says why not (None: it can). A plain value
    that the running server refreshes on its timer; a session only reads it (no system call)."""

    problem: str | None = None


class MailboxPolicy(Policy):
    """The configured policy; ``capacity`` says whether the store can take mail (452 when not)."""

    def __init__(self, config: PolicyConfig, capacity: Capacity | None = None, rules: RuleSet | None = None) -> None:
        self.config = config
        self.rules = rules if rules is not None else RuleSet()
        self.capacity = capacity if capacity is not None else Capacity()
        self.mailboxes = {address.lower() for address in config.mailboxes}
        self.domains = {domain.lower() for domain in config.domains}
        self.forwards = {old.lower(): new for old, new in config.forwards.items()}
        self.moved = {old.lower(): new for old, new in config.moved.items()}
        self.lists = {name.lower(): members for name, members in config.lists.items()}
        self.refused = 0  # recipients refused since start (/api/v1/info's SMTPRejected)

    # -- decisions ------------------------------------------------------------------------

    def _forbidden(self, address: str) -> bool:
        lowered = address.lower()
        return any(fnmatchcase(lowered, pattern.lower()) for pattern in self.config.forbidden)

    def _known(self, address: str) -> bool:
        """Known: listed, or in a listed domain; with neither list configured, everyone is."""
        if not self.mailboxes and not self.domains:
            return True
        lowered = address.lower()
        return lowered in self.mailboxes or lowered.rpartition("@")[2] in self.domains

    def _storage(self) -> Reply | None:
        problem = self.capacity.problem
        if problem is None:
            return None
        return reply(Code.INSUFFICIENT_STORAGE, f"Requested action not taken: insufficient system storage ({problem})")

    def check_sender(self, envelope: Envelope, address: str) -> Reply | None:
        """MAIL: 452 while the store cannot take mail, else accepted."""
        return self._storage()

    def check_recipient(self, envelope: Envelope, address: str) -> Reply | None:
        """RCPT: forbidden 553, forwarded 251, moved 551, unknown as ``[policy] unknown`` says
        (each refusal counted in ``refused``)."""
        answer = self._recipient(address)
        if answer is not None and answer.code >= 400:
            self.refused += 1
        return answer

    def _recipient(self, address: str) -> Reply | None:
        lowered = address.lower()
        if self._forbidden(address):
            return reply(Code.MAILBOX_NAME_NOT_ALLOWED, f"<{address}>: mailbox name not allowed")
        if lowered in self.forwards:
            return reply(Code.WILL_FORWARD, f"User not local; will forward to <{self.forwards[lowered]}>")
        if lowered in self.moved:
            return reply(Code.USER_NOT_LOCAL, f"User not local; please try <{self.moved[lowered]}>")
        if self._known(address) or self.config.unknown is Unknown.ACCEPT:
            return None
        if self.config.unknown is Unknown.REFUSE_553:
            return reply(Code.MAILBOX_NAME_NOT_ALLOWED, f"<{address}>: mailbox name not allowed")
        return reply(Code.MAILBOX_UNAVAILABLE, "No such user here")

    def forwarded(self, address: str) -> list[str]:
        """Extra recipients a forward adds (the message is stored for both)."""
        target = self.forwards.get(address.lower())
        return [target] if target else []

    def check_data(self, envelope: Envelope) -> Reply | None:
        """DATA: 452 while the store cannot take mail, else 354 follows."""
        return self._storage()

    def fault(self, stage: Stage, client: str, sender: str | None, recipients: list[str]) -> Outcome | None:
        """The outcome of the first rule that fires (see :mod:`smtp_sink.rules`)."""
        rule = self.rules.match(stage, client, sender, recipients)
        return None if rule is None else rule.outcome

    def verify(self, address: str) -> Reply:
        """VRFY: the RCPT decision; 250 for a known mailbox, 252 when nothing is configured."""
        decision = self.check_recipient(Envelope(), address)
        if decision is not None:
            return decision
        if not self.mailboxes and not self.domains:
            return super().verify(address)  # 252: anything is accepted, nothing can be verified
        return reply(Code.OK, f"<{address}>")

    def expand(self, name: str) -> Reply:
        """EXPN: a configured list's members (250), 550 for another name, 502 when disabled."""
        if not self.config.expn:
            return reply(Code.NOT_IMPLEMENTED, "EXPN is disabled here")
        members = self.lists.get(name.lower())
        if not members:
            return super().expand(name)
        return reply(Code.OK, *(f"<{member}>" for member in members))
