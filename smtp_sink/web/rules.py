"""Fault rules at run time: ``GET``/``POST``/``DELETE /api/v1/rules``."""

from __future__ import annotations

from aiohttp import web

from ..rules import Rule, RuleError
from .common import error, json_body, json_off_loop, sink


async def list_rules(request: web.Request) -> web.Response:
    """``GET /api/v1/rules``: the fault rules in force."""
    rules = sink(request).rules
    return await json_off_loop(request, lambda: [rule.to_json() for rule in rules.rules()])


async def add_rule(request: web.Request) -> web.Response:
    """``POST /api/v1/rules``: add a fault rule (the body is a ``[[rules]]`` table as JSON)."""
    body = await json_body(request)
    try:
        rule = sink(request).rules.add(Rule.from_mapping(body))
    except (RuleError, TypeError) as exc:
        return error(400, f"rule: {exc}")
    return await json_off_loop(request, rule.to_json, status=201)


async def clear_rules(request: web.Request) -> web.Response:
    """``DELETE /api/v1/rules``: remove every fault rule."""
    sink(request).rules.clear()
    return web.Response(text="ok", content_type="text/plain")


ROUTES = [
    web.get("/api/v1/rules", list_rules),
    web.post("/api/v1/rules", add_rule),
    web.delete("/api/v1/rules", clear_rules),
]
