"""Client lint: what the sending application did wrong in the message it sent (issue 17, part 2).

:func:`lint_message` checks the bytes a client sent after ``354`` (byte-exact, as the server
stored them after its own trace block: bare LFs, long lines and 8-bit bytes are still there)
against its envelope and, when known, the parameters of its ``MAIL FROM`` (:class:`MailParams`).
:func:`lint_stored` does the same for a stored ``.eml`` file, and :func:`message_findings` for a
message of a store: the one place the API, the CLI and the pytest plugin gather a message's
findings (a later step adds the session's and the TLS probe's).

Every check has a stable name (``docs/lint.md`` documents each). The checks are pure functions
over bytes, total (they never raise: a check that fails on input nobody foresaw is left out) and
linear: the data checks are C-speed scans (``count``, ``split``, one regex search that cannot
backtrack), the message checks read the message through :mod:`smtp_sink.message`'s bounded
parser (its header, part and depth limits apply), and each check reports at most one finding.
The command-stream checks (bare CR/LF in commands, PIPELINING, AUTH before STARTTLS, ...) live
with the session transcripts, not here.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from email.message import Message
from pathlib import Path
from typing import Any, Protocol

from . import message as display
from . import trace
from .addresses import parse_params, split_path
from .findings import Finding
from .session_lint import check as session_check
from .session_lint import mail_params_in
from .sessions import Session, SessionStore
from .tls_findings import ACCEPTED, PROBES, probe_reference

__all__ = ["CHECKS", "MAX_LINE", "LintReport", "MailParams", "lint_message", "lint_stored", "message_findings"]

MAX_LINE = 998  # octets of a line without its CRLF (RFC 5322 section 2.1.1, RFC 5321 section 4.5.3.1.6)
MAX_LISTED = 5  # addresses or lines named in one finding's evidence (the count says how many more)
_EXCERPT = 120  # bytes of a line shown as evidence

# check name -> (severity, reference): the one table of the checks this module makes.
CHECKS: dict[str, tuple[str, str]] = {
    "data-bare-lf": ("error", "RFC 5321 section 2.3.8"),
    "data-bare-cr": ("error", "RFC 5321 section 2.3.8"),
    "line-too-long": ("error", "RFC 5322 section 2.1.1, RFC 5321 section 4.5.3.1.6"),
    "8bit-without-8bitmime": ("error", "RFC 6152 section 3"),
    "size-parameter-too-small": ("warning", "RFC 1870 sections 4 and 5"),
    "missing-date": ("error", "RFC 5322 section 3.6"),
    "missing-from": ("error", "RFC 5322 section 3.6"),
    "missing-message-id": ("warning", "RFC 5322 section 3.6.4"),
    "bcc-header-sent": ("error", "RFC 5322 section 3.6.3"),
    "header-recipient-not-in-envelope": ("warning", "RFC 5321 section 3.3, RFC 5322 section 3.6.3"),
    "envelope-recipient-not-in-headers": ("info", "RFC 5322 section 3.6.3"),
    "non-ascii-header": ("error", "RFC 6532 section 3, RFC 2047"),
    "duplicate-content-id": ("error", "RFC 2392 section 2, RFC 2045 section 7"),
    "html-without-text": ("warning", "RFC 2046 section 5.1.4"),
    "list-unsubscribe-without-post": ("warning", "RFC 8058 section 3.1"),
}

_BARE_LF_RE = re.compile(rb"(?<!\r)\n")
_BARE_CR_RE = re.compile(rb"\r(?!\n)")
_EIGHT_BIT_RE = re.compile(rb"[\x80-\xff]")
_ONE_CLICK = "list-unsubscribe=one-click"


@dataclass(frozen=True, slots=True)
class MailParams:
    """What the client declared in ``MAIL FROM``: ``BODY=`` (upper case; None: not given),
    ``SIZE=`` (None: not given or not a number) and ``SMTPUTF8``."""

    body: str | None = None
    size: int | None = None
    smtputf8: bool = False

    @classmethod
    def from_mail_line(cls, line: str) -> MailParams:
        """The parameters of a ``MAIL FROM:<a> BODY=8BITMIME SIZE=10`` command line (with or
        without its CRLF); what cannot be read is left unset (never raises)."""
        text = line.strip()
        if text[:10].upper() == "MAIL FROM:":
            text = text[10:]
        try:
            params = parse_params(split_path(text)[1])
        except ValueError:  # AddressError: read what can be read, one item at a time
            params = {}
            for item in text.rpartition(">")[2].split():
                key, eq, value = item.partition("=")
                params[key.upper()] = value if eq else None
        return cls.from_params(params)

    @classmethod
    def from_params(cls, params: Mapping[str, str | None]) -> MailParams:
        """Parameters already split (``{"SIZE": "10", "BODY": "8bitmime", "SMTPUTF8": None}``, keys
        upper case), as a session's transcript gives them."""
        size, body = params.get("SIZE"), params.get("BODY")
        return cls(body.upper() if body else None,
                   int(size) if size and size.isascii() and size.isdigit() and len(size) <= 20 else None,
                   "SMTPUTF8" in params)


