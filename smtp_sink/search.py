"""Mailpit's search syntax, parsed into :class:`Term` values the index runs (``index.py``).

The rules are Mailpit's (``internal/storage/search.go``, ``tools.ArgsParser``):

- The query is split on ASCII spaces outside double quotes; the quotes are then dropped, so
  ``subject:"Order 7"`` is the one token ``subject:Order 7``. All tokens must match (AND).
- A token starting with ``-`` or ``!`` (and longer than that one character) is negated.
- ``to:``, ``from:``, ``cc:``, ``bcc:``, ``reply-to:``, ``addressed:`` (any of those five),
  ``subject:``, ``message-id:`` and ``tag:`` limit a value to one field; ``is:read``,
  ``is:unread``, ``is:tagged``, ``has:attachment(s)``, ``has:inline(s)`` test flags, and so does
  ``is:duplicate``, smtp-sink's own (a later copy of an older message, docs/retries.md);
  ``before:``/``after:`` a date (inclusive; in ``tz`` when it names no zone of its own);
  ``larger:``/``smaller:`` a size (``10k``, ``1.5MB``). Anything else is free text.
- Every value matches as a case-insensitive substring (``elcome`` finds ``Welcome``). Values,
  like the text they are matched against, are "cleaned": line breaks, tabs and ``<>",;()``
  become spaces, runs of white space one space, all lower case. ``subject:`` keeps its value's
  punctuation (only the case is ignored).

Where Mailpit differs by accident, this follows what it means to do: ``%`` and ``_`` are plain
characters (no SQL wildcards), and ``to:name`` matches names and addresses, never JSON keys.
An unparseable date adds no condition (as in Mailpit); an invalid size makes the token free text.

Work is bounded: a query longer than :data:`MAX_QUERY_LENGTH` characters, with more than
:data:`MAX_TERMS` terms, or with more than :data:`MAX_SCANS` values shorter than :data:`TRIGRAM`
characters (each of those is a scan of every message: the trigram index cannot find them) is
refused with :class:`SearchError`.
"""

from __future__ import annotations

import email.utils
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo

__all__ = [
    "ADDRESS_COLUMNS", "MAX_QUERY_LENGTH", "MAX_SCANS", "MAX_TERMS", "TRIGRAM", "SearchError", "Term", "clean",
    "parse", "parse_date", "size_to_bytes", "tokens", "zone",
]

MAX_QUERY_LENGTH = 10_000  # characters of one search query
MAX_TERMS = 100  # terms of one search query (each is a condition in one SQL statement)
TRIGRAM = 3  # a text value this long or longer is found through the trigram index; a shorter one by a scan
MAX_SCANS = 5  # text values shorter than TRIGRAM in one query

# The columns of the search table (index.py) each filter looks in.
ADDRESS_COLUMNS = ("from_", "to_", "cc", "bcc", "reply_to")
FIELDS = {
    "to:": ("to_",), "from:": ("from_",), "cc:": ("cc",), "bcc:": ("bcc",), "reply-to:": ("reply_to",),
    "addressed:": ADDRESS_COLUMNS, "subject:": ("subject",), "message-id:": ("message_id",),
}
TEXT = ("text",)  # free text: Mailpit's SearchText

_UNWANTED_RE = re.compile(r'\r?\n|\t|>|<|"|,|;|\(|\)')
_SIZE_RE = re.compile(r"([0-9]+)(\.[0-9]+)?\s?([a-z]{1,2})?")
_SIZE_UNITS = {"": 1, "k": 1024, "kb": 1024, "m": 1024 * 1024, "mb": 1024 * 1024}
MAX_SIZE = 2**63 - 1  # what SQLite compares


class SearchError(ValueError):
    """A query too big to run (see :data:`MAX_QUERY_LENGTH` and :data:`MAX_TERMS`)."""


@dataclass(frozen=True)
class Term:
    """One condition of a query.

    ``kind``: ``text`` (``value`` is a substring of one of ``columns``), ``tag`` (the message
    has the tag ``value``, any case), ``tagged`` (it has a tag), ``duplicate`` (an older message
    has the same Message-ID or data), ``read`` (its read flag is
    ``value``), ``attachments``/``inline`` (it has some), ``created`` (its arrival time in ms
    compares ``op`` with ``value``), ``size`` (its size in bytes compares ``op`` with ``value``).
    ``exclude``: the condition must not hold (``read``, ``created`` and ``size`` are already
    turned around: their ``exclude`` is always False)."""

    kind: str
    value: str | int | bool = ""
    columns: tuple[str, ...] = ()
    op: str = ""
    exclude: bool = False


