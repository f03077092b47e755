"""``smtp-sink serve``: run the SMTP server (and the web page and HTTP API) until Ctrl-C."""

from __future__ import annotations

import argparse
import errno
import os
import sys
from typing import TYPE_CHECKING

from .. import logqueue
from ..config import FLAG_NAMES, Config
from ..errors import ListenError
from .common import EXIT_OK, CommandError, add_options, load

if TYPE_CHECKING:
    from .common import Commands


def register(commands: Commands) -> None:
    """Add ``serve`` to the ``smtp-sink`` parser."""
    serve = commands.add_parser("serve", help="run the SMTP server", description="Run the SMTP server until Ctrl-C.")
    add_options(serve, "config", "store")
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
    serve.add_argument("--tls-probe", metavar="PROBE", help="present a bad certificate to see whether clients verify "
                       "it: expired, self-signed, wrong-host, untrusted-ca or tls1.0 (docs/tls-probe.md)")
    serve.add_argument(
        "--loop", choices=("auto", "asyncio", "uvloop"), help="event loop (default auto: uvloop if installed)"
    )
    serve.add_argument("--workers", metavar="N", type=_workers,
                       help="SMTP processes sharing the port (default 1; auto: one per CPU; see docs/workers.md)")
    serve.add_argument(
        "--log-level", choices=("debug", "info", "warning", "error"),
        help="log verbosity (debug shows every command and reply)",
    )
    serve.add_argument("-v", "--verbose", action="store_true", help="same as --log-level debug")
    serve.set_defaults(handler=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    """Run the server until SIGINT or SIGTERM; a port in use or an unusable store is one line, exit 1."""
    from ..server import serve  # not loaded by the inspection commands
    from ..workers import serve_workers, worker_count  # --workers N: SMTP in N processes

    level = "debug" if args.verbose else args.log_level
    config = load(args, {
        "smtp": {"host": args.host, "port": args.port, "hostname": args.hostname, "loop": args.loop,
                 "workers": args.workers},
        "http": {"enabled": False if args.no_http else None, "host": args.http_host, "port": args.http_port,
                 "auth": args.http_auth},
        "auth": {"mode": args.auth, "require_tls": args.require_tls},
        "tls": {"mode": args.tls, "port": args.tls_port, "cert": args.tls_cert, "key": args.tls_key,
                "probe": args.tls_probe},
        "log": {"level": level},
    })
    # log lines are written by a thread, never on the event loop (smtp_sink/logqueue.py)
    stop_logging = logqueue.configure(config.log.level, sys.stderr)
    try:
        if worker_count(config.smtp.workers) > 1:
            serve_workers(config)
        else:
            serve(config)  # one process: --workers 1 is the server as it always was
    except OSError as exc:
        raise CommandError(listen_failure(exc, config)) from None
    except RuntimeError as exc:
        raise CommandError(str(exc)) from None
    finally:
        stop_logging()
    return EXIT_OK


def _workers(text: str) -> int | str:
    """``--workers``: a number, or ``auto`` (checked with the config's other values)."""
    return int(text) if text.strip().lstrip("-").isdigit() else text


def listen_failure(exc: OSError, config: Config) -> str:
    """The line for a listener that could not open: which one (SMTP, implicit TLS, HTTP), where,
    why, and the flag that moves it.

    The server raises :class:`ListenError`, which says all that. A plain OSError (its filename the
    address) is matched to the listener here: a server without ListenError, and the errors it
    does not wrap, get the same line.
    """
    if isinstance(exc, ListenError):
        return str(exc)
    where = exc.filename or f"{config.smtp.host}:{config.smtp.port}"
    # asyncio wraps the reason in "error while attempting to bind on address ...": use the errno's
    reason = os.strerror(exc.errno).lower() if exc.errno and exc.errno > 0 else exc.strerror or str(exc)
    for listener, address, flag in _listeners(config):
        if where != address:
            continue
        if exc.errno in (errno.EADDRINUSE, errno.EACCES):  # another port helps (not a wrong --host)
            return str(ListenError(exc.errno, reason, listener, where, flag))
        return f"cannot listen on {where} ({listener}): {reason}"
    return f"cannot listen on {where}: {reason}"


def _listeners(config: Config) -> list[tuple[str, str, str]]:
    """``(listener, host:port, flag)``, the last to open first: when two share an address, the
    later one is the one that failed."""
    smtp, tls, http = config.smtp, config.tls, config.http
    return [
        ("HTTP", f"{http.host}:{http.port}", f"{FLAG_NAMES['http', 'port']} (or {FLAG_NAMES['http', 'enabled']})"),
        ("implicit TLS", f"{smtp.host}:{tls.port}", FLAG_NAMES["tls", "port"]),
        ("SMTP", f"{smtp.host}:{smtp.port}", "--port"),
    ]
