"""Configuration: defaults < config file < ``SMTP_SINK_*`` environment < command-line flags.

The defaults live here and only here (``config.toml`` at the repository root documents them,
and a test checks the two agree). The result is one frozen :class:`Config`. An unknown key,
a wrong type or bad TOML raises :class:`ConfigError` naming the file (or variable) and key.

The config file is the one given by ``--config``, else ``$SMTP_SINK_CONFIG``, else
``./smtp-sink.toml`` when it exists; with none of them, the defaults apply.
"""

from __future__ import annotations

import dataclasses
import email.utils
import ipaddress
import math
import os
import re
import ssl
import sys
import typing
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .addresses import AddressError, parse_mailbox
from .checks.dkim_keys import DKIMKeyError, check_keys, read_keys_file
from .choices import Choice
from .rules import Rule, RuleError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

ENV_PREFIX = "SMTP_SINK_"
# Command-line flags whose name is not --<key> (error messages name the flag the user typed).
FLAG_NAMES = {
    ("store", "path"): "--store", ("log", "level"): "--log-level", ("http", "enabled"): "--no-http",
    ("auth", "mode"): "--auth", ("tls", "mode"): "--tls", ("tls", "port"): "--tls-port",
    ("tls", "cert"): "--tls-cert", ("tls", "key"): "--tls-key", ("tls", "probe"): "--tls-probe",
    ("http", "host"): "--http-host",
    ("http", "port"): "--http-port", ("http", "auth"): "--http-auth",
}
ENV_CONFIG = "SMTP_SINK_CONFIG"
MAX_WORKERS = 256  # [smtp] workers at most
AUTO_WORKERS = 0  # [smtp] workers = "auto": one SMTP process per CPU
LOCAL_CONFIG = "smtp-sink.toml"


def _opt(default: Any, *, low: float | None = None, high: float | None = None, empty: bool = False) -> Any:
    """A field with a default and the range a value must respect (``empty``: "" means unset)."""
    return field(default=default, metadata={"low": low, "high": high, "empty": empty})


_CHOICE_FIELDS: dict[type, tuple[tuple[str, type[Choice]], ...]] = {}  # section -> its Choice fields


def _choice_fields(section: type) -> tuple[tuple[str, type[Choice]], ...]:
    if section not in _CHOICE_FIELDS:
        hints = typing.get_type_hints(section)
        _CHOICE_FIELDS[section] = tuple((f.name, hints[f.name]) for f in dataclasses.fields(section)
                                        if isinstance(hints[f.name], type) and issubclass(hints[f.name], Choice))
    return _CHOICE_FIELDS[section]


class _Section:
    """A config section: a :class:`~smtp_sink.choices.Choice` field given as text (as in
    ``dataclasses.replace(auth, mode="users")``) becomes its member, or raises ValueError."""

    def __post_init__(self) -> None:
        for name, kind in _choice_fields(type(self)):
            object.__setattr__(self, name, kind(getattr(self, name)))


class Loop(Choice):
    """``[smtp] loop``: the event loop (auto: uvloop when installed)."""

    AUTO = "auto"
    ASYNCIO = "asyncio"
    UVLOOP = "uvloop"


class Unknown(Choice):
    """``[policy] unknown``: what RCPT of an unknown mailbox gets."""

    ACCEPT = "accept"
    REFUSE_550 = "550"
    REFUSE_553 = "553"


class AuthMode(Choice):
    """``[auth] mode``: off (AUTH not offered), accept-any (every login works), users (the table)."""

    OFF = "off"
    ACCEPT_ANY = "accept-any"
    USERS = "users"


class TLSMode(Choice):
    """``[tls] mode``: auto (on with AUTH, a configured certificate or a TLS probe), on, off."""

    AUTO = "auto"
    ON = "on"
    OFF = "off"


class TLSProbe(Choice):
    """``[tls] probe``: a bad certificate or protocol to present, to see whether clients verify
    (off, or one of the probes of :mod:`smtp_sink.tls_probe`)."""

    OFF = "off"
    EXPIRED = "expired"
    SELF_SIGNED = "self-signed"
    WRONG_HOST = "wrong-host"
    UNTRUSTED_CA = "untrusted-ca"
    TLS1_0 = "tls1.0"


