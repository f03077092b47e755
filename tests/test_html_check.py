"""``GET /api/v1/message/{id}/html-check`` over real sockets: Mailpit's result shape and algorithm
(spec 8.1) on caniemail.com's vendored data, its errors, and hostile HTML that neither takes
unbounded time nor holds up a second client."""

from __future__ import annotations

import json
import math
import threading
import time
from typing import Any

from support.checks import deliver, html_message
from support.http import get_json, request
from support.wire import connect

from smtp_sink.checks import caniemail
from smtp_sink.checks.dom import MAX_ELEMENTS
from smtp_sink.checks.html_check import MAX_HTML
from smtp_sink.checks.tables import HTML_TESTS, IMAGE_TESTS, INLINE_CSS_TESTS, STYLE_BLOCK_TESTS, UNIT_TESTS
from smtp_sink.server import SinkServer

WARNING_KEYS = ["Slug", "Title", "Description", "URL", "Category", "Tags", "Keywords", "Results", "NotesByNumber",
                "Score"]
RESULT_KEYS = {"Name", "Platform", "Family", "Version", "Support", "NoteNumber"}
# Written so each count below is known: 3 elements get border-radius from the <style> rule (two by
# class, one by id through a descendant selector), one gets display:flex inline, one image is .webp.
HTML = """<!DOCTYPE html><html><head><meta charset="utf-8"><title>Offer</title>
<style>.round { border-radius: 4px } #box p.inner { border-radius: 2px } a:hover { color: red }
@media (max-width: 600px) { .round { display: none } }</style></head>
<body><div class="round">one</div><p class="round">two</p>
<div id="box"><p class="inner">three</p></div>
<div style="display: flex; width: 2rem">flex</div>
<img src="https://example.test/photo.webp"><script>alert(1)</script></body></html>"""


def check(server: SinkServer, message_id: str) -> Any:
    return get_json(server, f"/api/v1/message/{message_id}/html-check")


def found(result: Any) -> dict[str, int]:
    return {w["Slug"]: w["Score"]["Found"] for w in result["Warnings"]}


def test_the_result_has_mailpits_shape_and_counts(web_server: SinkServer) -> None:
    """Every field of Mailpit's HTMLCheckResponse; features found as its algorithm finds them."""
    result = check(web_server, deliver(web_server, html_message(HTML)))
    assert list(result) == ["Platforms", "Total", "Warnings"]
    assert list(result["Total"]) == ["Tests", "Nodes", "Supported", "Partial", "Unsupported"]
    counts = found(result)
    assert counts["css-border-radius"] == 3  # merged from <style> (premailer's step)
    assert counts["css-display-flex"] == 1 and counts["css-display"] == 1 and counts["css-unit-rem"] == 1
    assert counts["css-pseudo-class-hover"] == 1 and counts["css-at-media"] == 1  # the style sheet's text
    assert counts["image-webp"] == 1 and counts["html-style"] == 1 and counts["html-body"] == 1
    assert counts["html-script"] == 1
    assert "css-display-none" not in counts  # inside @media: not inlined
    # Mailpit's count: every test once, a found element test twice, the <script> test once
    html_found = sum(slug in counts for slug in HTML_TESTS if slug != "html-body")  # html-body: counted once
    assert result["Total"]["Tests"] == 186 + 1 + html_found
    assert len(HTML_TESTS) + len(IMAGE_TESTS) + len(INLINE_CSS_TESTS) + 6 + len(UNIT_TESTS) + len(
        STYLE_BLOCK_TESTS) == 186
    # </body> present: every element but html, head and meta
    assert result["Total"]["Nodes"] == 10  # title style body div p div p div img script


