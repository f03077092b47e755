#!/usr/bin/env python3
"""smtp-send: a small SMTP client on a plain socket that shows the whole dialogue.

Standard library only (socket, ssl, email). Use it from the command line (``smtp-send --help``),
interactively (``smtp-send --interactive``) or from Python (:func:`send_message`, :class:`Session`).

Exit codes: 0 delivered to every recipient; 1 some recipients refused (5xx), the message went
to the others; 2 bad usage; 3 a transient refusal (4xx); 4 connection or TLS failure;
5 the message was refused (5xx at MAIL or DATA, every recipient refused, or no login: AUTH
refused or not offered); 130 interrupted.

The client decides on a handful of reply codes RFC 5321 fixes (220, 250, 354, ...); what each
code means for a human comes from ``smtp_sink.replies`` (the project's one table), never a copy.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hmac
import json
import mimetypes
import os
import re
import socket
import ssl
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import formatdate, getaddresses, make_msgid
from pathlib import Path
from typing import Any

EXIT_OK = 0
EXIT_RECIPIENTS_REFUSED = 1
EXIT_USAGE = 2
EXIT_TRANSIENT = 3
EXIT_CONNECTION = 4
EXIT_REFUSED = 5
EXIT_INTERRUPTED = 130

_ADDRESS_RE = re.compile(r"[^@\s<>()\[\],;:\"]+@[^@\s<>()\[\],;:\"]+")


def _explainer() -> Any:
    """``smtp_sink.replies.explain`` (the one reply table), also from a bare checkout.

    Installed: the package. Run as ``clients/smtp_client.py`` without installing: the repository
    root is added to ``sys.path``. Copied on its own: only the class of the code is explained.
    """
    try:
        from smtp_sink.replies import explain
    except ImportError:
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
        try:
            from smtp_sink.replies import explain
        except ImportError:
            sys.path.pop(0)
            return _code_class
    return explain


def _code_class(code: int) -> str:
    """The RFC 5321 class of a reply code (the fallback when smtp_sink.replies is not importable)."""
    return {
        "2": "2xx: positive completion",
        "3": "3xx: positive intermediate, send more",
        "4": "4xx: transient negative completion, try again later",
        "5": "5xx: permanent negative completion",
    }.get(str(code)[:1], "not an SMTP reply code")


class SMTPClientError(Exception):
    """A failure that ends the session, with the exit code it maps to."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass
class Response:
    """A server's reply to the client: code and text lines."""

    code: int
    lines: list[str]

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    def __str__(self) -> str:
        return f"{self.code} {' / '.join(self.lines)}"


@dataclass
class TranscriptEntry:
    """One command (None for the greeting) and its reply, with the time it took."""

    command: str | None
    code: int
    text: str
    seconds: float


@dataclass
class Result:
    """What happened to one message."""

    accepted: list[str] = field(default_factory=list)
    refused: dict[str, Response] = field(default_factory=dict)
    final: Response | None = None
    transcript: list[TranscriptEntry] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        if self.final is None or not self.accepted:
            codes = [r.code for r in self.refused.values()] + ([self.final.code] if self.final else [])
            return EXIT_TRANSIENT if any(400 <= c < 500 for c in codes) else EXIT_REFUSED
        if self.final.code >= 500:
            return EXIT_REFUSED
        if self.final.code >= 400:
            return EXIT_TRANSIENT
        if any(400 <= r.code < 500 for r in self.refused.values()):
            return EXIT_TRANSIENT
        return EXIT_RECIPIENTS_REFUSED if self.refused else EXIT_OK


