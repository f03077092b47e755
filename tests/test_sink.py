"""The Sink without sockets, and the listeners around it: start-up errors name the listener."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import smtplib
import socket
import sqlite3
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support.config import make_config
from support.servers import Servers
from support.wire import free_port

from smtp_sink.errors import ListenError
from smtp_sink.index import INDEX_FILE
from smtp_sink.sink import Sink
from smtp_sink.store import Deleted, Marked, Store
from smtp_sink.summary import Summary
from smtp_sink.trace import Envelope, read

ENVELOPE = Envelope(helo="c.test", esmtp=True, mail_from="ann@example.test", rcpt_to=["bob@example.test"],
                    peer="127.0.0.1")


async def wait_until(condition: Callable[[], object], seconds: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while not condition() and loop.time() < deadline:
        await asyncio.sleep(0.01)


async def test_a_sink_stores_indexes_and_fans_events_out_without_a_port(tmp_path: Path) -> None:
    sink = Sink(make_config(tmp_path / "mail"))
    await sink.start()
    first: list[object] = []
    second: list[object] = []
    unsubscribe = sink.subscribe(first.append)
    sink.subscribe(second.append)
    assert sink.watched
    stored = sink.save(ENVELOPE, b"Subject: hello\r\n\r\nbody\r\n")
    await wait_until(lambda: first)  # indexed by the sink's own timer and thread
    assert [e.id for e in first if isinstance(e, Summary)] == [stored.id]
    raw = sink.store.read(stored.id)
    assert raw.endswith(b"Subject: hello\r\n\r\nbody\r\n")
    trace = read(raw)
    assert (trace.own, trace.mail_from, trace.rcpt_to) == (True, "ann@example.test", ("bob@example.test",))
    assert f"id {stored.id}".encode() in raw  # the Received line names the id the file has
    unsubscribe()
    sink.store.open_message(stored.id)
    sink.store.delete(stored.id)
    assert [type(e) for e in second] == [Summary, Marked, Deleted]
    assert len(first) == 1  # unsubscribed
    await sink.stop()


async def test_a_broken_subscriber_harms_neither_the_store_nor_the_others(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sink = Sink(make_config(tmp_path / "mail"))
    await sink.start()

    def broken(event: object) -> None:
        raise RuntimeError("a bug in a subscriber")

    seen: list[object] = []
    sink.subscribe(broken)
    sink.subscribe(seen.append)
    stored = sink.save(ENVELOPE, b"Subject: x\r\n\r\nx\r\n")
    await wait_until(lambda: seen)
    assert sink.store.delete(stored.id) == 1
    assert [type(e) for e in seen] == [Summary, Deleted]
    assert "a bug in a subscriber" in caplog.text
    await sink.stop()


async def test_stop_indexes_what_is_pending(tmp_path: Path) -> None:
    sink = Sink(make_config(tmp_path / "mail"))
    await sink.start()
    ids = [sink.save(ENVELOPE, f"Subject: {i}\r\n\r\nx\r\n".encode()).id for i in range(30)]
    await sink.stop()  # before the quiet period that would index them
    with contextlib.closing(sqlite3.connect(tmp_path / "mail" / INDEX_FILE)) as db:
        assert sorted(row[0] for row in db.execute("SELECT id FROM messages")) == ids


async def test_the_capacity_is_the_sinks_and_the_policy_reads_it(tmp_path: Path) -> None:
    config = make_config(tmp_path / "mail", {"min_free_space": 1 << 62})
    sink = Sink(config)
    await sink.start()
    assert sink.capacity.problem is not None and "min_free_space" in sink.capacity.problem
    refusal = sink.policy.check_sender(Envelope(), "ann@example.test")
    assert refusal is not None and refusal.code == 452
    sink.config = dataclasses.replace(config, store=dataclasses.replace(config.store, min_free_space=0))
    assert sink.refresh_capacity() is None and sink.capacity.problem is None
    assert sink.policy.check_sender(Envelope(), "ann@example.test") is None
    await sink.stop()


# -- a port that is taken: ListenError names the listener and the flag ---------------------------------


@pytest.fixture
def busy() -> Iterator[int]:
    """A port something else listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


@pytest.mark.parametrize(("listener", "flag"), [
    ("SMTP", "--port"), ("implicit TLS", "--tls-port"), ("HTTP", "--http-port (or turn HTTP off with --no-http)"),
])
def test_a_taken_port_names_its_listener_and_flag_and_leaves_nothing_open(
    start_server: Servers, busy: int, listener: str, flag: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="smtp_sink")
    smtp_port = busy if listener == "SMTP" else free_port()
    with pytest.raises(ListenError) as raised:
        start_server(port=smtp_port, auth={"mode": "accept-any"},
                     tls={"port": busy if listener == "implicit TLS" else 0},
                     http={"port": busy if listener == "HTTP" else 0})
    error = raised.value
    assert (error.listener, error.address, error.flag) == (listener, f"127.0.0.1:{busy}", flag)
    assert str(error) == (f"cannot listen on 127.0.0.1:{busy} ({listener}): address already in use; "
                          f"choose another port with {flag}")
    assert "listening on" not in caplog.text and "smtp-sink ready" not in caplog.text
    if listener != "SMTP":  # the SMTP port that did open was closed again
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", smtp_port)) != 0


# -- shutdown: a TLS session the server already closed ---------------------------------------------


def test_shutdown_goes_on_past_a_tls_session_the_server_already_closed(
    tmp_path: Path, start_server: Servers, caplog: pytest.LogCaptureFixture
) -> None:
    """After QUIT the server closes an implicit-TLS connection; a client that never answers the TLS
    close keeps it open. Stopping must still go all the way and index what is pending (asyncio's
    TLS transport raised AttributeError there, and the shutdown stopped half-way)."""
    caplog.set_level(logging.INFO, logger="smtp_sink")
    server = start_server(loop="asyncio", auth={"mode": "accept-any"})
    failures: list[BaseException] = []
    hook, threading.excepthook = threading.excepthook, lambda args: failures.append(args.exc_value)
    context = ssl.create_default_context(cafile=server.tls_ca)
    try:
        with socket.create_connection(("127.0.0.1", server.tls_port), timeout=10) as raw, \
                context.wrap_socket(raw, server_hostname=server.config.smtp.hostname) as quiet:
            assert quiet.recv(1024).startswith(b"220 ")
            with smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=10) as other:
                other.sendmail("a@example.test", ["b@example.test"], b"Subject: pending\r\n\r\nx\r\n")
            quiet.sendall(b"QUIT\r\n")
            assert quiet.recv(1024).startswith(b"221 ")  # then nothing: no close_notify back
            time.sleep(0.2)
            assert len(server.connections) == 1  # closed by the server, still waiting for the client
            start_server.stop(server)
    finally:
        threading.excepthook = hook
    assert failures == []
    assert "smtp-sink stopped" in caplog.text
    assert Store(tmp_path / "mail").counts() == (1, 1)
