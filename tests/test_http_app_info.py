"""The app's own routes over real sockets: ``/livez``, ``/readyz``, ``GET /api/v1/webui``,
``OPTIONS /api/v1/...`` and the OpenAPI document ``/api/v1/swagger.json``, checked against the
routes the app really registers."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

from support.config import make_config
from support.http import get_json, request
from support.servers import Servers

from smtp_sink import __version__
from smtp_sink.config import ChecksConfig, RelayConfig
from smtp_sink.server import SinkServer
from smtp_sink.sink import Sink
from smtp_sink.web.app import create_app

MAILPIT_PATHS = {  # Mailpit's routes (spec §1) as the document names them, and the events socket
    "/api/v1/messages", "/api/v1/search", "/api/v1/send",
    "/api/v1/message/{id}", "/api/v1/message/{id}/headers", "/api/v1/message/{id}/raw",
    "/api/v1/message/{id}/part/{part}", "/api/v1/message/{id}/part/{part}/thumb", "/api/v1/message/{id}/release",
    "/api/v1/info", "/api/v1/webui", "/api/v1/chaos", "/api/events", "/livez", "/readyz", "/view/{id}.html",
    "/view/{id}.txt",
}


def test_probes_answer_without_auth_and_empty(start_server: Servers) -> None:
    server = start_server(http={"auth": "ann:secret-pass"})
    assert request(server, "/api/v1/info")[0] == 401
    for probe in ("/livez", "/readyz"):
        status, _, body = request(server, probe)
        assert (status, body) == (200, b"")


def test_readyz_is_503_when_the_index_cannot_answer(web_server: SinkServer) -> None:
    web_server.store.index.close()
    status, _, body = request(web_server, "/readyz")
    assert status == 503 and json.loads(body)["Error"].startswith("not ready: ")
    assert request(web_server, "/livez")[0] == 200


def test_webui_without_relay_has_every_key_at_zero(web_server: SinkServer) -> None:
    assert get_json(web_server, "/api/v1/webui") == {
        "Label": "",
        "MessageRelay": {"Enabled": False, "SMTPServer": "", "ReturnPath": "", "AllowedRecipients": "",
                         "BlockedRecipients": "", "OverrideFrom": "", "PreserveMessageIDs": False,
                         "RecipientAllowlist": ""},
        "SpamAssassin": False, "ChaosEnabled": True, "DuplicatesIgnored": False, "HideDeleteAllButton": False}


def test_webui_shows_the_configured_relay_and_spamd(start_server: Servers, tmp_path: Path) -> None:
    config = make_config(tmp_path / "mail", http=True)
    relay = RelayConfig(host="127.0.0.1", port=2525, return_path="bounce@example.test",
                        allowed_recipients=r".*@example\.test$", blocked_recipients="^no@",
                        override_from="Ops <ops@example.test>")
    server = start_server(config=dataclasses.replace(config, relay=relay,
                                                     checks=ChecksConfig(spamassassin="127.0.0.1:783")))
    webui = get_json(server, "/api/v1/webui")
    assert webui["MessageRelay"] == {
        "Enabled": True, "SMTPServer": "127.0.0.1:2525", "ReturnPath": "bounce@example.test",
        "AllowedRecipients": r".*@example\.test$", "BlockedRecipients": "^no@", "OverrideFrom": "ops@example.test",
        "PreserveMessageIDs": True, "RecipientAllowlist": r".*@example\.test$"}
    assert webui["SpamAssassin"] is True


def test_options_under_the_api_is_an_empty_200_without_cors(web_server: SinkServer) -> None:
    preflight = {"Origin": "https://elsewhere.test", "Access-Control-Request-Method": "DELETE"}
    status, headers, body = request(web_server, "/api/v1/messages", "OPTIONS", headers=preflight)
    assert (status, body) == (200, b"") and headers["Content-Type"].startswith("text/plain")
    assert not [name for name in headers if name.lower().startswith("access-control-")]


def test_swagger_documents_exactly_the_routes_the_app_serves(web_server: SinkServer, tmp_path: Path) -> None:
    status, headers, body = request(web_server, "/api/v1/swagger.json")
    assert status == 200 and headers["Content-Type"].startswith("application/json")
    document = json.loads(body)
    assert document["swagger"] == "2.0" and document["info"]["version"] == __version__
    config = make_config(tmp_path / "other", http=True)
    registered: set[tuple[str, str]] = set()
    for route in create_app(Sink(config), config.http).router.routes():
        info = route.resource.get_info() if route.resource else {}
        path = str(info.get("formatter") or info.get("path") or "")
        if route.method not in ("HEAD", "OPTIONS") and path.startswith(("/api/", "/view/", "/livez", "/readyz")):
            registered.add((route.method.lower(), path))
    documented = {(method, path) for path, operations in document["paths"].items() for method in operations}
    assert documented == registered
    assert set(document["paths"]) >= MAILPIT_PATHS
    for path, operations in document["paths"].items():
        for operation in operations.values():
            assert operation["summary"] and "``" not in operation["summary"], (path, operation)
            names = [parameter["name"] for parameter in operation["parameters"] if parameter["in"] == "path"]
            assert names == re.findall(r"\{(\w+)", path)