class RelayAuth(Choice):
    """``[relay] auth``: how smtp-sink logs in to the upstream server (none, plain, login, cram-md5)."""

    NONE = "none"
    PLAIN = "plain"
    LOGIN = "login"
    CRAM_MD5 = "cram-md5"


class LogLevel(Choice):
    """``[log] level``."""

    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


@dataclass(frozen=True)
class SMTPConfig(_Section):
    """``[smtp]``: the SMTP listener and session limits."""

    host: str = "127.0.0.1"
    port: int = _opt(2525, low=0, high=65535)
    hostname: str = "smtp-sink.localhost"
    max_message_size: int = _opt(33554432, low=0)
    max_recipients: int = _opt(1000, low=0)
    max_connections: int = _opt(1000, low=1)
    idle_timeout: float = _opt(300.0, low=0.01)
    command_timeout: float = _opt(60.0, low=0)
    data_min_rate: int = _opt(256, low=0)
    data_rate_grace: float = _opt(120.0, low=0)
    smtputf8: bool = True
    loop: Loop = Loop.AUTO
    # SMTP processes on the port (smtp_sink.workers); "auto" (stored as AUTO_WORKERS): one per CPU
    workers: int = field(default=1, metadata={"low": 1, "high": MAX_WORKERS, "auto": True})


@dataclass(frozen=True)
class StoreConfig(_Section):
    """``[store]``: where messages are written."""

    path: str = "./mail"
    fsync: bool = False
    max_messages: int = _opt(0, low=0)
    max_age: float = _opt(0.0, low=0)
    min_free_space: int = _opt(10485760, low=0)


@dataclass(frozen=True)
class PolicyConfig(_Section):
    """``[policy]``: which recipients are accepted, forwarded, refused; VRFY and EXPN answers."""

    mailboxes: tuple[str, ...] = field(default_factory=tuple)
    domains: tuple[str, ...] = field(default_factory=tuple)
    unknown: Unknown = Unknown.ACCEPT
    forbidden: tuple[str, ...] = field(default_factory=tuple)
    forwards: dict[str, str] = field(default_factory=dict)
    moved: dict[str, str] = field(default_factory=dict)
    lists: dict[str, tuple[str, ...]] = field(default_factory=dict)
    expn: bool = True


@dataclass(frozen=True)
class AuthConfig(_Section):
    """``[auth]``: SMTP AUTH (RFC 4954) with PLAIN, LOGIN and CRAM-MD5."""

    mode: AuthMode = AuthMode.OFF
    users: dict[str, str] = field(default_factory=dict)
    require_tls: bool = False


@dataclass(frozen=True)
class TLSConfig(_Section):
    """``[tls]``: STARTTLS (RFC 3207) and implicit TLS on a second port (RFC 8314)."""

    mode: TLSMode = TLSMode.AUTO
    port: int = _opt(2465, low=0, high=65535)
    cert: str = _opt("", empty=True)
    key: str = _opt("", empty=True)
    probe: TLSProbe = TLSProbe.OFF  # issue 17: present a bad certificate (docs/tls-probe.md)


