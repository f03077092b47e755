"""Fault rules: make the server refuse, stall or hang up on purpose, reproducibly.

A rule has a match (stage, optional address globs, optional client address glob), an action
(reply a code, disconnect without reply, delay the reply, throttle the session, or store the
message and then disconnect before its 250: the lost reply that makes a client retry) and a
schedule (always, the nth occurrence, every nth, the first n, or a probability with a seed).
Occurrences are counted per rule across all sessions of a server. Rules come from
``[[rules]]`` in the config, or are added at run time (:class:`RuleSet`).

What a rule does is its :attr:`Rule.outcome`, a typed value the session carries out in one
place: :class:`Refuse` (send a reply; 421 also closes), :class:`Disconnect`, :class:`Delay`,
:class:`Throttle` or :class:`StoreThenDrop` (stage after-data only).

Mailpit's chaos triggers (``GET/PUT /api/v1/chaos``: an error code and a percentage for the
sender, the recipient and authentication) are rules too, marked ``chaos``: :meth:`RuleSet.chaos`
reads them back, :meth:`RuleSet.set_chaos` replaces them and leaves every other rule alone.
"""

from __future__ import annotations

import math
import random
import threading
import unicodedata
from dataclasses import asdict, dataclass, field
from fnmatch import fnmatchcase
from functools import cached_property
from typing import Any, TypeGuard

from .choices import Choice
from .replies import Code, Reply, explain


class Stage(Choice):
    """Where in a session a rule is looked at."""

    CONNECT = "connect"
    HELO = "helo"
    STARTTLS = "starttls"
    AUTH = "auth"
    MAIL = "mail"
    RCPT = "rcpt"
    DATA = "data"
    AFTER_DATA = "after-data"


class Action(Choice):
    """What a rule does when it fires."""

    REPLY = "reply"
    DISCONNECT = "disconnect"
    DELAY = "delay"
    THROTTLE = "throttle"
    STORE_THEN_DROP = "store-then-drop"  # after-data only: stored, then dropped before the 250 (docs/retries.md)


class Schedule(Choice):
    """Which of its matching occurrences a rule fires on."""

    ALWAYS = "always"
    NTH = "nth"
    EVERY = "every"
    FIRST = "first"
    PROBABILITY = "probability"


STAGES, ACTIONS, SCHEDULES = Stage.words(), Action.words(), Schedule.words()  # for --help choices
# Mailpit's chaos triggers: name -> the stage it fires at (Mailpit's MAIL, RCPT and AUTH checks)
CHAOS_STAGES = {"Sender": Stage.MAIL, "Recipient": Stage.RCPT, "Authentication": Stage.AUTH}
CHAOS_CODES = {"Sender": 451, "Recipient": 451, "Authentication": 535}  # Mailpit's default codes
CHAOS_TEXTS = {"Sender": "Chaos sender error", "Recipient": "Chaos recipient error",
               "Authentication": "Chaos authentication error"}  # Mailpit's reply texts
BEFORE_MAIL = (Stage.CONNECT, Stage.HELO, Stage.STARTTLS, Stage.AUTH)  # stages with no sender yet
WITH_RECIPIENTS = (Stage.RCPT, Stage.DATA, Stage.AFTER_DATA)
# Bounds of a rule's values (not defaults): they keep a rule from hanging a session for ever,
# overflowing a timer or writing a reply line longer than RFC 5321 section 4.5.3.1.5 allows.
MAX_SECONDS = 3600.0  # a delay of at most an hour
MAX_RATE = 1 << 30  # bytes per second
MAX_N = 1_000_000_000
MAX_SEED = 2**63 - 1
MAX_TEXT_LINES = 100
MAX_LINE_BYTES = 506  # 512 octets per reply line, minus "550 " and CRLF
MAX_GLOB_LENGTH = 512
MAX_RULES = 1000  # rules held by one server
# Unicode categories a reply line or glob must not hold: control (CR, LF, NUL, DEL, C1...),
# format (bidi overrides...), surrogates, and line/paragraph separators.
_FORBIDDEN = ("Cc", "Cf", "Cs", "Zl", "Zp")


class RuleError(ValueError):
    """A rule that cannot work; the message names the key."""


@dataclass(frozen=True, slots=True)
class Refuse:
    """Outcome: send ``reply`` instead of going on; ``close``: then end the session (421)."""

    reply: Reply
    close: bool = False


@dataclass(frozen=True, slots=True)
class Disconnect:
    """Outcome: end the session at once, without a reply."""


@dataclass(frozen=True, slots=True)
class Delay:
    """Outcome: wait this long before sending what follows, then go on as usual."""

    seconds: float


@dataclass(frozen=True, slots=True)
class Throttle:
    """Outcome: read the rest of this session at most ``rate`` bytes per second, and go on."""

    rate: int


