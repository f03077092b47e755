"""Every program in ``examples/`` run as a user runs it, against a real smtp-sink server.

Each example gets its settings only from the environment, as documented in its header, and
each test reads the ``.eml`` file it left in the store: envelope, headers, body, and the trace
headers that say how it came (``with ESMTPSA`` and ``X-Sink-Auth`` after STARTTLS or implicit
TLS and a login; ``with ESMTP`` in plain mode). Certificates are verified the documented way:
``SSL_CERT_FILE`` (Python, Django), ``NODE_EXTRA_CA_CERTS`` (Node), ``SMTP_CAFILE`` (the curl
and swaks scripts), all pointing at the server's generated ``ca.pem``.

nodemailer is installed with npm once into ``~/.cache/smtp-sink-tests/npm`` (outside the
checkout), never globally; curl and swaks come from apt (``scripts/setup-tests.sh``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from support import ROOT
from support.npm import npm_modules
from support.processes import Processes
from support.servers import Servers

from smtp_sink.pytest_plugin import CapturedMessage
from smtp_sink.server import SinkServer

EXAMPLES = ROOT / "examples"
SENDER = "app@example.test"
RCPT = "bob@example.test"  # not the examples' default, so the recipient argument is tested too
PASSWORD = "hunter2"
# Variables from the calling shell that would change what an example does.
CLEARED = ("SMTP_HOST", "SMTP_PORT", "SMTP_TLS", "SMTP_USER", "SMTP_PASSWORD", "SMTP_CAFILE", "SSL_CERT_FILE",
           "NODE_EXTRA_CA_CERTS", "CURL_CA_BUNDLE", "DJANGO_SETTINGS_MODULE", "NODE_PATH", "PYTHONPATH")


@dataclass(frozen=True)
class Example:
    """One example program: how to run it and what it sends."""

    command: Callable[[], list[str]]
    subject: str
    body: str
    ca_variable: str  # the variable that makes it trust smtp-sink's generated authority


def python(*args: str) -> Callable[[], list[str]]:
    return lambda: [sys.executable, *args]


def tool(name: str, *args: str, needs: str = "") -> Callable[[], list[str]]:
    """``name args...``, after checking that ``name`` (and ``needs``) are installed."""
    def command() -> list[str]:
        for program in filter(None, (name, needs)):
            assert shutil.which(program), f"{program} is not installed: run scripts/setup-tests.sh"
        return [name, *args]

    return command


EXAMPLE_SET = {
    "smtplib": Example(python(str(EXAMPLES / "send_smtplib.py"), RCPT),
                       "Hello from smtplib", "Sent by examples/send_smtplib.py.", "SSL_CERT_FILE"),
    "aiosmtplib": Example(python(str(EXAMPLES / "send_aiosmtplib.py"), RCPT),
                          "Hello from aiosmtplib", "Sent by examples/send_aiosmtplib.py.", "SSL_CERT_FILE"),
    "django": Example(python(str(EXAMPLES / "django_app" / "send.py"), RCPT),
                      "Hello from Django", "Sent by examples/django_app/send.py.", "SSL_CERT_FILE"),
    "django-sendtestemail": Example(python(str(EXAMPLES / "django_app" / "manage.py"), "sendtestemail", RCPT),
                                    "Test email from", "If you're reading this, it was successful.",
                                    "SSL_CERT_FILE"),
    "flask-mail": Example(python(str(EXAMPLES / "flask_app" / "app.py"), RCPT),
                          "Welcome to the example app", "thanks for signing up", "SSL_CERT_FILE"),
    "nodemailer": Example(tool("node", str(EXAMPLES / "nodemailer" / "send.js"), RCPT),
                          "Hello from nodemailer", "Sent by examples/nodemailer/send.js.", "NODE_EXTRA_CA_CERTS"),
    "curl": Example(tool("sh", str(EXAMPLES / "send_curl.sh"), RCPT, needs="curl"),
                    "Hello from curl", "Sent by examples/send_curl.sh.", "SMTP_CAFILE"),
    "swaks": Example(tool("sh", str(EXAMPLES / "send_swaks.sh"), RCPT, needs="swaks"),
                     "Hello from swaks", "Sent by examples/send_swaks.sh.", "SMTP_CAFILE"),
}
# Clients that verify the certificate by default, so fail without the CA variable (swaks and
# Flask-Mail do not verify unless told).
VERIFYING = ("smtplib", "aiosmtplib", "django", "nodemailer", "curl")


@pytest.fixture(scope="session")
def node_path() -> str:
    """A ``node_modules`` folder with the nodemailer version ``examples/nodemailer/package.json`` asks for."""
    spec = json.loads((EXAMPLES / "nodemailer" / "package.json").read_text())["dependencies"]["nodemailer"]
    return str(npm_modules("nodemailer", spec))


def run(example: Example, env: dict[str, str], node_path: str) -> subprocess.CompletedProcess[str]:
    """Run an example with the calling shell's environment, less anything SMTP, plus ``env``."""
    full = {key: value for key, value in os.environ.items() if key not in CLEARED}
    full.update(env, NODE_PATH=node_path)
    return subprocess.run(example.command(), capture_output=True, text=True, timeout=60, env=full,
                          cwd=ROOT, stdin=subprocess.DEVNULL)


