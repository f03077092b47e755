"""The README's two set-up commands, as the README and CI must spell them."""

from __future__ import annotations

INSTALL_AND_RUN = "python3 -m venv .venv && . .venv/bin/activate && pip install -e . && smtp-sink serve"
TEST_COMMAND = "bash scripts/setup-tests.sh && .venv/bin/python -m pytest"
