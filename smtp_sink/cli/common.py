"""What every ``smtp-sink`` command shares: exit codes, the ``--config``/``--store``/``--api``
options, loading the configuration, and the one place an error becomes one line on stderr."""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config import Config, ConfigError
from ..config import load as load_config
from ..errors import NotFound
from ..store import Store

if TYPE_CHECKING:
    Commands = argparse._SubParsersAction[argparse.ArgumentParser]

EXIT_OK = 0
EXIT_RUNTIME = 1  # the command could not do its work: no store, not found, unreachable, port in use
EXIT_USAGE = 2  # bad configuration, option value or rule (argparse exits 2 too)

Handler = Callable[[argparse.Namespace], int]

_OPTIONS = {  # name: (metavar, help)
    "config": ("FILE", "config file (default: $SMTP_SINK_CONFIG or ./smtp-sink.toml)"),
    "store": ("DIR", "message folder (default: [store] path, ./mail)"),
    "api": ("URL", "HTTP API of the running server (default http://<[http] host>:<[http] port>)"),
}


_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])", re.IGNORECASE)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


class UsageError(Exception):
    """A bad option value or request: one line on stderr, exit status 2."""


class CommandError(Exception):
    """The command could not do its work (no store, no such message, nothing listening): one line, exit 1."""


def add_options(parser: argparse.ArgumentParser, *names: str, again: bool = False) -> None:
    """Add the shared options ``names`` (``config``, ``store``, ``api``) to ``parser``.

    ``again``: the copy on a sub-action of options its command has too (``rules list --api URL``
    as well as ``rules --api URL list``): given after the action it wins, absent it changes nothing.
    """
    for name in names:
        metavar, help_text = _OPTIONS[name]
        parser.add_argument(f"--{name}", metavar=metavar, help=help_text, default=argparse.SUPPRESS if again else None)


def load(args: argparse.Namespace, overrides: Mapping[str, Mapping[str, Any]] | None = None) -> Config:
    """The configuration: defaults < config file < SMTP_SINK_* environment < ``--store`` and ``overrides``."""
    flags = {name: dict(table) for name, table in (overrides or {}).items()}
    flags.setdefault("store", {})["path"] = getattr(args, "store", None)
    return load_config(getattr(args, "config", None), flags)


def api_base(args: argparse.Namespace) -> str:
    """The running server's HTTP API: ``--api``, else ``[http] host`` and ``port`` of the configuration."""
    if args.api:
        return str(args.api).rstrip("/")
    http = load(args).http
    host = f"[{http.host}]" if ":" in http.host else http.host
    return f"http://{host}:{http.port}"


# -- reading the store (every command that reads messages; moved here from inspect for issue 17) --


def open_store(args: argparse.Namespace, *, wait: bool = False) -> Store:
    """The store the configuration names. It must exist (a command never creates an empty one),
    unless ``wait``: then the caller waits for a server to create it."""
    config = load(args)
    store = Store(config.store.path, max_messages=config.store.max_messages, max_age=config.store.max_age,
                  tags=config.tags)
    if not wait and not store.path.is_dir():
        raise CommandError(no_store(store.path))
    return store


def no_store(path: Path) -> str:
    """Why ``path`` is no store, naming the folder and ``--store``."""
    where = path.absolute()
    if path.exists():
        return f"{where} is not a folder: give the store folder with --store DIR"
    return (f"no store at {where}: give its folder with --store DIR (or [store] path in --config FILE), "
            "or start `smtp-sink serve` here first")


def resolve_message(store: Store, ref: str) -> str:
    """The id ``ref`` names (``latest``: the newest); :class:`CommandError` naming it when there is none."""
    try:
        message_id = store.resolve(ref)
        store.file(message_id)
    except (NotFound, KeyError):
        where = store.path
        if ref == "latest":
            raise CommandError(f"no messages in {where}") from None
        raise CommandError(f"no message {ref!r} in {where}") from None
    return message_id


# What a terminal would act on rather than show: C0 and C1 controls (ESC starts escape sequences
# that can rewrite the screen or the window title), DEL, and bidirectional overrides. Captured
# mail is attacker-controlled: human output shows these as U+FFFD (JSON and --raw keep everything).
_UNSHOWABLE = {c: "\ufffd" for c in [*range(0x20), 0x7F, *range(0x80, 0xA0), *range(0x202A, 0x202F),
                                      *range(0x2066, 0x206A)]}
_LINES_KEPT = {**_UNSHOWABLE, ord("\n"): "\n", ord("\t"): "\t"}


def printable(text: str, lines: bool = False) -> str:
    """``text`` safe to print on a terminal (``lines``: newlines and tabs kept)."""
    return text.translate(_LINES_KEPT if lines else _UNSHOWABLE)


def error(message: str) -> None:
    """Print ``smtp-sink: message`` on stderr."""
    print(f"smtp-sink: {message}", file=sys.stderr)


def run(handler: Handler, args: argparse.Namespace) -> int:
    """Run a command handler; every expected failure is one line on stderr and its exit status."""
    try:
        return handler(args)
    except ConfigError as exc:
        error(f"config error: {exc}")
        return EXIT_USAGE
    except UsageError as exc:
        error(str(exc))
        return EXIT_USAGE
    except CommandError as exc:
        error(str(exc))
        return EXIT_RUNTIME
    except BrokenPipeError:  # e.g. piped into head
        sys.stderr.close()
        return EXIT_OK
    except OSError as exc:
        error(f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": "))
        return EXIT_RUNTIME
    except KeyboardInterrupt:
        return EXIT_OK


def parse_time(text: str, now: float | None = None) -> float:
    """``10m``, ``2h30m``, ``1d`` (ago), an ISO date or date-time (local time), or Unix seconds."""
    now = time.time() if now is None else now
    text = text.strip()
    if _DURATION_RE.fullmatch(text) or (text and re.fullmatch(r"(?:\d+(?:\.\d+)?\s*[smhdw]\s*)+", text, re.I)):
        return now - sum(float(n) * _UNITS[u.lower()] for n, u in _DURATION_RE.findall(text))
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        raise UsageError(
            f"--since {text!r}: expected a duration (10m, 2h, 1d), a date (2024-05-01) or a date-time "
            "(2024-05-01T12:00)"
        ) from None
