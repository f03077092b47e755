"""docs/mailpit.md stays true: its route tables against the routes the app registers, and against
every route Mailpit registers (spec section 1, from Mailpit's ``server/server.go``)."""

from __future__ import annotations

import re

import pytest
from support import ROOT
from support.config import make_config

from smtp_sink.sink import Sink
from smtp_sink.web.app import create_app

PAGE = ROOT / "docs" / "mailpit.md"
# Every route Mailpit v1.30.5 registers (apiRoutes() and Listen() in server/server.go), the
# catch-all UI pages aside; path parameters as {}.
MAILPIT_ROUTES = {
    "GET /api/v1/messages", "PUT /api/v1/messages", "DELETE /api/v1/messages",
    "GET /api/v1/search", "DELETE /api/v1/search", "POST /api/v1/send",
    "GET /api/v1/tags", "PUT /api/v1/tags", "PUT /api/v1/tags/{}", "DELETE /api/v1/tags/{}",
    "GET /api/v1/message/{}/part/{}", "GET /api/v1/message/{}/part/{}/thumb", "GET /api/v1/message/{}/headers",
    "GET /api/v1/message/{}/raw", "POST /api/v1/message/{}/release", "GET /api/v1/message/{}/html-check",
    "GET /api/v1/message/{}/link-check", "GET /api/v1/message/{}/sa-check", "GET /api/v1/message/{}",
    "GET /api/v1/info", "GET /api/v1/webui", "GET /api/v1/swagger.json", "GET /api/v1/chaos", "PUT /api/v1/chaos",
    "OPTIONS /api/v1/", "GET /api/events", "GET /livez", "GET /readyz", "GET /view/latest", "GET /view/{}.html",
    "GET /view/{}.txt", "GET /metrics", "GET /proxy", "GET /",
}
STATUSES = ("same", "differs", "not served")
ROW_RE = re.compile(r"^\| `([A-Z]+ /[^`]*)` \| ([^|]*?) \|")


def normal(route: str) -> str:
    """``METHOD /path`` with every path parameter written ``{}``."""
    return re.sub(r"\{[^}]*\}", "{}", route)


def table(heading: str) -> dict[str, str]:
    """The rows of the first table under ``## heading``: route -> second column."""
    text = PAGE.read_text()
    section = text.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        if not line.startswith("| `"):
            continue
        found = ROW_RE.match(line)
        assert found, f"a row under {heading} that is not `METHOD /path` | ...: {line}"
        route = normal(found.group(1))
        assert route not in rows, f"{route} is listed twice under {heading}"
        rows[route] = found.group(2).strip()
    assert rows, f"no route table under ## {heading}"
    return rows


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    """Every ``METHOD /path`` the app registers (HEAD, which aiohttp adds to each GET, aside)."""
    config = make_config(tmp_path_factory.mktemp("docs") / "mail", http=True)
    app = create_app(Sink(config), config.http)
    return {normal(f"{route.method} {route.resource.canonical}") for route in app.router.routes()
            if route.method != "HEAD" and route.resource is not None}


def test_every_mailpit_route_is_on_the_page_with_a_status():
    mailpit = table("Mailpit's routes")
    assert set(mailpit) == MAILPIT_ROUTES
    for route, status in mailpit.items():
        assert status in STATUSES, f"{route}: status {status!r}, not one of {STATUSES}"


def test_the_page_says_which_mailpit_routes_are_served(served: set[str]):
    mailpit = table("Mailpit's routes")
    said = {route for route, status in mailpit.items() if status != "not served"}
    assert sorted(said - served) == [], "the page says these are served, the app has no such route"
    assert sorted(served & (set(mailpit) - said)) == [], "the page says these are not served, the app serves them"


def test_every_route_the_app_serves_is_on_the_page(served: set[str]):
    own = table("smtp-sink's own routes")
    assert sorted(served - set(table("Mailpit's routes")) - set(own)) == [], "served but not on docs/mailpit.md"
    assert sorted(set(own) - served) == [], "listed as smtp-sink's own, but the app has no such route"


def test_the_app_routes_are_read(served: set[str]):
    """What the comparisons above rest on: the app's routes, read with their methods and paths."""
    assert {"GET /api/v1/messages", "PUT /api/v1/messages", "DELETE /api/v1/messages", "GET /api/v1/message/{}",
            "GET /api/events", "GET /"} <= served