def test_warnings_scores_and_totals_follow_mailpits_arithmetic(web_server: SinkServer) -> None:
    result = check(web_server, deliver(web_server, html_message(HTML)))
    nodes = result["Total"]["Nodes"]
    for warning in result["Warnings"]:
        assert list(warning) == WARNING_KEYS and warning["Keywords"] == ""
        score = warning["Score"]
        if warning["Slug"] == "html-script":  # Mailpit's own warning, not caniemail's
            assert warning["URL"] == "" and score["Unsupported"] == 100 and warning["Results"] == []
            continue
        results = warning["Results"]
        assert results and all(set(r) == RESULT_KEYS for r in results)
        assert warning["URL"] == f"https://www.caniemail.com/features/{warning['Slug']}/"
        for kind, key in (("yes", "Supported"), ("no", "Unsupported"), ("partial", "Partial")):
            share = sum(r["Support"] == kind for r in results) / len(results) * 100
            assert math.isclose(score[key], share), (warning["Slug"], key)
        for r in results:
            assert r["NoteNumber"] == "" or (r["Support"] == "partial" and r["NoteNumber"].isdigit())
    flex = next(w for w in result["Warnings"] if w["Slug"] == "css-display-flex")
    names = caniemail.data()["nicenames"]
    for r in flex["Results"]:
        assert r["Name"] == f"{names['family'][r['Family']]} {names['platform'][r['Platform']]} ({r['Version']})"
    assert {"gmail", "outlook", "apple-mail"} <= {r["Family"] for r in flex["Results"]}

    def weighted(w: Any, key: str) -> float:
        return float(w["Score"][key] * w["Score"]["Found"] / nodes)

    total = result["Total"]
    assert math.isclose(total["Partial"], max(weighted(w, "Partial") for w in result["Warnings"]))
    assert math.isclose(total["Unsupported"], max(weighted(w, "Unsupported") for w in result["Warnings"]))
    assert math.isclose(total["Supported"], 100 - total["Partial"] - total["Unsupported"])
    order = [weighted(w, "Partial") + weighted(w, "Unsupported") for w in result["Warnings"]]
    assert order == sorted(order, reverse=True)
    platforms = result["Platforms"]
    assert platforms == caniemail.platforms() and platforms["desktop-webmail"] == sorted(platforms["desktop-webmail"])
    assert "Gmail" in platforms["android"]


def test_descriptions_are_html_from_caniemails_markdown(web_server: SinkServer) -> None:
    result = check(web_server, deliver(web_server, html_message(HTML)))
    style = next(w for w in result["Warnings"] if w["Slug"] == "html-style")
    assert "<code>&lt;style&gt;</code>" in style["Description"] or "<code>" in json.dumps(style["NotesByNumber"])
    assert caniemail.markdown("See [docs](https://x.test/a) and `<p>` or *this*") == (
        'See <a href="https://x.test/a" target="_blank">docs</a> and <code>&lt;p&gt;</code> or <em>this</em>')


def test_latest_and_the_errors_mailpit_gives(web_server: SinkServer) -> None:
    """``latest`` is the newest message; no HTML part: 400; no such message: 404 (spec 8.1)."""
    assert request(web_server, "/api/v1/message/latest/html-check")[0] == 404  # empty store
    html_id = deliver(web_server, html_message(HTML))
    assert check(web_server, "latest") == check(web_server, html_id)
    deliver(web_server, html_message(None))
    status, _, body = request(web_server, "/api/v1/message/latest/html-check")
    assert status == 400 and json.loads(body) == {"Error": "message does not contain HTML"}
    assert request(web_server, "/api/v1/message/01ARZ3NDEKTSV4RRFFQ69G5FAV/html-check")[0] == 404
    assert request(web_server, "/api/v1/message/not-an-id/html-check")[0] == 404
    listed = get_json(web_server, "/api/v1/messages")["messages"]
    assert not any(m["Read"] for m in listed)  # the check does not mark anything read


