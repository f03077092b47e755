"""A message as stable text for snapshot tests and ``smtp-sink diff``: what varies between two
sends of the same mail is replaced by placeholders, the rest is shown readably.

:func:`normalise` gives, in order: the envelope (from the block the server wrote, see
:mod:`smtp_sink.trace`); the client's headers in their order, unfolded and decoded, with
``Date``, ``Message-ID`` (and the ids in ``In-Reply-To``/``References``), ``Received``, mailer
and signature headers (:data:`VARYING`) replaced by placeholders; the MIME tree (each part's id
as the API numbers them, its ``Content-*`` headers, MIME boundaries numbered ``<boundary-1>``...
in order of appearance and Content-IDs ``<content-id-1>``..., also where HTML refers to them as
``cid:``); then each text part decoded, HTML pretty-printed one tag a line, and every other part
as its size and SHA-256. User ``tokens`` (name -> regular expression) replace what they match
with ``<name>`` last, over the whole text.

Reading uses the display parser (:func:`smtp_sink.message.parse`: bounded and linear), HTML is
read by the HTML check's one-pass tokenizer (:func:`smtp_sink.checks.dom.tokens`) rather than the
stdlib's ``html.parser``, which has had quadratic cases on malformed markup; every part's text
and the pretty-printed HTML are capped (:data:`TEXT_LIMIT`, :data:`HTML_LIMIT`).
"""

from __future__ import annotations

import difflib
import hashlib
import html
import re
from collections.abc import Iterator, Mapping
from email.message import Message

from . import message, trace
from .checks import dom

__all__ = ["VARYING", "TokenError", "compile_tokens", "normalise", "unified_diff"]

VERSION = 1  # of the text's layout; the first line names it, so an old snapshot shows why it differs
TEXT_LIMIT = 1_000_000  # characters of one text part shown
HTML_LIMIT = 1_000_000  # characters of one HTML part pretty-printed
HTML_OUTPUT_LIMIT = 4_000_000  # characters of pretty-printed HTML per part
INDENT_LIMIT = 32  # nesting levels indented (deeper elements stay at this level)
DIFF_CONTEXT = 3  # lines of context in a unified diff
# Headers whose value changes at every send (or with the library's version): the value becomes
# ``<name>``. Message ids are numbered instead (see _MESSAGE_ID_HEADERS).
VARYING = frozenset({
    "date", "resent-date", "received", "x-received", "x-mailer", "user-agent", "x-originating-ip",
    "dkim-signature", "x-google-dkim-signature", "domainkey-signature", "arc-seal", "arc-message-signature",
    "arc-authentication-results", "authentication-results", "received-spf", "x-sink-auth", "x-original-to",
    "return-path",
})
_MESSAGE_ID_HEADERS = frozenset({"message-id", "resent-message-id", "in-reply-to", "references"})
_MIME_HEADERS = ("content-disposition", "content-transfer-encoding", "content-id", "content-description",
                 "content-language", "content-location")
_MSG_ID_RE = re.compile(r"<[^<>\s]{1,998}>")
_SPACE_RE = re.compile(r"\s+")
_TOKEN_NAME_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")


class TokenError(ValueError):
    """A token given to :func:`compile_tokens` is not a name and a regular expression."""


def compile_tokens(tokens: Mapping[str, str | re.Pattern[str]] | None) -> list[tuple[str, re.Pattern[str]]]:
    """``tokens`` as ``(placeholder, pattern)`` pairs; :class:`TokenError` names a bad one."""
    compiled = []
    for name, pattern in (tokens or {}).items():
        if not isinstance(name, str) or not _TOKEN_NAME_RE.fullmatch(name):
            raise TokenError(f"token name {name!r}: expected letters, digits, '_', '.' or '-' (at most 64)")
        try:
            regex = pattern if isinstance(pattern, re.Pattern) else re.compile(pattern)
        except (re.error, TypeError) as exc:
            raise TokenError(f"token {name!r}: not a regular expression ({exc}): {pattern!r}") from None
        compiled.append((f"<{name}>", regex))
    return compiled


