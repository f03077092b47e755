"""Send one message with Python's smtplib: STARTTLS, then a login, as a production app would.

    smtp-sink serve --auth accept-any                  # STARTTLS on 2525, implicit TLS on 2465
    SSL_CERT_FILE=mail/tls/ca.pem python examples/send_smtplib.py [recipient]

Settings come from the environment: SMTP_HOST (localhost), SMTP_PORT (2525; 2465 with
SMTP_TLS=implicit), SMTP_TLS (starttls | implicit | off), SMTP_USER (app@example.test; empty: no
login), SMTP_PASSWORD (secret); the recipient defaults to ann@example.test. The certificate is
verified against the system's authorities or SSL_CERT_FILE: point it at smtp-sink's ``ca.pem``.
"""

from __future__ import annotations

import os
import smtplib
import ssl
import sys
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

TLS_MODES = ("starttls", "implicit", "off")


def settings(argv: list[str]) -> dict[str, str]:
    """The SMTP settings from the environment, with the defaults above."""
    tls = os.environ.get("SMTP_TLS", "starttls").lower()
    if tls not in TLS_MODES:
        raise ValueError(f"SMTP_TLS must be one of {', '.join(TLS_MODES)}, not {tls!r}")
    port = os.environ.get("SMTP_PORT") or ("2465" if tls == "implicit" else "2525")
    if not port.isdigit():
        raise ValueError(f"SMTP_PORT must be a port number, not {port!r}")
    return {
        "host": os.environ.get("SMTP_HOST", "localhost"), "port": port, "tls": tls,
        "user": os.environ.get("SMTP_USER", "app@example.test"),
        "password": os.environ.get("SMTP_PASSWORD", "secret"),
        "to": argv[0] if argv else "ann@example.test",
    }


def send(config: dict[str, str]) -> None:
    """Build the message and send it the way ``config`` says."""
    message = EmailMessage()
    message["From"] = "App <app@example.test>"
    message["To"] = config["to"]
    message["Subject"] = "Hello from smtplib"
    message["Date"] = formatdate(localtime=True)
    message["Message-ID"] = make_msgid(domain="example.test")
    message.set_content("Sent by examples/send_smtplib.py.\n")
    context = ssl.create_default_context()  # verifies the certificate and the host name
    host, port = config["host"], int(config["port"])
    if config["tls"] == "implicit":
        client: smtplib.SMTP = smtplib.SMTP_SSL(host, port, context=context, timeout=10)
    else:
        client = smtplib.SMTP(host, port, timeout=10)
    with client:
        if config["tls"] == "starttls":
            client.starttls(context=context)
        if config["user"]:
            client.login(config["user"], config["password"])
        client.send_message(message)


def main(argv: list[str]) -> int:
    try:
        config = settings(argv)
        send(config)
    except ssl.SSLCertVerificationError as exc:  # before ValueError: it is one too
        print(f"send_smtplib: {exc.verify_message}: trust smtp-sink's certificate with "
              "SSL_CERT_FILE=<store>/tls/ca.pem", file=sys.stderr)
        return 1
    except ValueError as exc:
        print(f"send_smtplib: {exc}", file=sys.stderr)
        return 2
    except (OSError, smtplib.SMTPException) as exc:
        print(f"send_smtplib: cannot send through {config['host']}:{config['port']}: {exc}", file=sys.stderr)
        return 1
    print(f"send_smtplib: sent to {config['to']} through {config['host']}:{config['port']}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
