"""What the TLS probe found: clients that took a bad certificate and sent mail anyway
(``tls-not-verified``), and clients that refused it (``tls-probe-refused``).

The sink keeps the newest :data:`MAX_FINDINGS` in memory (:class:`TLSFindings`, its
``tls_findings``): the HTTP API (``GET /api/v1/tls-findings``), the pytest plugin
(``smtp_sink.tls_findings``), the client lint and the session transcripts read them. Each is a
:class:`TLSFinding`: a :class:`~smtp_sink.findings.Finding` that also names the probe, the client
and, for mail sent anyway, the message id. This module makes no certificates and opens nothing
(that is :mod:`smtp_sink.tls_probe`): the sink imports it at no cost.
"""

from __future__ import annotations

import collections
import ssl
import threading
import time
from dataclasses import dataclass
from typing import Any

from .findings import Finding
from .tags import TLS_NOT_VERIFIED
from .trace import Envelope

__all__ = ["ACCEPTED", "MAX_FINDINGS", "PROBES", "REFUSED", "TLSFinding", "TLSFindings", "probe_reference"]

ACCEPTED = TLS_NOT_VERIFIED  # the check name, and the tag of a message sent anyway
REFUSED = "tls-probe-refused"
MAX_FINDINGS = 1000  # findings kept (the oldest go first)
# What each probe presents (the docs, the evidence and `serve`'s log say it in these words).
PROBES = {
    "expired": "an expired certificate signed by smtp-sink's CA",
    "self-signed": "a self-signed certificate",
    "wrong-host": "a certificate for another host name signed by smtp-sink's CA",
    "untrusted-ca": "a certificate signed by a CA the client was not given",
    "tls1.0": "TLS 1.0 only",
}
_CERTIFICATE_RULES = "RFC 8314 (certificate validation); RFC 7817 section 3; RFC 3207 section 4.1"


def probe_reference(probe: str) -> str:
    """The RFCs a client that took this probe breaks."""
    return "RFC 8996; RFC 8997" if probe == "tls1.0" else _CERTIFICATE_RULES


@dataclass(frozen=True, slots=True)
class TLSFinding(Finding):
    """A :class:`Finding` of the TLS probe: which probe, which client, which message."""

    probe: str = ""
    peer: str = ""  # the client's address
    helo: str = ""  # its EHLO/HELO name ("" for a refusal: it never got that far)
    message_id: str = ""  # the message it sent anyway ("" for a refusal)
    time: float = 0.0  # seconds since the epoch

    def to_json(self) -> dict[str, Any]:
        """:meth:`Finding.to_json` plus ``Probe``, ``Peer``, ``Helo``, ``MessageID``, ``Time`` (RFC 3339)."""
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.time))
        return {**Finding.to_json(self), "Probe": self.probe, "Peer": self.peer, "Helo": self.helo,
                "MessageID": self.message_id, "Time": when}


def _reason(error: BaseException) -> str:
    """The handshake error in a few words: OpenSSL's reason (``TLSV1_ALERT_UNKNOWN_CA``...)."""
    reason = getattr(error, "reason", None)  # set by the ssl module (not on an SSLError made by hand)
    if isinstance(error, ssl.SSLError) and reason:
        return str(reason)
    if isinstance(error, TimeoutError):
        return "no handshake within the time limit"
    if isinstance(error, ConnectionError):
        return "the client closed the connection during the handshake"
    return str(error) or type(error).__name__


class TLSFindings:
    """The findings of the probe ``probe`` ("" when the probe is off: nothing is recorded), newest
    last, at most ``limit``; safe to use from any thread."""

    def __init__(self, probe: str = "", limit: int = MAX_FINDINGS) -> None:
        self.probe = probe
        self._findings: collections.deque[TLSFinding] = collections.deque(maxlen=limit)
        self._changed = threading.Condition()

    def accepted(self, envelope: Envelope, message_id: str) -> TLSFinding:
        """A client completed the handshake under the probe and sent this message: an error."""
        probe = self.probe
        took = "negotiated TLS 1.0" if probe == "tls1.0" else f"accepted {PROBES[probe]}"
        finding = TLSFinding(
            ACCEPTED, "error",
            f"client [{envelope.peer}] (HELO {envelope.helo or '-'}) {took} (probe {probe}) and sent mail from "
            f"<{envelope.mail_from}>: it does not verify the server",
            probe_reference(probe), probe, envelope.peer, envelope.helo, message_id, time.time())
        self._add(finding)
        return finding

    def refused(self, peer: str, listener: str, error: BaseException) -> TLSFinding:
        """A client's handshake under the probe failed on ``listener`` (STARTTLS or implicit TLS):
        it refused the certificate (or protocol), as it should. Info."""
        probe = self.probe
        finding = TLSFinding(
            REFUSED, "info",
            f"client [{peer}] refused {PROBES[probe]} (probe {probe}) on {listener}: {_reason(error)}",
            probe_reference(probe), probe, peer, "", "", time.time())
        self._add(finding)
        return finding

    def hung_up(self, peer: str, listener: str) -> TLSFinding:
        """A client completed the handshake under the probe, then closed the connection without
        sending mail: it checked the certificate after the handshake (curl checks the host name
        so), or gave up for another reason. Info."""
        probe = self.probe
        finding = TLSFinding(
            REFUSED, "info",
            f"client [{peer}] completed the handshake with {PROBES[probe]} (probe {probe}) on {listener}, then "
            "closed the connection without sending mail (a check after the handshake)",
            probe_reference(probe), probe, peer, "", "", time.time())
        self._add(finding)
        return finding

    def _add(self, finding: TLSFinding) -> None:
        with self._changed:
            self._findings.append(finding)
            self._changed.notify_all()

    def all(self) -> list[TLSFinding]:
        """Every finding kept, oldest first."""
        with self._changed:
            return list(self._findings)

    def wait(self, count: int = 1, check: str | None = None, timeout: float = 5.0) -> list[TLSFinding]:
        """Block until ``count`` findings (of ``check``, when given) are kept, at most ``timeout``
        seconds; return those found (fewer on time-out). A refusal is recorded when the server
        sees the handshake fail, a moment after the client raised its error."""
        def found() -> list[TLSFinding]:
            return [finding for finding in self._findings if check is None or finding.check == check]

        with self._changed:
            self._changed.wait_for(lambda: len(found()) >= count, timeout)
            return found()

    def for_message(self, message_id: str) -> list[TLSFinding]:
        """The findings of one message (the client lint merges them into its own)."""
        return [finding for finding in self.all() if finding.message_id == message_id]

    def for_peer(self, peer: str, since: float = 0.0) -> list[TLSFinding]:
        """The findings of one client address from ``since`` on (session transcripts)."""
        return [finding for finding in self.all() if finding.peer == peer and finding.time >= since]

    def clear(self) -> None:
        """Forget every finding."""
        with self._changed:
            self._findings.clear()
