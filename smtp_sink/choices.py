"""The base of the settings that take one of a fixed set of words (modes, rule stages and actions)."""

from __future__ import annotations

from enum import Enum


class Choice(str, Enum):
    """A word from a fixed set. A ``str``: TOML, JSON and command-line text compare equal to it,
    and it prints as its value (``f"{AuthMode.OFF}" == "off"`` on every Python version)."""

    def __str__(self) -> str:
        return str(self.value)

    @classmethod
    def words(cls) -> tuple[str, ...]:
        """Every value, in definition order (for error messages and ``--help`` choices)."""
        return tuple(member.value for member in cls)
