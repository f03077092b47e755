"""The reply-code table: the one place where SMTP reply codes are defined.

Every reply the server sends is built from a :class:`Code` member; nothing else
in the code base writes a reply code as a bare number. :data:`TABLE` holds, per
code, the meaning RFC 5321 (or the extension RFC) gives it and when this server
sends it. The README's reply-code table is rendered from it
(``python -m smtp_sink.replies``) and a test keeps the two identical.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from enum import IntEnum


class Code(IntEnum):
    """SMTP reply codes (RFC 5321 section 4.2.3, RFC 4954, RFC 3207, RFC 1870)."""

    SYSTEM_STATUS = 211
    HELP = 214
    READY = 220
    CLOSING = 221
    AUTH_SUCCEEDED = 235
    OK = 250
    WILL_FORWARD = 251
    CANNOT_VERIFY = 252
    AUTH_CHALLENGE = 334
    START_MAIL_INPUT = 354
    SERVICE_UNAVAILABLE = 421
    MAILBOX_BUSY = 450
    LOCAL_ERROR = 451
    INSUFFICIENT_STORAGE = 452
    TLS_UNAVAILABLE = 454
    SYNTAX_ERROR = 500
    PARAMETER_SYNTAX = 501
    NOT_IMPLEMENTED = 502
    BAD_SEQUENCE = 503
    PARAMETER_NOT_IMPLEMENTED = 504
    AUTH_REQUIRED = 530
    AUTH_FAILED = 535
    ENCRYPTION_REQUIRED = 538
    MAILBOX_UNAVAILABLE = 550
    USER_NOT_LOCAL = 551
    EXCEEDED_STORAGE = 552
    MAILBOX_NAME_NOT_ALLOWED = 553
    TRANSACTION_FAILED = 554
    PARAMETERS_NOT_RECOGNIZED = 555


@dataclass(frozen=True)
class CodeInfo:
    """What a code means (``meaning``, from its RFC) and when we send it (``sent_when``)."""

    code: Code
    meaning: str
    sent_when: str
    rfc: str = "5321"
    provoke: str = ""  # how to make the server send it on purpose


TABLE: dict[Code, CodeInfo] = {
    info.code: info
    for info in (
        CodeInfo(Code.SYSTEM_STATUS, "System status, or system help reply",
                 "`HELP STATUS`: server name, version, uptime and session state",
                 provoke='`HELP STATUS`'),
        CodeInfo(Code.HELP, "Help message",
                 "`HELP` and `HELP <command>`",
                 provoke='`HELP`'),
        CodeInfo(Code.READY, "<domain> Service ready",
                 "the greeting on connect",
                 provoke='connect'),
        CodeInfo(Code.CLOSING, "<domain> Service closing transmission channel",
                 "`QUIT`",
                 provoke='`QUIT`'),
        CodeInfo(Code.AUTH_SUCCEEDED, "Authentication succeeded",
                 "`AUTH` with accepted credentials (`[auth] mode` accept-any or users)", "4954",
                 provoke='`--auth accept-any`, then `AUTH PLAIN <base64 of NUL user NUL password>`'),
        CodeInfo(Code.OK, "Requested mail action okay, completed",
                 "`HELO`/`EHLO`, `MAIL`, `RCPT`, `RSET`, `NOOP`, `VRFY` of a known mailbox, "
                 "`EXPN`, and the end of `DATA` once the `.eml` file is written "
                 "(the text carries the message id)",
                 provoke='`NOOP`'),
        CodeInfo(Code.WILL_FORWARD, "User not local; will forward to <forward-path>",
                 "`RCPT`/`VRFY` of an address with a configured forward",
                 provoke='`[policy] forwards = {"old@x" = "new@y"}`, then `RCPT TO:<old@x>`'),
        CodeInfo(Code.CANNOT_VERIFY,
                 "Cannot VRFY user, but will accept message and attempt delivery",
                 "`VRFY` of an address the server cannot verify (the default)",
                 provoke='`VRFY anyone@example.test` (no mailboxes configured)'),
        CodeInfo(Code.AUTH_CHALLENGE, "Server challenge (base64)",
                 "during an `AUTH` exchange: the next prompt (base64), or an empty one for PLAIN", "4954",
                 provoke='`--auth accept-any`, then `AUTH LOGIN`'),
        CodeInfo(Code.START_MAIL_INPUT, "Start mail input; end with <CRLF>.<CRLF>",
                 "`DATA` after at least one accepted recipient",
                 provoke='`DATA` after an accepted `RCPT`'),
        CodeInfo(Code.SERVICE_UNAVAILABLE,
                 "<domain> Service not available, closing transmission channel",
                 "shutdown (Ctrl-C/SIGTERM), too many connections, idle timeout, a command line or message "
                 "data too slow (`command_timeout`, `data_min_rate`), an unexpected error outside a transaction",
                 provoke=('stop the server with a session open; `max_connections = 1` and a second client;'
                          ' `idle_timeout`; `command_timeout = 1` and `EHLO ` without ending the line;'
                          ' a rule `stage = "connect"`, `code = 421`')),
        CodeInfo(Code.MAILBOX_BUSY, "Requested mail action not taken: mailbox unavailable",
                 "only by a fault rule (temporary refusal, for retry tests)",
                 provoke='a rule: `stage = "rcpt"`, `code = 450`'),
        CodeInfo(Code.LOCAL_ERROR, "Requested action aborted: local error in processing",
                 "the `.eml` file could not be written (nothing half-written is kept); an unexpected error "
                 "inside a transaction (logged with its traceback)",
                 provoke='a full disk during the write (with `min_free_space = 0`); a rule with `code = 451`'),
        CodeInfo(Code.INSUFFICIENT_STORAGE, "Requested action not taken: insufficient system storage",
                 "more recipients than `max_recipients`; at `MAIL`/`DATA` when the store is short of "
                 "`min_free_space` or not writable",
                 provoke=('`max_recipients = 1` and two `RCPT`; free space under `min_free_space`;'
                          ' a store folder that is not writable')),
        CodeInfo(Code.TLS_UNAVAILABLE, "TLS not available due to temporary reason",
                 "`STARTTLS` when TLS is on but no certificate could be made or loaded", "3207",
                 provoke='a rule `stage = "starttls"`, `code = 454`; a store where `tls/` cannot be created'),
        CodeInfo(Code.SYNTAX_ERROR, "Syntax error, command unrecognized",
                 "an unknown command, or a command line longer than the limit",
                 provoke='`FROBNICATE`; a 600-octet command line'),
        CodeInfo(Code.PARAMETER_SYNTAX, "Syntax error in parameters or arguments",
                 "`HELO` without a name, `MAIL FROM:<not an address>`, a missing colon, "
                 "arguments to a command that takes none, an `AUTH` response that is not base64 or `*` (cancel)",
                 provoke='`HELO` alone; `MAIL FROM:<not an address>`'),
        CodeInfo(Code.NOT_IMPLEMENTED, "Command not implemented",
                 "`SEND`, `SOML`, `SAML`, `TURN`, and extensions not offered "
                 "(`STARTTLS` with TLS off, `AUTH` with `[auth] mode = \"off\"`, `BDAT`)",
                 provoke='`TURN`; `EXPN` with `[policy] expn = false`'),
        CodeInfo(Code.BAD_SEQUENCE, "Bad sequence of commands",
                 "`MAIL` before `HELO`/`EHLO`, a second `MAIL` in a transaction, "
                 "`RCPT` before `MAIL`, `DATA` before `RCPT`, `STARTTLS` twice, `AUTH` twice or before `EHLO`",
                 provoke='`RCPT TO:<a@b>` before `MAIL`'),
        CodeInfo(Code.PARAMETER_NOT_IMPLEMENTED, "Command parameter not implemented",
                 "`HELP` on an unknown topic, `BODY=` with an unknown value, `AUTH` with an unknown mechanism",
                 provoke='`HELP FROBNICATE`; `MAIL FROM:<a@b> BODY=BINARYMIME`'),
        CodeInfo(Code.AUTH_REQUIRED, "Authentication required",
                 "`MAIL` without `AUTH` when `[auth] mode = \"users\"`", "4954",
                 provoke='`--auth users`, then `MAIL FROM:<a@b>` before `AUTH`'),
        CodeInfo(Code.AUTH_FAILED, "Authentication credentials invalid",
                 "`AUTH` with a user or password not in `[auth] users`", "4954",
                 provoke='`--auth users`, then `AUTH PLAIN` with a wrong password'),
        CodeInfo(Code.ENCRYPTION_REQUIRED,
                 "Encryption required for requested authentication mechanism",
                 "`AUTH` before STARTTLS when `[auth] require_tls = true`", "4954",
                 provoke='`--auth accept-any --require-tls`, then `AUTH PLAIN` before `STARTTLS`'),
        CodeInfo(Code.MAILBOX_UNAVAILABLE, "Requested action not taken: mailbox unavailable",
                 "`RCPT`/`VRFY` of an unknown mailbox when policy refuses it",
                 provoke=('`[policy] mailboxes = ["ann@x"]`, `unknown = "550"`, then `RCPT TO:<bob@x>`;'
                          ' `EXPN nosuchlist`')),
        CodeInfo(Code.USER_NOT_LOCAL, "User not local; please try <forward-path>",
                 "`RCPT` of a recipient policy sends elsewhere",
                 provoke='`[policy] moved = {"gone@x" = "new@y"}`, then `RCPT TO:<gone@x>`'),
        CodeInfo(Code.EXCEEDED_STORAGE, "Requested mail action aborted: exceeded storage allocation",
                 "a message larger than `max_message_size` (declared by `SIZE=` or sent)",
                 provoke='`MAIL FROM:<a@b> SIZE=999999999`; a message over `max_message_size`'),
        CodeInfo(Code.MAILBOX_NAME_NOT_ALLOWED,
                 "Requested action not taken: mailbox name not allowed",
                 "a recipient address policy does not allow",
                 provoke='`[policy] forbidden = ["root@*"]`, then `RCPT TO:<root@x>`'),
        CodeInfo(Code.TRANSACTION_FAILED, "Transaction failed",
                 "`DATA` when every recipient was refused; a refused greeting",
                 provoke='`DATA` after every `RCPT` was refused; a rule `stage = "connect"`, `code = 554`'),
        CodeInfo(Code.PARAMETERS_NOT_RECOGNIZED,
                 "MAIL FROM/RCPT TO parameters not recognized or not implemented",
                 "an unknown `MAIL`/`RCPT` parameter (e.g. `FOO=1`)",
                 provoke='`MAIL FROM:<a@b> FOO=1`'),
    )
}


_CODE_TEXT: dict[int, str] = {code: str(int(code)) for code in Code}  # "250" without an IntEnum->str per reply


@dataclass(frozen=True, slots=True)
class Reply:
    """One SMTP reply: a code and one or more text lines.

    ``code`` is a plain int: the server's own replies use a :class:`Code` (an int), and a fault
    rule may send any 4xx/5xx its user wants to test (432, 471...); those are user data, not
    codes this server sends, so they are not in :data:`TABLE`."""

    code: int
    lines: tuple[str, ...]
    wire: bytes = field(default=b"", compare=False, repr=False)  # the wire form when made once (wired())

    def wired(self) -> Reply:
        """This reply with its wire form made now: for a reply sent again and again (made once per
        server or per address instead of once per reply)."""
        return Reply(self.code, self.lines, self._encode())

    def encode(self) -> bytes:
        """Wire form: ``250-first``/``250 last`` lines, each ending in CRLF."""
        return self.wire or self._encode()

    def _encode(self) -> bytes:
        lines = self.lines
        code = _CODE_TEXT.get(self.code) or str(self.code)
        if len(lines) == 1:  # the usual case: one line, no loop
            return f"{code} {lines[0]}\r\n".encode("utf-8", "replace")
        last = len(lines) - 1
        return "".join(
            [f"{code}{' ' if i == last else '-'}{line}\r\n" for i, line in enumerate(lines)]
        ).encode("utf-8", "replace")

    @property
    def text(self) -> str:
        """All lines joined with newlines (for logs and tests)."""
        return "\n".join(self.lines)


def reply(code: Code, *lines: str) -> Reply:
    """Build a reply; with no text, the code's RFC meaning is used."""
    return Reply(code, lines or (TABLE[code].meaning,))


def explain(code: int) -> str:
    """One-line explanation of a reply code, for humans (e.g. the client's interactive mode)."""
    try:
        return TABLE[Code(code)].meaning
    except ValueError:
        first = str(code)[:1]
        return {
            "2": "Positive completion (code not in this server's table)",
            "3": "Positive intermediate (code not in this server's table)",
            "4": "Transient negative completion: try again later (code not in this server's table)",
            "5": "Permanent negative completion (code not in this server's table)",
        }.get(first, "Not an SMTP reply code")


def markdown_table() -> str:
    """The README's reply-code table, rendered from :data:`TABLE`."""
    rows = ["| code | meaning (RFC) | this server sends it when | how to provoke it |", "|---|---|---|---|"]
    for info in TABLE.values():
        meaning = info.meaning.replace("<", "&lt;").replace(">", "&gt;")
        rows.append(f"| {int(info.code)} | {meaning} (RFC {info.rfc}) | {info.sent_when} | {info.provoke} |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":  # pragma: no cover - documentation helper
    sys.stdout.write(markdown_table())
