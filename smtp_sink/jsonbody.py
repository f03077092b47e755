"""Fields of Mailpit's JSON request bodies, read as Go's decoder reads them, but strictly.

As in Go (Mailpit): a key matches its field without regard to case (``{"to": ...}`` is ``To``) and
``null`` means the field was left out. Stricter than Go, as the rest of the API: an unknown key,
a key given twice and a value of the wrong type are errors naming the field, never a silent default.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["BodyError", "integer", "pick", "string", "strings"]


class BodyError(ValueError):
    """A request body the API refuses (answered ``status``, 400 unless said otherwise)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def show(value: Any) -> str:
    """A JSON value, short, for an error message."""
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."


def pick(value: Any, names: tuple[str, ...], where: str) -> dict[str, Any]:
    """The object ``value`` (``null``: empty) as ``{field: value}`` in the spelling of ``names``,
    leaving out nulls; keys match without regard to case."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BodyError(f"{where}: expected an object with {', '.join(names)}, got {show(value)}")
    known = {name.lower(): name for name in names}
    found: dict[str, Any] = {}
    for key, item in value.items():
        name = known.get(key.lower())
        if name is None:
            raise BodyError(f"{where}: unknown field {key[:50]!r} (known: {', '.join(names)})")
        if name in found:
            raise BodyError(f"{where}: field {name} given twice")
        found[name] = item
    return {name: item for name, item in found.items() if item is not None}


def string(value: Any, where: str) -> str:
    """A JSON string (``null``: "")."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise BodyError(f"{where}: expected a string, got {show(value)}")
    return value


def strings(value: Any, where: str) -> list[str]:
    """A JSON array of strings (``null``: empty; a ``null`` item: "")."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise BodyError(f"{where}: expected a list of strings, got {show(value)}")
    return [string(item, f"{where}[{number}]") for number, item in enumerate(value)]


def integer(value: Any, where: str) -> int:
    """A JSON whole number (``null``: 0); 1.5, true and "1" are refused, as Go refuses them."""
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int):
        raise BodyError(f"{where}: expected a whole number, got {show(value)}")
    return value
