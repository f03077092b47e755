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

_PAIRS = [high + low for high in _ALPHABET for low in _ALPHABET]  # 10 bits -> 2 digits
_lock = threading.Lock()
_last_ms = 0
_last_rand = 0
_last_prefix = ""


def encode(value: int, length: int) -> str:
    """``value`` as ``length`` Crockford base32 digits (the two halves of an id); higher bits are dropped."""
    pairs, even = _PAIRS, length & ~1
    text = "".join([pairs[(value >> shift) & 1023] for shift in range(5 * even - 10, -1, -10)])
    return _ALPHABET[(value >> 5 * even) & 31] + text if length & 1 else text


def new_id() -> str:
    """A fresh id for a message arriving now."""
    global _last_ms, _last_rand, _last_prefix
    with _lock:
        ms = time.time_ns() // 1_000_000
        if ms <= _last_ms:
            rand = _last_rand + 1
            prefix = _last_prefix
        else:
            rand = int.from_bytes(os.urandom(10), "big") >> 1  # room to increment
            _last_ms, prefix = ms, encode(ms, 10)
            _last_prefix = prefix
        _last_rand = rand
    pairs = _PAIRS  # encode(rand, 16), unrolled: this runs once per message
    return (f"{prefix}{pairs[rand >> 70 & 1023]}{pairs[rand >> 60 & 1023]}{pairs[rand >> 50 & 1023]}"
            f"{pairs[rand >> 40 & 1023]}{pairs[rand >> 30 & 1023]}{pairs[rand >> 20 & 1023]}"
            f"{pairs[rand >> 10 & 1023]}{pairs[rand & 1023]}")


def is_id(text: str) -> bool:
    """True for a well-formed message id (nothing else may name a file in the store)."""
    return bool(ID_RE.fullmatch(text))


def id_time(message_id: str) -> float:
    """The arrival time (Unix seconds) encoded in an id."""
    value = 0
    for char in message_id[:10]:
        value = value * 32 + _ALPHABET.index(char)
    return value / 1000.0