def test_a_feature_missing_from_the_data_and_a_document_without_elements(web_server: SinkServer) -> None:
    """Decision 15: ``image-ppm`` is not in caniemail's data (Mailpit answers 400); HTML whose only
    element is in the head has no node to divide by (Mailpit divides by zero)."""
    assert "image-ppm" not in caniemail.features()
    result = check(web_server, deliver(web_server, html_message('<p><img src="scan.ppm"> and <img src="a.gif"></p>')))
    assert found(result) == {"image-gif": 1}
    empty = check(web_server, deliver(web_server, html_message("<style>p { color: rgb(0,0,0) }</style>")))
    assert empty["Total"]["Nodes"] == 0 and found(empty) == {"html-style": 1}
    assert all(math.isfinite(empty["Total"][key]) for key in ("Supported", "Partial", "Unsupported"))
    assert math.isclose(empty["Total"]["Supported"] + empty["Total"]["Partial"] + empty["Total"]["Unsupported"], 100)


def test_every_feature_the_check_looks_for_is_in_the_vendored_data() -> None:
    """Refreshing the data (scripts/refresh-caniemail.sh) must not lose a feature silently; the two
    Mailpit looks for that caniemail does not have are known."""
    slugs = set(HTML_TESTS) | set(IMAGE_TESTS) | set(INLINE_CSS_TESTS) | set(STYLE_BLOCK_TESTS) | set(UNIT_TESTS)
    assert slugs - set(caniemail.features()) == {"image-ppm", "css-margin-inline"}
    assert caniemail.DATA.with_name("LICENSE").read_text().count("CC BY 4.0") >= 1


def hostile_html() -> str:
    """Close to the limits: many elements with inline styles, a style sheet whose rules match
    everything through long descendant chains, unclosed constructs."""
    sheet = "<style>" + "div div div div div div p { border-radius: 1px }\n" * 40_000 + "</style>"
    body = '<div style="display:flex;width:1rem;margin:0">' * 200 + '<p style="color:red">x' * 49_000
    return sheet + body + '<a title="' + "<b " * 100_000


def test_hostile_html_is_bounded_and_holds_up_no_one(web_server: SinkServer) -> None:
    """A check near the size limits takes a bounded time in a reader thread: meanwhile another API
    request and an SMTP command are answered promptly. Past the limits: a clear 400."""
    hostile = deliver(web_server, html_message(hostile_html()))
    small = deliver(web_server, html_message("<p>hi</p>"))
    done: dict[str, float] = {}

    def slow_check() -> None:
        status, _, body = request(web_server, f"/api/v1/message/{hostile}/html-check", timeout=120)
        done["slow"] = time.monotonic()
        assert status == 200, body[:300]

    with connect(web_server.smtp_port) as wire:
        assert wire.cmd("EHLO client.test")[0] == 250
        thread = threading.Thread(target=slow_check)
        started = time.monotonic()
        thread.start()
        time.sleep(0.3)
        asked = time.monotonic()
        assert check(web_server, small)["Total"]["Nodes"] == 1
        done["api"] = time.monotonic()
        assert wire.cmd("NOOP")[0] == 250
        done["smtp"] = time.monotonic()
        thread.join(120)
    assert not thread.is_alive() and "slow" in done
    took = done["slow"] - started
    assert took > 0.5, f"precondition: the check took only {took:.2f} s (the other request is at 0.3 s)"
    assert took < 30, f"the hostile check took {took:.1f} s"
    assert done["api"] < done["slow"] and done["smtp"] < done["slow"], done
    # The other check shares the interpreter with the hostile one (about half of it each), so it may
    # take twice its own time; waiting for the hostile check would take all of what was left of it.
    left = done["slow"] - asked
    assert done["api"] - asked < 0.6 * left, f"the other check waited {done['api'] - asked:.2f} s of {left:.2f}"


def test_html_past_the_limits_is_a_clear_400(web_server: SinkServer) -> None:
    for html, words in (("<p>" * (MAX_ELEMENTS + 1), f"more than {MAX_ELEMENTS} elements"),
                        ("x" * (MAX_HTML + 1), f"at most {MAX_HTML}")):
        message_id = deliver(web_server, html_message(html))
        status, _, body = request(web_server, f"/api/v1/message/{message_id}/html-check")
        assert status == 400 and words in json.loads(body)["Error"], body[:300]
