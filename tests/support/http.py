"""The HTTP API of a running server, over real sockets: one request a connection."""

from __future__ import annotations

import http.client
import json
from typing import Any

from smtp_sink.server import SinkServer

Reply = tuple[int, dict[str, str], bytes]  # status, headers, body


def request(server: SinkServer | int, path: str, method: str = "GET", body: bytes | None = None,
            headers: dict[str, str] | None = None, timeout: float = 60) -> Reply:
    """One HTTP request to ``server`` (or an HTTP port) on its own connection: ``(status, headers, body)``,
    whatever the status."""
    port = server if isinstance(server, int) else server.http_port
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def send_json(server: SinkServer | int, path: str, method: str, value: Any, headers: dict[str, str] | None = None
              ) -> Reply:
    """A request whose body is ``value`` as JSON."""
    return request(server, path, method, json.dumps(value).encode(),
                   {"Content-Type": "application/json", **(headers or {})})


def get_json(server: SinkServer | int, path: str, timeout: float = 60) -> Any:
    """A GET that must answer 200; its JSON (any other status fails the test, showing the answer)."""
    status, _, body = request(server, path, timeout=timeout)
    assert status == 200, (path, status, body[:300])
    return json.loads(body)
