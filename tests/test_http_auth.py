"""HTTP basic auth for the web page and API, and the rule that binding beyond loopback needs it."""

from __future__ import annotations

import base64
import dataclasses
import http.client
import logging
import smtplib
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import make_config

from smtp_sink.config import ConfigError, load
from smtp_sink.server import ServerThread, SinkServer

CREDENTIALS = "admin:s3cret pass"


def start(tmp_path: Path, smtp_host: str = "127.0.0.1", **http: object) -> ServerThread:
    config = make_config(tmp_path / "mail", host=smtp_host)
    return ServerThread(dataclasses.replace(config, http=dataclasses.replace(config.http, enabled=True, **http)))


@pytest.fixture
def guarded(tmp_path: Path) -> Iterator[SinkServer]:
    thread = start(tmp_path, port=0, auth=CREDENTIALS)
    yield thread.start()
    thread.stop()


def get(server: SinkServer, path: str, credentials: str | None = None, method: str = "GET") -> tuple[int, dict, bytes]:
    request = urllib.request.Request(f"http://127.0.0.1:{server.http_port}{path}", method=method)
    if credentials is not None:
        request.add_header("Authorization", "Basic " + base64.b64encode(credentials.encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


@pytest.mark.parametrize("path", ["/", "/api/v1/messages", "/api/v1/info", "/static/app.js", "/api/v1/rules"])
def test_every_page_and_api_call_needs_the_password(guarded: SinkServer, path: str) -> None:
    status, headers, _ = get(guarded, path)
    assert status == 401 and headers["WWW-Authenticate"].startswith('Basic realm="smtp-sink"')
    assert get(guarded, path, "admin:wrong")[0] == 401
    assert get(guarded, path, "admin")[0] == 401
    assert get(guarded, path, CREDENTIALS)[0] == 200


def test_a_delete_without_the_password_removes_nothing(guarded: SinkServer) -> None:
    with smtplib.SMTP("127.0.0.1", guarded.smtp_port) as smtp:
        smtp.sendmail("a@example.test", ["b@example.test"], b"Subject: keep me\r\n\r\nx\r\n")
    assert get(guarded, "/api/v1/messages", method="DELETE")[0] == 401
    status, _, body = get(guarded, "/api/v1/messages", CREDENTIALS)
    assert status == 200 and b"keep me" in body


def test_the_event_stream_needs_the_password_too(guarded: SinkServer) -> None:
    assert get(guarded, "/api/events")[0] == 401


def test_beyond_loopback_without_auth_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"\[http\] host '0.0.0.0' is not a loopback address"):
        load(environ={"SMTP_SINK_HTTP_HOST": "0.0.0.0"})
    with pytest.raises(ConfigError, match=r'\[http\] auth: must be "user:password"'):
        load(environ={"SMTP_SINK_HTTP_AUTH": "only-a-password"})
    assert load(environ={"SMTP_SINK_HTTP_HOST": "::1"}).http.host == "::1"  # loopback needs nothing
    assert load(environ={"SMTP_SINK_HTTP_HOST": "0.0.0.0", "SMTP_SINK_HTTP_AUTH": "a:b"}).http.auth == "a:b"


def test_serve_refuses_to_expose_mail_without_a_password(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "smtp_sink", "serve", "--port", "0", "--store", str(tmp_path / "mail"),
         "--http-host", "0.0.0.0", "--http-port", "0"],
        capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL,
    )
    assert run.returncode == 2
    assert "[http] host '0.0.0.0' is not a loopback address" in run.stderr and "--http-auth" in run.stderr
    assert "Traceback" not in run.stderr


def test_beyond_loopback_with_a_password_serves_and_warns(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="smtp_sink")
    thread = start(tmp_path, smtp_host="0.0.0.0", host="0.0.0.0", port=0, auth=CREDENTIALS)
    server = thread.start()
    try:
        assert get(server, "/api/v1/info")[0] == 401
        assert get(server, "/api/v1/info", CREDENTIALS)[0] == 200
    finally:
        thread.stop()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("beyond this machine, over plain HTTP" in text for text in warnings), warnings
    assert any("SMTP listens on 0.0.0.0" in text for text in warnings), warnings


@pytest.mark.parametrize(("host", "status"), [
    ("evil.example:8025", 403), ("evil.example", 403), ("10.0.0.1", 403),
    ("localhost:8025", 200), ("smtp-sink.localhost", 200), ("127.0.0.1", 200), ("[::1]:8025", 200),
])
def test_dns_rebinding_is_refused_by_the_host_header(web_server: SinkServer, host: str, status: int) -> None:
    """A site whose name is made to resolve to 127.0.0.1 sends its own name as Host: refused."""
    connection = http.client.HTTPConnection("127.0.0.1", web_server.http_port, timeout=10)
    connection.putrequest("GET", "/api/v1/messages", skip_host=True)
    connection.putheader("Host", host)
    connection.endheaders()
    response = connection.getresponse()
    assert response.status == status, response.read()
    connection.close()
