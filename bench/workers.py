"""``python3 -m bench.workers``: ``smtp-sink serve --workers N`` against Postfix ``smtp-sink -d``.

One command, unattended, a few minutes. In the same run, for each repeat: workloads (a) 2,000 x
1 KiB, a new connection per message, and (b) 5,000 x 1 KiB over kept connections (Postfix's
``smtp-source``, 10 sessions) against Postfix ``smtp-sink -d`` (a file per message), ours with
``--workers 1`` and ``--workers 2``; during (b), a separate client's NOOP round trips (p50, p99,
max). Then: how long a message stored by a worker takes to reach the web page's event stream
(250 reply to ``new`` frame), and what a shared rule counter costs per command compared with a
coordinator process asked over a socket. The load average is recorded with every figure (the
machine may be shared); medians over ``--repeat`` runs are printed as a Markdown table and all
runs are written as JSON (``--json``).

Postfix's binaries come from the Debian package (``apt-get download postfix`` + ``dpkg -x``, as
bench/run.sh does), fetched into bench/.cache/ when missing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import smtplib
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .servers import BY_KEY, Server, _files, ours_env
from .tools import CACHE, HOST, SMTP_SOURCE, BenchError, free_port, loadavg, machine, proc_cpu, stop, wait_smtp
from .workloads import WORKLOADS, Workload, smtp_source, verify

NOOP_INTERVAL = 0.002  # seconds between two NOOPs of the latency client


def fetch_postfix() -> None:
    """Postfix's smtp-source and smtp-sink from the Debian package, extracted (nothing installed)."""
    if SMTP_SOURCE.exists():
        return
    CACHE.mkdir(parents=True, exist_ok=True)
    get = ["apt-get", "download", "-o", "APT::Sandbox::User=root", "postfix"]
    if subprocess.run(get, cwd=CACHE, capture_output=True).returncode != 0:
        subprocess.run(["apt-get", "update", "-qq"], check=True, capture_output=True)
        subprocess.run(get, cwd=CACHE, check=True, capture_output=True)
    package = sorted(CACHE.glob("postfix_*.deb"))[-1]
    shutil.rmtree(CACHE / "postfix", ignore_errors=True)
    subprocess.run(["dpkg", "-x", str(package), str(CACHE / "postfix")], check=True)


def _ours(workers: int) -> Server:
    def command(port: int, folder: Path) -> list[str]:
        return [sys.executable, "-m", "smtp_sink", "serve", "--no-http", "--host", HOST, "--port", str(port),
                "--store", str(folder), "--log-level", "warning", "--workers", str(workers)]

    return Server(f"ours-w{workers}", f"smtp-sink --workers {workers}", command, True, lambda f: _files(f, ".eml"),
                  ours_env)


def _listening(port: int) -> int:
    """How many sockets listen on ``port`` (each worker has its own with SO_REUSEPORT)."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as rows:
            next(rows)
            for row in rows:
                fields = row.split()
                if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A":
                    count += 1
    return count


def _tree(pid: int) -> list[int]:
    """``pid`` and its children."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as listing:
            return [pid, *map(int, listing.read().split())]
    except FileNotFoundError:
        return [pid]


def _cpu(pids: list[int]) -> tuple[float, float]:
    user = system = 0.0
    for pid in pids:
        try:
            u, s = proc_cpu(pid)
        except FileNotFoundError:
            continue
        user, system = user + u, system + s
    return user, system


