"""Back-pressure: a client that pipelines without reading its replies costs bounded memory and
CPU, is resumed exactly where it stopped once it reads, and never slows another client down.

The session side (sans-I/O): feed() stops at an output budget and resume() carries on, with
the same outputs in the same order as one unbounded feed. The server side, over real sockets:
the write buffer and the input held for a non-reading client stay small while a second client
completes a transaction; once the first client reads, every reply arrives, in order.
"""

from __future__ import annotations

import contextlib
import fcntl
import smtplib
import socket
import struct
import termios
import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support import wait_until
from support.servers import Servers
from support.wire import Wire, connect

from smtp_sink.config import Config
from smtp_sink.protocol import OUTPUT_BUDGET, MessageReceived, Output, Settings, SMTPSession
from smtp_sink.replies import Code, Reply
from smtp_sink.server import READ_COMMANDS, WRITE_HIGH, SinkServer

HELP_REPLY = SMTPSession(Settings.from_config(Config())).feed(b"HELP\r\n")[0].encode()  # 214, three lines


def wire_form(outputs: list[Output]) -> list[object]:
    """Outputs comparable across sessions: replies as bytes, messages as (sender, recipients, data)."""
    return [item.encode() if isinstance(item, Reply)
            else (item.envelope.mail_from, item.envelope.rcpt_to, bytes(item.data))
            if isinstance(item, MessageReceived) else item
            for item in outputs]


def run_budgeted(data: bytes, budget: int) -> tuple[list[Output], list[int]]:
    """Feed ``data`` at once, then resume until nothing is held back: all outputs, and the
    characters of replies each call produced."""
    session = SMTPSession(Settings.from_config(Config(), output_budget=budget))
    session.greeting()
    outputs, sizes = [], []
    out = session.feed(data)
    while True:
        outputs += out
        sizes.append(sum(len(item.encode()) for item in out if isinstance(item, Reply)))
        if not session.pending:
            return outputs, sizes
        out = session.resume()


def test_feed_stops_at_the_budget_and_resume_goes_on_where_it_stopped() -> None:
    burst = b"HELP\r\n" * 1000
    outputs, sizes = run_budgeted(burst, OUTPUT_BUDGET)
    assert [item.encode() for item in outputs] == [HELP_REPLY] * 1000  # all of them, in order
    assert len(sizes) >= 1000 * len(HELP_REPLY) // (OUTPUT_BUDGET + len(HELP_REPLY))  # it stopped on the way
    assert max(sizes) <= OUTPUT_BUDGET + len(HELP_REPLY)  # never past the budget by more than a reply


def test_a_held_back_session_keeps_the_rest_of_one_chunk_only() -> None:
    session = SMTPSession(Settings.from_config(Config()))
    session.greeting()
    session.feed(b"HELP\r\n" * 10000)
    assert session.pending
    assert len(session._buf) - session._pos < 60000  # only the chunk's unexecuted rest


_commands = st.sampled_from([
    b"EHLO c.test\r\n", b"HELP\r\n", b"HELP STATUS\r\n", b"NOOP\r\n", b"RSET\r\n", b"MAIL FROM:<a@b.test>\r\n",
    b"RCPT TO:<c@d.test>\r\n", b"DATA\r\n", b"line\r\n..dot\r\n.\r\n", b"VRFY x\r\n", b"BOGUS\r\n", b"\r\n",
])


@settings(max_examples=300, deadline=None)
@given(script=st.lists(_commands, max_size=120).map(b"".join), budget=st.integers(min_value=1, max_value=3000))
def test_budgeted_outputs_equal_one_unbounded_feed(script: bytes, budget: int) -> None:
    unbounded = SMTPSession(Settings.from_config(Config(), output_budget=0))
    unbounded.greeting()
    expected = wire_form(unbounded.feed(script))
    assert wire_form(run_budgeted(script, budget)[0]) == expected


def _ioctl(sock: socket.socket, request: int) -> int:
    return struct.unpack("i", fcntl.ioctl(sock.fileno(), request, b"\0\0\0\0"))[0]


def executed(conn, wire: Wire) -> int:
    """How many HELP commands the server executed for ``wire``: their replies are in the server's
    write buffer, its socket's send queue or the client's receive queue (nothing was read)."""
    server_side = conn.transport.get_extra_info("socket")
    replies = (conn.transport.get_write_buffer_size() + _ioctl(server_side, termios.TIOCOUTQ)
               + _ioctl(wire.sock, termios.FIONREAD))
    return replies // len(HELP_REPLY)


def flood(port: int, burst: bytes) -> Wire:
    """Connect and send ``burst`` without reading a reply (as far as the server takes it in 3 s)."""
    wire = connect(port)
    wire.sock.settimeout(3)
    with contextlib.suppress(TimeoutError):
        wire.sock.sendall(burst)
    return wire


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_a_client_that_does_not_read_stops_being_executed(start_server: Servers, loop: str) -> None:
    server: SinkServer = start_server(loop=loop)
    count = 256 * 1024 // 6
    wire = flood(server.smtp_port, b"HELP\r\n" * count)
    conn = next(iter(server.connections))
    time.sleep(0.5)
    done = executed(conn, wire)
    time.sleep(0.5)
    assert executed(conn, wire) == done  # it stopped: nothing more is executed
    # what the kernel's small buffers took plus our write buffer: a small share of what was sent
    assert done < count // 20, done
    assert conn.transport.get_write_buffer_size() <= WRITE_HIGH + OUTPUT_BUDGET + len(HELP_REPLY)
    assert conn.session.pending and conn._write_paused
    held = len(conn.session._buf) - conn.session._pos
    assert 0 < held <= READ_COMMANDS  # one command-mode read at most
    # meanwhile another client is served at once
    with smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=10) as smtp:
        smtp.sendmail("other@example.test", ["x@example.test"], b"Subject: meanwhile\r\n\r\nhi\r\n")
    assert len(server.store.ids()) == 1 and conn.session.pending
    # the flooding client reads now: every reply arrives, in order, then the session goes on
    wire.sock.settimeout(20)
    received = 0
    while received < count * len(HELP_REPLY):
        chunk = wire.sock.recv(1 << 20)
        assert chunk, "closed"
        received += len(chunk)
    assert received == count * len(HELP_REPLY)
    assert wire.cmd("NOOP")[0] == Code.OK
    wire.close()


def test_many_non_reading_clients_leave_another_client_unharmed(start_server: Servers) -> None:
    server: SinkServer = start_server(max_connections=200)
    burst = b"HELP\r\n" * (64 * 1024 // 6)
    wires: list[Wire] = []
    threads = [threading.Thread(target=lambda: wires.append(flood(server.smtp_port, burst))) for _ in range(50)]
    for thread in threads:
        thread.start()
    with connect(server.smtp_port) as other:  # while the flood goes on
        for command, code in [("EHLO o.test", 250), ("MAIL FROM:<o@example.test>", 250),
                              ("RCPT TO:<p@example.test>", 250), ("DATA", 354)]:
            assert other.cmd(command)[0] == code
        other.send(b"Subject: other\r\n\r\nunharmed\r\n.\r\n")
        assert other.code() == Code.OK
    for thread in threads:
        thread.join(20)
        assert not thread.is_alive()
    time.sleep(0.5)
    conns = {c.transport.get_extra_info("peername")[1]: c for c in server.connections}
    done = [executed(conns[wire.sock.getsockname()[1]], wire) for wire in wires]
    assert max(done) < len(burst) // 6 // 4, done  # each stopped after a small share
    for wire in wires:
        wire.close()
    wait_until(lambda: not server.connections)
    assert len(server.store.ids()) == 1
