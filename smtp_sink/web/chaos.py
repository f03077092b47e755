"""``GET``/``PUT /api/v1/chaos``: Mailpit's chaos triggers, kept as fault rules marked ``chaos``.

Always on (Mailpit needs ``--enable-chaos``): anyone who can call the API can add fault rules
through ``/api/v1/rules`` anyway, so a switch would protect nothing.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ..jsonbody import BodyError, integer, pick
from ..rules import CHAOS_CODES, RuleError, Trigger
from .common import APIError, json_body, sink

TRIGGER_FIELDS = ("ErrorCode", "Probability")


def _json(triggers: dict[str, Trigger]) -> dict[str, Any]:
    return {name: trigger.to_json() for name, trigger in triggers.items()}


async def get_chaos(request: web.Request) -> web.Response:
    """The triggers in force: ``{"Sender", "Recipient", "Authentication"}``."""
    return web.json_response(_json(sink(request).rules.chaos()))


async def set_chaos(request: web.Request) -> web.Response:
    """Replace every trigger (one left out is reset to its default code at 0%; ``{}`` resets all);
    nothing changes when one is invalid. Answers the triggers in force."""
    if not (await request.read()).strip():
        raise APIError(400, "empty body: send the triggers as JSON ({} resets them all)")
    body = await json_body(request, tuple(CHAOS_CODES))
    try:
        triggers = {name: _trigger(body.get(name), name, default) for name, default in CHAOS_CODES.items()}
        rules = sink(request).rules
        rules.set_chaos(triggers)
    except (BodyError, RuleError) as exc:
        raise APIError(400, str(exc)) from None
    return web.json_response(_json(rules.chaos()))


def _trigger(value: Any, name: str, default: int) -> Trigger:
    """One trigger of the body; a missing one, or ``ErrorCode`` 0, gets the default code (Mailpit)."""
    fields = pick(value, TRIGGER_FIELDS, name)
    code = integer(fields.get("ErrorCode"), f"{name}.ErrorCode") or default
    return Trigger(code, integer(fields.get("Probability"), f"{name}.Probability"))


ROUTES = [web.get("/api/v1/chaos", get_chaos), web.put("/api/v1/chaos", set_chaos)]
