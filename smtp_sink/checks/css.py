"""The ``<style>`` rules of a document merged into its elements' ``style`` attributes, as Mailpit
does with premailer before it looks at inline styles: a rule's declarations count for every element
its selector matches. Rules inside at-rules (``@media``...), and selectors with pseudo-classes or
sibling combinators, stay in the style sheet (premailer does not inline them either). Linear in the
style text; matching is bounded by a step budget, after which the remaining rules are not merged.
"""

from __future__ import annotations

import re

from .dom import Budget, Document, Element, compile_selector_list, select

MATCH_STEPS = 300_000  # selector-matching steps for one document
_COMMENT_RE = re.compile(r"/\*.*?(?:\*/|\Z)", re.S)
_MARK_RE = re.compile(r"[{};]")


def rules(css: str) -> list[tuple[str, str]]:
    """``(selector list, declarations)`` of the top-level rules of a style sheet (at-rules skipped)."""
    css = _COMMENT_RE.sub("", css)
    found: list[tuple[str, str]] = []
    depth, start, selector, at_rule = 0, 0, "", False
    for mark in _MARK_RE.finditer(css):
        index, char = mark.start(), mark.group()
        if char == "{":
            if depth == 0:
                selector = css[start:index].strip()
                at_rule = selector.startswith("@")
                start = index + 1
            depth += 1
        elif char == "}" and depth:
            depth -= 1
            if depth == 0:
                if not at_rule and selector:
                    found.append((selector, css[start:index].strip()))
                start = index + 1
        elif char == ";" and depth == 0:  # @import ...; @charset ...;
            start = index + 1
    return found


def merged_styles(document: Document) -> dict[int, str]:
    """Element position -> its ``style`` after merging the document's ``<style>`` rules."""
    styles = {index: e.attrs["style"] for index, e in enumerate(document.elements) if "style" in e.attrs}
    positions = {id(element): index for index, element in enumerate(document.elements)}
    budget = Budget(MATCH_STEPS)
    for selector_text, declarations in rules(document.styles()):
        if ":" in selector_text or not declarations:
            continue
        selectors = compile_selector_list(selector_text)
        if selectors is None:
            continue
        matched: list[Element] = select(document, selectors, budget)
        if budget.left < 0:
            break
        for element in matched:
            index = positions[id(element)]
            styles[index] = _join(styles.get(index, ""), declarations)
    return styles


def _join(style: str, declarations: str) -> str:
    style = style.strip()
    if style and not style.endswith(";"):
        style += ";"
    return f"{style} {declarations}".strip() if style else declarations