@dataclass(frozen=True, slots=True)
class StoreThenDrop:
    """Outcome (stage after-data): store the message as usual, then end the session before its 250
    is sent, so the client believes it failed and sends it again (docs/retries.md)."""


Outcome = Refuse | Disconnect | Delay | Throttle | StoreThenDrop


@dataclass(frozen=True)
class Rule:
    """One fault rule (the fields are the keys of a ``[[rules]]`` table)."""

    stage: Stage
    action: Action = Action.REPLY
    code: int = 0
    text: str | tuple[str, ...] = ""
    seconds: float = 0.0
    rate: int = 0
    sender: str = ""
    recipient: str = ""
    client: str = ""
    schedule: Schedule = Schedule.ALWAYS
    n: int = 1
    probability: float = 1.0
    seed: int = -1  # -1: a different sequence every run
    chaos: bool = False  # made by PUT /api/v1/chaos (replaced by the next one)

    def __post_init__(self) -> None:
        self._check_choices()
        self._check_numbers()
        self._check_texts()
        self._check_chaos()
        if self.action is Action.REPLY:
            if not 200 <= self.code <= 599:
                raise RuleError(f"code: {self.code} is not an SMTP reply code (200-599)")
            if self.code < 400:
                raise RuleError(f"code: a fault rule replies with a failure (4xx or 5xx), not {self.code}")
        elif self.code:
            raise RuleError(f"code: only action = \"reply\" sends a code (action is {self.action.value!r})")
        if self.action is Action.DELAY and self.seconds <= 0:
            raise RuleError("seconds: a delay rule needs seconds > 0")
        if self.action is Action.STORE_THEN_DROP and self.stage is not Stage.AFTER_DATA:
            raise RuleError(f"stage: action store-then-drop works at stage after-data only (a message must be "
                            f"complete to be stored), got {self.stage}")
        if self.action is Action.THROTTLE and self.rate <= 0:
            raise RuleError("rate: a throttle rule needs rate > 0 (bytes per second)")
        if self.recipient and self.stage not in WITH_RECIPIENTS:
            raise RuleError(f"recipient: a {self.stage} rule has no recipient yet; use stage rcpt, data or after-data")
        if self.sender and self.stage in BEFORE_MAIL:
            raise RuleError(f"sender: a {self.stage} rule has no sender yet; use stage mail or later")

    def _check_choices(self) -> None:
        """``stage``, ``action`` and ``schedule`` become their enum members (from TOML/JSON text)."""
        kind: type[Choice]
        for name, kind in (("stage", Stage), ("action", Action), ("schedule", Schedule)):
            value = getattr(self, name)
            try:
                member = kind(value)
            except (ValueError, TypeError):
                raise RuleError(f"{name}: must be one of {', '.join(kind.words())}, got {_show(value)}") from None
            object.__setattr__(self, name, member)  # frozen: set once, here

    def _check_numbers(self) -> None:
        """Whole numbers and finite numbers, each within its bounds (NaN and infinity refused)."""
        _whole("code", self.code)  # its range depends on the action (below)
        _whole("rate", self.rate, 0, MAX_RATE)
        _whole("seed", self.seed, -1, MAX_SEED)
        _whole("n", self.n, 1, MAX_N, f"n: must be at least 1, got {self.n}" if _is_int(self.n) else None)
        _finite("seconds", self.seconds, 0.0, MAX_SECONDS)
        _finite("probability", self.probability, 0.0, 1.0,
                f"probability: must be between 0 and 1, got {self.probability}")

    def _check_texts(self) -> None:
        """Reply lines and globs: text only, bounded, no CR, LF or other control characters."""
        text = self.text
        if not isinstance(text, (str, tuple, list)) or not all(isinstance(line, str) for line in text):
            raise RuleError(f"text: expected a string or a list of strings, got {_show(text)}")
        lines = self.lines
        if len(lines) > MAX_TEXT_LINES:
            raise RuleError(f"text: at most {MAX_TEXT_LINES} lines, got {len(lines)}")
        for number, line in enumerate(lines, 1):
            where = "text" if isinstance(text, str) else f"text: line {number}"
            _printable(where, line)
            if len(line.encode("utf-8")) > MAX_LINE_BYTES:
                raise RuleError(f"{where}: a reply line holds at most {MAX_LINE_BYTES} bytes (RFC 5321), "
                                f"got {len(line.encode('utf-8'))}")
        for name in ("sender", "recipient", "client"):
            value = getattr(self, name)
            if not isinstance(value, str):
                raise RuleError(f"{name}: expected a string, got {_show(value)}")
            if len(value) > MAX_GLOB_LENGTH:
                raise RuleError(f"{name}: at most {MAX_GLOB_LENGTH} characters, got {len(value)}")
            _printable(name, value)

    def _check_chaos(self) -> None:
        """A chaos rule is what PUT /api/v1/chaos makes: a reply at mail, rcpt or auth, by probability."""
        if not isinstance(self.chaos, bool):
            raise RuleError(f"chaos: expected true or false, got {_show(self.chaos)}")
        if self.chaos and (self.stage not in CHAOS_STAGES.values() or self.action is not Action.REPLY
                           or self.schedule is not Schedule.PROBABILITY):
            raise RuleError("chaos: only a rule that replies at stage mail, rcpt or auth with schedule "
                            "probability can be a chaos trigger")

    @property
    def lines(self) -> tuple[str, ...]:
        """The reply text as lines (a list in TOML gives a multi-line reply)."""
        if isinstance(self.text, str):
            return (self.text,) if self.text else ()
        return tuple(self.text)

    @cached_property
    def outcome(self) -> Outcome:
        """What the rule does when it fires (see the module docstring)."""
        if self.action is Action.DISCONNECT:
            return Disconnect()
        if self.action is Action.DELAY:
            return Delay(self.seconds)
        if self.action is Action.THROTTLE:
            return Throttle(self.rate)
        if self.action is Action.STORE_THEN_DROP:
            return StoreThenDrop()
        answer = Reply(self.code, self.lines or (explain(self.code),))
        return Refuse(answer, close=self.code == Code.SERVICE_UNAVAILABLE)  # 421 closes (RFC 5321 section 3.8)

    def to_json(self) -> dict[str, Any]:
        """The rule as a JSON object (the keys of a ``[[rules]]`` table)."""
        data = asdict(self)
        for name in ("stage", "action", "schedule"):
            data[name] = data[name].value
        data["text"] = list(self.lines) if not isinstance(self.text, str) else self.text
        return data

    @classmethod
    def from_mapping(cls, values: dict[str, Any]) -> Rule:
        """Build from a TOML table or JSON object; unknown keys and bad values raise RuleError
        (types and bounds are checked by the constructor, so a rule built in Python is too)."""
        known = {f for f in cls.__dataclass_fields__}
        for key in values:
            if key not in known:
                raise RuleError(f"unknown key {key} (known: {', '.join(cls.__dataclass_fields__)})")
        if "stage" not in values:
            raise RuleError("stage: required")
        fields = dict(values)
        if isinstance(fields.get("text"), list):
            fields["text"] = tuple(fields["text"])
        for key in ("seconds", "probability"):  # TOML and JSON give 1 for 1.0
            if _is_int(fields.get(key)):
                try:
                    fields[key] = float(fields[key])
                except OverflowError:
                    raise RuleError(f"{key}: expected a finite number, got a number too large") from None
        return cls(**fields)