@dataclass(frozen=True)
class HTTPConfig(_Section):
    """``[http]``: the web page and HTTP API."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = _opt(8025, low=0, high=65535)
    auth: str = _opt("", empty=True)  # "user:password": HTTP basic auth on every page and API call


@dataclass(frozen=True)
class LogConfig(_Section):
    """``[log]``: what the server prints."""

    level: LogLevel = LogLevel.INFO


@dataclass(frozen=True)
class TagsConfig(_Section):
    """``[tags]``: the tags a message gets when it arrives (as Mailpit gives them)."""

    x_tags: bool = True  # the comma-separated tags of an X-Tags header
    plus_addresses: bool = True  # "tag" of user+tag@domain in From, To, Cc and Bcc
    title_case: bool = False  # X-Tags and plus-address tags written in Title Case
    username: bool = False  # the AUTH user name as a tag
    filters: dict[str, str] = field(default_factory=dict)  # search query -> comma-separated tags


@dataclass(frozen=True)
class RelayConfig(_Section):
    """``[relay]``: the upstream SMTP server that release (and auto-relay) sends to (Mailpit's
    ``--smtp-relay-*``). Off while ``host`` is empty."""

    host: str = _opt("", empty=True)
    port: int = _opt(25, low=1, high=65535)
    starttls: bool = False
    tls: bool = False  # implicit TLS
    allow_insecure: bool = False  # do not verify the upstream's certificate
    auth: RelayAuth = RelayAuth.NONE
    username: str = _opt("", empty=True)
    password: str = _opt("", empty=True)
    secret: str = _opt("", empty=True)  # for cram-md5
    ca_file: str = _opt("", empty=True)  # PEM authorities to trust for the upstream (empty: the system's)
    return_path: str = _opt("", empty=True)  # envelope sender of released mail
    override_from: str = _opt("", empty=True)  # the From address of every relayed message
    allowed_recipients: str = _opt("", empty=True)  # regular expression a released recipient must match
    blocked_recipients: str = _opt("", empty=True)  # regular expression no relayed recipient may match
    forward_smtp_errors: bool = False  # a refused recipient fails the relay
    relay_all: bool = False  # auto-relay: every message, to its envelope recipients
    relay_matching: str = _opt("", empty=True)  # auto-relay: recipients matching this expression


@dataclass(frozen=True)
class WebhookConfig(_Section):
    """``[webhook]``: a URL that receives each new message's summary (Mailpit's ``--webhook-url``)."""

    url: str = _opt("", empty=True)
    timeout: float = _opt(5.0, low=0.1)
    retries: int = _opt(3, low=0, high=10)
    rate: float = _opt(5.0, low=0)  # at most this many calls a second (0: no limit)


@dataclass(frozen=True)
class ChecksConfig(_Section):
    """``[checks]``: the message checks of the API (HTML, links, SpamAssassin)."""

    spamassassin: str = _opt("", empty=True)  # "host:port" or "unix:/path" of a spamd; empty: sa-check is 404
    allow_internal: bool = False  # the link check may reach loopback and private addresses
    link_timeout: float = _opt(5.0, low=0.1)  # seconds for each link (redirects included)
    # DKIM public keys, never DNS (issue 17, docs/dkim.md): "selector._domainkey.domain" -> TXT record
    dkim_keys: dict[str, str] = field(default_factory=dict)
    dkim_keys_file: str = _opt("", empty=True)  # a TOML file of more such keys (read at each check)


@dataclass(frozen=True)
class SessionsConfig(_Section):
    """``[sessions]``: SMTP session transcripts (issue 17), kept beside the messages."""

    enabled: bool = True  # record every SMTP session (commands, replies, how it ended)
    max_events: int = _opt(50, low=10, high=100000)  # events kept per session, then a marker (memory: docs/sessions.md)
    max_sessions: int = _opt(10000, low=1)  # retention: the newest this many sessions are kept
    max_age: float = _opt(604800.0, low=0)  # retention: seconds a session is kept (0: no age limit)


@dataclass(frozen=True)
class Config:
    """The whole configuration; sections are the TOML tables."""

    smtp: SMTPConfig = field(default_factory=SMTPConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    tls: TLSConfig = field(default_factory=TLSConfig)
    http: HTTPConfig = field(default_factory=HTTPConfig)
    log: LogConfig = field(default_factory=LogConfig)
    tags: TagsConfig = field(default_factory=TagsConfig)
    relay: RelayConfig = field(default_factory=RelayConfig)
    webhook: WebhookConfig = field(default_factory=WebhookConfig)
    checks: ChecksConfig = field(default_factory=ChecksConfig)
    sessions: SessionsConfig = field(default_factory=SessionsConfig)  # issue 17: session transcripts
    rules: tuple[Rule, ...] = field(default_factory=tuple)
    source: str = field(default="(defaults)", compare=False)


class ConfigError(ValueError):
    """A configuration problem, with the file or variable and the key it concerns."""


def sections() -> dict[str, type]:
    """Section name -> dataclass type, in the order of :class:`Config`."""
    hints = typing.get_type_hints(Config)
    return {f.name: hints[f.name] for f in dataclasses.fields(Config) if f.name not in ("source", "rules")}


def _keys(section: type) -> dict[str, tuple[type, Mapping[str, Any]]]:
    hints = typing.get_type_hints(section)
    return {f.name: (hints[f.name], f.metadata) for f in dataclasses.fields(section)}


def _check(value: Any, kind: Any, meta: Mapping[str, Any], where: str) -> Any:
    """Validate one value against its field's type and range; return it converted."""
    names = {bool: "true or false", int: "an integer", float: "a finite number", str: "a string"}
    if meta.get("auto"):  # a count or "auto" ([smtp] workers)
        if value == "auto":
            return AUTO_WORKERS
        if not isinstance(value, int) or isinstance(value, bool):
            raise ConfigError(f'{where}: expected an integer or "auto", got {value!r}')
    if isinstance(kind, type) and issubclass(kind, Choice):  # one of the words, given as a string
        text = _check(value, str, meta, where)
        if text not in kind.words():
            raise ConfigError(f"{where}: must be one of {', '.join(kind.words())}, got {value!r}")
        return kind(text)
    origin = typing.get_origin(kind)
    if origin is tuple:  # a TOML array of strings
        if not isinstance(value, (list, tuple)) or not all(isinstance(item, str) for item in value):
            raise ConfigError(f"{where}: expected a list of strings, got {value!r}")
        return tuple(value)
    if origin is dict:  # a TOML table of string keys
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a table, got {value!r}")
        item_kind = typing.get_args(kind)[1]
        return {key: _check(item, item_kind, {}, f'{where}."{key}"') for key, item in value.items()}
    if kind is bool:
        ok = isinstance(value, bool)
    elif kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif kind is float:  # nan and inf (valid TOML) would disable limits silently
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        value = float(value) if ok else value
    else:
        ok = isinstance(value, kind)
    if not ok:
        raise ConfigError(f"{where}: expected {names.get(kind, kind.__name__)}, got {value!r}")
    if kind is str and value == "" and meta.get("empty"):
        return value
    if kind is str and (not value.strip() or any(ord(c) < 32 or ord(c) == 127 for c in value)):
        # "" would mean every interface for a host and the current folder for a path; a CR LF
        # in a hostname would break the replies it appears in
        raise ConfigError(f"{where}: must be non-empty text without control characters, got {value!r}")
    low, high = meta.get("low"), meta.get("high")
    if low is not None and value < low:
        raise ConfigError(f"{where}: must be at least {low}, got {value!r}")
    if high is not None and value > high:
        raise ConfigError(f"{where}: must be at most {high}, got {value!r}")
    return value


