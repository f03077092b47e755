"""A message's HTML as a flat list of elements, and the small CSS selector language the HTML check
needs, for attacker-written markup: a one-pass tokenizer (linear: no search starts over), a bounded
number of elements and nesting depth, and selector matching with a step budget. Nothing here raises on bad
markup; a document past :data:`MAX_ELEMENTS` raises :class:`TooLarge`.

Where the element tree matters it follows what an HTML5 parser (Mailpit's goquery) builds:
``<image>`` is ``<img>``, a ``<tr>`` straight in a ``<table>`` gets an implied ``<tbody>``, one
``<html>``/``<head>``/``<body>`` however often they are written, and head-only elements before the
first body content belong to the head.
"""

from __future__ import annotations

import html as _html
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

MAX_ELEMENTS = 50_000  # elements in one document checked
MAX_DEPTH = 256  # nesting kept; deeper elements count, as children of the deepest kept one
VOID = frozenset(["area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param", "source",
                  "track", "wbr", "keygen"])
HEAD_ONLY = frozenset(["title", "meta", "link", "style", "script", "base", "noscript", "template"])
ROOTS = frozenset(("html", "head", "body"))


class TooLarge(ValueError):
    """The document has more elements than the check reads."""


@dataclass
class Element:
    """One element: its tag (lower case), attributes (the first of repeated names wins), parent
    (None at the top) and whether it lies in the body."""

    tag: str
    attrs: dict[str, str]
    parent: Element | None
    in_body: bool
    text: list[str] = field(default_factory=list)  # the content of <style>
    classes: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if "class" in self.attrs:
            self.classes = frozenset(self.attrs["class"].split())


@dataclass
class Document:
    """What the checks read of an HTML document."""

    elements: list[Element]
    implied_tbody: int  # <tbody> elements an HTML5 parser adds (a <tr> straight in a <table>)
    has_body_end: bool  # the text contains ``</body>`` (Mailpit's test for a whole document)

    _by_key: dict[str, list[Element]] | None = None

    def candidates(self, compound: Compound) -> list[Element]:
        """The elements that may match ``compound``: those with its tag, else with its first
        attribute (``id`` and ``class`` included), else all."""
        if self._by_key is None:
            self._by_key = {}
            for element in self.elements:
                self._by_key.setdefault("<" + element.tag, []).append(element)
                for name in element.attrs:
                    self._by_key.setdefault(name, []).append(element)
        if compound.tag is not None:
            return self._by_key.get("<" + compound.tag, [])
        key = "id" if compound.ids else "class" if compound.classes else compound.attrs[0][0] if compound.attrs else ""
        return self._by_key.get(key, []) if key else self.elements

    def styles(self) -> str:
        """The text of every ``<style>`` element, in order."""
        return "".join("".join(e.text) for e in self.elements if e.tag == "style")


_TAG_RE = re.compile(r"<(/?)([a-zA-Z][^\s/>]*)")
_ATTR_RE = re.compile(r"""([^\s/>"'=][^\s/>"'=]*)(?:\s*=\s*("[^"]*"|'[^']*'|[^\s>]*))?""")
RAW_TEXT = frozenset(["script", "style", "textarea", "title", "xmp", "iframe", "noembed", "noframes", "plaintext"])


def tokens(html: str) -> Iterator[tuple[str, str, str]]:
    """``(kind, tag, rest)`` for each start tag (``"start"``, ``rest``: its attribute text), end tag
    (``"end"``) and stretch of text (``"text"``, ``rest``: the text). One pass: each search starts
    where the last ended, and a construct without its end takes the rest of the text."""
    position, length = 0, len(html)
    while position < length:
        lt = html.find("<", position)
        if lt < 0:
            yield "text", "", html[position:]
            return
        if lt > position:
            yield "text", "", html[position:lt]
        match = _TAG_RE.match(html, lt)
        if match is None:
            position = _skip_markup(html, lt)
            continue
        gt = html.find(">", match.end())
        if gt < 0:
            return  # a tag cut off by the end: nothing follows it
        closing, tag = match.group(1), match.group(2).lower()
        yield ("end" if closing else "start"), tag, html[match.end():gt]
        position = gt + 1
        if not closing and tag in RAW_TEXT and html[gt - 1] != "/":
            end = re.compile(f"</{re.escape(tag)}[\\s/>]", re.I).search(html, position)
            stop = end.start() if end else length
            yield "text", tag, html[position:stop]
            position = stop