class _Numbers:
    """Placeholders numbered in order of first appearance: ``<boundary-1>``, ``<boundary-2>``..."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.seen: dict[str, str] = {}

    def __call__(self, value: str) -> str:
        if value not in self.seen:
            self.seen[value] = f"<{self.kind}-{len(self.seen) + 1}>"
        return self.seen[value]


def normalise(raw: bytes, tokens: Mapping[str, str | re.Pattern[str]] | None = None) -> str:
    """The normalised text of a stored message (see the module's docstring); never raises but
    :class:`TokenError` for a bad token. Linear in the message's size, within the display limits."""
    replacements = compile_tokens(tokens)
    # trace.read reads the first field whole before it looks at its name: only when it can be ours
    found = trace.read(raw) if raw[:12].lower() == b"return-path:" else trace.Trace()
    client = raw[found.length:] if found.own else raw
    msg, notes = message._parse(client)
    ids, boundaries, content_ids = _Numbers("message-id"), _Numbers("boundary"), _Numbers("content-id")
    _number_boundaries(msg, boundaries)
    lines = [f"smtp-sink snapshot v{VERSION}"]
    if found.own or found.mail_from or found.rcpt_to:
        lines.append(f"envelope: from <{found.mail_from}> to " + ", ".join(f"<{r}>" for r in found.rcpt_to))
    lines += [f"problem: {note}" for note in dict.fromkeys(notes)]
    lines.append("")
    lines += _headers(msg, ids, boundaries, content_ids)
    lines += ["", "== MIME"]
    bodies: list[str] = []
    for part_id, entity, depth in _walk(msg):
        lines += _describe(part_id, entity, depth, boundaries, content_ids, bodies)
    text = "\n".join([*lines, *bodies]).rstrip("\n") + "\n"
    for placeholder, regex in replacements:
        text = regex.sub(placeholder, text)
    return text


def _number_boundaries(msg: Message, boundaries: _Numbers) -> None:
    """Number every boundary in document order, before any header that names one is shown."""
    for _, entity, _ in _walk(msg):
        boundary = entity.get_boundary() if entity.get_content_maintype() == "multipart" else None
        if isinstance(boundary, str):
            boundaries(boundary)


def _values(entity: Message) -> Iterator[tuple[str, str]]:
    """``(name, value)`` of each header of ``entity``: unfolded, 8-bit read as UTF-8, capped."""
    for name, value in entity.raw_items():
        text = (value if isinstance(value, str) else str(value))[:message.MAX_HEADER_VALUE]
        yield name, _SPACE_RE.sub(" ", message._unescape(text)).strip()


def _decode(name: str, value: str) -> str:
    """RFC 2047 encoded words decoded (as the display decodes them); as stored when it fails."""
    if "=?" not in value:
        return value
    try:
        return message._unescape(message._text(message._header_factory("x-" + name, value)))
    except Exception:
        return value


def _headers(msg: Message, ids: _Numbers, boundaries: _Numbers, content_ids: _Numbers) -> list[str]:
    lines = []
    for name, value in _values(msg):
        lower = name.lower()
        if lower in VARYING:
            value = f"<{lower}>"
        elif lower in _MESSAGE_ID_HEADERS:
            value = _MSG_ID_RE.sub(lambda found: ids(found.group()), value)
        elif lower.startswith("content-"):
            value = _mime_value(lower, value, msg, boundaries, content_ids)
        else:
            value = _decode(lower, value)
        lines.append(f"{name}: {value}")
    return lines


def _mime_value(name: str, value: str, entity: Message, boundaries: _Numbers, content_ids: _Numbers) -> str:
    """A ``Content-*`` value with its boundary or Content-ID replaced by its placeholder."""
    if name == "content-type":
        boundary = entity.get_boundary() if entity.get_content_maintype() == "multipart" else None
        if isinstance(boundary, str) and boundary:
            return value.replace(boundary, boundaries(boundary))
    elif name == "content-id":
        return content_ids(value.strip().lstrip("<").rstrip(">"))
    return _decode(name, value)


def _walk(msg: Message) -> Iterator[tuple[str, Message, int]]:
    """``(part_id, entity, depth)`` of the message and every part below it, depth first, ids as
    :func:`smtp_sink.message.leaves` numbers them (``""`` for a multipart message itself)."""
    if not message._is_multipart(msg):
        yield "0", msg, 0
        return
    yield "", msg, 0
    stack = [(iter(enumerate(msg.get_payload(), 1)), "")]
    while stack:
        children, prefix = stack[-1]
        for number, child in children:
            child_id = f"{prefix}{number}"
            yield child_id, child, len(stack)
            if message._is_multipart(child):
                stack.append((iter(enumerate(child.get_payload(), 1)), child_id + "."))
                break
        else:
            stack.pop()


def _describe(part_id: str, entity: Message, depth: int, boundaries: _Numbers, content_ids: _Numbers,
              bodies: list[str]) -> list[str]:
    """The MIME tree lines of one entity; a leaf's content goes into ``bodies``."""
    pad = "  " * depth
    values = list(_values(entity))
    content_type = next((v for n, v in values if n.lower() == "content-type"), "")
    shown = _mime_value("content-type", content_type, entity, boundaries, content_ids) if content_type else (
        f"{entity.get_content_type()} (no Content-Type)")
    label = f"[{part_id}] " if part_id else "[message] "
    lines = [f"{pad}{label}{shown}"]
    extra = "  " * depth + " " * len(label)
    lines += [f"{extra}{name}: {_mime_value(name.lower(), value, entity, boundaries, content_ids)}"
              for name, value in values if name.lower() in _MIME_HEADERS]
    if message._is_multipart(entity):
        return lines
    filename = message._filename(entity)
    content = message._payload(entity)
    digest = hashlib.sha256(content).hexdigest()[:16]
    if entity.get_content_maintype() != "text":
        lines.append(f"{extra}{len(content)} bytes, sha256 {digest}" + (f", file {filename}" if filename else ""))
        return lines
    problems: list[str] = []
    text = message._decoded_text(entity, problems)
    subtype = entity.get_content_subtype()
    heading = f"== part {part_id} {entity.get_content_type()}" + (f" ({filename})" if filename else "")
    body = _pretty_html(text, content_ids) if subtype == "html" else _cut(text, TEXT_LIMIT)
    bodies += ["", heading, *[f"problem: {problem}" for problem in problems], body.rstrip("\n")]
    return lines


def _cut(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    rest = text[limit:]
    digest = hashlib.sha256(rest.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return f"{text[:limit]}\n[... {len(rest)} more characters, sha256 {digest}]"


def _pretty_html(markup: str, content_ids: _Numbers) -> str:
    """HTML one tag or text run a line, indented by nesting: attributes kept in their order
    (names lower case, values re-quoted; ``cid:`` references numbered), text with white space
    collapsed, comments and doctype left out. Linear: one pass of :func:`dom.tokens`; a stray
    end tag closes the nearest open element of its name (a search of at most
    :data:`INDENT_LIMIT` names)."""
    out: list[str] = []
    size = 0
    stack: list[str] = []
    deeper = 0  # open elements below INDENT_LIMIT, not on the stack
    for kind, tag, rest in dom.tokens(markup[:HTML_LIMIT]):
        pad = "  " * min(len(stack), INDENT_LIMIT)
        if kind == "start":
            attrs = "".join(_attribute(name, value, content_ids) for name, value in dom.attributes(rest).items())
            line = f"{pad}<{tag}{attrs}>"
            if tag not in dom.VOID and not rest.rstrip().endswith("/"):
                if len(stack) < INDENT_LIMIT:
                    stack.append(tag)
                else:
                    deeper += 1
        elif kind == "end":
            if deeper:
                deeper -= 1
            elif tag in stack:
                while stack.pop() != tag:
                    pass
            line = "  " * min(len(stack), INDENT_LIMIT) + f"</{tag}>"
        elif tag:  # the content of <style>, <script>, <title>...: its own lines, stripped
            line = "\n".join(pad + piece.strip() for piece in rest.splitlines() if piece.strip())
        else:
            text = _SPACE_RE.sub(" ", html.unescape(rest)).strip()
            line = pad + text if text else ""
        if line:
            out.append(line)
            size += len(line) + 1
            if size > HTML_OUTPUT_LIMIT:
                out.append(f"[... the rest of the HTML is not shown: over {HTML_OUTPUT_LIMIT} characters]")
                break
    if len(markup) > HTML_LIMIT:
        out.append(f"[... {len(markup) - HTML_LIMIT} more characters of HTML not shown]")
    return "\n".join(out)


def _attribute(name: str, value: str, content_ids: _Numbers) -> str:
    if value[:4].lower() == "cid:":
        value = "cid:" + content_ids(value[4:])
    quoted = value.replace('"', "&quot;")
    return f' {name}="{quoted}"'


def unified_diff(expected: str, actual: str, expected_name: str, actual_name: str) -> str:
    """A unified diff of two normalised texts (``""`` when they are equal). The lines both share at
    the start and the end are set aside first (linear); ``difflib`` (quadratic at worst) compares
    what is left only when each side has at most :data:`DIFF_LINES` lines, else that middle is
    shown as one hunk: every old line removed, every new line added."""
    a, b = _lines(expected), _lines(actual)
    if a == b:
        return ""
    start = 0
    while start < min(len(a), len(b)) and a[start] == b[start]:
        start += 1
    end = 0  # lines shared at the end, not overlapping those at the start
    while end < min(len(a), len(b)) - start and a[-1 - end] == b[-1 - end]:
        end += 1
    lo = max(0, start - DIFF_CONTEXT)
    after = min(end, DIFF_CONTEXT)
    a_hi, b_hi = len(a) - end + after, len(b) - end + after
    head = [f"--- {expected_name}\n", f"+++ {actual_name}\n"]
    if len(a) - end - start <= DIFF_LINES and len(b) - end - start <= DIFF_LINES:
        found = list(difflib.unified_diff(a[lo:a_hi], b[lo:b_hi], n=DIFF_CONTEXT))[2:]
        return "".join(head + [_HUNK_RE.sub(lambda m: _shifted(m, lo), line, count=1) for line in found])
    hunk = [f"@@ -{_range(lo, a_hi - lo)} +{_range(lo, b_hi - lo)} @@\n"]
    hunk += [" " + line for line in a[lo:start]] + ["-" + line for line in a[start:len(a) - end]]
    hunk += ["+" + line for line in b[start:len(b) - end]] + [" " + line for line in a[len(a) - end:a_hi]]
    return "".join(head + hunk)


DIFF_LINES = 2000  # lines of each side's differing middle that difflib compares (see unified_diff)
_HUNK_RE = re.compile(r"^@@ -(\d+)(,\d+)? \+(\d+)(,\d+)? @@")


def _lines(text: str) -> list[str]:
    """``text`` split at ``\\n`` only (a CR or U+2028 in a body stays inside its line), each line
    ending in one."""
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return [line + "\n" for line in lines]


def _shifted(found: re.Match[str], offset: int) -> str:
    """A hunk header of a diff of lines from ``offset`` on, numbered as in the whole texts."""
    a_start, a_len, b_start, b_len = found.groups()
    return f"@@ -{int(a_start) + offset}{a_len or ''} +{int(b_start) + offset}{b_len or ''} @@"


def _range(lo: int, count: int) -> str:
    """A unified diff's ``start,count`` for ``count`` lines after the first ``lo`` (1-based; an
    empty range names the line before it)."""
    return f"{lo + 1 if count else lo},{count}"
