"""The HTTP side (aiohttp, on the SMTP server's event loop), built from a :class:`~smtp_sink.sink.Sink`:
a Mailpit-compatible JSON API (``/api/v1/...``), run-time fault rules, a Server-Sent Events stream
and the web page. The route table is here; the handlers live in one module per area
(:mod:`.listing`, :mod:`.message`, :mod:`.view`, :mod:`.rules`, :mod:`.events`, :mod:`.app_info`), what they share in
:mod:`.common` and every response's security in :mod:`.security`.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

from aiohttp import web

from ..config import HTTPConfig, is_loopback
from ..sink import Sink
from . import app_info, chaos, checks, dkim, events, listing, message, release, rules, send, tags, tls_findings, view
from . import lint as lint_routes  # issue 17: GET /api/v1/message/{id}/lint
from . import sessions as session_routes  # issue 17: recorded SMTP sessions
from .common import AUTH_KEY, READERS_KEY, SINK_KEY, SMTP_PORT_KEY, Readers
from .security import guard, security_headers

log = logging.getLogger("smtp_sink")
STATIC = Path(__file__).parent / "static"


async def index_page(request: web.Request) -> web.FileResponse:
    """``GET /``: the web page (``GET /view/{id}``: the page, showing that message)."""
    return web.FileResponse(STATIC / "index.html")


def create_app(sink: Sink, http: HTTPConfig, *, smtp_port: int = 0) -> web.Application:
    """The aiohttp application of a sink (``http``: its settings; ``smtp_port``: shown by
    ``/api/v1/info``), with its own reader threads (stopped with it)."""
    app = web.Application(middlewares=[guard], client_max_size=1 << 20)
    app[SINK_KEY] = sink
    app[AUTH_KEY] = http.auth.encode("utf-8")
    app[SMTP_PORT_KEY] = smtp_port
    app[READERS_KEY] = Readers()
    app.on_response_prepare.append(security_headers)
    app.on_cleanup.append(_stop_readers)
    for area in (listing, message, view, rules, events, send, release, chaos, checks, dkim, tags, tls_findings,
                 app_info, lint_routes, session_routes):
        app.add_routes(area.ROUTES)
    app.add_routes(session_routes.ROUTES)  # issue 17
    app.add_routes([web.get("/", index_page), web.get("/view/{id}", index_page), web.static("/static", STATIC)])
    events.setup(app)
    return app


async def _stop_readers(app: web.Application) -> None:
    await app[READERS_KEY].close()


class HTTPServer:
    """The HTTP listener of a sink (on the event loop it is started on)."""

    def __init__(self, sink: Sink, http: HTTPConfig, *, smtp_port: int = 0) -> None:
        self.http = http
        # shutdown_timeout: open event streams never finish by themselves; do not wait for them.
        self.runner = web.AppRunner(create_app(sink, http, smtp_port=smtp_port), access_log=None,
                                    handle_signals=False, shutdown_timeout=0.5)
        self.port = 0

    async def start(self) -> None:
        """Listen and serve (an OSError when the port cannot be opened)."""
        http = self.http
        await self.runner.setup()
        await web.TCPSite(self.runner, http.host, http.port, reuse_address=True).start()
        self.port = next((address[1] for address in self.runner.addresses if isinstance(address, tuple)), http.port)

    def log_listening(self) -> None:
        """Say where the web page and API are."""
        http = self.http
        log.info("web page and API on http://%s:%d/%s", http.host, self.port, " (basic auth)" if http.auth else "")
        if not is_loopback(http.host):
            log.warning("the web page and API listen on %s, beyond this machine, over plain HTTP: "
                        "captured mail and the basic-auth password cross the network unencrypted", http.host)

    async def stop(self) -> None:
        """Stop serving (open event streams are cut)."""
        with contextlib.suppress(Exception):
            await self.runner.cleanup()
