"""The app's own routes: ``GET /api/v1/webui`` (what the server offers, Mailpit's
``WebUIConfiguration``), the probes ``/livez`` and ``/readyz`` and the OpenAPI (Swagger 2.0)
document ``/api/v1/swagger.json``, made from the routes the app registers so it can never leave
one out. ``OPTIONS /api/v1/`` is registered as Mailpit registers it; the security middleware
answers every ``OPTIONS`` under ``/api/v1/`` the same way (200, empty, no CORS headers)."""

from __future__ import annotations

import inspect
import re
from typing import Any

from aiohttp import web

from .. import __version__, relay
from ..config import Config
from .common import json_off_loop, off_loop, sink
from .security import LIVEZ, READYZ

CHAOS_PATH = "/api/v1/chaos"  # when the app serves it, the web UI may offer chaos
DOCUMENTED = ("/api/", "/view/", "/livez", "/readyz")  # the paths the OpenAPI document covers
_PARAMETER_RE = re.compile(r"\{(\w+)")


def webui_json(config: Config, chaos: bool) -> dict[str, Any]:
    """Mailpit's ``WebUIConfiguration``: the relay (every field at its zero value when off),
    whether a spam check is configured and whether chaos is offered."""
    return {
        "Label": "",
        "MessageRelay": relay.webui_json(config.relay),
        "SpamAssassin": bool(config.checks.spamassassin),
        "ChaosEnabled": chaos,
        "DuplicatesIgnored": False,
        "HideDeleteAllButton": False,
    }


async def webui(request: web.Request) -> web.Response:
    """``GET /api/v1/webui``: what this server offers the web UI (relay, spam check, chaos)."""
    chaos = any(resource.canonical == CHAOS_PATH for resource in request.app.router.resources())
    config = sink(request).config
    return await json_off_loop(request, lambda: webui_json(config, chaos))


async def options(request: web.Request) -> web.Response:
    """``OPTIONS /api/v1/``: 200 with an empty body, as Mailpit answers (no CORS headers here)."""
    return web.Response(text="", content_type="text/plain")


async def livez(request: web.Request) -> web.Response:
    """``GET /livez``: 200 with an empty body while the server runs (no auth needed)."""
    return web.Response()


async def readyz(request: web.Request) -> web.Response:
    """``GET /readyz``: 200 with an empty body when the store's index answers, else 503 (no auth needed)."""
    store = sink(request).store
    try:
        await off_loop(request, store.counts)
    except Exception as exc:
        return web.json_response({"Error": f"not ready: {exc}"[:300]}, status=503)
    return web.Response()


async def swagger(request: web.Request) -> web.Response:
    """``GET /api/v1/swagger.json``: the OpenAPI (Swagger 2.0) document of every route the app serves."""
    document = openapi(request.app)
    return await json_off_loop(request, lambda: document)


def openapi(app: web.Application) -> dict[str, Any]:
    """The Swagger 2.0 document of the app's routes under :data:`DOCUMENTED`: each operation's
    summary is the first paragraph of its handler's docstring."""
    paths: dict[str, dict[str, Any]] = {}
    for route in app.router.routes():
        resource = route.resource
        if route.method in ("HEAD", "OPTIONS", "*") or resource is None:
            continue
        info = resource.get_info()
        path = info.get("formatter") or info.get("path")
        if not isinstance(path, str) or not path.startswith(DOCUMENTED):
            continue
        paths.setdefault(path, {})[route.method.lower()] = _operation(path, route.handler)
    return {
        "swagger": "2.0",
        "info": {"title": "smtp-sink API", "version": __version__,
                 "description": "Mailpit's API v1 (ids are ULIDs; MailFrom, RcptTo and ParseError are extra), "
                                "fault rules, and the page's views. See docs/http-api.md."},
        "basePath": "/",
        "schemes": ["http"],
        "paths": {path: paths[path] for path in sorted(paths)},
    }


def _operation(path: str, handler: Any) -> dict[str, Any]:
    doc = " ".join((inspect.getdoc(handler) or "").split("\n\n", 1)[0].split())
    if doc.startswith("``") and "``: " in doc:  # "``GET /path``: what it does" -> "what it does"
        doc = doc.split("``: ", 1)[1]
    return {
        "summary": doc.replace("``", "`"),  # reStructuredText literals as Markdown (OpenAPI's mark-up)
        "parameters": [{"name": name, "in": "path", "required": True, "type": "string"}
                       for name in _PARAMETER_RE.findall(path)],
        "responses": {"200": {"description": "OK"}},
    }


ROUTES = [
    web.get("/api/v1/webui", webui),
    web.get("/api/v1/swagger.json", swagger),
    web.route("OPTIONS", "/api/v1/", options),
    web.get("/livez", livez, name=LIVEZ),
    web.get("/readyz", readyz, name=READYZ),
]
