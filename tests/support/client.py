"""Helpers for the client tests: run ``clients/smtp_client.py``, a scripted stub SMTP server, a certificate."""

from __future__ import annotations

import datetime
import email
import email.policy
import ipaddress
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from smtp_sink.server import SinkServer
from support import ROOT

CLIENT = ROOT / "clients" / "smtp_client.py"


def smtp_send(*args: str, stdin: str | None = None, python: tuple[str, ...] = (),
              cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run the client from the checkout (``python clients/smtp_client.py ...``)."""
    return subprocess.run(
        [sys.executable, *python, str(CLIENT), *args],
        capture_output=True, text=True, timeout=60, input=stdin, cwd=cwd,
    )


def only_message(server: SinkServer) -> email.message.EmailMessage:
    """The single message in the server's store, parsed."""
    (message_id,) = server.store.ids()
    return email.message_from_bytes(server.store.read(message_id), policy=email.policy.default)


class StubServer:
    """A scripted SMTP server on a raw socket, one connection: ``answer(line) -> reply`` decides each reply.

    ``received`` holds every line the client sent; ``data`` the raw bytes of the message.
    A reply starting with 421 closes the connection, as a real server does.
    """

    def __init__(self, answer: Callable[[str], str]) -> None:
        self.answer = answer
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.port = self.sock.getsockname()[1]
        self.received: list[str] = []
        self.data = b""
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.sock.accept()
        reader = conn.makefile("rb")
        conn.sendall(b"220 stub ready\r\n")
        in_data = False
        for raw in reader:
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            self.received.append(line)
            if in_data:
                if raw == b".\r\n":
                    in_data = False
                    conn.sendall(b"250 stored\r\n")
                else:
                    self.data += raw
                continue
            reply = self.answer(line)
            conn.sendall(reply.encode() + b"\r\n")
            if reply.startswith("354"):
                in_data = True
            if line.upper() == "QUIT" or reply.startswith("421"):
                break
        reader.close()
        conn.close()

    def close(self) -> None:
        self.sock.close()


def refuse(rcpt_codes: dict[str, str], *, mail: str = "250 ok", data: str = "354 go ahead",
           ehlo: str = "250-stub\r\n250 PIPELINING") -> Callable[[str], str]:
    """A stub's answers: ``rcpt_codes`` maps an address fragment to the RCPT reply; the rest say yes."""

    def answer(line: str) -> str:
        verb = line.split(" ")[0].upper()
        if verb == "EHLO":
            return ehlo
        if verb == "MAIL":
            return mail
        if verb == "RCPT":
            return next((reply for address, reply in rcpt_codes.items() if address in line), "250 ok")
        if verb == "DATA":
            return data
        if verb == "QUIT":
            return "221 bye"
        return "250 ok"

    return answer


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A throw-away certificate and key for 127.0.0.1 (made with ``cryptography``)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path
