"""SASL mechanisms for SMTP AUTH (RFC 4954): PLAIN (RFC 4616), LOGIN and CRAM-MD5 (RFC 2195).

Sans-I/O like :mod:`smtp_sink.protocol`: an :class:`SASLExchange` turns the client's base64 lines
into challenges to send (``334``) and, at the end, :class:`Credentials`, which
:func:`check` compares with the configured mode (``accept-any`` or a ``users`` table).
Pure: no randomness and no clock here. A CRAM-MD5 challenge is an argument; the caller makes it
fresh (random and timestamped, see :func:`cram_md5_challenge`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Generator, Mapping
from dataclasses import dataclass

from .config import AuthMode

MECHANISMS = ("PLAIN", "LOGIN", "CRAM-MD5")


class SASLError(ValueError):
    """A client response that cannot be decoded or has the wrong shape (answered 501)."""


@dataclass(frozen=True)
class Credentials:
    """What the client proved: a user name and a password, or (CRAM-MD5) a digest of a challenge."""

    username: str
    password: str | None = None
    challenge: bytes = b""
    digest: str = ""


Steps = Generator[bytes, bytes, Credentials]  # yields challenges, receives decoded responses


def _text(data: bytes, what: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise SASLError(f"{what} is not UTF-8") from None


def _plain() -> Steps:
    response = yield b""
    parts = response.split(b"\0")
    if len(parts) != 3 or not parts[1]:
        raise SASLError("PLAIN response must be authzid NUL user NUL password")
    return Credentials(_text(parts[1], "user name"), _text(parts[2], "password"))


def _login() -> Steps:
    user = yield b"Username:"
    password = yield b"Password:"
    if not user:
        raise SASLError("empty user name")
    return Credentials(_text(user, "user name"), _text(password, "password"))


def cram_md5_challenge(nonce: int, timestamp: int, hostname: str) -> bytes:
    """An RFC 2195 challenge, ``<nonce.timestamp@hostname>``: the caller picks a random ``nonce``
    and passes the current time, so that no two challenges repeat."""
    return f"<{nonce}.{timestamp}@{hostname}>".encode("ascii", "replace")


def _cram_md5(challenge: bytes) -> Steps:
    response = yield challenge
    user, _, digest = _text(response, "response").rpartition(" ")
    if not user or len(digest) != 32:
        raise SASLError("CRAM-MD5 response must be: user SP 32 hex digits")
    return Credentials(user, challenge=challenge, digest=digest.lower())


class SASLExchange:
    """One AUTH exchange. :meth:`start` with the initial response (if any), then :meth:`step`.

    Each returns the next challenge (raw bytes; send ``334 <base64>``) or the final
    :class:`Credentials`; a malformed response raises :class:`SASLError`.
    """

    def __init__(self, mechanism: str, challenge: bytes = b"") -> None:
        """``challenge``: what CRAM-MD5 sends (a fresh one each time); the other mechanisms need none."""
        self.mechanism = mechanism
        self._steps: Steps = _cram_md5(challenge) if mechanism == "CRAM-MD5" else (
            _plain() if mechanism == "PLAIN" else _login()
        )

    def start(self, initial: str | None) -> bytes | Credentials:
        """Begin; ``initial`` is the base64 initial response of ``AUTH <mech> <initial>`` (``=``: empty)."""
        challenge = next(self._steps)
        if initial is None or self.mechanism == "CRAM-MD5":
            if initial is not None:
                raise SASLError("CRAM-MD5 takes no initial response")
            return challenge
        return self.step(initial)

    def step(self, line: str) -> bytes | Credentials:
        """Feed one base64 response line."""
        try:
            decoded = b"" if line == "=" else base64.b64decode(line.encode("ascii"), validate=True)
        except (binascii.Error, UnicodeEncodeError):
            raise SASLError("response is not base64") from None
        try:
            return self._steps.send(decoded)
        except StopIteration as done:
            credentials: Credentials = done.value
            return credentials


def check(credentials: Credentials, mode: AuthMode, users: Mapping[str, str]) -> bool:
    """True when ``credentials`` are accepted: always in ``accept-any``, else by the ``users`` table."""
    if mode is AuthMode.ACCEPT_ANY:
        return True
    expected = users.get(credentials.username)
    if expected is None:
        return False
    if credentials.password is not None:
        return hmac.compare_digest(credentials.password.encode(), expected.encode())
    digest = hmac.new(expected.encode(), credentials.challenge, hashlib.md5).hexdigest()
    return hmac.compare_digest(digest, credentials.digest)