def _parse_env(text: str, kind: Any) -> Any:
    """An environment string as the field's type (unparseable text is left for _check to name)."""
    if typing.get_origin(kind) is tuple:
        return tuple(item.strip() for item in text.split(",") if item.strip())
    if typing.get_origin(kind) is dict:
        return text  # tables are set in the config file; _check names the variable
    if kind is bool:
        return {"true": True, "1": True, "yes": True, "on": True,
                "false": False, "0": False, "no": False, "off": False}.get(text.strip().lower(), text)
    if kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            return text
    return text


def find_file(explicit: str | os.PathLike[str] | None, environ: Mapping[str, str]) -> Path | None:
    """The config file to read: ``--config``, else ``$SMTP_SINK_CONFIG``, else ``./smtp-sink.toml``."""
    if explicit:
        return Path(explicit)
    if environ.get(ENV_CONFIG):
        return Path(environ[ENV_CONFIG])
    local = Path(LOCAL_CONFIG)
    return local if local.is_file() else None


def read_file(path: Path) -> dict[str, dict[str, Any]]:
    """Read and validate a TOML file into ``{section: {key: value}}``."""
    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    except UnicodeDecodeError as exc:  # tomllib decodes the bytes itself and lets this through
        raise ConfigError(f"{path}: invalid TOML: not UTF-8 text (byte {exc.start})") from None
    return validate(data, str(path))


