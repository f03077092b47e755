"""The documentation stays navigable and true: every relative link and anchor resolves, every
test a page names as proof exists, and the README stays short enough to read."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from support import ROOT

PAGES = [ROOT / "README.md", ROOT / "SECURITY.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK_RE = re.compile(r"\]\(([^)\s]+)\)")
TEST_REF_RE = re.compile(r"`(tests/[\w/]+\.py)(?:::(\w+)(?:\[[^\]`]*\])?)?`|(?<=[`,\s])::(test_\w+)(?:\[[^\]`]*\])?`")


def anchors(page: Path) -> set[str]:
    """GitHub's heading anchors of a Markdown page."""
    found, fence = set(), False
    for line in page.read_text().splitlines():
        if line.startswith("```"):
            fence = not fence
        elif not fence and line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            found.add(re.sub(r"\s", "-", re.sub(r"[^\w\s-]", "", title)))
    return found


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_and_anchors_resolve(page: Path) -> None:
    text = re.sub(r"^```.*?^```", "", page.read_text(), flags=re.S | re.M)
    for target in LINK_RE.findall(text):
        if re.match(r"[a-z]+:", target):
            continue  # http(s), mailto: not checked offline
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        assert resolved.exists(), f"{page.name}: link to missing {target}"
        if anchor and resolved.suffix == ".md":
            assert anchor in anchors(resolved), f"{page.name}: no heading #{anchor} in {resolved.name}"


def test_every_docs_page_is_linked_from_the_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    for page in (ROOT / "docs").glob("*.md"):
        assert f"(docs/{page.name})" in readme, f"docs/{page.name} is not linked from the README"


def _test_names(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_tests_named_as_proof_exist(page: Path) -> None:
    """``tests/x.py::test_y`` (and a following ``::test_z`` of the same file) name real tests."""
    current: Path | None = None
    for file, name, continued in TEST_REF_RE.findall(page.read_text()):
        if file:
            current = ROOT / file
            assert current.exists(), f"{page.name}: {file} does not exist"
        name = name or continued
        if name:
            assert current is not None, f"{page.name}: ::{name} without a file before it"
            assert name in _test_names(current), f"{page.name}: no test {name} in {current.relative_to(ROOT)}"


def test_readme_stays_short() -> None:
    assert len((ROOT / "README.md").read_text().splitlines()) < 250
