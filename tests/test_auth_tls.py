"""AUTH (RFC 4954) and TLS (RFC 3207 STARTTLS, RFC 8314 implicit TLS): every mode and code.

The first half drives the sans-I/O session; the second runs real servers and real TLS
handshakes with smtplib, the bundled client and raw sockets.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import smtplib
import socket
import ssl
import subprocess
import sys
import time
from email import message_from_bytes
from pathlib import Path

import pytest
from support.processes import run_cli
from support.servers import Servers
from support.wire import Wire, connect

from smtp_sink.config import Config
from smtp_sink.protocol import START_TLS, Output, Settings, SMTPSession, State
from smtp_sink.replies import Code, Reply
from smtp_sink.rules import Rule
from smtp_sink.server import SinkServer, fresh_challenge

USERS = (("ann@example.test", "s3cret"),)


def b64(text: str | bytes) -> str:
    return base64.b64encode(text.encode() if isinstance(text, str) else text).decode()


def new_session(tls: bool = False, **settings: object) -> SMTPSession:
    session = SMTPSession(Settings.from_config(Config(), hostname="sink.test", **settings), peer="192.0.2.1", tls=tls,
                          challenge=fresh_challenge)
    session.greeting()
    return session


def replies(outputs: list[Output]) -> list[Reply]:
    return [item for item in outputs if isinstance(item, Reply)]


def say(session: SMTPSession, line: str) -> Reply:
    """Send one line; return its one reply."""
    (answer,) = replies(session.feed(line.encode() + b"\r\n"))
    return answer


def ehlo_keywords(session: SMTPSession) -> list[str]:
    return [line.split()[0] for line in say(session, "EHLO c.test").lines[1:]]


# -- AUTH in the session ------------------------------------------------------------------


def test_auth_off_is_not_offered_and_answers_502() -> None:
    session = new_session()
    assert "AUTH" not in ehlo_keywords(session)
    assert say(session, "AUTH PLAIN " + b64("\0a\0b")).code == Code.NOT_IMPLEMENTED


@pytest.mark.parametrize("mode", ["accept-any", "users"])
def test_auth_is_advertised_with_its_mechanisms(mode: str) -> None:
    session = new_session(auth=mode, users=USERS)
    ehlo = say(session, "EHLO c.test")
    assert "AUTH PLAIN LOGIN CRAM-MD5" in ehlo.lines


def test_accept_any_takes_any_credentials_and_records_the_user() -> None:
    session = new_session(auth="accept-any")
    say(session, "EHLO c.test")
    assert say(session, "AUTH PLAIN " + b64("\0whoever\0anything")).code == Code.AUTH_SUCCEEDED
    assert session.auth_user == "whoever"
    say(session, "MAIL FROM:<a@example.test>")
    say(session, "RCPT TO:<b@example.test>")
    say(session, "DATA")
    (message,) = [o for o in session.feed(b"Subject: x\r\n\r\nx\r\n.\r\n") if not isinstance(o, Reply)]
    assert message.envelope.auth_user == "whoever"  # type: ignore[union-attr]


def test_accept_any_keeps_auth_optional() -> None:
    session = new_session(auth="accept-any")
    say(session, "EHLO c.test")
    assert say(session, "MAIL FROM:<a@example.test>").code == Code.OK


def test_plain_with_an_empty_challenge_then_the_response() -> None:
    session = new_session(auth="users", users=USERS)
    say(session, "EHLO c.test")
    challenge = say(session, "AUTH PLAIN")
    assert (challenge.code, challenge.lines) == (Code.AUTH_CHALLENGE, ("",))
    assert say(session, b64("\0ann@example.test\0s3cret")).code == Code.AUTH_SUCCEEDED


def test_login_asks_for_username_then_password() -> None:
    session = new_session(auth="users", users=USERS)
    say(session, "EHLO c.test")
    first = say(session, "AUTH LOGIN")
    assert first.code == Code.AUTH_CHALLENGE and base64.b64decode(first.lines[0]) == b"Username:"
    second = say(session, b64("ann@example.test"))
    assert second.code == Code.AUTH_CHALLENGE and base64.b64decode(second.lines[0]) == b"Password:"
    assert say(session, b64("s3cret")).code == Code.AUTH_SUCCEEDED


def test_login_with_the_user_as_initial_response() -> None:
    session = new_session(auth="users", users=USERS)
    say(session, "EHLO c.test")
    assert base64.b64decode(say(session, "AUTH LOGIN " + b64("ann@example.test")).lines[0]) == b"Password:"
    assert say(session, b64("wrong")).code == Code.AUTH_FAILED


@pytest.mark.parametrize(("password", "code"), [("s3cret", Code.AUTH_SUCCEEDED), ("guess", Code.AUTH_FAILED)])
def test_cram_md5_checks_the_digest_of_the_challenge(password: str, code: Code) -> None:
    session = new_session(auth="users", users=USERS)
    say(session, "EHLO c.test")
    challenge = base64.b64decode(say(session, "AUTH CRAM-MD5").lines[0])
    assert challenge.startswith(b"<") and challenge.endswith(b"@sink.test>")
    digest = hmac.new(password.encode(), challenge, hashlib.md5).hexdigest()
    assert say(session, b64(f"ann@example.test {digest}")).code == code


@pytest.mark.parametrize("credentials", ["\0ann@example.test\0wrong", "\0bob@example.test\0s3cret"])
def test_users_mode_refuses_wrong_credentials_with_535(credentials: str) -> None:
    session = new_session(auth="users", users=USERS)
    say(session, "EHLO c.test")
    assert say(session, "AUTH PLAIN " + b64(credentials)).code == Code.AUTH_FAILED
    assert session.auth_user is None
    assert say(session, "AUTH PLAIN " + b64("\0ann@example.test\0s3cret")).code == Code.AUTH_SUCCEEDED


def test_users_mode_requires_auth_before_mail_530() -> None:
    session = new_session(auth="users", users=USERS)
    say(session, "EHLO c.test")
    assert say(session, "MAIL FROM:<a@example.test>").code == Code.AUTH_REQUIRED
    say(session, "AUTH PLAIN " + b64("\0ann@example.test\0s3cret"))
    assert say(session, "MAIL FROM:<a@example.test> AUTH=<>").code == Code.OK


@pytest.mark.parametrize(
    ("before", "line", "code"),
    [
        ([], "AUTH PLAIN", Code.BAD_SEQUENCE),  # before EHLO
        (["HELO c.test"], "AUTH PLAIN", Code.BAD_SEQUENCE),  # AUTH is an ESMTP extension
        (["EHLO c.test"], "AUTH", Code.PARAMETER_SYNTAX),
        (["EHLO c.test"], "AUTH GSSAPI", Code.PARAMETER_NOT_IMPLEMENTED),  # unknown mechanism: 504
        (["EHLO c.test"], "AUTH PLAIN !!notbase64!!", Code.PARAMETER_SYNTAX),
        (["EHLO c.test"], "AUTH PLAIN " + b64("no-nul-bytes"), Code.PARAMETER_SYNTAX),
        (["EHLO c.test"], "AUTH CRAM-MD5 " + b64("x"), Code.PARAMETER_SYNTAX),
        (["EHLO c.test", "MAIL FROM:<a@example.test>"], "AUTH PLAIN", Code.BAD_SEQUENCE),
        (["EHLO c.test", "AUTH PLAIN " + b64("\0u\0p")], "AUTH PLAIN", Code.BAD_SEQUENCE),  # already done
    ],
)
def test_auth_errors(before: list[str], line: str, code: Code) -> None:
    session = new_session(auth="accept-any")
    for command in before:
        assert say(session, command).code < 400
    assert say(session, line).code == code
    assert say(session, "NOOP").code == Code.OK  # the session goes on in command mode


def test_star_cancels_an_exchange_with_501() -> None:
    session = new_session(auth="accept-any")
    say(session, "EHLO c.test")
    assert say(session, "AUTH LOGIN").code == Code.AUTH_CHALLENGE
    assert say(session, "*").code == Code.PARAMETER_SYNTAX
    assert say(session, "NOOP").code == Code.OK


def test_require_tls_hides_auth_and_answers_538_on_plaintext() -> None:
    session = new_session(auth="accept-any", require_tls=True, starttls=True)
    assert "AUTH" not in ehlo_keywords(session)
    assert say(session, "AUTH PLAIN " + b64("\0u\0p")).code == Code.ENCRYPTION_REQUIRED
    encrypted = new_session(tls=True, auth="accept-any", require_tls=True)
    assert "AUTH" in ehlo_keywords(encrypted)
    assert say(encrypted, "AUTH PLAIN " + b64("\0u\0p")).code == Code.AUTH_SUCCEEDED


def test_an_auth_line_may_be_longer_than_a_command_line() -> None:
    session = new_session(auth="accept-any")
    say(session, "EHLO c.test")
    long_user = "u" * 5000
    assert say(session, "AUTH PLAIN " + b64(f"\0{long_user}\0p")).code == Code.AUTH_SUCCEEDED
    assert session.auth_user == long_user


# -- STARTTLS in the session ---------------------------------------------------------------


def test_starttls_off_is_502_and_unavailable_is_454() -> None:
    assert say(new_session(), "STARTTLS").code == Code.NOT_IMPLEMENTED
    broken = new_session(tls_unavailable="cannot make a certificate")
    assert "STARTTLS" not in ehlo_keywords(broken)
    answer = say(broken, "STARTTLS")
    assert answer.code == Code.TLS_UNAVAILABLE and "cannot make a certificate" in answer.text


def test_starttls_discards_pipelined_plaintext_and_starts_over() -> None:
    session = new_session(starttls=True, auth="accept-any")
    assert "STARTTLS" in ehlo_keywords(session)
    # RFC 3207 section 4.2 (and CVE-2011-0411): commands sent with STARTTLS are never executed.
    outputs = session.feed(b"STARTTLS\r\nMAIL FROM:<injected@example.test>\r\nRCPT TO:<x@example.test>\r\n")
    assert [type(o) for o in outputs] == [Reply, type(START_TLS)]
    assert outputs[0].code == Code.READY  # type: ignore[union-attr]
    session.tls_started()
    assert session.state is State.CONNECTED and session.envelope.mail_from == ""
    assert say(session, "MAIL FROM:<a@example.test>").code == Code.BAD_SEQUENCE  # EHLO again first
    keywords = ehlo_keywords(session)
    assert "STARTTLS" not in keywords and "AUTH" in keywords
    assert say(session, "STARTTLS").code == Code.BAD_SEQUENCE  # already on


def test_starttls_rules() -> None:
    session = new_session(starttls=True)
    say(session, "EHLO c.test")
    assert say(session, "STARTTLS now").code == Code.PARAMETER_SYNTAX
    say(session, "MAIL FROM:<a@example.test>")
    assert say(session, "STARTTLS").code == Code.BAD_SEQUENCE  # inside a transaction


# -- over real sockets ----------------------------------------------------------------------


def client_context(server: SinkServer) -> ssl.SSLContext:
    """What an application that verifies certificates uses: the server's generated CA."""
    assert server.tls_ca is not None
    return ssl.create_default_context(cafile=server.tls_ca)


