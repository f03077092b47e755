"""Where our server's time goes: ``python -m bench.profile [--workload b] [--messages N] [--cprofile]``.

Starts ``smtp-sink serve`` (default loop), sends the workload with Postfix's smtp-source and prints
the server's CPU time per message (user and system, from ``/proc/PID/stat``: load on the machine
barely moves it). With ``--cprofile`` the server runs under cProfile and the top functions by own
time are printed (cProfile slows Python about 2x: read the shares, not the microseconds).
"""

from __future__ import annotations

import argparse
import pstats
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from .servers import ours_env
from .tools import CACHE, HOST, free_port, proc_cpu, settle, stop, wait_smtp
from .workloads import WORKLOADS, smtp_source


def _minor_faults(pid: int) -> int:
    """Minor page faults of a process so far (``/proc/PID/stat``): fresh memory touched."""
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[7])


def _instructions(out: Path) -> int:
    """Instructions callgrind counted in all the output files of a run (one per thread)."""
    total = 0
    for path in out.parent.glob(out.name + ".*"):  # the dump made right after smtp-source
        for line in path.read_text(errors="replace").splitlines():
            if line.startswith("totals:") or line.startswith("summary:"):
                total += int(line.split()[1])
                break
    return total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__.split("\n\n")[0])
    parser.add_argument("--workload", default="b", choices=sorted(WORKLOADS))
    parser.add_argument("--messages", type=int, help="messages to send (default: the workload's)")
    parser.add_argument("--loop", default="auto", help="--loop of the server (auto, asyncio, uvloop)")
    parser.add_argument("--cprofile", action="store_true", help="run the server under cProfile, print the top")
    parser.add_argument("--top", type=int, default=25, help="functions to print with --cprofile")
    parser.add_argument("--runs", type=int, default=1, help="runs (CPU per message of each is printed)")
    parser.add_argument("--callgrind", action="store_true",
                        help="run the server under valgrind's callgrind and print the instructions per message "
                             "(counted only while smtp-source runs: load on the machine does not change them)")
    args = parser.parse_args(argv)
    workload = WORKLOADS[args.workload]
    messages = args.messages or workload.messages
    CACHE.mkdir(parents=True, exist_ok=True)
    for n in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="profile-", dir=CACHE) as scratch:
            folder, stats = Path(scratch) / "store", Path(scratch) / "prof.out"
            port = free_port()
            cmd = [sys.executable]
            if args.callgrind:
                cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={stats}",
                       *cmd]
            if args.cprofile:
                cmd += ["-m", "cProfile", "-o", str(stats)]
            cmd += ["-m", "smtp_sink", "serve", "--no-http", "--host", HOST, "--port", str(port),
                    "--store", str(folder), "--log-level", "warning", "--loop", args.loop]
            proc = subprocess.Popen(cmd, env=ours_env(), stdin=subprocess.DEVNULL, cwd=scratch)  # not this checkout
            try:
                wait_smtp(port, proc, timeout=300)
                settle(proc.pid, 0.3)
                if args.callgrind:
                    subprocess.run(["callgrind_control", "-z", str(proc.pid)], check=True, capture_output=True)
                user0, sys0 = proc_cpu(proc.pid)
                faults0 = _minor_faults(proc.pid)
                seconds = smtp_source(port, messages, workload.size, workload.sessions, workload.keep_connection)
                user1, sys1 = proc_cpu(proc.pid)
                faults = (_minor_faults(proc.pid) - faults0) / messages
                if args.callgrind:
                    subprocess.run(["callgrind_control", "-d", str(proc.pid)], check=True, capture_output=True)
                user, system = (user1 - user0) / messages * 1e6, (sys1 - sys0) / messages * 1e6
                print(f"run {n + 1}: ({args.workload}) {messages} messages in {seconds:.2f} s; server CPU per "
                      f"message: user {user:.1f} us, system {system:.1f} us; {faults:,.0f} page faults", flush=True)
                proc.send_signal(signal.SIGINT)
                proc.wait(60)
            finally:
                stop(proc)
            if args.callgrind:
                print(f"run {n + 1}: {_instructions(stats) / messages:,.0f} instructions per message "
                      , flush=True)
                for path in stats.parent.glob(stats.name + ".*"):
                    done = subprocess.run(["callgrind_annotate", "--inclusive=yes", str(path)],
                                          capture_output=True, text=True)
                    print("\n".join(done.stdout.splitlines()[:args.top + 20]))
            elif args.cprofile and stats.exists():
                pstats.Stats(str(stats)).sort_stats("tottime").print_stats(args.top)
            shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
