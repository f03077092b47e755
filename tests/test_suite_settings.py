"""The suite's own pytest settings (``[tool.pytest.ini_options]`` in pyproject.toml) do what they say:
a crash in a server's thread fails the test instead of passing by as a warning."""

from __future__ import annotations

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
