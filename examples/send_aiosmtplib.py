"""Send one message with aiosmtplib (asyncio): STARTTLS, then a login.

    smtp-sink serve --auth accept-any                  # STARTTLS on 2525, implicit TLS on 2465
    SSL_CERT_FILE=mail/tls/ca.pem python examples/send_aiosmtplib.py [recipient]

Settings come from the environment: SMTP_HOST (localhost), SMTP_PORT (2525; 2465 with
SMTP_TLS=implicit), SMTP_TLS (starttls | implicit | off), SMTP_USER (app@example.test; empty: no
login), SMTP_PASSWORD (secret); the recipient defaults to ann@example.test. aiosmtplib verifies
the certificate against the system's authorities or SSL_CERT_FILE: point it at smtp-sink's ``ca.pem``.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import sys
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

import aiosmtplib

TLS_MODES = ("starttls", "implicit", "off")


async def send(to: str) -> str:
    """Send the message as the environment says; returns where it went."""
    tls = os.environ.get("SMTP_TLS", "starttls").lower()
    if tls not in TLS_MODES:
        raise ValueError(f"SMTP_TLS must be one of {', '.join(TLS_MODES)}, not {tls!r}")
    host = os.environ.get("SMTP_HOST", "localhost")
    port = os.environ.get("SMTP_PORT") or ("2465" if tls == "implicit" else "2525")
    if not port.isdigit():
        raise ValueError(f"SMTP_PORT must be a port number, not {port!r}")
    user = os.environ.get("SMTP_USER", "app@example.test")
    message = EmailMessage()
    message["From"] = "App <app@example.test>"
    message["To"] = to
    message["Subject"] = "Hello from aiosmtplib"
    message["Date"] = formatdate(localtime=True)
    message["Message-ID"] = make_msgid(domain="example.test")
    message.set_content("Sent by examples/send_aiosmtplib.py.\n")
    await aiosmtplib.send(
        message, hostname=host, port=int(port), timeout=10,
        use_tls=tls == "implicit", start_tls=tls == "starttls",
        username=user or None, password=os.environ.get("SMTP_PASSWORD", "secret") if user else None,
    )
    return f"{message['To']} through {host}:{port}"


def main(argv: list[str]) -> int:
    try:
        where = asyncio.run(send(argv[0] if argv else "ann@example.test"))
    except ssl.SSLCertVerificationError as exc:  # before ValueError: it is one too
        print(f"send_aiosmtplib: {exc.verify_message}: trust smtp-sink's certificate with "
              "SSL_CERT_FILE=<store>/tls/ca.pem", file=sys.stderr)
        return 1
    except ValueError as exc:
        print(f"send_aiosmtplib: {exc}", file=sys.stderr)
        return 2
    except (OSError, aiosmtplib.SMTPException) as exc:
        print(f"send_aiosmtplib: cannot send: {exc}", file=sys.stderr)
        return 1
    print(f"send_aiosmtplib: sent to {where}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
