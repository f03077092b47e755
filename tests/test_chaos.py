"""``GET``/``PUT /api/v1/chaos``: Mailpit's chaos triggers against the real server, kept as fault rules
marked ``chaos`` (visible in ``smtp-sink rules list``), Mailpit's replies and validation."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from support.http import request, send_json
from support.processes import run_cli
from support.wire import Wire

from smtp_sink.rules import Rule, RuleError, RuleSet, Trigger
from smtp_sink.server import SinkServer

DEFAULTS = {"Sender": {"ErrorCode": 451, "Probability": 0}, "Recipient": {"ErrorCode": 451, "Probability": 0},
            "Authentication": {"ErrorCode": 535, "Probability": 0}}


def put(server: SinkServer, body: Any) -> tuple[int, Any]:
    status, _, raw = send_json(server, "/api/v1/chaos", "PUT", body)
    return status, json.loads(raw)


def get(server: SinkServer) -> Any:
    status, _, raw = request(server, "/api/v1/chaos")
    assert status == 200, raw
    return json.loads(raw)


def rules(server: SinkServer) -> list[dict[str, Any]]:
    return json.loads(request(server, "/api/v1/rules")[2])


def test_chaos_is_on_with_mailpits_defaults(web_server: SinkServer) -> None:
    assert get(web_server) == DEFAULTS
    assert list(get(web_server)) == ["Sender", "Recipient", "Authentication"]


def test_triggers_refuse_mail_rcpt_and_auth_with_mailpits_replies(start_server: Any) -> None:
    server = start_server(http=True, auth={"mode": "accept-any"})
    body = {"Sender": {"ErrorCode": 452, "Probability": 100}}
    assert put(server, body) == (200, {**DEFAULTS, "Sender": {"ErrorCode": 452, "Probability": 100}})
    with Wire(server.smtp_port) as wire:
        wire.reply()
        wire.cmd("EHLO client.test")
        assert wire.cmd("MAIL FROM:<a@example.test>") == (452, ["Chaos sender error"])
        put(server, {"Recipient": {"ErrorCode": 550, "Probability": 100},
                     "Authentication": {"ErrorCode": 454, "Probability": 100}})
        assert wire.cmd("MAIL FROM:<a@example.test>")[0] == 250  # the sender trigger was reset
        assert wire.cmd("RCPT TO:<b@example.test>") == (550, ["Chaos recipient error"])
        assert wire.cmd("RSET")[0] == 250
        token = base64.b64encode(b"\0user\0pass").decode()
        assert wire.cmd(f"AUTH PLAIN {token}") == (454, ["Chaos authentication error"])
        put(server, {})
        assert wire.cmd(f"AUTH PLAIN {token}")[0] == 235  # the session goes on, as in Mailpit


def test_triggers_are_rules_marked_chaos_and_listed(web_server: SinkServer) -> None:
    send_json(web_server, "/api/v1/rules", "POST", {"stage": "rcpt", "recipient": "bob@*", "code": 550})
    put(web_server, {"Sender": {"ErrorCode": 451, "Probability": 5}, "Recipient": {"Probability": 10}})
    listed = rules(web_server)
    assert [(r["stage"], r["code"], r["chaos"]) for r in listed] == [("rcpt", 550, False), ("mail", 451, True),
                                                                    ("rcpt", 451, True)]
    chaos = listed[1]
    assert (chaos["text"], chaos["schedule"], chaos["probability"]) == ("Chaos sender error", "probability", 0.05)
    done = run_cli("rules", "list", "--api", f"http://127.0.0.1:{web_server.http_port}")
    assert done.returncode == 0, done.stderr
    assert "at mail: reply 451 'Chaos sender error', probability 0.05" in done.stdout
    assert "at rcpt: reply 451 'Chaos recipient error', probability 0.1" in done.stdout
    put(web_server, {"Authentication": {"Probability": 1}})  # replaces the chaos rules only
    assert [(r["stage"], r["chaos"]) for r in rules(web_server)] == [("rcpt", False), ("auth", True)]
    put(web_server, {})  # {} resets every trigger
    assert [(r["stage"], r["chaos"]) for r in rules(web_server)] == [("rcpt", False)]
    assert get(web_server) == DEFAULTS


def test_a_code_at_zero_percent_is_kept_and_zero_means_the_default(web_server: SinkServer) -> None:
    status, answer = put(web_server, {"Sender": {"ErrorCode": 421}, "Recipient": {"ErrorCode": 0, "Probability": 3}})
    assert status == 200
    assert answer == {**DEFAULTS, "Sender": {"ErrorCode": 421, "Probability": 0},
                      "Recipient": {"ErrorCode": 451, "Probability": 3}}
    assert get(web_server) == answer
    assert [r["stage"] for r in rules(web_server)] == ["rcpt"]  # a 0% trigger is no rule
    request(web_server, "/api/v1/rules", "DELETE")  # clearing the rules clears chaos too
    assert get(web_server) == DEFAULTS


def test_keys_match_without_regard_to_case(web_server: SinkServer) -> None:
    status, answer = put(web_server, {"sender": {"errorcode": 550, "PROBABILITY": 7}, "AUTHENTICATION": None})
    assert status == 200 and answer["Sender"] == {"ErrorCode": 550, "Probability": 7}


@pytest.mark.parametrize(("body", "error"), [
    ({"Sender": {"ErrorCode": 399}}, "error code must be between 400 and 599"),
    ({"Recipient": {"ErrorCode": 600, "Probability": 500}}, "error code must be between 400 and 599"),
    ({"Authentication": {"Probability": 101}}, "probability must be between 0 and 100"),
    ({"Sender": {"Probability": -1}}, "probability must be between 0 and 100"),
    ({"Sender": {"Probability": 5.5}}, "Sender.Probability: expected a whole number, got 5.5"),
    ({"Sender": {"ErrorCode": "451"}}, 'Sender.ErrorCode: expected a whole number, got "451"'),
    ({"Sender": {"ErrorCode": True}}, "Sender.ErrorCode: expected a whole number, got true"),
    ({"Sender": 451}, "Sender: expected an object with ErrorCode, Probability, got 451"),
    ({"Sender": {"Code": 451}}, "Sender: unknown field 'Code'"),
    ({"Senders": {}}, "unknown field 'Senders'"),
])
def test_invalid_triggers_are_400_and_change_nothing(web_server: SinkServer, body: Any, error: str) -> None:
    put(web_server, {"Sender": {"ErrorCode": 452, "Probability": 9}})
    before = get(web_server)
    status, answer = put(web_server, {"Sender": {"ErrorCode": 451, "Probability": 50}, **body})
    assert status == 400 and answer["Error"].startswith(error), answer
    assert get(web_server) == before  # no trigger was changed (Mailpit changes those before the bad one)


def test_an_empty_body_is_400(web_server: SinkServer) -> None:
    status, _, answer = request(web_server, "/api/v1/chaos", "PUT", b"")
    assert status == 400 and "{} resets" in json.loads(answer)["Error"]
    assert request(web_server, "/api/v1/chaos", "PUT", b"[]")[0] == 400


def test_a_chaos_rule_is_only_what_put_makes() -> None:
    with pytest.raises(RuleError, match="chaos: only a rule that replies at stage mail, rcpt or auth"):
        Rule(stage="data", code=451, schedule="probability", probability=0.5, chaos=True)
    with pytest.raises(RuleError, match="chaos: expected true or false"):
        Rule(stage="mail", code=451, chaos="yes")  # type: ignore[arg-type]
    rule_set = RuleSet([Rule(stage="mail", code=450)])
    rule_set.set_chaos({"Sender": Trigger(451, 100)})
    assert [r.chaos for r in rule_set.rules()] == [False, True]
    assert Rule.from_mapping(rule_set.rules()[1].to_json()) == rule_set.rules()[1]
