"""Configuration: precedence of the layers, the documented defaults, and every error message."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
from pathlib import Path

import pytest

from smtp_sink.config import Config, ConfigError, load, sections

ROOT = Path(__file__).resolve().parent.parent


def test_repository_config_toml_is_exactly_the_defaults() -> None:
    assert load(ROOT / "config.toml", environ={}) == Config()


def test_config_toml_documents_every_key_with_a_comment() -> None:
    lines = (ROOT / "config.toml").read_text().splitlines()
    section = None
    documented: set[tuple[str, str]] = set()
    for i, line in enumerate(lines):
        header = re.fullmatch(r"\[(\w+)\]", line.strip())
        if header:
            section = header.group(1)
            continue
        key = re.match(r"(\w+)\s*=", line)
        if key and section:
            assert lines[i - 1].lstrip().startswith("#"), f"[{section}] {key.group(1)} has no comment"
            documented.add((section, key.group(1)))
    for name, kind in sections().items():
        for field in dataclasses.fields(kind):
            assert (name, field.name) in documented, f"[{name}] {field.name} missing from config.toml"


def test_precedence_defaults_file_env_flags(tmp_path: Path) -> None:
    file = tmp_path / "c.toml"
    file.write_text('[smtp]\nport = 1111\nhostname = "from-file"\nmax_recipients = 7\n')
    env = {"SMTP_SINK_SMTP_PORT": "2222", "SMTP_SINK_SMTP_HOSTNAME": "from-env"}
    config = load(file, {"smtp": {"port": 3333}}, environ=env)
    assert config.smtp.port == 3333  # flag beats env
    assert config.smtp.hostname == "from-env"  # env beats file
    assert config.smtp.max_recipients == 7  # file beats default
    assert config.smtp.host == "127.0.0.1"  # default
    assert config.source == str(file)


def test_env_values_are_typed(tmp_path: Path) -> None:
    config = load(None, environ={
        "SMTP_SINK_HTTP_ENABLED": "false", "SMTP_SINK_SMTP_IDLE_TIMEOUT": "2.5", "SMTP_SINK_STORE_PATH": "/tmp/x",
    })
    assert config.http.enabled is False
    assert config.smtp.idle_timeout == 2.5
    assert config.store.path == "/tmp/x"


def test_config_file_discovery(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert load(None, environ={}).source == "(defaults)"
    Path("smtp-sink.toml").write_text("[smtp]\nport = 4444\n")
    assert load(None, environ={}).smtp.port == 4444
    other = tmp_path / "other.toml"
    other.write_text("[smtp]\nport = 5555\n")
    assert load(None, environ={"SMTP_SINK_CONFIG": str(other)}).smtp.port == 5555
    explicit = tmp_path / "explicit.toml"
    explicit.write_text("[smtp]\nport = 6666\n")
    assert load(explicit, environ={"SMTP_SINK_CONFIG": str(other)}).smtp.port == 6666


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[smpt]\nport = 1\n", r"c\.toml: unknown section \[smpt\]"),
        ("[smtp]\nprot = 1\n", r"c\.toml: unknown key \[smtp\] prot"),
        ('[smtp]\nport = "2525"\n', r"c\.toml: \[smtp\] port: expected an integer, got '2525'"),
        ("[smtp]\nsmtputf8 = 1\n", r"c\.toml: \[smtp\] smtputf8: expected true or false, got 1"),
        ("[smtp]\nport = true\n", r"c\.toml: \[smtp\] port: expected an integer, got True"),
        ("[smtp]\nport = 25.5\n", r"c\.toml: \[smtp\] port: expected an integer, got 25\.5"),
        ("[smtp]\nport = 70000\n", r"c\.toml: \[smtp\] port: must be at most 65535, got 70000"),
        ("[smtp]\nmax_message_size = -1\n", r"c\.toml: \[smtp\] max_message_size: must be at least 0"),
        ('[smtp]\nloop = "foo"\n', r"c\.toml: \[smtp\] loop: must be one of auto, asyncio, uvloop"),
        ("smtp = 3\n", r"c\.toml: smtp must be a table"),
        ("[smtp\nport = 1\n", r"c\.toml: invalid TOML"),
    ],
)
def test_file_errors_name_the_file_and_key(tmp_path: Path, text: str, message: str) -> None:
    file = tmp_path / "c.toml"
    file.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load(file, environ={})


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.toml: no such config file"):
        load(tmp_path / "nope.toml", environ={})


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SMTP_SINK_SMTP_PROT": "1"}, r"environment variable SMTP_SINK_SMTP_PROT: unknown setting"),
        ({"SMTP_SINK_PORT": "1"}, r"environment variable SMTP_SINK_PORT: unknown setting"),
        ({"SMTP_SINK_SMTP_PORT": "abc"}, r"environment variable SMTP_SINK_SMTP_PORT: expected an integer, got 'abc'"),
        ({"SMTP_SINK_HTTP_ENABLED": "maybe"}, r"SMTP_SINK_HTTP_ENABLED: expected true or false"),
    ],
)
def test_env_errors_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load(None, environ=env)


def test_flag_errors_name_the_option() -> None:
    with pytest.raises(ConfigError, match=r"option --port: must be at most 65535"):
        load(None, {"smtp": {"port": 99999}}, environ={})


def test_serve_with_a_bad_config_prints_one_line_and_exits_2(tmp_path: Path) -> None:
    file = tmp_path / "bad.toml"
    file.write_text("[smtp]\nprot = 2525\n")
    result = subprocess.run(
        [sys.executable, "-m", "smtp_sink", "serve", "--config", str(file)],
        capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == f"smtp-sink: config error: {file}: unknown key [smtp] prot " + (
        "(known: " + ", ".join(f.name for f in dataclasses.fields(Config().smtp)) + ")"
    )
    assert "Traceback" not in result.stderr