def _skip_markup(html: str, lt: int) -> int:
    """Past a comment, doctype, processing instruction or stray ``<`` at ``lt``."""
    if html.startswith("<!--", lt):
        end = html.find("-->", lt + 4)
        return len(html) if end < 0 else end + 3
    if html.startswith(("<!", "<?"), lt):
        end = html.find(">", lt + 2)
        return len(html) if end < 0 else end + 1
    return lt + 1


def attributes(text: str) -> dict[str, str]:
    """A start tag's attributes (names lower case, values unescaped; the first of a name wins)."""
    found: dict[str, str] = {}
    for match in _ATTR_RE.finditer(text):
        name, value = match.group(1).lower(), match.group(2) or ""
        if value[:1] in ("'", '"'):
            value = value[1:-1]
        found.setdefault(name, _html.unescape(value) if "&" in value else value)
    return found


class _Builder:
    def __init__(self) -> None:
        self.elements: list[Element] = []
        self.stack: list[Element] = []
        self.head_open = False
        self.body_started = False
        self.implied = 0

    def feed(self, html: str) -> None:
        for kind, tag, rest in tokens(html):
            if kind == "start":
                self.start(tag, attributes(rest), rest.rstrip().endswith("/"))
            elif kind == "end":
                self.end(tag)
            else:
                self.text(tag, rest)

    def start(self, tag: str, attrs: dict[str, str], self_closing: bool) -> None:
        tag = "img" if tag == "image" else tag
        if tag in ROOTS:
            self._root(tag)
            return
        if not self.body_started and not (tag in HEAD_ONLY or self.head_open):
            self.body_started = True
        parent = self.stack[-1] if self.stack else None
        if tag == "tr" and parent is not None and parent.tag == "table":
            self.implied += 1
        element = Element(tag, attrs, parent, self.body_started)
        self.elements.append(element)
        if len(self.elements) > MAX_ELEMENTS:
            raise TooLarge(f"more than {MAX_ELEMENTS} elements")
        if tag not in VOID and tag not in RAW_TEXT and not self_closing and len(self.stack) < MAX_DEPTH:
            self.stack.append(element)

    def _root(self, tag: str) -> None:
        if tag == "head" and not self.body_started:
            self.head_open = True
        elif tag == "body":
            self.body_started, self.head_open = True, False

    def end(self, tag: str) -> None:
        if tag == "head":
            self.head_open = False
        for depth in range(len(self.stack) - 1, -1, -1):
            if self.stack[depth].tag == tag:
                del self.stack[depth:]
                return

    def text(self, raw_tag: str, data: str) -> None:
        if raw_tag == "style" and self.elements and self.elements[-1].tag == "style":
            self.elements[-1].text.append(data)
        elif not raw_tag and not self.body_started and not self.head_open and data.strip():
            self.body_started = True


def parse(html: str) -> Document:
    """The elements of ``html`` (:class:`TooLarge` past :data:`MAX_ELEMENTS`)."""
    builder = _Builder()
    builder.feed(html)
    return Document(builder.elements, builder.implied, re.search("</body>", html, re.I) is not None)


# --- selectors -----------------------------------------------------------------------------------

_COMPOUND_RE = re.compile(
    r"""(?P<tag>[a-zA-Z][a-zA-Z0-9-]*|\*)?"""
    r"""(?P<rest>(?:\#[\w-]+|\.[\w-]+|\[\s*[\w-]+\s*(?:[\^$*~|]?=\s*(?:"[^"]*"|'[^']*'|[\w-]+)\s*)?\])*)$""")
_PART_RE = re.compile(r"""\#([\w-]+)|\.([\w-]+)|\[\s*([\w-]+)\s*(?:([\^$*~|]?=)\s*("[^"]*"|'[^']*'|[\w-]+)\s*)?\]""")


