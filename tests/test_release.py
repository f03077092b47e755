"""Release (``POST /api/v1/message/{id}/release``) and auto-relay, against a second smtp-sink started by
the test as the upstream: STARTTLS (or implicit TLS) with AUTH, its generated CA trusted through
``[relay] ca_file``. The upstream stores the same bytes the client sent (after each side's trace block)."""

from __future__ import annotations

import dataclasses
import json
import smtplib
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import wait_until
from support.config import make_config
from support.http import send_json

from smtp_sink import trace
from smtp_sink.config import ConfigError, RelayConfig, load
from smtp_sink.relay import outgoing, webui_json
from smtp_sink.rules import Rule
from smtp_sink.server import SinkServer

USER, PASSWORD = "relay", "s3cret"
MESSAGE = (b"From: Ann <ann@example.test>\r\nTo: Bob <bob@example.test>\r\nSubject: release me\r\n"
           b"Date: Mon, 1 Jan 2024 10:00:00 +0000\r\nMessage-ID: <keep-me@example.test>\r\n"
           b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
           b"Hello \xc3\xa9t\xc3\xa9,\r\n.a line that starts with a dot\r\n..two dots\r\n" + b"x" * 900 + b"\r\n")


@pytest.fixture
def upstream(start_server: Any, tmp_path: Path) -> SinkServer:
    """A second smtp-sink: STARTTLS on its SMTP port, implicit TLS on its TLS port, AUTH by user table."""
    server: SinkServer = start_server(tmp_path / "upstream", tls={"mode": "on"},
                                      auth={"mode": "users", "users": {USER: PASSWORD}, "require_tls": True})
    return server


def sink_relaying(start_server: Any, tmp_path: Path, upstream: SinkServer | None, **relay: Any) -> SinkServer:
    """The sink under test, HTTP on, ``[relay]`` pointing at ``upstream`` (STARTTLS, AUTH PLAIN) plus ``relay``."""
    keys: dict[str, Any] = {"host": "127.0.0.1", "port": upstream.smtp_port, "starttls": True, "auth": "plain",
                            "username": USER, "password": PASSWORD, "ca_file": upstream.tls_ca} if upstream else {}
    config = make_config(tmp_path / "sink", http=True)
    return start_server(config=dataclasses.replace(config, relay=RelayConfig(**{**keys, **relay})))


def smtp_send(server: SinkServer, data: bytes = MESSAGE, to: tuple[str, ...] = ("bob@example.test",),
              sender: str = "ann@example.test") -> str:
    """Send over SMTP, return the stored id."""
    before = set(server.store.ids())
    with smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=10) as smtp:
        assert smtp.sendmail(sender, list(to), data) == {}
    (new,) = set(server.store.ids()) - before
    return new


def release(server: SinkServer, message_id: str, body: Any) -> tuple[int, str]:
    status, _, raw = send_json(server, f"/api/v1/message/{message_id}/release", "POST", body)
    text = raw.decode()
    return status, json.loads(text)["Error"] if status != 200 else text


def content(raw: bytes) -> bytes:
    """What follows a store's own trace block."""
    recorded = trace.read(raw)
    assert recorded.own
    return raw[recorded.length:]


def received(server: SinkServer, count: int = 1) -> list[bytes]:
    wait_until(lambda: len(server.store.ids()) >= count, what=f"{count} messages upstream")
    return [server.store.read(message_id) for message_id in server.store.ids()]


def test_release_relays_the_same_bytes_over_starttls_with_auth(start_server: Any, tmp_path: Path,
                                                               upstream: SinkServer) -> None:
    sink = sink_relaying(start_server, tmp_path, upstream)
    message_id = smtp_send(sink)
    assert release(sink, message_id, {"To": ["Carol <carol@example.test>", "dan@example.test"]}) == (200, "ok")
    (raw,) = received(upstream)
    assert content(raw) == content(sink.store.read(message_id)) == MESSAGE
    recorded = trace.read(raw)
    assert recorded.auth_user == USER and recorded.mail_from == "ann@example.test"
    assert recorded.rcpt_to == ("carol@example.test", "dan@example.test")  # bare addresses
    assert b" with ESMTPSA id " in raw  # upstream: TLS (STARTTLS) and AUTH


@pytest.mark.parametrize("mechanism", ["plain", "login", "cram-md5"])
def test_each_login_mechanism(start_server: Any, tmp_path: Path, upstream: SinkServer, mechanism: str) -> None:
    secret = {"secret": PASSWORD, "password": ""} if mechanism == "cram-md5" else {}
    sink = sink_relaying(start_server, tmp_path, upstream, auth=mechanism, **secret)
    assert release(sink, smtp_send(sink), {"To": ["carol@example.test"]}) == (200, "ok")
    assert trace.read(received(upstream)[0]).auth_user == USER


