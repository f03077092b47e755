"""A small fake spamd on a real socket: it speaks the SPAMC/1.5 protocol (``REPORT`` and ``PING``)
the way Mailpit's spamc client uses it, answers every ``REPORT`` with one fixed report, and keeps
what it was sent. (Debian's spamassassin package is not installed by the test setup.)"""

from __future__ import annotations

import socketserver
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

# (points, name, description) in spamd's report; a "\n" in a description is where spamd folds it
# onto the next line, indented by 28 spaces (a reader joins the two with one space).
RULES = (
    (2.5, "FAKE_BODY_RULE", "The body looks like a test"),
    (-0.1, "FAKE_NEGATIVE", "A rule that lowers the score"),
    (3.8, "FAKE_LONG_RULE", "A description long enough that spamd folds it\nonto the next line of the report"),
)


@dataclass
class FakeSpamd:
    """What the fake spamd answers (``score``, ``rules``) and what it saw: the command line and the
    message of each request (``requests``)."""

    score: float = 6.2
    rules: Sequence[tuple[float, str, str]] = RULES
    port: int = 0
    requests: list[tuple[str, bytes]] = field(default_factory=list)

    def report(self) -> bytes:
        """The reply to ``REPORT``: spamd's status line, headers and the report text."""
        lines = ["Spam detection software has analysed this message.", "",
                 f"Content analysis details:   ({self.score:.1f} points, 5.0 required)", "",
                 " pts rule name              description",
                 "---- ---------------------- --------------------------------------------------"]
        for points, name, description in self.rules:
            first, *folded = description.split("\n")
            lines.append(f"{points:4.1f} {name:<22} {first}")
            lines.extend(" " * 28 + line for line in folded)
        body = "".join(line + "\r\n" for line in lines).encode()
        verdict = f"Spam: {'True' if self.score >= 5 else 'False'} ; {self.score:.1f} / 5.0"
        return f"SPAMD/1.1 0 EX_OK\r\nContent-length: {len(body)}\r\n{verdict}\r\n\r\n".encode() + body


class _Handler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        spamd: FakeSpamd = self.server.spamd  # type: ignore[attr-defined]
        command = self.rfile.readline(1000).decode("latin-1").strip()
        length = 0
        while (line := self.rfile.readline(1000)) not in (b"\r\n", b"\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
        message = self.rfile.read(length) if length else b""
        spamd.requests.append((command, message))
        if command.startswith("PING"):
            self.wfile.write(b"SPAMD/1.5 0 PONG\r\n")
        elif command.startswith("REPORT"):
            self.wfile.write(spamd.report())
        else:
            self.wfile.write(b"SPAMD/1.0 76 Bad header line: " + command.encode() + b"\r\n")


@contextmanager
def fake_spamd(**options: object) -> Iterator[FakeSpamd]:
    """A :class:`FakeSpamd` listening on a free port of 127.0.0.1 until the block ends."""
    spamd = FakeSpamd(**options)  # type: ignore[arg-type]
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    server.spamd = spamd  # type: ignore[attr-defined]
    spamd.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, name="fake-spamd", daemon=True)
    thread.start()
    try:
        yield spamd
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