class Session:
    """An SMTP session on a socket: send commands, read replies, keep a transcript.

    ``echo`` is called with each ``C: ...``/``S: ...`` line as it happens (for ``-v``).
    """

    def __init__(self, host: str = "localhost", port: int = 2525, *, timeout: float = 30.0,
                 tls: ssl.SSLContext | None = None, echo: Any = None) -> None:
        self.host, self.port, self.timeout = host, port, timeout
        self.echo = echo
        self.transcript: list[TranscriptEntry] = []
        self.extensions: dict[str, str] = {}
        self.esmtp = False
        self.encrypted = tls is not None
        try:
            sock = socket.create_connection((host, port), timeout=timeout)
        except OSError as exc:
            raise SMTPClientError(f"cannot connect to {host}:{port}: {exc.strerror or exc}", EXIT_CONNECTION) from None
        if tls is not None:
            sock = self._handshake(tls, sock)
        self._attach(sock)
        self.greeting = self._exchange(None)
        if self.greeting.code != 220:
            raise SMTPClientError(f"server refused the session: {self.greeting}", _class_exit(self.greeting.code))

    def _attach(self, sock: socket.socket) -> None:
        self.sock = sock
        self.reader = sock.makefile("rb")

    def _show(self, prefix: str, text: str) -> None:
        if self.echo is not None:
            self.echo(f"{prefix} {text}")

    def read_reply(self) -> Response:
        """Read one (possibly multi-line) reply."""
        lines: list[str] = []
        while True:
            try:
                raw = self.reader.readline(65536)
            except TimeoutError:
                raise SMTPClientError(
                    f"no reply from {self.host}:{self.port} within {self.timeout:g} s", EXIT_CONNECTION
                ) from None
            except OSError as exc:
                raise SMTPClientError(f"connection to {self.host}:{self.port} lost: {exc}", EXIT_CONNECTION) from None
            if not raw:
                raise SMTPClientError(f"connection to {self.host}:{self.port} closed by the server", EXIT_CONNECTION)
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            self._show("S:", line)
            if len(line) < 3 or not line[:3].isdigit():
                raise SMTPClientError(f"not an SMTP reply: {line!r}", EXIT_CONNECTION)
            lines.append(line[4:])
            if line[3:4] != "-":
                return Response(int(line[:3]), lines)

    def send_line(self, line: str, *, secret: bool = False) -> None:
        """Send one command line (CRLF added); credentials are masked in the transcript."""
        words = line.split(" ")
        if secret:
            shown = "****"
        elif words[0].upper() == "AUTH" and len(words) > 2:
            shown = " ".join([*words[:2], "****"])
        else:
            shown = line
        self._show("C:", shown)
        self.send_raw(line.encode("utf-8") + b"\r\n")

    def send_raw(self, data: bytes) -> None:
        """Send bytes as they are (no CRLF added, nothing shown in the transcript)."""
        try:
            self.sock.sendall(data)
        except OSError as exc:
            raise SMTPClientError(f"connection to {self.host}:{self.port} lost: {exc}", EXIT_CONNECTION) from None

    def _exchange(self, command: str | None) -> Response:
        started = time.monotonic()
        if command is not None:
            self.send_line(command)
        reply = self.read_reply()
        self._record(command, reply, started)
        return reply

    def _record(self, command: str | None, reply: Response, started: float) -> None:
        """Add the exchange to the transcript, timed from ``started``."""
        self.transcript.append(TranscriptEntry(command, reply.code, reply.text, round(time.monotonic() - started, 6)))

    def command(self, line: str) -> Response:
        """Send a command and return its reply."""
        return self._exchange(line)

    def pipeline(self, commands: list[str]) -> list[Response]:
        """Send several commands in one write (PIPELINING), then read their replies in order."""
        started = time.monotonic()
        for line in commands:
            self._show("C:", line)
        self.send_raw(b"".join(line.encode("utf-8") + b"\r\n" for line in commands))
        replies = []
        for line in commands:
            reply = self.read_reply()
            self._record(line, reply, started)
            replies.append(reply)
            if reply.code == 421:  # the server is closing: no more replies will come
                break
        return replies

    def hello(self, name: str | None = None) -> Response:
        """EHLO, falling back to HELO when the server answers 500 or 502."""
        name = name or socket.getfqdn() or "localhost"
        reply = self.command(f"EHLO {name}")
        if reply.code in (500, 502):
            reply = self.command(f"HELO {name}")
            self.esmtp, self.extensions = False, {}
        elif reply.code == 250:
            self.esmtp = True
            self.extensions = {}
            for line in reply.lines[1:]:
                keyword, _, value = line.partition(" ")
                self.extensions[keyword.upper()] = value
        if reply.code != 250:
            raise SMTPClientError(f"HELO/EHLO refused: {reply}", _class_exit(reply.code))
        return reply

    def starttls(self, context: ssl.SSLContext, name: str | None = None) -> None:
        """STARTTLS, then EHLO again on the encrypted channel."""
        if "STARTTLS" not in self.extensions:
            raise SMTPClientError("the server does not offer STARTTLS", EXIT_CONNECTION)
        reply = self.command("STARTTLS")
        if reply.code != 220:
            raise SMTPClientError(f"STARTTLS refused: {reply}", EXIT_CONNECTION)
        self.upgrade(context)
        self.hello(name)

    def upgrade(self, context: ssl.SSLContext) -> None:
        """The TLS handshake on this connection (after the server's 220 to STARTTLS)."""
        self._attach(self._handshake(context, self.sock))
        self.encrypted = True
        self.extensions, self.esmtp = {}, False  # RFC 3207: forget what was said in the clear

    def _handshake(self, context: ssl.SSLContext, sock: socket.socket) -> ssl.SSLSocket:
        """``sock`` wrapped in TLS; a failure says why, and how to trust smtp-sink's own certificate."""
        try:
            return context.wrap_socket(sock, server_hostname=self.host)
        except ssl.SSLCertVerificationError as exc:
            sock.close()
            raise SMTPClientError(
                f"TLS handshake with {self.host}:{self.port} failed: the server's certificate is not trusted "
                f"({exc.verify_message}); for smtp-sink's own certificate pass --cafile <store>/tls/ca.pem "
                "(e.g. --cafile mail/tls/ca.pem), or --insecure to skip the check", EXIT_CONNECTION) from None
        except (ssl.SSLError, OSError) as exc:
            sock.close()
            reason = exc.reason if isinstance(exc, ssl.SSLError) and exc.reason else exc.strerror or exc
            raise SMTPClientError(f"TLS handshake with {self.host}:{self.port} failed: {reason}",
                                  EXIT_CONNECTION) from None

    def login(self, user: str, password: str, mechanism: str | None = None) -> None:
        """AUTH PLAIN (or LOGIN when PLAIN is not offered); ``mechanism`` (PLAIN, LOGIN or CRAM-MD5,
        where ``password`` is the shared secret) is used whether offered or not."""
        mechanisms = self.extensions.get("AUTH", "").upper().split()
        chosen = mechanism.upper() if mechanism else next((m for m in ("PLAIN", "LOGIN") if m in mechanisms), None)
        if chosen == "PLAIN":
            token = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
            reply = self.command(f"AUTH PLAIN {token}")
        elif chosen in ("LOGIN", "CRAM-MD5"):
            reply = self.command(f"AUTH {chosen}")
            for secret in ((user, password) if chosen == "LOGIN" else (None,)):
                if reply.code != 334:
                    break
                if secret is None:  # CRAM-MD5 (RFC 2195): the user and the HMAC-MD5 of the challenge
                    secret = f"{user} {hmac.new(password.encode(), _challenge(reply), 'md5').hexdigest()}"
                self.send_line(base64.b64encode(secret.encode()).decode(), secret=True)
                reply = self.read_reply()
        else:
            raise SMTPClientError(self._no_login(mechanisms), EXIT_REFUSED)
        if reply.code != 235:
            raise SMTPClientError(f"authentication failed: {reply}", _class_exit(reply.code))

    def _no_login(self, mechanisms: list[str]) -> str:
        """Why ``login`` cannot log in (nothing was sent), and what would help."""
        if mechanisms:
            return f"the server offers AUTH {' '.join(mechanisms)}, neither PLAIN nor LOGIN: not logged in"
        if "STARTTLS" in self.extensions and not self.encrypted:
            return "the server offers no AUTH before TLS: add --starttls (and --cafile or --insecure)"
        return ("the server offers no AUTH, so --user cannot log in; for smtp-sink start it with "
                "`smtp-sink serve --auth accept-any` (any user and password)")

    def data(self, content: bytes) -> Response:
        """Send the message body (line endings made CRLF, dots stuffed) and the final dot."""
        started = time.monotonic()
        wire = to_wire(content)
        if self.echo is not None:
            for line in wire.decode("utf-8", "replace").split("\r\n")[:-1]:
                self._show("C:", line)
        self.send_raw(wire)
        reply = self.read_reply()
        self._record("<message>", reply, started)
        return reply

    def quit(self) -> None:
        """QUIT and close, ignoring a server that already hung up."""
        with contextlib.suppress(SMTPClientError):
            self.command("QUIT")
        self.close()

    def close(self) -> None:
        """Close the connection without QUIT."""
        try:
            self.reader.close()
            self.sock.close()
        except OSError:
            pass


