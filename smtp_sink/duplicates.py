"""Duplicate messages: the same mail sent twice, as a client does when it retries after a lost reply.

Two stored messages are the same mail when they have the same ``Message-ID`` (angle brackets and
surrounding white space removed, the rest compared exactly), or, for a message without one, the
same bytes as the client sent them (everything after the server's trace block, see
:attr:`smtp_sink.trace.Trace.length`). :func:`duplicate_key` makes that comparison a fixed-size
key (16 bytes of BLAKE2b, the two kinds in separate name spaces), which the index keeps in an
indexed column. Of the messages sharing a key, the oldest in the store is the original and every
later one is a duplicate of it; when the original is deleted, the oldest remaining copy becomes
the original (docs/retries.md).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from typing import TypeVar

from . import trace

__all__ = ["KEY_BYTES", "duplicate_key", "groups"]

KEY_BYTES = 16
T = TypeVar("T")


def duplicate_key(raw: bytes | bytearray, message_id: str) -> bytes:
    """The key that equal mails share: from ``message_id`` (the Message-ID header as
    :mod:`smtp_sink.message` reads it: white space and angle brackets removed) or, when that is
    empty, the client's bytes."""
    if message_id:
        return hashlib.blake2b(b"message-id\0" + message_id.encode("utf-8", "surrogatepass"),
                               digest_size=KEY_BYTES).digest()
    body = memoryview(raw)[trace.read(raw).length:]  # after the server's trace block: what the client sent
    digest = hashlib.blake2b(b"data\0", digest_size=KEY_BYTES)
    digest.update(body)
    return digest.digest()


def groups(items: Iterable[T], key: Callable[[T], bytes]) -> list[list[T]]:
    """The groups of ``items`` (oldest first) that share a key and have more than one member, each
    oldest first: the original, then its duplicates. Groups are in the order of their originals."""
    found: dict[bytes, list[T]] = {}
    for item in items:
        found.setdefault(key(item), []).append(item)
    return [group for group in found.values() if len(group) > 1]
