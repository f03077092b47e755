"""The Flask app's own tests: real mail to a real smtp-sink server, no mocking.

    python -m pytest examples/flask_app/test_app.py

The ``smtp_sink`` fixture comes with smtp-sink (a pytest plugin, nothing to enable). The app
keeps its production settings (STARTTLS and a login); only the host and port point at the fixture.
"""

from __future__ import annotations

import pytest
from app import create_app, mail_settings


@pytest.mark.smtp_sink(auth={"mode": "accept-any"})  # logins accepted; STARTTLS on
def test_signup_sends_welcome_mail(smtp_sink, monkeypatch):
    monkeypatch.setenv("SMTP_HOST", smtp_sink.host)
    monkeypatch.setenv("SMTP_PORT", str(smtp_sink.port))
    app = create_app(mail_settings())
    assert app.config["MAIL_USE_TLS"] and app.config["MAIL_USERNAME"] == "app@example.test"

    reply = app.test_client().post("/signup", data={"email": "ann@example.test"})

    assert reply.status_code == 200
    mail = smtp_sink.wait_for(to="ann@example.test", subject="Welcome")
    assert "thanks for signing up" in mail.text
    assert mail.mail_from == "app@example.test" and mail.auth_user == "app@example.test"
    assert "with ESMTPSA" in mail.message["Received"]  # STARTTLS, then AUTH


def test_signup_without_address_sends_nothing(smtp_sink, monkeypatch):
    monkeypatch.setenv("SMTP_PORT", str(smtp_sink.port))
    app = create_app(mail_settings())

    assert app.test_client().post("/signup", data={"email": ""}).status_code == 400
    assert smtp_sink.messages == []
