"""The store inspection commands: ``list``, ``show``, ``search``, ``tag``, ``wait``, ``watch``, ``clear``, ``export``.

They read the store folder and its index directly, so they work with the server running or not;
they never create a store (a missing one is an error naming the folder and ``--store``), and
``wait``/``watch`` wait for a server to create it. Human output is a table; ``--json`` prints
the shapes documented in docs/cli.md (Mailpit's).
"""

from __future__ import annotations

import argparse
import json
import mimetypes
import re
import shutil
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import NotFound
from ..index import Page
from ..matching import Criteria
from ..message import headers, part
from ..search import SearchError
from ..store import Store
from ..summary import Summary
from ..web.mailpit import page_json
from .common import EXIT_OK, CommandError, Handler, UsageError, add_options, parse_time, printable
from .common import no_store as _no_store  # moved to common for diff and dkim (issue 17)
from .common import open_store as _store
from .common import resolve_message as _resolve

if TYPE_CHECKING:
    from .common import Commands

POLL_INTERVAL = 0.1  # seconds between looks at the store in wait and watch
WAIT_PAGE = 500  # summaries read per index query while wait looks for a match


# What the store says for an unknown id or part: KeyError until it raises NotFound (issue 14).
_MISSING = (NotFound, KeyError)


def register(commands: Commands) -> None:
    """Add the inspection commands to the ``smtp-sink`` parser."""

    def add(name: str, handler: Handler, help_text: str) -> argparse.ArgumentParser:
        parser = commands.add_parser(name, help=help_text, description=help_text)
        add_options(parser, "config", "store")
        parser.set_defaults(handler=handler)
        return parser

    def filters(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--from", dest="from_", metavar="X",
                            help="the From header (name or address) or the envelope sender contains X (any case)")
        parser.add_argument("--to", metavar="X",
                            help="a recipient (To, Cc, Bcc or envelope; name or address) contains X (any case)")
        parser.add_argument("--subject", metavar="X", help="the subject contains X (any case)")
        parser.add_argument("--tag", metavar="NAME", help="the message has the tag NAME (any case)")

    listing = add("list", cmd_list, "list captured messages, newest first")
    filters(listing)
    listing.add_argument("--since", metavar="T", help="only messages since T: 10m, 2h, 1d, 2024-05-01T12:00")
    listing.add_argument("--limit", type=int, default=50, metavar="N", help="at most N messages (default 50; 0: all)")
    listing.add_argument("--start", type=int, default=0, metavar="N", help="skip the N newest matches (paging)")
    listing.add_argument("--json", action="store_true", help="print JSON (Mailpit's message list shape)")

    show = add("show", cmd_show, "show one message (an id, or latest)")
    show.add_argument("id", metavar="ID|latest", help="message id, or 'latest' for the newest")
    what = show.add_mutually_exclusive_group()
    what.add_argument("--raw", action="store_true", help="the stored bytes, exactly")
    what.add_argument("--headers", action="store_true", help="every header")
    what.add_argument("--text", action="store_true", help="the text body (from the HTML when there is no text part)")
    what.add_argument("--html", action="store_true", help="the HTML body")
    what.add_argument("--part", metavar="N", help="the decoded content of part N (part ids as in --json)")
    what.add_argument("--save-attachments", metavar="DIR", help="write attachments and inline parts into DIR")
    show.add_argument("--json", action="store_true", help="print JSON (Mailpit's message shape)")

    search = add("search", cmd_search, "search with Mailpit's syntax (from:, to:, subject:, tag:, is:, -term...)")
    search.add_argument("query", help='what to find, e.g. \'invoice from:billing subject:"your order" -is:read\'')
    search.add_argument("--tz", metavar="ZONE",
                        help="time zone of before:/after: dates (e.g. Europe/Paris; default: local)")
    search.add_argument("--limit", type=int, default=50, metavar="N", help="at most N messages (default 50; 0: all)")
    search.add_argument("--start", type=int, default=0, metavar="N", help="skip the N newest matches (paging)")
    search.add_argument("--json", action="store_true", help="print JSON (Mailpit's message list shape)")

    tag = add("tag", cmd_tag, "show or change the tags of a message (no ID: every tag and its message count)")
    tag.add_argument("id", nargs="?", metavar="ID|latest", help="message id, or 'latest' for the newest")
    tag.add_argument("names", nargs="*", metavar="TAG", help="tags to add (cleaned as Mailpit cleans them)")
    how = tag.add_mutually_exclusive_group()
    how.add_argument("--remove", action="store_true", help="remove the TAGs instead of adding them")
    how.add_argument("--set", action="store_true", help="give the message exactly the TAGs (none: remove all)")
    tag.add_argument("--json", action="store_true", help='print {"ID": id, "Tags": [...]} ({tag: count} without ID)')

    wait = add("wait", cmd_wait, "wait until a matching message is in the store, print its id (exit 1 on timeout)")
    # the meaning of the pytest plugin's wait_for (smtp_sink.matching.Criteria), not word prefixes
    wait.add_argument("--from", dest="from_", metavar="ADDR",
                      help="the envelope sender or the From address is ADDR (whole address, any case)")
    wait.add_argument("--to", metavar="ADDR",
                      help="an envelope recipient or a To/Cc/Bcc address is ADDR (whole address, any case)")
    wait.add_argument("--subject", metavar="TEXT", help="the subject contains TEXT (any case)")
    wait.add_argument("--timeout", type=float, default=30.0, metavar="S", help="give up after S seconds (default 30)")
    wait.add_argument("--new", action="store_true", help="only messages arriving after wait started")
    wait.add_argument("--since", metavar="T", help="only messages since T (as in list)")
    wait.add_argument("--json", action="store_true", help="print the message summary as JSON instead of its id")

    watch = add("watch", cmd_watch, "print each new message as it arrives, until Ctrl-C")
    watch.add_argument("--timeout", type=float, metavar="S", help="stop after S seconds")
    watch.add_argument("--json", action="store_true", help="one JSON summary per line")

    clear = add("clear", cmd_clear, "delete every captured message")
    clear.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    clear.add_argument("--json", action="store_true", help='print {"deleted": N}')

    export = add("export", cmd_export, "write every message into one mbox file, oldest first")
    export.add_argument("--mbox", required=True, metavar="FILE", help="the mbox file to write ('-': standard output)")
    export.add_argument("--json", action="store_true", help='print {"exported": N, "file": FILE}')


