"""``GET /api/v1/tls-findings``: what the TLS probe (``[tls] probe``) found."""

from __future__ import annotations

from aiohttp import web

from .common import json_off_loop, sink


async def tls_findings(request: web.Request) -> web.Response:
    """``GET /api/v1/tls-findings``: the TLS probe in force (``Probe``, "" when off) and its findings,
    oldest first: clients that took the bad certificate and sent mail (``tls-not-verified``, with
    the ``MessageID``) and clients that refused it (``tls-probe-refused``)."""
    findings = sink(request).tls_findings
    return await json_off_loop(request, lambda: {
        "Probe": findings.probe, "Findings": [finding.to_json() for finding in findings.all()]})


ROUTES = [web.get("/api/v1/tls-findings", tls_findings)]
