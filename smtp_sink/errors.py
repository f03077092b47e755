"""Errors that cross module boundaries: each says what was wrong in words a user can act on."""

from __future__ import annotations

import errno


class NotFound(LookupError):
    """No such message, part (or other thing) exists. ``kind`` and ``key`` say which, and
    ``str()`` is the sentence to show: ``message 01HV... not found``, ``part 3 of message
    01HV... not found``. Distinct from :class:`KeyError`, so a bug's KeyError is never
    mistaken for "not found"."""

    def __init__(self, kind: str, key: str, within: str = "") -> None:
        self.kind, self.key, self.within = kind, key, within
        super().__init__(f"{kind} {key[:100]}{' of ' + within if within else ''} not found")

    def __str__(self) -> str:
        return str(self.args[0])


class ListenError(OSError):
    """A listener could not open its port. Names the listener (``SMTP``, ``implicit TLS``,
    ``HTTP``), the address, the reason and the command-line flag that changes it."""

    def __init__(self, errno: int | None, reason: str, listener: str, address: str, flag: str) -> None:
        super().__init__(errno, reason)
        self.listener, self.address, self.flag = listener, address, flag

    def __str__(self) -> str:
        where = f"cannot listen on {self.address} ({self.listener}): {self.strerror}"
        if self.errno == errno.EADDRNOTAVAIL:  # another port will not help: the host is not this machine's
            host_flag = "--http-host" if self.listener == "HTTP" else "--host"
            return f"{where}; that address is not one of this machine's (see {host_flag})"
        return f"{where}; choose another port with {self.flag}"