def _appeared(store: Store) -> bool:
    """Whether the store folder exists yet (wait and watch do not create it: the server does)."""
    return store.path.is_dir()


def _json(data: Any) -> None:
    print(json.dumps(data, ensure_ascii=False, indent=2))


def _addr(summary: Summary) -> str:
    sender = summary.sender
    if sender is None:
        return summary.mail_from
    return sender.address or sender.name


def _fit(text: str, width: int) -> str:
    text = printable(" ".join(text.split()))
    return text if len(text) <= width else text[: max(0, width - 1)] + "…"


def _when(created: float) -> str:
    return datetime.fromtimestamp(created).strftime("%Y-%m-%d %H:%M:%S")


def _row(summary: Summary, widths: tuple[int, int, int]) -> str:
    to = ", ".join(a.address for a in [*summary.to, *summary.cc]) or ", ".join(summary.rcpt_to)
    clip = f" [{summary.attachments}]" if summary.attachments else ""
    return "  ".join([
        summary.id, _when(summary.created),
        _fit(_addr(summary), widths[0]).ljust(widths[0]),
        _fit(to, widths[1]).ljust(widths[1]),
        _fit(("(!) " if summary.parse_error else "") + ("(dup) " if summary.duplicate_of else "")  # docs/retries.md
             + summary.subject + clip, widths[2]),
    ]).rstrip()