def test_implicit_tls(start_server: Any, tmp_path: Path, upstream: SinkServer) -> None:
    sink = sink_relaying(start_server, tmp_path, upstream, port=upstream.tls_port, starttls=False, tls=True)
    smtp_send(sink)
    assert release(sink, "latest", {"To": ["carol@example.test"]}) == (200, "ok")  # latest works here too
    assert content(received(upstream)[0]) == MESSAGE


def test_the_upstreams_certificate_is_checked(start_server: Any, tmp_path: Path, upstream: SinkServer) -> None:
    sink = sink_relaying(start_server, tmp_path, upstream, ca_file="")
    message_id = smtp_send(sink)
    status, error = release(sink, message_id, {"To": ["carol@example.test"]})
    assert status == 400 and error.startswith("SMTP error: ") and "certificate is not trusted" in error, error
    assert upstream.store.ids() == []
    insecure = sink_relaying(start_server, tmp_path / "2", upstream, ca_file="", allow_insecure=True)
    assert release(insecure, smtp_send(insecure), {"To": ["carol@example.test"]}) == (200, "ok")


def test_a_refused_relay_is_400_with_the_upstreams_reply(start_server: Any, tmp_path: Path,
                                                         upstream: SinkServer) -> None:
    sink = sink_relaying(start_server, tmp_path, upstream, password="wrong")
    status, error = release(sink, smtp_send(sink), {"To": ["carol@example.test"]})
    assert status == 400 and "authentication failed: 535" in error, error
    sink = sink_relaying(start_server, tmp_path / "2", upstream)
    upstream.rules.add(Rule(stage="rcpt", recipient="nobody@*", code=550, text="No such user (test)"))
    message_id = smtp_send(sink)
    status, error = release(sink, message_id, {"To": ["nobody@example.test"]})
    assert status == 400 and error == (f"SMTP error: 127.0.0.1:{upstream.smtp_port} refused the recipient "
                                       "<nobody@example.test>: 550 No such user (test)")
    upstream.rules.add(Rule(stage="after-data", code=554, text="Spam (test)"))
    status, error = release(sink, message_id, {"To": ["carol@example.test"]})
    assert status == 400 and error.endswith("refused the message from <ann@example.test>: 554 Spam (test)")
    assert upstream.store.ids() == []


def test_a_refused_recipient_fails_the_relay_only_with_forward_smtp_errors(start_server: Any, tmp_path: Path,
                                                                           upstream: SinkServer) -> None:
    upstream.rules.add(Rule(stage="rcpt", recipient="nobody@*", code=550, text="No such user (test)"))
    to = {"To": ["nobody@example.test", "carol@example.test"]}
    strict = sink_relaying(start_server, tmp_path, upstream, forward_smtp_errors=True)
    status, error = release(strict, smtp_send(strict), to)
    assert status == 400 and "550 No such user (test)" in error and upstream.store.ids() == []
    lenient = sink_relaying(start_server, tmp_path / "2", upstream)
    assert release(lenient, smtp_send(lenient), to) == (200, "ok")
    assert trace.read(received(upstream)[0]).rcpt_to == ("carol@example.test",)


def test_an_unreachable_upstream_is_400(start_server: Any, tmp_path: Path) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    sink = sink_relaying(start_server, tmp_path, None, host="127.0.0.1", port=port)
    status, error = release(sink, smtp_send(sink), {"To": ["carol@example.test"]})
    assert status == 400 and error.startswith(f"SMTP error: cannot connect to 127.0.0.1:{port}"), error


def test_release_without_a_relay_is_a_clear_400(web_server: SinkServer) -> None:
    message_id = smtp_send(web_server)
    assert release(web_server, message_id, {"To": ["carol@example.test"]}) == (
        400, "message relay is not configured ([relay] host)")


@pytest.mark.parametrize(("body", "error"), [
    ({"To": ["not an address"]}, "Invalid email address: not an address"),
    ({"To": ["x@other.test"]}, "Failed: 1 Address do not match the allowlist: x@other.test"),
    ({"To": ["a@other.test", "B <b@other.test>"]}, "Failed: 2 Addresses do not match the allowlist: a@other.test, "
                                                   "B <b@other.test>"),
    ({"To": ["blocked@example.test"]}, "Failed: 1 Address found on blocklist: blocked@example.test"),
    ({"To": []}, "No valid addresses found"),
    ({}, "No valid addresses found"),
    ({"To": "carol@example.test"}, "To: expected a list of strings"),
    ({"Recipients": []}, "unknown field 'Recipients'"),
])
def test_release_requests_are_checked_as_mailpit_checks_them(start_server: Any, tmp_path: Path, body: Any,
                                                             error: str) -> None:
    sink = sink_relaying(start_server, tmp_path, None, host="127.0.0.1", port=9,
                         allowed_recipients=r"@example\.test$", blocked_recipients="^blocked@")
    status, answer = release(sink, smtp_send(sink), body)
    assert status == 400 and answer.startswith(error), answer