def _challenge(reply: Response) -> bytes:
    """The decoded base64 challenge of a 334 reply."""
    try:
        return base64.b64decode(reply.text, validate=True)
    except ValueError:  # binascii.Error
        raise SMTPClientError(f"not a base64 challenge: {reply}", EXIT_CONNECTION) from None


def to_wire(content: bytes) -> bytes:
    """CRLF line endings whatever the input has (LF, CRLF or lone CR), dot-stuffing, the final dot."""
    content = re.sub(rb"\r\n|\r|\n", b"\r\n", content)
    if not content.endswith(b"\r\n"):
        content += b"\r\n"
    return (b"\r\n" + content).replace(b"\r\n.", b"\r\n..")[2:] + b".\r\n"


def _class_exit(code: int) -> int:
    return EXIT_TRANSIENT if 400 <= code < 500 else EXIT_REFUSED


def check_address(address: str, option: str) -> str:
    """A plain ``local@domain`` address, or a usage error naming the option."""
    if not _ADDRESS_RE.fullmatch(address):
        raise SMTPClientError(f"malformed address {address!r} in {option}", EXIT_USAGE)
    return address


def tls_context(insecure: bool, cafile: str | None = None) -> ssl.SSLContext:
    """Verify the server's certificate (against ``cafile`` when given), unless ``insecure``."""
    try:
        context = ssl.create_default_context(cafile=cafile)
    except (OSError, ssl.SSLError) as exc:
        raise SMTPClientError(f"--cafile {cafile}: not a readable PEM certificate file ({exc})", EXIT_USAGE) from None
    if insecure:  # self-signed certificates, e.g. smtp-sink's own
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def serialize(message: EmailMessage, extensions: dict[str, str], utf8: bool = False) -> bytes:
    """The message's bytes for this server: 8-bit parts only if it offers 8BITMIME, else base64/QP."""
    chosen = policy.SMTPUTF8 if utf8 else policy.SMTP
    if "8BITMIME" not in extensions:
        chosen = chosen.clone(cte_type="7bit")
    return message.as_bytes(policy=chosen)


