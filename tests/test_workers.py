"""``smtp-sink serve --workers N``: real processes on real sockets. Connections are checked to
land on different worker processes (the process holding each accepted socket, from /proc), then
the global state is checked: fault-rule counters, ``max_connections``, events, no acknowledged
message lost when a worker is killed, shutdown with clients connected; and ``--workers 1`` is
the one process it always was."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import smtplib
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from support import wait_until
from support.http import get_json, send_json
from support.owners import children, owner, worker_pids
from support.processes import Processes, ServerProcess, clean_env, run_cli
from support.wire import Wire

from smtp_sink.rules import Rule, RuleSet, Stage
from smtp_sink.shared import SharedRuleSet, SharedState


def start_workers(start_process: Processes, tmp_path: Path, toml: str = "", count: str = "2",
                  http: bool = True) -> ServerProcess:
    """``serve --workers COUNT`` with ``toml`` as its config file."""
    config = tmp_path / "workers.toml"
    config.write_text(toml)
    return start_process("--workers", count, "--config", str(config), http=http)


def spread(server: ServerProcess, count: int) -> list[tuple[Wire, int]]:
    """``count`` connections (greeted, EHLO said), each with the worker pid serving it, ordered so
    that consecutive ones alternate between the workers; both workers must serve some."""
    pids = worker_pids(server.log())
    by_worker: dict[int, list[Wire]] = {pid: [] for pid in pids}
    for _ in range(count):
        wire = Wire(server.port)
        assert wire.code() == 220
        assert wire.cmd("EHLO client.test")[0] == 250
        by_worker[owner(wire.sock, pids)].append(wire)
    assert all(by_worker.values()), f"every connection landed on one worker: {by_worker}"
    ordered: list[tuple[Wire, int]] = []
    queues = [[(w, pid) for w in wires] for pid, wires in by_worker.items()]
    while any(queues):
        for queue in queues:
            if queue:
                ordered.append(queue.pop(0))
    return ordered


def mail_codes(connections: list[tuple[Wire, int]], rounds: int = 1) -> list[int]:
    """MAIL then RSET on each connection in turn (consecutive ones on different workers where
    possible): the MAIL reply codes in order."""
    codes = []
    for _ in range(rounds):
        for wire, _pid in connections:
            codes.append(wire.cmd("MAIL FROM:<a@example.test>")[0])
            assert wire.cmd("RSET")[0] == 250
    return codes


def alternating(connections: list[tuple[Wire, int]], count: int) -> list[tuple[Wire, int]]:
    """The first ``count`` connections, strictly alternating between two workers."""
    pids = sorted({pid for _, pid in connections})
    picked = [c for c in connections if c[1] == pids[0]][: count // 2 + 1]
    other = [c for c in connections if c[1] == pids[1]][: count // 2 + 1]
    mixed = [c for pair in zip(picked, other, strict=False) for c in pair][:count]
    assert len(mixed) == count, "too few connections on one worker"
    return mixed


def add_rule(server: ServerProcess, **rule: object) -> None:
    assert send_json(server.http_port, "/api/v1/rules", "POST", {"stage": "mail", "code": 451, **rule})[0] == 201


@pytest.fixture
def closing() -> Iterator[list[Wire]]:
    opened: list[Wire] = []
    yield opened
    for wire in opened:
        wire.close()


def test_rule_counters_count_across_workers_as_in_one_process(start_process: Processes, tmp_path: Path,
                                                             closing: list[Wire]) -> None:
    """nth, every, first and a seeded probability, added through the API while the workers run
    (and one from the config file), fire on the same occurrences as in one process, counted over
    connections that alternate between the two workers."""
    server = start_workers(start_process, tmp_path, '[[rules]]\nstage = "rcpt"\ncode = 550\nschedule = "nth"\nn = 2\n')
    connections = spread(server, 24)
    closing.extend(wire for wire, _ in connections)
    turns = alternating(connections, 8)
    # the configured rule: the 2nd RCPT of the server, whichever worker sees it
    rcpt = []
    for wire, _ in turns[:4]:
        assert wire.cmd("MAIL FROM:<a@example.test>")[0] == 250
        rcpt.append(wire.cmd("RCPT TO:<b@example.test>")[0])
        assert wire.cmd("RSET")[0] == 250
    assert rcpt == [250, 550, 250, 250]

    add_rule(server, schedule="nth", n=3)
    assert mail_codes(turns) == [250, 250, 451, 250, 250, 250, 250, 250]
    assert send_json(server.http_port, "/api/v1/rules", "DELETE", {})[0] == 200
    add_rule(server, schedule="every", n=2)
    assert mail_codes(turns) == [250, 451] * 4
    assert send_json(server.http_port, "/api/v1/rules", "DELETE", {})[0] == 200
    add_rule(server, schedule="first", n=3)
    assert mail_codes(turns) == [451, 451, 451, 250, 250, 250, 250, 250]
    assert send_json(server.http_port, "/api/v1/rules", "DELETE", {})[0] == 200

    seeded = {"schedule": "probability", "probability": 0.5, "seed": 1234}
    add_rule(server, **seeded)
    one_process = RuleSet([Rule.from_mapping({"stage": "mail", "code": 451, **seeded})])
    expected = [451 if one_process.match(Stage.MAIL, "127.0.0.1", "a@example.test") else 250 for _ in range(40)]
    assert 451 in expected and 250 in expected
    random.Random(5).shuffle(connections)  # any order of workers: the sequence is the server's
    assert mail_codes(connections[:20], rounds=2) == expected
    assert [r["schedule"] for r in get_json(server.http_port, "/api/v1/rules")] == ["probability"]


def test_shared_rule_table_between_two_attachments(tmp_path: Path) -> None:
    """Two processes' views of one table (each its own descriptor, so flock excludes them): a rule
    added by one applies to the other's next match, counts are shared, a cleared slot starts at 0."""
    state = SharedState.create(tmp_path)
    parent = SharedRuleSet(state, [Rule.from_mapping({"stage": "mail", "code": 451, "schedule": "nth", "n": 2})],
                           create=True)
    worker = SharedRuleSet(SharedState.attach(tmp_path), create=False)
    assert worker.match(Stage.MAIL, "c") is None
    assert parent.match(Stage.MAIL, "c") is not None  # the 2nd occurrence, across the two
    parent.clear()
    assert worker.match(Stage.MAIL, "c") is None and len(worker) == 0
    parent.add(Rule.from_mapping({"stage": "mail", "code": 451, "schedule": "nth", "n": 2}))
    assert worker.match(Stage.MAIL, "c") is None  # a new rule in the reused slot counts from 0
    assert worker.match(Stage.MAIL, "c") is not None
    assert [r.n for r in worker.rules()] == [2]


