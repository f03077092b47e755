"""``GET /api/v1/message/{id}/sa-check``: a spamd's verdict on a message, as Mailpit's
``internal/spamassassin`` gives it (``{"IsSpam", "Error", "Score", "Rules": [{"Score", "Name",
"Description"}]}``).

The SPAMC/1.5 protocol: ``REPORT``, the message, a half-close, and spamd's report read to the end
(at most :data:`MAX_REPLY` bytes, within :data:`TIMEOUT` seconds for the whole exchange). A spamd that
cannot be reached or answers badly is still a 200, with ``Error`` saying why (Mailpit's way).
``[checks] spamassassin`` names the spamd: ``host:port`` or ``unix:/path/to/socket``.
"""

from __future__ import annotations

import asyncio
import math
import re
from decimal import Decimal, InvalidOperation
from typing import Any

TIMEOUT = 8.0  # seconds for one exchange with spamd (Mailpit's)
MAX_REPLY = 1 << 20  # bytes of spamd's reply read
SPAM_SCORE = 5.0  # a message scoring at least this is spam (Mailpit's threshold; spamd's own is ignored)
_FOLD = "\n" + " " * 28  # spamd continues a long description on the next line, indented
_SPAM_RE = re.compile(r"^Spam: (.+) ; (.+) . (.+)$")
_RULE_RE = re.compile(r"^\s?(-?[0-9.]+)\s([a-zA-Z0-9_]*)(\W*)(.*)")


class SpamdError(OSError):
    """spamd could not be asked, or its answer could not be read."""


async def report(address: str, raw: bytes) -> dict[str, Any]:
    """Mailpit's ``SpamAssassinResponse`` for ``raw`` from the spamd at ``address``."""
    try:
        reply = await asyncio.wait_for(_exchange(address, raw), TIMEOUT)
    except (OSError, asyncio.TimeoutError, ValueError) as exc:
        return {"IsSpam": False, "Error": _describe(exc, address), "Score": 0, "Rules": None}
    score, rules = parse(reply.decode("utf-8", "replace"))
    return {"IsSpam": score >= SPAM_SCORE, "Error": "", "Score": floor_tenth(score), "Rules": rules}


async def _exchange(address: str, raw: bytes) -> bytes:
    reader, writer = await _connect(address)
    try:
        writer.write(b"REPORT SPAMC/1.5\r\nContent-length: %d\r\n\r\n" % len(raw))
        writer.write(raw)
        await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
        reply = await reader.read(MAX_REPLY + 1)
        while len(reply) <= MAX_REPLY and (more := await reader.read(MAX_REPLY + 1 - len(reply))):
            reply += more
        if len(reply) > MAX_REPLY:
            raise SpamdError(f"spamd's reply is longer than {MAX_REPLY} bytes")
        if not reply.startswith(b"SPAMD/"):
            raise SpamdError(f"not a spamd reply: {reply[:60]!r}")
        return reply
    finally:
        writer.close()


async def _connect(address: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    if address.startswith("unix:"):
        return await asyncio.open_unix_connection(address[5:])
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f'[checks] spamassassin must be "host:port" or "unix:/path", got {address!r}')
    return await asyncio.open_connection(host.strip("[]"), int(port))


def _describe(exc: BaseException, address: str) -> str:
    if isinstance(exc, asyncio.TimeoutError):
        return f"spamd at {address} did not answer within {TIMEOUT:g} s"
    if isinstance(exc, ConnectionRefusedError):
        return f"dial {address}: connection refused"
    text = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return f"spamd at {address}: {text}"


def parse(reply: str) -> tuple[float, list[dict[str, Any]]]:
    """``(score, rules)`` from spamd's report, read as Mailpit's spamc client reads it."""
    lines = "\n".join(line.rstrip(" \t\r\n") for line in reply.split("\n")).replace(_FOLD, " ").split("\n")
    score, in_rules, rules = 0.0, False, []
    for line in lines:
        spam = _SPAM_RE.match(line)
        if spam:
            score = _number(spam.group(2))
            continue
        if line.startswith("Content analysis details"):
            in_rules = True
            continue
        rule = _RULE_RE.match(line) if in_rules else None
        if rule:
            rules.append({"Score": floor_tenth(_number(rule.group(1))), "Name": rule.group(2),
                          "Description": rule.group(4)})
    return score, rules


def _number(text: str) -> float:
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        return 0.0
    return float(value) if value.is_finite() else 0.0


def floor_tenth(value: float) -> float:
    """Down to a tenth, as Mailpit rounds (``-0.15`` is ``-0.2``), on the decimal value spamd wrote."""
    return math.floor(Decimal(repr(value)) * 10) / 10