def deliver(session: Session, sender: str, recipients: Sequence[str], content: bytes | EmailMessage,
            *, all_or_nothing: bool = False) -> Result:
    """One transaction on a greeted session: MAIL, RCPT for each recipient, DATA.

    An :class:`EmailMessage` is serialized for what the server advertised (see :func:`serialize`);
    bytes are sent as they are (line endings made CRLF, dots stuffed). ``all_or_nothing``: a refused
    recipient cancels the transaction (RSET; the result has no final reply).
    """
    result = Result()
    utf8 = not (sender.isascii() and all(r.isascii() for r in recipients))
    if utf8 and "SMTPUTF8" not in session.extensions:
        raise SMTPClientError("non-ASCII addresses need SMTPUTF8, which the server does not offer", EXIT_REFUSED)
    if isinstance(content, EmailMessage):
        content = serialize(content, session.extensions, utf8)
    options = []
    if "SIZE" in session.extensions:
        options.append(f"SIZE={len(content)}")
    if "8BITMIME" in session.extensions and not content.isascii():
        options.append("BODY=8BITMIME")
    if utf8:
        options.append("SMTPUTF8")
    mail = f"MAIL FROM:<{sender}>" + "".join(f" {o}" for o in options)
    rcpts = [f"RCPT TO:<{r}>" for r in recipients]
    if "PIPELINING" in session.extensions:
        replies = session.pipeline([mail, *rcpts])
    else:
        replies = [session.command(mail)]
        for line in rcpts if replies[0].code == 250 else ():
            replies.append(session.command(line))
            if replies[-1].code == 421:
                break
    if replies[-1].code == 421:  # the server is closing the connection
        result.final = replies[-1]
        return result
    if replies[0].code != 250:
        result.final = replies[0]
        session.command("RSET")
        return result
    for recipient, reply in zip(recipients, replies[1:], strict=True):
        if reply.code in (250, 251):
            result.accepted.append(recipient)
        else:
            result.refused[recipient] = reply
    if not result.accepted or (all_or_nothing and result.refused):
        session.command("RSET")
        return result
    reply = session.command("DATA")
    if reply.code != 354:
        result.final = reply
        return result
    result.final = session.data(content)
    return result


