"""Hostile clients against ``smtp-sink serve``: memory and fairness under flood and slowloris.

    python -m bench.backpressure [--clients 1000] [--burst 262144] [--loop auto|asyncio|uvloop]

Flood: ``--clients`` connections each send one ``--burst`` of pipelined ``HELP`` and never read a
reply. Printed: the server's RSS before, at its peak and after they close (VmRSS from /proc),
and how long a separate client takes to send one message meanwhile (goals: growth under
100 MB, back to the baseline after, the other send under 1 s).

Slowloris: ``max_connections`` clients trickle one byte every ``--trickle`` seconds, first inside
a command line, then inside DATA. Printed: how long until the server closed each of them with
421 (``command_timeout``, ``data_min_rate`` after ``data_rate_grace``), and whether a client that
was refused while they held the slots gets in afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import smtplib
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from .tools import HOST, free_port, proc_cpu, proc_status, settle, stop, wait_smtp

MB = 1_000_000
MESSAGE = b"Subject: meanwhile\r\n\r\nsent while others flood the server\r\n"


def start_server(folder: Path, loop: str, **smtp: object) -> tuple[subprocess.Popen[bytes], int]:
    """``smtp-sink serve`` on a free port with ``[smtp]`` settings from the environment."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMTP_SINK_")}
    env.update({f"SMTP_SINK_SMTP_{key.upper()}": str(value) for key, value in smtp.items()})
    proc = subprocess.Popen(
        [sys.executable, "-m", "smtp_sink", "serve", "--port", str(port), "--no-http", "--store", str(folder),
         "--loop", loop, "--log-level", "warning"],
        env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    wait_smtp(port, proc)
    return proc, port


def send_one(port: int) -> float:
    """Seconds one complete SMTP transaction takes (connect to QUIT)."""
    started = time.perf_counter()
    with smtplib.SMTP(HOST, port, timeout=120) as smtp:
        smtp.sendmail("meanwhile@example.test", ["rcpt@example.test"], MESSAGE)
    return time.perf_counter() - started


class Sampler(threading.Thread):
    """Peak VmRSS of a process, sampled every 50 ms."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.peak, self.running = pid, 0, True

    def run(self) -> None:
        while self.running:
            self.peak = max(self.peak, proc_status(self.pid, "VmRSS"))
            time.sleep(0.05)


async def open_flood(port: int, clients: int, burst: bytes) -> list[asyncio.StreamWriter]:
    """Connect ``clients`` times and write ``burst`` on each; nothing is ever read."""
    async def one() -> asyncio.StreamWriter:
        _, writer = await asyncio.open_connection(HOST, port, limit=1 << 16)
        writer.transport.set_write_buffer_limits(high=len(burst) * 2)  # write it all, do not wait
        writer.write(burst)
        return writer

    writers: list[asyncio.StreamWriter] = []
    for start in range(0, clients, 100):
        writers += await asyncio.gather(*(one() for _ in range(min(100, clients - start))))
    return writers


def flood(args: argparse.Namespace, work: Path) -> dict[str, float]:
    proc, port = start_server(work / "flood", args.loop, max_connections=args.clients + 100)
    try:
        send_one(port)
        settle(proc.pid)
        baseline = proc_status(proc.pid, "VmRSS")
        cpu_before = sum(proc_cpu(proc.pid))
        sampler = Sampler(proc.pid)
        sampler.start()
        meanwhile: list[float] = []
        flooding = threading.Event()
        flooding.set()

        def victim() -> None:  # sends one message after another for as long as the flood lasts
            while flooding.is_set():
                meanwhile.append(send_one(port))
                time.sleep(0.05)

        sender = threading.Thread(target=victim)
        loop = asyncio.new_event_loop()
        burst = b"HELP\r\n" * (args.burst // 6)
        started = time.perf_counter()
        sender.start()
        writers = loop.run_until_complete(open_flood(port, args.clients, burst))
        connected = time.perf_counter() - started
        loop.run_until_complete(asyncio.sleep(1))  # the flood's writes go on while the server works
        settle(proc.pid)
        flooding.clear()
        sender.join()
        during = proc_status(proc.pid, "VmRSS")
        cpu = sum(proc_cpu(proc.pid)) - cpu_before
        for writer in writers:
            writer.transport.abort()
        loop.run_until_complete(asyncio.sleep(0.5))
        loop.close()
        time.sleep(1.5)  # the server's sweep notices they left
        settle(proc.pid)
        after = proc_status(proc.pid, "VmRSS")
        sampler.running = False
        sampler.join()
        if proc.poll() is not None:
            raise SystemExit("the server died during the flood")
        return {"baseline": baseline, "peak": max(sampler.peak, during), "during": during, "after": after,
                "connect": connected, "cpu": cpu, "sends": len(meanwhile), "send_max": max(meanwhile),
                "send_median": sorted(meanwhile)[len(meanwhile) // 2]}
    finally:
        stop(proc)


def trickle(port: int, opening: bytes, results: list[float], gap: float, give_up: float) -> None:
    """Send ``opening`` then one byte every ``gap`` s; record when the server closed (inf: never)."""
    started = time.monotonic()
    with socket.create_connection((HOST, port), timeout=give_up) as sock:
        sock.recv(512)
        sock.sendall(opening)
        sock.settimeout(gap)
        while time.monotonic() - started < give_up:
            try:
                data = sock.recv(4096)
                if not data:
                    results.append(time.monotonic() - started)
                    return
                if data.startswith(b"421") or b"\r\n421" in data:
                    continue  # the 421, the close follows
            except TimeoutError:
                pass
            except OSError:  # reset: closed while our byte was on its way
                results.append(time.monotonic() - started)
                return
            try:
                sock.sendall(b"x")
            except OSError:
                results.append(time.monotonic() - started)
                return
    results.append(float("inf"))


def refused(port: int) -> bool:
    """True when a new client gets 421 (every slot taken)."""
    with socket.create_connection((HOST, port), timeout=10) as sock:
        return sock.recv(512).startswith(b"421")


def slowloris(args: argparse.Namespace, work: Path, phase: str) -> dict[str, float]:
    slots = 20
    limits = {} if args.server_defaults else {"command_timeout": args.command_timeout,
                                              "data_rate_grace": args.data_grace}
    proc, port = start_server(work / f"slow-{phase}", args.loop, max_connections=slots, **limits)
    opening = b"EHLO " if phase == "command" else (
        b"EHLO s.test\r\nMAIL FROM:<a@example.test>\r\nRCPT TO:<b@example.test>\r\nDATA\r\n")
    give_up = 3 * max(args.command_timeout, args.data_grace) + 10
    try:
        results: list[float] = []
        threads = [threading.Thread(target=trickle, args=(port, opening, results, args.trickle, give_up))
                   for _ in range(slots)]
        for thread in threads:
            thread.start()
        time.sleep(1)
        was_refused = refused(port)
        for thread in threads:
            thread.join()
        send = send_one(port)
        return {"held_max": max(results), "held_min": min(results), "was_refused": was_refused, "send_after": send}
    finally:
        stop(proc)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.backpressure", description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--burst", type=int, default=256 * 1024, help="bytes of pipelined HELP per client")
    parser.add_argument("--loop", default="auto", choices=("auto", "asyncio", "uvloop"))
    parser.add_argument("--trickle", type=float, default=3.0, help="seconds between slowloris bytes")
    parser.add_argument("--command-timeout", type=float, default=10.0, help="[smtp] command_timeout to run with")
    parser.add_argument("--data-grace", type=float, default=10.0, help="[smtp] data_rate_grace to run with")
    parser.add_argument("--server-defaults", action="store_true",
                        help="slowloris against the server's own limits (e.g. a version without them)")
    parser.add_argument("--skip", default="", help="comma-separated: flood, command, data")
    args = parser.parse_args(argv)
    skip = set(filter(None, args.skip.split(",")))
    with tempfile.TemporaryDirectory(prefix="bench-backpressure-") as tmp:
        work = Path(tmp)
        if "flood" not in skip:
            f = flood(args, work)
            print(f"flood: {args.clients} clients x {args.burst} B of pipelined HELP, never reading "
                  f"(loop {args.loop}, connected in {f['connect']:.1f} s, "
                  f"server CPU {f['cpu']:.1f} s with the other client's sends)")
            print(f"  RSS baseline {f['baseline'] / MB:.1f} MB, peak {f['peak'] / MB:.1f} MB "
                  f"(growth {(f['peak'] - f['baseline']) / MB:.1f} MB), settled during {f['during'] / MB:.1f} MB, "
                  f"after close {f['after'] / MB:.1f} MB ({(f['after'] - f['baseline']) / MB:+.1f} MB)")
            print(f"  another client sending one message after another meanwhile: {f['sends']:.0f} sends, "
                  f"worst {f['send_max']:.3f} s, median {f['send_median']:.3f} s")
        for phase in ("command", "data"):
            if phase in skip:
                continue
            r = slowloris(args, work, phase)
            limit = ("the server's own limits" if args.server_defaults
                     else f"command_timeout={args.command_timeout:g} s" if phase == "command"
                     else f"data_min_rate default after data_rate_grace={args.data_grace:g} s")
            print(f"slowloris in {phase}: 20 clients (max_connections=20), one byte every {args.trickle:g} s, {limit}")
            closed = (f"closed with 421 after {r['held_min']:.1f}-{r['held_max']:.1f} s"
                      if r["held_max"] < float("inf") else "still holding their sessions when the bench gave up")
            print(f"  a 21st client refused while they held the slots: {r['was_refused']}; {closed}; "
                  f"a send afterwards took {r['send_after']:.3f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
