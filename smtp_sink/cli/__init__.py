"""The ``smtp-sink`` command line: :func:`main` and :func:`build_parser`.

One module per command group (``serve``, ``inspect``: list, show, search, wait, watch, clear,
export; ``rules``), each with a ``register(commands)``; what they share (exit codes, the
``--config``/``--store``/``--api`` options, config loading, error lines) is in ``common``.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from .. import __version__
from . import diff, dkim, inspect, lint, rules, serve  # diff, dkim, lint: issue 17
from . import sessions as session_commands  # issue 17: smtp-sink sessions, smtp-sink session ID
from .common import EXIT_OK, EXIT_RUNTIME, EXIT_USAGE, run

__all__ = ["EXIT_OK", "EXIT_RUNTIME", "EXIT_USAGE", "build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The ``smtp-sink`` parser with every command; each sets ``handler`` in its namespace."""
    parser = argparse.ArgumentParser(
        prog="smtp-sink",
        description="A local SMTP mail sink: accepts mail on localhost:2525 and stores each message as a .eml file.",
    )
    parser.add_argument("--version", action="version", version=f"smtp-sink {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True
    for group in (serve, inspect, rules, lint, diff, dkim, session_commands):
        group.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``smtp-sink`` console script (and ``python -m smtp_sink``)."""
    args = build_parser().parse_args(argv)
    return run(args.handler, args)
