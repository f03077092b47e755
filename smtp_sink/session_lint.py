"""The command-stream lint of a recorded SMTP session (issue 17, part 2 "protocol"): what the
client did wrong on the wire, as :class:`~smtp_sink.findings.Finding` lists.

Computed when a session is read (never on the event loop), from its events alone, in one pass:

- ``bare-cr-lf-command``: a command line with a bare CR, or ended by a bare LF (RFC 5321 section 2.3.8);
- ``utf8-address-without-smtputf8``: a non-ASCII address in MAIL or RCPT of a transaction whose
  MAIL had no ``SMTPUTF8`` parameter (RFC 6531 section 3.4);
- ``pipelining-not-advertised``: a command sent before the reply to the previous one (both in
  one chunk of input) when the server had not advertised PIPELINING to the client then, e.g.
  after HELO or before the EHLO reply (RFC 2920 section 3);
- ``auth-before-starttls``: AUTH sent in plaintext while STARTTLS was offered (RFC 3207 section 7,
  RFC 8314 section 3);
- ``no-quit``: the client closed the connection without QUIT (RFC 5321 section 4.1.1.10).

:func:`session_findings` reads a session and lints it; :func:`mail_params_for` gives the MAIL
FROM parameters of the transaction that delivered a message (for the message checks).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from .addresses import AddressError, parse_params, split_path
from .findings import Finding
from .sessions import Session, SessionStore

__all__ = ["CHECKS", "check", "mail_params_for", "session_findings", "with_findings"]

# check name -> (severity, reference): docs/sessions.md lists the same
CHECKS = {
    "bare-cr-lf-command": ("error", "RFC 5321 section 2.3.8"),
    "utf8-address-without-smtputf8": ("error", "RFC 6531 section 3.4"),
    "pipelining-not-advertised": ("warning", "RFC 2920 section 3"),
    "auth-before-starttls": ("error", "RFC 3207 section 7, RFC 8314 section 3"),
    "no-quit": ("warning", "RFC 5321 section 4.1.1.10"),
}
MAX_PER_CHECK = 5  # findings of one check per session (the first ones: the evidence, not a flood)


def _shown(text: str) -> str:
    """A line as evidence: CR and LF made visible."""
    return text.replace("\r", "\\r").replace("\n", "\\n")


def _verb(text: str) -> str:
    return text.split(" ", 1)[0].split("\r", 1)[0].split("\n", 1)[0].upper()


def _reply_lines(text: str) -> list[str]:
    """The keywords of a reply's lines (``250-PIPELINING`` -> ``PIPELINING``)."""
    return [line[4:].split(" ", 1)[0].upper() for line in text.split("\n")]


def _address(text: str, prefix: str) -> tuple[str, str]:
    """The path and parameter text of a MAIL FROM: or RCPT TO: line ("" when it does not parse)."""
    rest = text.split(" ", 1)[1] if " " in text else ""
    if rest[: len(prefix)].upper() != prefix:
        return "", ""
    try:
        return split_path(rest[len(prefix):].rstrip("\r\n"))
    except AddressError:
        return "", ""