def stored(server: SinkServer) -> list[bytes]:
    return [path.read_bytes() for path in sorted(Path(server.store.path).glob("*.eml"))]


def test_the_server_offers_cram_md5_with_a_fresh_challenge_each_time(start_server: Servers) -> None:
    """The running server injects its challenge source into every session (sasl.py is pure)."""
    server = start_server(auth={"mode": "users", "users": dict(USERS)}, tls={"mode": "off"})
    challenges = []
    for password, code in (("guess", 535), ("s3cret", 235)):
        with connect(server.smtp_port) as wire:
            assert "AUTH PLAIN LOGIN CRAM-MD5" in wire.cmd("EHLO c.test")[1]
            answer, (text,) = wire.cmd("AUTH CRAM-MD5")
            assert answer == 334
            challenges.append(base64.b64decode(text))
            digest = hmac.new(password.encode(), challenges[-1], hashlib.md5).hexdigest()
            assert wire.cmd(b64(f"ann@example.test {digest}"))[0] == code
    assert challenges[0] != challenges[1]
    assert all(c.startswith(b"<") and c.endswith(b"@smtp-sink.localhost>") for c in challenges)


def test_auth_alone_turns_tls_on_with_a_generated_certificate(start_server: Servers) -> None:
    server = start_server(auth={"mode": "accept-any"})
    tls_folder = Path(server.store.path) / "tls"
    assert server.tls_port > 0 and server.tls_cert == str(tls_folder / "cert.pem")
    assert (tls_folder / "key.pem").stat().st_mode & 0o077 == 0  # the key is private
    plain = start_server()  # no AUTH, no certificate: TLS stays off (no surprise upgrades)
    assert plain.tls_port == 0 and plain.tls_cert is None


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_starttls_then_auth_with_smtplib_is_recorded_in_received(start_server: Servers, loop: str) -> None:
    server = start_server(auth={"mode": "users", "users": dict(USERS), "require_tls": True}, loop=loop)
    with smtplib.SMTP("localhost", server.smtp_port) as smtp:
        smtp.ehlo()
        assert smtp.has_extn("starttls") and not smtp.has_extn("auth")
        smtp.starttls(context=client_context(server))  # verifies the certificate for "localhost"
        smtp.ehlo()
        assert smtp.has_extn("auth")
        with pytest.raises(smtplib.SMTPAuthenticationError) as refused:
            smtp.login("ann@example.test", "wrong")
        assert refused.value.smtp_code == 535
        smtp.login("ann@example.test", "s3cret")
        smtp.sendmail("ann@example.test", ["bob@example.test"], b"Subject: tls\r\n\r\nsecret\r\n")
    (raw,) = stored(server)
    message = message_from_bytes(raw)
    assert "with ESMTPSA id" in message["Received"]
    assert message["X-Sink-Auth"] == "ann@example.test"
    assert raw.endswith(b"Subject: tls\r\n\r\nsecret\r\n")


