"""The web page under load (issue 16): list requests made by open tabs while mail arrives, the
SMTP time meanwhile, and the first paint of the page over a big store.

1. Live: a ``smtp-sink serve`` on an empty store; 1,000 messages over one SMTP connection with no
   client, with ``--tabs`` (3) bare WebSocket clients of ``/api/events`` (the server's share), and
   with 3 pages open in headless chromium (Playwright; the browser shares the machine's cores).
   Counts the requests the tabs make to ``/api/v1/messages`` and ``/api/v1/search`` from the first
   message until the stream is quiet (goal: under 30 in all). Rounds are interleaved (load noise).
2. First paint: a store of ``--count`` (100,000) messages written as ``.eml`` files (the builder of
   :mod:`bench.search`) and indexed once; each run opens the page in a fresh browser context and
   times ``goto`` until the first row is visible (goal: under 1 s).

    python -m bench.page_live                      # 1,000 arrivals, 3 tabs, 100,000 stored
    python -m bench.page_live --count 20000 --keep /tmp/page-store
"""

from __future__ import annotations

import argparse
import re
import shutil
import smtplib
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from smtp_sink.store import Store

from .search import make_store
from .servers import serve_ours
from .tools import HOST

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]
LIST_REQUEST = re.compile(r"/api/v1/(messages|search)(\?|$)")


def send_many(port: int, count: int) -> float:
    """``count`` small messages over one SMTP connection; the seconds it took."""
    began = time.perf_counter()
    with smtplib.SMTP(HOST, port) as smtp:
        for n in range(count):
            message = EmailMessage()
            message["From"] = "Load <load@example.test>"
            message["To"] = f"user{n % 50}@example.test"
            message["Subject"] = f"Arrival {n}"
            message.set_content(f"Message number {n}.\n")
            smtp.send_message(message)
    return time.perf_counter() - began


def delete_all(http_port: int) -> None:
    request = urllib.request.Request(f"http://{HOST}:{http_port}/api/v1/messages", data=b'{"IDs": []}',
                                     method="DELETE", headers={"Content-Type": "application/json"})
    urllib.request.urlopen(request).close()


def read_sockets(http_port: int, count: int) -> None:
    """Run ``count`` WebSocket clients of ``/api/events`` reading every frame until stdin closes;
    prints "ready" once connected and, at the end, the frames each read (one line)."""
    import asyncio

    import aiohttp

    async def run() -> None:
        frames = [0] * count
        async with aiohttp.ClientSession() as session:
            sockets = [await session.ws_connect(f"http://{HOST}:{http_port}/api/events") for _ in range(count)]

            async def read(index: int) -> None:
                async for _ in sockets[index]:
                    frames[index] += 1

            tasks = [asyncio.ensure_future(read(n)) for n in range(count)]
            print("ready", flush=True)
            await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        print(" ".join(map(str, frames)), flush=True)

    asyncio.run(run())


