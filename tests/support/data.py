"""Message content for the DATA tests: any bytes, and what a correct client sends for them."""

from __future__ import annotations

from hypothesis import strategies as st

# Bytes rich in the characters that matter: CR, LF, dots.
_interesting = st.sampled_from([b"\r", b"\n", b".", b"\r\n", b"\r\n.", b"..", b"\r\n.\r\n", b"x", b"\x00", b"\xff"])
content_strategy = st.lists(st.one_of(_interesting, st.binary(max_size=8)), max_size=60).map(b"".join)


def stuff(content: bytes) -> bytes:
    """What a correct client sends for ``content`` (RFC 5321 section 4.5.2), terminator included."""
    if not content.endswith(b"\r\n"):
        content += b"\r\n"
    return (b"\r\n" + content).replace(b"\r\n.", b"\r\n..")[2:] + b".\r\n"


def expected(content: bytes) -> bytes:
    """What is stored for ``content``: the same bytes, ending in CRLF."""
    return content if content.endswith(b"\r\n") else content + b"\r\n"
