"""Every public class and every command handler says in one line what it is (issue 14 §5)."""

from __future__ import annotations

import ast
from pathlib import Path

import smtp_sink
from smtp_sink.protocol import VERBS

PACKAGE = Path(smtp_sink.__file__).parent
CLIENT = PACKAGE.parent / "clients" / "smtp_client.py"


def definitions() -> list[tuple[str, ast.AST]]:
    found = []
    for path in [*sorted(PACKAGE.rglob("*.py")), CLIENT]:
        tree = ast.parse(path.read_text(), str(path))
        found += [(f"{path.name}:{node.lineno} {node.name}", node) for node in ast.walk(tree)
                  if isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)]
    return found


def test_every_public_class_has_a_docstring() -> None:
    missing = [where for where, node in definitions()
               if isinstance(node, ast.ClassDef) and not node.name.startswith("_") and not ast.get_docstring(node)]
    assert not missing, missing


def test_every_cli_command_handler_has_a_docstring() -> None:
    missing = [where for where, node in definitions()
               if isinstance(node, ast.FunctionDef) and node.name.startswith("cmd_") and not ast.get_docstring(node)]
    assert not missing, missing


def test_every_smtp_verb_handler_has_a_docstring_and_help_text() -> None:
    for verb, entry in VERBS.items():
        assert entry.help, f"{verb}: no HELP text"
        handler = entry.handler
        assert handler.__doc__ and handler.__doc__.strip(), f"{verb}: handler {handler.__name__} has no docstring"
