"""What some tests need from the machine: root to mount a real filesystem, room to set an
open-file limit. Without it they skip, saying why; CI runs as root, so there they all run."""

from __future__ import annotations

import contextlib
import os
import resource
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


def is_root() -> bool:
    return os.geteuid() == 0


def skip_unless_root(why: str) -> None:
    """Skip the calling test when not root, naming what it needs root for."""
    if not is_root():
        pytest.skip(f"needs root to {why} (CI runs as root)")


@contextlib.contextmanager
def tmpfs(mount: Path, options: str) -> Iterator[Path]:
    """A real tmpfs at ``mount`` (made if missing; mounted over it otherwise), unmounted on leaving."""
    mount.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def has_capability(bit: int) -> bool:
    """Whether this process holds the capability numbered ``bit`` (linux/capability.h) in effect."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapEff:"):
            return bool(int(line.split()[1], 16) >> bit & 1)
    return is_root()


CAP_SYS_RESOURCE = 24  # what lets root raise a hard limit (a container may drop it)


def skip_unless_open_file_limit(hard: int) -> None:
    """Skip when a child cannot be given a hard RLIMIT_NOFILE of ``hard``: the current hard limit is
    lower, and raising it takes root's CAP_SYS_RESOURCE."""
    allowed = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if allowed != resource.RLIM_INFINITY and allowed < hard and not has_capability(CAP_SYS_RESOURCE):
        pytest.skip(f"needs a hard open-file limit of at least {hard} (it is {allowed}), or root "
                    "(CAP_SYS_RESOURCE) to raise it (CI runs as root)")