def send_message(
    content: bytes | EmailMessage,
    sender: str,
    recipients: Sequence[str],
    *,
    host: str = "localhost",
    port: int = 2525,
    starttls: bool = False,
    implicit_tls: bool = False,
    insecure: bool = False,
    cafile: str | None = None,
    user: str | None = None,
    password: str | None = None,
    helo: str | None = None,
    timeout: float = 30.0,
    echo: Any = None,
) -> Result:
    """Send one message and return what happened (refusals are in the result, not raised).

    Raises :class:`SMTPClientError` when the session itself fails (connection, TLS, AUTH).
    """
    context = tls_context(insecure, cafile) if (starttls or implicit_tls) else None
    session = Session(host, port, timeout=timeout, tls=context if implicit_tls else None, echo=echo)
    try:
        session.hello(helo)
        if starttls:
            assert context is not None
            session.starttls(context, helo)
        if user is not None:
            session.login(user, password or "")
        result = deliver(session, sender, recipients, content)
        session.quit()
    finally:
        session.close()
    result.transcript = session.transcript
    return result


def build_message(args: argparse.Namespace) -> EmailMessage:
    """The message the flags describe (Bcc never becomes a header)."""
    message = EmailMessage()
    message["From"] = args.sender
    if args.to:
        message["To"] = ", ".join(args.to)
    if args.cc:
        message["Cc"] = ", ".join(args.cc)
    message["Subject"] = args.subject
    message["Date"] = formatdate(localtime=True)
    message["Message-ID"] = make_msgid(domain=args.sender.rpartition("@")[2] or None)
    for header in args.header:
        name, sep, value = header.partition(":")
        if not sep or not name.strip() or not re.fullmatch(r"[\x21-\x39\x3b-\x7e]+", name.strip()):
            raise SMTPClientError(f"bad --header {header!r}: expected 'Name: value'", EXIT_USAGE)
        message[name.strip()] = value.strip()
    body = args.body if args.body is not None else "This is a test message sent by smtp-send.\n"
    if args.body_file:
        body = _read(args.body_file, "--body-file").decode("utf-8", "replace")
    message.set_content(body)
    if args.html:
        message.add_alternative(_read(args.html, "--html").decode("utf-8", "replace"), subtype="html")
    for path in args.attach:
        data = _read(path, "--attach")
        kind, _ = mimetypes.guess_type(path)
        maintype, _, subtype = (kind or "application/octet-stream").partition("/")
        message.add_attachment(data, maintype=maintype, subtype=subtype, filename=Path(path).name)
    return message