def test_starttls_without_auth_says_esmtps(start_server: Servers) -> None:
    server = start_server(tls={"mode": "on"})
    with smtplib.SMTP("127.0.0.1", server.smtp_port) as smtp:
        smtp.starttls(context=client_context(server))  # the certificate also names 127.0.0.1
        smtp.sendmail("a@example.test", ["b@example.test"], b"Subject: s\r\n\r\nx\r\n")
    (raw,) = stored(server)
    assert "with ESMTPS id" in message_from_bytes(raw)["Received"]
    assert message_from_bytes(raw)["X-Sink-Auth"] is None


def test_implicit_tls_port(start_server: Servers) -> None:
    server = start_server(auth={"mode": "accept-any"})
    with smtplib.SMTP_SSL("localhost", server.tls_port, context=client_context(server)) as smtp:
        smtp.ehlo()
        assert smtp.has_extn("auth") and not smtp.has_extn("starttls")  # already encrypted
        smtp.login("app", "pw")
        smtp.sendmail("a@example.test", ["b@example.test"], b"Subject: implicit\r\n\r\nx\r\n")
    (raw,) = stored(server)
    assert "with ESMTPSA id" in message_from_bytes(raw)["Received"]


def test_bundled_client_starttls_and_auth(start_server: Servers) -> None:
    server = start_server(auth={"mode": "users", "users": dict(USERS)})
    run = subprocess.run(
        [sys.executable, "-m", "smtp_sink.clients.smtp_client", "--server", f"localhost:{server.smtp_port}",
         "--starttls", "--cafile", str(server.tls_ca), "--user", "ann@example.test", "--password", "s3cret",
         "--from", "ann@example.test", "--to", "bob@example.test", "--subject", "from smtp-send", "-v"],
        capture_output=True, text=True, timeout=30,
    )
    assert run.returncode == 0, run.stderr
    assert "235" in run.stdout and "s3cret" not in run.stdout  # the transcript masks the credentials
    (raw,) = stored(server)
    assert message_from_bytes(raw)["Subject"] == "from smtp-send"
    assert message_from_bytes(raw)["X-Sink-Auth"] == "ann@example.test"


