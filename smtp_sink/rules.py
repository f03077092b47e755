"""Fault rules: make the server refuse, stall or hang up on purpose, reproducibly.

A rule has a match (stage, optional address globs, optional client address glob), an action
(reply a code, disconnect without reply, delay the reply, throttle the session) and a
schedule (always, the nth occurrence, every nth, the first n, or a probability with a seed).
Occurrences are counted per rule across all sessions of a server. Rules come from
``[[rules]]`` in the config, or are added at run time (:class:`RuleSet`).
"""

from __future__ import annotations

import random
import threading
from dataclasses import asdict, dataclass, field
from fnmatch import fnmatchcase
from typing import Any

STAGES = ("connect", "helo", "starttls", "auth", "mail", "rcpt", "data", "after-data")
BEFORE_MAIL = ("connect", "helo", "starttls", "auth")  # stages with no sender yet
ACTIONS = ("reply", "disconnect", "delay", "throttle")
SCHEDULES = ("always", "nth", "every", "first", "probability")


class RuleError(ValueError):
    """A rule that cannot work; the message names the key."""


@dataclass(frozen=True)
class Rule:
    """One fault rule (the fields are the keys of a ``[[rules]]`` table)."""

    stage: str
    action: str = "reply"
    code: int = 0
    text: str | tuple[str, ...] = ""
    seconds: float = 0.0
    rate: int = 0
    sender: str = ""
    recipient: str = ""
    client: str = ""
    schedule: str = "always"
    n: int = 1
    probability: float = 1.0
    seed: int = -1  # -1: a different sequence every run

    def __post_init__(self) -> None:
        if self.stage not in STAGES:
            raise RuleError(f"stage: must be one of {', '.join(STAGES)}, got {self.stage!r}")
        if self.action not in ACTIONS:
            raise RuleError(f"action: must be one of {', '.join(ACTIONS)}, got {self.action!r}")
        if self.schedule not in SCHEDULES:
            raise RuleError(f"schedule: must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        if self.action == "reply":
            if not 200 <= self.code <= 599:
                raise RuleError(f"code: {self.code} is not an SMTP reply code (200-599)")
            if self.code < 400:
                raise RuleError(f"code: a fault rule replies with a failure (4xx or 5xx), not {self.code}")
        elif self.code:
            raise RuleError(f"code: only action = \"reply\" sends a code (action is {self.action!r})")
        if self.action == "delay" and self.seconds <= 0:
            raise RuleError("seconds: a delay rule needs seconds > 0")
        if self.action == "throttle" and self.rate <= 0:
            raise RuleError("rate: a throttle rule needs rate > 0 (bytes per second)")
        if self.n < 1:
            raise RuleError(f"n: must be at least 1, got {self.n}")
        if not 0.0 <= self.probability <= 1.0:
            raise RuleError(f"probability: must be between 0 and 1, got {self.probability}")
        if self.recipient and self.stage not in ("rcpt", "data", "after-data"):
            raise RuleError(f"recipient: a {self.stage} rule has no recipient yet; use stage rcpt, data or after-data")
        if self.sender and self.stage in BEFORE_MAIL:
            raise RuleError(f"sender: a {self.stage} rule has no sender yet; use stage mail or later")

    @property
    def lines(self) -> tuple[str, ...]:
        """The reply text as lines (a list in TOML gives a multi-line reply)."""
        if isinstance(self.text, str):
            return (self.text,) if self.text else ()
        return tuple(self.text)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["text"] = list(self.lines) if not isinstance(self.text, str) else self.text
        return data

    @classmethod
    def from_mapping(cls, values: dict[str, Any]) -> Rule:
        """Build from a TOML table or JSON object; unknown keys and bad values raise RuleError."""
        known = {f for f in cls.__dataclass_fields__}
        for key in values:
            if key not in known:
                raise RuleError(f"unknown key {key} (known: {', '.join(cls.__dataclass_fields__)})")
        if "stage" not in values:
            raise RuleError("stage: required")
        kinds = {"code": int, "rate": int, "n": int, "seed": int, "seconds": (int, float), "probability": (int, float)}
        for key, kind in kinds.items():
            if key in values and (isinstance(values[key], bool) or not isinstance(values[key], kind)):
                raise RuleError(f"{key}: expected a number, got {values[key]!r}")
        for key in ("stage", "action", "sender", "recipient", "client", "schedule"):
            if key in values and not isinstance(values[key], str):
                raise RuleError(f"{key}: expected a string, got {values[key]!r}")
        text = values.get("text", "")
        if isinstance(text, list):
            if not all(isinstance(line, str) for line in text):
                raise RuleError(f"text: expected a string or a list of strings, got {text!r}")
            text = tuple(text)
        elif not isinstance(text, str):
            raise RuleError(f"text: expected a string or a list of strings, got {text!r}")
        fields = dict(values, text=text)
        if "seconds" in fields:
            fields["seconds"] = float(fields["seconds"])
        if "probability" in fields:
            fields["probability"] = float(fields["probability"])
        return cls(**fields)


@dataclass
class _Counter:
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
        if rule.schedule == "nth":
            return seen == rule.n
        if rule.schedule == "every":
            return seen % rule.n == 0
        if rule.schedule == "first":
            return seen <= rule.n
        if rule.schedule == "probability":
            return self.rng.random() < rule.probability
        return True


class RuleSet:
    """The rules of one server, with their counters; safe to change from another thread."""

    def __init__(self, rules: tuple[Rule, ...] | list[Rule] = ()) -> None:
        self._lock = threading.Lock()
        self._counters = [_Counter(rule) for rule in rules]

    def add(self, rule: Rule) -> Rule:
        with self._lock:
            self._counters.append(_Counter(rule))
        return rule

    def list(self) -> list[Rule]:
        return [counter.rule for counter in self._counters]

    def clear(self) -> None:
        with self._lock:
            self._counters = []

    def __len__(self) -> int:
        return len(self._counters)

    def match(self, stage: str, client: str, sender: str | None = None,
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
