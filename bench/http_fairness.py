"""One slow HTTP request must hold up neither SMTP nor other HTTP requests (issue 13, section 2).

``python -m bench.http_fairness [--parts N] [--attachment BYTES] [--rounds N]`` starts ``smtp-sink
serve`` (the code on ``PYTHONPATH``, so an older checkout can be measured the same way), drops a
message of N tiny parts (the issue's 280,000) and one with a big attachment into its store, and
runs each attack request several times. Meanwhile
one client does back-to-back SMTP ``NOOP`` round trips and another fetches a small message's
headers over and over. Printed per attack: how long the attack request took, the worst and
median NOOP round trip, and the worst time another API request waited.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import multiprocessing
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path

from .tools import HOST, free_port, stop, wait_smtp

SMALL = b"From: ann@example.test\r\nTo: bob@example.test\r\nSubject: small\r\n\r\nsmall body\r\n"


def many_parts(count: int) -> bytes:
    """An HTML part (so /view/{id}.html has something to show), then ``count`` text parts."""
    head = (b"From: a@example.test\r\nSubject: many parts\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
            b"--b\r\nContent-Type: text/html\r\n\r\n<p>many parts</p>\r\n")
    return head + b"--b\r\nContent-Type: text/plain\r\n\r\nx\r\n" * count + b"--b--\r\n"


def big_attachment(size: int) -> bytes:
    """A text part and a base64 attachment of ``size`` bytes."""
    data = base64.encodebytes(bytes(range(256)) * (size // 256)).replace(b"\n", b"\r\n")
    return (b"From: a@example.test\r\nSubject: big attachment\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
            b"--b\r\nContent-Type: text/plain\r\n\r\nbody\r\n--b\r\nContent-Type: application/octet-stream\r\n"
            b"Content-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=big.bin\r\n\r\n"
            + data + b"--b--\r\n")


def new_id(offset: int) -> str:
    """A message id (the store's format) without importing the package under test."""
    alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
    value = int(time.time() * 1000) + offset
    digits = "".join(alphabet[(value >> shift) & 31] for shift in range(45, -1, -5))
    return digits + "0" * 16


def noop_loop(port: int, stopped: Callable[[], bool]) -> list[float]:
    """Back-to-back NOOP round trips (5 ms apart) until ``stopped()``."""
    samples = []
    with socket.create_connection((HOST, port), timeout=60) as sock:
        reader = sock.makefile("rb")
        reader.readline()
        while not stopped():
            start = time.perf_counter()
            sock.sendall(b"NOOP\r\n")
            if not reader.readline().startswith(b"250"):
                raise RuntimeError("NOOP not answered 250")
            samples.append(time.perf_counter() - start)
            time.sleep(0.005)
        sock.sendall(b"QUIT\r\n")
    return samples


def get(port: int, path: str, timeout: float = 300) -> tuple[int, int]:
    connection = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, len(response.read())
    finally:
        connection.close()


def wait_http(port: int, timeout: float = 30.0) -> None:
    """Until the API answers (it starts listening just after SMTP)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if get(port, "/api/v1/messages")[0] == 200:
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.05)


def api_loop(port: int, path: str, stopped: Callable[[], bool]) -> list[float]:
    """The same small API request over and over until ``stopped()``; each one's latency."""
    samples = []
    while not stopped():
        start = time.perf_counter()
        status, _ = get(port, path)
        if status != 200:
            raise RuntimeError(f"GET {path}: {status}")
        samples.append(time.perf_counter() - start)
        time.sleep(0.005)
    return samples


def _probe(kind: str, port: int, path: str, pipe: Connection) -> None:
    """A probe in its own process (no GIL shared with the other clients): runs until told to stop."""
    pipe.send("ready")
    stopped = pipe.poll
    samples = noop_loop(port, stopped) if kind == "noop" else api_loop(port, path, stopped)
    pipe.recv()
    pipe.send(samples)


def measure(smtp: int, http: int, attack: str, small: str, rounds: int, least: float = 1.0) -> dict[str, float]:
    """Make the ``attack`` request ``rounds`` times (and for at least ``least`` seconds) while a
    NOOP probe and an API probe run, each in its own process; return the figures."""
    probes = []
    for kind, port in (("noop", smtp), ("api", http)):
        ours, theirs = multiprocessing.Pipe()
        process = multiprocessing.Process(target=_probe, args=(kind, port, f"/api/v1/message/{small}/headers", theirs))
        process.start()
        ours.recv()
        probes.append((process, ours))
    time.sleep(0.3)
    took = []
    started = time.perf_counter()
    while len(took) < rounds or time.perf_counter() - started < least:
        start = time.perf_counter()
        status, _ = get(http, attack)
        took.append(time.perf_counter() - start)
        if status != 200:
            raise RuntimeError(f"GET {attack}: {status}")
    results = []
    for process, pipe in probes:
        pipe.send("stop")
        results.append(pipe.recv())
        process.join(60)
    noop, other = results
    return {"attack": statistics.median(took), "noop_max": max(noop), "noop_median": statistics.median(noop),
            "noops": len(noop), "api_max": max(other), "apis": len(other)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.http_fairness", description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", type=int, default=280_000, help="parts of the hostile message (default 280000)")
    parser.add_argument("--attachment", type=int, default=24_000_000,
                        help="bytes of the big attachment (default 24000000: a message at the default 32 MiB limit)")
    parser.add_argument("--rounds", type=int, default=3, help="times each attack request is made (default 3)")
    parser.add_argument("--least", type=float, default=1.0,
                        help="seconds each attack is repeated for at least (default 1)")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="http-fairness-"))
    store = work / "mail"
    store.mkdir()
    hostile, big, small = new_id(0), new_id(1), new_id(2)
    (store / f"{hostile}.eml").write_bytes(many_parts(args.parts))
    (store / f"{big}.eml").write_bytes(big_attachment(args.attachment))
    (store / f"{small}.eml").write_bytes(SMALL)
    smtp, http = free_port(), free_port()
    proc = subprocess.Popen([sys.executable, "-m", "smtp_sink", "serve", "--store", str(store), "--port", str(smtp),
                             "--http-port", str(http), "--tls", "off", "--log-level", "warning"],
                            env=dict(os.environ), stdin=subprocess.DEVNULL, cwd=work)
    try:
        wait_smtp(smtp, proc)
        wait_http(http)  # and index both messages before measuring
        size, big_size = ((store / f"{name}.eml").stat().st_size for name in (hostile, big))
        print(f"hostile message: {args.parts:,} parts, {size / 1e6:.1f} MB; big attachment: {big_size / 1e6:.1f} MB "
              f"message; {args.rounds} rounds per attack; "
              f"server {sys.executable} -m smtp_sink ({os.environ.get('PYTHONPATH') or 'installed'})")
        print(f"{'attack':<28} {'request':>9} {'NOOP worst':>11} {'NOOP median':>12} {'other API worst':>16}")
        for name, path in (("part/1", f"/api/v1/message/{hostile}/part/1"),
                           ("detail", f"/api/v1/message/{hostile}"),
                           ("headers", f"/api/v1/message/{hostile}/headers"),
                           ("view (HTML)", f"/view/{hostile}.html"),
                           ("big attachment part/2", f"/api/v1/message/{big}/part/2"),
                           ("big attachment detail", f"/api/v1/message/{big}"),
                           ("list page", "/api/v1/messages")):
            figures = measure(smtp, http, path, small, args.rounds, args.least)
            print(f"{name:<28} {figures['attack'] * 1000:>7.0f}ms {figures['noop_max'] * 1000:>9.1f}ms "
                  f"{figures['noop_median'] * 1000:>10.2f}ms {figures['api_max'] * 1000:>14.1f}ms"
                  f"   ({figures['noops']} NOOPs, {figures['apis']} API calls)")
    finally:
        stop(proc)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