@dataclass(frozen=True, slots=True)
class LintReport:
    """The findings about one message, and those of each severity (``assert not report.errors``)."""

    findings: tuple[Finding, ...] = ()

    def _of(self, severity: str) -> list[Finding]:
        return [finding for finding in self.findings if finding.severity == severity]

    @property
    def errors(self) -> list[Finding]:
        """The findings of severity ``error``: what the RFCs forbid."""
        return self._of("error")

    @property
    def warnings(self) -> list[Finding]:
        """The findings of severity ``warning``: allowed, but likely a mistake."""
        return self._of("warning")

    @property
    def infos(self) -> list[Finding]:
        """The findings of severity ``info``: worth knowing (e.g. a Bcc recipient)."""
        return self._of("info")

    @property
    def checks(self) -> list[str]:
        """The names of the checks that found something, in order."""
        return [finding.check for finding in self.findings]

    def to_json(self) -> dict[str, Any]:
        """``{"Findings": [...], "Errors": n, "Warnings": n, "Infos": n}`` (the API's shape)."""
        return {"Findings": [finding.to_json() for finding in self.findings], "Errors": len(self.errors),
                "Warnings": len(self.warnings), "Infos": len(self.infos)}

    def __str__(self) -> str:
        if not self.findings:
            return "no findings"
        return "\n".join(f"{f.severity}: {f.check}: {f.evidence} ({f.reference})" for f in self.findings)


class _Readable(Protocol):
    path: Path

    def resolve(self, message_id: str) -> str: ...
    def read(self, message_id: str) -> bytes: ...


def message_findings(store: _Readable, message_id: str, mail_params: MailParams | None = None) -> LintReport:
    """Every finding about one message of ``store`` (an id or ``latest``), as the API and the CLI
    gather them: :func:`lint_recorded` with the session the store recorded (if it has ended and
    been written). :class:`~smtp_sink.errors.NotFound` for no such message."""
    message_id = store.resolve(message_id)
    raw = store.read(message_id)
    session_id = trace.read(raw).session
    session = SessionStore(store.path).get(session_id) if session_id else None
    return lint_recorded(raw, message_id, session, mail_params)


def lint_recorded(raw: bytes, message_id: str, session: Session | None,
                  mail_params: MailParams | None = None) -> LintReport:
    """:func:`lint_stored`, with what the SMTP session that delivered the message recorded
    (``docs/sessions.md``): its ``MAIL FROM`` parameters (so ``8bit-without-8bitmime`` and
    ``size-parameter-too-small`` run) and its command-stream findings (``bare-cr-lf-command``,
    ``pipelining-not-advertised``...). Without a session: the message's own findings only."""
    if session is None:
        return lint_stored(raw, mail_params)
    if mail_params is None:
        mail_params = MailParams.from_params(mail_params_in(session, message_id))
    report = lint_stored(raw, mail_params)
    return LintReport(report.findings + tuple(session_check(session)))