@dataclass(frozen=True)
class Compound:
    """``tag#id.class[attr op value]``: every part must hold for one element."""

    tag: str | None
    ids: tuple[str, ...] = ()
    classes: tuple[str, ...] = ()
    attrs: tuple[tuple[str, str, str], ...] = ()  # (name, operator or "", value)

    def matches(self, element: Element) -> bool:
        if self.tag is not None and element.tag != self.tag:
            return False
        if self.ids and element.attrs.get("id") not in self.ids:
            return False
        if self.classes and not set(self.classes) <= element.classes:
            return False
        return all(_attr_matches(element.attrs.get(name), op, value) for name, op, value in self.attrs)


def _attr_matches(actual: str | None, op: str, value: str) -> bool:
    if actual is None:
        return False
    if op == "":
        return True
    tests = {"=": actual == value, "^=": bool(value) and actual.startswith(value),
             "$=": bool(value) and actual.endswith(value), "*=": bool(value) and value in actual,
             "~=": value in actual.split(), "|=": actual == value or actual.startswith(value + "-")}
    return tests[op]


@dataclass(frozen=True)
class Selector:
    """Compounds joined by descendant (``" "``) or child (``">"``) combinators, left to right."""

    parts: tuple[Compound, ...]
    combinators: tuple[str, ...]  # one fewer than parts


def compile_selector_list(text: str) -> list[Selector] | None:
    """``a, b c, d > e`` as selectors; None when any uses what is not supported here
    (pseudo-classes, sibling combinators...)."""
    found = []
    for one in text.split(","):
        selector = _selector(one)
        if selector is None:
            return None
        found.append(selector)
    return found


def _selector(text: str) -> Selector | None:
    tokens = re.split(r"\s*(>)\s*|\s+", text.strip())
    parts: list[Compound] = []
    combinators: list[str] = []
    pending = " "
    for token in tokens:
        if token is None or token == "":
            continue
        if token == ">":
            pending = ">"
            continue
        compound = _compound(token)
        if compound is None:
            return None
        if parts:
            combinators.append(pending)
        parts.append(compound)
        pending = " "
    return Selector(tuple(parts), tuple(combinators)) if parts else None


def _compound(text: str) -> Compound | None:
    match = _COMPOUND_RE.match(text)
    if match is None or not text:
        return None
    tag = match.group("tag")
    ids, classes, attrs = [], [], []
    for part in _PART_RE.finditer(match.group("rest")):
        if part.group(1):
            ids.append(part.group(1))
        elif part.group(2):
            classes.append(part.group(2))
        else:
            value = part.group(5) or ""
            attrs.append((part.group(3).lower(), part.group(4) or "", value.strip("\"'")))
    return Compound(None if tag in (None, "*") else tag.lower(), tuple(ids), tuple(classes), tuple(attrs))


class Budget:
    """Selector-matching steps left; :meth:`spend` says False once they are used up."""

    def __init__(self, steps: int) -> None:
        self.left = steps

    def spend(self, steps: int = 1) -> bool:
        self.left -= steps
        return self.left >= 0


def matches(selector: Selector, element: Element, budget: Budget) -> bool:
    """Whether ``element`` is matched (right to left; an ancestor is taken greedily)."""
    parts, combinators = selector.parts, selector.combinators
    if not parts[-1].matches(element):
        return False
    current: Element | None = element
    for index in range(len(parts) - 2, -1, -1):
        assert current is not None
        wanted, combinator = parts[index], combinators[index]
        current = current.parent
        if combinator == ">":
            if current is None or not _step(current, wanted, budget):
                return False
            continue
        while current is not None and not _step(current, wanted, budget):
            current = current.parent
        if current is None:
            return False
    return True


def _step(element: Element, compound: Compound, budget: Budget) -> bool:
    return budget.spend() and compound.matches(element)


def select(document: Document, selectors: list[Selector], budget: Budget) -> list[Element]:
    """The elements matched by any of ``selectors`` (each once; as far as the budget goes)."""
    found: dict[int, Element] = {}
    for selector in selectors:
        for element in document.candidates(selector.parts[-1]):
            if not budget.spend():
                break
            if id(element) not in found and matches(selector, element, budget):
                found[id(element)] = element
    return list(found.values())
