"""Mail sent the way an application sends it: smtplib over a real socket."""

from __future__ import annotations

import smtplib
from collections.abc import Sequence

from smtp_sink.server import SinkServer


def send(server: SinkServer | int, raw: bytes | str, to: Sequence[str] = ("bob@example.test",),
         sender: str = "app@example.test", timeout: float = 10) -> dict[str, tuple[int, bytes]]:
    """One message to ``server`` (or an SMTP port) with ``sendmail``; the refused recipients."""
    port = server if isinstance(server, int) else server.smtp_port
    with smtplib.SMTP("127.0.0.1", port, timeout=timeout) as smtp:
        return smtp.sendmail(sender, list(to), raw.encode() if isinstance(raw, str) else raw)
