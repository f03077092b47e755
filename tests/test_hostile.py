"""Hostile SMTP input over real sockets: the server answers correctly, stores exactly, and keeps serving."""

from __future__ import annotations

import fcntl
import os
import select
import smtplib
import socket
import struct
import termios
import threading
import time
from pathlib import Path

import pytest
from support.servers import Servers
from support.wire import Wire, connect

from smtp_sink.protocol import AUTH_LINE_MAX
from smtp_sink.server import SinkServer


def stored(server: SinkServer) -> list[bytes]:
    """The bytes of every stored message after the server's trace block, oldest first."""
    from smtp_sink import trace  # here: the rest of this file is another change's

    bodies = []
    for message_id in server.store.ids():
        raw = server.store.read(message_id)
        found = trace.read(raw)  # the block ends with the server's own Received line
        assert found.own and found.length > 0, raw[:500]
        bodies.append(raw[found.length :])
    return bodies


def still_serving(server: SinkServer) -> None:
    """A fresh session completes a transaction: the server survived."""
    before = len(server.store.ids())
    with smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=10) as smtp:
        smtp.sendmail("ok@example.test", ["ok@example.test"], b"Subject: alive\r\n\r\nstill here\r\n")
    assert len(server.store.ids()) == before + 1


def open_transaction(port: int) -> Wire:
    wire = connect(port)
    assert wire.cmd("EHLO hostile.test")[0] == 250
    assert wire.cmd("MAIL FROM:<a@example.test>")[0] == 250
    assert wire.cmd("RCPT TO:<b@example.test>")[0] == 250
    return wire


def test_nul_bytes_in_commands_and_data(server: SinkServer) -> None:
    with connect(server.smtp_port) as wire:
        assert wire.cmd("HELO a\x00b")[0] == 501
        assert wire.cmd("MA\x00IL FROM:<a@example.test>")[0] == 500
        assert wire.cmd("EHLO ok")[0] == 250
        assert wire.cmd("MAIL FROM:<a\x00@example.test>")[0] == 501
        assert wire.cmd("MAIL FROM:<a@example.test>")[0] == 250
        assert wire.cmd("RCPT TO:<b@example.test>")[0] == 250
        assert wire.cmd("DATA")[0] == 354
        body = b"Subject: nul\r\n\r\nbefore\x00after\r\n\x00\r\n"
        wire.send(body + b".\r\n")
        assert wire.code() == 250
    assert stored(server) == [body]
    still_serving(server)


def test_non_utf8_bytes(server: SinkServer) -> None:
    with connect(server.smtp_port) as wire:
        wire.send(b"EHLO \xff\xfe\r\n")
        assert wire.code() == 500
        wire.send(b"\xc3\x28\xa0\xa1\r\n")
        assert wire.code() == 500
        assert wire.cmd("EHLO ok")[0] == 250
        wire.send(b"MAIL FROM:<\xff@example.test>\r\n")
        assert wire.code() == 500
        assert wire.cmd("MAIL FROM:<a@example.test>")[0] == 250
        assert wire.cmd("RCPT TO:<b@example.test>")[0] == 250
        assert wire.cmd("DATA")[0] == 354
        body = b"Subject: latin-1\r\n\r\ncaf\xe9 \xff\xfe\x80\r\n"
        wire.send(body + b".\r\n")
        assert wire.code() == 250
    assert stored(server) == [body]
    still_serving(server)


def test_one_mib_command_line(server: SinkServer) -> None:
    with connect(server.smtp_port) as wire:
        wire.send(b"NOOP " + b"x" * (1 << 20) + b"\r\n")
        code, lines = wire.reply()
        assert code == 500 and "too long" in lines[0].lower()
        assert wire.cmd("NOOP")[0] == 250
        wire.send(b"MAIL FROM:<" + b"a" * (1 << 20) + b"@example.test>\r\n")
        assert wire.code() == 500
        assert wire.cmd("EHLO ok")[0] == 250
    still_serving(server)


def test_one_mib_line_in_data(server: SinkServer) -> None:
    body = b"Subject: long line\r\n\r\n" + os.urandom(1 << 19).hex().encode() + b"\r\n"
    assert len(body) > 1 << 20
    with open_transaction(server.smtp_port) as wire:
        assert wire.cmd("DATA")[0] == 354
        wire.send(body + b".\r\n")
        assert wire.code() == 250
    assert stored(server) == [body]


def test_endless_command_without_newline_is_bounded(server: SinkServer) -> None:
    """Megabytes of commands with no newline: dropped, answered once at the LF."""
    with connect(server.smtp_port) as wire:
        chunk = b"NOOP " * 20000
        for _ in range(100):  # 10 MB
            wire.send(chunk)
        conn = next(iter(server.connections))
        assert len(conn.session._buf) <= AUTH_LINE_MAX  # never buffered past the longest line (AUTH)
        wire.send(b"\r\n")
        assert wire.code() == 500
        assert wire.cmd("NOOP")[0] == 250
    still_serving(server)


