"""The shape of the pure core: no I/O in the protocol modules (a CRAM-MD5 challenge is injected),
session settings derived from the config defaults, modes and rule words as enums that still read
and print as the plain words of TOML, JSON and the command line."""

from __future__ import annotations

import ast
import base64
import dataclasses
import json
from pathlib import Path

import pytest

from smtp_sink import config as config_module
from smtp_sink.config import AuthMode, Config, ConfigError, LogLevel, Loop, TLSMode, Unknown, load
from smtp_sink.protocol import Settings, SMTPSession
from smtp_sink.replies import Code, Reply
from smtp_sink.rules import Action, Rule, RuleSet, Schedule, Stage
from smtp_sink.sasl import cram_md5_challenge

PACKAGE = Path(config_module.__file__).parent
PURE = ["protocol", "data_reader", "sasl", "policy", "rules", "addresses", "replies", "choices"]
# Modules that reach the outside world: files, sockets, the clock, randomness, threads, logs.
IMPURE = {"os", "io", "socket", "ssl", "select", "selectors", "asyncio", "time", "datetime", "random", "secrets",
          "pathlib", "shutil", "tempfile", "subprocess", "threading", "logging", "uuid"}
# What each pure module needs beyond that, and why (anything else is a failure).
ALLOWED = {
    "rules": {"random", "threading"},  # seeded schedules; the rule set is shared by the sessions of a server
}


def imports(module: str) -> set[str]:
    tree = ast.parse((PACKAGE / f"{module}.py").read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("module", PURE)
def test_the_core_does_no_io(module: str) -> None:
    assert imports(module) & IMPURE <= ALLOWED.get(module, set())


def challenge_session(source: object) -> SMTPSession:
    settings = Settings.from_config(Config(), hostname="sink.test", auth="accept-any")
    session = SMTPSession(settings, challenge=source)  # type: ignore[arg-type]
    session.feed(b"EHLO c.test\r\n")
    return session


def test_the_cram_md5_challenge_comes_from_the_injected_source() -> None:
    asked: list[str] = []

    def source(hostname: str) -> bytes:
        asked.append(hostname)
        return cram_md5_challenge(12345, 1700000000, hostname)

    session = challenge_session(source)
    first = session.feed(b"AUTH CRAM-MD5\r\n")[0]
    assert isinstance(first, Reply) and first.code == Code.AUTH_CHALLENGE
    assert base64.b64decode(first.lines[0]) == b"<12345.1700000000@sink.test>"
    assert asked == ["sink.test"]


def test_without_a_challenge_source_cram_md5_is_not_offered() -> None:
    session = SMTPSession(Settings.from_config(Config(), auth="accept-any"))
    ehlo = session.feed(b"EHLO c.test\r\n")[0]
    assert isinstance(ehlo, Reply) and "AUTH PLAIN LOGIN" in ehlo.lines
    refused = session.feed(b"AUTH CRAM-MD5\r\n")[0]
    assert isinstance(refused, Reply) and refused.code == Code.PARAMETER_NOT_IMPLEMENTED
    assert "use PLAIN, LOGIN)" in refused.text


def test_session_settings_have_no_defaults_of_their_own() -> None:
    """The configured values come from config.py only (Settings.from_config)."""
    configured = {"hostname", "max_message_size", "max_recipients", "smtputf8", "auth", "users", "require_tls"}
    no_default = {f.name for f in dataclasses.fields(Settings)
                  if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
    assert no_default == configured
    with pytest.raises(TypeError):
        Settings()  # type: ignore[call-arg]
    settings, smtp = Settings.from_config(Config()), Config().smtp
    assert (settings.hostname, settings.max_message_size, settings.max_recipients, settings.smtputf8) == (
        smtp.hostname, smtp.max_message_size, smtp.max_recipients, smtp.smtputf8)
    assert settings.auth is Config().auth.mode


def test_modes_are_enums_that_read_and_print_as_their_words(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[auth]\nmode = "users"\n[tls]\nmode = "off"\n[policy]\nunknown = "553"\n'
                    '[smtp]\nloop = "asyncio"\n[log]\nlevel = "debug"\n')
    config = load(path, environ={"SMTP_SINK_TLS_MODE": "on"})
    assert config.auth.mode is AuthMode.USERS and config.tls.mode is TLSMode.ON
    assert config.policy.unknown is Unknown.REFUSE_553 and config.smtp.loop is Loop.ASYNCIO
    assert config.log.level is LogLevel.DEBUG
    assert config.auth.mode == "users" and f"{config.auth.mode}" == "users" and str(config.tls.mode) == "on"
    assert json.dumps({"mode": config.auth.mode}) == '{"mode": "users"}'
    assert dataclasses.replace(config.auth, mode="accept-any").mode is AuthMode.ACCEPT_ANY
    with pytest.raises(ConfigError, match=r"option --auth: must be one of off, accept-any, users, got 'some'"):
        load(None, {"auth": {"mode": "some"}}, environ={})


def test_rule_words_are_enums_and_round_trip_as_json() -> None:
    rule = Rule.from_mapping({"stage": "after-data", "action": "delay", "seconds": 1, "schedule": "nth", "n": 2})
    assert (rule.stage, rule.action, rule.schedule) == (Stage.AFTER_DATA, Action.DELAY, Schedule.NTH)
    as_json = json.loads(json.dumps(rule.to_json()))
    assert as_json["stage"] == "after-data" and as_json["action"] == "delay" and as_json["schedule"] == "nth"
    assert Rule.from_mapping(as_json) == rule


def test_a_rule_set_lists_its_rules() -> None:
    rules = RuleSet([Rule(stage="mail", code=450)])
    rules.add(Rule(stage="rcpt", code=550))
    assert [rule.stage for rule in rules.rules()] == [Stage.MAIL, Stage.RCPT]
    assert not hasattr(RuleSet, "list")  # no method shadows the builtin inside the class