class NoopClient(threading.Thread):
    """One SMTP session sending NOOP every NOOP_INTERVAL s; the round trips in seconds."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port, self.done = port, threading.Event()
        self.times: list[float] = []

    def run(self) -> None:
        with socket.create_connection((HOST, self.port), timeout=30) as sock:
            reader = sock.makefile("rb")
            reader.readline()
            sock.sendall(b"EHLO noop.test\r\n")
            while not reader.readline().startswith(b"250 "):
                pass
            while not self.done.is_set():
                start = time.perf_counter()
                sock.sendall(b"NOOP\r\n")
                reader.readline()
                self.times.append(time.perf_counter() - start)
                time.sleep(NOOP_INTERVAL)
            sock.sendall(b"QUIT\r\n")


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else float("nan")


def run_one(server: Server, workload: Workload, work: Path, workers: int, noop: bool) -> dict[str, Any]:
    """Start ``server`` on an empty folder, drive it with ``workload`` (NOOP client alongside if
    ``noop``), verify what it stored; the figures with the load average before and after."""
    folder = work / f"{server.key}-{workload.key}"
    shutil.rmtree(folder, ignore_errors=True)
    port = free_port()
    load_before = loadavg()
    proc = server.start(port, folder)
    try:
        deadline = time.monotonic() + 60
        while workers > 1 and _listening(port) < workers:  # every worker serving
            if time.monotonic() > deadline:
                raise BenchError(f"{server.label}: {_listening(port)} of {workers} workers listening")
            time.sleep(0.05)
        pids = _tree(proc.pid)
        before = _cpu(pids)
        client = NoopClient(port) if noop else None
        if client is not None:
            client.start()
            time.sleep(0.1)
        try:
            seconds = smtp_source(port, workload.messages, workload.size, workload.sessions,
                                  workload.keep_connection)
        except BenchError as exc:
            raise BenchError(f"{server.label}, ({workload.key}): {exc}") from None
        if client is not None:
            client.done.set()
            client.join(10)
        after = _cpu(pids)
        verify(server, folder, workload.messages, workload.size)
    finally:
        stop(proc)
        shutil.rmtree(folder, ignore_errors=True)
    result: dict[str, Any] = {
        "server": server.key, "workload": workload.key, "seconds": seconds, "rate": workload.messages / seconds,
        "cpu_us_per_message": (after[0] - before[0] + after[1] - before[1]) / workload.messages * 1e6,
        "load_before": load_before, "load_after": loadavg(), "processes": len(pids),
    }
    if client is not None and client.times:
        result["noop_ms"] = {"count": len(client.times), "p50": statistics.median(client.times) * 1e3,
                             "p99": _percentile(client.times, 0.99) * 1e3, "max": max(client.times) * 1e3}
    return result


async def _event_latency(smtp_port: int, http_port: int, count: int) -> list[float]:
    """Seconds from each message's 250 to its ``new`` frame on /api/events (one message at a time)."""
    import aiohttp

    delays: list[float] = []
    async with aiohttp.ClientSession() as session, session.ws_connect(
            f"http://{HOST}:{http_port}/api/events") as ws:
        for _ in range(count):
            def send() -> tuple[str, float]:
                with smtplib.SMTP(HOST, smtp_port) as smtp:
                    smtp.ehlo()
                    smtp.mail("a@example.test")
                    smtp.rcpt("b@example.test")
                    _code, text = smtp.data(b"Subject: latency\r\n\r\nhi\r\n")
                    return text.decode().rsplit(" ", 1)[-1], time.perf_counter()

            message_id, acknowledged = await asyncio.to_thread(send)
            while True:
                frame = json.loads((await ws.receive(timeout=10)).data)
                if frame["Type"] == "new" and frame["Data"]["ID"] == message_id:
                    delays.append(time.perf_counter() - acknowledged)
                    break
    return delays


