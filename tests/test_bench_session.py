"""bench/session.py runs (its cases check their own results: every message found, or refused)."""

from __future__ import annotations

from bench.session import cases, main


def test_the_session_micro_benchmark_runs_every_case(capsys) -> None:
    assert main(["--repeat", "1"]) == 0
    out = capsys.readouterr().out
    assert "us/command" in out.splitlines()[0]
    assert [line.split("  ")[0] for line in out.splitlines()[1:]] == [case.name for case in cases()]
