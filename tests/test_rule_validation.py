"""Fault rules refuse values that would break sessions or forge replies (issue 13, section 4):
NaN or infinite numbers, unbounded ones, and reply text with CR, LF or other control
characters; the error names the field, from a config file, Python, the HTTP API or the CLI."""

from __future__ import annotations

import json
import math
import smtplib
from pathlib import Path
from typing import Any

import pytest
from support.http import request
from support.processes import run_cli

from smtp_sink.config import ConfigError, load
from smtp_sink.rules import MAX_LINE_BYTES, MAX_RULES, MAX_SECONDS, MAX_TEXT_LINES, Rule, RuleError
from smtp_sink.server import SinkServer

BAD: list[tuple[dict[str, Any], str]] = [
    ({"stage": "mail", "action": "delay", "seconds": math.nan}, "seconds: expected a finite number, got nan"),
    ({"stage": "mail", "action": "delay", "seconds": math.inf}, "seconds: expected a finite number, got inf"),
    ({"stage": "mail", "action": "delay", "seconds": -math.inf}, "seconds: expected a finite number, got -inf"),
    ({"stage": "mail", "action": "delay", "seconds": 10**400}, "seconds: expected a finite number"),
    ({"stage": "mail", "action": "delay", "seconds": MAX_SECONDS + 1}, "seconds: must be from 0 to 3600"),
    ({"stage": "mail", "code": 451, "seconds": -1}, "seconds: must be from 0 to 3600"),
    ({"stage": "mail", "code": 451, "schedule": "probability", "probability": math.nan},
     "probability: expected a finite number"),
    ({"stage": "mail", "action": "throttle", "rate": 2**62}, "rate: must be from 0 to"),
    ({"stage": "mail", "code": 451, "schedule": "nth", "n": 10**30}, "n: must be from 1 to"),
    ({"stage": "mail", "code": 451, "seed": 2**64}, "seed: must be from -1 to"),
    ({"stage": "mail", "code": 451, "seed": -2}, "seed: must be from -1 to"),
    ({"stage": "mail", "code": 550, "text": "no\r\n250 2.0.0 fine"}, "text: must not contain control characters"),
    ({"stage": "mail", "code": 550, "text": "no\n250 fine"}, "text: must not contain control characters"),
    ({"stage": "mail", "code": 550, "text": "no\rway"}, "text: must not contain control characters"),
    ({"stage": "mail", "code": 550, "text": "nul\x00"}, "text: must not contain control characters"),
    ({"stage": "mail", "code": 550, "text": "del\x7f"}, "text: must not contain control characters"),
    ({"stage": "mail", "code": 550, "text": "nel\x85"}, "text: must not contain control characters"),
    ({"stage": "mail", "code": 550, "text": "ls\u2028x"}, "text: must not contain control characters"),
    ({"stage": "mail", "code": 550, "text": ["fine", "bad\r\n"]}, "text: line 2: must not contain control characters"),
    ({"stage": "mail", "code": 550, "text": "x" * (MAX_LINE_BYTES + 1)}, "text: a reply line holds at most 506 bytes"),
    ({"stage": "mail", "code": 550, "text": "é" * 254}, "text: a reply line holds at most 506 bytes"),
    ({"stage": "mail", "code": 550, "text": ["x"] * (MAX_TEXT_LINES + 1)}, "text: at most 100 lines"),
    ({"stage": "mail", "code": 550, "sender": "a\r\nb@*"}, "sender: must not contain control characters"),
    ({"stage": "mail", "code": 550, "client": "1" * 600}, "client: at most 512 characters"),
]


@pytest.mark.parametrize(("values", "error"), BAD)
def test_bad_rule_values_are_refused_naming_the_field(values: dict[str, Any], error: str) -> None:
    with pytest.raises(RuleError) as raised:
        Rule.from_mapping(values)
    assert str(raised.value).startswith(error), str(raised.value)


def test_rules_built_in_python_are_checked_too() -> None:
    with pytest.raises(RuleError, match=r"^seconds: expected a finite number, got nan$"):
        Rule(stage="mail", action="delay", seconds=math.nan)
    with pytest.raises(RuleError, match=r"^text: line 1: must not contain control characters"):
        Rule(stage="mail", code=550, text=("a\r\n250 ok",))
    with pytest.raises(RuleError, match=r"^n: expected a number, got '2'$"):
        Rule(stage="mail", code=550, schedule="nth", n="2")  # type: ignore[arg-type]


