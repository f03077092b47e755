"""Shared fixtures: a real server on a free port with a temporary store."""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from smtp_sink.config import Config, SMTPConfig, StoreConfig
from smtp_sink.server import ServerThread, SinkServer

# The console scripts (smtp-sink, smtp-send) the tests run are those of the Python running the
# tests, as in an activated virtual environment: `.venv/bin/python -m pytest` finds .venv/bin's.
_SCRIPTS = str(Path(sys.executable).parent)
if os.environ.get("PATH", "").split(os.pathsep)[0] != _SCRIPTS:
    os.environ["PATH"] = _SCRIPTS + os.pathsep + os.environ.get("PATH", "")


def make_config(
    store: Path, store_options: dict[str, object] | None = None, *,
    auth: dict[str, object] | None = None, tls: dict[str, object] | None = None, **smtp: object,
) -> Config:
    """A config for tests: free ports, no HTTP, the given store (and ``[store]`` options), SMTP
    overrides, and ``[auth]`` / ``[tls]`` keys (``tls`` defaults to a free implicit-TLS port)."""
    base = Config()
    return dataclasses.replace(
        base,
        smtp=dataclasses.replace(SMTPConfig(port=0), **smtp),
        store=StoreConfig(path=str(store), **(store_options or {})),
        auth=dataclasses.replace(base.auth, **(auth or {})),
        tls=dataclasses.replace(base.tls, **{"port": 0, **(tls or {})}),
        http=dataclasses.replace(base.http, enabled=False, port=0),
    )


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator:
    """Start servers with custom settings: ``server_factory(max_recipients=3)``."""
    threads: list[ServerThread] = []

    def start(**smtp: object) -> SinkServer:
        thread = ServerThread(make_config(tmp_path / "mail", **smtp))  # type: ignore[arg-type]
        threads.append(thread)
        return thread.start()

    yield start
    for thread in threads:
        thread.stop()


@pytest.fixture
def web_server(tmp_path: Path) -> Iterator[SinkServer]:
    """A running server with its HTTP API on a free port (``server.http_port``)."""
    config = make_config(tmp_path / "mail")
    config = dataclasses.replace(config, http=dataclasses.replace(config.http, enabled=True, port=0))
    thread = ServerThread(config)
    yield thread.start()
    thread.stop()


@pytest.fixture
def server(server_factory) -> SinkServer:
    """A running server with default settings."""
    return server_factory()