def lint_stored(raw: bytes, mail_params: MailParams | None = None) -> LintReport:
    """:func:`lint_message` of a stored file: the envelope from the server's trace block, the
    checks over what the client sent after it."""
    found = trace.read(raw)
    findings = lint_message(raw[found.length:], found, mail_params)
    if found.tls_probe:  # the server's own flag (trace.py): the client took the TLS probe (docs/tls-probe.md)
        findings.insert(0, Finding(ACCEPTED, "error",
                                   f"sent over the TLS probe {found.tls_probe!r}: the client accepted "
                                   f"{PROBES.get(found.tls_probe, 'a bad certificate')}",
                                   probe_reference(found.tls_probe)))
    return LintReport(tuple(findings))


def lint_message(data: bytes, envelope: trace.Trace | None = None, mail_params: MailParams | None = None
                 ) -> list[Finding]:
    """The findings about ``data``, the bytes a client sent after ``354`` (dot-stuffing undone).

    ``envelope``: its sender and recipients (None, or a trace without recipients: the
    envelope checks are skipped). ``mail_params``: what ``MAIL FROM`` declared (None: unknown,
    and ``8bit-without-8bitmime`` and ``size-parameter-too-small`` are skipped). Never raises."""
    data = bytes(data)
    findings: list[Finding] = []
    for data_check in (_bare_lf, _bare_cr, _long_line):
        _guarded(findings, data_check, data)
    if mail_params is not None:
        _guarded(findings, _eight_bit, data, mail_params)
        _guarded(findings, _size, data, mail_params)
    try:
        # The summary's parse: the MIME structure and every header as the display reads them, at most
        # SUMMARY_PART_BYTES of each part's body (the checks read no body, and a 5 MB body of bare
        # CRs is 5 million lines to the stdlib parser).
        msg = display._parse_for_summary(data)[0]
    except Exception:  # it never raises; should it, the data checks stand alone
        return findings
    rcpt_to = list(envelope.rcpt_to) if envelope is not None else []
    for message_check in (_missing, _bcc_header, _list_unsubscribe, _content_ids, _html_only):
        _guarded(findings, message_check, msg)
    _guarded(findings, _non_ascii_headers, msg, mail_params)
    if rcpt_to:
        _guarded(findings, _recipients, msg, rcpt_to)
    return findings


def _guarded(findings: list[Finding], check: Callable[..., Iterable[Finding]], *args: Any) -> None:
    """Add what ``check(*args)`` finds; a check that raises (input nobody foresaw) adds nothing."""
    with contextlib.suppress(Exception):
        findings.extend(check(*args))


def _finding(check: str, evidence: str) -> Finding:
    severity, reference = CHECKS[check]
    return Finding(check, severity, evidence, reference)


# -- data checks: C-speed scans over the bytes --------------------------------------------------


def _line_at(data: bytes, at: int) -> tuple[int, str]:
    """``(line number, excerpt)`` of the line holding offset ``at`` (lines end at LF)."""
    start = data.rfind(b"\n", 0, at) + 1
    end = data.find(b"\n", at)
    end = len(data) if end < 0 else end + 1
    line = data[start:min(end, start + _EXCERPT)]
    shown = repr(line.decode("utf-8", "replace"))[1:-1]
    return data.count(b"\n", 0, start) + 1, shown + ("..." if end - start > _EXCERPT else "")


def _bare(data: bytes, pattern: re.Pattern[bytes], what: str, check: str, total: int) -> Iterator[Finding]:
    if total <= 0:
        return
    first = pattern.search(data)
    if first is None:
        return
    number, line = _line_at(data, first.start())
    yield _finding(check, f"{total} {what} in the data, the first on line {number}: {line}")


