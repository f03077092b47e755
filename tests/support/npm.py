"""npm packages the tests run (nodemailer for the examples, the Mailpit client ``mailpit-api``),
installed once each into ``~/.cache/smtp-sink-tests/npm/<name>@<version>`` (outside the checkout),
never globally."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

NPM_CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "smtp-sink-tests" / "npm"


def npm_modules(name: str, spec: str) -> Path:
    """The ``node_modules`` folder holding ``name@spec`` (and what it needs), installed on first use.

    The install goes to a staging folder that is renamed into place when complete, so an
    interrupted install is never taken for a finished one."""
    folder = NPM_CACHE / (f"{name}@" + re.sub(r"[^\w.-]", "_", spec))
    modules = folder / "node_modules"
    if not (modules / name / "package.json").is_file():
        assert shutil.which("npm"), "npm is not installed: run scripts/setup-tests.sh"
        staging = folder.with_name(f"{folder.name}.{os.getpid()}.tmp")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        done = subprocess.run(
            ["npm", "install", "--prefix", str(staging), "--no-audit", "--no-fund", "--no-save",
             "--no-package-lock", f"{name}@{spec}"],
            capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
        )
        assert done.returncode == 0, f"npm install {name}@{spec} failed:\n{done.stdout}{done.stderr}"
        shutil.rmtree(folder, ignore_errors=True)
        staging.rename(folder)
    return modules
