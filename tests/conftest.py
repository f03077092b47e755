"""Shared fixtures: real servers on free ports with a temporary store (helpers live in support/)."""

from __future__ import annotations

import contextlib
import importlib
import os
import pkgutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from support.browser import chromium
from support.processes import Processes
from support.servers import Servers
from support.system import skip_unless_root, tmpfs

import smtp_sink
from smtp_sink.server import SinkServer

# Every module of the package is imported once, up front: pytester's in-process runs (the plugin,
# snapshot and DKIM tests) drop the modules first imported inside them, and a module imported
# again afterwards would hold new objects (aiohttp's AppKeys among them) that the old ones miss.
for _module in pkgutil.walk_packages(smtp_sink.__path__, "smtp_sink."):
    if _module.name != "smtp_sink.__main__":
        importlib.import_module(_module.name)

# The console scripts (smtp-sink, smtp-send) the tests run are those of the Python running the
# tests, as in an activated virtual environment: `.venv/bin/python -m pytest` finds .venv/bin's.
_SCRIPTS = str(Path(sys.executable).parent)
if os.environ.get("PATH", "").split(os.pathsep)[0] != _SCRIPTS:
    os.environ["PATH"] = _SCRIPTS + os.pathsep + os.environ.get("PATH", "")


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Servers]:
    """Start real servers: ``start_server(max_recipients=3)``, ``start_server(http=True)``,
    ``start_server(store, toml=TEXT)``... (see :class:`support.servers.Servers`); ``start_server.stop(s)``
    stops one early. Every server still running is stopped at teardown, even when the test failed."""
    servers = Servers(tmp_path / "mail")
    yield servers
    servers.stop_all()


@pytest.fixture
def server(start_server: Servers) -> SinkServer:
    """A running server with default settings, HTTP off."""
    return start_server()


@pytest.fixture
def web_server(start_server: Servers) -> SinkServer:
    """A running server with its HTTP API on a free port (``server.http_port``)."""
    return start_server(http=True)


@pytest.fixture
def start_process(tmp_path: Path) -> Iterator[Processes]:
    """Start ``smtp-sink serve`` child processes: ``start_process("--auth", "accept-any", store=...)``;
    every one still running is stopped at teardown."""
    processes = Processes(tmp_path / "mail")
    yield processes
    processes.stop_all()


@pytest.fixture
def mount_tmpfs() -> Iterator[Callable[[Path, str], Path]]:
    """Mount a real tmpfs: ``mount_tmpfs(path, "size=256k")``; unmounted at teardown. Only root may
    mount: the test is skipped otherwise, before it starts."""
    skip_unless_root("mount a tmpfs: a real small or read-only filesystem")
    with contextlib.ExitStack() as mounts:
        yield lambda path, options: mounts.enter_context(tmpfs(path, options))


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's chromium under Playwright, one a test module."""
    with chromium() as launched:
        yield launched