def _bare_lf(data: bytes) -> Iterator[Finding]:
    """An LF not after a CR: the server keeps it (only CRLF . CRLF ends the data: smuggling-safe)."""
    yield from _bare(data, _BARE_LF_RE, "bare LF", "data-bare-lf", data.count(b"\n") - data.count(b"\r\n"))


def _bare_cr(data: bytes) -> Iterator[Finding]:
    """A CR not before an LF."""
    yield from _bare(data, _BARE_CR_RE, "bare CR", "data-bare-cr", data.count(b"\r") - data.count(b"\r\n"))


def _long_line(data: bytes) -> Iterator[Finding]:
    """A line longer than :data:`MAX_LINE` octets (its CR, if any, not counted)."""
    if len(data) <= MAX_LINE:
        return
    lines = data.split(b"\n")
    lengths = [len(line) - (line[-1:] == b"\r") for line in lines]
    longest = max(lengths)
    if longest <= MAX_LINE:
        return
    count = sum(length > MAX_LINE for length in lengths)
    index = next(number for number, length in enumerate(lengths) if length > MAX_LINE)
    excerpt = repr(lines[index][:60].decode("utf-8", "replace"))[1:-1]
    yield _finding("line-too-long", f"{count} line(s) over {MAX_LINE} octets (the longest {longest}), "
                                    f"the first is line {index + 1}: {excerpt}...")


def _eight_bit(data: bytes, params: MailParams) -> Iterator[Finding]:
    """8-bit bytes in the data without ``BODY=8BITMIME`` (RFC 6152: 7-bit data otherwise)."""
    if params.body == "8BITMIME" or data.isascii():
        return
    first = _EIGHT_BIT_RE.search(data)
    number, line = _line_at(data, first.start() if first else 0)
    body = f"BODY={params.body}" if params.body else "no BODY parameter"
    yield _finding("8bit-without-8bitmime", f"8-bit data with {body} in MAIL FROM, the first on line {number}: {line}")


def _size(data: bytes, params: MailParams) -> Iterator[Finding]:
    """``SIZE=`` declared fewer octets than were sent (RFC 1870 section 5: the message size,
    CRLFs counted, without the terminating dot and the stuffing dots)."""
    if params.size is not None and params.size < len(data):
        yield _finding("size-parameter-too-small",
                       f"MAIL FROM declared SIZE={params.size}, the client sent {len(data)} octets")


# -- message checks: through the bounded display parser -----------------------------------------


def _headers(part: Message) -> dict[str, list[str]]:
    """A part's header values by lower-case name, as stored (8-bit bytes as surrogate escapes)."""
    found: dict[str, list[str]] = {}
    for name, value in part.raw_items():
        found.setdefault(name.lower(), []).append(value if isinstance(value, str) else str(value))
    return found


def _shown(name: str, value: str) -> str:
    """A header as evidence: one line, 8-bit bytes read as UTF-8."""
    text = " ".join(value[:display.MAX_HEADER_VALUE].split())
    try:
        text = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "replace").decode("utf-8")
    return f"{name}: {text}"


def _missing(msg: Message) -> Iterator[Finding]:
    present = {name.lower() for name in msg}
    for name, check in (("Date", "missing-date"), ("From", "missing-from"), ("Message-ID", "missing-message-id")):
        if name.lower() not in present:
            yield _finding(check, f"no {name} header in the message")


def _bcc_header(msg: Message) -> Iterator[Finding]:
    """A Bcc header in the data: every recipient receives it, so it names the hidden recipients."""
    values = _headers(msg).get("bcc")
    if values:
        yield _finding("bcc-header-sent", _shown("Bcc", values[0]) + " (sent to every recipient)")


