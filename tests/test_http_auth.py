"""HTTP basic auth for the web page and API, and the rule that binding beyond loopback needs it."""

from __future__ import annotations

import base64
import http.client
import logging
import smtplib
from pathlib import Path

import pytest
from support.http import Reply, request
from support.processes import run_cli
from support.servers import Servers

from smtp_sink.config import ConfigError, load
from smtp_sink.server import SinkServer

CREDENTIALS = "admin:s3cret pass"


@pytest.fixture
def guarded(start_server: Servers) -> SinkServer:
    return start_server(http={"auth": CREDENTIALS})


def get(server: SinkServer, path: str, credentials: str | None = None, method: str = "GET") -> Reply:
    """A request with (or without) HTTP basic auth: ``(status, headers, body)``."""
    basic = {} if credentials is None else {"Authorization": "Basic " + base64.b64encode(credentials.encode()).decode()}
    return request(server, path, method, headers=basic)


@pytest.mark.parametrize("path", ["/", "/api/v1/messages", "/api/v1/info", "/static/js/main.js", "/api/v1/rules"])
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
    run = run_cli("serve", "--port", "0", "--http-host", "0.0.0.0", "--http-port", "0", store=tmp_path / "mail")
    assert run.returncode == 2
    assert "[http] host '0.0.0.0' is not a loopback address" in run.stderr and "--http-auth" in run.stderr
    assert "Traceback" not in run.stderr


def test_beyond_loopback_with_a_password_serves_and_warns(start_server: Servers,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="smtp_sink")
    server = start_server(host="0.0.0.0", http={"host": "0.0.0.0", "auth": CREDENTIALS})
    assert get(server, "/api/v1/info")[0] == 401
    assert get(server, "/api/v1/info", CREDENTIALS)[0] == 200
    start_server.stop(server)
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