def _read(path: str, option: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise SMTPClientError(f"cannot read {option} file {path!r}: {exc.strerror}", EXIT_USAGE) from None


def eml_envelope(raw: bytes, args: argparse.Namespace) -> tuple[bytes, str, list[str]]:
    """Sender and recipients for ``--eml``: from the flags, else from the file's headers.

    A Bcc header is removed from what is sent (its addresses stay in the envelope).
    """
    parsed = BytesParser(policy=policy.compat32).parsebytes(raw, headersonly=True)
    sender = args.sender or next((a for _, a in getaddresses(parsed.get_all("From", []))), "")
    recipients = args.to + args.cc + args.bcc
    if not recipients:
        recipients = [a for _, a in getaddresses(parsed.get_all("To", []) + parsed.get_all("Cc", []) +
                                                 parsed.get_all("Bcc", [])) if a]
    if parsed["Bcc"] is not None:
        raw = re.sub(rb"(?im)^Bcc:.*\r?\n(?:[ \t].*\r?\n)*", b"", raw, count=1)
    if not sender:
        raise SMTPClientError("--eml: no sender: give --from or a From header", EXIT_USAGE)
    if not recipients:
        raise SMTPClientError("--eml: no recipients: give --to or To/Cc/Bcc headers", EXIT_USAGE)
    return raw, sender, recipients


def parse_server(text: str) -> tuple[str, int]:
    """``HOST[:PORT]`` (``[v6]:PORT`` too) as host and port; 2525 when no port is given."""
    host, sep, port = text.rpartition(":")
    if not sep:
        return text, 2525
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise SMTPClientError(f"bad --server {text!r}: expected HOST[:PORT]", EXIT_USAGE)
    return host.strip("[]") or "localhost", int(port)


def interactive(session: Session, explain: Any, stdin: Any = None, out: Any = None,
                tls: ssl.SSLContext | None = None) -> int:
    """A telnet-like prompt: type raw commands; each reply is printed with its meaning.

    Ends at QUIT, a 221/421 reply, or end of input (Ctrl-D). After ``STARTTLS`` and its 220 the
    connection is upgraded with ``tls`` (default: verify the certificate).
    """
    stdin = stdin or sys.stdin
    out = out or sys.stdout
    tty = stdin.isatty()
    if tty:
        with contextlib.suppress(ImportError):  # not on every platform
            import readline  # noqa: F401 - history and line editing for input()

    def show(reply: Response) -> None:
        for i, line in enumerate(reply.lines if session.echo is None else ()):  # else echo showed them
            sep = "-" if i < len(reply.lines) - 1 else " "
            print(f"S: {reply.code}{sep}{line}", file=out)
        print(f"   ({reply.code}: {explain(reply.code)})", file=out)

    show(session.greeting)
    in_data = False
    while True:
        try:
            line = input("smtp> " if not in_data else "") if tty else stdin.readline()
        except (EOFError, KeyboardInterrupt):  # Ctrl-D / Ctrl-C at the prompt: leave
            print(file=out)
            break
        if not tty and line == "":
            break
        line = line.rstrip("\r\n")
        if in_data:  # raw, as telnet would send it: the user does the dot-stuffing
            session.send_raw(line.encode() + b"\r\n")
            if line == ".":
                in_data = False
                show(session.read_reply())
            continue
        if not line:
            continue
        session.send_line(line)
        reply = session.read_reply()
        show(reply)
        if reply.code == 354:
            in_data = True
            print("   (type the message; a line with a single dot ends it)", file=out)
        if line.upper() == "STARTTLS" and reply.code == 220:
            session.upgrade(tls or tls_context(insecure=False))
            print("   (TLS is on; say EHLO again)", file=out)
        if line.upper() == "QUIT" or reply.code in (221, 421):
            break
    session.close()
    return EXIT_OK


def _seconds(text: str) -> float:
    """A positive number of seconds (argparse type)."""
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value < 1e6:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="smtp-send",
        description="Send a message over SMTP on a plain socket and show the dialogue.",
        epilog="Exit codes: 0 delivered to all; 1 some recipients refused (5xx); 2 bad usage; "
               "3 transient refusal (4xx); 4 connection or TLS failure; 5 message or login refused (5xx, or no AUTH); "
               "130 interrupted.",
    )
    parser.add_argument("--server", default="localhost:2525", help="HOST[:PORT] (default localhost:2525)")
    parser.add_argument("--from", dest="sender", help="sender address (default smtp-send@localhost)")
    parser.add_argument("--to", action="append", default=[], help="recipient (repeat for more)")
    parser.add_argument("--cc", action="append", default=[], help="Cc recipient (repeat for more)")
    parser.add_argument("--bcc", action="append", default=[], help="Bcc recipient: envelope only, never a header")
    parser.add_argument("--subject", default="Test from smtp-send", help="Subject header")
    body = parser.add_mutually_exclusive_group()
    body.add_argument("--body", help="message text")
    body.add_argument("--body-file", metavar="FILE", help="message text from a file")
    parser.add_argument("--html", metavar="FILE", help="an HTML alternative from a file")
    parser.add_argument("--attach", metavar="FILE", action="append", default=[], help="attach a file (repeatable)")
    parser.add_argument("--header", metavar='"K: V"', action="append", default=[], help="extra header (repeatable)")
    parser.add_argument("--eml", metavar="FILE", help="send this message file as it is")
    parser.add_argument("--helo", help="name to give in EHLO/HELO (default: this host's name)")
    parser.add_argument("--starttls", action="store_true", help="upgrade to TLS with STARTTLS")
    parser.add_argument("--tls", action="store_true", help="implicit TLS from the first byte (e.g. port 465)")
    parser.add_argument("--insecure", action="store_true", help="accept any TLS certificate (self-signed)")
    parser.add_argument("--cafile", metavar="PEM", help="trust this CA (e.g. smtp-sink's <store>/tls/ca.pem)")
    parser.add_argument("--user", help="AUTH user name (PLAIN, else LOGIN)")
    parser.add_argument("--password", help="AUTH password")
    parser.add_argument("--timeout", type=_seconds, default=30.0, help="socket timeout in seconds (default 30)")
    parser.add_argument("-v", "--verbose", action="store_true", help="print the whole dialogue (C:/S: lines)")
    parser.add_argument("--json", action="store_true", help="print a JSON record of the session")
    parser.add_argument("-i", "--interactive", action="store_true", help="type raw SMTP commands yourself")
    return parser


