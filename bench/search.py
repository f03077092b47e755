"""List and search over a big store (issue 15: under 50 ms at 100,000 messages).

Writes ``COUNT`` varied messages as ``<id>.eml`` files (senders from 20 domains, 5,000
recipients, a tag on every 10th, an attachment on every 7th, subjects ``Order N topicKKK``),
indexes them once, marks every 3rd read, then times each query ``--runs`` times, in this process
(``Store.query``, what the HTTP handler runs) and over HTTP (``smtp-sink serve``, one request a
connection), and prints p50 / p95 / max in milliseconds and each query's match count.

    python -m bench.search                 # 100,000 messages
    python -m bench.search --count 20000 --runs 10
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path

from smtp_sink.ids import encode
from smtp_sink.store import Store

from .servers import serve_ours
from .tools import HOST

TOPICS = 1000
ATTACHMENT = "JVBERi0xLjQKJcfsj6IKNSAwIG9iago8PC9MZW5ndGggNiAwIFI+PgpzdHJlYW0K"  # a few bytes of "PDF"

# (label, search query or None for the plain list, extra query parameters)
QUERIES: list[tuple[str, str | None, dict[str, str]]] = [
    ("list, newest 50", None, {}),
    ("list, before= cursor (middle)", None, {"before": "MIDDLE"}),
    ("list, start=50000", None, {"start": "50000"}),
    ("free text, rare: 4242", "4242", {}),
    ("free text, everywhere: ank you", "ank you", {}),
    ('phrase: "your order 4242 is"', '"your order 4242 is"', {}),
    ("from:shop7.test", "from:shop7.test", {}),
    ("from:orders (all match)", "from:orders", {}),
    ("subject:topic123", "subject:topic123", {}),
    ("addressed:user42@", "addressed:user42@", {}),
    ("tag:batch07", "tag:batch07", {}),
    ("negation: -topic007", "-topic007", {}),
    ("negation: -tag:batch07", "-tag:batch07", {}),
    ("is:unread", "is:unread", {}),
    ("has:attachment", "has:attachment", {}),
    ("larger:1k", "larger:1k", {}),
    ("combined: from:shop3 is:unread -has:attachment", "from:shop3 is:unread -has:attachment", {}),
]


def make_store(folder: Path, count: int) -> None:
    """``count`` messages as the server stores them, one millisecond apart, ending now."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tmp").mkdir(exist_ok=True)
    rng = random.Random(15)
    start_ms = int(time.time() * 1000) - count
    for n in range(count):
        message_id = encode(start_ms + n, 10) + encode(rng.getrandbits(80), 16)
        when = time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime((start_ms + n) / 1000))
        user, shop = f"user{n % 5000}", f"shop{n % 20}"
        head = (f"Return-Path: <orders@{shop}.test>\r\nX-Original-To: {user}@example.test\r\n"
                f"Received: from bench.example.test ([127.0.0.1])\r\n\tby smtp-sink.localhost (smtp-sink) with ESMTP"
                f" id {message_id}\r\n\tfor <{user}@example.test>;\r\n\t{when}\r\n"
                f"From: Shop {n % 20} <orders@{shop}.test>\r\nTo: {user}@example.test\r\n"
                f"Subject: Order {n} topic{n % TOPICS:03d}\r\nDate: {when}\r\n"
                f"Message-ID: <{n}.{message_id}@example.test>\r\nMIME-Version: 1.0\r\n")
        if n % 10 == 0:
            head += f"X-Tags: batch{n // 10 % 100:02d}\r\n"
        text = f"Hello {user},\r\n\r\nyour order {n} is on its way. " + "Thank you for shopping with us. " * 12
        if n % 7 == 0:
            body = (f'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\n'
                    f"{text}\r\n--b\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n"
                    f'Content-Disposition: attachment; filename="invoice-{n}.pdf"\r\n\r\n{ATTACHMENT}\r\n--b--\r\n')
        else:
            body = f"Content-Type: text/plain; charset=utf-8\r\n\r\n{text}\r\n"
        (folder / f"{message_id}.eml").write_bytes((head + body).encode())


def percentiles(samples: list[float]) -> str:
    """``p50 / p95 / max`` in milliseconds."""
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return f"{statistics.median(ordered) * 1000:7.1f} {p95 * 1000:7.1f} {ordered[-1] * 1000:7.1f}"


def timed(work: Callable[[], object], runs: int) -> list[float]:
    work()  # warm-up
    samples = []
    for _ in range(runs):
        began = time.perf_counter()
        work()
        samples.append(time.perf_counter() - began)
    return samples


def in_process(store: Store, runs: int, middle: str) -> dict[str, tuple[list[float], int]]:
    """Each query through ``Store.query`` (``limit`` 50): samples and match count."""
    results = {}
    for label, search, extra in QUERIES:
        start = int(extra.get("start", 0))
        before = float(middle) if extra.get("before") else None

        def work(search: str | None = search, start: int = start, before: float | None = before) -> int:
            return store.query(start, 50, search, before=before).matched

        results[label] = (timed(work, runs), work())
    return results


def over_http(folder: Path, runs: int, middle: str) -> dict[str, list[float]]:
    """Each query as ``GET /api/v1/messages`` or ``/api/v1/search`` of a ``smtp-sink serve``."""
    results = {}
    with serve_ours(folder) as (_, http_port):
        base = f"http://{HOST}:{http_port}/api/v1"
        for label, search, extra in QUERIES:
            params = {**extra, "limit": "50"}
            if "before" in params:
                params["before"] = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(float(middle)))
            if search is not None:
                params["query"] = search
            url = f"{base}/{'search' if search is not None else 'messages'}?{urllib.parse.urlencode(params)}"

            def get(url: str = url) -> bytes:
                with urllib.request.urlopen(url, timeout=60) as response:
                    return bytes(response.read())

            results[label] = timed(get, runs)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.search", description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=100_000, help="messages in the store (default 100,000)")
    parser.add_argument("--runs", type=int, default=30, help="timed runs of each query (default 30)")
    parser.add_argument("--keep", metavar="DIR", help="build the store in DIR and keep it (reused if present)")
    args = parser.parse_args(argv)
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench-search-"))
    folder = work / f"store-{args.count}"
    try:
        if not folder.is_dir():
            began = time.perf_counter()
            make_store(folder, args.count)
            print(f"wrote {args.count} messages in {time.perf_counter() - began:.1f} s", flush=True)
        began = time.perf_counter()
        store = Store(folder)
        store.query(limit=1)  # builds the index from the files
        ids = sorted(store.ids())
        store.mark_read(ids[::3], True)
        print(f"indexed in {time.perf_counter() - began:.1f} s; index file "
              f"{os.path.getsize(folder / 'index.sqlite') / 1e6:.0f} MB", flush=True)
        middle = str(store.summary(ids[len(ids) // 2]).created)
        local = in_process(store, args.runs, middle)
        store.close()
        remote = over_http(folder, args.runs, middle)
        print(f"\n{args.count} messages, {args.runs} runs each, milliseconds (p50 / p95 / max), page of 50")
        print(f"{'query':<48} {'matches':>8}   {'Store.query (p50 p95 max)':>25}   {'HTTP (p50 p95 max)':>23}")
        for label, _, _ in QUERIES:
            samples, matched = local[label]
            print(f"{label:<48} {matched:>8}   {percentiles(samples):>25}   {percentiles(remote[label]):>23}")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
