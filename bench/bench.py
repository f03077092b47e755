"""The benchmark driver: ``python -m bench [--quick] [--only a,b,c,d,memory,inspect] [--servers ...]``.

Every server is started on a free 127.0.0.1 port with an empty folder and driven by Postfix's
smtp-source; each figure is the median of ``--runs`` runs (the runs of all servers interleave, so a
burst of load from elsewhere hits them alike). A run whose server did not store every message, or
whose smtp-source saw a failure, prints FAILED with the reason instead of a number.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from . import inspection, memory
from .servers import BY_KEY, OURS, SERVERS
from .tools import CACHE, SMTP_SOURCE, BenchError, loadavg, machine, median, versions
from .workloads import WORKLOADS, Run, loopback_reference, run_once

PARTS = ("a", "b", "c", "d", "memory", "inspect")
DEFAULT_PARTS = ("a", "b", "c", "d", "memory")  # issue 18's figures; inspect (several minutes more) on request
# issue 18's targets for one process: (part, the other server, ours/theirs at least); "socat": (d)'s reference
TARGETS = [("a", "postfix-d", 1.0), ("b", "postfix-d", 1.0), ("c", "postfix-d", 1.3), ("d", "socat", 0.5)] + [
    (part, other, floor) for other, floor in (("aiosmtpd-mailbox", 3.0), ("maildev", 1.0)) for part in "abcd"]
RSS_GROWTH_MAX_MB = 20.0
MB = 1_000_000


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench/run.sh", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="small counts and one run: a smoke test of the harness, not figures to quote")
    parser.add_argument("--only", default=",".join(DEFAULT_PARTS), metavar="PARTS",
                        help=f"comma-separated parts to run, of {','.join(PARTS)} (default {','.join(DEFAULT_PARTS)})")
    parser.add_argument("--servers", default=",".join(s.key for s in SERVERS), metavar="KEYS",
                        help=f"comma-separated servers (default all: {','.join(s.key for s in SERVERS)})")
    parser.add_argument("--runs", type=int, metavar="N", help="runs per figure, the median is printed (default 3)")
    parser.add_argument("--sizes", metavar="N,N", help="store sizes for inspect (default 10000,100000)")
    parser.add_argument("--memory", metavar="FIRST,TOTAL", help="messages for the RSS readings (default 1000,50000)")
    parser.add_argument("--work", metavar="DIR", help="scratch folder for the stores (default: a temporary "
                        "folder under bench/.cache)")
    parser.add_argument("--json", metavar="FILE", help="also write every figure as JSON to FILE")
    args = parser.parse_args(argv)
    args.only = [p.strip() for p in args.only.split(",") if p.strip()]
    args.servers = [s.strip() for s in args.servers.split(",") if s.strip()]
    for part in args.only:
        if part not in PARTS:
            parser.error(f"--only: unknown part {part!r} (known: {', '.join(PARTS)})")
    for key in args.servers:
        if key not in BY_KEY:
            parser.error(f"--servers: unknown server {key!r} (known: {', '.join(BY_KEY)})")
    args.runs = args.runs or (1 if args.quick else 3)
    args.sizes = [int(n) for n in (args.sizes or ("1000,5000" if args.quick else "10000,100000")).split(",")]
    first, total = (int(n) for n in (args.memory or ("500,5000" if args.quick else "1000,50000")).split(","))
    args.memory = (first, total)
    return args


def _fmt(value: float | None, unit: str = "ms") -> str:
    if value is None:
        return inspection.NA
    return f"{value * 1000:,.1f} ms" if unit == "ms" else f"{value:,.2f} s"


def run_throughput(args: argparse.Namespace, work: Path, results: dict) -> None:
    factor = 0.1 if args.quick else 1.0
    servers = [BY_KEY[k] for k in args.servers]
    for key in [p for p in args.only if p in WORKLOADS]:
        workload = WORKLOADS[key].scaled(factor) if args.quick else WORKLOADS[key]
        print(f"\n{workload.describe()}   load average before: {loadavg()}", flush=True)
        runs: dict[str, list[Run]] = {s.key: [] for s in servers}
        failed: dict[str, str] = {}
        for n in range(args.runs):
            for server in servers:
                if server.key in failed:
                    continue
                try:
                    run = run_once(server, workload, work, peak_rss=server.key.startswith(OURS) and key == "b",
                                   noop=key == "b" and server.key in NOOP_SERVERS)
                except BenchError as exc:
                    failed[server.key] = str(exc)
                    print(f"  {server.label:42} run {n + 1}: FAILED: {exc}", flush=True)
                    continue
                runs[server.key].append(run)
                figure = f"{run.mbps:8.1f} MiB/s" if key == "d" else f"{run.rate:8.0f} msg/s"
                user, system = run.cpu_per_message
                noop = "" if not run.noop else (
                    f"; NOOP of another client: p99 {_percentile(run.noop, 99) * 1e3:.2f} ms, "
                    f"max {max(run.noop) * 1e3:.2f} ms of {len(run.noop)}")
                print(f"  {server.label:42} run {n + 1}: {figure} ({run.seconds:.2f} s; server CPU per message: "
                      f"user {user:,.0f} us, system {system:,.0f} us{noop})", flush=True)
        entry: dict = {"workload": workload.describe(), "load_after": loadavg(), "servers": {}}
        for server in servers:
            if server.key in failed:
                entry["servers"][server.key] = {"failed": failed[server.key]}
                continue
            got = runs[server.key]
            entry["servers"][server.key] = {
                "msg_per_s": median([r.rate for r in got]),
                "mib_per_s": median([r.mbps for r in got]),
                "runs_msg_per_s": [round(r.rate, 1) for r in got],
                "cpu_user_us": median([r.cpu_per_message[0] for r in got]),
                "cpu_sys_us": median([r.cpu_per_message[1] for r in got]),
            }
            timed = [r for r in got if r.noop]
            if timed:  # NOOP round trips of a separate client during the run, all runs pooled
                pooled = sorted(t for r in timed for t in r.noop or ())
                entry["servers"][server.key]["noop_ms"] = {
                    "p50": _percentile(pooled, 50) * 1e3, "p99": _percentile(pooled, 99) * 1e3,
                    "max": pooled[-1] * 1e3, "count": len(pooled)}
            if got and got[0].peak_rss is not None:
                entry["servers"][server.key]["peak_rss_mb"] = median([r.peak_rss / MB for r in got])  # type: ignore
        if key == "d":
            try:
                refs = [loopback_reference(workload, work) for _ in range(args.runs)]
                entry["socat"] = {"mib_per_s": median([r.mbps for r in refs])}
                print(f"  {'socat loopback -> file (reference)':42}: {entry['socat']['mib_per_s']:8.1f} MiB/s",
                      flush=True)
            except BenchError as exc:
                entry["socat"] = {"failed": str(exc)}
        print(f"  load average after: {entry['load_after']}", flush=True)
        results["throughput"][key] = entry


NOOP_SERVERS = ("ours", "ours-asyncio", "postfix-d")  # item 5: NOOP round trips timed during (b)


def _percentile(values: list[float], pct: float) -> float:
    """The ``pct`` percentile (nearest rank) of ``values``."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered) + 0.5) - 1))]


