"""Parsing of SMTP paths and ``KEY=VALUE`` parameters (RFC 5321 section 4.1.2, RFC 6531)."""

from __future__ import annotations

import re

# Local part: dot-atom or quoted-string. Non-ASCII (UTF-8) characters are allowed by the
# pattern and refused afterwards unless the transaction uses SMTPUTF8 (RFC 6531).
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~\-\u0080-\U0010ffff]"
_DOT_ATOM = rf"{_ATEXT}+(?:\.{_ATEXT}+)*"
_QUOTED = r'"(?:[\x20\x21\x23-\x5b\x5d-\x7e\u0080-\U0010ffff]|\\[\x20-\x7e])*"'
_LABEL = r"[A-Za-z0-9\u0080-\U0010ffff](?:[A-Za-z0-9\-\u0080-\U0010ffff]*[A-Za-z0-9\u0080-\U0010ffff])?"
_DOMAIN = rf"{_LABEL}(?:\.{_LABEL})*"
_LITERAL = r"\[[\x21-\x5a\x5e-\x7e]+\]"
MAILBOX_RE = re.compile(rf"(?:{_DOT_ATOM}|{_QUOTED})@(?:{_DOMAIN}|{_LITERAL})")
_SOURCE_ROUTE_RE = re.compile(rf"@{_DOMAIN}(?:,@{_DOMAIN})*:")
_SURROGATES_RE = re.compile("[\ud800-\udfff]")

MAX_LOCAL_PART = 64  # RFC 5321 section 4.5.3.1.1
MAX_DOMAIN = 255  # section 4.5.3.1.2
MAX_PATH = 256  # section 4.5.3.1.3, including the angle brackets


class AddressError(ValueError):
    """A path or parameter list that does not follow RFC 5321 syntax."""


def split_path(text: str) -> tuple[str, str]:
    """Split ``<path> params`` into the path (brackets removed) and the parameter text.

    A bare address without angle brackets is accepted, as Postfix and aiosmtpd do.
    """
    text = text.strip()
    if not text:
        raise AddressError("an address is required (<> for the null sender)")
    if text.startswith("<"):
        end = text.find(">")
        if end < 0:
            raise AddressError("missing '>' after the address")
        path, rest = text[1:end], text[end + 1 :]
        if rest and not rest.startswith(" "):
            raise AddressError("a space must separate the address from its parameters")
        if end + 1 > MAX_PATH:
            raise AddressError(f"path longer than {MAX_PATH} characters")
    else:
        path, _, rest = text.partition(" ")
    return path, rest.strip()


def parse_mailbox(path: str, *, allow_empty: bool = False) -> str:
    """Validate a path without its brackets and return the mailbox.

    An empty path (the null reverse-path ``<>``) is returned as ``""`` when
    ``allow_empty``; an RFC 5321 source route (``@a,@b:user@c``) is dropped.
    """
    if not path:
        if allow_empty:
            return ""
        raise AddressError("an address is required")
    route = _SOURCE_ROUTE_RE.match(path)
    if route:
        path = path[route.end() :]
    if _SURROGATES_RE.search(path) or not MAILBOX_RE.fullmatch(path):
        raise AddressError(f"not a valid address: {path!r}")
    local, _, domain = path.rpartition("@")
    if len(local.encode()) > MAX_LOCAL_PART:
        raise AddressError(f"local part longer than {MAX_LOCAL_PART} octets")
    if len(domain.encode()) > MAX_DOMAIN:
        raise AddressError(f"domain longer than {MAX_DOMAIN} octets")
    return path


def parse_params(text: str) -> dict[str, str | None]:
    """Parse ``KEY=VALUE KEY2`` parameters; keys are upper-cased, a key without value maps to None."""
    params: dict[str, str | None] = {}
    for item in text.split():
        key, eq, value = item.partition("=")
        if not key or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9\-]*", key):
            raise AddressError(f"bad parameter {item!r}")
        if eq and not value:
            raise AddressError(f"parameter {key} has an empty value")
        params[key.upper()] = value if eq else None
    return params
