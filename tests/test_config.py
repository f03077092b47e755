"""Configuration: defaults < config file < SMTP_SINK_* environment < flags, file discovery,
the documented config.toml, and an error message naming the file (or variable) and key for
every kind of mistake."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
from pathlib import Path

import pytest
from support import ROOT
from support.processes import clean_env

from smtp_sink.config import Config, ConfigError, load, sections

CONFIG_TOML = ROOT / "config.toml"


def write(path: Path, text: str | bytes) -> Path:
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


# -- precedence ------------------------------------------------------------------------------


def test_no_file_no_env_no_flags_is_the_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    config = load(None, environ={})
    assert config == Config()
    assert config.source == "(defaults)"
    assert (config.smtp.host, config.smtp.port, config.http.port, config.store.path) == (
        "127.0.0.1", 2525, 8025, "./mail",
    )


def test_each_layer_beats_the_one_before(tmp_path: Path) -> None:
    file = write(tmp_path / "c.toml", (
        "[smtp]\nport = 1111\nhostname = \"file.test\"\nmax_recipients = 7\nidle_timeout = 9.5\n"
        "[store]\npath = \"/from/file\"\nmax_messages = 3\n"
        "[http]\nenabled = false\n"
    ))
    env = {
        "SMTP_SINK_SMTP_PORT": "2222",
        "SMTP_SINK_SMTP_HOSTNAME": "env.test",
        "SMTP_SINK_STORE_PATH": "/from/env",
        "SMTP_SINK_LOG_LEVEL": "warning",
    }
    flags = {
        "smtp": {"port": 3333, "hostname": None, "loop": "asyncio"},  # None: the flag was not given
        "store": {"path": "/from/flag"},
    }
    config = load(file, flags, environ=env)
    assert config.smtp.port == 3333  # flag > env > file
    assert config.store.path == "/from/flag"  # flag > env > file
    assert config.smtp.hostname == "env.test"  # env > file; an absent flag changes nothing
    assert config.log.level == "warning"  # env > default
    assert config.smtp.max_recipients == 7  # file > default
    assert config.smtp.idle_timeout == 9.5
    assert config.store.max_messages == 3
    assert config.http.enabled is False
    assert config.smtp.loop == "asyncio"  # flag > default
    assert config.smtp.host == "127.0.0.1"  # default
    assert config.http.port == 8025  # default, in a section the file set partly
    assert config.source == str(file)


def test_env_strings_become_typed_values() -> None:
    config = load(None, environ={
        "SMTP_SINK_HTTP_ENABLED": "no",
        "SMTP_SINK_SMTP_SMTPUTF8": "FALSE",
        "SMTP_SINK_STORE_FSYNC": "1",
        "SMTP_SINK_SMTP_IDLE_TIMEOUT": "2.5",
        "SMTP_SINK_STORE_MAX_AGE": "60",
        "SMTP_SINK_SMTP_MAX_CONNECTIONS": "12",
        "SMTP_SINK_POLICY_MAILBOXES": "ann@example.test, bob@example.test",
        "SMTP_SINK_POLICY_UNKNOWN": "550",
    })
    assert config.http.enabled is False
    assert config.smtp.smtputf8 is False
    assert config.store.fsync is True
    assert config.smtp.idle_timeout == 2.5 and isinstance(config.smtp.idle_timeout, float)
    assert config.store.max_age == 60.0 and isinstance(config.store.max_age, float)
    assert config.smtp.max_connections == 12
    assert config.policy.mailboxes == ("ann@example.test", "bob@example.test")
    assert config.policy.unknown == "550"


def test_unrelated_environment_variables_are_ignored() -> None:
    assert load(None, environ={"HOME": "/x", "SMTP_SINKHOLE": "1", "smtp_sink_smtp_port": "1"}) == Config()


def test_integers_are_accepted_where_a_number_is_expected(tmp_path: Path) -> None:
    file = write(tmp_path / "c.toml", "[smtp]\nidle_timeout = 5\n")
    assert load(file, environ={}).smtp.idle_timeout == 5.0


def test_config_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        Config().smtp.port = 1  # type: ignore[misc]


# -- discovery -------------------------------------------------------------------------------


def test_discovery_local_file_then_env_then_explicit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert load(None, environ={}).source == "(defaults)"
    write(tmp_path / "smtp-sink.toml", "[smtp]\nport = 4444\n")
    local = load(None, environ={})
    assert (local.smtp.port, local.source) == (4444, "smtp-sink.toml")
    other = write(tmp_path / "other.toml", "[smtp]\nport = 5555\n")
    from_env = load(None, environ={"SMTP_SINK_CONFIG": str(other)})
    assert (from_env.smtp.port, from_env.source) == (5555, str(other))
    explicit = write(tmp_path / "explicit.toml", "[smtp]\nport = 6666\n")
    assert load(explicit, environ={"SMTP_SINK_CONFIG": str(other)}).smtp.port == 6666


def test_an_empty_smtp_sink_config_is_unset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "smtp-sink.toml", "[smtp]\nport = 4444\n")
    assert load(None, environ={"SMTP_SINK_CONFIG": ""}).smtp.port == 4444


def test_a_local_folder_named_like_the_file_is_not_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "smtp-sink.toml").mkdir()
    assert load(None, environ={}) == Config()


# -- config.toml -----------------------------------------------------------------------------


def test_repository_config_toml_is_exactly_the_defaults() -> None:
    config = load(CONFIG_TOML, environ={})
    assert config == Config()
    assert config.source == str(CONFIG_TOML)


def test_config_toml_sets_and_documents_every_key_of_every_section() -> None:
    lines = CONFIG_TOML.read_text().splitlines()
    section = None
    documented: list[tuple[str | None, str]] = []
    for number, line in enumerate(lines):
        header = re.fullmatch(r"\[(\w+)\]", line)
        if header:
            section = header.group(1)
            continue
        key = re.match(r"(\w+)\s*=", line)
        if key:
            assert lines[number - 1].startswith("#"), f"[{section}] {key.group(1)} has no comment line above it"
            documented.append((section, key.group(1)))
    expected = [(name, field.name) for name, kind in sections().items() for field in dataclasses.fields(kind)]
    assert sorted(documented) == sorted(expected)
    assert len(documented) == len(set(documented))


# -- errors ----------------------------------------------------------------------------------

FILE_ERRORS = {
    "unknown section": ("[smpt]\nport = 1\n",
                        r"unknown section \[smpt\] \(known: smtp, store, policy, auth, tls, http, log, tags, relay, "
                        r"webhook, checks, sessions, rules\)"),
    "unknown key": ("[smtp]\nprot = 1\n", r"unknown key \[smtp\] prot \(known: host, port, "),
    "string for port": ('[smtp]\nport = "2525"\n', r"\[smtp\] port: expected an integer, got '2525'"),
    "int for bool": ("[smtp]\nsmtputf8 = 1\n", r"\[smtp\] smtputf8: expected true or false, got 1"),
    "bool for int": ("[smtp]\nport = true\n", r"\[smtp\] port: expected an integer, got True"),
    "float for int": ("[smtp]\nport = 25.0\n", r"\[smtp\] port: expected an integer, got 25\.0"),
    "string for number": ('[smtp]\nidle_timeout = "5"\n', r"\[smtp\] idle_timeout: expected a finite number"),
    "nan": ("[smtp]\nidle_timeout = nan\n", r"\[smtp\] idle_timeout: expected a finite number, got nan"),
    "inf": ("[store]\nmax_age = inf\n", r"\[store\] max_age: expected a finite number, got inf"),
    "port out of range": ("[smtp]\nport = 70000\n", r"\[smtp\] port: must be at most 65535, got 70000"),
    "negative size": ("[smtp]\nmax_message_size = -1\n", r"\[smtp\] max_message_size: must be at least 0, got -1"),
    "zero connections": ("[smtp]\nmax_connections = 0\n", r"\[smtp\] max_connections: must be at least 1"),
    "negative deadline": ("[smtp]\ncommand_timeout = -1\n", r"\[smtp\] command_timeout: must be at least 0"),
    "fractional rate": ("[smtp]\ndata_min_rate = 0.5\n", r"\[smtp\] data_min_rate: expected an integer"),
    "infinite grace": ("[smtp]\ndata_rate_grace = inf\n", r"\[smtp\] data_rate_grace: expected a finite number"),
    "negative http port": ("[http]\nport = -1\n", r"\[http\] port: must be at least 0, got -1"),
    "bad loop": ('[smtp]\nloop = "foo"\n', r"\[smtp\] loop: must be one of auto, asyncio, uvloop, got 'foo'"),
    "bad log level": ('[log]\nlevel = "loud"\n', r"\[log\] level: must be one of debug, info, warning, error"),
    "empty host": ('[smtp]\nhost = ""\n', r"\[smtp\] host: must be non-empty text"),
    "CRLF in hostname": ('[smtp]\nhostname = "a\\r\\n250 b"\n', r"\[smtp\] hostname: must be non-empty text"),
    "string for list": ('[policy]\nmailboxes = "a@b.test"\n', r"\[policy\] mailboxes: expected a list of strings"),
    "number in table": ("[policy]\nforwards = { a = 1 }\n", r'\[policy\] forwards\."a": expected a string, got 1'),
    "section not a table": ("smtp = 3\n", r"smtp must be a table \[smtp\]"),
    "invalid TOML": ("[smtp\nport = 1\n", r"invalid TOML: .*line 1"),
    "duplicate key": ("[smtp]\nport = 1\nport = 2\n", r"invalid TOML: "),
    "not UTF-8": (b'[smtp]\nhostname = "caf\xe9"\n', r"invalid TOML: not UTF-8 text"),
    "bad rule": ('[[rules]]\nstage = "never"\n', r"\[\[rules\]\] #1: "),
}


@pytest.mark.parametrize(("text", "message"), FILE_ERRORS.values(), ids=FILE_ERRORS.keys())
def test_file_error_names_the_file_and_key(tmp_path: Path, text: str | bytes, message: str) -> None:
    file = write(tmp_path / "c.toml", text)
    with pytest.raises(ConfigError) as caught:
        load(file, environ={})
    text = str(caught.value)
    assert text.startswith(f"{file}: "), text  # the whole path, not only the name
    assert re.match(message, text[len(str(file)) + 2 :]), text
    assert "\n" not in str(caught.value)


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^.*nope\.toml: no such config file$"):
        load(tmp_path / "nope.toml", environ={})


def test_missing_file_from_the_environment_names_the_variable(tmp_path: Path) -> None:
    missing = tmp_path / "gone.toml"
    with pytest.raises(ConfigError) as caught:
        load(None, environ={"SMTP_SINK_CONFIG": str(missing)})
    assert str(caught.value) == f"{missing}: no such config file (named by SMTP_SINK_CONFIG)"


def test_a_folder_as_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(tmp_path))}: cannot read: "):
        load(tmp_path, environ={})


ENV_ERRORS = {
    "unknown variable": ({"SMTP_SINK_SMTP_PROT": "1"}, r"environment variable SMTP_SINK_SMTP_PROT: unknown setting"),
    "no section": ({"SMTP_SINK_PORT": "1"}, r"environment variable SMTP_SINK_PORT: unknown setting"),
    "unknown section": ({"SMTP_SINK_SMPT_PORT": "1"}, r"environment variable SMTP_SINK_SMPT_PORT: unknown setting"),
    "not a number": ({"SMTP_SINK_SMTP_PORT": "abc"},
                     r"environment variable SMTP_SINK_SMTP_PORT: expected an integer, got 'abc'"),
    "empty number": ({"SMTP_SINK_SMTP_PORT": ""}, r"environment variable SMTP_SINK_SMTP_PORT: expected an integer"),
    "float for int": ({"SMTP_SINK_SMTP_MAX_RECIPIENTS": "2.5"},
                      r"environment variable SMTP_SINK_SMTP_MAX_RECIPIENTS: expected an integer, got '2\.5'"),
    "out of range": ({"SMTP_SINK_SMTP_PORT": "70000"},
                     r"environment variable SMTP_SINK_SMTP_PORT: must be at most 65535, got 70000"),
    "bad bool": ({"SMTP_SINK_HTTP_ENABLED": "maybe"},
                 r"environment variable SMTP_SINK_HTTP_ENABLED: expected true or false, got 'maybe'"),
    "bad choice": ({"SMTP_SINK_SMTP_LOOP": "foo"}, r"environment variable SMTP_SINK_SMTP_LOOP: must be one of"),
    "nan": ({"SMTP_SINK_SMTP_IDLE_TIMEOUT": "nan"},
            r"environment variable SMTP_SINK_SMTP_IDLE_TIMEOUT: expected a finite number"),
    "empty host": ({"SMTP_SINK_SMTP_HOST": ""}, r"environment variable SMTP_SINK_SMTP_HOST: must be non-empty text"),
    "table": ({"SMTP_SINK_POLICY_FORWARDS": "a=b"},
              r"environment variable SMTP_SINK_POLICY_FORWARDS: expected a table"),
}


@pytest.mark.parametrize(("env", "message"), ENV_ERRORS.values(), ids=ENV_ERRORS.keys())
def test_env_error_names_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(None, environ=env)
    assert re.match(message, str(caught.value)), str(caught.value)


def test_env_error_beats_nothing_a_good_file_says(tmp_path: Path) -> None:
    file = write(tmp_path / "c.toml", "[smtp]\nport = 1111\n")
    with pytest.raises(ConfigError, match="SMTP_SINK_SMTP_PORT"):
        load(file, environ={"SMTP_SINK_SMTP_PORT": "x"})


def test_flag_error_names_the_option() -> None:
    with pytest.raises(ConfigError, match=r"^option --port: must be at most 65535, got 99999$"):
        load(None, {"smtp": {"port": 99999}}, environ={})
    with pytest.raises(ConfigError, match=r"^option --store: must be non-empty text"):  # the flag, not the key
        load(None, {"store": {"path": ""}}, environ={})
    with pytest.raises(ConfigError, match=r"^option --hostname: must be non-empty text"):
        load(None, {"smtp": {"hostname": "a\r\nb"}}, environ={})


# -- the command line ------------------------------------------------------------------------


def smtp_sink_command() -> list[str]:
    """The installed console script next to this Python, else ``python -m smtp_sink``."""
    script = Path(sys.executable).with_name("smtp-sink")
    return [str(script)] if script.exists() else [sys.executable, "-m", "smtp_sink"]


def run_serve(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*smtp_sink_command(), "serve", "--no-http", "--port", "0", *args],
        capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL, env=clean_env(**(env or {})), cwd=cwd,
    )


def test_serve_with_a_bad_config_file_is_one_line_and_exit_2(tmp_path: Path) -> None:
    bad = write(tmp_path / "bad.toml", "[smtp]\nprot = 2525\n")
    result = run_serve("--config", str(bad), "--store", str(tmp_path / "mail"))
    assert result.returncode == 2
    known = ", ".join(field.name for field in dataclasses.fields(Config().smtp))
    assert result.stderr.splitlines() == [f"smtp-sink: config error: {bad}: unknown key [smtp] prot (known: {known})"]
    assert result.stdout == ""
    assert not (tmp_path / "mail").exists()  # nothing was started


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ({"file": b"[smtp\n"}, r"smtp-sink: config error: .*bad\.toml: invalid TOML: "),
        ({"file": b"[smtp]\nhostname = \"\xff\"\n"}, r"smtp-sink: config error: .*bad\.toml: invalid TOML: not UTF-8"),
        ({"env": {"SMTP_SINK_SMTP_PROT": "1"}}, r"smtp-sink: config error: environment variable SMTP_SINK_SMTP_PROT"),
        ({"env": {"SMTP_SINK_CONFIG": "missing.toml"}},
         r"smtp-sink: config error: missing\.toml: no such config file \(named by SMTP_SINK_CONFIG\)"),
        ({"args": ["--port", "70000"]}, r"smtp-sink: config error: option --port: must be at most 65535"),
        ({"args": ["--store", ""]}, r"smtp-sink: config error: option --store: must be non-empty text"),
    ],
    ids=["bad TOML", "not UTF-8", "unknown env variable", "missing env file", "bad flag", "empty store"],
)
def test_serve_config_errors_are_one_line_and_exit_2(tmp_path: Path, setup: dict, message: str) -> None:
    args = ["--store", str(tmp_path / "mail"), *setup.get("args", [])]
    if "file" in setup:
        args += ["--config", str(write(tmp_path / "bad.toml", setup["file"]))]
    result = run_serve(*args, env=setup.get("env"), cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.splitlines()
    assert re.match(message, line), line
    assert "Traceback" not in result.stderr