def print_table(results: dict) -> None:
    throughput = results["throughput"]
    if not throughput:
        return
    keys = list(throughput)
    print("\n## Throughput (median of runs; ratio = ours (default loop) / this server, >= 1.00 means ours is faster)\n")
    head = "| server | " + " | ".join(
        f"({k}) {'MiB/s' if k == 'd' else 'msg/s'} | ratio" for k in keys) + " |"
    print(head)
    print("|" + "---|" * (1 + 2 * len(keys)))
    servers = {s for k in keys for s in throughput[k]["servers"]}
    for server in [s for s in SERVERS if s.key in servers]:
        cells = []
        for k in keys:
            unit = "mib_per_s" if k == "d" else "msg_per_s"
            got = throughput[k]["servers"].get(server.key)
            ours = throughput[k]["servers"].get(OURS, {})
            if got is None:
                cells += ["-", "-"]
            elif "failed" in got:
                cells += ["FAILED", "-"]
            else:
                ratio = f"{ours[unit] / got[unit]:.2f}" if unit in ours else "-"
                cells += [f"{got[unit]:,.1f}" if k == "d" else f"{got[unit]:,.0f}", ratio]
        print(f"| {server.label} | " + " | ".join(cells) + " |")
    if "d" in throughput and "mib_per_s" in throughput["d"].get("socat", {}):
        cells = []
        for k in keys:
            if k == "d":
                ref = throughput["d"]["socat"]["mib_per_s"]
                ours = throughput["d"]["servers"].get(OURS, {}).get("mib_per_s")
                cells += [f"{ref:,.1f}", f"{ours / ref:.2f}" if ours else "-"]
            else:
                cells += ["", ""]
        print("| socat: loopback socket -> file (physical reference) | " + " | ".join(cells) + " |")
    print("\n## Server CPU per message while smtp-source ran (median; user + system microseconds, all threads)\n")
    print("| server | " + " | ".join(f"({k}) user + system" for k in keys) + " |")
    print("|" + "---|" * (1 + len(keys)))
    for server in [s for s in SERVERS if s.key in servers]:
        cells = []
        for k in keys:
            got = throughput[k]["servers"].get(server.key)
            if got is None or "failed" in got or "cpu_user_us" not in got:
                cells.append("-")
            else:
                cells.append(f"{got['cpu_user_us']:,.0f} + {got['cpu_sys_us']:,.0f}")
        print(f"| {server.label} | " + " | ".join(cells) + " |")
    noop = {key: got["noop_ms"] for k in keys for key, got in throughput[k]["servers"].items() if "noop_ms" in got}
    if noop:
        print("\n## Latency under load: a separate client's NOOP round trips while (b) runs (all runs pooled)\n")
        print("| server | p50 ms | p99 ms | max ms | round trips |")
        print("|---|---|---|---|---|")
        for server in [s for s in SERVERS if s.key in noop]:
            got = noop[server.key]
            print(f"| {server.label} | {got['p50']:.2f} | {got['p99']:.2f} | {got['max']:.2f} | {got['count']:,} |")
    for k in keys:
        for key, got in throughput[k]["servers"].items():
            if "failed" in got:
                print(f"\nFAILED ({k}) {BY_KEY[key].label}: {got['failed']}")
            if "peak_rss_mb" in got:
                print(f"\nPeak RSS (VmHWM) of {BY_KEY[key].label} during ({k}): {got['peak_rss_mb']:.1f} MB")