def _widths() -> tuple[int, int, int]:
    columns = shutil.get_terminal_size((160, 24)).columns if sys.stdout.isatty() else 160
    free = max(30, columns - 26 - 19 - 8)  # id, date and separators
    return max(10, free * 3 // 10), max(10, free * 3 // 10), max(10, free * 4 // 10)


def print_table(page: Page) -> None:
    """The human listing: one line per message, then a count."""
    widths = _widths()
    if page.messages:
        print("  ".join(["ID".ljust(26), "RECEIVED".ljust(19), "FROM".ljust(widths[0]), "TO".ljust(widths[1]),
                         "SUBJECT"]))
        for summary in page.messages:
            print(_row(summary, widths))
    shown = f"{page.start + 1}-{page.start + len(page.messages)} of " if page.messages else ""
    counts = f", {page.unread} unread"
    if page.matched != page.total:
        counts = f" ({page.total} in store, {page.unread} unread)"
    print(f"{shown}{page.matched} message{'s' if page.matched != 1 else ''}{counts}")


def _limit(value: int) -> int | None:
    if value < 0:
        raise UsageError(f"--limit {value}: must be 0 (all) or more")
    return value or None


def cmd_list(args: argparse.Namespace) -> int:
    """Print one page of the messages matching the filters, newest first."""
    since = parse_time(args.since) if args.since else None
    store = _store(args)
    page = store.query(max(0, args.start), _limit(args.limit), None,
                       from_=args.from_, to=args.to, subject=args.subject, tag=args.tag, since=since)
    _json(page_json(page)) if args.json else print_table(page)
    return EXIT_OK


def cmd_search(args: argparse.Namespace) -> int:
    """Print one page of the messages matching a search query (Mailpit's syntax), newest first."""
    try:
        page = _store(args).query(max(0, args.start), _limit(args.limit), args.query, tz=args.tz)
    except SearchError as exc:
        raise UsageError(f"search: {exc}") from None
    _json(page_json(page)) if args.json else print_table(page)
    return EXIT_OK


def _write_bytes(data: bytes) -> None:
    sys.stdout.flush()
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()


def _safe_name(name: str, part_id: str, content_type: str) -> str:
    """A file name that stays inside the target folder."""
    name = name.replace("\\", "/").rsplit("/", 1)[-1].replace("\x00", "").strip().lstrip(".")
    if not name:
        name = f"part-{part_id}{mimetypes.guess_extension(content_type) or '.bin'}"
    return name


def _save_attachments(raw: bytes, detail: dict[str, Any], folder: Path) -> list[dict[str, Any]]:
    folder.mkdir(parents=True, exist_ok=True)
    saved = []
    for entry in [*detail["Attachments"], *detail["Inline"]]:
        _, _, data = part(raw, entry["PartID"])
        name = _safe_name(entry["FileName"], entry["PartID"], entry["ContentType"])
        target, stem, suffix, n = folder / name, Path(name).stem, Path(name).suffix, 1
        while target.exists():
            target, n = folder / f"{stem}-{n}{suffix}", n + 1
        target.write_bytes(data)
        saved.append({**entry, "Path": str(target)})
    return saved


def _print_message(detail: dict[str, Any]) -> None:
    def names(items: list[dict[str, str]]) -> str:
        return ", ".join(f"{a['Name']} <{a['Address']}>" if a["Name"] else a["Address"] for a in items)

    sender = detail["From"]
    lines = [
        ("ID", detail["ID"]),
        ("From", names([sender]) if sender else ""),
        ("To", names(detail["To"])),
        ("Cc", names(detail["Cc"])),
        ("Bcc", names(detail["Bcc"])),
        ("Reply-To", names(detail["ReplyTo"])),
        ("Subject", detail["Subject"]),
        ("Date", detail["Date"]),
        ("Envelope", f"from <{detail['MailFrom']}> to " + ", ".join(f"<{r}>" for r in detail["RcptTo"])),
        ("Size", f"{detail['Size']} bytes"),
        ("Warning", f"not read whole: {detail['ParseError']} (--raw has every byte)" if detail["ParseError"] else ""),
    ]
    for label, value in lines:
        if value:
            print(f"{label + ':':<10} {printable(value)}")
    for entry in [*detail["Attachments"], *detail["Inline"]]:
        kind = "Inline" if entry in detail["Inline"] else "Attached"
        print(printable(f"{kind + ':':<10} part {entry['PartID']}: {entry['FileName'] or '(no name)'} "
                        f"({entry['ContentType']}, {entry['Size']} bytes)"))
    print()
    _print_body(detail["Text"])


def _print_body(text: str) -> None:
    text = printable(text, lines=True)
    print(text if text.endswith("\n") or not text else text + "\n", end="")


def cmd_show(args: argparse.Namespace) -> int:
    """Print one message (or its raw bytes, headers, a body, a part; or save its attachments)."""
    store = _store(args)
    message_id = _resolve(store, args.id)
    raw = store.read(message_id)
    if args.raw:
        _write_bytes(raw)
        return EXIT_OK
    if args.headers:
        found = headers(raw)
        if args.json:
            _json(found)
        else:
            for name, values in found.items():
                for value in values:
                    print(printable(f"{name}: {value}"))
        return EXIT_OK
    if args.part is not None:
        try:
            _, _, data = part(raw, args.part)
        except _MISSING:
            raise CommandError(f"message {message_id} has no part {args.part!r}") from None
        _write_bytes(data)
        return EXIT_OK
    detail = store.open_message(message_id)  # marks it read, as the web page does
    if args.save_attachments is not None:
        saved = _save_attachments(raw, detail, Path(args.save_attachments))
        if args.json:
            _json(saved)
        else:
            for entry in saved:
                print(entry["Path"])
        return EXIT_OK
    if args.text or args.html:
        body = detail["Text" if args.text else "HTML"]
        if args.html and not body:
            raise CommandError(f"message {message_id} has no HTML part")
        if args.json:
            _json({"ID": message_id, "Text" if args.text else "HTML": body})
        else:
            _print_body(body)
        return EXIT_OK
    _json(detail) if args.json else _print_message(detail)
    return EXIT_OK


def cmd_wait(args: argparse.Namespace) -> int:
    """Print the id (``--json``: the summary) of the newest matching message once there is one."""
    since = time.time() if args.new else (parse_time(args.since) if args.since else None)
    store = _store(args, wait=True)
    criteria = Criteria(to=args.to, sender=args.from_, subject=args.subject)
    deadline = time.monotonic() + max(0.0, args.timeout)
    looked = ""  # the newest id already looked at: later polls read only what came after it
    while True:
        if _appeared(store):
            found, looked = _newest_match(store, criteria, args, since, looked)
            if found is not None:
                _json(found.to_json()) if args.json else print(found.id)
                return EXIT_OK
        if time.monotonic() >= deadline:
            raise CommandError(_not_seen(args, store))
        time.sleep(POLL_INTERVAL)


def _newest_match(store: Store, criteria: Criteria, args: argparse.Namespace, since: float | None,
                  after: str) -> tuple[Summary | None, str]:
    """The newest message after id ``after`` that ``criteria`` matches, and the newest id looked at.
    The index narrows by sender and recipient text first (every exact match contains it)."""
    newest, start = after, 0
    while True:
        page = store.query(start, WAIT_PAGE, None, from_=args.from_, to=args.to, since=since, after=after or None)
        if page.messages:
            newest = max(newest, page.messages[0].id)
        for summary in page.messages:
            if criteria.matches(summary):
                return summary, newest
        if len(page.messages) < WAIT_PAGE:
            return None, newest
        start += WAIT_PAGE


def _not_seen(args: argparse.Namespace, store: Store) -> str:
    """Why ``wait`` gave up: no store appeared, or no matching message."""
    if not _appeared(store):
        return f"{_no_store(store.path)} (waited {args.timeout:g} s)"
    wanted = " ".join(f"--{k} {v}" for k, v in (("from", args.from_), ("to", args.to), ("subject", args.subject)) if v)
    return f"no message{' matching ' + wanted if wanted else ''} within {args.timeout:g} s"


def cmd_watch(args: argparse.Namespace) -> int:
    """Print each message as it arrives, oldest first, until Ctrl-C or ``--timeout``."""
    store = _store(args, wait=True)
    existed = _appeared(store)
    last = (store.latest_id() or "") if existed else ""  # a store that appears later: all of it is new
    deadline = None if args.timeout is None else time.monotonic() + args.timeout
    widths = _widths()
    if not args.json:
        doing = "watching" if existed else "waiting for a store at"
        print(f"{doing} {store.path.absolute()} (Ctrl-C to stop)", file=sys.stderr)
    while deadline is None or time.monotonic() < deadline:
        if _appeared(store):
            page = store.query(0, 1000, None, after=last)
            for summary in reversed(page.messages):  # oldest first
                print(json.dumps(summary.to_json(), ensure_ascii=False) if args.json else _row(summary, widths),
                      flush=True)
                last = max(last, summary.id)
        time.sleep(POLL_INTERVAL)
    if not _appeared(store):
        raise CommandError(f"{_no_store(store.path)} (waited {args.timeout:g} s)")
    return EXIT_OK


def cmd_tag(args: argparse.Namespace) -> int:
    """Print every tag with its count, or a message's tags after adding, removing or setting some."""
    store = _store(args)
    if args.id is None:
        if args.names or args.remove or args.set:
            raise UsageError("tag: give the message ID (or latest) before the tags")
        counts = store.tag_counts()
        _json(counts) if args.json else print("\n".join(printable(f"{name}  {n}") for name, n in counts.items()))
        return EXIT_OK
    message_id = _resolve(store, args.id)
    tags = store.tags_of(message_id)
    if args.names or args.set:
        wanted = [name.casefold() for name in args.names]
        kept = [name for name in tags if name.casefold() not in wanted] if args.remove else [] if args.set else tags
        tags = store.set_tags([message_id], kept if args.remove else [*kept, *args.names]).get(message_id, [])
    _json({"ID": message_id, "Tags": tags}) if args.json else print("\n".join(map(printable, tags)))
    return EXIT_OK


def cmd_clear(args: argparse.Namespace) -> int:
    """Delete every message, after asking (``--yes``: without asking)."""
    store = _store(args)
    count = len(store.ids())
    if not args.yes:
        if not sys.stdin or not sys.stdin.isatty():
            raise CommandError(f"not deleting {count} message{'s' if count != 1 else ''} in {store.path} without "
                               "confirmation: run it in a terminal, or pass --yes")
        answer = input(f"Delete all {count} messages in {store.path}? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            raise CommandError("nothing deleted")
    deleted = store.delete_all()
    _json({"deleted": deleted}) if args.json else print(f"deleted {deleted} message{'s' if deleted != 1 else ''}")
    return EXIT_OK


_FROM_LINE_RE = re.compile(rb"^(>*From )", re.MULTILINE)


def mbox_entry(summary_from: str, created: float, raw: bytes) -> bytes:
    """One mboxrd entry: ``From `` separator line, body with ``>*From `` lines quoted, blank line."""
    stamp = time.strftime("%a %b %d %H:%M:%S %Y", time.gmtime(created))
    body = raw.replace(b"\r\n", b"\n")
    body = _FROM_LINE_RE.sub(rb">\1", body)
    if not body.endswith(b"\n"):
        body += b"\n"
    return f"From {summary_from or 'MAILER-DAEMON'} {stamp}\n".encode() + body + b"\n"


def cmd_export(args: argparse.Namespace) -> int:
    """Write every message, oldest first, into one mboxrd file (``-``: standard output)."""
    store = _store(args)
    ids = store.ids()
    to_stdout = args.mbox == "-"
    out = sys.stdout.buffer if to_stdout else open(args.mbox, "wb")  # noqa: SIM115 - closed below
    exported = 0
    try:
        for message_id in ids:
            try:
                raw = store.read(message_id)
                summary = store.summary(message_id)
            except _MISSING:  # deleted meanwhile
                continue
            out.write(mbox_entry(summary.mail_from, summary.created, raw))
            exported += 1
    finally:
        if to_stdout:
            out.flush()
        else:
            out.close()
    report = {"exported": exported, "file": args.mbox}
    if args.json and not to_stdout:
        _json(report)
    else:
        print(f"exported {exported} message{'s' if exported != 1 else ''} to {args.mbox}", file=sys.stderr)
    return EXIT_OK


__all__ = ["mbox_entry", "page_json", "parse_time", "register"]
