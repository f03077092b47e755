"""``smtp_sink.assert_snapshot(message, name)``: snapshot tests of captured mail in the pytest plugin.

The normalised text of the message (:func:`smtp_sink.snapshot.normalise`) is compared with
``__snapshots__/<test module>/<name>.eml.txt`` next to the test file. As syrupy does, a snapshot
that does not exist yet fails the test (nothing is written: a first run in CI must not pass by
recording whatever it got); ``pytest --smtp-sink-snapshot-update`` writes (creates or replaces)
every snapshot the run asserts, and passes. A difference fails with a unified diff, snapshot
first.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import pytest

from .snapshot import normalise, unified_diff

__all__ = ["OPTION", "Snapshots", "add_option"]

OPTION = "--smtp-sink-snapshot-update"
_DEST = "smtp_sink_snapshot_update"
FOLDER = "__snapshots__"
SUFFIX = ".eml.txt"
SHOWN_LINES = 60  # lines of a new snapshot shown in the failure that says it is missing
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,199}")
_USED: pytest.StashKey[dict[Path, str]] = pytest.StashKey()  # snapshot file -> the test that asserted it


def add_option(parser: pytest.Parser) -> None:
    """The plugin's ``--smtp-sink-snapshot-update`` option."""
    parser.getgroup("smtp-sink").addoption(
        OPTION, action="store_true", dest=_DEST,
        help="write the snapshots that smtp_sink.assert_snapshot compares with (create missing ones, "
             "replace those that differ) instead of failing")


class Snapshots:
    """The snapshots of one test: its file's folder, whether this run updates, who used which."""

    def __init__(self, test_file: Path, nodeid: str, update: bool, used: dict[Path, str]) -> None:
        self.folder = test_file.parent / FOLDER / test_file.stem
        self.nodeid = nodeid
        self.update = update
        self._used = used

    @classmethod
    def for_test(cls, request: pytest.FixtureRequest) -> Snapshots:
        """The snapshots of the test that ``request`` belongs to."""
        config = request.config
        used = config.stash.setdefault(_USED, {})
        return cls(Path(request.path), request.node.nodeid, bool(config.getoption(_DEST)), used)

    def path(self, name: str) -> Path:
        """The file of snapshot ``name``; ValueError for a name that is not a plain file name."""
        if not isinstance(name, str) or not _NAME_RE.fullmatch(name) or ".." in name:
            raise ValueError(f"smtp_sink.assert_snapshot: name {name!r}: expected letters, digits, '_', '-' "
                             "or '.' (at most 200, no '..'), e.g. 'welcome-mail'")
        return self.folder / f"{name}{SUFFIX}"

    def check(self, raw: bytes, name: str, label: str, tokens: Mapping[str, str | re.Pattern[str]] | None) -> None:
        """Compare the normalised ``raw`` with snapshot ``name`` (``label``: the message, for the
        diff); AssertionError with the diff when they differ or it is missing (see the module)."""
        __tracebackhide__ = True
        path = self.path(name)
        other = self._used.setdefault(path, self.nodeid)
        if other != self.nodeid:
            raise ValueError(f"smtp_sink.assert_snapshot: snapshot {name!r} ({path}) is already asserted by {other}: "
                             "give each snapshot its own name")
        actual = normalise(raw, tokens)
        if self.update:
            path.parent.mkdir(parents=True, exist_ok=True)
            if not path.is_file() or _read(path) != actual:
                path.write_bytes(actual.encode("utf-8", "replace"))
            return
        if not path.is_file():
            lines = actual.splitlines()
            shown = "\n".join(lines[:SHOWN_LINES]) + (f"\n[... {len(lines) - SHOWN_LINES} more lines]"
                                                      if len(lines) > SHOWN_LINES else "")
            raise AssertionError(f"snapshot {name!r} does not exist yet ({path}); run pytest with {OPTION} to "
                                 f"write it. The message ({label}) reads:\n{shown}")
        expected = _read(path)
        if expected != actual:
            diff = unified_diff(expected, actual, f"snapshot {name}", f"message {label}")
            raise AssertionError(f"message {label} differs from snapshot {name!r} ({path}); if the change is "
                                 f"meant, run pytest with {OPTION}:\n{diff}")


def _read(path: Path) -> str:
    """A snapshot file's text (CRLF read as LF: a checkout may have converted line ends)."""
    return path.read_bytes().decode("utf-8", "replace").replace("\r\n", "\n")
