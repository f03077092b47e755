"""Does hostile content stall the server? The worst NOOP round trip of another client per attack.

    python -m bench.stall [--source DIR] [--parts N]

Starts the server (``python -m smtp_sink serve``, uvloop when installed) on a temporary store.
A separate process keeps one SMTP session doing NOOP round trips the whole time. Then each
attack of issue 13 §2 runs, one step at a time, and the table shows how long each step took and
the worst (and median) NOOP round trip seen while it ran. Goal: worst under 100 ms.

  * a 20 KB message whose To: is 20,000 ``a`` (quadratic address regex): sent, indexed, detail;
  * 64 KB of ``<script>`` in an HTML body (quadratic HTML-to-text regexes): sent, indexed, detail;
  * a 14 MB message with 280,000 parts: sent, indexed, then ``part/1``, ``headers``, detail.

``--source DIR`` runs the server from another source tree (e.g. an older revision unpacked with
``git archive <rev> smtp_sink | tar -x -C DIR``) to compare before and after.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import multiprocessing.connection
import os
import smtplib
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .tools import HOST, BenchError, free_port, loadavg, stop, wait_smtp

GOAL_MS = 100.0
STEP_TIMEOUT = 300.0
HEAD = b"From: Attacker <a@example.test>\r\nSubject: %s\r\n"


def to_attack() -> bytes:
    return HEAD % b"to-20000-a" + b"To: " + b"a" * 20000 + b"\r\n\r\nhello\r\n"


def script_attack() -> bytes:
    return (HEAD % b"script-64k" + b"To: b@example.test\r\nContent-Type: text/html\r\n\r\n"
            + b"<script>" * 8192 + b"\r\n")


def parts_attack(count: int) -> bytes:
    """``count`` parts of 51 bytes each (280,000 make 14 MB)."""
    one = b"--p\r\nContent-Type: text/plain\r\n\r\n" + b"x" * 16 + b"\r\n"
    return (HEAD % b"parts" + b"To: b@example.test\r\nContent-Type: multipart/mixed; boundary=p\r\n\r\n"
            + one * count + b"--p--\r\n")


# -- the NOOP prober (its own process: the bench's own work must not delay its round trips) -------


def _probe(port: int, conn: multiprocessing.connection.Connection) -> None:
    """NOOP round trips until the parent sends anything; then send back ``[(start, seconds)]``."""
    samples: list[tuple[float, float]] = []
    sock = socket.create_connection((HOST, port), timeout=STEP_TIMEOUT)
    reader = sock.makefile("rb")

    def reply() -> bytes:
        while True:
            line = reader.readline()
            if not line:
                raise BenchError("the server closed the NOOP session")
            if line[3:4] != b"-":
                return line

    reply()
    sock.sendall(b"EHLO prober\r\n")
    reply()
    while not conn.poll():
        start = time.monotonic()
        sock.sendall(b"NOOP\r\n")
        if not reply().startswith(b"250"):
            raise BenchError("NOOP was not answered 250")
        samples.append((start, time.monotonic() - start))
        time.sleep(0.001)
    sock.sendall(b"QUIT\r\n")
    sock.close()
    conn.send(samples)


@dataclass
class Step:
    attack: str
    step: str
    start: float
    end: float
    rounds: int = 1


def _http(port: int, path: str) -> bytes:
    with urllib.request.urlopen(f"http://{HOST}:{port}{path}", timeout=STEP_TIMEOUT) as response:
        return response.read()


def _total(http_port: int) -> int:
    return json.loads(_http(http_port, "/api/v1/info"))["Messages"]


def _send_and_index(smtp_port: int, http_port: int, raw: bytes) -> str:
    """Send ``raw``; return its id once the index lists it."""
    before = _total(http_port)
    with smtplib.SMTP(HOST, smtp_port, timeout=STEP_TIMEOUT) as smtp:
        smtp.sendmail("a@example.test", ["b@example.test"], raw)
    deadline = time.monotonic() + STEP_TIMEOUT
    while _total(http_port) <= before:
        if time.monotonic() > deadline:
            raise BenchError("the message was never indexed")
        time.sleep(0.02)
    return json.loads(_http(http_port, "/api/v1/messages?limit=1"))["messages"][0]["ID"]


def run_attacks(smtp_port: int, http_port: int, parts: int, least: float) -> list[Step]:
    steps: list[Step] = []

    def timed(attack: str, step: str, work: Callable[[], object]) -> object:
        """Run ``work`` again and again for at least ``least`` seconds (once at the least), so that
        the prober sees many round trips while it runs."""
        start = time.monotonic()
        rounds = 0
        while True:
            result = work()
            rounds += 1
            if time.monotonic() - start >= least:
                break
        steps.append(Step(attack, step, start, time.monotonic(), rounds))
        return result

    start = time.monotonic()
    time.sleep(2.0)
    steps.append(Step("(idle)", "-", start, time.monotonic(), 0))
    for attack, raw, extra in (
        ("To: 20,000 'a' (20 KB)", to_attack(), []),
        ("64 KB of <script>", script_attack(), []),
        (f"{len(parts_attack(parts)) / 1e6:.0f} MB, {parts:,} parts", parts_attack(parts), ["part/1", "headers"]),
    ):
        message_id = timed(attack, "SMTP + index", lambda raw=raw: _send_and_index(smtp_port, http_port, raw))
        url = f"/api/v1/message/{message_id}"
        for step in extra:
            timed(attack, step, lambda path=f"{url}/{step}": _http(http_port, path))
        timed(attack, "detail", lambda path=url: _http(http_port, path))
    return steps


def report(steps: list[Step], samples: list[tuple[float, float]]) -> bool:
    """Print the table; True when every worst round trip is under the goal."""
    print(f"{'attack':<28} {'step':<13} {'rounds':>6} {'seconds':>8} {'worst NOOP ms':>14} {'median ms':>10} "
          f"{'NOOPs':>6}")
    ok = True
    for step in steps:
        # every round trip that overlapped the step (one that started before it and ended inside counts)
        seen = [rtt for start, rtt in samples if start <= step.end and start + rtt >= step.start]
        worst = max(seen) * 1000 if seen else float("nan")
        median = statistics.median(seen) * 1000 if seen else float("nan")
        ok = ok and worst < GOAL_MS
        print(f"{step.attack:<28} {step.step:<13} {step.rounds:>6} {step.end - step.start:>8.2f} {worst:>14.1f} "
              f"{median:>10.2f} {len(seen):>6}")
    print(f"goal: worst NOOP round trip under {GOAL_MS:.0f} ms: {'met' if ok else 'NOT met'} (load {loadavg()})")
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, help="run the server from this source tree (PYTHONPATH)")
    parser.add_argument("--parts", type=int, default=280_000, help="parts of the big message (default 280000)")
    parser.add_argument("--least", type=float, default=1.0,
                        help="seconds each step is repeated for, at the least (default 1)")
    args = parser.parse_args(argv)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMTP_SINK_")}
    if args.source:
        env["PYTHONPATH"] = str(args.source.resolve())
    smtp_port, http_port = free_port(), free_port()
    with tempfile.TemporaryDirectory(prefix="stall-") as work:
        command = [sys.executable, "-m", "smtp_sink", "serve", "--store", str(Path(work) / "mail"),
                   "--port", str(smtp_port), "--http-port", str(http_port), "--log-level", "warning"]
        server = subprocess.Popen(command, cwd=work, env=env, stdin=subprocess.DEVNULL)
        try:
            wait_smtp(smtp_port, server)
            parent, child = multiprocessing.Pipe()
            prober = multiprocessing.Process(target=_probe, args=(smtp_port, child), daemon=True)
            prober.start()
            time.sleep(0.5)
            try:
                steps = run_attacks(smtp_port, http_port, args.parts, args.least)
            finally:
                parent.send("stop")
                samples = parent.recv() if parent.poll(STEP_TIMEOUT) else []
                prober.join(10)
        finally:
            stop(server)
    source = args.source or Path(__file__).resolve().parent.parent
    print(f"server source: {source}")
    return 0 if report(steps, samples) else 1


if __name__ == "__main__":
    raise SystemExit(main())
