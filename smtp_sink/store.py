"""The message store: one ``<id>.eml`` file per accepted message.

A message is written to ``<store>/tmp/`` and ``os.replace``d into place before the server
answers 250, so a reader never sees half a message and a crash never leaves one. The stored
bytes are trace headers (``Return-Path``, ``Received``, one ``X-Original-To`` per envelope
recipient) followed by exactly what the client sent, dot-stuffing undone.
"""

from __future__ import annotations

import email.utils
import errno
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from . import __version__
from .ids import is_id, new_id
from .protocol import Envelope

_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
_TMP_SUFFIX = ".tmp"


class StoreError(OSError):
    """The store cannot take a message (not writable, disk full, ...)."""


@dataclass(frozen=True)
class StoredMessage:
    """A message that is safely on disk."""

    id: str
    path: Path
    size: int


def _clean(text: str) -> str:
    """Text safe inside a header: no control characters (no header injection)."""
    return _CONTROL_RE.sub("?", text)


def trace_headers(envelope: Envelope, message_id: str, hostname: str, when: float | None = None) -> bytes:
    """``Return-Path``, ``Received`` (RFC 5321 section 4.4) and ``X-Original-To`` headers."""
    protocol = "ESMTP" if envelope.esmtp else "SMTP"
    if envelope.esmtp:  # RFC 3848: ESMTPS with TLS, ESMTPA with AUTH, ESMTPSA with both
        suffix = ("S" if envelope.tls else "") + ("A" if envelope.auth_user is not None else "")
        protocol += suffix
    date = email.utils.formatdate(when, localtime=True)
    recipient = f"\r\n\tfor <{envelope.rcpt_to[0]}>" if len(envelope.rcpt_to) == 1 else ""
    lines = [
        f"Return-Path: <{envelope.mail_from}>",
        f"Received: from {_clean(envelope.helo) or 'unknown'} ([{envelope.peer}])\r\n"
        f"\tby {hostname} (smtp-sink {__version__}) with {protocol} id {message_id}{recipient};\r\n"
        f"\t{date}",
    ]
    if envelope.auth_user is not None:
        lines.append(f"X-Sink-Auth: {_clean(envelope.auth_user)}")
    lines.extend(f"X-Original-To: {rcpt}" for rcpt in envelope.rcpt_to)
    return ("\r\n".join(lines) + "\r\n").encode("utf-8")


class Store:
    """A folder of ``.eml`` files. Safe for several processes: writes are atomic renames."""

    def __init__(self, path: str | os.PathLike[str], *, fsync: bool = False) -> None:
        self.path = Path(path)
        self.tmp = self.path / "tmp"
        self.fsync = fsync

    def open(self) -> None:
        """Create the folders and remove temporary files left by a process that died."""
        self.tmp.mkdir(parents=True, exist_ok=True)
        for entry in os.scandir(self.tmp):
            pid = entry.name.rsplit(".", 2)[-2] if entry.name.endswith(_TMP_SUFFIX) else ""
            if pid.isdigit() and not _alive(int(pid)):
                try:
                    os.unlink(entry.path)
                except FileNotFoundError:
                    pass

    def save(self, envelope: Envelope, data: bytes, hostname: str) -> StoredMessage:
        """Write one message atomically and return where it is. Raises :class:`StoreError`."""
        message_id = new_id()
        header = trace_headers(envelope, message_id, hostname)
        tmp = f"{self.tmp}/{message_id}.{os.getpid()}{_TMP_SUFFIX}"
        final = self.path / f"{message_id}.eml"
        try:
            try:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileNotFoundError:  # the store folder was removed while running
                self.tmp.mkdir(parents=True, exist_ok=True)
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except OSError as exc:
            raise StoreError(exc.errno, f"cannot create {tmp}: {exc.strerror}") from exc
        try:
            try:
                _write_all(fd, [header, data])
                if self.fsync:
                    os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, final)
        except OSError as exc:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise StoreError(exc.errno, f"cannot write {final}: {exc.strerror}") from exc
        return StoredMessage(message_id, final, len(header) + len(data))

    def ids(self) -> list[str]:
        """All message ids, oldest first."""
        try:
            names = os.listdir(self.path)
        except FileNotFoundError:
            return []
        return sorted(name[:-4] for name in names if name.endswith(".eml") and is_id(name[:-4]))

    def __iter__(self) -> Iterator[str]:
        return iter(self.ids())

    def __len__(self) -> int:
        return len(self.ids())

    def file(self, message_id: str) -> Path:
        """The path of a message; :class:`KeyError` for a malformed or unknown id."""
        if not is_id(message_id):
            raise KeyError(message_id)
        path = self.path / f"{message_id}.eml"
        if not path.exists():
            raise KeyError(message_id)
        return path

    def read(self, message_id: str) -> bytes:
        """The stored bytes of a message (trace headers included)."""
        try:
            return self.file(message_id).read_bytes()
        except FileNotFoundError:
            raise KeyError(message_id) from None

    def delete(self, message_id: str) -> bool:
        """Remove one message; False when it was not there."""
        try:
            os.unlink(self.file(message_id))
        except (KeyError, FileNotFoundError):
            return False
        return True

    def clear(self) -> int:
        """Remove every message; return how many were removed."""
        return sum(self.delete(message_id) for message_id in self.ids())


def _write_all(fd: int, chunks: list[bytes]) -> None:
    """``os.writev`` until every byte is written (short writes happen on a full disk)."""
    views = [memoryview(chunk) for chunk in chunks if chunk]
    while views:
        written = os.writev(fd, views)
        if written == 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        while views and written >= len(views[0]):
            written -= len(views[0])
            views.pop(0)
        if written:
            views[0] = views[0][written:]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True

