"""The shared finding type: severities are checked, evidence is bounded, JSON round-trips."""

from __future__ import annotations

import pytest

from smtp_sink.findings import EVIDENCE_MAX, Finding


def test_a_finding_round_trips_through_json_and_bounds_its_evidence() -> None:
    finding = Finding("bare-lf", "error", "x" * 1000, "RFC 5321 section 2.3.8")
    assert len(finding.evidence) == EVIDENCE_MAX and finding.evidence.endswith("...")
    assert Finding.from_json(finding.to_json()) == finding
    assert finding.to_json()["Check"] == "bare-lf"


def test_an_unknown_severity_is_refused() -> None:
    with pytest.raises(ValueError, match="severity 'fatal'"):
        Finding("bare-lf", "fatal", "", "")