def print_targets(results: dict) -> None:
    """Each of issue 18's one-process targets that this run measured: the ratio and met or not."""
    throughput, rows = results["throughput"], []
    for part, other, floor in TARGETS:
        entry = throughput.get(part)
        if entry is None:
            continue
        unit = "mib_per_s" if part == "d" else "msg_per_s"
        ours = entry["servers"].get(OURS, {}).get(unit)
        theirs = (entry.get("socat") if other == "socat" else entry["servers"].get(other, {})) or {}
        if ours is None or not theirs.get(unit):
            continue
        ratio = ours / theirs[unit]
        label = "socat" if other == "socat" else BY_KEY[other].label
        verdict = "met" if ratio >= floor else "NOT MET"
        rows.append(f"| ({part}) ours / {label} >= {floor:g} | {ratio:.2f} | {verdict} |")
    memory = results.get("memory", {})
    if "growth_mb" in memory:
        growth = memory["growth_mb"]
        rows.append(f"| RSS growth {memory['first']:,} -> {memory['total']:,} messages < {RSS_GROWTH_MAX_MB:g} MB | "
                    f"{growth:+.1f} MB | {'met' if growth < RSS_GROWTH_MAX_MB else 'NOT MET'} |")
    if rows:
        print("\n## Issue 18's targets (one process)\n")
        print("| target | this run | |")
        print("|---|---|---|")
        print("\n".join(rows))