def test_commands_byte_by_byte(server: SinkServer) -> None:
    script = (
        b"EHLO slow.test\r\nMAIL FROM:<a@example.test>\r\nRCPT TO:<b@example.test>\r\nDATA\r\n"
        b"Subject: slow\r\n\r\n.leading dot\r\nbody\r\n.\r\nQUIT\r\n"
    )
    with connect(server.smtp_port) as wire:
        wire.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(len(script)):
            wire.send(script[i : i + 1])
        codes = [wire.code() for _ in range(6)]
        assert codes == [250, 250, 250, 354, 250, 221]
    assert stored(server) == [b"Subject: slow\r\n\r\nleading dot\r\nbody\r\n"]


def test_thousands_of_pipelined_commands_in_one_packet(server: SinkServer) -> None:
    count = 5000
    batch = b"EHLO pipe.test\r\n" + b"".join(
        b"MAIL FROM:<a@example.test>\r\nRCPT TO:<b%d@example.test>\r\nRSET\r\n" % i for i in range(count)
    )
    with connect(server.smtp_port) as wire:
        wire.send(batch + b"QUIT\r\n")
        codes = [wire.code() for _ in range(1 + 3 * count + 1)]
    assert codes[0] == 250 and codes[-1] == 221
    assert set(codes[1:-1]) == {250}
    still_serving(server)


def test_rcpt_flood_past_the_limit(start_server: Servers) -> None:
    server = start_server(max_recipients=10)
    with open_transaction(server.smtp_port) as wire:
        wire.send(b"".join(b"RCPT TO:<r%d@example.test>\r\n" % i for i in range(1000)))
        codes = [wire.code() for _ in range(1000)]
        assert codes[:9] == [250] * 9 and set(codes[9:]) == {452}
        assert wire.cmd("DATA")[0] == 354
        wire.send(b"Subject: flood\r\n\r\nx\r\n.\r\n")
        assert wire.code() == 250
    raw = server.store.read(server.store.ids()[0])
    assert raw.count(b"X-Original-To: ") == 10


def test_data_without_end_is_bounded_and_stores_nothing(start_server: Servers) -> None:
    server = start_server(max_message_size=1 << 20)
    with open_transaction(server.smtp_port) as wire:
        assert wire.cmd("DATA")[0] == 354
        chunk = b"y" * 65534 + b"\r\n"
        for _ in range(300):  # 20 MB, never terminated
            wire.send(chunk)
        conn = next(iter(server.connections))
        assert conn.session.data_held == 0  # over the limit: nothing kept in memory
    time.sleep(0.2)
    assert server.store.ids() == []
    assert list(Path(server.store.tmp).iterdir()) == []
    still_serving(server)


def test_client_that_never_reads_replies_is_paused(server: SinkServer) -> None:
    """The server stops executing (and reading) the commands of a client that does not read its
    replies, holds little for it, and loses nothing: once read, every reply is there, in order."""
    wire = connect(server.smtp_port)
    wire.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    wire.sock.setblocking(False)
    batch, sent, total = b"NOOP\r\n" * 10000, 0, 2000 * 60000  # up to 120 MB of commands
    while sent < total:
        try:
            sent += wire.sock.send(batch[sent % len(batch):])
        except BlockingIOError:
            if not select.select([], [wire.sock], [], 1.0)[1]:
                break  # the server took nothing for a second: it stopped reading
    assert sent % 6 == 0 or sent < total
    assert sent < 16 << 20, "the server kept reading although nobody read its replies"
    conn = next(iter(server.connections))
    assert conn.transport.get_write_buffer_size() < 64 << 10
    server_side = conn.transport.get_extra_info("socket")
    waiting = struct.unpack("i", fcntl.ioctl(server_side.fileno(), termios.TIOCOUTQ, b"\0\0\0\0"))[0]
    unread = struct.unpack("i", fcntl.ioctl(wire.sock.fileno(), termios.FIONREAD, b"\0\0\0\0"))[0]
    executed = (conn.transport.get_write_buffer_size() + waiting + unread) // len(b"250 OK\r\n")
    assert executed < 100_000, executed  # what small buffers hold, not the millions sent
    still_serving(server)  # another client meanwhile
    # the client reads now: one 250 per NOOP it managed to send, then the session goes on
    wire.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)  # a 4 KB window reads slowly
    wire.sock.setblocking(True)
    wire.sock.settimeout(30)
    expected = sent // 6 * b"250 OK\r\n"
    received = bytearray()
    while len(received) < len(expected):
        chunk = wire.sock.recv(1 << 20)
        assert chunk, "closed"
        received += chunk
    assert received == expected, f"{len(received)} bytes of replies, {len(expected)} expected"
    if sent % 6:  # a NOOP cut off by the end of the flood: complete it
        wire.send(b"NOOP\r\n"[sent % 6 :])
        assert wire.code() == 250
    assert wire.cmd("QUIT")[0] == 221
    wire.close()


