"""``GET /api/v1/message/{id}/lint``: what the sending application did wrong (:mod:`smtp_sink.lint`).

``{id}`` may be ``latest`` (and ``latest?query=``), as on every message route. The message is
read and linted in a reader thread; the answer is
``{"Findings": [{"Check", "Severity", "Evidence", "Reference"}...], "Errors": n, "Warnings": n, "Infos": n}``.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ..lint import message_findings
from .common import json_off_loop, sink
from .message import message_id


def _lint(request: web.Request) -> dict[str, Any]:
    """The lint report of the message the URL names (in a reader thread)."""
    return message_findings(sink(request).store, message_id(request)).to_json()


async def lint(request: web.Request) -> web.Response:
    """The client-lint findings of one message (``docs/lint.md``)."""
    return await json_off_loop(request, lambda: _lint(request))


ROUTES = [
    web.get("/api/v1/message/{id}/lint", lint),
]
