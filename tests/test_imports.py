"""The package's import graph: no cycles, and the store knows nothing of SMTP.

Every ``import`` in every module counts (at the top, inside functions, under ``TYPE_CHECKING``):
a cycle hidden in a function or a type annotation is still two modules that cannot be read,
tested or replaced one without the other.
"""

from __future__ import annotations

import subprocess
import sys

from support.imports import graph


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected group of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(edges.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return sorted(groups)


def test_the_cycle_finder_finds_a_cycle() -> None:
    """The checker itself, on a made-up graph."""
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(edges) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_relative_imports_are_resolved() -> None:
    edges = graph()
    assert "smtp_sink.store" in edges["smtp_sink.sink"]
    assert {"smtp_sink.sink", "smtp_sink.web.listing"} <= edges["smtp_sink.web.app"]  # from . import listing
    assert "smtp_sink.web.mailpit" in edges["smtp_sink.web.listing"]
    assert "smtp_sink.index" in edges["smtp_sink.web.mailpit"]
    assert "smtp_sink.web.app" in edges["smtp_sink.server"]  # imported inside a function: counted


def test_no_import_cycle() -> None:
    assert cycles(graph()) == []


SMTP_MODULES = {"smtp_sink.protocol", "smtp_sink.trace", "smtp_sink.server", "smtp_sink.addresses",
                "smtp_sink.sasl", "smtp_sink.policy", "smtp_sink.rules", "smtp_sink.replies", "smtp_sink.sink"}


def test_the_store_imports_nothing_smtp() -> None:
    """store.py deals in bytes and ids: no protocol, envelope or trace format."""
    assert graph()["smtp_sink.store"] & SMTP_MODULES == set()
    assert graph()["smtp_sink.store"] <= {"smtp_sink.config", "smtp_sink.errors", "smtp_sink.ids", "smtp_sink.index",
                                          "smtp_sink.message", "smtp_sink.summary"}  # config: [tags]


def test_the_web_side_never_reaches_into_the_server() -> None:
    edges = graph()
    for name in ("smtp_sink.web.app", "smtp_sink.web.mailpit", "smtp_sink.sink"):
        assert "smtp_sink.server" not in edges[name], name
    assert edges["smtp_sink.web.mailpit"] <= {"smtp_sink", "smtp_sink.index"}  # importable without aiohttp


def test_the_cli_and_the_mailpit_shapes_import_without_aiohttp() -> None:
    """The CLI prints the web API's list JSON (smtp_sink.web.mailpit) without needing aiohttp."""
    code = ("import sys; sys.modules['aiohttp'] = None\n"
            "import smtp_sink.cli.inspect, smtp_sink.web.mailpit\n"
            "assert smtp_sink.cli.inspect.page_json is smtp_sink.web.mailpit.page_json")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