def tokens(query: str) -> list[str]:
    """Mailpit's ``ArgsParser``: split on ASCII spaces outside double quotes, drop the quotes."""
    found: list[str] = []
    current: list[str] = []
    quoted = False
    for char in query:
        if char == '"':
            quoted = not quoted
        elif char == " " and not quoted:
            found.append("".join(current))
            current = []
            continue
        current.append(char)
    found.append("".join(current))
    return [token for token in (t.replace('"', "").strip() for t in found) if token]


def clean(text: str) -> str:
    """Mailpit's ``cleanString``: line breaks, tabs and ``<>",;()`` as spaces, white space
    collapsed, lower case. Searched text and search values are both cleaned."""
    return " ".join(_UNWANTED_RE.sub(" ", text.replace("\ufeff", " ")).split()).lower()


def size_to_bytes(text: str) -> int:
    """Mailpit's ``sizeToBytes``: ``123``, ``1.5k``/``kb``, ``2m``/``mb`` (one space allowed) in
    bytes; 0 for anything else (``1g``, ``1.2.3``)."""
    match = _SIZE_RE.fullmatch(text.lower())
    if match is None:
        return 0
    multiplier = _SIZE_UNITS.get(match.group(3) or "")
    if multiplier is None:
        return 0
    return min(MAX_SIZE, int(float(match.group(1) + (match.group(2) or "")) * multiplier))


def zone(name: str | None) -> tzinfo | None:
    """The IANA time zone ``name`` (``Pacific/Auckland``); None (the local zone) when blank or unknown."""
    if not name or len(name) > 100:
        return None
    try:
        return ZoneInfo(name)
    except Exception:  # unknown, malformed or a path: Mailpit ignores it too
        return None


def parse(query: str, tz: str | None = None) -> list[Term]:
    """The terms of a query (see the module doc); ``tz`` is the zone of dates that name none.
    Raises :class:`SearchError` for a query too big to run."""
    if len(query) > MAX_QUERY_LENGTH:
        raise SearchError(f"search query too long: {len(query)} characters (at most {MAX_QUERY_LENGTH})")
    where = zone(tz)
    terms = []
    scans = 0
    for token in tokens(query):
        if not clean(token):
            continue
        term = _term(token, where)
        if term is None or term in terms:  # a repeat adds nothing
            continue
        terms.append(term)
        if len(terms) > MAX_TERMS:
            raise SearchError(f"search query has more than {MAX_TERMS} terms")
        scans += term.kind == "text" and len(str(term.value)) < TRIGRAM
        if scans > MAX_SCANS:
            raise SearchError(f"search query has more than {MAX_SCANS} values shorter than {TRIGRAM} characters")
    return terms


def _term(token: str, where: tzinfo | None) -> Term | None:
    """One token's condition (None: it adds none, e.g. an empty ``to:`` or a bad date)."""
    exclude = len(token) > 1 and token[0] in "-!"
    if exclude:
        token = token[1:]
    lower = token.lower()
    for prefix, columns in FIELDS.items():
        if lower.startswith(prefix):
            raw = token[len(prefix):]
            value = raw.lower() if prefix == "subject:" else clean(raw)
            return Term("text", value, columns, exclude=exclude) if value else None
    if lower.startswith("tag:"):
        value = clean(token[4:])
        return Term("tag", value, exclude=exclude) if value else None
    if lower in ("is:read", "is:unread"):
        return Term("read", (lower == "is:read") != exclude)
    flags = {"is:tagged": "tagged", "is:duplicate": "duplicate", "has:inline": "inline", "has:inlines": "inline",
             "has:attachment": "attachments", "has:attachments": "attachments"}
    if lower in flags:
        return Term(flags[lower], exclude=exclude)
    for prefix in ("after:", "before:"):
        if lower.startswith(prefix):
            return _date_term(prefix == "after:", token[len(prefix):], exclude, where)
    for prefix, bigger in (("larger:", True), ("smaller:", False)):
        if lower.startswith(prefix) and size_to_bytes(clean(token[len(prefix):])) > 0:
            size = size_to_bytes(clean(token[len(prefix):]))
            return Term("size", size, op=">" if bigger != exclude else "<")
    return Term("text", clean(token), TEXT, exclude=exclude)


def _date_term(after: bool, text: str, exclude: bool, where: tzinfo | None) -> Term | None:
    """``after:`` (from the date on) or ``before:`` (up to it), both inclusive; negated, the other side."""
    value = clean(text).upper()
    when = parse_date(value, where) if value else None
    if when is None:
        return None
    millis = int(when.timestamp() * 1000)
    return Term("created", millis, op=">=" if after != exclude else "<=")


# -- dates ---------------------------------------------------------------------------------------
# The layouts Mailpit's date parser (github.com/araddon/dateparse) is used with: ISO dates and
# times, slashed and dotted dates (month first when the year is last, as in the US), month names,
# RFC 2822 dates and Unix timestamps. A time can follow a date, with seconds, a fraction, AM/PM
# and a zone (Z, +hh:mm, +hhmm, UTC).

