"""``GET /api/v1/message/{id}/html-check``: how well email clients support a message's HTML, by
Mailpit's algorithm (``internal/htmlcheck``) and caniemail.com's data (:mod:`.caniemail`).

Which features are looked for, and how, is Mailpit's (:mod:`.tables`): elements by selector,
``<img src>`` by pattern, inline styles (with the ``<style>`` rules merged in, :mod:`.css`) and the
style sheets by pattern. Differences, on purpose: linked style sheets are not downloaded (the check
never goes on the network), a feature missing from the data (``image-ppm``) is left out instead of
failing the check, and a document without elements does not divide by zero.

Runs in a reader thread; the work is bounded by :data:`MAX_HTML` characters and
:data:`~.dom.MAX_ELEMENTS` elements.
"""

from __future__ import annotations

import re
from typing import Any

from . import caniemail
from .css import merged_styles
from .dom import Budget, Document, compile_selector_list, parse, select
from .tables import HTML_TESTS, IMAGE_TESTS, INLINE_CSS_TESTS, STYLE_ATTRIBUTES, STYLE_BLOCK_TESTS, UNIT_TESTS

MAX_HTML = 5_000_000  # characters of HTML checked; a larger HTML part is refused
_SCRIPT_TYPES = ("application/ld+json", "application/json")  # <script> types that are data, not code
_SELECT_STEPS = 5_000_000


class HTMLTooLarge(ValueError):
    """The HTML is past what the check reads (the text says how much)."""


def _compiled(table: dict[str, str]) -> dict[str, re.Pattern[str]]:
    return {slug: re.compile(pattern, re.ASCII) for slug, pattern in table.items()}


_IMAGES, _INLINE, _BLOCK, _UNITS = map(_compiled, (IMAGE_TESTS, INLINE_CSS_TESTS, STYLE_BLOCK_TESTS, UNIT_TESTS))
_ELEMENT_SELECTORS = {slug: compile_selector_list(text) or [] for slug, text in HTML_TESTS.items()
                      if slug != "html-body"}
# Most inline tests are "(^|\s|;)<property>(\s+)?:": looked up by property name in one pass per style.
_PROPERTY_TEST_RE = re.compile(r"\(\?i\)\(\^\|\\s\|;\)([a-z-]+)\(\\s\+\)\?:")
_PROPERTIES = {m.group(1): slug for slug, text in INLINE_CSS_TESTS.items() if (m := _PROPERTY_TEST_RE.fullmatch(text))}
_OTHER_INLINE = {slug: pattern for slug, pattern in _INLINE.items() if slug not in _PROPERTIES.values()}
_PROPERTY_RE = re.compile(r"(?:^|[\s;])([a-zA-Z-]+)\s*(?=:)", re.ASCII)
_ATTRIBUTE_SELECTORS = {slug: compile_selector_list(text) or [] for slug, text in STYLE_ATTRIBUTES.items()}


def check(html: str) -> dict[str, Any]:
    """Mailpit's ``HTMLCheckResponse`` for an HTML document (:class:`HTMLTooLarge` past the limits)."""
    if len(html) > MAX_HTML:
        raise HTMLTooLarge(f"the HTML is too large to check ({len(html)} characters; at most {MAX_HTML})")
    try:
        document = parse(html)
    except ValueError as exc:  # dom.TooLarge
        raise HTMLTooLarge(f"the HTML is too large to check ({exc})") from None
    warnings: list[dict[str, Any]] = []
    tests = _html_tests(document, warnings) + _css_tests(document, warnings)
    nodes = _nodes(document)
    return {"Platforms": caniemail.platforms(), "Total": _total(warnings, nodes, tests),
            "Warnings": _sorted(warnings, nodes)}


def _nodes(document: Document) -> int:
    """Mailpit's node count: with ``</body>``, every element but html, head and meta (the body
    included); without, the elements inside the body, plus every ``<script>``."""
    implied = document.implied_tbody
    if document.has_body_end:
        return sum(e.tag != "meta" for e in document.elements) + 1 + implied
    return sum(e.in_body or e.tag == "script" for e in document.elements) + implied


