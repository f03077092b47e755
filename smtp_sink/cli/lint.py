"""``smtp-sink lint ID``: what the sending application did wrong in one message (``docs/lint.md``).

It reads the store folder directly, as ``show`` does (the server running or not; a missing store
or message is an error naming it, as there: command modules import only ``cli.common``). Human output is
one line per finding (``severity check: evidence (reference)``); ``--json`` prints the API's shape
(``GET /api/v1/message/{id}/lint``). The exit status says whether the message passed:
0 no errors (``--strict``: no errors and no warnings), :data:`EXIT_FINDINGS` (3) when it did not,
1 when there is no such message or store, 2 for a bad option.
"""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

from ..errors import NotFound
from ..lint import message_findings
from ..store import Store
from .common import EXIT_OK, CommandError, Handler, add_options, load

if TYPE_CHECKING:
    from .common import Commands

EXIT_FINDINGS = 3  # the message has errors (--strict: or warnings); 1 and 2 keep their meaning
# Control and bidi characters shown as U+FFFD: evidence is message data, printed on a terminal.
_UNSHOWABLE = {c: "\ufffd" for c in [*range(0x20), 0x7F, *range(0x80, 0xA0), *range(0x202A, 0x202F),
                                      *range(0x2066, 0x206A)]}


def register(commands: Commands) -> None:
    """Add ``lint`` to the ``smtp-sink`` parser."""
    help_text = "check what the sending application did wrong in one message (exit 3 when it has errors)"
    parser = commands.add_parser("lint", help=help_text, description=help_text)
    add_options(parser, "config", "store")
    parser.add_argument("id", metavar="ID|latest", help="message id, or 'latest' for the newest")
    parser.add_argument("--strict", action="store_true", help="warnings fail too (exit 3)")
    parser.add_argument("--json", action="store_true",
                        help='print {"Findings": [...], "Errors": n, "Warnings": n, "Infos": n}')
    handler: Handler = cmd_lint
    parser.set_defaults(handler=handler)


def cmd_lint(args: argparse.Namespace) -> int:
    """Print a message's findings; exit :data:`EXIT_FINDINGS` when it has errors."""
    config = load(args)
    store = Store(config.store.path, max_messages=config.store.max_messages, max_age=config.store.max_age,
                  tags=config.tags)
    if not store.path.is_dir():
        raise CommandError(f"no store at {store.path.absolute()}: give its folder with --store DIR "
                           "(or [store] path in --config FILE)")
    try:
        message_id = store.resolve(args.id)
        report = message_findings(store, message_id)
    except NotFound:
        where = store.path
        raise CommandError(f"no messages in {where}" if args.id == "latest" else
                           f"no message {args.id!r} in {where}") from None
    if args.json:
        print(json.dumps({"ID": message_id, **report.to_json()}, ensure_ascii=False, indent=2))
    else:
        for finding in report.findings:
            line = f"{finding.severity:<7} {finding.check}: {finding.evidence} ({finding.reference})"
            print(line.translate(_UNSHOWABLE))
        counts = f"{len(report.errors)} error(s), {len(report.warnings)} warning(s), {len(report.infos)} info"
        print(f"{message_id}: {counts}" if report.findings else f"{message_id}: no findings")
    failed = report.errors or (args.strict and report.warnings)
    return EXIT_FINDINGS if failed else EXIT_OK