@pytest.mark.parametrize("values", [
    {"stage": "mail", "action": "delay", "seconds": MAX_SECONDS},
    {"stage": "mail", "code": 550, "text": "x" * MAX_LINE_BYTES},
    {"stage": "mail", "code": 550, "text": ["line"] * MAX_TEXT_LINES},
    {"stage": "mail", "code": 550, "text": "Zugriff verweigert: Postfach voll\t(ß)"},
    {"stage": "mail", "code": 451, "schedule": "probability", "probability": 0, "seed": 2**63 - 1},
])
def test_values_within_the_bounds_still_work(values: dict[str, Any]) -> None:
    Rule.from_mapping(values)


@pytest.mark.parametrize(("table", "error"), [
    ('stage = "mail"\naction = "delay"\nseconds = nan', r"#1: seconds: expected a finite number, got nan"),
    ('stage = "mail"\naction = "delay"\nseconds = inf', r"#1: seconds: expected a finite number, got inf"),
    ('stage = "mail"\ncode = 550\ntext = "no\\r\\n250 fine"', r"\[\[rules\]\] #1: text: must not contain control"),
    ('stage = "mail"\ncode = 550\ntext = ["a", "b\\n"]', r"\[\[rules\]\] #1: text: line 2: must not contain control"),
])
def test_a_config_file_with_a_bad_rule_is_a_config_error(tmp_path: Path, table: str, error: str) -> None:
    path = tmp_path / "config.toml"
    path.write_text(f"[[rules]]\n{table}\n")
    with pytest.raises(ConfigError, match=error):
        load(str(path))


@pytest.mark.parametrize(("raw", "error"), [
    (b'{"stage": "mail", "action": "delay", "seconds": NaN}', "rule: seconds: expected a finite number, got nan"),
    (b'{"stage": "mail", "action": "delay", "seconds": Infinity}', "rule: seconds: expected a finite number, got inf"),
    (b'{"stage": "mail", "action": "delay", "seconds": 1e999}', "rule: seconds: expected a finite number, got inf"),
    (b'{"stage": "rcpt", "code": 550, "text": "no\\r\\n250 2.1.5 fine"}', "rule: text: must not contain control"),
    (b'{"stage": "rcpt", "code": 550, "text": ["a", "b\\u0000"]}', "rule: text: line 2: must not contain control"),
    (b'{"stage": "rcpt", "code": 550, "n": 1e3}', "rule: n: expected a number, got 1000.0"),
])
def test_the_api_refuses_a_bad_rule_naming_the_field(web_server: SinkServer, raw: bytes, error: str) -> None:
    status, _, body = request(web_server, "/api/v1/rules", "POST", raw, {"Content-Type": "application/json"})
    assert status == 400, body
    assert json.loads(body)["Error"].startswith(error)
    assert json.loads(request(web_server, "/api/v1/rules")[2]) == []


def _rcpt_replies(server: SinkServer) -> tuple[tuple[int, bytes], tuple[int, bytes]]:
    with smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=10) as smtp:
        smtp.ehlo("client.test")
        mail = smtp.mail("ann@example.test")
        return mail, smtp.rcpt("bob@example.test")


def test_a_refused_rule_leaves_sessions_untouched(web_server: SinkServer) -> None:
    """A NaN delay used to kill matching sessions with a traceback, and CR LF in the text to
    inject a reply line; both are refused, and sessions at those stages go on as usual."""
    for rule in ({"stage": "mail", "action": "delay", "seconds": math.nan},
                 {"stage": "rcpt", "code": 550, "text": "no\r\n250 2.1.5 fine"}):
        raw = json.dumps(rule).encode()  # json.dumps writes NaN as a bare NaN, as Python clients do
        assert request(web_server, "/api/v1/rules", "POST", raw)[0] == 400
    (mail, _), (rcpt, text) = _rcpt_replies(web_server)
    assert (mail, rcpt) == (250, 250) and b"\n" not in text


def test_a_server_holds_a_bounded_number_of_rules(web_server: SinkServer) -> None:
    for _ in range(MAX_RULES):
        web_server.rules.add(Rule(stage="rcpt", code=450, recipient="nobody@*"))
    status, _, body = request(web_server, "/api/v1/rules", "POST", b'{"stage": "rcpt", "code": 550}')
    assert status == 400 and json.loads(body)["Error"].startswith("rule: too many rules"), body
    assert len(web_server.rules) == MAX_RULES


def test_the_cli_reports_a_bad_rule_naming_the_field(web_server: SinkServer) -> None:
    base = f"http://127.0.0.1:{web_server.http_port}"
    done = run_cli("rules", "--api", base, "add", "--stage", "mail", "--action", "delay", "--seconds", "nan")
    assert done.returncode == 2
    assert done.stderr.strip() == "smtp-sink: rule: seconds: expected a finite number, got nan"
    assert len(web_server.rules) == 0
