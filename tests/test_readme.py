"""The README stays true: its reply table is replies.py's, its set-up commands are what CI
runs, and what it says about ``serve`` and the defaults matches the code."""

from __future__ import annotations

import argparse
import re

from support import ROOT
from support.readme import INSTALL_AND_RUN, TEST_COMMAND

from smtp_sink.cli import build_parser
from smtp_sink.config import Config
from smtp_sink.replies import TABLE, Code, markdown_table

README = (ROOT / "README.md").read_text()


def between(text: str, start: str, end: str) -> str:
    assert text.count(start) == 1 and text.count(end) == 1, (start, end)
    return text[text.index(start) + len(start) : text.index(end)]


def test_reply_table_is_rendered_from_the_replies_module() -> None:
    table = between(README, "<!-- reply-table:start -->\n", "<!-- reply-table:end -->")
    assert table == markdown_table()


def test_reply_table_has_one_row_per_code_in_order() -> None:
    table = between(README, "<!-- reply-table:start -->\n", "<!-- reply-table:end -->")
    codes = [int(row.split("|")[1]) for row in table.splitlines()[2:]]
    assert codes == sorted(codes) == sorted(int(code) for code in Code)
    assert set(TABLE) == set(Code)


def test_first_sh_blocks_are_the_two_setup_commands() -> None:
    blocks = re.findall(r"^```sh\n(.*?)\n```$", README, re.S | re.M)
    assert blocks[:2] == [INSTALL_AND_RUN, TEST_COMMAND]
    assert README.index(INSTALL_AND_RUN) < README.index("## Point your application at it")


def test_ci_runs_exactly_the_readme_test_command() -> None:
    lines = (ROOT / ".ci" / "run").read_text().splitlines()
    assert TEST_COMMAND in lines


def serve_parser() -> argparse.ArgumentParser:
    subparsers = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return subparsers.choices["serve"]


def test_serve_synopsis_lists_exactly_the_serve_options() -> None:
    found = re.search(r"^```\n(smtp-sink serve .*?)^```$", README, re.S | re.M)
    assert found, "no smtp-sink serve synopsis block"
    synopsis = found.group(1)
    documented = set(re.findall(r"\[(-{1,2}[\w-]+)", synopsis))
    actions = [a for a in serve_parser()._actions if a.option_strings and "--help" not in a.option_strings]
    for action in actions:
        assert documented & set(action.option_strings), f"{action.option_strings} missing from the README synopsis"
    assert documented <= {option for action in actions for option in action.option_strings}
    loop = next(a for a in actions if "--loop" in a.option_strings)
    assert "--loop " + "|".join(loop.choices) in synopsis


def test_defaults_the_readme_states_are_the_code_defaults() -> None:
    config = Config()
    setting = dict(re.findall(r"^\| (SMTP host|SMTP port) \| `([^`]+)`", README, re.M))
    assert setting == {"SMTP host": config.smtp.host, "SMTP port": str(config.smtp.port)}
    assert f"`{config.store.path}/<id>.eml`" in README
    assert f"`{config.store.path}/tmp/`" in README
    assert f"http://{config.http.host}:{config.http.port}" in README
    assert f"http://{config.http.host}:{config.http.port}" in (ROOT / "docs" / "http-api.md").read_text()
    assert f"smtplib.SMTP(\"localhost\", {config.smtp.port})" in README
