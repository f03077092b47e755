"""What a check found wrong with a session or a message: :class:`Finding`, one type shared by the
client lint (protocol and message checks), the TLS probe and the session transcripts.

Each finding has a stable check name (documented in ``docs/lint.md``; tests and users match on
it), a severity, the evidence (the command line or header that shows it, bounded) and the
reference (the RFC section it breaks)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["EVIDENCE_MAX", "SEVERITIES", "Finding"]

SEVERITIES = ("error", "warning", "info")
EVIDENCE_MAX = 200  # characters of evidence kept (a line is cut there, with "...")


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing the sender did wrong (or did that is worth knowing)."""

    check: str  # stable name, for example "bare-lf" or "missing-date"
    severity: str  # one of SEVERITIES
    evidence: str  # the line or header that shows it
    reference: str  # the RFC section, for example "RFC 5322 section 3.6"

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValueError(f"severity {self.severity!r} is not one of {', '.join(SEVERITIES)}")
        if len(self.evidence) > EVIDENCE_MAX:
            object.__setattr__(self, "evidence", self.evidence[: EVIDENCE_MAX - 3] + "...")

    def to_json(self) -> dict[str, Any]:
        """The API's shape, in the Mailpit-style field names of the rest of the API."""
        return {"Check": self.check, "Severity": self.severity, "Evidence": self.evidence,
                "Reference": self.reference}

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> Finding:
        """The inverse of :meth:`to_json` (a stored transcript read back)."""
        return cls(str(value["Check"]), str(value["Severity"]), str(value["Evidence"]),
                   str(value["Reference"]))
