"""The shape of ``smtp_sink/cli/``: handlers documented, no import cycle, shipped in the wheel."""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

from support import ROOT

from smtp_sink.cli import build_parser

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def handlers(parser: argparse.ArgumentParser) -> dict[str, object]:
    """Every command's handler, by command line (``rules add``), found by walking the sub-parsers."""
    found = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                inner = handlers(sub)
                if inner:
                    found.update({f"{name} {k}": v for k, v in inner.items()})
                else:
                    found[name] = sub.get_default("handler")
    return found


def test_every_command_has_a_handler_with_a_one_line_docstring() -> None:
    found = handlers(build_parser())
    assert set(found) == {"serve", "list", "show", "search", "tag", "wait", "watch", "clear", "export",
                          "rules add", "rules list", "rules clear",
                          "lint", "diff", "dkim", "sessions", "session"}  # issue 17
    for command, handler in found.items():
        doc = getattr(handler, "__doc__", None) or ""
        assert doc and "\n" not in doc.strip(), f"{command}: {handler!r} needs a one-line docstring"


def imports(path: Path, package: str) -> set[str]:
    """The modules of ``package`` that the file at ``path`` imports (relative imports resolved)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                module = f"{base}.{node.module}" if node.module else base
                found |= {module, *(f"{module}.{alias.name}" for alias in node.names)}
            elif node.module:
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
    return found


def test_the_cli_modules_import_no_cycle() -> None:
    folder = ROOT / "smtp_sink" / "cli"
    modules = {f"smtp_sink.cli.{p.stem}": p for p in folder.glob("*.py") if p.stem != "__init__"}
    graph = {name: imports(path, "smtp_sink.cli") & set(modules) for name, path in modules.items()}
    assert graph["smtp_sink.cli.common"] == set()  # the shared module knows no command
    for name, wanted in graph.items():
        assert wanted <= {"smtp_sink.cli.common"}, f"{name} imports another command group: {wanted}"
    package = imports(folder / "__init__.py", "smtp_sink.cli")
    assert not any("smtp_sink.cli" in imports(path, "smtp_sink.cli") for path in modules.values())
    assert {"smtp_sink.cli.serve", "smtp_sink.cli.inspect", "smtp_sink.cli.rules"} <= package


def test_every_package_folder_ships_in_the_wheel() -> None:
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    folders = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "smtp_sink").rglob("__init__.py")}
    assert folders <= listed
