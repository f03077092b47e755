"""Message ids: 26 characters, sortable by arrival time, unique across processes and restarts.

The layout is ULID's (48-bit millisecond time + 80 random bits, Crockford base32). Within one
process ids are strictly increasing, even inside one millisecond (the random part is
incremented), so sorting ids sorts messages by arrival.
"""

from __future__ import annotations

import os
import re
import threading
import time

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
ID_RE = re.compile(r"[0-9A-HJKMNP-TV-Z]{26}")

_lock = threading.Lock()
_last_ms = 0
_last_rand = 0


def encode(value: int, length: int) -> str:
    """``value`` as ``length`` Crockford base32 digits (the two halves of an id)."""
    chars = []
    for _ in range(length):
        value, digit = divmod(value, 32)
        chars.append(_ALPHABET[digit])
    return "".join(reversed(chars))


def new_id() -> str:
    """A fresh id for a message arriving now."""
    global _last_ms, _last_rand
    with _lock:
        ms = time.time_ns() // 1_000_000
        if ms <= _last_ms:
            ms = _last_ms
            rand = _last_rand + 1
        else:
            rand = int.from_bytes(os.urandom(10), "big") >> 1  # room to increment
        _last_ms, _last_rand = ms, rand
    return encode(ms, 10) + encode(rand, 16)


def is_id(text: str) -> bool:
    """True for a well-formed message id (nothing else may name a file in the store)."""
    return bool(ID_RE.fullmatch(text))


def id_time(message_id: str) -> float:
    """The arrival time (Unix seconds) encoded in an id."""
    value = 0
    for char in message_id[:10]:
        value = value * 32 + _ALPHABET.index(char)
    return value / 1000.0
