"""The SMTP session as a sans-I/O state machine (RFC 5321, 1870, 2920, 3207, 4954, 6152, 6531).

Bytes go in through :meth:`SMTPSession.feed`; out come, in order, :class:`~smtp_sink.replies.Reply`
objects to send, a :class:`MessageReceived` for each complete message (the caller stores it and
sends :func:`accepted` or :func:`store_failed`), :data:`START_TLS` when the caller must run the
TLS handshake (then :meth:`SMTPSession.tls_started`), :class:`~smtp_sink.rules.Delay` and
:class:`~smtp_sink.rules.Throttle` from fault rules, and :data:`CLOSE` when the connection must
end. No sockets, no files, no clock: every rule here is testable without a network (a CRAM-MD5
challenge comes from a source the caller injects). A feed stops once its replies pass an output
budget and :meth:`SMTPSession.resume` carries on, so the caller can stop executing a client's
pipelined commands while that client does not read its replies.

Which command may run when is data: :data:`VERBS` holds, per verb, its handler, the states it
is out of sequence in (with the 503 reply there) and its HELP text, and one check
(:meth:`SMTPSession._refusal`) applies it before any handler runs. Reading the message after
354 is :class:`~smtp_sink.data_reader.DataReader`'s job.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any

from . import __version__
from .addresses import AddressError, parse_mailbox, parse_params, split_path
from .config import AuthMode
from .data_reader import DataReader
from .replies import Code, Reply, reply
from .rules import Delay, Disconnect, Outcome, Refuse, Stage, StoreThenDrop, Throttle
from .sasl import MECHANISMS, Credentials, SASLError, SASLExchange, check
from .trace import Envelope

if TYPE_CHECKING:
    from .config import Config

__all__ = [
    "AUTH_LINE_MAX", "CLOSE", "COMMAND_LINE_MAX", "MAIL_LINE_MAX", "START_TLS", "UNRECOGNIZED", "VERBS", "Delay",
    "MessageReceived", "Output", "Policy", "SMTPSession", "Settings", "State", "Throttle", "Verb", "accepted",
    "shutting_down", "store_failed",
]

# RFC 5321 section 4.5.3.1.4: a command line is at most 512 octets including CRLF. Extensions
# may lengthen MAIL: SIZE (RFC 1870) +26, BODY (RFC 6152) +14, SMTPUTF8 (RFC 6531) +10,
# AUTH= (RFC 4954) +500. RFC 4954 section 4: an AUTH line or SASL response may be 12288 octets.
COMMAND_LINE_MAX = 512
MAIL_LINE_MAX = COMMAND_LINE_MAX + 26 + 14 + 10 + 500
AUTH_LINE_MAX = 12288
LINE_LIMITS = {"MAIL": MAIL_LINE_MAX, "RCPT": MAIL_LINE_MAX, "AUTH": AUTH_LINE_MAX}
# Back-pressure: one feed() or resume() stops before the next command once its replies pass this
# many characters (see SMTPSession.feed). A caller whose client does not read its replies stops there.
OUTPUT_BUDGET = 4096
EVENT_COST = 64  # what an output other than a reply counts against the budget (a stored message's reply)


class State(Enum):
    """Where a session is in the RFC 5321 command sequence."""

    CONNECTED = "connected"  # greeting sent, no HELO/EHLO yet
    NO_SERVICE = "no-service"  # a connect rule refused the greeting: only QUIT is served (RFC 5321 section 3.1)
    GREETED = "greeted"  # HELO/EHLO accepted, no transaction open
    MAIL = "mail"  # MAIL FROM accepted, no recipient accepted yet
    RCPT = "rcpt"  # at least one RCPT TO accepted
    DATA = "data"  # reading the message after 354
    QUIT = "quit"  # QUIT answered or the session was closed


# The members as module constants for the per-command code: on Python 3.11 reading an attribute of
# an Enum class goes through EnumType.__getattr__'s hook (about 0.1 us, a dozen times per message).
_CONNECTED, _NO_SERVICE, _GREETED = State.CONNECTED, State.NO_SERVICE, State.GREETED
_MAIL, _RCPT, _DATA, _QUIT = State.MAIL, State.RCPT, State.DATA, State.QUIT
_AT_CONNECT, _AT_HELO, _AT_MAIL, _AT_RCPT = Stage.CONNECT, Stage.HELO, Stage.MAIL, Stage.RCPT
_AT_DATA, _AT_AFTER_DATA = Stage.DATA, Stage.AFTER_DATA
_CODE_OK, _AUTH_USERS = Code.OK, AuthMode.USERS


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
    drop: bool = False  # a store-then-drop rule fired: store it, send no reply (CLOSE follows; docs/retries.md)


Output = Reply | MessageReceived | _Close | _StartTLS | Delay | Throttle


@dataclass(frozen=True)
class Settings:
    """The parts of the configuration a session needs. The configured ones have no defaults here:
    build with :meth:`from_config` (the defaults live in :mod:`smtp_sink.config` only)."""

    hostname: str
    max_message_size: int  # 0: no limit
    max_recipients: int  # 0: no limit
    smtputf8: bool
    auth: AuthMode
    users: tuple[tuple[str, str], ...]  # (name, password) for auth = users
    require_tls: bool  # AUTH before TLS gets 538
    starttls: bool = False  # STARTTLS offered and working (the server knows once its certificate is loaded)
    tls_unavailable: str = ""  # why TLS is configured but cannot work (STARTTLS gets 454)
    output_budget: int = OUTPUT_BUDGET  # reply characters per feed() before it stops; 0: no limit

    def __post_init__(self) -> None:
        object.__setattr__(self, "auth", AuthMode(self.auth))  # "accept-any" given as text works too

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

    def fault(self, stage: Stage, client: str, sender: str | None, recipients: list[str]) -> Outcome | None:
        """What the fault rule that fires now does, if one does (see :mod:`smtp_sink.rules`)."""
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


def _valid_helo_name(name: str) -> bool:
    """A HELO/EHLO argument: one non-empty word of printable characters (RFC 5321 section 4.1.1.1)."""
    if name.isascii() and name.isprintable():  # the usual: printable ASCII, so only a space can be wrong
        return bool(name) and " " not in name
    return bool(name) and all(" " < ch != "\x7f" for ch in name)


_by_hostname: dict[tuple[str, str], Reply] = {}  # the 220 greeting and the 221 to QUIT of a hostname


def _host_reply(kind: str, hostname: str) -> Reply:
    """The greeting (``kind`` "220") or the QUIT reply ("221") naming ``hostname``: made once per
    server, not once per session."""
    key = (kind, hostname)
    made = _by_hostname.get(key)
    if made is None:
        made = (reply(Code.READY, f"{hostname} ESMTP smtp-sink {__version__} ready") if kind == "220" else
                reply(Code.CLOSING, f"{hostname} Service closing transmission channel")).wired()
        if len(_by_hostname) >= 64:  # hostnames come from the configuration: a few per process
            _by_hostname.clear()
        _by_hostname[key] = made
    return made


_ehlo_tails: dict[tuple[int, bool, str], tuple[tuple[str, ...], bytes]] = {}  # see SMTPSession._ehlo


def _ehlo_tail(size: int, smtputf8: bool, offers: str) -> tuple[tuple[str, ...], bytes]:
    """The EHLO lines after the first (the extensions) and their wire form, made once per combination."""
    key = (size, smtputf8, offers)
    made = _ehlo_tails.get(key)
    if made is None:
        lines = [f"SIZE {size}" if size else "SIZE", "8BITMIME", "PIPELINING"]
        if smtputf8:
            lines.append("SMTPUTF8")
        lines += [line for line in offers.split("\n") if line]
        lines.append("HELP")
        wire = "".join(f"250{' ' if i == len(lines) - 1 else '-'}{line}\r\n" for i, line in enumerate(lines))
        if len(_ehlo_tails) >= 64:
            _ehlo_tails.clear()
        made = _ehlo_tails[key] = (tuple(lines), wire.encode())
    return made


def accepted(message_id: str) -> Reply:
    """The final reply once a message is safely stored."""
    text = f"OK: queued as {message_id}"
    return Reply(_CODE_OK, (text,), f"250 {text}\r\n".encode())  # its wire form at once (one per message)


def store_failed() -> Reply:
    """The final reply when a message could not be stored (nothing was kept)."""
    return reply(Code.LOCAL_ERROR, "Requested action aborted: local error in processing")


def shutting_down(hostname: str, why: str = "shutting down") -> Reply:
    """421: the server closes the connection (shutdown, timeout, too many connections)."""
    return reply(Code.SERVICE_UNAVAILABLE, f"{hostname} Service not available, {why}")


def _cost(outputs: list[Output], start: int) -> int:
    """What ``outputs[start:]`` count against the output budget: reply characters, events flat."""
    total = 0
    for item in outputs[start:]:
        if isinstance(item, Reply):
            lines = item.lines
            total += sum(map(len, lines)) + 6 * len(lines)
        else:
            total += EVENT_COST
    return total


MAILBOX_CACHE = 512  # addresses whose parse _mailbox keeps (then it starts over: bounded memory)
_mailboxes: dict[str, tuple[str, Reply, Reply] | None] = {}


def _mailbox(path: str) -> tuple[str, Reply, Reply] | None:
    """A path of a fast-path MAIL/RCPT (brackets removed, ASCII): its mailbox and the 250 replies to
    MAIL and RCPT (their wire bytes made once), or None when it is empty, ``postmaster`` or does
    not parse (the general path answers). Remembered for the next transactions, which mostly
    name the same few addresses."""
    known = _mailboxes.get(path, False)
    if known is not False:
        return known  # type: ignore[return-value]
    try:
        address = parse_mailbox(path) if path and path.lower() != "postmaster" else None
    except AddressError:
        address = None
    known = None if address is None else (
        address, reply(Code.OK, f"<{address}>... Sender ok").wired(),
        reply(Code.OK, f"<{address}>... Recipient ok").wired())
    if len(_mailboxes) >= MAILBOX_CACHE:
        _mailboxes.clear()
    _mailboxes[path] = known
    return known


class _End(Exception):
    """The session ends: after QUIT (221), or when a fault rule disconnects (no reply) or sends 421.
    Raised wherever that happens and handled in one place (:meth:`SMTPSession._end`)."""

    def __init__(self, last: Reply | None) -> None:
        super().__init__()
        self.last = last


class SMTPSession:
    """One SMTP session. Call :meth:`greeting` once, then :meth:`feed` with each chunk received.

    ``challenge(hostname)`` makes a fresh CRAM-MD5 challenge (the server passes a random,
    timestamped one); without it CRAM-MD5 is not offered, so the session itself stays pure.
    """

    def __init__(self, settings: Settings, policy: Policy | None = None, peer: str = "", tls: bool = False,
                 challenge: Callable[[str], bytes] | None = None) -> None:
        self.settings = settings
        self.policy = policy or Policy()
        self.peer = peer
        self.state = _CONNECTED
        self.helo = ""
        self.esmtp = False
        self.tls = tls  # the connection is encrypted (implicit TLS, or after STARTTLS)
        self.auth_user: str | None = None
        self._challenge = challenge
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
        # Set to a list to collect the input as it is executed, credentials masked (debug logs, session
        # transcripts): command lines as bytes, message data as the bytes of its DATA phase so far (an int).
        self.transcript: list[bytes | int] | None = None
        self.data_phase = 0  # DATA phases begun (354 sent): the caller times each one
        self._reader: DataReader | None = None  # the message being read, in State.DATA
        self._out: list[Output] = []
        self._drop = False  # a store-then-drop rule fired at the end of DATA (see _fault)
        self.fast = True  # the fast path for MAIL/RCPT/DATA (see _fast_command); False: the table only

    # -- entry points -------------------------------------------------------------------

    def greeting(self) -> list[Output]:
        """What to send on connect: the 220 banner, or what a connect fault rule says."""
        out = self._out = []
        try:
            refusal = self._fault(_AT_CONNECT)
        except _End as end:
            self._end(end.last)
            return out
        if refusal is None:
            out.append(_host_reply("220", self.settings.hostname))
        else:
            out.append(refusal)
            self.state = _NO_SERVICE
        return out

    def feed(self, data: bytes) -> list[Output]:
        """Consume received bytes; return replies and events in the order they happen.

        Once the replies of this call pass ``settings.output_budget`` characters, it stops before
        the next command and keeps the rest: :attr:`pending` is then True and :meth:`resume`
        carries on. A caller whose client does not read its replies waits before resuming (and
        reads nothing meanwhile), so a flood of pipelined commands costs bounded memory.
        """
        out = self._out = []
        if self.state is _QUIT:
            return out
        buf, pos = self._buf, self._pos
        if data:
            buf, pos = (buf[pos:] + data if buf else data), 0
        self._buf, self._pos, self.pending = b"", 0, False
        try:
            self._run(buf, pos)
        except _End as end:
            self._end(end.last)
        return out

    def resume(self) -> list[Output]:
        """Execute input that :meth:`feed` held back (see :attr:`pending`), up to the budget again."""
        return self.feed(b"")

    @property
    def partial_line(self) -> bool:
        """A command line has begun and not ended (the caller gives it a deadline)."""
        return (not self.pending and self.state is not _DATA and self.state is not _QUIT
                and (bool(self._buf) or self._discarding))

    @property
    def data_bytes(self) -> int:
        """Bytes received in the current DATA phase (the caller checks the client's rate with it)."""
        return 0 if self._reader is None else self._reader.received

    @property
    def data_held(self) -> int:
        """Bytes of the message being read held in memory now (bounded by ``max_message_size``)."""
        return 0 if self._reader is None else self._reader.held

    def tls_started(self) -> None:
        """The TLS handshake after STARTTLS succeeded: start over (RFC 3207 section 4.2)."""
        self._tls_starting = False
        self.tls = True
        self.state = _CONNECTED
        self.helo, self.esmtp, self.auth_user = "", False, None
        self._reset_transaction()

    def close(self) -> None:
        """Mark the session closed (the connection is gone); a message in progress is dropped."""
        self.state = _QUIT
        self._reader = None
        self._buf, self._pos, self.pending = b"", 0, False

    # -- the input loop -----------------------------------------------------------------

    def _run(self, buf: bytes, pos: int) -> None:
        """Execute ``buf`` from ``pos``: command lines and DATA, until the input or the budget ends."""
        out = self._out
        budget, spent, counted = self.settings.output_budget, 0, 0
        transcript = self.transcript
        while True:
            # The budget can only stop a feed with input left: count the replies then (same totals).
            if budget and len(out) > counted and pos < len(buf):
                spent += _cost(out, counted)
                counted = len(out)
                if spent >= budget and pos < len(buf):
                    if pos > len(buf) // 2:  # keep only what is left (halving: linear copying in all)
                        buf, pos = buf[pos:], 0
                    self._buf, self._pos, self.pending = buf, pos, True
                    return
            reader = self._reader
            if reader is not None:
                if pos >= len(buf):
                    return  # nothing of the message yet (DATA was the last line)
                rest = self._read_data(reader, buf[pos:] if pos else buf)
                if rest is None:
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
            if self._tls_starting:
                return  # after STARTTLS, pipelined plaintext is discarded (RFC 3207 section 4.2)
            if pos == len(buf):  # the usual: that was the last line read (what the next turn finds)
                self._buf = b""
                return

    def _end(self, last: Reply | None) -> None:
        """The one place a session ends (QUIT, a disconnect or 421 rule): ``last``, then CLOSE.
        A message in progress is dropped, nothing more is read."""
        if last is not None:
            self._out.append(last)
        self.close()
        self._out.append(CLOSE)

    def _fault(self, stage: Stage, recipients: list[str] | None = None, sender: str | None = None) -> Reply | None:
        """The fault rule for ``stage``, if one fires: its refusal is returned (the handler sends it
        instead of going on); a delay or throttle goes out now and the session goes on; a disconnect
        or a 421 ends the session (:class:`_End`)."""
        if sender is None and stage is not _AT_CONNECT and stage is not _AT_HELO:
            sender = self.envelope.mail_from
        if recipients is None:
            recipients = self.envelope.rcpt_to
        outcome = self.policy.fault(stage, self.peer, sender, recipients)
        if outcome is None:
            return None
        if isinstance(outcome, Refuse):
            if outcome.close:
                raise _End(outcome.reply)
            return outcome.reply
        if isinstance(outcome, Disconnect):
            raise _End(None)
        if isinstance(outcome, StoreThenDrop):  # after-data only (rules.py): _finish_message stores, then ends
            self._drop = True
            return None
        self._out.append(outcome)  # Delay or Throttle: the caller carries it out
        return None

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
        """One command line (CRLF removed): checked against :data:`VERBS`, then its handler runs."""
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        if self._sasl is not None:
            self._out.append(self._sasl_response(raw))
            return
        if self.fast and self._fast_command(raw):
            return
        verb_end = raw.find(b" ")
        name = (raw if verb_end < 0 else raw[:verb_end]).decode("ascii", "replace").upper()
        if len(raw) + 2 > LINE_LIMITS.get(name, COMMAND_LINE_MAX):
            self._out.append(self._line_too_long())
            return
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            self._out.append(reply(Code.SYNTAX_ERROR, "Command contains bytes that are not UTF-8"))
            return
        arg = "" if verb_end < 0 else line[verb_end + 1 :].strip()
        verb = VERBS.get(name)
        if verb is None:
            verb, arg = UNRECOGNIZED, name  # its handler names what was not recognized
        refusal = self._refusal(verb)
        if refusal is None and arg and not verb.arguments:
            refusal = reply(Code.PARAMETER_SYNTAX, f"Syntax: {name} (no arguments)")
        self._out.append(refusal or verb.handler(self, arg))
        if self._tls_starting:
            self._out.append(START_TLS)

    def _fast_command(self, raw: bytes) -> bool:
        """The common commands, ``MAIL FROM:<a>``, ``RCPT TO:<b>`` (upper case, no parameters, ASCII)
        and ``DATA`` in the states where the table lets them run, without the general parsing:
        True when handled. Anything else (or an address that does not parse) returns False and
        goes the general way, which gives the same replies (tests/test_fast_path.py compares the
        two on generated sessions)."""
        state = self.state
        if state is _GREETED:
            if (raw[:11] != b"MAIL FROM:<" or raw.find(b">") != len(raw) - 1 or len(raw) + 2 > MAIL_LINE_MAX
                    or not raw.isascii() or (self.settings.auth is _AUTH_USERS and self.auth_user is None)):
                return False
            known = _mailbox(raw[11:-1].decode("ascii"))
            if known is None:
                return False
            self._out.append(self._open_transaction(known[0], False, known[1]))
            return True
        if state is _RCPT or state is _MAIL:
            if raw == b"DATA":
                if state is _MAIL:
                    return False  # 503 or 554: the table says which
                self._out.append(self._data(""))
                return True
            if (raw[:9] != b"RCPT TO:<" or raw.find(b">") != len(raw) - 1 or len(raw) + 2 > MAIL_LINE_MAX
                    or not raw.isascii()):
                return False
            known = _mailbox(raw[9:-1].decode("ascii"))
            if known is None:
                return False
            self._out.append(self._add_recipient(known[0], known[2]))
            return True
        return False

    def _refusal(self, verb: Verb) -> Reply | None:
        """The table's answer when ``verb`` may not run now (None: run its handler). In order: not
        offered (502/454), out of sequence because of a flag (TLS on, logged in...), out of
        sequence in this state. After a refused greeting only the state counts: only QUIT is served."""
        if self.state is not _NO_SERVICE:
            if verb.unavailable is not None:
                unavailable = verb.unavailable(self.settings)
                if unavailable is not None:
                    return unavailable
            for flag, refusal in verb.unless:
                if getattr(self, flag):
                    return refusal
        return verb.refused.get(self.state)

    # Flags the table's ``unless`` entries name.

    @property
    def authenticated(self) -> bool:
        """AUTH succeeded in this session."""
        return self.auth_user is not None

    @property
    def without_ehlo(self) -> bool:
        """No EHLO yet (none at all, or HELO): ESMTP extensions such as AUTH are out of sequence."""
        return not self.esmtp

    @property
    def no_valid_recipients(self) -> bool:
        """A transaction whose every recipient was refused (DATA gets 554, RFC 5321 section 3.3)."""
        return self._refused_rcpt > 0 and self.state is _MAIL

    @property
    def mechanisms(self) -> tuple[str, ...]:
        """The SASL mechanisms offered: CRAM-MD5 only with a challenge source."""
        return MECHANISMS if self._challenge is not None else tuple(m for m in MECHANISMS if m != "CRAM-MD5")

    def _reset_transaction(self) -> None:
        self.envelope = Envelope(
            helo=self.helo, esmtp=self.esmtp, peer=self.peer, tls=self.tls, auth_user=self.auth_user
        )
        self._refused_rcpt = 0

    # -- the handlers (VERBS maps each verb to one; sequence checks are done before they run) --------

    def _helo(self, arg: str) -> Reply:
        """HELO: greet without extensions."""
        if not _valid_helo_name(arg):
            return reply(Code.PARAMETER_SYNTAX, "Syntax: HELO <hostname>")
        refusal = self._fault(_AT_HELO)
        if refusal is not None:
            return refusal
        self._greet(arg, esmtp=False)
        return reply(Code.OK, f"{self.settings.hostname} Hello {arg} [{self.peer}]")

    def _ehlo(self, arg: str) -> Reply:
        """EHLO: greet and list the extensions."""
        if not _valid_helo_name(arg):
            return reply(Code.PARAMETER_SYNTAX, "Syntax: EHLO <hostname>")
        refusal = self._fault(_AT_HELO)
        if refusal is not None:
            return refusal
        self._greet(arg, esmtp=True)
        settings = self.settings
        offers = "STARTTLS\n" if settings.starttls and not self.tls else ""
        if settings.auth is not AuthMode.OFF and (self.tls or not settings.require_tls):
            offers += "AUTH " + " ".join(self.mechanisms)
        tail, wire = _ehlo_tail(settings.max_message_size, settings.smtputf8, offers)
        first = f"{settings.hostname} Hello {arg} [{self.peer}]"
        return Reply(Code.OK, (first, *tail), f"250-{first}\r\n".encode("utf-8", "replace") + wire)

    def _greet(self, name: str, esmtp: bool) -> None:
        self.helo, self.esmtp = name, esmtp
        self.state = _GREETED
        self._reset_transaction()

    def _mail(self, arg: str) -> Reply:
        """MAIL FROM: open a transaction (SIZE, BODY, SMTPUTF8 and AUTH parameters)."""
        if arg[:5].upper() != "FROM:":
            return reply(Code.PARAMETER_SYNTAX, "Syntax: MAIL FROM:<address> [parameters]")
        if self.settings.auth is AuthMode.USERS and self.auth_user is None:
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
            refusal = self._mail_param(key, value)
            if refusal is not None:
                return refusal
            smtputf8 = smtputf8 or key == "SMTPUTF8"
        if not smtputf8 and not address.isascii():
            return reply(Code.MAILBOX_NAME_NOT_ALLOWED, "Non-ASCII address needs the SMTPUTF8 parameter")
        return self._open_transaction(address, smtputf8)

    def _open_transaction(self, address: str, smtputf8: bool, ok: Reply | None = None) -> Reply:
        """A MAIL command that parsed: the fault rules and the policy decide (``ok``: the 250 to send)."""
        refusal = self._fault(_AT_MAIL, sender=address) or self.policy.check_sender(self.envelope, address)
        if refusal is not None:
            return refusal
        envelope = self.envelope
        envelope.mail_from = address
        envelope.smtputf8 = smtputf8
        self.state = _MAIL
        return ok or reply(Code.OK, f"<{address}>... Sender ok")

    def _mail_param(self, key: str, value: str | None) -> Reply | None:
        """Check one MAIL parameter: None when it is accepted, else the refusal."""
        settings = self.settings
        if key == "SIZE":
            if value is None or not value.isdigit() or len(value) > 20:
                return reply(Code.PARAMETER_SYNTAX, "SIZE needs a number of octets")
            limit = settings.max_message_size
            if limit and int(value) > limit:
                return reply(Code.EXCEEDED_STORAGE, f"Message size {value} exceeds fixed maximum message size {limit}")
            return None
        if key == "BODY":
            body = (value or "").upper()
            if body == "BINARYMIME":
                return reply(Code.PARAMETER_NOT_IMPLEMENTED, "BODY=BINARYMIME needs CHUNKING")
            if body not in ("7BIT", "8BITMIME"):
                return reply(Code.PARAMETER_SYNTAX, "BODY must be 7BIT or 8BITMIME")
            return None
        if key == "SMTPUTF8" and settings.smtputf8:
            return None if value is None else reply(Code.PARAMETER_SYNTAX, "SMTPUTF8 takes no value")
        if key == "AUTH" and settings.auth is not AuthMode.OFF:
            return None  # RFC 4954 section 5: the original submitter, for relays; a sink records the login
        return reply(Code.PARAMETERS_NOT_RECOGNIZED, f"MAIL parameter {key} not recognized")

    def _rcpt(self, arg: str) -> Reply:
        """RCPT TO: add a recipient (policy, limits and forwards decide)."""
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
        return self._add_recipient(address)

    def _add_recipient(self, address: str, ok: Reply | None = None) -> Reply:
        """A RCPT command that parsed: limits, fault rules and the policy decide (``ok``: the 250 to send)."""
        if not self.envelope.smtputf8 and not address.isascii():
            self._refused_rcpt += 1
            return reply(Code.MAILBOX_NAME_NOT_ALLOWED, "Non-ASCII address needs the SMTPUTF8 parameter")
        limit = self.settings.max_recipients
        if limit and len(self.envelope.rcpt_to) >= limit:
            self._refused_rcpt += 1
            return reply(Code.INSUFFICIENT_STORAGE, f"Too many recipients (limit {limit})")
        decision = self._fault(_AT_RCPT, recipients=[address]) or self.policy.check_recipient(self.envelope, address)
        if decision is not None and decision.code >= 300:
            self._refused_rcpt += 1
            return decision
        self.envelope.rcpt_to.append(address)
        if decision is not None and decision.code == Code.WILL_FORWARD:
            self.envelope.rcpt_to.extend(self.policy.forwarded(address))
        self.state = _RCPT
        return decision or ok or reply(Code.OK, f"<{address}>... Recipient ok")

    def _data(self, arg: str) -> Reply:
        """DATA: 354, then the message is read (see :class:`~smtp_sink.data_reader.DataReader`)."""
        refusal = self._fault(_AT_DATA) or self.policy.check_data(self.envelope)
        if refusal is not None:
            return refusal
        self.state = _DATA
        self.data_phase += 1
        self._reader = DataReader(self.settings.max_message_size)
        return _START_INPUT

    def _rset(self, arg: str) -> Reply:
        """RSET: abort the transaction."""
        if self.state is not _CONNECTED:
            self.state = _GREETED
        self._reset_transaction()
        return _OK

    def _noop(self, arg: str) -> Reply:
        """NOOP: 250 (an argument is allowed and ignored, RFC 5321 section 4.1.1.9)."""
        return _OK

    def _quit(self, arg: str) -> Reply:
        """QUIT: 221, then the session ends."""
        raise _End(_host_reply("221", self.settings.hostname))

    def _vrfy(self, arg: str) -> Reply:
        """VRFY: what the policy knows of an address."""
        if not arg:
            return reply(Code.PARAMETER_SYNTAX, "Syntax: VRFY <address>")
        path = arg[1:-1] if arg.startswith("<") and arg.endswith(">") else arg
        return self.policy.verify(path)

    def _expn(self, arg: str) -> Reply:
        """EXPN: the members of a configured list."""
        if not arg:
            return reply(Code.PARAMETER_SYNTAX, "Syntax: EXPN <list>")
        return self.policy.expand(arg)

    def _help(self, arg: str) -> Reply:
        """HELP: the commands, one command's help (from VERBS), or HELP STATUS."""
        topic = arg.upper()
        if not topic:
            return reply(
                Code.HELP,
                f"smtp-sink {__version__}: a local mail sink. Commands:",
                " ".join(VERBS),
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
        verb = VERBS.get(topic)
        if verb is None:
            return reply(Code.PARAMETER_NOT_IMPLEMENTED, f"HELP topic {arg[:32]} unknown")
        return reply(Code.HELP, verb.help)

    def _starttls(self, arg: str) -> Reply:
        """STARTTLS: 220, then the caller runs the handshake (RFC 3207)."""
        refusal = self._fault(Stage.STARTTLS)
        if refusal is not None:
            return refusal
        self._tls_starting = True
        return reply(Code.READY, "Ready to start TLS")

    def _auth(self, arg: str) -> Reply:
        """AUTH: start a SASL exchange (RFC 4954)."""
        settings = self.settings
        mechanism, _, initial = arg.partition(" ")
        mechanism, initial = mechanism.upper(), initial.strip()
        if not mechanism:
            return reply(Code.PARAMETER_SYNTAX, "Syntax: AUTH <mechanism> [initial-response]")
        if mechanism not in self.mechanisms:
            return reply(Code.PARAMETER_NOT_IMPLEMENTED,
                         f"Unrecognized authentication type {mechanism[:20]} (use {', '.join(self.mechanisms)})")
        if settings.require_tls and not self.tls:
            return reply(Code.ENCRYPTION_REQUIRED, "Encryption required for requested authentication mechanism")
        refusal = self._fault(Stage.AUTH)
        if refusal is not None:
            return refusal
        challenge = b"" if mechanism != "CRAM-MD5" or self._challenge is None else self._challenge(settings.hostname)
        self._sasl = SASLExchange(mechanism, challenge)
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
        """334 with the next challenge, or the verdict on the credentials (235 or 535)."""
        if isinstance(result, bytes):  # a challenge
            return reply(Code.AUTH_CHALLENGE, base64.b64encode(result).decode("ascii"))
        self._sasl = None
        if not check(result, self.settings.auth, dict(self.settings.users)):
            return reply(Code.AUTH_FAILED, "Authentication credentials invalid")
        self.auth_user = result.username
        self._reset_transaction()
        return reply(Code.AUTH_SUCCEEDED, "Authentication successful")

    def _not_implemented(self, arg: str) -> Reply:
        """SEND, SOML, SAML, TURN, BDAT: 502."""
        return _NOT_IMPLEMENTED

    def _unrecognized(self, verb: str) -> Reply:
        """Any other verb (given here instead of an argument): 500."""
        if not verb:
            return reply(Code.SYNTAX_ERROR, "Error: bad syntax")
        return reply(Code.SYNTAX_ERROR, f"Command unrecognized: {verb[:32]}")

    # -- DATA mode ----------------------------------------------------------------------

    def _read_data(self, reader: DataReader, data: bytes) -> bytes | None:
        """Message bytes: at the terminator, finish the message and return what follows it."""
        end = reader.feed(data)
        if self.transcript is not None:  # message data as its size so far, never its content (issue 17)
            self.transcript.append(reader.received if end < 0 else reader.received - len(data) + end)
        if end < 0:
            return None
        self._reader = None
        self._finish_message(reader.message())
        return data[end:]

    def _finish_message(self, data: bytes | bytearray | None) -> None:
        """The end of DATA: the after-data rule, then the message (``data``; None: too large, 552)."""
        envelope = self.envelope
        # The after-data rule runs while the state is still DATA (an error there is inside the transaction).
        refusal = None if data is None else self._fault(_AT_AFTER_DATA, envelope.rcpt_to, envelope.mail_from)
        self.state = _GREETED
        self._reset_transaction()
        if data is None:
            limit = self.settings.max_message_size
            self._out.append(reply(Code.EXCEEDED_STORAGE, f"Message exceeds fixed maximum message size {limit}"))
        elif refusal is not None:  # refused: nothing is stored
            self._out.append(refusal)
        elif self._drop:  # store-then-drop: the message is stored, its 250 is never sent (docs/retries.md)
            self._drop = False
            self.messages += 1
            self._out.append(MessageReceived(envelope, data, True))
            raise _End(None)
        else:
            self.messages += 1
            self._out.append(MessageReceived(envelope, data))


# -- the command table --------------------------------------------------------------------------

Handler = Callable[[SMTPSession, str], Reply]


@dataclass(frozen=True)
class Verb:
    """One command: its handler, when it is out of sequence (503) and its HELP text."""

    handler: Handler
    help: str
    refused: Mapping[State, Reply] = field(default_factory=dict)  # state -> the 503 there (others: legal)
    unless: tuple[tuple[str, Reply], ...] = ()  # (session flag, reply): refused while the flag is true
    unavailable: Callable[[Settings], Reply | None] | None = None  # the extension is off: its reply
    arguments: bool = True  # False: an argument gets 501 "Syntax: VERB (no arguments)" (after the sequence checks)


def _bad_sequence(why: str) -> Reply:
    """503 with its reason (the one place a 503 is made)."""
    return reply(Code.BAD_SEQUENCE, f"Bad sequence of commands: {why}")


def _refused(**why: str) -> dict[State, Reply]:
    """The 503 replies of a verb, ``STATE="why"`` for each state it is out of sequence in. After a
    refused greeting every verb but QUIT is (RFC 5321 section 3.1)."""
    refused = {State[name]: _bad_sequence(text) for name, text in why.items()}
    refused[_NO_SERVICE] = _bad_sequence("no service here, send QUIT")
    return refused


_NOT_IMPLEMENTED = reply(Code.NOT_IMPLEMENTED, "Command not implemented").wired()
# Replies whose text never changes: their wire bytes are made once (see Reply.wired).
_OK = reply(Code.OK, "OK").wired()
_START_INPUT = reply(Code.START_MAIL_INPUT, "Start mail input; end with <CRLF>.<CRLF>").wired()


def _starttls_unavailable(settings: Settings) -> Reply | None:
    """STARTTLS without a working certificate: 454 with the reason, or 502 when TLS is off."""
    if settings.starttls:
        return None
    if settings.tls_unavailable:
        return reply(Code.TLS_UNAVAILABLE, f"TLS not available: {settings.tls_unavailable}")
    return _NOT_IMPLEMENTED


def _auth_unavailable(settings: Settings) -> Reply | None:
    """AUTH with ``[auth] mode = "off"``: 502."""
    return _NOT_IMPLEMENTED if settings.auth is AuthMode.OFF else None


_STARTTLS_IN_TRANSACTION = "STARTTLS inside a transaction, RSET first"
S = SMTPSession
# Every command the server knows, in the order HELP lists them; docs/smtp.md lists the same verbs
# (tests/test_command_table.py checks it).
VERBS: dict[str, Verb] = {
    "HELO": Verb(S._helo, "HELO <hostname>: introduce yourself (plain SMTP)", _refused()),
    "EHLO": Verb(S._ehlo, "EHLO <hostname>: introduce yourself and list the extensions (ESMTP)", _refused()),
    "MAIL": Verb(S._mail, "MAIL FROM:<sender> [SIZE=n] [BODY=7BIT|8BITMIME] [SMTPUTF8]: start a transaction",
                 _refused(CONNECTED="send HELO/EHLO first", MAIL="nested MAIL command", RCPT="nested MAIL command")),
    "RCPT": Verb(S._rcpt, "RCPT TO:<recipient>: add a recipient (repeat for more)",
                 _refused(CONNECTED="need MAIL before RCPT", GREETED="need MAIL before RCPT")),
    "DATA": Verb(S._data, "DATA: send the message, end with a line holding a single dot",
                 _refused(CONNECTED="need MAIL before DATA", GREETED="need MAIL before DATA",
                          MAIL="need RCPT before DATA"),
                 unless=(("no_valid_recipients", reply(Code.TRANSACTION_FAILED,
                                                       "Transaction failed: no valid recipients")),),
                 arguments=False),
    "RSET": Verb(S._rset, "RSET: abort the current transaction", _refused(), arguments=False),
    "NOOP": Verb(S._noop, "NOOP: do nothing, answer 250", _refused()),
    "QUIT": Verb(S._quit, "QUIT: end the session", arguments=False),  # served in every state
    "VRFY": Verb(S._vrfy, "VRFY <address>: ask whether a mailbox exists", _refused()),
    "EXPN": Verb(S._expn, "EXPN <list>: list the members of a mailing list", _refused()),
    "HELP": Verb(S._help, "HELP [command|STATUS]: this help, or the session status", _refused()),
    "STARTTLS": Verb(S._starttls, "STARTTLS: switch this connection to TLS, then EHLO again (RFC 3207)",
                     _refused(MAIL=_STARTTLS_IN_TRANSACTION, RCPT=_STARTTLS_IN_TRANSACTION),
                     unless=(("tls", _bad_sequence("TLS already active")),), unavailable=_starttls_unavailable,
                     arguments=False),
    "AUTH": Verb(S._auth, "AUTH PLAIN|LOGIN|CRAM-MD5 [initial-response]: log in (RFC 4954)",
                 _refused(CONNECTED="send EHLO first", MAIL="AUTH inside a transaction",
                          RCPT="AUTH inside a transaction"),
                 unless=(("without_ehlo", _bad_sequence("send EHLO first")),
                         ("authenticated", _bad_sequence("already authenticated"))),
                 unavailable=_auth_unavailable),
    "SEND": Verb(S._not_implemented, "SEND FROM:<sender>: deliver to a terminal (not implemented, 502)", _refused()),
    "SOML": Verb(S._not_implemented, "SOML FROM:<sender>: send or mail (not implemented, 502)", _refused()),
    "SAML": Verb(S._not_implemented, "SAML FROM:<sender>: send and mail (not implemented, 502)", _refused()),
    "TURN": Verb(S._not_implemented, "TURN: swap client and server roles (not implemented, 502)", _refused()),
    "BDAT": Verb(S._not_implemented, "BDAT <size> [LAST]: message data in chunks (CHUNKING, RFC 3030; "
                 "not implemented, 502)", _refused()),
}
UNRECOGNIZED = Verb(S._unrecognized, "", _refused())  # any other verb: 500
del S