_PATH_OPTIONS = {"body_file", "html", "attach", "eml"}  # file names may be any bytes; text must be UTF-8


def check_text(args: argparse.Namespace) -> None:
    """Text options are valid UTF-8, and those that become headers hold no line break."""
    for name, value in vars(args).items():
        if name in _PATH_OPTIONS:
            continue
        for text in value if isinstance(value, list) else [value]:
            if not isinstance(text, str):
                continue
            option = "--" + ("from" if name == "sender" else name.replace("_", "-"))
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                raise SMTPClientError(f"{option}: not valid UTF-8 text", EXIT_USAGE) from None
            if name in ("subject", "header") and ("\r" in text or "\n" in text):
                raise SMTPClientError(f"{option} {text!r}: a header cannot hold a line break", EXIT_USAGE)


def run(args: argparse.Namespace) -> int:
    """Do what the flags say: send one message (or the interactive prompt); return the exit code."""
    check_text(args)
    host, port = parse_server(args.server)
    if args.interactive:
        context = tls_context(args.insecure, args.cafile) if args.tls else None
        piped = None if sys.stdin.isatty() else print  # show what was sent when it is not typed
        session = Session(host, port, timeout=args.timeout, tls=context, echo=piped)
        return interactive(session, _explainer(), tls=tls_context(args.insecure, args.cafile))
    content, sender, recipients = _message(args)
    result = send_message(
        content, sender, recipients, host=host, port=port, starttls=args.starttls, implicit_tls=args.tls,
        insecure=args.insecure, cafile=args.cafile, user=args.user, password=args.password, helo=args.helo,
        timeout=args.timeout, echo=print if args.verbose and not args.json else None,
    )
    if args.json:
        print(json.dumps(json_record(result, f"{host}:{port}", sender), indent=2))
    for address, reply in result.refused.items():
        print(f"smtp-send: recipient {address} refused: {reply}", file=sys.stderr)
    if result.final is not None and result.final.code >= 400:
        print(f"smtp-send: message refused: {result.final}", file=sys.stderr)
    elif result.final is not None and not args.json:
        print(f"smtp-send: delivered to {len(result.accepted)} recipient(s): {result.final}", file=sys.stderr)
    return result.exit_code


def _message(args: argparse.Namespace) -> tuple[bytes | EmailMessage, str, list[str]]:
    """What to send and its envelope: the ``--eml`` file, or a message built from the flags."""
    for option in ("to", "cc", "bcc"):
        for address in getattr(args, option):
            check_address(address, f"--{option}")
    content: bytes | EmailMessage
    if args.eml:
        content, sender, recipients = eml_envelope(_read(args.eml, "--eml"), args)
        if not (args.to or args.cc or args.bcc):
            for address in recipients:
                check_address(address, "the --eml file's To/Cc/Bcc headers")
    else:
        args.sender = args.sender or "smtp-send@localhost"
        recipients = args.to + args.cc + args.bcc
        if not recipients:
            raise SMTPClientError("no recipients: give --to (or --cc/--bcc)", EXIT_USAGE)
        content, sender = build_message(args), args.sender
    check_address(sender, "--from" if args.sender else "the --eml file's From header")
    return content, sender, recipients


def json_record(result: Result, server: str, sender: str) -> dict[str, Any]:
    """The ``--json`` record of one session (shape in docs/client.md)."""
    return {
        "server": server,
        "from": sender,
        "accepted": result.accepted,
        "refused": {a: {"code": r.code, "text": r.text} for a, r in result.refused.items()},
        "final": {"code": result.final.code, "text": result.final.text} if result.final else None,
        "exit_code": result.exit_code,
        "transcript": [asdict(entry) for entry in result.transcript],
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``smtp-send`` console script."""
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except SMTPClientError as exc:
        print(f"smtp-send: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("smtp-send: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # stdout closed early (| head): stop quietly
        with contextlib.suppress(OSError):
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - keeps the interpreter's final flush quiet
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
