"""docs/architecture.md stays true: its module map lists exactly the package's modules, each with
exactly the package modules it imports (as tests/support/imports.py reads them)."""

from __future__ import annotations

import re

from support import ROOT
from support.imports import graph

PAGE = (ROOT / "docs" / "architecture.md").read_text()


def documented() -> dict[str, set[str]]:
    """Module -> its imports, from the table between the module-map markers."""
    table = PAGE.split("<!-- module-map:start -->", 1)[1].split("<!-- module-map:end -->", 1)[0]
    found: dict[str, set[str]] = {}
    for row in table.strip().splitlines()[2:]:
        cells = [cell.strip() for cell in re.split(r"(?<!\\)\|", row)[1:-1]]
        module = cells[0].strip("`")
        names = re.findall(r"`([\w.]+)`", cells[2])
        found[module] = {name if name == "smtp_sink" else f"smtp_sink.{name}" for name in names}
    return found


def test_the_module_map_lists_every_module_once() -> None:
    assert sorted(documented()) == sorted(graph())


def test_the_module_map_says_what_each_module_imports() -> None:
    actual, written = graph(), documented()
    wrong = {name: (sorted(written[name]), sorted(actual[name])) for name in actual
             if name in written and written[name] != actual[name]}
    assert not wrong, f"docs/architecture.md (written, actual): {wrong}"