def _add(warnings: list[dict[str, Any]], slug: str, found: int) -> None:
    if found:
        warning = caniemail.warning(slug, found)
        if warning is not None:
            warnings.append(warning)


def _html_tests(document: Document, warnings: list[dict[str, Any]]) -> int:
    """The HTML element and image tests; the number of tests run, as Mailpit counts them."""
    tests = 0
    scripts = sum(e.tag == "script" and e.attrs.get("type") not in _SCRIPT_TYPES for e in document.elements)
    if scripts:
        warnings.append(_script_warning(scripts))
        tests += 1
    budget = Budget(_SELECT_STEPS)
    for slug in HTML_TESTS:
        tests += 1
        if slug == "html-body":
            found = int(document.has_body_end)
        else:
            found = len(select(document, _ELEMENT_SELECTORS[slug], budget))
            tests += bool(found)  # Mailpit counts a found test twice
        _add(warnings, slug, found)
    images = [e.attrs["src"] for e in document.elements if e.tag == "img" and "src" in e.attrs]
    for slug, pattern in _IMAGES.items():
        _add(warnings, slug, sum(pattern.search(src) is not None for src in images))
    return tests + len(_IMAGES)


def _script_warning(found: int) -> dict[str, Any]:
    return {"Slug": "html-script", "Title": "<script> element",
            "Description": "JavaScript is not supported in any email client.", "URL": "", "Category": "html",
            "Tags": [], "Keywords": "", "Results": [], "NotesByNumber": {},
            "Score": {"Found": found, "Supported": 0, "Partial": 0, "Unsupported": 100}}


def _css_tests(document: Document, warnings: list[dict[str, Any]]) -> int:
    """Inline styles, presentational attributes, units and the style sheets; the tests run."""
    styles = list(merged_styles(document).values())
    counts: dict[str, int] = {}
    for style in styles:
        for name in {name.lower() for name in _PROPERTY_RE.findall(style)}:
            if name in _PROPERTIES:
                counts[_PROPERTIES[name]] = counts.get(_PROPERTIES[name], 0) + 1
    for slug, pattern in _OTHER_INLINE.items():
        counts[slug] = sum(pattern.search(style) is not None for style in styles)
    for slug in _INLINE:  # in Mailpit's order
        _add(warnings, slug, counts.get(slug, 0))
    budget = Budget(_SELECT_STEPS)
    for slug, selectors in _ATTRIBUTE_SELECTORS.items():
        _add(warnings, slug, int(bool(select(document, selectors, budget))))
    for slug, pattern in _UNITS.items():
        _add(warnings, slug, sum(len(pattern.findall(style)) for style in styles))
    sheet = document.styles()
    for slug, pattern in _BLOCK.items():
        _add(warnings, slug, len(pattern.findall(sheet)))
    return len(_INLINE) + len(_ATTRIBUTE_SELECTORS) + len(_UNITS) + len(_BLOCK)


def _weight(score: float, warning: dict[str, Any], nodes: int) -> float:
    """A warning's share weighted by how often it was found per node (no node: per one)."""
    return float(score * warning["Score"]["Found"] / max(nodes, 1))


def _total(warnings: list[dict[str, Any]], nodes: int, tests: int) -> dict[str, Any]:
    """The overall score: the worst weighted partial and unsupported shares (Mailpit's maximum)."""
    partial = max((_weight(w["Score"]["Partial"], w, nodes) for w in warnings), default=0.0)
    unsupported = max((_weight(w["Score"]["Unsupported"], w, nodes) for w in warnings), default=0.0)
    return {"Tests": tests, "Nodes": nodes, "Supported": 100 - partial - unsupported, "Partial": partial,
            "Unsupported": unsupported}


def _sorted(warnings: list[dict[str, Any]], nodes: int) -> list[dict[str, Any]]:
    """Worst first: by (unsupported + partial) weighted by how often found (then by slug)."""
    return sorted(warnings, key=lambda w: (-_weight(w["Score"]["Unsupported"] + w["Score"]["Partial"], w, nodes),
                                           w["Slug"]))
