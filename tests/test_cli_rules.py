"""``smtp-sink rules``: the shared --config/--api options, before or after the action."""

from __future__ import annotations

import subprocess
from pathlib import Path

from support.processes import run_cli

from smtp_sink.server import SinkServer


def rules(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m smtp_sink rules ARGS``, without any SMTP_SINK_* from our environment."""
    return run_cli("rules", *args, cwd=cwd)


def test_api_and_config_after_the_action(web_server: SinkServer, tmp_path: Path) -> None:
    base = f"http://127.0.0.1:{web_server.http_port}"
    config = tmp_path / "sink.toml"
    config.write_text(f"[http]\nport = {web_server.http_port}\n")
    added = rules("add", "--stage", "rcpt", "--code", "450", "--api", base)
    assert added.returncode == 0, added.stderr
    assert added.stdout == "added: at rcpt: reply 450, always\n"
    assert rules("list", "--api", base).stdout == "1. at rcpt: reply 450, always\n"
    assert rules("list", "--config", str(config)).stdout == "1. at rcpt: reply 450, always\n"
    assert rules("--config", str(config), "list").stdout == "1. at rcpt: reply 450, always\n"
    # after the action wins over before it
    assert rules("--api", "http://127.0.0.1:1", "clear", "--api", base).stdout == "rules cleared\n"
    assert rules("list", "--api", base).stdout == "no rules\n"


def test_unreachable_api_and_bad_config_are_one_line(tmp_path: Path) -> None:
    unreachable = rules("list", "--api", "http://127.0.0.1:1")
    assert unreachable.returncode == 1
    assert unreachable.stderr.startswith("smtp-sink: cannot reach the HTTP API at http://127.0.0.1:1: ")
    assert unreachable.stderr.endswith("(is `smtp-sink serve` running with HTTP on?)\n")
    bad = rules("clear", "--config", str(tmp_path / "missing.toml"))
    assert bad.returncode == 2 and bad.stderr.startswith("smtp-sink: config error: ") and "missing.toml" in bad.stderr
    assert bad.stderr.count("\n") == 1
