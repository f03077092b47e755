"""The suite's own machinery does what it says: with the pytest settings of pyproject.toml a crash in a
server's thread fails the test instead of passing by as a warning, and the ``start_server`` and
``start_process`` fixtures stop what they started even when the test fails."""

from __future__ import annotations

import shutil
import sys
import textwrap

import pytest
from support import ROOT

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

pytest_plugins = ["pytester"]

CRASH_IN_SHUTDOWN = """
    from smtp_sink.config import Config, HTTPConfig, SMTPConfig, StoreConfig, TLSConfig
    from smtp_sink.server import ServerThread


    def test_stop_crashes_on_the_server_thread(tmp_path):
        config = Config(smtp=SMTPConfig(port=0), store=StoreConfig(path=str(tmp_path / "mail")),
                        tls=TLSConfig(port=0), http=HTTPConfig(enabled=False))
        thread = ServerThread(config)
        server = thread.start()

        async def crash():
            raise RuntimeError("a bug in shutdown")

        server.stop = crash  # raised on the server's thread, which nobody joins for errors
        thread.stop()
"""


def suite_filterwarnings() -> list[str]:
    with open(ROOT / "pyproject.toml", "rb") as file:
        return tomllib.load(file)["tool"]["pytest"]["ini_options"]["filterwarnings"]


@pytest.mark.parametrize("settings", ["suite", "none"])
def test_a_crash_in_a_server_thread_fails_the_test(pytester: pytest.Pytester, settings: str) -> None:
    """With the suite's filters the crash is an error of the test that caused it; without them
    (pytest's default) the same test passes with a warning: the setting is what catches it."""
    filters = suite_filterwarnings() if settings == "suite" else []
    assert "error::pytest.PytestUnhandledThreadExceptionWarning" in suite_filterwarnings()
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\nfilterwarnings =\n"
                     + "".join(f"    {line}\n" for line in filters))
    pytester.makepyfile(test_inner=textwrap.dedent(CRASH_IN_SHUTDOWN))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    output = result.stdout.str()
    assert "a bug in shutdown" in output
    if settings == "suite":
        assert result.ret == pytest.ExitCode.TESTS_FAILED, output
        result.assert_outcomes(failed=1)
    else:
        assert result.ret == pytest.ExitCode.OK, output
        result.assert_outcomes(passed=1, warnings=1)


FAILS_WITH_SERVERS_RUNNING = """
    import os
    import socket
    from pathlib import Path

    import pytest


    def test_fails_with_servers_running(start_server, start_process, tmp_path):
        first, web = start_server(), start_server(tmp_path / "other", http=True)
        restarted = start_server.stop(first) or start_server()  # the restart pattern: same store again
        process = start_process()
        ports = [restarted.smtp_port, web.smtp_port, web.http_port, process.port]
        Path("started.txt").write_text(" ".join(map(str, [process.pid, *ports])))
        assert False, "a test failing with servers running"


    def test_afterwards_nothing_runs():
        pid, *ports = map(int, Path("started.txt").read_text().split())
        for port in ports:
            with socket.socket() as probe:
                assert probe.connect_ex(("127.0.0.1", port)) != 0, f"port {port} still open"
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
"""


def test_start_server_and_start_process_stop_everything_when_the_test_fails(pytester: pytest.Pytester) -> None:
    """The suite's own conftest and support/ in a fresh run: a test fails with two servers and a
    ``serve`` process running; by the next test no port answers and the process is gone."""
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    shutil.copy(ROOT / "tests" / "conftest.py", pytester.path)
    shutil.copytree(ROOT / "tests" / "support", pytester.path / "support")
    pytester.makepyfile(test_inner=textwrap.dedent(FAILS_WITH_SERVERS_RUNNING))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1, passed=1)
    result.stdout.fnmatch_lines(["*AssertionError: a test failing with servers running"])  # the test's own failure