_MONTHS = {name: number for number, names in enumerate(
    [("JAN", "JANUARY"), ("FEB", "FEBRUARY"), ("MAR", "MARCH"), ("APR", "APRIL"), ("MAY",), ("JUN", "JUNE"),
     ("JUL", "JULY"), ("AUG", "AUGUST"), ("SEP", "SEPT", "SEPTEMBER"), ("OCT", "OCTOBER"), ("NOV", "NOVEMBER"),
     ("DEC", "DECEMBER")], 1) for name in names}
_MONTH = "(" + "|".join(sorted(_MONTHS, key=len, reverse=True)) + r")\.?"
_TIME = (r"(?:[T ]+(?P<hour>[0-9]{1,2})"
         r"(?::(?P<minute>[0-9]{2})(?::(?P<second>[0-9]{2})(?:[.,](?P<fraction>[0-9]{1,9}))?)?)?"
         r" ?(?P<ampm>AM|PM)?)?"
         r" ?(?P<zone>Z|UTC|GMT|[+-][0-9]{2}:?[0-9]{2})?")
_DATES = [re.compile(pattern + _TIME, re.ASCII) for pattern in (
    r"(?P<year>[0-9]{4})[-/.](?P<month>[0-9]{1,2})[-/.](?P<day>[0-9]{1,2})",  # 2006-01-02, 2006/01/02, 2006.01.02
    r"(?P<month>[0-9]{1,2})/(?P<day>[0-9]{1,2})/(?P<year>[0-9]{4}|[0-9]{2})",  # 01/02/2006 (US: month first)
    r"(?P<day>[0-9]{1,2})[-. ](?P<mname>" + _MONTH + r")[-. ](?P<year>[0-9]{4})",  # 02 JAN 2006, 2-JAN-2006
    r"(?P<mname>" + _MONTH + r") (?P<day>[0-9]{1,2})(?:ST|ND|RD|TH)?,? (?P<year>[0-9]{4})",  # JAN 2, 2006
    r"(?P<year>[0-9]{4})(?P<month>[0-9]{2})(?P<day>[0-9]{2})",  # 20060102
)]
_TIMESTAMP_DIGITS = {10: 1, 13: 1_000, 16: 1_000_000, 19: 1_000_000_000}  # Unix s, ms, us, ns


def parse_date(text: str, where: tzinfo | None = None) -> datetime | None:
    """A date (and time) in one of the layouts above, aware; ``where`` (None: local time) is its
    zone when it names none. None when it is not a date."""
    text = " ".join(text.strip().upper().split())
    try:
        if text.isascii() and text.isdigit() and len(text) in _TIMESTAMP_DIGITS:
            return datetime.fromtimestamp(int(text) / _TIMESTAMP_DIGITS[len(text)], timezone.utc)
        for pattern in _DATES:
            match = pattern.fullmatch(text)
            if match is not None:
                return _from_match(match, where)
        found = email.utils.parsedate_to_datetime(text)  # RFC 2822: "MON, 02 JAN 2006 15:04:05 -0700"
        return found if found.tzinfo is not None else _localize(found, where)
    except Exception:  # not a date, or out of range (year 1 in local time...)
        return None


def _from_match(match: re.Match[str], where: tzinfo | None) -> datetime | None:
    parts = match.groupdict()
    year = int(parts["year"])
    year += 2000 if len(parts["year"]) == 2 else 0
    month = _MONTHS[parts["mname"].rstrip(".")] if parts.get("mname") else int(parts["month"])
    hour = int(parts["hour"] or 0)
    if parts["ampm"]:
        if not 1 <= hour <= 12:
            return None
        hour = hour % 12 + (12 if parts["ampm"] == "PM" else 0)
    fraction = (parts["fraction"] or "0")[:6].ljust(6, "0")
    try:
        naive = datetime(year, month, int(parts["day"]), hour, int(parts["minute"] or 0), int(parts["second"] or 0),
                         int(fraction))
    except ValueError:  # 2024-02-30, 25:00
        return None
    offset = parts["zone"]
    if offset is None:
        return _localize(naive, where)
    if offset in ("Z", "UTC", "GMT"):
        return naive.replace(tzinfo=timezone.utc)
    digits = offset[1:].replace(":", "")
    minutes = int(digits[:2]) * 60 + int(digits[2:])
    if minutes >= 24 * 60:
        return None
    return naive.replace(tzinfo=timezone(timedelta(minutes=minutes if offset[0] == "+" else -minutes)))


def _localize(naive: datetime, where: tzinfo | None) -> datetime:
    """A time without a zone, in ``where`` (None: this machine's local time)."""
    if where is None:
        return naive.astimezone()  # naive means local: astimezone() applies the local zone and its DST
    return naive.replace(tzinfo=where)