def check(session: Session) -> list[Finding]:
    """The findings of one session, at most :data:`MAX_PER_CHECK` per check, in the order of :data:`CHECKS`."""
    found: dict[str, list[Finding]] = {name: [] for name in CHECKS}

    def add(name: str, evidence: str) -> None:
        if len(found[name]) < MAX_PER_CHECK:
            severity, reference = CHECKS[name]
            found[name].append(Finding(name, severity, evidence, reference))

    advertised = False  # PIPELINING in the last EHLO reply (since TLS started)
    starttls_offered = False  # STARTTLS in the last EHLO reply
    tls = False
    smtputf8 = False  # the open transaction's MAIL had SMTPUTF8
    last_command: tuple[int, bool, str] | None = None  # (chunk, PIPELINING known when it was sent, text)
    last_verb = ""
    for event in session.events:
        if event.kind == "T":
            tls, advertised, starttls_offered, last_command = True, False, False, None
        elif event.kind == "S":
            if last_verb == "EHLO" and event.text.startswith("250"):
                keywords = _reply_lines(event.text)
                advertised, starttls_offered = "PIPELINING" in keywords, "STARTTLS" in keywords
            elif last_verb == "HELO" and event.text.startswith("250"):
                advertised = starttls_offered = False
            last_verb = ""
        elif event.kind == "D":
            last_command = None  # data is not a command (DATA's 354 was awaited or not: not this check)
        elif event.kind == "C":
            text = event.text
            verb = _verb(text)
            if "\r" in text or text.endswith("\n"):
                add("bare-cr-lf-command", f"{_shown(text)} (a command line must end with CRLF, no CR or LF inside)")
            if last_command is not None and last_command[0] == event.chunk and not last_command[1]:
                add("pipelining-not-advertised",
                    f"{_shown(text)} sent before the reply to {_shown(last_command[2])} (PIPELINING not advertised)")
            if verb == "MAIL":
                path, params = _address(text, "FROM:")
                smtputf8 = "SMTPUTF8" in params.upper().split()
                if not path.isascii() and not smtputf8:
                    add("utf8-address-without-smtputf8", f"{_shown(text)} (no SMTPUTF8 parameter)")
            elif verb == "RCPT":
                path, _ = _address(text, "TO:")
                if not path.isascii() and not smtputf8:
                    add("utf8-address-without-smtputf8", f"{_shown(text)} (the MAIL FROM had no SMTPUTF8 parameter)")
            elif verb == "AUTH" and not tls and starttls_offered:
                add("auth-before-starttls", f"{_shown(text)} sent in plaintext; STARTTLS was offered")
            last_command, last_verb = (event.chunk, advertised, text), verb
    if session.outcome == "disconnect":
        last = next((e.text for e in reversed(session.events) if e.kind == "C"), "")
        add("no-quit", f"the client closed the connection without QUIT (last command: {_shown(last) or 'none'})")
    return [finding for name in CHECKS for finding in found[name]]


def with_findings(session: Session) -> Session:
    """The session with its :attr:`~smtp_sink.sessions.Session.findings` filled in."""
    return dataclasses.replace(session, findings=tuple(check(session)))


def _store(where: Any) -> SessionStore:
    """The session store of a Sink (or anything with ``.store.path``), a SessionStore, or a store folder."""
    if isinstance(where, SessionStore):
        return where
    if isinstance(where, (str, os.PathLike)):
        return SessionStore(os.fspath(where))
    return SessionStore(where.store.path)


def session_findings(where: Any, session_id: str) -> list[Finding]:
    """The command-stream findings of a recorded session (``where``: a Sink, a SessionStore or the
    store folder); [] when there is no such session."""
    session = _store(where).get(session_id)
    return [] if session is None else check(session)


def mail_params_for(where: Any, message_id: str) -> dict[str, str | None] | None:
    """The MAIL FROM parameters (``{"SIZE": "123", "BODY": "8BITMIME", "SMTPUTF8": None}``, keys
    upper-case) of the transaction that delivered a message; None when its session is not recorded
    (a message of the HTTP API, sessions recording off, or past retention)."""
    store = _store(where)
    session_id = store.session_of(message_id)
    session = None if session_id is None else store.get(session_id)
    return None if session is None else mail_params_in(session, message_id)


def mail_params_in(session: Session, message_id: str) -> dict[str, str | None]:
    """The parameters of the ``MAIL FROM`` whose transaction stored ``message_id`` in ``session``
    ({} when the message is not in it, or the line cannot be read)."""
    params = ""
    for event in session.events:
        if event.kind == "C" and _verb(event.text) == "MAIL":
            params = _address(event.text, "FROM:")[1]
        elif event.kind == "M" and event.text.startswith(f"message {message_id} "):
            try:
                return parse_params(params)
            except AddressError:
                return {}
    return {}