def test_release_of_an_unknown_message_is_404(start_server: Any, tmp_path: Path) -> None:
    sink = sink_relaying(start_server, tmp_path, None, host="127.0.0.1", port=9)
    assert release(sink, "01HZZZZZZZZZZZZZZZZZZZZZZZ", {"To": ["a@example.test"]})[0] == 404
    assert release(sink, "latest", {"To": ["a@example.test"]})[0] == 404  # nothing stored yet


def test_a_bcc_header_is_not_passed_on_and_sender_wins(start_server: Any, tmp_path: Path,
                                                        upstream: SinkServer) -> None:
    sink = sink_relaying(start_server, tmp_path, upstream)
    bcc = b"Bcc: Hidden <hidden@example.test>,\r\n  other@example.test\r\n"
    data = b"Sender: agent@example.test\r\n" + bcc + MESSAGE
    assert release(sink, smtp_send(sink, data), {"To": ["carol@example.test"]}) == (200, "ok")
    (raw,) = received(upstream)
    assert content(raw) == data.replace(bcc, b"")
    assert trace.read(raw).mail_from == "agent@example.test"


def test_return_path_and_override_from(start_server: Any, tmp_path: Path, upstream: SinkServer) -> None:
    sink = sink_relaying(start_server, tmp_path, upstream, return_path="bounces@relay.test")
    assert release(sink, smtp_send(sink), {"To": ["carol@example.test"]}) == (200, "ok")
    (raw,) = received(upstream)
    assert trace.read(raw).mail_from == "bounces@relay.test" and content(raw) == MESSAGE
    sink = sink_relaying(start_server, tmp_path / "2", upstream, override_from="No Reply <noreply@relay.test>")
    assert release(sink, smtp_send(sink), {"To": ["carol@example.test"]}) == (200, "ok")
    raw = next(r for r in received(upstream, 2) if b"X-Original-From" in r)
    assert trace.read(raw).mail_from == "noreply@relay.test"
    assert content(raw) == b"X-Original-From: ann@example.test\r\n" + MESSAGE.replace(
        b"From: Ann <ann@example.test>", b"From: Ann <noreply@relay.test>")


def test_auto_relay_of_every_message(start_server: Any, tmp_path: Path, upstream: SinkServer) -> None:
    sink = sink_relaying(start_server, tmp_path, upstream, relay_all=True, blocked_recipients="^blocked@")
    smtp_send(sink, to=("bob@example.test", "blocked@example.test"))
    (raw,) = received(upstream)
    assert content(raw) == MESSAGE
    assert trace.read(raw).rcpt_to == ("bob@example.test",) and trace.read(raw).mail_from == "ann@example.test"
    status, _, answer = send_json(sink, "/api/v1/send", "POST", {  # messages of the send API too, as in Mailpit
        "From": {"Email": "api@example.test"}, "To": [{"Email": "carol@example.test"}], "Subject": "api"})
    assert status == 200
    api_copy = next(r for r in received(upstream, 2) if b"Subject: api" in r)
    assert content(api_copy) == content(sink.store.read(json.loads(answer)["ID"]))


def test_auto_relay_of_matching_recipients(start_server: Any, tmp_path: Path, upstream: SinkServer) -> None:
    sink = sink_relaying(start_server, tmp_path, upstream, relay_matching=r"@relay\.test$")
    smtp_send(sink, to=("bob@example.test",))
    smtp_send(sink, to=("a@relay.test", "b@example.test", "c@relay.test"))
    (raw,) = received(upstream)
    assert trace.read(raw).rcpt_to == ("a@relay.test", "c@relay.test")
    assert len(sink.store.ids()) == 2