def event_latency(workers: int, work: Path, count: int) -> dict[str, Any]:
    """Start ours with HTTP on and ``--workers``; the 250-to-event delays of ``count`` messages."""
    folder = work / f"events-w{workers}"
    shutil.rmtree(folder, ignore_errors=True)
    smtp_port, http_port = free_port(), free_port()
    load_before = loadavg()
    proc = subprocess.Popen(
        [sys.executable, "-m", "smtp_sink", "serve", "--host", HOST, "--port", str(smtp_port), "--http-host", HOST,
         "--http-port", str(http_port), "--store", str(folder), "--log-level", "warning", "--workers", str(workers)],
        env=ours_env(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_smtp(smtp_port, proc, timeout=60)
        while workers > 1 and _listening(smtp_port) < workers:
            time.sleep(0.05)
        delays = asyncio.run(_event_latency(smtp_port, http_port, count))
    finally:
        stop(proc)
        shutil.rmtree(folder, ignore_errors=True)
    return {"workers": workers, "count": len(delays), "p50_ms": statistics.median(delays) * 1e3,
            "max_ms": max(delays) * 1e3, "load_before": load_before, "load_after": loadavg()}


def _per_call(call: Callable[[], object], count: int) -> float:
    """CPU microseconds (user + system, this process) per call: load on a shared machine does not count."""
    start = time.process_time()
    for _ in range(count):
        call()
    return (time.process_time() - start) / count * 1e6


def _echo(sock: socket.socket) -> None:  # the coordinator: answers each request
    while data := sock.recv(64):
        sock.sendall(data)


def mechanisms(count: int = 20000) -> dict[str, float]:
    """CPU microseconds per matched command: one process's RuleSet, the shared counters (flock and
    shared memory) with and without a rule, and a coordinator process asked over a socket pair
    (the CPU of both processes, and the wall-clock round trip)."""
    from smtp_sink.rules import Rule, RuleSet, Stage
    from smtp_sink.shared import SharedRuleSet, SharedState

    rule = Rule.from_mapping({"stage": "mail", "code": 451, "schedule": "every", "n": 1000})
    with tempfile.TemporaryDirectory() as folder:
        state = SharedState.create(Path(folder))
        shared = SharedRuleSet(state, [rule], create=True)
        plain = RuleSet([rule])
        figures = {
            "one process, a rule (threading lock)": _per_call(lambda: plain.match(Stage.MAIL, "c", "a@b"), count),
            "shared, a rule (flock + shared counter)": _per_call(lambda: shared.match(Stage.MAIL, "c", "a@b"), count),
            "shared, no rule (one shared read)": 0.0,
        }
        shared.clear()
        figures["shared, no rule (one shared read)"] = _per_call(lambda: shared.match(Stage.MAIL, "c", "a@b"), count)
    ours, theirs = socket.socketpair()
    child = os.fork()
    if child == 0:  # pragma: no cover - the coordinator process
        ours.close()
        _echo(theirs)
        os._exit(0)
    theirs.close()

    def ask() -> None:
        ours.sendall(b"MAIL c a@b\n")
        ours.recv(64)

    wall = time.perf_counter()
    asking = _per_call(ask, count)
    wall = (time.perf_counter() - wall) / count * 1e6
    ours.close()
    _, _, usage = os.wait4(child, 0)
    answering = (usage.ru_utime + usage.ru_stime) / count * 1e6
    figures["coordinator process over a socket pair (CPU of both)"] = asking + answering
    figures["coordinator process over a socket pair (wall round trip)"] = wall
    return figures


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python3 -m bench.workers", description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs per server and workload (median; default 3)")
    parser.add_argument("--quick", action="store_true", help="a tenth of the messages, one run: checks the harness")
    parser.add_argument("--json", type=Path, default=CACHE / "workers.json", help="where to write every run")
    parser.add_argument("--work", metavar="DIR", help="scratch folder for the stores (default: a temporary folder "
                        "in bench/.cache, as python -m bench; e.g. /dev/shm to take the disk out)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    fetch_postfix()
    factor, repeat = (0.1, 1) if args.quick else (1.0, args.repeat)
    workloads = [WORKLOADS["a"].scaled(factor), WORKLOADS["b"].scaled(factor)]
    servers = [(BY_KEY["postfix-d"], 1), (_ours(1), 1), (_ours(2), 2)]
    runs: list[dict[str, Any]] = []
    CACHE.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="work-workers-", dir=args.work or CACHE))
    os.chmod(work, 0o755)  # Postfix's smtp-sink writes as nobody
    print(f"# smtp-sink --workers vs Postfix smtp-sink -d ({time.strftime('%Y-%m-%d %H:%M %Z')})")
    print(f"machine: {machine()}; stores in {work}\n")
    try:
        for round_number in range(repeat):
            order = servers[:]
            random.Random(round_number).shuffle(order)  # no server always runs first (or last)
            for workload in workloads:
                for server, workers in order:
                    result = run_one(server, workload, work, workers, noop=workload.key == "b")
                    runs.append(result)
                    noop = result.get("noop_ms")
                    print(f"  run {round_number + 1} ({workload.key}) {server.label:40} {result['rate']:8.0f} msg/s  "
                          f"{result['cpu_us_per_message']:6.0f} us CPU/msg  load {result['load_before']}"
                          + (f"  NOOP p99 {noop['p99']:.2f} ms max {noop['max']:.2f} ms" if noop else ""),
                          flush=True)
        events = [event_latency(w, work, 20 if args.quick else 100) for w in (1, 2)]
        costs = mechanisms(2000 if args.quick else 20000)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print_table(runs, workloads, servers, events, costs)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"machine": machine(), "runs": runs, "events": events, "mechanisms": costs},
                                    indent=2))
    print(f"\nevery run: {args.json}")
    return 0


def print_table(runs: list[dict[str, Any]], workloads: list[Workload], servers: list[tuple[Server, int]],
                events: list[dict[str, Any]], costs: dict[str, float]) -> None:
    """Medians per server and workload, the ratio to Postfix -d, NOOP latency, event delays, costs."""
    print("\n| workload | server | msg/s (median) | ours / Postfix -d | CPU µs/msg | NOOP p99 / max (ms) | load |")
    print("|---|---|---|---|---|---|---|")
    def median(key: str, field: str, workload: Workload) -> float:
        values = [r[field] for r in runs if r["server"] == key and r["workload"] == workload.key]
        return statistics.median(values) if values else float("nan")

    for workload in workloads:
        postfix = median("postfix-d", "rate", workload)
        for server, _ in servers:
            mine = [r for r in runs if r["server"] == server.key and r["workload"] == workload.key]
            rate = median(server.key, "rate", workload)
            ratio = "" if server.key == "postfix-d" else f"{rate / postfix:.2f}"
            noops = [r["noop_ms"] for r in mine if "noop_ms" in r]
            noop = (f"{statistics.median(n['p99'] for n in noops):.2f} / {max(n['max'] for n in noops):.2f}"
                    if noops else "")
            loads = ", ".join(r["load_before"].split()[0] for r in mine)
            print(f"| ({workload.key}) {workload.messages:,} x 1 KiB | {server.label} | {rate:,.0f} | {ratio} | "
                  f"{median(server.key, 'cpu_us_per_message', workload):.0f} | {noop} | {loads} |")
    print("\n| event delay, 250 to the page's `new` frame | p50 ms | max ms | load |")
    print("|---|---|---|---|")
    for event in events:
        print(f"| --workers {event['workers']} ({event['count']} messages) | {event['p50_ms']:.1f} | "
              f"{event['max_ms']:.1f} | {event['load_before'].split()[0]} |")
    print("\n| fault-rule matching, per command | µs (CPU unless said) |")
    print("|---|---|")
    for name, value in costs.items():
        print(f"| {name} | {value:.2f} |")


if __name__ == "__main__":
    raise SystemExit(main())
