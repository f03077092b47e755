"""The SMTP session as a sans-I/O state machine (RFC 5321, 1870, 2920, 3207, 4954, 6152, 6531).

Bytes go in through :meth:`SMTPSession.feed`; out come, in order, :class:`~smtp_sink.replies.Reply`
objects to send, a :class:`MessageReceived` for each complete message (the caller stores it and
sends :func:`accepted` or :func:`store_failed`), :data:`START_TLS` when the caller must run the
TLS handshake (then :meth:`SMTPSession.tls_started`), and :data:`CLOSE` when the connection must end.
No sockets, no files, no clock: every rule here is testable without a network. A feed stops
once its replies pass an output budget and :meth:`SMTPSession.resume` carries on, so the caller can
stop executing a client's pipelined commands while that client does not read its replies.

DATA is located with ``bytes.find`` over the new bytes only (plus the last four bytes seen),
and dot-stuffing is undone with one ``replace``: no per-line loop in Python. The terminator is
only ``CRLF . CRLF``; a bare LF followed by a dot is message content (SMTP-smuggling safe).
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Any, ClassVar

from . import __version__
from .addresses import AddressError, parse_mailbox, parse_params, split_path
from .replies import Code, Reply, explain, reply
from .sasl import MECHANISMS, Credentials, SASLError, SASLExchange, check
from .trace import Envelope

if TYPE_CHECKING:
    from .config import Config
    from .rules import Rule

# RFC 5321 section 4.5.3.1.4: a command line is at most 512 octets including CRLF. Extensions
# may lengthen MAIL: SIZE (RFC 1870) +26, BODY (RFC 6152) +14, SMTPUTF8 (RFC 6531) +10,
# AUTH= (RFC 4954) +500. RFC 4954 section 4: an AUTH line or SASL response may be 12288 octets.
COMMAND_LINE_MAX = 512
MAIL_LINE_MAX = COMMAND_LINE_MAX + 26 + 14 + 10 + 500
AUTH_LINE_MAX = 12288
LINE_LIMITS = {"MAIL": MAIL_LINE_MAX, "RCPT": MAIL_LINE_MAX, "AUTH": AUTH_LINE_MAX}
TERMINATOR = b"\r\n.\r\n"
# Back-pressure: one feed() or resume() stops before the next command once its replies pass this
# many characters (see SMTPSession.feed). A caller whose client does not read its replies stops there.
OUTPUT_BUDGET = 4096
EVENT_COST = 64  # what an output other than a reply counts against the budget (a stored message's reply)


class State(Enum):
    """Where a session is in the RFC 5321 command sequence."""

    CONNECTED = "connected"  # greeting sent, no HELO/EHLO yet
    GREETED = "greeted"  # HELO/EHLO accepted, no transaction open
    MAIL = "mail"  # MAIL FROM accepted, no recipient accepted yet
    RCPT = "rcpt"  # at least one RCPT TO accepted
    DATA = "data"  # reading the message after 354
    QUIT = "quit"  # QUIT answered or the session was closed


class _Close:
    """Marker: the caller must close the connection after sending what came before."""

    def __repr__(self) -> str:
        return "CLOSE"


CLOSE = _Close()


class _StartTLS:
    """Marker: after sending what came before, run the server side of the TLS handshake."""

    def __repr__(self) -> str:
        return "START_TLS"


START_TLS = _StartTLS()


@dataclass(slots=True)
class MessageReceived:
    """A complete message: ``data`` is exactly what the client sent, dot-stuffing undone (a
    ``bytearray`` when it arrived in several chunks: built in place, never joined)."""

    envelope: Envelope
    data: bytes | bytearray


@dataclass(frozen=True, slots=True)
class Delay:
    """Fault rule: wait this long before sending what follows."""

    seconds: float


@dataclass(frozen=True, slots=True)
class Throttle:
    """Fault rule: read the rest of this session at most ``rate`` bytes per second."""

    rate: int


Output = Reply | MessageReceived | _Close | _StartTLS | Delay | Throttle


@dataclass(frozen=True)
class Settings:
    """The parts of the configuration a session needs."""

    hostname: str = "smtp-sink.localhost"
    max_message_size: int = 33554432  # 0: no limit
    max_recipients: int = 1000  # 0: no limit
    smtputf8: bool = True
    auth: str = "off"  # off | accept-any | users
    users: tuple[tuple[str, str], ...] = ()  # (name, password) for auth = users
    require_tls: bool = False  # AUTH before TLS gets 538
    starttls: bool = False  # STARTTLS offered and working
    tls_unavailable: str = ""  # why TLS is configured but cannot work (STARTTLS gets 454)
    output_budget: int = OUTPUT_BUDGET  # reply characters per feed() before it stops; 0: no limit

    @classmethod
    def from_config(cls, config: Config, **changes: Any) -> Settings:
        """The settings of ``config`` (``[smtp]`` and ``[auth]``), with ``changes`` applied."""
        smtp, auth = config.smtp, config.auth
        return cls(**{
            "hostname": smtp.hostname, "max_message_size": smtp.max_message_size,
            "max_recipients": smtp.max_recipients, "smtputf8": smtp.smtputf8, "auth": auth.mode,
            "users": tuple(auth.users.items()), "require_tls": auth.require_tls, **changes,
        })


class Policy:
    """Envelope decisions. This default accepts everything; ``policy.py`` provides the real ones.

    Each hook returns ``None`` to accept or a reply to send instead.
    """

    def check_sender(self, envelope: Envelope, address: str) -> Reply | None:
        """Decide on ``MAIL FROM``."""
        return None

    def check_recipient(self, envelope: Envelope, address: str) -> Reply | None:
        """Decide on ``RCPT TO``; a 2xx reply (e.g. 251) accepts with that text."""
        return None

    def forwarded(self, address: str) -> list[str]:
        """Recipients added because ``address`` is forwarded (answered 251)."""
        return []

    def fault(self, stage: str, client: str, sender: str | None, recipients: list[str]) -> Rule | None:
        """The fault rule that fires now, if any (see :mod:`smtp_sink.rules`)."""
        return None

    def check_data(self, envelope: Envelope) -> Reply | None:
        """Decide on ``DATA`` before 354 (e.g. 452 when the store cannot take mail)."""
        return None

    def verify(self, address: str) -> Reply:
        """Answer ``VRFY``."""
        return reply(Code.CANNOT_VERIFY, f"Cannot VRFY {address}, but will accept the message")

    def expand(self, name: str) -> Reply:
        """Answer ``EXPN``."""
        return reply(Code.MAILBOX_UNAVAILABLE, f"{name}: no such mailing list")


HELP_TOPICS: dict[str, str] = {
    "HELO": "HELO <hostname>: introduce yourself (plain SMTP)",
    "EHLO": "EHLO <hostname>: introduce yourself and list the extensions (ESMTP)",
    "MAIL": "MAIL FROM:<sender> [SIZE=n] [BODY=7BIT|8BITMIME] [SMTPUTF8]: start a transaction",
    "RCPT": "RCPT TO:<recipient>: add a recipient (repeat for more)",
    "DATA": "DATA: send the message, end with a line holding a single dot",
    "RSET": "RSET: abort the current transaction",
    "NOOP": "NOOP: do nothing, answer 250",
    "QUIT": "QUIT: end the session",
    "VRFY": "VRFY <address>: ask whether a mailbox exists",
    "EXPN": "EXPN <list>: list the members of a mailing list",
    "HELP": "HELP [command|STATUS]: this help, or the session status",
    "STARTTLS": "STARTTLS: switch this connection to TLS, then EHLO again (RFC 3207)",
    "AUTH": "AUTH PLAIN|LOGIN|CRAM-MD5 [initial-response]: log in (RFC 4954)",
    "SEND": "SEND FROM:<sender>: deliver to a terminal (not implemented, 502)",
    "SOML": "SOML FROM:<sender>: send or mail (not implemented, 502)",
    "SAML": "SAML FROM:<sender>: send and mail (not implemented, 502)",
    "TURN": "TURN: swap client and server roles (not implemented, 502)",
}


def _valid_helo_name(name: str) -> bool:
    """A HELO/EHLO argument: one non-empty word of printable characters (RFC 5321 section 4.1.1.1)."""
    return bool(name) and all(" " < ch != "\x7f" for ch in name)


def accepted(message_id: str) -> Reply:
    """The final reply once a message is safely stored."""
    return reply(Code.OK, f"OK: queued as {message_id}")


def store_failed() -> Reply:
    """The final reply when a message could not be stored (nothing was kept)."""
    return reply(Code.LOCAL_ERROR, "Requested action aborted: local error in processing")


def _cost(outputs: list[Output], start: int) -> int:
    """What ``outputs[start:]`` count against the output budget: reply characters, events flat."""
    total = 0
    for item in outputs[start:]:
        if type(item) is Reply:
            lines = item.lines  # type: ignore[union-attr]
            total += sum(map(len, lines)) + 6 * len(lines)
        else:
            total += EVENT_COST
    return total


def _dots_in(tail: bytes, chunk: bytes) -> int:
    """Lines of ``chunk`` that start with ".", one starting at the seam with ``tail`` included."""
    seam = tail[-2:] + chunk[:2]
    return chunk.count(b"\r\n.") + (seam[:3] == b"\r\n." or seam[1:4] == b"\r\n.")


def shutting_down(hostname: str, why: str = "shutting down") -> Reply:
    """421: the server closes the connection (shutdown, timeout, too many connections)."""
    return reply(Code.SERVICE_UNAVAILABLE, f"{hostname} Service not available, {why}")


class SMTPSession:
    """One SMTP session. Call :meth:`greeting` once, then :meth:`feed` with each chunk received."""

    # Command verb -> handler method name (one line per command; bound on use, not per session).
    _DISPATCH: ClassVar[dict[str, str]] = {
        "HELO": "_helo",
        "EHLO": "_ehlo",
        "MAIL": "_mail",
        "RCPT": "_rcpt",
        "DATA": "_data",
        "RSET": "_rset",
        "NOOP": "_noop",
        "QUIT": "_quit",
        "VRFY": "_vrfy",
        "EXPN": "_expn",
        "HELP": "_help",
        "SEND": "_not_implemented",
        "SOML": "_not_implemented",
        "SAML": "_not_implemented",
        "TURN": "_not_implemented",
        "STARTTLS": "_starttls",
        "AUTH": "_auth",
        "BDAT": "_not_implemented",
    }

    def __init__(self, settings: Settings, policy: Policy | None = None, peer: str = "", tls: bool = False) -> None:
        self.settings = settings
        self.policy = policy or Policy()
        self.peer = peer
        self.state = State.CONNECTED
        self.helo = ""
        self.esmtp = False
        self.tls = tls  # the connection is encrypted (implicit TLS, or after STARTTLS)
        self.auth_user: str | None = None
        self._sasl: SASLExchange | None = None  # an AUTH exchange waiting for the client's response
        self._tls_starting = False  # STARTTLS answered 220: the rest of the input is discarded
        self.envelope = Envelope(peer=peer, tls=tls)
        self.messages = 0
        self._refused_rcpt = 0
        # Input not executed yet: a partial command line, or (pending) what the output budget held back.
        self._buf = b""
        self._pos = 0  # where the unexecuted input starts in _buf
        self.pending = False  # feed() stopped at the output budget with input left: call resume()
        self._discarding = False  # inside an over-long command line, until its LF
        # Set to a list to collect the input as it is executed, credentials masked (for debug logs).
        self.transcript: list[bytes] | None = None
        # DATA reading
        self.data_phase = 0  # DATA phases begun (354 sent): the caller times each one
        self.data_bytes = 0  # bytes received in the current DATA phase
        self._parts: list[bytes | bytearray] = []  # the message read so far: one piece (see _add_data)
        self._size = 0  # bytes kept for the message, stuffing dots included
        self._dots = 0  # stuffing dots among them, once counted (see _over_limit)
        self._counting = False  # _dots is kept up to date chunk by chunk
        self._tail = b""
        self._oversize = False
        self._stuffed = False  # a line of the message being read starts with "." (undo dot-stuffing)
        self._no_service = False  # a connect rule refused the session: only QUIT is served
        self._out: list[Output] = []

    # -- entry points -------------------------------------------------------------------

    def greeting(self) -> list[Output]:
        """What to send on connect: the 220 banner, or what a connect fault rule says."""
        out = self._out = []
        fault = self._fault("connect")
        if fault is None:
            out.append(reply(Code.READY, f"{self.settings.hostname} ESMTP smtp-sink {__version__} ready"))
        elif isinstance(fault, Reply):
            out.append(fault)
            # RFC 5321 section 3.1: after a 554 greeting only QUIT is served.
            self._no_service = self.state is not State.QUIT
        if self.state is State.QUIT and (not out or out[-1] is not CLOSE):
            out.append(CLOSE)
        return out

    def _fault(self, stage: str, recipients: list[str] | None = None, sender: str | None = None) -> Reply | None:
        """Apply a fault rule for this stage: events go out now; a refusal reply is returned.

        A delay or throttle rule adds its event and returns None (go on as usual); a disconnect
        rule ends the session (state QUIT, nothing to send); a reply rule returns its reply.
        """
        if sender is None and stage not in ("connect", "helo"):
            sender = self.envelope.mail_from
        rule = self.policy.fault(stage, self.peer, sender, self.envelope.rcpt_to if recipients is None else recipients)
        if rule is None:
            return None
        if rule.action == "delay":
            self._out.append(Delay(rule.seconds))
            return None
        if rule.action == "throttle":
            self._out.append(Throttle(rule.rate))
            return None
        if rule.action == "disconnect":
            self.state = State.QUIT
            return None
        code = Code(rule.code) if rule.code in Code._value2member_map_ else rule.code
        if rule.code == Code.SERVICE_UNAVAILABLE:
            self.state = State.QUIT  # 421 closes the channel
        return Reply(code, rule.lines or (explain(rule.code),))  # type: ignore[arg-type]

    def feed(self, data: bytes) -> list[Output]:
        """Consume received bytes; return replies and events in the order they happen.

        Once the replies of this call pass ``settings.output_budget`` characters, it stops before
        the next command and keeps the rest: :attr:`pending` is then True and :meth:`resume`
        carries on. A caller whose client does not read its replies waits before resuming (and
        reads nothing meanwhile), so a flood of pipelined commands costs bounded memory.
        """
        out = self._out = []
        if self.state is State.QUIT:
            return out
        buf, pos = self._buf, self._pos
        if data:
            buf, pos = (buf[pos:] + data if buf else data), 0
        self._buf, self._pos, self.pending = b"", 0, False
        self._run(buf, pos)
        return out

    def resume(self) -> list[Output]:
        """Execute input that :meth:`feed` held back (see :attr:`pending`), up to the budget again."""
        return self.feed(b"")

    @property
    def partial_line(self) -> bool:
        """A command line has begun and not ended (the caller gives it a deadline)."""
        return (not self.pending and self.state is not State.DATA and self.state is not State.QUIT
                and (bool(self._buf) or self._discarding))

    def _run(self, buf: bytes, pos: int) -> None:
        """Execute ``buf`` from ``pos``: command lines and DATA, until the input or the budget ends."""
        out = self._out
        budget, spent, counted = self.settings.output_budget, 0, 0
        transcript = self.transcript
        while True:
            if budget and len(out) > counted:
                spent += _cost(out, counted)
                counted = len(out)
                if spent >= budget and pos < len(buf):
                    if pos > len(buf) // 2:  # keep only what is left (halving: linear copying in all)
                        buf, pos = buf[pos:], 0
                    self._buf, self._pos, self.pending = buf, pos, True
                    return
            if self.state is State.DATA:
                rest = self._feed_data(buf[pos:] if pos else buf)
                if rest is None or self.state is State.QUIT:
                    return
                buf, pos = rest, 0
                continue
            nl = buf.find(b"\n", pos)
            if nl < 0:
                rest = buf[pos:] if pos else buf
                if len(rest) > AUTH_LINE_MAX:  # no newline in sight: drop it, answer at the LF
                    self._discarding = True
                    rest = b""
                self._buf = rest
                return
            line = buf[pos:nl]
            if transcript is not None:
                transcript.append(b"(over-long line dropped)" if self._discarding else self._masked(buf[pos : nl + 1]))
            pos = nl + 1
            if self._discarding:
                self._discarding = False
                out.append(self._line_too_long())
                continue
            self._command(line)
            if self.state is State.QUIT or self._tls_starting:
                # After STARTTLS, pipelined plaintext is discarded (RFC 3207 section 4.2).
                return

    def tls_started(self) -> None:
        """The TLS handshake after STARTTLS succeeded: start over (RFC 3207 section 4.2)."""
        self._tls_starting = False
        self.tls = True
        self.state = State.CONNECTED
        self.helo, self.esmtp, self.auth_user = "", False, None
        self._reset_transaction()

    def close(self) -> None:
        """Mark the session closed (the connection is gone); a message in progress is dropped."""
        self.state = State.QUIT
        self._parts = []
        self._buf, self._pos, self.pending = b"", 0, False

    # -- command mode -------------------------------------------------------------------

    def _masked(self, line: bytes) -> bytes:
        """``line`` for a log (its first 200 bytes): an AUTH argument or SASL response hidden."""
        if self._sasl is not None and line.rstrip(b"\r\n") != b"*":
            return b"(AUTH response hidden)"
        words = line[:5].upper() == b"AUTH " and line.split(None, 2)
        if words and len(words) > 2:
            return b"AUTH " + words[1][:20] + b" (initial response hidden)"
        return line[:200]

    def _line_too_long(self) -> Reply:
        """The answer to an over-long line, however it arrived: inside AUTH it ends the exchange."""
        if self._sasl is not None:
            self._sasl = None
            return reply(Code.PARAMETER_SYNTAX, f"Cannot decode AUTH response: longer than {AUTH_LINE_MAX} octets")
        return reply(Code.SYNTAX_ERROR, "Line too long")

    def _command(self, raw: bytes) -> None:
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        if self._sasl is not None:
            self._out.append(self._sasl_response(raw))
            return
        verb_end = raw.find(b" ")
        verb_bytes = raw if verb_end < 0 else raw[:verb_end]
        verb = verb_bytes.decode("ascii", "replace").upper()
        limit = LINE_LIMITS.get(verb, COMMAND_LINE_MAX)
        if len(raw) + 2 > limit:
            self._out.append(self._line_too_long())
            return
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            self._out.append(reply(Code.SYNTAX_ERROR, "Command contains bytes that are not UTF-8"))
            return
        arg = "" if verb_end < 0 else line[verb_end + 1 :].strip()
        name = self._DISPATCH.get(verb)
        handler: Callable[[str], Reply | None] | None = None if name is None else getattr(self, name)
        if self._no_service and verb != "QUIT":
            result: Reply | None = reply(Code.BAD_SEQUENCE, "Bad sequence of commands: no service here, send QUIT")
        elif handler is None:
            if not verb:
                result = reply(Code.SYNTAX_ERROR, "Error: bad syntax")
            else:
                result = reply(Code.SYNTAX_ERROR, f"Command unrecognized: {verb[:32]}")
        else:
            result = handler(arg)
        if result is not None:
            self._out.append(result)
        if self.state is State.QUIT:
            self._out.append(CLOSE)
        elif self._tls_starting:
            self._out.append(START_TLS)

    def _reset_transaction(self) -> None:
        self.envelope = Envelope(
            helo=self.helo, esmtp=self.esmtp, peer=self.peer, tls=self.tls, auth_user=self.auth_user
        )
        self._refused_rcpt = 0

    def _helo(self, arg: str) -> Reply | None:
        if not _valid_helo_name(arg):
            return reply(Code.PARAMETER_SYNTAX, "Syntax: HELO <hostname>")
        refusal = self._fault("helo")
        if refusal is not None or self.state is State.QUIT:
            return refusal
        self._greet(arg, esmtp=False)
        return reply(Code.OK, f"{self.settings.hostname} Hello {arg} [{self.peer}]")

    def _ehlo(self, arg: str) -> Reply | None:
        if not _valid_helo_name(arg):
            return reply(Code.PARAMETER_SYNTAX, "Syntax: EHLO <hostname>")
        refusal = self._fault("helo")
        if refusal is not None or self.state is State.QUIT:
            return refusal
        self._greet(arg, esmtp=True)
        lines = [f"{self.settings.hostname} Hello {arg} [{self.peer}]"]
        if self.settings.max_message_size:
            lines.append(f"SIZE {self.settings.max_message_size}")
        else:
            lines.append("SIZE")
        lines += ["8BITMIME", "PIPELINING"]
        if self.settings.smtputf8:
            lines.append("SMTPUTF8")
        if self.settings.starttls and not self.tls:
            lines.append("STARTTLS")
        if self.settings.auth != "off" and (self.tls or not self.settings.require_tls):
            lines.append("AUTH " + " ".join(MECHANISMS))
        lines.append("HELP")
        return reply(Code.OK, *lines)

    def _greet(self, name: str, esmtp: bool) -> None:
        self.helo, self.esmtp = name, esmtp
        self.state = State.GREETED
        self._reset_transaction()

    def _mail(self, arg: str) -> Reply | None:
        if self.state is State.CONNECTED:
            return reply(Code.BAD_SEQUENCE, "Bad sequence of commands: send HELO/EHLO first")
        if self.state is not State.GREETED:
            return reply(Code.BAD_SEQUENCE, "Bad sequence of commands: nested MAIL command")
        if arg[:5].upper() != "FROM:":
            return reply(Code.PARAMETER_SYNTAX, "Syntax: MAIL FROM:<address> [parameters]")
        if self.settings.auth == "users" and self.auth_user is None:
            return reply(Code.AUTH_REQUIRED, "Authentication required: AUTH first")
        try:
            path, param_text = split_path(arg[5:])
            address = parse_mailbox(path, allow_empty=True)
            params = parse_params(param_text)
        except AddressError as exc:
            return reply(Code.PARAMETER_SYNTAX, f"Syntax error in MAIL FROM: {exc}")
        if params and not self.esmtp:
            return reply(Code.PARAMETERS_NOT_RECOGNIZED, "MAIL parameters need EHLO, not HELO")
        smtputf8 = False
        for key, value in params.items():
            if key == "SIZE":
                if value is None or not value.isdigit() or len(value) > 20:
                    return reply(Code.PARAMETER_SYNTAX, "SIZE needs a number of octets")
                limit = self.settings.max_message_size
                if limit and int(value) > limit:
                    return reply(
                        Code.EXCEEDED_STORAGE,
                        f"Message size {value} exceeds fixed maximum message size {limit}",
                    )
            elif key == "BODY":
                body = (value or "").upper()
                if body == "BINARYMIME":
                    return reply(Code.PARAMETER_NOT_IMPLEMENTED, "BODY=BINARYMIME needs CHUNKING")
                if body not in ("7BIT", "8BITMIME"):
                    return reply(Code.PARAMETER_SYNTAX, "BODY must be 7BIT or 8BITMIME")
            elif key == "SMTPUTF8" and self.settings.smtputf8:
                if value is not None:
                    return reply(Code.PARAMETER_SYNTAX, "SMTPUTF8 takes no value")
                smtputf8 = True
            elif key == "AUTH" and self.settings.auth != "off":
                pass  # RFC 4954 section 5: the original submitter, for relays; a sink records the login
            else:
                return reply(Code.PARAMETERS_NOT_RECOGNIZED, f"MAIL parameter {key} not recognized")
        if not smtputf8 and not address.isascii():
            return reply(Code.MAILBOX_NAME_NOT_ALLOWED, "Non-ASCII address needs the SMTPUTF8 parameter")
        refusal = self._fault("mail", sender=address) or self.policy.check_sender(self.envelope, address)
        if refusal is not None or self.state is State.QUIT:
            return refusal
        self.envelope.mail_from = address
        self.envelope.mail_params = params
        self.envelope.smtputf8 = smtputf8
        self.state = State.MAIL
        return reply(Code.OK, f"<{address}>... Sender ok")

    def _rcpt(self, arg: str) -> Reply | None:
        if self.state in (State.CONNECTED, State.GREETED):
            return reply(Code.BAD_SEQUENCE, "Bad sequence of commands: need MAIL before RCPT")
        if arg[:3].upper() != "TO:":
            return reply(Code.PARAMETER_SYNTAX, "Syntax: RCPT TO:<address>")
        try:
            path, param_text = split_path(arg[3:])
            # RFC 5321 section 4.5.1: <Postmaster> without a domain must be accepted.
            address = path if path.lower() == "postmaster" else parse_mailbox(path)
            params = parse_params(param_text)
        except AddressError as exc:
            return reply(Code.PARAMETER_SYNTAX, f"Syntax error in RCPT TO: {exc}")
        if params:
            return reply(Code.PARAMETERS_NOT_RECOGNIZED, f"RCPT parameter {next(iter(params))} not recognized")
        if not self.envelope.smtputf8 and not address.isascii():
            self._refused_rcpt += 1
            return reply(Code.MAILBOX_NAME_NOT_ALLOWED, "Non-ASCII address needs the SMTPUTF8 parameter")
        limit = self.settings.max_recipients
        if limit and len(self.envelope.rcpt_to) >= limit:
            self._refused_rcpt += 1
            return reply(Code.INSUFFICIENT_STORAGE, f"Too many recipients (limit {limit})")
        decision = self._fault("rcpt", recipients=[address])
        if self.state is State.QUIT:
            return None
        decision = decision or self.policy.check_recipient(self.envelope, address)
        if decision is not None and decision.code >= 300:
            self._refused_rcpt += 1
            return decision
        self.envelope.rcpt_to.append(address)
        if decision is not None and decision.code == Code.WILL_FORWARD:
            self.envelope.rcpt_to.extend(self.policy.forwarded(address))
        self.state = State.RCPT
        return decision or reply(Code.OK, f"<{address}>... Recipient ok")

    def _data(self, arg: str) -> Reply | None:
        if arg:
            return reply(Code.PARAMETER_SYNTAX, "Syntax: DATA (no arguments)")
        if self.state in (State.CONNECTED, State.GREETED):
            return reply(Code.BAD_SEQUENCE, "Bad sequence of commands: need MAIL before DATA")
        if self.state is State.MAIL:
            if self._refused_rcpt:
                return reply(Code.TRANSACTION_FAILED, "Transaction failed: no valid recipients")
            return reply(Code.BAD_SEQUENCE, "Bad sequence of commands: need RCPT before DATA")
        refusal = self._fault("data") or self.policy.check_data(self.envelope)
        if refusal is not None or self.state is State.QUIT:
            return refusal
        self.state = State.DATA
        self.data_phase += 1
        self.data_bytes = 0
        self._parts = []
        self._size = self._dots = 0
        self._counting = False
        self._tail = b"\r\n"  # the CRLF ending the DATA line: ".\r\n" at once is an empty message
        self._oversize = False
        return reply(Code.START_MAIL_INPUT, "Start mail input; end with <CRLF>.<CRLF>")

    def _rset(self, arg: str) -> Reply:
        if arg:
            return reply(Code.PARAMETER_SYNTAX, "Syntax: RSET (no arguments)")
        if self.state is not State.CONNECTED:
            self.state = State.GREETED
        self._reset_transaction()
        return reply(Code.OK, "OK")

    def _noop(self, arg: str) -> Reply:
        return reply(Code.OK, "OK")

    def _quit(self, arg: str) -> Reply:
        if arg:
            return reply(Code.PARAMETER_SYNTAX, "Syntax: QUIT (no arguments)")
        self.state = State.QUIT
        return reply(Code.CLOSING, f"{self.settings.hostname} Service closing transmission channel")

    def _vrfy(self, arg: str) -> Reply:
        if not arg:
            return reply(Code.PARAMETER_SYNTAX, "Syntax: VRFY <address>")
        path = arg[1:-1] if arg.startswith("<") and arg.endswith(">") else arg
        return self.policy.verify(path)

    def _expn(self, arg: str) -> Reply:
        if not arg:
            return reply(Code.PARAMETER_SYNTAX, "Syntax: EXPN <list>")
        return self.policy.expand(arg)

    def _help(self, arg: str) -> Reply:
        topic = arg.upper()
        if not topic:
            return reply(
                Code.HELP,
                f"smtp-sink {__version__}: a local mail sink. Commands:",
                " ".join(HELP_TOPICS),
                "HELP <command> explains one; HELP STATUS shows this session",
            )
        if topic == "STATUS":
            return reply(
                Code.SYSTEM_STATUS,
                f"{self.settings.hostname} smtp-sink {__version__}",
                f"state {self.state.value}, client {self.helo or '(no HELO yet)'} [{self.peer}]",
                f"TLS {'on' if self.tls else 'off'}, "
                f"{'authenticated as ' + self.auth_user if self.auth_user is not None else 'not authenticated'}",
                f"messages accepted in this session: {self.messages}",
            )
        text = HELP_TOPICS.get(topic)
        if text is None:
            return reply(Code.PARAMETER_NOT_IMPLEMENTED, f"HELP topic {arg[:32]} unknown")
        return reply(Code.HELP, text)

    def _starttls(self, arg: str) -> Reply | None:
        settings = self.settings
        if not settings.starttls:
            if settings.tls_unavailable:
                return reply(Code.TLS_UNAVAILABLE, f"TLS not available: {settings.tls_unavailable}")
            return self._not_implemented(arg)
        if arg:
            return reply(Code.PARAMETER_SYNTAX, "Syntax: STARTTLS (no arguments)")
        if self.tls:
            return reply(Code.BAD_SEQUENCE, "Bad sequence of commands: TLS already active")
        if self.state in (State.MAIL, State.RCPT):
            return reply(Code.BAD_SEQUENCE, "Bad sequence of commands: STARTTLS inside a transaction, RSET first")
        refusal = self._fault("starttls")
        if refusal is not None or self.state is State.QUIT:
            return refusal
        self._tls_starting = True
        return reply(Code.READY, "Ready to start TLS")

    def _auth(self, arg: str) -> Reply | None:
        settings = self.settings
        if settings.auth == "off":
            return self._not_implemented(arg)
        if not self.esmtp:
            return reply(Code.BAD_SEQUENCE, "Bad sequence of commands: send EHLO first")
        if self.auth_user is not None:
            return reply(Code.BAD_SEQUENCE, "Bad sequence of commands: already authenticated")
        if self.state in (State.MAIL, State.RCPT):
            return reply(Code.BAD_SEQUENCE, "Bad sequence of commands: AUTH inside a transaction")
        mechanism, _, initial = arg.partition(" ")
        mechanism, initial = mechanism.upper(), initial.strip()
        if not mechanism:
            return reply(Code.PARAMETER_SYNTAX, "Syntax: AUTH <mechanism> [initial-response]")
        if mechanism not in MECHANISMS:
            return reply(Code.PARAMETER_NOT_IMPLEMENTED,
                         f"Unrecognized authentication type {mechanism[:20]} (use {', '.join(MECHANISMS)})")
        if settings.require_tls and not self.tls:
            return reply(Code.ENCRYPTION_REQUIRED, "Encryption required for requested authentication mechanism")
        refusal = self._fault("auth")
        if refusal is not None or self.state is State.QUIT:
            return refusal
        self._sasl = SASLExchange(mechanism, settings.hostname)
        try:
            return self._sasl_result(self._sasl.start(initial or None))
        except SASLError as exc:
            self._sasl = None
            return reply(Code.PARAMETER_SYNTAX, f"Cannot decode AUTH response: {exc}")

    def _sasl_response(self, raw: bytes) -> Reply:
        """One line of an AUTH exchange: a base64 response, or ``*`` to cancel."""
        exchange = self._sasl
        assert exchange is not None
        if raw == b"*":
            self._sasl = None
            return reply(Code.PARAMETER_SYNTAX, "Authentication cancelled")
        if len(raw) + 2 > AUTH_LINE_MAX:
            return self._line_too_long()
        try:
            return self._sasl_result(exchange.step(raw.decode("ascii", "replace").strip()))
        except SASLError as exc:
            self._sasl = None
            return reply(Code.PARAMETER_SYNTAX, f"Cannot decode AUTH response: {exc}")

    def _sasl_result(self, result: bytes | Credentials) -> Reply:
        if isinstance(result, bytes):  # a challenge
            return reply(Code.AUTH_CHALLENGE, base64.b64encode(result).decode("ascii"))
        self._sasl = None
        if not check(result, self.settings.auth, dict(self.settings.users)):
            return reply(Code.AUTH_FAILED, "Authentication credentials invalid")
        self.auth_user = result.username
        self._reset_transaction()
        return reply(Code.AUTH_SUCCEEDED, "Authentication successful")

    def _not_implemented(self, arg: str) -> Reply:
        return reply(Code.NOT_IMPLEMENTED, "Command not implemented")

    # -- DATA mode ----------------------------------------------------------------------

    def _feed_data(self, data: bytes) -> bytes | None:
        """Take message bytes; at the terminator emit the message and return what follows it."""
        self.data_bytes += len(data)
        tail = self._tail
        # The terminator may straddle the previous chunk: look at the seam, then at the chunk.
        found = (tail + data[:4]).find(TERMINATOR)
        if found >= 0:
            cut = found - len(tail)  # may be negative: it started in the previous chunk
        else:
            if not self._stuffed and b"\r\n." in tail[-2:] + data[:2]:  # a line starting with "." at the seam
                self._stuffed = True
            cut = self._scan(data)
            if cut < 0:
                self._add_data(data)
                if self.transcript is not None:
                    self.transcript.append(data[:200])
                return None
        end = cut + 2  # the message keeps the CRLF before the dot
        if end > 0:
            self._add_data(data[:end])
        elif end < 0:
            self._drop_tail(-end)
        if self.transcript is not None:
            self.transcript.append(data[: min(cut + 5, 200)])
        self._finish_message()
        return data[cut + 5 :]

    def _scan(self, data: bytes) -> int:
        """Where the terminator starts in ``data`` (-1: not in it), noting a stuffed dot before it.

        Both start with CRLF ".": a chunk without a "." (most of a big message) costs one memchr,
        and one search finds the first of either. A "CRLF ." cut off by the chunk's end counts as
        stuffed (it may be a terminator the next seam finds: unstuffing then finds nothing)."""
        dot = data.find(b".")
        if dot < 0:
            return -1
        start = dot - 2 if dot > 2 else 0
        if not self._stuffed:
            hit = data.find(b"\r\n.", start)
            if hit < 0 or data[hit + 3 : hit + 5] == b"\r\n":
                return hit
            self._stuffed = True
            start = hit + 1
        return data.find(TERMINATOR, start)

    def _add_data(self, chunk: bytes) -> None:
        if self._counting:
            self._dots += _dots_in(self._tail, chunk)
        self._size += len(chunk)
        if not self._oversize:
            parts = self._parts
            if not parts:
                parts.append(chunk)  # a message in one chunk (most) is kept as received: no copy
            else:
                # More chunks go into one growing buffer as they come: each received chunk is freed
                # at once and its memory reused, instead of a message's worth of chunks living on
                # until a join copies them (twice the memory, and fresh pages for every big message).
                if type(parts[0]) is bytes:
                    parts[0] = bytearray(parts[0])
                parts[0] += chunk  # type: ignore[operator]
            if self.settings.max_message_size and self._over_limit():
                self._oversize = True
                self._parts = []
        self._tail = chunk[-4:] if len(chunk) >= 4 else (self._tail + chunk)[-4:]

    def _over_limit(self) -> bool:
        """The message kept so far is surely over max_message_size (RFC 1870: stuffing dots not counted).

        The last 2 bytes may be ".\r" of a terminator split across chunks (_drop_tail uncounts
        them): only past limit + 2 is it surely too large. Dots are counted only once the raw
        size passes that, over what was kept and then chunk by chunk: a message well under the
        limit costs no counting.
        """
        limit = self.settings.max_message_size + 2
        if self._size - self._dots <= limit:
            return False
        if self._stuffed and not self._counting:
            kept = self._parts[0]
            self._dots = kept.count(b"\r\n.") + (kept[:1] == b".")
            self._counting = True
        return self._size - self._dots > limit

    def _drop_tail(self, count: int) -> None:
        """Remove bytes already kept (the terminator started inside the previous chunk)."""
        self._size -= count
        if self._counting:  # the terminator's dot was counted as stuffing
            self._dots -= 1
        if self._parts:
            kept = self._parts[0]
            if isinstance(kept, bytearray):
                del kept[max(len(kept) - count, 0):]
            else:
                self._parts[0] = kept[:max(len(kept) - count, 0)]

    def _finish_message(self) -> None:
        envelope = self.envelope
        limit = self.settings.max_message_size
        raw = self._parts[0] if self._parts else b""  # the message, in one piece (see _add_data)
        self._parts = []
        if self._stuffed and not self._oversize:
            # Undo dot-stuffing (RFC 5321 section 4.5.2): a leading period of any line is removed.
            # (_feed_data saw a line start with "."; else there is nothing to scan for.)
            if raw[:1] == b".":
                raw = raw[1:]
            raw = raw.replace(b"\r\n.", b"\r\n")
        self._stuffed = False
        oversize = self._oversize or bool(limit and len(raw) > limit)  # RFC 1870: the size after unstuffing
        # The after-data rule runs while the state is still DATA (an error there is inside the transaction).
        refusal = None if oversize else self._fault("after-data", recipients=envelope.rcpt_to,
                                                    sender=envelope.mail_from)
        if self.state is not State.QUIT:
            self.state = State.GREETED
        self._reset_transaction()
        if oversize:
            self._out.append(reply(Code.EXCEEDED_STORAGE, f"Message exceeds fixed maximum message size {limit}"))
            return
        if refusal is not None or self.state is State.QUIT:  # refused or dropped: nothing is stored
            if refusal is not None:
                self._out.append(refusal)
            if self.state is State.QUIT:
                self._out.append(CLOSE)
            return
        self.messages += 1
        self._out.append(MessageReceived(envelope, raw))
