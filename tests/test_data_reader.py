"""The DATA reader on its own (smtp_sink.data_reader.DataReader): where a message ends, what it
holds, and its size as RFC 1870 counts it, for any bytes cut anywhere."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from support.data import content_strategy, expected, stuff

from smtp_sink.data_reader import DataReader


def read(wire: bytes, cuts: list[int], limit: int = 0) -> tuple[bytes | bytearray | None, bytes, DataReader]:
    """Feed ``wire`` cut at ``cuts``: (the message, the bytes after its terminator, the reader)."""
    reader = DataReader(limit)
    points = sorted({c % (len(wire) + 1) for c in cuts})
    start = 0
    for point in [*points, len(wire)]:
        chunk = wire[start:point]
        start = point
        end = reader.feed(chunk)
        if end >= 0:
            return reader.message(), chunk[end:] + wire[point:], reader
    raise AssertionError("no terminator found")


@settings(max_examples=1500, deadline=None)
@given(content=content_strategy, after=st.binary(max_size=20),
       cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=8))
def test_the_message_and_what_follows_it_for_any_chunking(content: bytes, after: bytes, cuts: list[int]) -> None:
    message, rest, reader = read(stuff(content) + after, cuts)
    assert message == expected(content)
    assert rest == after  # the next commands, untouched
    assert reader.received >= len(stuff(content))


@settings(max_examples=300, deadline=None)
@given(content=content_strategy, cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=8))
def test_stuffing_dots_do_not_count_towards_the_limit(content: bytes, cuts: list[int]) -> None:
    """RFC 1870 section 6.3: the size is the message's, after unstuffing. A message of exactly the
    limit is kept however many of its lines start with a dot; one byte less of limit refuses it."""
    size = len(expected(content))
    assert read(stuff(content), cuts, limit=size)[0] == expected(content)
    if size > 0:
        assert read(stuff(content), cuts, limit=size - 1)[0] is None


def test_a_dot_after_a_bare_lf_is_content() -> None:
    """Only CRLF . CRLF ends the message (SMTP smuggling)."""
    message, rest, _ = read(b"a\n.\r\nb\r\n.\r\nQUIT\r\n", [])
    assert message == b"a\n.\r\nb\r\n" and rest == b"QUIT\r\n"


def test_an_empty_message_ends_at_once() -> None:
    assert read(b".\r\n", [])[:2] == (b"", b"")


def test_an_oversize_stream_holds_nothing_and_still_finds_its_end() -> None:
    reader = DataReader(1000)
    for _ in range(1000):
        assert reader.feed(b"..stuffed line\r\n" * 64) == -1
        assert reader.held <= 1000 + 1024
    assert reader.held == 0
    assert reader.feed(b".\r\nNOOP\r\n") == 3
    assert reader.message() is None


def test_a_message_in_one_chunk_stays_bytes() -> None:
    """Not copied into a growing buffer: that is only for messages that arrive in several reads."""
    chunk = b"Subject: x\r\n\r\nbody\r\n.\r\n"
    reader = DataReader(0)
    assert reader.feed(chunk) == len(chunk)
    message = reader.message()
    assert message == chunk[:-3] and isinstance(message, bytes)
