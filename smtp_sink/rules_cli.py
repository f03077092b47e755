"""``smtp-sink rules add|list|clear``: fault rules of a running server, through its HTTP API."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import urllib.error
import urllib.request
from typing import Any

from .config import load
from .rules import ACTIONS, SCHEDULES, STAGES

EXIT_UNREACHABLE = 1
EXIT_BAD_RULE = 2


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    rules = commands.add_parser("rules", help="add, list or clear fault rules of the running server",
                                description="Fault rules of a running smtp-sink, through its HTTP API.")
    rules.add_argument("--config", metavar="FILE", help="config file (for [http] host and port)")
    rules.add_argument("--api", metavar="URL", help="HTTP API base (default http://<[http] host>:<[http] port>)")
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
    listing = actions.add_parser("list", help="show the rules")
    listing.add_argument("--json", action="store_true")
    actions.add_parser("clear", help="remove every rule")
    rules.set_defaults(handler=run)


def _call(base: str, method: str, body: dict[str, Any] | None = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"{base}/api/v1/rules", data=data, method=method,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        text = response.read().decode()
    return json.loads(text) if text.startswith(("[", "{")) else text


def run(args: argparse.Namespace) -> int:
    if args.api:
        base = args.api.rstrip("/")
    else:
        http = load(args.config).http
        base = f"http://{http.host}:{http.port}"
    try:
        if args.rules_command == "add":
            fields = {key: getattr(args, key) for key in (
                "stage", "action", "code", "seconds", "rate", "sender", "recipient", "client",
                "schedule", "n", "probability", "seed")}
            fields["text"] = args.text[0] if len(args.text) == 1 else args.text
            rule = _call(base, "POST", fields)
            print(f"added: {_describe(rule)}")
        elif args.rules_command == "list":
            rules = _call(base, "GET")
            if args.json:
                print(json.dumps(rules, indent=2))
            elif not rules:
                print("no rules")
            for number, rule in enumerate(rules if not args.json else [], 1):
                print(f"{number}. {_describe(rule)}")
        else:
            _call(base, "DELETE")
            print("rules cleared")
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")
        with contextlib.suppress(ValueError, AttributeError):
            detail = json.loads(detail).get("Error", detail)
        print(f"smtp-sink: {detail}", file=sys.stderr)
        return EXIT_BAD_RULE
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        print(f"smtp-sink: cannot reach the HTTP API at {base}: {reason} (is `smtp-sink serve` running with HTTP on?)",
              file=sys.stderr)
        return EXIT_UNREACHABLE
    return 0


def _describe(rule: dict[str, Any]) -> str:
    match = " ".join(f"{key}={rule[key]}" for key in ("sender", "recipient", "client") if rule.get(key))
    action = {"reply": f"reply {rule['code']} {rule['text']!r}".rstrip(), "disconnect": "disconnect",
              "delay": f"delay {rule['seconds']}s", "throttle": f"throttle {rule['rate']} B/s"}[rule["action"]]
    schedule = rule["schedule"]
    if schedule in ("nth", "every", "first"):
        schedule += f" {rule['n']}"
    elif schedule == "probability":
        schedule += f" {rule['probability']}" + (f" seed {rule['seed']}" if rule["seed"] >= 0 else "")
    return f"at {rule['stage']}{' ' + match if match else ''}: {action}, {schedule}"
