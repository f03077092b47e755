"""caniemail.com's support data (vendored in ``smtp_sink/data/caniemail``, CC BY 4.0; refreshed by
``scripts/refresh-caniemail.sh``, never fetched at run time) as Mailpit's HTML-check warnings.

A feature becomes a warning with every client's result (``yes``, ``no``, ``partial``), its notes and
its share of each, as Mailpit's ``getTest`` computes them. Descriptions and notes are caniemail's
one-line Markdown (code spans, links, emphasis), rendered to HTML with links opening a new tab.
"""

from __future__ import annotations

import functools
import html
import json
import re
from pathlib import Path
from typing import Any

DATA = Path(__file__).resolve().parent.parent / "data" / "caniemail" / "caniemail.json"
_NOTE_RE = re.compile(r" #(\d)+$")
_INLINE_RE = re.compile(r"`([^`]*)`|\[([^\]]*)\]\(([^)\s]*)\)|\*\*([^*]+)\*\*|\*([^*\s][^*]*)\*")


@functools.cache
def data() -> dict[str, Any]:
    """The whole data file, read once."""
    loaded: dict[str, Any] = json.loads(DATA.read_text(encoding="utf-8"))
    return loaded


@functools.cache
def features() -> dict[str, dict[str, Any]]:
    """Slug -> the feature's record."""
    return {feature["slug"]: feature for feature in data()["data"]}


def markdown(text: str) -> str:
    """caniemail's inline Markdown as HTML (everything else escaped)."""
    out, done = [], 0
    for match in _INLINE_RE.finditer(text):
        out.append(html.escape(text[done:match.start()], quote=False))
        code, label, url, strong, emphasis = match.groups()
        if code is not None:
            out.append(f"<code>{html.escape(code, quote=False)}</code>")
        elif label is not None:
            out.append(f'<a href="{html.escape(url)}" target="_blank">{markdown(label)}</a>')
        elif strong is not None:
            out.append(f"<strong>{markdown(strong)}</strong>")
        else:
            out.append(f"<em>{markdown(emphasis)}</em>")
        done = match.end()
    out.append(html.escape(text[done:], quote=False))
    return "".join(out).strip()


def _result(family: str, platform: str, version: str, support: str) -> dict[str, str]:
    names = data()["nicenames"]
    verdict = {"y": "yes", "n": "no"}.get(support, "partial")
    note = _NOTE_RE.search(support) if verdict == "partial" else None
    return {
        "Name": f"{names['family'].get(family, '')} {names['platform'].get(platform, '')} ({version})",
        "Platform": platform,
        "Family": family,
        "Version": version,
        "Support": verdict,
        "NoteNumber": note.group(1) if note else "",
    }


@functools.cache
def _warning(slug: str) -> dict[str, Any] | None:
    feature = features().get(slug)
    if feature is None:
        return None
    results = [_result(family, platform, version, str(support))
               for family, platforms in (feature.get("stats") or {}).items()
               for platform, versions in platforms.items()
               for version, support in versions.items()]
    counts = {kind: sum(r["Support"] == kind for r in results) for kind in ("yes", "no", "partial")}
    total = len(results) or 1
    return {
        "Slug": feature["slug"],
        "Title": feature.get("title") or "",
        "Description": markdown(feature.get("description") or ""),
        "URL": feature.get("url") or "",
        "Category": feature.get("category") or "",
        "Tags": list(feature.get("tags") or []),
        "Keywords": "",
        "Results": results,
        "NotesByNumber": {number: markdown(note) for number, note in (feature.get("notes_by_num") or {}).items()},
        "Score": {"Found": 0, "Supported": counts["yes"] / total * 100, "Partial": counts["partial"] / total * 100,
                  "Unsupported": counts["no"] / total * 100},
    }


def warning(slug: str, found: int) -> dict[str, Any] | None:
    """Mailpit's warning for a feature found ``found`` times; None when the data lacks it (Mailpit
    then fails the whole check for ``image-ppm``; here the feature is left out)."""
    cached = _warning(slug)
    if cached is None:
        return None
    copy = dict(cached, Score=dict(cached["Score"], Found=found))
    return copy


@functools.cache
def platforms() -> dict[str, list[str]]:
    """Platform -> the sorted names of the client families with data for it (every feature)."""
    names = data()["nicenames"]["family"]
    found: dict[str, set[str]] = {}
    for feature in data()["data"]:
        for family, stats in (feature.get("stats") or {}).items():
            for platform in stats:
                found.setdefault(platform, set()).add(names.get(family, ""))
    return {platform: sorted(families) for platform, families in sorted(found.items())}
