"""The DKIM public keys the user supplies (``[checks] dkim_keys`` and ``dkim_keys_file``): what the
DKIM check uses instead of DNS. No package imports: the configuration checks them at load.

A key is named as its DNS TXT record is: ``<selector>._domainkey.<domain>`` (any case, a final
``.`` ignored), and its value is that record's text: ``v=DKIM1; k=rsa; p=MIIB...`` (the strings of
a split record joined). ``dkim_keys_file`` is a TOML file of such pairs, at the top level::

    "mail._domainkey.example.com" = "v=DKIM1; k=rsa; p=MIIBIjANBg..."
    "ed._domainkey.example.com" = "v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

__all__ = ["DKIMKeyError", "check_keys", "key_name", "read_keys_file"]

MAX_FILE_BYTES = 1024 * 1024  # a keys file larger than this is refused (it holds public keys only)
MAX_RECORD = 8192  # characters of one key record (a 16384-bit RSA key is about 2800)
_NAME_RE = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,62})(?:\.[a-z0-9_](?:[a-z0-9_-]{0,62}))*\._domainkey"
                      r"(?:\.[a-z0-9](?:[a-z0-9-]{0,62}))+")
_P_RE = re.compile(r"(?:^|;)\s*p\s*=", re.IGNORECASE)


class DKIMKeyError(ValueError):
    """A key name or record that cannot be used; the message names it (and the file)."""


def key_name(name: str) -> str:
    """``name`` as keys are looked up: lower case, no final dot."""
    return name.strip().lower().rstrip(".")


def check_keys(keys: Mapping[str, object], where: str) -> dict[str, str]:
    """The keys by :func:`key_name`; :class:`DKIMKeyError` naming ``where`` and the key for a name that is
    not ``selector._domainkey.domain`` or a value that is no DKIM key record (no ``p=``)."""
    found: dict[str, str] = {}
    for name, value in keys.items():
        label = f'{where}."{name}"'
        if not _NAME_RE.fullmatch(key_name(str(name))):
            raise DKIMKeyError(f"{label}: expected a key name such as \"mail._domainkey.example.com\" "
                            "(selector._domainkey.domain)")
        if not isinstance(value, str):
            raise DKIMKeyError(f'{label}: expected the key record as a string, "v=DKIM1; k=rsa; p=...", got {value!r}')
        if len(value) > MAX_RECORD or not value.isascii() or not _P_RE.search(value):
            raise DKIMKeyError(f'{label}: expected a DKIM key record "v=DKIM1; k=rsa; p=<base64>" (ASCII, with p=, '
                            f"at most {MAX_RECORD} characters), got {value[:80]!r}")
        found[key_name(str(name))] = value
    return found


def read_keys_file(path: str | Path, where: str = "[checks] dkim_keys_file") -> dict[str, str]:
    """The keys of a TOML keys file (see the module); :class:`DKIMKeyError` naming the file and what is wrong."""
    file = Path(path)
    label = f"{where}: {file}"
    try:
        with file.open("rb") as stream:
            data = stream.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise DKIMKeyError(f"{label}: cannot read: {exc.strerror or exc}") from None
    if len(data) > MAX_FILE_BYTES:
        raise DKIMKeyError(f"{label}: larger than {MAX_FILE_BYTES} bytes")
    try:
        table = tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise DKIMKeyError(f"{label}: not UTF-8 text (byte {exc.start})") from None
    except tomllib.TOMLDecodeError as exc:
        raise DKIMKeyError(f'{label}: invalid TOML ({exc}); expected lines "selector._domainkey.domain" = '
                        '"v=DKIM1; k=rsa; p=..."') from None
    return check_keys(table, str(file))