def test_bundled_client_implicit_tls_with_wrong_password_exits_nonzero(start_server: Servers) -> None:
    server = start_server(auth={"mode": "users", "users": dict(USERS)})
    run = subprocess.run(
        [sys.executable, "-m", "smtp_sink.clients.smtp_client", "--server", f"localhost:{server.tls_port}",
         "--tls", "--cafile", str(server.tls_ca), "--user", "ann@example.test", "--password", "nope",
         "--to", "bob@example.test"],
        capture_output=True, text=True, timeout=30,
    )
    assert run.returncode != 0 and "535" in run.stdout + run.stderr
    assert "Traceback" not in run.stderr
    assert stored(server) == []


def test_certificate_is_generated_once_and_reused_on_restart(start_server: Servers) -> None:
    first = start_server(auth={"mode": "accept-any"})
    cert = Path(first.tls_cert or "")
    before = (cert.read_bytes(), cert.stat().st_mtime_ns)
    ca = Path(first.tls_ca or "").read_bytes()
    start_server.stop(first)
    second = start_server(auth={"mode": "accept-any"})  # the same store
    assert (Path(second.tls_cert or "").read_bytes(), Path(second.tls_cert or "").stat().st_mtime_ns) == before
    assert Path(second.tls_ca or "").read_bytes() == ca
    with smtplib.SMTP_SSL("localhost", second.tls_port, context=client_context(second)) as smtp:
        assert smtp.noop()[0] == 250  # a client that trusted the first CA still trusts the server


