"""``smtp-sink rules add|list|clear``: fault rules of a running server, through its HTTP API."""

from __future__ import annotations

import argparse
import contextlib
import json
import urllib.error
import urllib.request
from typing import TYPE_CHECKING, Any

from ..rules import ACTIONS, SCHEDULES, STAGES
from .common import EXIT_OK, CommandError, UsageError, add_options, api_base

if TYPE_CHECKING:
    from .common import Commands


def register(commands: Commands) -> None:
    """Add ``rules`` and its actions to the ``smtp-sink`` parser."""
    rules = commands.add_parser("rules", help="add, list or clear fault rules of the running server",
                                description="Fault rules of a running smtp-sink, through its HTTP API.")
    add_options(rules, "config", "api")
    actions = rules.add_subparsers(dest="rules_command", metavar="ACTION")
    actions.required = True
    add = actions.add_parser("add", help="add a rule (takes effect on the next command it matches)")
    add.add_argument("--stage", required=True, choices=STAGES)
    add.add_argument("--action", choices=ACTIONS, default="reply")
    add.add_argument("--code", type=int, default=0, help="4xx or 5xx reply code (action reply)")
    add.add_argument("--text", action="append", default=[], help="reply text; repeat for a multi-line reply")
    add.add_argument("--seconds", type=float, default=0.0, help="delay (action delay)")
    add.add_argument("--rate", type=int, default=0, help="bytes per second (action throttle)")
    add.add_argument("--sender", default="", help="glob on the sender")
    add.add_argument("--recipient", default="", help="glob on a recipient")
    add.add_argument("--client", default="", help="glob on the client IP")
    add.add_argument("--schedule", choices=SCHEDULES, default="always")
    add.add_argument("--n", type=int, default=1, help="for nth, every, first")
    add.add_argument("--probability", type=float, default=1.0)
    add.add_argument("--seed", type=int, default=-1, help="seed for probability (-1: random)")
    add.set_defaults(handler=cmd_rules_add)
    listing = actions.add_parser("list", help="show the rules")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(handler=cmd_rules_list)
    clear = actions.add_parser("clear", help="remove every rule")
    clear.set_defaults(handler=cmd_rules_clear)
    for action in (add, listing, clear):  # `rules list --api URL` as well as `rules --api URL list`
        add_options(action, "config", "api", again=True)


def cmd_rules_add(args: argparse.Namespace) -> int:
    """Add one rule to the running server and print what it does."""
    fields = {key: getattr(args, key) for key in (
        "stage", "action", "code", "seconds", "rate", "sender", "recipient", "client",
        "schedule", "n", "probability", "seed")}
    fields["text"] = args.text[0] if len(args.text) == 1 else args.text
    rule = _call(args, "POST", fields)
    print(f"added: {_describe(rule)}")
    return EXIT_OK


def cmd_rules_list(args: argparse.Namespace) -> int:
    """Print the running server's rules, numbered (``--json``: as the API returns them)."""
    rules = _call(args, "GET")
    if args.json:
        print(json.dumps(rules, indent=2))
    elif not rules:
        print("no rules")
    else:
        for number, rule in enumerate(rules, 1):
            print(f"{number}. {_describe(rule)}")
    return EXIT_OK


def cmd_rules_clear(args: argparse.Namespace) -> int:
    """Remove every rule of the running server."""
    _call(args, "DELETE")
    print("rules cleared")
    return EXIT_OK


def _call(args: argparse.Namespace, method: str, body: dict[str, Any] | None = None) -> Any:
    """``method /api/v1/rules`` on the running server: its JSON answer. A refused rule is a
    :class:`UsageError` (exit 2), an unreachable server a :class:`CommandError` (exit 1)."""
    base = api_base(args)
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"{base}/api/v1/rules", data=data, method=method,
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            text = response.read().decode()
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")
        with contextlib.suppress(ValueError, AttributeError):
            detail = json.loads(detail).get("Error", detail)
        raise UsageError(detail) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise CommandError(f"cannot reach the HTTP API at {base}: {reason} "
                           "(is `smtp-sink serve` running with HTTP on?)") from None
    return json.loads(text) if text.startswith(("[", "{")) else text


def _describe(rule: dict[str, Any]) -> str:
    """One line saying what a rule matches, does and when."""
    match = " ".join(f"{key}={rule[key]}" for key in ("sender", "recipient", "client") if rule.get(key))
    text = " / ".join(rule["text"]) if isinstance(rule["text"], list) else rule["text"]
    action = {"reply": f"reply {rule['code']}" + (f" {text!r}" if text else ""), "disconnect": "disconnect",
              "delay": f"delay {rule['seconds']}s", "throttle": f"throttle {rule['rate']} B/s",
              "store-then-drop": "store-then-drop (stored, then dropped before the 250)"}[rule["action"]]
    schedule = rule["schedule"]
    if schedule in ("nth", "every", "first"):
        schedule += f" {rule['n']}"
    elif schedule == "probability":
        schedule += f" {rule['probability']}" + (f" seed {rule['seed']}" if rule["seed"] >= 0 else "")
    return f"at {rule['stage']}{' ' + match if match else ''}: {action}, {schedule}"