def _list_unsubscribe(msg: Message) -> Iterator[Finding]:
    headers = _headers(msg)
    unsubscribe = headers.get("list-unsubscribe")
    if not unsubscribe:
        return
    post = headers.get("list-unsubscribe-post")
    if not post:
        yield _finding("list-unsubscribe-without-post",
                       _shown("List-Unsubscribe", unsubscribe[0]) + " without List-Unsubscribe-Post")
    elif " ".join(post[0].split()).lower() != _ONE_CLICK:
        yield _finding("list-unsubscribe-without-post",
                       _shown("List-Unsubscribe-Post", post[0]) + " is not List-Unsubscribe=One-Click")


def _entities(msg: Message) -> Iterator[Message]:
    """The message and every part in it, depth first (the parser bounds their number and depth)."""
    stack = [msg]
    while stack:
        part = stack.pop()
        yield part
        payload = part.get_payload() if part.is_multipart() else None
        if isinstance(payload, list):
            stack.extend(reversed([child for child in payload if isinstance(child, Message)]))


def _content_ids(msg: Message) -> Iterator[Finding]:
    """The same Content-ID on two parts (RFC 2045 section 7: world-unique)."""
    seen: dict[str, int] = {}
    for part in _entities(msg):
        for value in _headers(part).get("content-id", ()):
            key = " ".join(value.split())
            seen[key] = seen.get(key, 0) + 1
    duplicates = [key for key, count in seen.items() if count > 1]
    if duplicates:
        listed = ", ".join(f"{key} ({seen[key]} parts)" for key in duplicates[:MAX_LISTED])
        yield _finding("duplicate-content-id", f"Content-ID {listed}")


def _html_only(msg: Message) -> Iterator[Finding]:
    """An HTML body with no text/plain body anywhere in the message."""
    html = plain = False
    for part in _entities(msg):
        if part.is_multipart() or (part.get_content_disposition() or "") == "attachment":
            continue
        kind = part.get_content_type()
        html = html or kind == "text/html"
        plain = plain or kind == "text/plain"
    if html and not plain:
        yield _finding("html-without-text", "a text/html body without a text/plain alternative")


def _non_ascii_headers(msg: Message, params: MailParams | None) -> Iterator[Finding]:
    """Raw 8-bit bytes in a header (of the message or a part) without SMTPUTF8 (RFC 6532);
    RFC 2047 encoded words are the way to say it in 7-bit mail. ``params`` None: SMTPUTF8 is
    taken as not given (few clients use it, and non-ASCII headers are the usual mistake)."""
    if params is not None and params.smtputf8:
        return
    count, first = 0, ""
    for part in _entities(msg):
        for name, value in part.raw_items():
            text = value if isinstance(value, str) else str(value)
            if not text.isascii():
                count += 1
                first = first or _shown(name, text)
    if count:
        yield _finding("non-ascii-header", f"{count} header(s) with raw 8-bit text and no SMTPUTF8, the first: {first}")


def _recipients(msg: Message, rcpt_to: list[str]) -> Iterator[Finding]:
    """To/Cc addresses the envelope does not hold (warning), and envelope recipients no header
    names (info: that is how Bcc works)."""
    shown = [a.address for name in ("To", "Cc") for a in display.addresses(msg, name) if "@" in a.address]
    named = {address.lower() for address in shown}
    envelope = {address.lower() for address in rcpt_to}
    missing = list(dict.fromkeys(a for a in shown if a.lower() not in envelope))
    if missing:
        yield _finding("header-recipient-not-in-envelope", _listed(missing) + " in To/Cc, not in RCPT TO")
    named |= {a.address.lower() for a in display.addresses(msg, "Bcc")}
    hidden = list(dict.fromkeys(r for r in rcpt_to if r.lower() not in named))
    if hidden:
        yield _finding("envelope-recipient-not-in-headers", _listed(hidden) + " in RCPT TO, in no To/Cc/Bcc header")


def _listed(addresses: list[str]) -> str:
    more = len(addresses) - MAX_LISTED
    return ", ".join(addresses[:MAX_LISTED]) + (f" and {more} more" if more > 0 else "")