@contextmanager
def sockets(http_port: int, count: int) -> Iterator[list[int]]:
    """``count`` bare WebSocket clients in their own process (not sharing this one's GIL); the list
    yielded is filled with the frames each read when the block ends."""
    proc = subprocess.Popen([sys.executable, "-m", "bench.page_live", "--read-sockets", str(http_port), str(count)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdin is not None and proc.stdout is not None
    if proc.stdout.readline().strip() != "ready":
        raise RuntimeError("the WebSocket clients did not connect")
    frames: list[int] = []
    try:
        yield frames
    finally:
        time.sleep(1)
        proc.stdin.close()
        frames.extend(int(n) for n in proc.stdout.read().split())
        proc.wait()


def with_tabs(browser: Any, smtp_port: int, http_port: int, count: int,
              tabs: int) -> tuple[float, list[str], list[int]]:
    """Send ``count`` with ``tabs`` pages open: (SMTP seconds, list requests, rows per tab)."""
    context = browser.new_context()
    pages = []
    for _ in range(tabs):
        page = context.new_page()
        page.goto(f"http://{HOST}:{http_port}/")
        page.wait_for_selector("body[data-live]")
        pages.append(page)
    pages[0].wait_for_timeout(1500)  # the connect-time reconcile of each tab is done
    requests: list[str] = []
    for page in pages:
        page.on("request", lambda r: requests.append(r.url) if LIST_REQUEST.search(r.url) else None)
    result: dict[str, float] = {}
    sender = threading.Thread(target=lambda: result.update(seconds=send_many(smtp_port, count)))
    sender.start()
    while sender.is_alive():  # keep Playwright's loop turning so the pages' events are seen
        pages[0].wait_for_timeout(100)
    for page in pages:
        page.locator("#count").filter(has_text=f"{count} messages").wait_for(timeout=30_000)
        page.locator("#messages li .subject").first.filter(has_text=f"Arrival {count - 1}").wait_for(timeout=30_000)
    pages[0].wait_for_timeout(4000)  # any coalesced request is due by now
    rows = [page.locator("#messages li").count() for page in pages]
    context.close()
    return result["seconds"], requests, rows


def live(browser: Any, count: int, tabs: int, rounds: int) -> None:
    """Part 1: requests by ``tabs`` open pages per ``count`` arrivals, and the SMTP times (no client,
    ``tabs`` bare WebSocket clients, ``tabs`` browser tabs), in ``rounds`` interleaved rounds."""
    work = Path(tempfile.mkdtemp(prefix="bench-page-live-"))
    times: dict[str, list[float]] = {"no page open": [], f"{tabs} bare WebSocket clients": [], f"{tabs} tabs open": []}
    all_requests: list[int] = []
    try:
        with serve_ours(work / "store") as (smtp_port, http_port):
            for _ in range(rounds):
                times["no page open"].append(send_many(smtp_port, count))
                delete_all(http_port)
                with sockets(http_port, tabs) as frames:
                    times[f"{tabs} bare WebSocket clients"].append(send_many(smtp_port, count))
                assert all(n >= count for n in frames), frames
                delete_all(http_port)
                seconds, requests, rows = with_tabs(browser, smtp_port, http_port, count, tabs)
                times[f"{tabs} tabs open"].append(seconds)
                all_requests.append(len(requests))
                assert rows == [50] * tabs, rows
                delete_all(http_port)
        print(f"{count} messages over one SMTP connection, {rounds} rounds, seconds (median; each round):")
        for label, samples in times.items():
            print(f"  {label:<28} {statistics.median(samples):6.2f}   {' '.join(f'{x:.2f}' for x in samples)}")
        print(f"list/search requests by the {tabs} tabs during the {count} arrivals, per round: {all_requests}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def first_paint(browser: Any, folder: Path, runs: int) -> None:
    """Part 2: time from goto to the first row, on the store in ``folder``."""
    with serve_ours(folder) as (_, http_port):
        samples = []
        for _ in range(runs + 1):  # the first run warms the server's index pages
            context = browser.new_context()
            page = context.new_page()
            began = time.perf_counter()
            page.goto(f"http://{HOST}:{http_port}/", wait_until="commit")
            page.locator("#messages li").first.wait_for(state="visible", timeout=30_000)
            samples.append(time.perf_counter() - began)
            count = page.locator("#count").inner_text()
            context.close()
        print(f"first paint (goto to first row visible), {runs} runs after a warm-up, store: {count}: "
              f"median {statistics.median(samples[1:]) * 1000:.0f} ms, max {max(samples[1:]) * 1000:.0f} ms, "
              f"cold first {samples[0] * 1000:.0f} ms")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.page_live", description=__doc__.split("\n\n")[0])
    parser.add_argument("--arrivals", type=int, default=1000, help="messages sent in part 1 (default 1,000)")
    parser.add_argument("--tabs", type=int, default=3, help="pages open in part 1 (default 3)")
    parser.add_argument("--count", type=int, default=100_000, help="messages stored for part 2 (default 100,000)")
    parser.add_argument("--runs", type=int, default=5, help="timed page loads in part 2 (default 5)")
    parser.add_argument("--keep", metavar="DIR", help="build the part 2 store in DIR and keep it (reused if present)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of part 1 (default 3)")
    parser.add_argument("--skip-paint", action="store_true", help="only part 1")
    parser.add_argument("--skip-live", action="store_true", help="only part 2")
    parser.add_argument("--read-sockets", nargs=2, type=int, metavar=("PORT", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.read_sockets:
        read_sockets(*args.read_sockets)
        return 0
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        if not args.skip_live:
            live(browser, args.arrivals, args.tabs, args.rounds)
        if not args.skip_paint:
            work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench-page-paint-"))
            folder = work / f"store-{args.count}"
            try:
                if not (folder / "index.sqlite").exists():
                    began = time.perf_counter()
                    make_store(folder, args.count)
                    store = Store(folder)
                    store.query(limit=1)  # builds the index from the files
                    store.close()
                    print(f"wrote and indexed {args.count} messages in {time.perf_counter() - began:.0f} s", flush=True)
                first_paint(browser, folder, args.runs)
            finally:
                if not args.keep:
                    shutil.rmtree(work, ignore_errors=True)
        browser.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