def test_half_closed_connection(server: SinkServer) -> None:
    with connect(server.smtp_port) as wire:
        wire.send(b"EHLO half.test\r\nMAIL FROM:<a@example.test>\r\nRCPT TO:<b@example.test>\r\nDATA\r\n")
        wire.send(b"Subject: half\r\n\r\nbody\r\n.\r\nQUIT\r\n")
        wire.sock.shutdown(socket.SHUT_WR)
        codes = [wire.code() for _ in range(6)]
        assert codes == [250, 250, 250, 354, 250, 221]
        assert wire.closed()
    with open_transaction(server.smtp_port) as wire:  # half-close in the middle of DATA
        assert wire.cmd("DATA")[0] == 354
        wire.send(b"Subject: cut\r\n\r\npartial")
        wire.sock.shutdown(socket.SHUT_WR)
        assert wire.closed()
    time.sleep(0.1)
    assert len(server.store.ids()) == 1
    assert list(Path(server.store.tmp).iterdir()) == []
    still_serving(server)


@pytest.mark.parametrize("variant", [b"\n.\n", b"\r.\r", b"\n.\r\n", b"\r\n.\n", b"\r.\r\n", b"\n..\r\n"])
def test_smuggling_variants_never_end_data(server: SinkServer, variant: bytes) -> None:
    smuggled = (
        b"Subject: outer\r\n\r\nhello" + variant
        + b"MAIL FROM:<evil@example.test>\r\nRCPT TO:<victim@example.test>\r\nDATA\r\n"
        + b"Subject: smuggled\r\n\r\nevil\r\n"
    )
    with open_transaction(server.smtp_port) as wire:
        assert wire.cmd("DATA")[0] == 354
        wire.send(smuggled + b".\r\nQUIT\r\n")
        assert wire.code() == 250
        assert wire.code() == 221
    bodies = stored(server)
    assert len(bodies) == 1
    # RFC 5321 section 4.5.2: the leading period of every CRLF-delimited line is removed.
    assert bodies[0] == (b"\r\n" + smuggled).replace(b"\r\n.", b"\r\n")[2:]


def test_many_hostile_sessions_at_once_do_not_disturb_a_good_one(server: SinkServer) -> None:
    payloads = [b"\x00" * 5000, b"\xff" * 70000 + b"\n", b"DATA\r\n" * 1000, b"\r\n" * 5000, os.urandom(200000)]

    closed: list[bool] = []

    def attack(data: bytes) -> None:
        with Wire(server.smtp_port) as wire:
            wire.send(data)
            wire.sock.shutdown(socket.SHUT_WR)
            closed.append(wire.closed(timeout=10))

    threads = [threading.Thread(target=attack, args=(p,)) for p in payloads * 4]
    for t in threads:
        t.start()
    still_serving(server)
    for t in threads:
        t.join(20)
        assert not t.is_alive(), "an attacking session was not closed"
    assert closed == [True] * len(threads)  # the server ended every one of them
    still_serving(server)


def test_over_long_auth_response_split_by_tcp_ends_the_login(start_server: Servers) -> None:
    """Whatever the segments, an AUTH response over 12,288 octets gets 501 and ends the exchange:
    the next line is a command again, never taken as the password."""
    server = start_server(auth={"mode": "accept-any"})
    response = b"dXNlcg" * 2200 + b"\r\n"  # 13,202 octets
    for cuts in ([], [AUTH_LINE_MAX - 1], [1000, 5000, 12000, AUTH_LINE_MAX + 1], list(range(12280, 12300))):
        with connect(server.smtp_port) as wire:
            wire.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            assert wire.cmd("EHLO split.test")[0] == 250
            assert wire.cmd("AUTH LOGIN")[0] == 334
            start = 0
            for cut in [*cuts, len(response)]:
                wire.send(response[start:cut])
                start = cut
                time.sleep(0.01)  # separate segments
            code, lines = wire.reply()
            assert (code, lines) == (501, ["Cannot decode AUTH response: longer than 12288 octets"]), cuts
            assert wire.cmd("MAIL FROM:<a@example.test>")[0] == 250, cuts  # a command, not a password
            assert wire.cmd("HELP STATUS")[1][2] == "TLS off, not authenticated"


def test_size_limit_does_not_count_stuffing_dots(start_server: Servers) -> None:
    """RFC 1870: a message of exactly the advertised SIZE is accepted however many of its lines
    start with a dot (the client doubles them on the wire); one octet more is refused."""
    limit = 4000
    server = start_server(max_message_size=limit)
    line = b".starts with a dot, doubled on the wire" + b"\r\n"
    head = b"Subject: dots\r\n\r\n"
    body = head + line * ((limit - len(head)) // len(line))
    body += b"." * (limit - len(body) - 2) + b"\r\n"
    assert len(body) == limit
    with smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=10) as smtp:
        assert smtp.sendmail("a@example.test", ["b@example.test"], body) == {}  # smtplib stuffs the dots
    with open_transaction(server.smtp_port) as wire:  # one octet more (no SIZE declared)
        assert wire.cmd("DATA")[0] == 354
        wire.send((b"\r\n." + body).replace(b"\r\n.", b"\r\n..")[2:] + b".\r\n")
        assert wire.code() == 552
    assert stored(server) == [body]
