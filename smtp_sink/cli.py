"""The ``smtp-sink`` command line."""

from __future__ import annotations

import argparse
import errno
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

from . import __version__
from .config import Config, ConfigError, load

log = logging.getLogger("smtp_sink")

EXIT_OK = 0
EXIT_RUNTIME = 1  # the server could not start (port in use, store not writable)
EXIT_CONFIG = 2  # bad configuration or usage (argparse also exits 2)


def _add_config_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", help="config file (default: $SMTP_SINK_CONFIG or ./smtp-sink.toml)")
    parser.add_argument("--store", metavar="DIR", help="message folder (default ./mail)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="smtp-sink",
        description="A local SMTP mail sink: accepts mail on localhost:2525 and stores each message as a .eml file.",
    )
    parser.add_argument("--version", action="version", version=f"smtp-sink {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    serve = commands.add_parser("serve", help="run the SMTP server", description="Run the SMTP server until Ctrl-C.")
    _add_config_options(serve)
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="SMTP port (default 2525; 0 picks a free one)")
    serve.add_argument("--hostname", help="name the server gives itself in replies and Received headers")
    serve.add_argument("--no-http", action="store_true", help="do not start the web page and HTTP API")
    serve.add_argument("--http-host", metavar="H", help="address of the web page and API (default 127.0.0.1)")
    serve.add_argument("--http-port", type=int, metavar="P", help="port of the web page and API (default 8025)")
    serve.add_argument("--http-auth", metavar="USER:PASS", help="HTTP basic auth (required off loopback)")
    serve.add_argument("--auth", metavar="MODE", help="SMTP AUTH: off (default), accept-any or users ([auth] users)")
    serve.add_argument("--require-tls", action="store_true", default=None, help="refuse AUTH before TLS (538)")
    serve.add_argument("--tls", metavar="MODE", help="STARTTLS and implicit TLS: auto (default: on with AUTH), on, off")
    serve.add_argument("--tls-port", type=int, metavar="PORT", help="implicit-TLS port (default 2465; 0 picks one)")
    serve.add_argument("--tls-cert", metavar="PEM", help="certificate file (default: self-signed, generated once)")
    serve.add_argument("--tls-key", metavar="PEM", help="private key file for --tls-cert")
    serve.add_argument(
        "--loop", choices=("auto", "asyncio", "uvloop"), help="event loop (default auto: uvloop if installed)"
    )
    serve.add_argument(
        "--log-level", choices=("debug", "info", "warning", "error"),
        help="log verbosity (debug shows every command and reply)",
    )
    serve.add_argument("-v", "--verbose", action="store_true", help="same as --log-level debug")

    from .inspect_cli import register as register_inspect  # list, show, search, wait, watch, clear, export

    register_inspect(commands)
    from .rules_cli import register as register_rules  # rules add | list | clear

    register_rules(commands)
    return parser


def _load(args: argparse.Namespace, overrides: dict[str, dict[str, Any]]) -> Config:
    overrides.setdefault("store", {})["path"] = getattr(args, "store", None)
    return load(args.config, overrides)


def cmd_serve(args: argparse.Namespace) -> int:
    from .server import serve

    level = "debug" if args.verbose else args.log_level
    config = _load(args, {
        "smtp": {"host": args.host, "port": args.port, "hostname": args.hostname, "loop": args.loop},
        "http": {"enabled": False if args.no_http else None, "host": args.http_host, "port": args.http_port,
                 "auth": args.http_auth},
        "auth": {"mode": args.auth, "require_tls": args.require_tls},
        "tls": {"mode": args.tls, "port": args.tls_port, "cert": args.tls_cert, "key": args.tls_key},
        "log": {"level": level},
    })
    logging.basicConfig(
        level=config.log.level.upper(),
        format="%(asctime)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    try:
        serve(config)
    except OSError as exc:
        where = exc.filename or f"{config.smtp.host}:{config.smtp.port}"
        if exc.errno == errno.EADDRINUSE:
            print(f"smtp-sink: cannot listen on {where}: address already in use", file=sys.stderr)
        elif exc.errno == errno.EACCES:
            print(f"smtp-sink: cannot listen on {where}: permission denied", file=sys.stderr)
        else:
            # asyncio wraps the reason in "error while attempting to bind on address ...": use the errno's
            reason = os.strerror(exc.errno).lower() if exc.errno and exc.errno > 0 else exc.strerror or exc
            print(f"smtp-sink: cannot listen on {where}: {reason}", file=sys.stderr)
        return EXIT_RUNTIME
    except RuntimeError as exc:
        print(f"smtp-sink: {exc}", file=sys.stderr)
        return EXIT_RUNTIME
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``smtp-sink`` console script."""
    args = build_parser().parse_args(argv)
    handlers = {"serve": cmd_serve}
    try:
        handler = getattr(args, "handler", None) or handlers[args.command]  # inspect_cli sets handler
        return handler(args)
    except ConfigError as exc:
        print(f"smtp-sink: config error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        return EXIT_OK