def validate(data: Mapping[str, Any], where: str) -> dict[str, dict[str, Any]]:
    """Check ``{section: {key: value}}`` (and ``rules``, a list of tables) as a config file is
    checked; errors start with ``where``. Returns ``{section: {key: value}}``, rules under
    ``{"rules": {"rules": (Rule, ...)}}``."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected sections such as {{'smtp': {{...}}}}, got {data!r}")
    known = sections()
    values: dict[str, dict[str, Any]] = {}
    for name, table in data.items():
        if name == "rules":
            values["rules"] = {"rules": _read_rules(where, table)}
            continue
        if name not in known:
            raise ConfigError(f"{where}: unknown section [{name}] (known: {', '.join([*known, 'rules'])})")
        if not isinstance(table, Mapping):
            raise ConfigError(f"{where}: {name} must be a table [{name}], got {table!r}")
        keys = _keys(known[name])
        for key, value in table.items():
            if key not in keys:
                raise ConfigError(f"{where}: unknown key [{name}] {key} (known: {', '.join(keys)})")
            kind, meta = keys[key]
            values.setdefault(name, {})[key] = _check(value, kind, meta, f"{where}: [{name}] {key}")
    return values


def _read_rules(where: str, tables: Any) -> tuple[Rule, ...]:
    """``[[rules]]``: an array of tables, each a :class:`~smtp_sink.rules.Rule`."""
    if not isinstance(tables, (list, tuple)) or not all(isinstance(t, Mapping) for t in tables):
        raise ConfigError(f"{where}: rules must be an array of tables: [[rules]]")
    rules = []
    for number, table in enumerate(tables, 1):
        try:
            rules.append(Rule.from_mapping(dict(table)))
        except RuleError as exc:
            raise ConfigError(f"{where}: [[rules]] #{number}: {exc}") from None
    return tuple(rules)


def read_env(environ: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """``SMTP_SINK_<SECTION>_<KEY>`` variables, e.g. ``SMTP_SINK_SMTP_PORT=2526``."""
    known = sections()
    values: dict[str, dict[str, Any]] = {}
    for var, text in environ.items():
        if not var.startswith(ENV_PREFIX) or var == ENV_CONFIG:
            continue
        section, _, key = var[len(ENV_PREFIX):].lower().partition("_")
        keys = _keys(known[section]) if section in known else {}
        if key not in keys:
            raise ConfigError(
                f"environment variable {var}: unknown setting "
                f"(expected {ENV_PREFIX}<SECTION>_<KEY>, e.g. {ENV_PREFIX}SMTP_PORT)"
            )
        kind, meta = keys[key]
        values.setdefault(section, {})[key] = _check(_parse_env(text, kind), kind, meta, f"environment variable {var}")
    return values


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name: it may resolve to anything


def check_http(http: HTTPConfig) -> None:
    """Rules across keys: ``auth`` is user:password, and required off loopback."""
    if http.auth and (":" not in http.auth or http.auth.startswith(":")):
        raise ConfigError('[http] auth: must be "user:password"')
    if http.enabled and not http.auth and not is_loopback(http.host):
        raise ConfigError(
            f"[http] host {http.host!r} is not a loopback address, and captured mail would be open to the "
            'network: set [http] auth = "user:password" (SMTP_SINK_HTTP_AUTH, --http-auth), or keep 127.0.0.1'
        )


def check_tls(tls: TLSConfig, source: str) -> None:
    """``[tls] probe`` needs TLS on, and the generated authority for the probes it signs."""
    if tls.probe is TLSProbe.OFF:
        return
    where = "" if source == "(defaults)" else f"{source}: "  # no file: the flags or the environment
    if tls.mode is TLSMode.OFF:
        raise ConfigError(f'{where}[tls] probe = "{tls.probe}" needs TLS, but [tls] mode is "off" '
                          '(--tls off): set it to "auto" or "on"')
    if tls.probe in (TLSProbe.EXPIRED, TLSProbe.WRONG_HOST) and (tls.cert or tls.key):
        raise ConfigError(f'{where}[tls] probe = "{tls.probe}" signs its certificate with smtp-sink\'s own '
                          "authority, but [tls] cert/key name another certificate: leave them unset for this probe")


def check_relay(relay: RelayConfig) -> None:
    """Rules across ``[relay]`` keys: one kind of TLS, credentials for the login, regular expressions
    that compile, addresses that are addresses, a host for auto-relay, a readable ``ca_file``."""
    if relay.tls and relay.starttls:
        raise ConfigError("[relay] tls and starttls: choose one (tls is TLS from the first byte, as on port 465; "
                          "starttls upgrades a plain connection after EHLO)")
    secret = "secret" if relay.auth is RelayAuth.CRAM_MD5 else "password"
    if relay.auth is not RelayAuth.NONE and not (relay.username and getattr(relay, secret)):
        raise ConfigError(f'[relay] auth = "{relay.auth}" needs [relay] username and {secret}')
    for key in ("allowed_recipients", "blocked_recipients", "relay_matching"):
        try:
            re.compile(getattr(relay, key))
        except re.error as exc:
            raise ConfigError(f"[relay] {key}: not a valid regular expression: {exc}") from None
    for key in ("return_path", "override_from"):
        value = getattr(relay, key)
        if value and not relay_address(value):
            raise ConfigError(f"[relay] {key}: expected an email address such as noreply@example.test, got {value!r}")
    if (relay.relay_all or relay.relay_matching) and not relay.host:
        key = "relay_all" if relay.relay_all else "relay_matching"
        raise ConfigError(f"[relay] {key}: auto-relay needs the upstream server: set [relay] host")
    if relay.ca_file:
        try:
            ssl.create_default_context(cafile=relay.ca_file)
        except (OSError, ssl.SSLError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            raise ConfigError(f"[relay] ca_file: {relay.ca_file}: not a readable PEM certificate file "
                              f"({reason})") from None


def relay_address(text: str) -> str:
    """The mailbox of ``text`` (``a@b`` or ``Name <a@b>``), or "" when it is none."""
    address = email.utils.parseaddr(text)[1]
    try:
        return parse_mailbox(address) if address else ""
    except AddressError:
        return ""


def check_webhook(webhook: WebhookConfig) -> None:
    """``[webhook] url``: an http:// or https:// URL with a host."""
    if not webhook.url:
        return
    parts = urllib.parse.urlsplit(webhook.url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"[webhook] url: expected an http:// or https:// URL, got {webhook.url!r}")