def test_max_connections_is_the_total_across_workers(start_process: Processes, tmp_path: Path,
                                                     closing: list[Wire]) -> None:
    """10 sessions across both workers, then 421 whichever worker takes the next; a session that
    ends makes room; the sessions of a killed worker are given back."""
    server = start_workers(start_process, tmp_path, "[smtp]\nmax_connections = 10\n", http=False)
    connections = spread(server, 10)
    closing.extend(wire for wire, _ in connections)
    for _ in range(4):
        with Wire(server.port) as extra:
            assert extra.code() == 421
            assert extra.closed()
    first, _ = connections[0]
    assert first.cmd("QUIT")[0] == 221
    assert first.closed()
    alive = connections[1:]

    def tenth() -> bool:  # room again once the worker has seen the QUIT's close
        wire = Wire(server.port)
        closing.append(wire)
        if wire.code() != 220:
            return False
        alive.append((wire, owner(wire.sock, worker_pids(server.log()))))
        return True

    wait_until(tenth, 5, "room for one more session")
    victim = alive[-1][1]
    held = sum(1 for _, pid in alive if pid == victim)
    os.kill(victim, signal.SIGKILL)
    wait_until(lambda: victim not in worker_pids(server.log()), 20, "the worker restarted")
    fresh = []
    for _ in range(held):  # its sessions no longer count
        wire = Wire(server.port)
        closing.append(wire)
        fresh.append(wire.code())
    assert fresh == [220] * held
    with Wire(server.port) as extra:
        assert extra.code() == 421