def print_inspection(results: dict) -> None:
    rows = results["inspection"]
    if not rows:
        return
    print("\n## Inspection (median; CLI figures include Python start-up, shown on its own line)\n")
    print("| | " + " | ".join(f"{r['messages']:,} messages" for r in rows) + " |")
    print("|---|" + "---|" * len(rows))
    labels = [
        ("generate the .eml files", "generate", "s"),
        ("first CLI command (builds the index)", "index_build", "s"),
        ("Python start-up (`smtp-sink --version`)", "python_start", "ms"),
        ("CLI `list --limit 50`", "cli_list", "ms"),
        ("CLI `search subject:topicN`", "cli_search", "ms"),
        ("Store API `query(limit=50)` (in-process, warm)", "api_list", "ms"),
        ("Store API `query(search=subject:topicN)`", "api_search", "ms"),
        ("HTTP `GET /api/v1/messages?limit=50`", "http_list", "ms"),
        ("HTTP `GET /api/v1/search?query=subject:topicN`", "http_search", "ms"),
        ("start-up: `serve` to SMTP 220", "startup_smtp", "ms"),
        ("start-up: `serve` to the first HTTP page", "startup_http", "ms"),
    ]
    for label, key, unit in labels:
        print(f"| {label} | " + " | ".join(_fmt(r[key], unit) for r in rows) + " |")
    for r in rows:
        for note in r["notes"]:
            print(f"\n{r['messages']:,} messages: {note}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not SMTP_SOURCE.exists():
        print(f"bench: {SMTP_SOURCE} is missing: run bench/run.sh, which extracts it", file=sys.stderr)
        return 2
    results: dict = {
        "date": time.strftime("%Y-%m-%d %H:%M %Z"), "machine": machine(), "versions": versions(),
        "load_start": loadavg(), "quick": args.quick, "runs": args.runs, "throughput": {}, "inspection": [],
    }
    print(f"smtp-sink benchmark, {results['date']}{' (QUICK: not figures to quote)' if args.quick else ''}")
    for key, value in results["machine"].items():
        print(f"  {key}: {value}")
    print("versions:")
    for key, value in results["versions"].items():
        print(f"  {key}: {value}")
    print(f"load average at start: {results['load_start']}")
    CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="work-", dir=args.work or CACHE) as scratch:
        work = Path(scratch)
        work.chmod(0o755)  # Postfix's smtp-sink runs as nobody and writes below it
        run_throughput(args, work, results)
        if "memory" in args.only:
            first, total = args.memory
            print(f"\nmemory: RSS of our server after {first:,} and after {total:,} messages of 1 KiB", flush=True)
            try:
                growth = memory.rss_growth(BY_KEY[OURS], work, first, total)
                results["memory"] = {
                    "first": first, "total": total, "rss_first_mb": growth.rss_first / MB,
                    "rss_total_mb": growth.rss_total / MB, "hwm_mb": growth.hwm / MB,
                    "growth_mb": (growth.rss_total - growth.rss_first) / MB,
                }
            except BenchError as exc:
                results["memory"] = {"failed": str(exc)}
        if "inspect" in args.only:
            for size in args.sizes:
                print(f"\ninspection over {size:,} stored messages", flush=True)
                try:
                    results["inspection"].append(inspection.measure(work, size, args.runs).__dict__)
                except BenchError as exc:
                    print(f"  FAILED: {exc}")
    results["load_end"] = loadavg()
    print_table(results)
    if "memory" in results:
        m = results["memory"]
        if "failed" in m:
            print(f"\nMemory: FAILED: {m['failed']}")
        else:
            print(f"\nMemory (ours, default loop): RSS {m['rss_first_mb']:.1f} MB after {m['first']:,} messages, "
                  f"{m['rss_total_mb']:.1f} MB after {m['total']:,} (growth {m['growth_mb']:+.1f} MB), "
                  f"peak {m['hwm_mb']:.1f} MB")
    print_targets(results)
    print_inspection(results)
    print(f"\nload average: start {results['load_start']}, end {results['load_end']}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=str))
    failed = any("failed" in s for e in results["throughput"].values() for s in e["servers"].values())
    return 1 if failed else 0