def test_a_configured_certificate_is_used(tmp_path: Path, start_server: Servers) -> None:
    generator = start_server(tmp_path / "gen", tls={"mode": "on"})
    cert, key, ca = generator.tls_cert, str(Path(generator.store.path) / "tls" / "key.pem"), generator.tls_ca
    start_server.stop(generator)
    server = start_server(tmp_path / "mail", tls={"cert": cert, "key": key})  # mode auto: on, a cert is given
    assert server.tls_cert == cert and server.tls_ca is None
    assert not (tmp_path / "mail" / "tls").exists()  # nothing generated
    with smtplib.SMTP_SSL("localhost", server.tls_port, context=ssl.create_default_context(cafile=ca)) as smtp:
        assert smtp.noop()[0] == 250


def test_a_bad_configured_certificate_stops_serve_with_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "cert.pem"
    bad.write_text("not a certificate\n")
    run = run_cli("serve", "--port", "0", "--no-http", "--tls-cert", str(bad), "--tls-key", str(bad),
                  "--tls-port", "0", store=tmp_path / "mail")
    assert run.returncode == 1
    assert "TLS:" in run.stderr and str(bad) in run.stderr and "Traceback" not in run.stderr


def test_certificate_that_cannot_be_made_leaves_starttls_answering_454(tmp_path: Path, start_server: Servers) -> None:
    store = tmp_path / "mail"
    store.mkdir()
    (store / "tls").write_text("a file where the certificate folder should be\n")
    server = start_server(store, auth={"mode": "accept-any"})
    assert server.tls_port == 0
    with connect(server.smtp_port) as wire:
        assert "STARTTLS" not in wire.cmd("EHLO c.test")[1]
        code, lines = wire.cmd("STARTTLS")
        assert code == Code.TLS_UNAVAILABLE and "certificate" in lines[0]
        assert wire.cmd("NOOP")[0] == 250


