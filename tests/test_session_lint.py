"""The command-stream lint of recorded sessions (issue 17 part 2, "protocol"): each check
provoked over a real socket (raw bytes for the malformed ones, smtplib for the others), with a
control that does not provoke it."""

from __future__ import annotations

import smtplib
import ssl

from support.servers import Servers
from support.sessions import recorded, wait_session
from support.wire import Wire

from smtp_sink.server import SinkServer
from smtp_sink.session_lint import CHECKS, mail_params_for, session_findings
from smtp_sink.sessions import Session

MAIL = b"Subject: lint\r\n\r\nhi\r\n"


def checks(session: Session) -> list[str]:
    return [f.check for f in session.findings]


def clean_smtplib_session(port: int, **options: object) -> None:
    with smtplib.SMTP("127.0.0.1", port) as client:
        client.sendmail("app@example.com", ["user@example.com"], MAIL, **options)  # type: ignore[arg-type]


def test_a_well_behaved_client_has_no_findings(server: SinkServer) -> None:
    clean_smtplib_session(server.smtp_port)
    session = recorded(server)[0]
    assert session.findings == () and session.message_ids


def test_bare_lf_and_bare_cr_in_commands(server: SinkServer) -> None:
    with Wire(server.smtp_port) as wire:
        wire.code()
        wire.send(b"HELO bare.example\n")
        assert wire.code() == 250
        wire.send(b"NOOP a\rb\r\n")
        assert wire.code() == 250
        assert wire.cmd("QUIT")[0] == 221
    findings = [f for f in recorded(server)[0].findings if f.check == "bare-cr-lf-command"]
    assert [f.evidence.split(" (")[0] for f in findings] == ["HELO bare.example\\n", "NOOP a\\rb"]
    assert findings[0].severity == "error" and findings[0].reference == "RFC 5321 section 2.3.8"


def test_utf8_address_without_smtputf8(server: SinkServer) -> None:
    with Wire(server.smtp_port) as wire:
        wire.code()
        wire.cmd("EHLO utf8.example")
        assert wire.cmd("MAIL FROM:<jörg@example.com>")[0] == 553
        assert wire.cmd("MAIL FROM:<a@example.com>")[0] == 250
        assert wire.cmd("RCPT TO:<müller@example.com>")[0] == 553
        wire.cmd("QUIT")
    findings = [f for f in recorded(server)[0].findings if f.check == "utf8-address-without-smtputf8"]
    assert [f.evidence.split(" (")[0] for f in findings] == ["MAIL FROM:<jörg@example.com>",
                                                            "RCPT TO:<müller@example.com>"]
    assert findings[0].reference == "RFC 6531 section 3.4"


def test_utf8_address_with_smtputf8_is_fine(server: SinkServer) -> None:
    with smtplib.SMTP("127.0.0.1", server.smtp_port) as client:
        client.sendmail("jörg@example.com", ["müller@example.com"], MAIL, mail_options=["SMTPUTF8"])
    session = recorded(server)[0]
    assert session.message_ids and session.findings == ()


def test_pipelining_after_helo_or_before_the_ehlo_reply(server: SinkServer) -> None:
    with Wire(server.smtp_port) as wire:
        wire.code()
        assert wire.cmd("HELO old.example")[0] == 250
        wire.send(b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\n")
        assert [wire.code(), wire.code()] == [250, 250]
        wire.send(b"RSET\r\nEHLO new.example\r\nNOOP\r\n")
        assert [wire.code(), wire.code(), wire.code()] == [250, 250, 250]
        wire.cmd("QUIT")
    findings = [f for f in recorded(server)[0].findings if f.check == "pipelining-not-advertised"]
    assert [f.evidence.split(" sent")[0] for f in findings] == ["RCPT TO:<b@example.com>", "EHLO new.example",
                                                               "NOOP"]
    assert "before the reply to MAIL FROM:<a@example.com>" in findings[0].evidence


def test_pipelining_after_ehlo_advertised_it_is_fine(server: SinkServer) -> None:
    with Wire(server.smtp_port) as wire:
        wire.code()
        assert "PIPELINING" in wire.cmd("EHLO new.example")[1]
        wire.send(b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n")
        assert [wire.code(), wire.code(), wire.code()] == [250, 250, 354]
        wire.send(b"hi\r\n.\r\n")
        assert wire.code() == 250
        wire.cmd("QUIT")
    session = recorded(server)[0]
    assert session.message_ids and session.findings == ()


def tls_server(start_server: Servers) -> SinkServer:
    return start_server(auth={"mode": "accept-any"}, tls={"mode": "on"})


def test_auth_before_starttls_when_it_was_offered(start_server: Servers) -> None:
    server = tls_server(start_server)
    with smtplib.SMTP("127.0.0.1", server.smtp_port) as client:
        client.login("ann", "secret")
    findings = [f for f in recorded(server)[0].findings if f.check == "auth-before-starttls"]
    assert len(findings) == 1 and findings[0].evidence.startswith("AUTH ")
    assert "secret" not in findings[0].evidence and findings[0].reference.startswith("RFC 3207")


def test_auth_after_starttls_is_fine(start_server: Servers) -> None:
    server = tls_server(start_server)
    with smtplib.SMTP("127.0.0.1", server.smtp_port) as client:
        client.starttls(context=ssl.create_default_context(cafile=server.tls_ca))
        client.login("ann", "secret")
    session = recorded(server)[0]
    assert session.auth_user == "ann" and session.findings == ()


def test_no_quit(server: SinkServer) -> None:
    with Wire(server.smtp_port) as wire:
        wire.code()
        wire.cmd("EHLO rude.example")
    session = wait_session(server)
    assert checks(session) == ["no-quit"]
    assert session.findings[0].evidence.endswith("(last command: EHLO rude.example)")
    assert session_findings(server.sink, session.id) == list(session.findings)


def test_every_check_is_documented() -> None:
    from support import ROOT

    page = (ROOT / "docs" / "sessions.md").read_text()
    for name, (_, reference) in CHECKS.items():
        assert f"`{name}`" in page and reference in page, name


def test_mail_params_of_the_transaction_that_delivered_a_message(server: SinkServer) -> None:
    with smtplib.SMTP("127.0.0.1", server.smtp_port) as client:
        client.sendmail("a@example.com", ["b@example.com"], MAIL, mail_options=["BODY=8BITMIME"])
        client.sendmail("jörg@example.com", ["b@example.com"], MAIL, mail_options=["SMTPUTF8"])
    first, second = recorded(server)[0].message_ids
    assert mail_params_for(server.sink, first) == {"SIZE": str(len(MAIL)), "BODY": "8BITMIME"}
    assert mail_params_for(server.store.path, second) == {"SIZE": str(len(MAIL)), "SMTPUTF8": None}
    assert mail_params_for(server.sink, "01M8P6GN9V02GKGEY11FTJRKCF") is None
