"""``smtp-sink sessions`` and ``smtp-sink session ID`` (issue 17): the recorded SMTP sessions,
read from the store folder directly (no server needed), as ``list`` and ``show`` read messages."""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..session_lint import with_findings
from ..sessions import OUTCOMES, Session, SessionStore
from .common import EXIT_OK, CommandError, UsageError, add_options, load, parse_time

if TYPE_CHECKING:
    from .common import Commands

FILTERS = (*OUTCOMES, "refused", "delivered", "undelivered")
_CONTROL_RE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")  # no escape sequences from a client reach the terminal


def register(commands: Commands) -> None:
    """Add ``sessions`` and ``session`` to the ``smtp-sink`` parser."""
    listing = commands.add_parser("sessions", help="list recorded SMTP sessions, newest first (delivered or not)",
                                  description="list recorded SMTP sessions, newest first (delivered or not)")
    add_options(listing, "config", "store")
    listing.add_argument("--client", metavar="ADDR", help="only sessions from this client address")
    listing.add_argument("--outcome", choices=FILTERS, help="only sessions that ended so (or refused, delivered, "
                         "undelivered)")
    listing.add_argument("--since", metavar="T", help="only sessions started since T: 10m, 2h, 1d, 2024-05-01T12:00")
    listing.add_argument("--limit", type=int, default=50, metavar="N", help="at most N sessions (default 50; 0: all)")
    listing.add_argument("--start", type=int, default=0, metavar="N", help="skip the N newest matches (paging)")
    listing.add_argument("--json", action="store_true", help="print JSON (the shape of GET /api/v1/sessions)")
    listing.set_defaults(handler=cmd_sessions)

    show = commands.add_parser("session", help="show one recorded SMTP session: the dialogue and its findings",
                               description="show one recorded SMTP session: the dialogue and its findings")
    add_options(show, "config", "store")
    show.add_argument("id", metavar="ID|latest", help="session id, or 'latest' for the newest")
    show.add_argument("--json", action="store_true", help="print JSON (the shape of GET /api/v1/session/{id})")
    show.set_defaults(handler=cmd_session)


def _sessions(args: argparse.Namespace) -> SessionStore:
    path = Path(load(args).store.path)
    if not path.is_dir():
        raise CommandError(f"no store at {path.absolute()}: give its folder with --store DIR (or [store] path in "
                           "--config FILE), or start `smtp-sink serve` here first")
    return SessionStore(path)


def _clean(text: str) -> str:
    return _CONTROL_RE.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def _when(moment: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(moment))


def cmd_sessions(args: argparse.Namespace) -> int:
    """Print one page of recorded sessions, newest first."""
    if args.limit < 0:
        raise UsageError(f"--limit {args.limit}: must be 0 (all) or more")
    since = parse_time(args.since) if args.since else None
    page = _sessions(args).list(max(0, args.start), args.limit, client=args.client, outcome=args.outcome,
                                since=since)
    if args.json:
        print(json.dumps({"total": page.count, "sessions_count": page.total, "start": max(0, args.start),
                          "count": len(page.sessions), "sessions": [s.to_json(events=False) for s in page.sessions]},
                         ensure_ascii=False, indent=2))
        return EXIT_OK
    rows = [("TIME", "CLIENT", "HELO", "OUTCOME", "MESSAGES", "ID")]
    for s in page.sessions:
        outcome = s.outcome + (" (refused)" if s.refused else "")
        rows.append((_when(s.started), s.client, _clean(s.helo)[:40] or "-", outcome, str(len(s.message_ids)), s.id))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=True)) + "  " + row[-1])
    print(f"{len(page.sessions)} of {page.total} sessions" + (f" ({page.count} recorded)" if page.total != page.count
                                                               else ""))
    return EXIT_OK


def _resolve(store: SessionStore, ref: str) -> Session:
    if ref == "latest":
        newest = store.list(0, 1).sessions
        ref = newest[0].id if newest else ""
        if not ref:
            raise CommandError(f"no sessions recorded in {store.path.parent}")
    found = store.get(ref)
    if found is None:
        raise CommandError(f"no session {ref!r} in {store.path.parent}")
    return with_findings(found)


_PREFIX = {"C": "C: ", "S": "S: ", "D": "C: ", "M": "   ", "T": "   ", "N": "   ", "X": "   "}


def dialogue(session: Session) -> list[str]:
    """The session as readable lines: a header, then ``+seconds C:/S:`` lines, then the findings."""
    tls = f"{session.tls.version} {session.tls.cipher}" if session.tls else "no"
    head = [
        f"session {session.id}",
        f"client  {session.client}  HELO {_clean(session.helo) or '-'}",
        f"started {_when(session.started)}  lasted {session.duration:.3f} s  outcome {session.outcome}"
        + (" (refused)" if session.refused else ""),
        f"TLS     {tls}  AUTH {_clean(session.auth_user) if session.auth_user is not None else '-'}",
        f"messages {', '.join(session.message_ids) or '-'}",
        "",
    ]
    lines = []
    for event in session.events:
        text = event.text
        if event.kind == "D":
            text = f"({text})"
        elif event.kind in "MTNX":
            text = f"[{text}]"
        for number, line in enumerate(text.split("\n") if event.kind == "S" else [text]):
            stamp = f"{'+' + format(event.time, '.3f'):>9}" if number == 0 else " " * 9
            lines.append(f"{stamp} {_PREFIX[event.kind]}{_clean(line)}")
    findings = [""] + [f"{f.severity}: {f.check}: {_clean(f.evidence)} ({f.reference})" for f in session.findings]
    return head + lines + (findings if session.findings else [])


def cmd_session(args: argparse.Namespace) -> int:
    """Print one session: its dialogue with relative times, and the findings of its lint."""
    session = _resolve(_sessions(args), args.id)
    if args.json:
        value: dict[str, Any] = session.to_json()
        print(json.dumps(value, ensure_ascii=False, indent=2))
    else:
        print("\n".join(dialogue(session)))
    return EXIT_OK
