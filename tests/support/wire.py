"""A raw-socket SMTP peer for tests: send exact bytes, read exact replies."""

from __future__ import annotations

import socket


class Wire:
    """A plain socket to the server with reply parsing (multi-line aware)."""

    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = 10.0) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buf = b""

    def send(self, data: bytes | str) -> None:
        self.sock.sendall(data.encode() if isinstance(data, str) else data)

    def reply(self) -> tuple[int, list[str]]:
        """Read one complete reply: (code, text lines)."""
        lines: list[str] = []
        while True:
            while b"\r\n" not in self.buf:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise ConnectionError(f"closed by server; partial reply {self.buf!r} after {lines}")
                self.buf += chunk
            line, self.buf = self.buf.split(b"\r\n", 1)
            text = line.decode("utf-8", "replace")
            lines.append(text[4:])
            if text[3:4] != "-":
                return int(text[:3]), lines

    def code(self) -> int:
        return self.reply()[0]

    def cmd(self, line: str) -> tuple[int, list[str]]:
        """Send one command line (CRLF added) and read its reply."""
        self.send(line + "\r\n")
        return self.reply()

    def closed(self, timeout: float = 5.0) -> bool:
        """True when the server has closed the connection (reads to EOF)."""
        self.sock.settimeout(timeout)
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
                self.buf += chunk
        except (ConnectionResetError, BrokenPipeError):
            return True
        except TimeoutError:
            return False

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Wire:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def free_port() -> int:
    """A loopback port nothing listens on (now)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def connect(port: int) -> Wire:
    """Connect and consume the 220 greeting."""
    wire = Wire(port)
    code, lines = wire.reply()
    assert code == 220, lines
    return wire
