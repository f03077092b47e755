"""The README's first command works as written on a stock Debian Python (PEP 668: no system-wide
pip install): run it with an empty environment in a fresh copy of the repository and talk SMTP
to the server it starts."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
from support import ROOT
from support.readme import INSTALL_AND_RUN
from support.wire import free_port

SYSTEM_PYTHON = Path("/usr/bin/python3")  # the distribution's own, not a developer's pyenv


def copy_checkout(target: Path) -> None:
    """What a clone holds (tracked files), plus this working tree's uncommitted changes."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT,
                            capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)


def greeting(port: int, deadline: float, process: subprocess.Popen[bytes]) -> bytes:
    while time.monotonic() < deadline and process.poll() is None:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                return sock.recv(512)
        except OSError:
            time.sleep(0.2)
    return b""


@pytest.mark.slow
@pytest.mark.skipif(not SYSTEM_PYTHON.exists(), reason="needs the distribution's /usr/bin/python3")
def test_readme_first_command_in_a_clean_environment(tmp_path: Path) -> None:
    checkout = tmp_path / "smtp-sink"
    copy_checkout(checkout)
    smtp_port, http_port = free_port(), free_port()
    env = {
        "PATH": "/usr/bin:/bin", "HOME": str(tmp_path / "home"), "LANG": "C.UTF-8",
        # only the ports differ from the defaults, so that a sink already running here does not clash
        "SMTP_SINK_SMTP_PORT": str(smtp_port), "SMTP_SINK_HTTP_PORT": str(http_port),
    }
    for name in ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_CERT", "PIP_FIND_LINKS", "HTTPS_PROXY", "https_proxy"):
        if name in os.environ:  # how this machine reaches a package index, as a user's would
            env[name] = os.environ[name]
    process = subprocess.Popen(["env", "-i", *(f"{k}={v}" for k, v in env.items()), "bash", "-c", INSTALL_AND_RUN],
                               cwd=checkout, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        banner = greeting(smtp_port, time.monotonic() + 300, process)
    finally:
        with_output = process.poll() is not None
        os.killpg(process.pid, signal.SIGTERM)
        output = process.communicate(timeout=30)[0].decode(errors="replace")
    assert banner.startswith(b"220 "), f"no SMTP greeting (exited: {with_output}):\n{output[-3000:]}"
    assert (checkout / ".venv" / "bin" / "smtp-sink").exists()
    assert process.returncode == 0, output[-3000:]