def _show(value: object) -> str:
    """``repr(value)``, short (a huge number or text is not echoed whole)."""
    try:
        text = repr(value)
    except ValueError:  # an int beyond sys.get_int_max_str_digits()
        return "a number too large"
    return text if len(text) <= 60 else text[:57] + "..."


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _whole(name: str, value: object, low: int | None = None, high: int | None = None,
           below: str | None = None) -> None:
    """``value`` is an int (not a bool) from ``low`` to ``high``; ``below``: the error under ``low``."""
    if not _is_int(value):
        raise RuleError(f"{name}: expected a number, got {_show(value)}")
    if low is None or high is None:
        return
    if value < low and below:
        raise RuleError(below)
    if not low <= value <= high:
        raise RuleError(f"{name}: must be from {low} to {high}, got {_show(value)}")


def _finite(name: str, value: object, low: float, high: float, outside: str | None = None) -> None:
    """``value`` is a finite int or float from ``low`` to ``high`` (NaN and infinity refused)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RuleError(f"{name}: expected a number, got {_show(value)}")
    if not math.isfinite(value):
        raise RuleError(f"{name}: expected a finite number, got {value}")
    if not low <= value <= high:
        raise RuleError(outside or f"{name}: must be from {low:g} to {high:g}, got {_show(value)}")


def _printable(where: str, text: str) -> None:
    """No control, format or line-separator character (a CR or LF would add reply lines)."""
    if text.isascii() and text.isprintable():
        return
    for char in text:
        if char != "\t" and unicodedata.category(char) in _FORBIDDEN:
            raise RuleError(f"{where}: must not contain control characters such as CR or LF, "
                            f"found U+{ord(char):04X}")


CHAOS_STAGES_BY_STAGE = {stage: name for name, stage in CHAOS_STAGES.items()}


@dataclass(frozen=True)
class Trigger:
    """One Mailpit chaos trigger: reply ``code`` ``probability`` percent of the time (0: never)."""

    code: int
    probability: int = 0

    def __post_init__(self) -> None:  # Mailpit's checks and texts, the code first
        if not _is_int(self.code) or not 400 <= self.code <= 599:
            raise RuleError("error code must be between 400 and 599")
        if not _is_int(self.probability) or not 0 <= self.probability <= 100:
            raise RuleError("probability must be between 0 and 100")

    def to_json(self) -> dict[str, int]:
        """Mailpit's ``{"ErrorCode", "Probability"}``."""
        return {"ErrorCode": self.code, "Probability": self.probability}


