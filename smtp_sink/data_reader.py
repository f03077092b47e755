"""The message after ``354``: terminator scan, dot-unstuffing and size accounting (RFC 5321
section 4.5.2, RFC 1870), on its own like h11's body readers.

The terminator is only ``CRLF . CRLF`` (a bare LF followed by a dot is content: SMTP-smuggling
safe). It is located with ``bytes.find`` over the new bytes only, plus the last four bytes seen
(it may straddle two reads); dot-stuffing is undone with one ``replace`` at the end, and only when
a line was seen to start with a dot. No per-line loop in Python, no copy of a message that arrived
in one read. A message over the size limit stops being kept at once (the rest is only counted),
and stuffing dots do not count towards the limit (RFC 1870 section 6.3: the size is the message's,
after unstuffing).
"""

from __future__ import annotations

TERMINATOR = b"\r\n.\r\n"


def _dots_in(tail: bytes, chunk: bytes) -> int:
    """Lines of ``chunk`` that start with ".", one starting at the seam with ``tail`` included."""
    seam = tail[-2:] + chunk[:2]
    return chunk.count(b"\r\n.") + (seam[:3] == b"\r\n." or seam[1:4] == b"\r\n.")


class DataReader:
    """One message's data: :meth:`feed` each chunk until it returns where the message ended,
    then :meth:`message`. ``limit`` is ``max_message_size`` (0: none)."""

    __slots__ = ("_counting", "_dots", "_kept", "_limit", "_oversize", "_size", "_stuffed", "_tail", "received")

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self.received = 0  # bytes fed in this DATA phase (the caller checks the client's rate with it)
        self._kept: bytes | bytearray = b""  # the message read so far, in one piece (see _keep)
        self._size = 0  # bytes of the message read so far, stuffing dots included, kept or not
        self._dots = 0  # stuffing dots among them, once counted (see _over_limit)
        self._counting = False  # _dots is kept up to date chunk by chunk
        self._tail = b"\r\n"  # the last 4 bytes seen: the CRLF ending the DATA line at first ("." at once: empty)
        self._oversize = False  # over the limit: nothing more is kept
        self._stuffed = False  # a line starts with "." (undo dot-stuffing at the end)

    def feed(self, data: bytes) -> int:
        """Take the next bytes; the offset in ``data`` just past the terminator, or -1: not yet."""
        self.received += len(data)
        tail = self._tail
        # The terminator may straddle the previous chunk: look at the seam, then at the chunk.
        found = (tail + data[:4]).find(TERMINATOR)
        if found >= 0:
            cut = found - len(tail)  # may be negative: it started in the previous chunk
        else:
            if not self._stuffed and b"\r\n." in tail[-2:] + data[:2]:  # a line starting with "." at the seam
                self._stuffed = True
            cut = self._scan(data)
            if cut < 0:
                self._keep(data)
                return -1
        end = cut + 2  # the message keeps the CRLF before the dot
        if end > 0:
            self._keep(data[:end])
        elif end < 0:
            self._drop_tail(-end)
        return cut + 5

    @property
    def held(self) -> int:
        """Bytes of the message held in memory now (at most about the limit)."""
        return len(self._kept)

    def message(self) -> bytes | bytearray | None:
        """The message (dot-stuffing undone), once :meth:`feed` found its end; None: over the limit."""
        raw = self._kept
        self._kept = b""
        if self._oversize:
            return None
        if self._stuffed:
            # Undo dot-stuffing (RFC 5321 section 4.5.2): a leading period of any line is removed.
            # (feed saw a line start with "."; else there is nothing to scan for.)
            if raw[:1] == b".":
                raw = raw[1:]
            raw = raw.replace(b"\r\n.", b"\r\n")
        if self._limit and len(raw) > self._limit:  # RFC 1870: the size after unstuffing
            return None
        return raw

    def _scan(self, data: bytes) -> int:
        """Where the terminator starts in ``data`` (-1: not in it), noting a stuffed dot before it.

        Both start with CRLF ".": a chunk without a "." (most of a big message) costs one memchr,
        and one search finds the first of either. A "CRLF ." cut off by the chunk's end counts as
        stuffed (it may be a terminator the next seam finds: unstuffing then finds nothing)."""
        dot = data.find(b".")
        if dot < 0:
            return -1
        start = dot - 2 if dot > 2 else 0
        if not self._stuffed:
            hit = data.find(b"\r\n.", start)
            if hit < 0 or data[hit + 3 : hit + 5] == b"\r\n":
                return hit
            self._stuffed = True
            start = hit + 1
        return data.find(TERMINATOR, start)

    def _keep(self, chunk: bytes) -> None:
        """Add message bytes: kept while under the limit, counted always."""
        if self._counting:
            self._dots += _dots_in(self._tail, chunk)
        self._size += len(chunk)
        if not self._oversize:
            kept = self._kept
            if not kept:
                self._kept = chunk  # a message in one chunk (most) is kept as received: no copy
            else:
                # More chunks go into one growing buffer as they come: each received chunk is freed
                # at once and its memory reused, instead of a message's worth of chunks living on
                # until a join copies them (twice the memory, and fresh pages for every big message).
                if isinstance(kept, bytes):
                    kept = self._kept = bytearray(kept)
                kept += chunk
            if self._limit and self._over_limit():
                self._oversize = True
                self._kept = b""
        self._tail = chunk[-4:] if len(chunk) >= 4 else (self._tail + chunk)[-4:]

    def _over_limit(self) -> bool:
        """The message kept so far is surely over the limit (RFC 1870: stuffing dots not counted).

        The last 2 bytes may be ".\\r" of a terminator split across chunks (_drop_tail uncounts
        them): only past limit + 2 is it surely too large. Dots are counted only once the raw
        size passes that, over what was kept and then chunk by chunk: a message well under the
        limit costs no counting.
        """
        limit = self._limit + 2
        if self._size - self._dots <= limit:
            return False
        if self._stuffed and not self._counting:
            kept = self._kept
            self._dots = kept.count(b"\r\n.") + (kept[:1] == b".")
            self._counting = True
        return self._size - self._dots > limit

    def _drop_tail(self, count: int) -> None:
        """Remove bytes already kept (the terminator started inside the previous chunk)."""
        self._size -= count
        if self._counting:  # the terminator's dot was counted as stuffing
            self._dots -= 1
        kept = self._kept
        if isinstance(kept, bytearray):
            del kept[max(len(kept) - count, 0):]
        elif kept:
            self._kept = kept[:max(len(kept) - count, 0)]