def test_pipelined_commands_after_starttls_are_discarded_on_the_wire(start_server: Servers) -> None:
    server = start_server(tls={"mode": "on"})
    with connect(server.smtp_port) as wire:
        wire.cmd("EHLO c.test")
        wire.send("STARTTLS\r\nMAIL FROM:<injected@example.test>\r\n")
        assert wire.code() == Code.READY
        tls = client_context(server).wrap_socket(wire.sock, server_hostname="localhost")
        tls.sendall(b"EHLO c.test\r\n")
        reply = b""
        while not reply.endswith(b"HELP\r\n"):
            reply += tls.recv(4096)
        assert reply.startswith(b"250-") and b"503" not in reply  # the MAIL was never executed
        tls.sendall(b"MAIL FROM:<a@example.test>\r\n")
        assert tls.recv(4096).startswith(b"250 ")  # no transaction was open from the injected MAIL
        tls.close()


def test_fault_rules_at_starttls_and_auth(start_server: Servers) -> None:
    server = start_server(auth={"mode": "accept-any"})
    server.rules.add(Rule(stage="starttls", code=454, text="TLS not available right now"))
    server.rules.add(Rule(stage="auth", code=535, text="try again", schedule="first", n=1))
    with smtplib.SMTP("localhost", server.smtp_port) as smtp:
        smtp.ehlo()
        assert smtp.docmd("STARTTLS") == (454, b"TLS not available right now")
        assert smtp.docmd("AUTH", "PLAIN " + b64("\0u\0p")) == (535, b"try again")
        smtp.login("u", "p")  # the rule fired once


# -- TLS garbage (issue 9): the server shrugs and keeps serving ----------------------------------


GARBAGE = [
    b"\x16\x03\x01\x00\x05hello",  # a TLS record header with a truncated ClientHello
    b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",  # plaintext on the TLS port
    bytes(range(256)) * 8,
    b"\x16\x03\x03" + b"\xff" * 5000,
]


@pytest.mark.parametrize("garbage", GARBAGE, ids=["truncated-hello", "http", "all-bytes", "huge-record"])
def test_garbage_on_the_implicit_tls_port(start_server: Servers, garbage: bytes) -> None:
    server = start_server(auth={"mode": "accept-any"}, idle_timeout=2.0)
    with Wire(server.tls_port) as wire:
        wire.send(garbage)
        wire.sock.shutdown(socket.SHUT_WR)
        assert wire.closed(10)  # the server closes: a TLS alert at most, never a 220
        assert b"220" not in wire.buf
    assert_still_serving(server)


@pytest.mark.parametrize("garbage", GARBAGE, ids=["truncated-hello", "http", "all-bytes", "huge-record"])
def test_garbage_after_starttls(start_server: Servers, garbage: bytes) -> None:
    server = start_server(tls={"mode": "on"}, idle_timeout=2.0)
    with connect(server.smtp_port) as wire:
        wire.cmd("EHLO c.test")
        assert wire.cmd("STARTTLS")[0] == Code.READY
        wire.send(garbage)
        wire.sock.shutdown(socket.SHUT_WR)
        assert wire.closed(10)
    assert_still_serving(server)


def test_a_silent_client_on_the_tls_port_is_dropped_after_the_handshake_timeout(start_server: Servers) -> None:
    server = start_server(auth={"mode": "accept-any"}, idle_timeout=0.5)
    with Wire(server.tls_port) as wire:
        started = time.monotonic()
        assert wire.closed(5) and wire.buf == b""
        assert time.monotonic() - started < 5
    assert_still_serving(server)


def assert_still_serving(server: SinkServer) -> None:
    """Both ports still take mail, and the message is stored."""
    with smtplib.SMTP_SSL("localhost", server.tls_port, context=client_context(server)) as smtp:
        smtp.sendmail("a@example.test", ["b@example.test"], b"Subject: after\r\n\r\nstill here\r\n")
    with smtplib.SMTP("localhost", server.smtp_port) as smtp:
        smtp.starttls(context=client_context(server))
        smtp.sendmail("a@example.test", ["b@example.test"], b"Subject: after\r\n\r\nstill here\r\n")
    assert len(stored(server)) == 2