def chaos_rule(name: str, trigger: Trigger) -> Rule:
    """The fault rule of chaos trigger ``name`` (a key of :data:`CHAOS_STAGES`): Mailpit's reply."""
    return Rule(stage=CHAOS_STAGES[name], code=trigger.code, text=CHAOS_TEXTS[name],
                schedule=Schedule.PROBABILITY, probability=trigger.probability / 100, chaos=True)


@dataclass
class _Counter:
    """A rule with its count of matching occurrences (and its random sequence)."""

    rule: Rule
    seen: int = 0
    rng: random.Random = field(default_factory=random.Random)

    def __post_init__(self) -> None:
        if self.rule.seed >= 0:
            self.rng = random.Random(self.rule.seed)

    def fires(self) -> bool:
        """Count one matching occurrence and say whether the schedule fires on it."""
        self.seen += 1
        rule, seen = self.rule, self.seen
        if rule.schedule is Schedule.NTH:
            return seen == rule.n
        if rule.schedule is Schedule.EVERY:
            return seen % rule.n == 0
        if rule.schedule is Schedule.FIRST:
            return seen <= rule.n
        if rule.schedule is Schedule.PROBABILITY:
            return self.rng.random() < rule.probability
        return True


class RuleSet:
    """The rules of one server, with their counters; safe to change from another thread."""

    def __init__(self, rules: tuple[Rule, ...] | list[Rule] = ()) -> None:
        self._lock = threading.Lock()
        self._counters = [_Counter(rule) for rule in rules]
        self._chaos_codes: dict[str, int] = {}  # codes of chaos triggers set to 0% (they have no rule)

    def add(self, rule: Rule) -> Rule:
        """Add a rule; :class:`RuleError` when the server already holds :data:`MAX_RULES`."""
        with self._lock:
            if len(self._counters) >= MAX_RULES:
                raise RuleError(f"too many rules: a server holds at most {MAX_RULES} (clear some first)")
            self._counters.append(_Counter(rule))
        return rule

    def rules(self) -> list[Rule]:
        """The rules, in the order they are tried."""
        return [counter.rule for counter in self._counters]

    def clear(self) -> None:
        """Remove every rule (and its counter), chaos triggers included."""
        with self._lock:
            self._counters = []
            self._chaos_codes = {}

    def chaos(self) -> dict[str, Trigger]:
        """Mailpit's chaos triggers as the chaos rules make them (see :meth:`set_chaos`)."""
        with self._lock:
            found = {CHAOS_STAGES_BY_STAGE[c.rule.stage]: c.rule for c in self._counters if c.rule.chaos}
            codes = dict(self._chaos_codes)
        triggers = {}
        for name, default in CHAOS_CODES.items():
            rule = found.get(name)
            triggers[name] = (Trigger(rule.code, round(rule.probability * 100)) if rule is not None
                              else Trigger(codes.get(name, default)))
        return triggers

    def set_chaos(self, triggers: dict[str, Trigger]) -> None:
        """Replace the chaos rules with one per trigger above 0% (appended after the other rules);
        a trigger left out is reset to Mailpit's default code at 0%."""
        rules = {name: chaos_rule(name, t) for name, t in triggers.items() if t.probability}
        with self._lock:
            kept = [counter for counter in self._counters if not counter.rule.chaos]
            if len(kept) + len(rules) > MAX_RULES:
                raise RuleError(f"too many rules: a server holds at most {MAX_RULES} (clear some first)")
            self._counters = kept + [_Counter(rule) for rule in rules.values()]
            self._chaos_codes = {name: t.code for name, t in triggers.items() if not t.probability}

    def __len__(self) -> int:
        return len(self._counters)

    def match(self, stage: Stage, client: str, sender: str | None = None,
              recipients: tuple[str, ...] | list[str] = ()) -> Rule | None:
        """The first rule that matches this occurrence and whose schedule fires, or None."""
        if not self._counters:
            return None
        fired = None
        with self._lock:
            for counter in self._counters:
                rule = counter.rule
                if rule.stage != stage:
                    continue
                if rule.client and not fnmatchcase(client, rule.client):
                    continue
                if rule.sender and (sender is None or not fnmatchcase(sender.lower(), rule.sender.lower())):
                    continue
                if rule.recipient and not any(fnmatchcase(r.lower(), rule.recipient.lower()) for r in recipients):
                    continue
                if counter.fires() and fired is None:
                    fired = rule
        return fired
