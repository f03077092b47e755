"""The README stays true: its reply table is the module's, its set-up commands are CI's."""

from __future__ import annotations

import re
from pathlib import Path

from smtp_sink.replies import TABLE, Code, markdown_table

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()

INSTALL_AND_RUN = "pip install -e . && smtp-sink serve"
TEST_COMMAND = "bash scripts/setup-tests.sh && python3 -m pytest"


def test_readme_reply_table_is_rendered_from_replies_module() -> None:
    start, end = "<!-- reply-table:start -->\n", "<!-- reply-table:end -->"
    table = README[README.index(start) + len(start) : README.index(end)]
    assert table == markdown_table()


def test_every_code_has_an_entry() -> None:
    assert set(TABLE) == set(Code)


def test_readme_opens_with_the_two_setup_commands() -> None:
    blocks = re.findall(r"```sh\n(.*?)\n```", README, re.S)
    assert blocks[:2] == [INSTALL_AND_RUN, TEST_COMMAND]


def test_ci_runs_exactly_the_readme_test_command() -> None:
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert TEST_COMMAND in ci
