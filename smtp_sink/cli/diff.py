"""``smtp-sink diff ID1 ID2``: the normalised difference of two captured messages (the form the
pytest plugin's snapshots use, :mod:`smtp_sink.snapshot`). Exit status as diff(1)'s: 0 when they
read the same, 1 when they differ (the unified diff on standard output), 2 for a bad option."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from ..snapshot import TokenError, compile_tokens, normalise, unified_diff
from .common import EXIT_OK, EXIT_RUNTIME, UsageError, add_options, open_store, printable, resolve_message

if TYPE_CHECKING:
    from .common import Commands

EXIT_DIFFERENT = EXIT_RUNTIME  # 1, as diff(1): the messages differ


def register(commands: Commands) -> None:
    """Add ``diff`` to the ``smtp-sink`` parser."""
    text = "show how two captured messages differ, normalised as snapshot tests compare them (exit 1 if they do)"
    parser = commands.add_parser("diff", help=text, description=text)
    add_options(parser, "config", "store")
    parser.add_argument("first", metavar="ID1|latest", help="message id, or 'latest' for the newest")
    parser.add_argument("second", metavar="ID2|latest", help="message id, or 'latest' for the newest")
    parser.add_argument("--tokens", action="append", default=[], metavar="[NAME=]REGEX",
                        help="replace what REGEX matches with <NAME> (default <token>) in both; repeatable, "
                             "e.g. --tokens 'code=\\b[0-9]{6}\\b'")
    parser.set_defaults(handler=cmd_diff)


def tokens(given: list[str]) -> dict[str, str]:
    """``--tokens`` values as name -> regex (``REGEX`` alone: ``token``, ``token2``...)."""
    found: dict[str, str] = {}
    for text in given:
        name, equals, regex = text.partition("=")
        if not equals or not name or not name.replace("_", "").replace("-", "").replace(".", "").isalnum():
            name, regex = f"token{len(found) + 1 if found else ''}", text
        found[name] = regex
    try:
        compile_tokens(found)
    except TokenError as exc:
        raise UsageError(f"--tokens: {exc}") from None
    return found


def cmd_diff(args: argparse.Namespace) -> int:
    """Print the unified diff of the two messages' normalised forms; 1 when there is one."""
    replace = tokens(args.tokens)
    store = open_store(args)
    first, second = resolve_message(store, args.first), resolve_message(store, args.second)
    diff = unified_diff(normalise(store.read(first), replace), normalise(store.read(second), replace), first, second)
    if not diff:
        return EXIT_OK
    sys.stdout.write(printable(diff, lines=True))
    return EXIT_DIFFERENT
