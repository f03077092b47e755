"""A Flask app that sends mail with Flask-Mail, configured as in production: STARTTLS and a login.

    smtp-sink serve --auth accept-any
    python examples/flask_app/app.py [recipient]                # one welcome mail, then exit
    flask --app examples/flask_app/app.py run                   # POST /signup email=... sends it

MAIL_* settings come from the environment: SMTP_HOST (localhost), SMTP_PORT (2525; 2465 with
SMTP_TLS=implicit), SMTP_TLS (starttls | implicit | off), SMTP_USER (app@example.test; empty: no
login), SMTP_PASSWORD (secret). Flask-Mail does not verify the server's certificate (smtplib's
default for ``starttls()`` and ``SMTP_SSL`` without a context), so no certificate setting is needed.
``test_app.py`` beside this file tests the app with the ``smtp_sink`` pytest fixture.
"""

from __future__ import annotations

import os
import smtplib
import sys
from collections.abc import Mapping
from typing import Any

from flask import Flask, request
from flask_mail import Mail, Message

mail = Mail()


def mail_settings() -> dict[str, Any]:
    """Flask-Mail's settings from the environment."""
    tls = os.environ.get("SMTP_TLS", "starttls").lower()
    if tls not in ("starttls", "implicit", "off"):
        raise ValueError(f"SMTP_TLS must be starttls, implicit or off, not {tls!r}")
    port = os.environ.get("SMTP_PORT") or ("2465" if tls == "implicit" else "2525")
    if not port.isdigit():
        raise ValueError(f"SMTP_PORT must be a port number, not {port!r}")
    return {
        "MAIL_SERVER": os.environ.get("SMTP_HOST", "localhost"),
        "MAIL_PORT": int(port),
        "MAIL_USE_TLS": tls == "starttls",
        "MAIL_USE_SSL": tls == "implicit",
        "MAIL_USERNAME": os.environ.get("SMTP_USER", "app@example.test") or None,
        "MAIL_PASSWORD": os.environ.get("SMTP_PASSWORD", "secret"),
        "MAIL_DEFAULT_SENDER": ("App", "app@example.test"),
    }


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """The app; ``config`` overrides the settings from the environment (tests pass theirs)."""
    app = Flask(__name__)
    app.config.update(mail_settings() if config is None else config)
    mail.init_app(app)

    @app.post("/signup")
    def signup() -> tuple[str, int]:
        address = request.form.get("email", "")
        if "@" not in address:
            return "email: an address is required\n", 400
        send_welcome(address)
        return f"welcome mail sent to {address}\n", 200

    return app


def send_welcome(address: str) -> None:
    """The mail this app sends (needs an app context)."""
    mail.send(Message("Welcome to the example app", recipients=[address],
                      body=f"Hello {address},\n\nthanks for signing up.\n"))


def main(argv: list[str]) -> int:
    try:
        app = create_app()
        with app.app_context():
            send_welcome(argv[0] if argv else "ann@example.test")
    except ValueError as exc:
        print(f"flask app: {exc}", file=sys.stderr)
        return 2
    except (OSError, smtplib.SMTPException) as exc:
        print(f"flask app: cannot send through {app.config['MAIL_SERVER']}:{app.config['MAIL_PORT']}: {exc}",
              file=sys.stderr)
        return 1
    print(f"flask app: sent through {app.config['MAIL_SERVER']}:{app.config['MAIL_PORT']}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