def test_events_from_every_worker_reach_the_page_and_watch(start_process: Processes, tmp_path: Path,
                                                          closing: list[Wire]) -> None:
    """Messages and refused commands on connections of both workers: each message is a ``new``
    frame on the page's WebSocket and a line of ``smtp-sink watch``; each refusal an ``error`` frame."""
    server = start_workers(start_process, tmp_path)
    watch = subprocess.Popen([sys.executable, "-m", "smtp_sink", "watch", "--timeout", "60", "--store",
                              str(server.store)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=clean_env())
    assert watch.stderr is not None and "watching" in watch.stderr.readline()  # it looks from now on
    connections = spread(server, 12)
    closing.extend(wire for wire, _ in connections)
    turns = alternating(connections, 6)
    frames: list[dict[str, object]] = []
    ids: set[str] = set()
    ready = threading.Event()  # the page subscribes first, as a browser would; then mail arrives

    def send_all() -> None:
        ready.wait(10)
        for wire, _ in turns:
            assert wire.cmd("MAIL FROM:<a@example.test>")[0] == 250
            assert wire.cmd("RCPT TO:<b@example.test>")[0] == 250
            assert wire.cmd("DATA")[0] == 354
            code, lines = wire.cmd("Subject: from a worker\r\n\r\nhello\r\n.")
            assert code == 250
            ids.add(lines[-1].rsplit(" ", 1)[-1])
            assert wire.cmd("MAIL FROM:<not an address>")[0] == 501  # an error frame from this worker

    sender = threading.Thread(target=send_all)
    sender.start()

    async def main() -> None:
        async with aiohttp.ClientSession() as session, session.ws_connect(
                f"http://127.0.0.1:{server.http_port}/api/events") as socket:
            ready.set()
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                message = await socket.receive(timeout=10)
                frames.append(json.loads(message.data))
                news = {f["Data"]["ID"] for f in frames if f["Type"] == "new"}  # type: ignore[index]
                errors = [f for f in frames if f["Type"] == "error"]
                if not sender.is_alive() and ids <= news and len(errors) >= len(turns):
                    return

    asyncio.run(main())
    sender.join()
    assert len(ids) == len(turns)
    assert ids <= {f["Data"]["ID"] for f in frames if f["Type"] == "new"}  # type: ignore[index]
    assert len([f for f in frames if f["Type"] == "error"]) >= len(turns)
    watched: set[str] = set()
    assert watch.stdout is not None
    while not ids <= watched:
        line = watch.stdout.readline()  # a row: the id first
        assert line, f"watch ended having shown {watched}"
        watched.add(line.split()[0])
    watch.kill()
    watch.wait()
    assert ids <= watched


def test_kill_9_of_a_worker_loses_no_acknowledged_message(start_process: Processes, tmp_path: Path) -> None:
    """Four clients send without pause, a new connection per message; one worker is killed with
    SIGKILL meanwhile. Every message that got its 250 is stored and listed; the parent starts a
    new worker, which serves."""
    server = start_workers(start_process, tmp_path)
    pids = worker_pids(server.log())
    acknowledged: list[str] = []
    stop = threading.Event()

    def client() -> None:
        while not stop.is_set():
            try:
                with smtplib.SMTP("127.0.0.1", server.port, timeout=10) as smtp:
                    smtp.ehlo()
                    smtp.mail("a@example.test")
                    smtp.rcpt("b@example.test")
                    code, text = smtp.data(b"Subject: load\r\n\r\nhello\r\n")
                    if code == 250:
                        acknowledged.append(text.decode().rsplit(" ", 1)[-1])
            except (OSError, smtplib.SMTPException):
                pass  # cut by the kill: not acknowledged

    clients = [threading.Thread(target=client, daemon=True) for _ in range(4)]
    for thread in clients:
        thread.start()
    try:
        wait_until(lambda: len(acknowledged) >= 50, 30, "mail flowing")
        os.kill(pids[0], signal.SIGKILL)
        wait_until(lambda: pids[0] not in worker_pids(server.log()), 20, "a new worker")
        time.sleep(0.5)
    finally:
        stop.set()
        for thread in clients:
            thread.join(30)
    assert "exited with status -9: starting a new one" in server.log()
    listed = {m["ID"] for m in get_json(server.http_port, "/api/v1/messages?limit=100000")["messages"]}
    assert set(acknowledged) <= listed, set(acknowledged) - listed
    assert all((server.store / f"{i}.eml").is_file() for i in acknowledged)
    assert len(children(server.pid)) == 2
    new = worker_pids(server.log())
    assert new[0] != pids[0] and new[1] == pids[1]


def test_shutdown_with_clients_connected_closes_every_session(start_process: Processes, tmp_path: Path,
                                                              closing: list[Wire]) -> None:
    """SIGTERM to the parent: every open session on every worker gets 421 and is closed (one in
    the middle of its DATA), all processes exit, and the message acknowledged before is listed."""
    server = start_workers(start_process, tmp_path, http=False)
    workers = worker_pids(server.log())
    connections = spread(server, 8)
    closing.extend(wire for wire, _ in connections)
    wire, _ = connections[0]
    assert wire.cmd("MAIL FROM:<a@example.test>")[0] == 250
    assert wire.cmd("RCPT TO:<b@example.test>")[0] == 250
    assert wire.cmd("DATA")[0] == 354
    code, lines = wire.cmd("Subject: before\r\n\r\nhello\r\n.")
    assert code == 250
    kept = lines[-1].rsplit(" ", 1)[-1]
    busy, _ = connections[1]
    assert busy.cmd("MAIL FROM:<a@example.test>")[0] == 250
    assert busy.cmd("RCPT TO:<b@example.test>")[0] == 250
    assert busy.cmd("DATA")[0] == 354
    busy.send("Subject: unfinished\r\n\r\nhalf a mess")
    assert server.stop() == 0
    for wire, _ in connections:
        assert wire.code() == 421
        assert wire.closed()
    for pid in workers:
        assert not os.path.exists(f"/proc/{pid}")  # ended, and reaped by the parent
    listed = json.loads(run_cli("list", "--json", store=server.store).stdout)
    assert [m["ID"] for m in listed["messages"]] == [kept]


def test_workers_1_is_the_single_process_server(start_process: Processes, tmp_path: Path) -> None:
    """``--workers 1`` starts no other process and logs no worker line: the server as before."""
    server = start_process("--workers", "1")
    assert children(server.pid) == []
    assert "worker processes" not in server.log() and "[worker" not in server.log()
    with smtplib.SMTP("127.0.0.1", server.port) as smtp:
        smtp.sendmail("a@example.test", ["b@example.test"], b"Subject: one\r\n\r\nhi\r\n")


def test_workers_auto_is_one_per_cpu_and_they_end_with_the_parent(start_process: Processes, tmp_path: Path) -> None:
    """``auto``: as many workers as CPUs this process may use; kill -9 of the parent ends them, and
    the next start removes the runtime folder the killed parent left."""
    server = start_workers(start_process, tmp_path, count="auto", http=False)
    pids = worker_pids(server.log())
    assert len(pids) == len(os.sched_getaffinity(0))
    left = list(Path("/dev/shm").glob(f"smtp-sink-workers-{server.pid}-*"))
    assert len(left) == 1
    server.kill9()
    wait_until(lambda: not any(os.path.exists(f"/proc/{pid}") for pid in pids), 15, "the workers ended")
    assert left[0].exists()
    start_workers(start_process, tmp_path, http=False)
    assert not left[0].exists()


@pytest.mark.parametrize(("args", "toml", "message"), [
    (["--workers", "0"], "", "option --workers: must be at least 1, got 0"),
    (["--workers", "many"], "", 'option --workers: expected an integer or "auto", got \'many\''),
    ([], "[smtp]\nworkers = \"three\"\n", '[smtp] workers: expected an integer or "auto", got \'three\''),
    ([], "[smtp]\nworkers = 1000\n", "[smtp] workers: must be at most 256, got 1000"),
])
def test_a_bad_workers_value_is_named(tmp_path: Path, args: list[str], toml: str, message: str) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(toml)
    done = run_cli("serve", "--config", str(config), *args, store=tmp_path / "mail", timeout=30)
    assert done.returncode != 0
    assert message in done.stderr, done.stderr
    if toml:
        assert str(config) in done.stderr
    assert "Traceback" not in done.stderr


def test_starttls_and_implicit_tls_on_every_worker(start_process: Processes, tmp_path: Path) -> None:
    """With TLS on, the certificate is made once by the parent; both workers listen on the
    implicit-TLS port too and offer STARTTLS with that certificate."""
    server = start_workers(start_process, tmp_path, '[tls]\nmode = "on"\nport = 0\n', http=False)
    assert server.tls_port
    pids = worker_pids(server.log())
    context = ssl.create_default_context(cafile=str(server.store / "tls" / "ca.pem"))
    served: set[int] = set()
    for _ in range(24):
        with socket.create_connection(("127.0.0.1", server.tls_port)) as raw, \
                context.wrap_socket(raw, server_hostname="smtp-sink.localhost") as tls:
            assert tls.recv(3) == b"220"
            served.add(owner(tls, pids))
    assert served == set(pids)
    with smtplib.SMTP("127.0.0.1", server.port) as smtp:
        smtp.starttls(context=context)
        smtp.sendmail("a@example.test", ["b@example.test"], b"Subject: tls\r\n\r\nhi\r\n")