def stored(server: SinkServer) -> CapturedMessage:
    """The one message in the store, read from its file."""
    ids = server.store.ids()
    assert len(ids) == 1, f"expected one stored message, found {ids}"
    path = server.store.file(ids[0])
    assert path.parent == server.store.path and path.suffix == ".eml"
    return CapturedMessage.read(ids[0], path, path.read_bytes())


def check(message: CapturedMessage, example: Example) -> None:
    """What every example sends: envelope, headers and body."""
    assert message.mail_from == SENDER and message.rcpt_to == (RCPT,)
    assert message.from_ == SENDER and message.to == [RCPT]
    assert message.subject.startswith(example.subject)
    assert example.body in message.text
    assert message.message["Date"] and message.message["Message-ID"]


@pytest.fixture(params=list(EXAMPLE_SET))
def example(request: pytest.FixtureRequest) -> Example:
    return EXAMPLE_SET[request.param]


@pytest.fixture
def tls_server(start_server: Servers) -> SinkServer:
    """``smtp-sink serve --auth accept-any``: STARTTLS on the SMTP port, implicit TLS on the other."""
    server = start_server(auth={"mode": "accept-any"}, tls={"mode": "on"})
    assert server.tls_port and server.tls_ca
    return server


@pytest.mark.parametrize("tls", ["starttls", "implicit"])
def test_example_sends_over_tls_with_login(example: Example, tls: str, tls_server: SinkServer, node_path: str):
    user = f"{tls}-user@example.test"
    env = {"SMTP_USER": user, "SMTP_PASSWORD": PASSWORD, example.ca_variable: str(tls_server.tls_ca)}
    if tls == "implicit":
        env.update(SMTP_TLS="implicit", SMTP_PORT=str(tls_server.tls_port))
    else:  # the examples' default mode
        env["SMTP_PORT"] = str(tls_server.smtp_port)

    done = run(example, env, node_path)

    assert done.returncode == 0, done.stdout + done.stderr
    message = stored(tls_server)
    check(message, example)
    assert " with ESMTPSA id " in message.message["Received"]  # TLS and AUTH (RFC 3848)
    assert message.auth_user == user


def test_example_sends_plain_without_login(example: Example, server: SinkServer, node_path: str):
    """``smtp-sink serve`` with no options: no TLS, no AUTH."""
    done = run(example, {"SMTP_TLS": "off", "SMTP_USER": "", "SMTP_PORT": str(server.smtp_port)}, node_path)

    assert done.returncode == 0, done.stdout + done.stderr
    message = stored(server)
    check(message, example)
    assert " with ESMTP id " in message.message["Received"]
    assert message.auth_user is None


@pytest.mark.parametrize("name", VERIFYING)
def test_untrusted_certificate_is_refused_with_a_hint(name: str, tls_server: SinkServer, node_path: str):
    """Without the documented CA variable the client refuses the certificate and says what to set."""
    example = EXAMPLE_SET[name]
    done = run(example, {"SMTP_PORT": str(tls_server.smtp_port)}, node_path)

    assert done.returncode == (60 if name == "curl" else 1), done.stdout + done.stderr  # curl's own code
    assert f"trust smtp-sink's certificate with {example.ca_variable}=" in done.stderr
    assert "Traceback" not in done.stderr
    assert tls_server.store.ids() == []


@pytest.mark.parametrize("name", [name for name in EXAMPLE_SET if name != "django-sendtestemail"])
def test_bad_setting_is_a_clear_error(name: str, node_path: str):
    done = run(EXAMPLE_SET[name], {"SMTP_TLS": "sometimes"}, node_path)

    assert done.returncode == 2, done.stdout + done.stderr
    assert "SMTP_TLS must be" in done.stderr and "'sometimes'" in done.stderr
    assert "Traceback" not in done.stderr


def test_flask_app_test_suite_uses_the_fixture():
    """``examples/flask_app/test_app.py``: an app's own tests with the ``smtp_sink`` fixture, no mocks."""
    env = {key: value for key, value in os.environ.items() if key not in CLEARED}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(EXAMPLES / "flask_app" / "test_app.py")],
        capture_output=True, text=True, timeout=120, env=env, cwd=ROOT, stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"^2 passed", done.stdout, re.MULTILINE), done.stdout


@pytest.mark.parametrize("name", ["django", "flask-mail"])
def test_done_when_django_and_flask_settings_work_against_serve_auth_accept_any(
    name: str, tmp_path: Path, node_path: str, start_process: Processes,
) -> None:
    """Issue 7's acceptance: the real ``smtp-sink serve --auth accept-any`` process, and the app's
    unmodified settings (STARTTLS, a user and a password); only host, port and the CA to trust differ."""
    store = tmp_path / "mail"
    process = start_process("--auth", "accept-any", "--tls-port", "0", store=store)
    try:
        ca = store / "tls" / "ca.pem"
        assert f"(trust {ca})" in process.log()  # the server says what to trust
        done = run(EXAMPLE_SET[name], {"SMTP_PORT": str(process.port), "SMTP_USER": "app@example.test",
                                       "SMTP_PASSWORD": "production-password", "SSL_CERT_FILE": str(ca)}, node_path)
        assert done.returncode == 0, done.stdout + done.stderr
    finally:
        assert process.stop() == 0
    (path,) = store.glob("*.eml")
    message = CapturedMessage.read(path.stem, path, path.read_bytes())
    check(message, EXAMPLE_SET[name])
    assert " with ESMTPSA id " in message.message["Received"] and message.auth_user == "app@example.test"
