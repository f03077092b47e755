"""scripts/screenshots.py (the docs' screenshots) runs: a real server, real mail, Debian's chromium;
each PNG exists with the size of its viewport (no pixel comparison)."""

from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path

from support import ROOT

EXPECTED = {"light": (1280, 800), "dark": (1280, 800), "phone": (375, 812), "message-checks": (1280, 800),
            "rules": (1280, 800)}


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk."""
    data = path.read_bytes()[:24]
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", f"{path} is not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_screenshot_script_writes_every_picture(tmp_path: Path) -> None:
    out = tmp_path / "shots"
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "screenshots.py"), "--out", str(out)],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert sorted(path.name for path in out.iterdir()) == sorted(f"{name}.png" for name in EXPECTED)
    for name, size in EXPECTED.items():
        path = out / f"{name}.png"
        assert png_size(path) == size, name
        assert path.stat().st_size > 10_000, f"{name}.png looks blank"
    assert done.stdout.split() == [str(out / f"{name}.png") for name in EXPECTED]


def test_docs_screenshots_are_committed() -> None:
    """The pictures the README and docs/web-page.md show are in the repository, at their sizes."""
    for name, size in EXPECTED.items():
        assert png_size(ROOT / "docs" / "screenshots" / f"{name}.png") == size, name
