"""Shared fixtures: a real server on a free port with a temporary store."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest

from smtp_sink.config import Config, SMTPConfig, StoreConfig
from smtp_sink.server import ServerThread, SinkServer


def make_config(store: Path, store_options: dict[str, object] | None = None, **smtp: object) -> Config:
    """A config for tests: free port, no HTTP, the given store (and ``[store]`` options) and SMTP overrides."""
    base = Config()
    return dataclasses.replace(
        base,
        smtp=dataclasses.replace(SMTPConfig(port=0), **smtp),
        store=StoreConfig(path=str(store), **(store_options or {})),
        http=dataclasses.replace(base.http, enabled=False, port=0),
    )


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator:
    """Start servers with custom settings: ``server_factory(max_recipients=3)``."""
    threads: list[ServerThread] = []

    def start(**smtp: object) -> SinkServer:
        thread = ServerThread(make_config(tmp_path / "mail", **smtp))
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