def check_checks(checks: ChecksConfig) -> None:
    """``[checks] spamassassin``: empty, ``host:port`` or ``unix:/path``; ``dkim_keys`` and the
    ``dkim_keys_file`` (it must read now) hold DKIM key records."""
    try:  # issue 17: DKIM keys (smtp_sink.checks.dkim_keys)
        check_keys(checks.dkim_keys, "[checks] dkim_keys")
        if checks.dkim_keys_file:
            read_keys_file(checks.dkim_keys_file)
    except DKIMKeyError as exc:
        raise ConfigError(str(exc)) from None
    value = checks.spamassassin
    if not value or (value.startswith("unix:") and len(value) > 5):
        return
    host, _, port = value.rpartition(":")
    if not (host.strip("[]") and port.isascii() and port.isdigit() and 0 < int(port) < 65536):
        raise ConfigError(f'[checks] spamassassin: expected "host:port" (e.g. "127.0.0.1:783") or '
                          f'"unix:/path/to/socket" of a spamd, got {value!r}')


def load(
    path: str | os.PathLike[str] | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Config:
    """Build the configuration from every layer; ``overrides`` are the command-line flags."""
    environ = os.environ if environ is None else environ
    file = find_file(path, environ)
    try:
        file_values = read_file(file) if file else {}
    except ConfigError as exc:
        if path or not environ.get(ENV_CONFIG):
            raise
        raise ConfigError(f"{exc} (named by {ENV_CONFIG})") from None
    layers = [file_values, read_env(environ)]
    flag_values: dict[str, dict[str, Any]] = {}
    known = sections()
    for name, table in (overrides or {}).items():
        keys = _keys(known[name])
        for key, value in table.items():
            if value is not None:
                kind, meta = keys[key]
                flag = FLAG_NAMES.get((name, key), f"--{key.replace('_', '-')}")
                flag_values.setdefault(name, {})[key] = _check(value, kind, meta, f"option {flag}")
    layers.append(flag_values)
    return assemble(layers, str(file) if file else "(defaults)")


def assemble(layers: list[dict[str, dict[str, Any]]], source: str) -> Config:
    """One :class:`Config` from validated layers (see :func:`validate`), later ones winning key by
    key (a later ``rules`` replaces earlier ones); cross-key rules checked (:func:`check_http`,
    :func:`check_relay`, :func:`check_webhook`, :func:`check_checks`)."""
    known = sections()
    merged: dict[str, dict[str, Any]] = {name: {} for name in [*known, "rules"]}
    for layer in layers:
        for name, table in layer.items():
            merged[name].update(table)
    built = {name: known[name](**merged[name]) for name in known}
    config = Config(**built, rules=merged["rules"].get("rules", ()), source=source)
    check_http(config.http)
    check_tls(config.tls, source)
    check_relay(config.relay)
    check_webhook(config.webhook)
    check_checks(config.checks)
    return config