@pytest.fixture
def silent_upstream() -> Iterator[int]:
    """A port that accepts connections and never says a word (an upstream that hangs)."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join()
    for conn in accepted:
        conn.close()
    listener.close()


def test_auto_relay_never_holds_up_the_smtp_reply(start_server: Any, tmp_path: Path, silent_upstream: int) -> None:
    """The upstream hangs (the relay would wait 30 s); the SMTP client gets its 250 at once, and a
    second client in the middle of its session goes on."""
    sink = sink_relaying(start_server, tmp_path, None, host="127.0.0.1", port=silent_upstream, relay_all=True)
    with smtplib.SMTP("127.0.0.1", sink.smtp_port, timeout=10) as other:
        other.ehlo()
        for number in range(3):
            with smtplib.SMTP("127.0.0.1", sink.smtp_port, timeout=5) as smtp:
                assert smtp.sendmail("ann@example.test", [f"bob{number}@example.test"], MESSAGE) == {}
        assert other.sendmail("ann@example.test", ["carl@example.test"], MESSAGE) == {}
    assert len(sink.store.ids()) == 4


def test_what_goes_upstream() -> None:
    stored = (b"Return-Path: <ann@example.test>\r\nX-Original-To: bob@example.test\r\n"
              b"Received: from client ([127.0.0.1])\r\n\tby host (smtp-sink 1.0) with ESMTP id X;\r\n\tdate\r\n")
    data, sender = outgoing(stored + b"Subject: no from\r\n\r\nbody\r\n")
    assert data == b"Subject: no from\r\n\r\nbody\r\n" and sender == "ann@example.test"  # the envelope's
    data, sender = outgoing(b"From: =?utf-8?q?Zo=C3=AB?= <z@example.test>\r\nBcc: a@b.test\r\n\r\nBcc: body\r\n",
                            "new@relay.test")
    assert data == (b"X-Original-From: z@example.test\r\nFrom: =?utf-8?q?Zo=C3=AB?= <new@relay.test>\r\n\r\n"
                    b"Bcc: body\r\n") and sender == "z@example.test"


def test_relay_settings_as_the_web_page_shows_them() -> None:
    off = webui_json(RelayConfig())
    assert off == {"Enabled": False, "SMTPServer": "", "ReturnPath": "", "AllowedRecipients": "",
                   "BlockedRecipients": "", "OverrideFrom": "", "PreserveMessageIDs": False, "RecipientAllowlist": ""}
    on = webui_json(RelayConfig(host="mx.test", port=587, allowed_recipients="@x$", override_from="N <n@x.test>"))
    assert (on["Enabled"], on["SMTPServer"], on["OverrideFrom"], on["RecipientAllowlist"]) == (
        True, "mx.test:587", "n@x.test", "@x$")


@pytest.mark.parametrize(("toml", "error"), [
    ('host = "mx"\ntls = true\nstarttls = true', r"\[relay\] tls and starttls: choose one"),
    ('host = "mx"\nauth = "plain"\nusername = "u"', r'\[relay\] auth = "plain" needs \[relay\] username and password'),
    ('host = "mx"\nauth = "cram-md5"\nusername = "u"\npassword = "p"',
     r'\[relay\] auth = "cram-md5" needs \[relay\] username and secret'),
    ('host = "mx"\nallowed_recipients = "(unclosed"', r"\[relay\] allowed_recipients: not a valid regular expression"),
    ('host = "mx"\nblocked_recipients = "*x"', r"\[relay\] blocked_recipients: not a valid regular expression"),
    ('relay_matching = "@x"', r"\[relay\] relay_matching: auto-relay needs the upstream server: set \[relay\] host"),
    ("relay_all = true", r"\[relay\] relay_all: auto-relay needs the upstream server"),
    ('host = "mx"\noverride_from = "nobody"', r"\[relay\] override_from: expected an email address"),
    ('host = "mx"\nreturn_path = "a@b@c"', r"\[relay\] return_path: expected an email address"),
    ('host = "mx"\nca_file = "/nonexistent/ca.pem"', r"\[relay\] ca_file: /nonexistent/ca.pem: not a readable PEM"),
    ('host = "mx"\nport = 0', r"\[relay\] port: must be at least 1"),
    ('host = "mx"\nauth = "xoauth2"', r"\[relay\] auth: must be one of none, plain, login, cram-md5"),
])
def test_relay_settings_are_checked_naming_the_key(tmp_path: Path, toml: str, error: str) -> None:
    path = tmp_path / "relay.toml"
    path.write_text(f"[relay]\n{toml}\n")
    with pytest.raises(ConfigError, match=error):
        load(path, environ={})


def test_a_good_relay_setting_loads(tmp_path: Path) -> None:
    path = tmp_path / "relay.toml"
    path.write_text('[relay]\nhost = "mx.test"\nstarttls = true\nauth = "login"\nusername = "u"\npassword = "p"\n'
                    'relay_matching = "@test$"\noverride_from = "Ops <ops@x.test>"\n')
    assert load(path, environ={}).relay.relay_matching == "@test$"
