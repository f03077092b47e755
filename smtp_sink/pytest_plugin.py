"""pytest plugin: the ``smtp_sink`` fixture, a real smtp-sink server for each test.

Installed with the package (``pytest11`` entry point ``smtp_sink``), nothing to enable::

    def test_welcome_mail(smtp_sink):
        app.send_welcome(host=smtp_sink.host, port=smtp_sink.port)
        mail = smtp_sink.wait_for(to="ann@example.test", subject="Welcome")
        assert "activate" in mail.text

The server runs in its own thread and event loop (:class:`~smtp_sink.server.ServerThread`) on a
free port, stores into a temporary folder under ``tmp_path`` and stops when the test ends, with
its fault rules. Sync tests and asyncio tests (``await smtp_sink.wait_for_async(...)``) both work:
the test's own event loop is never blocked by the server, nor the server by it.

Settings: the ``smtp_sink_settings`` fixture (override it in a ``conftest.py`` or a module)
returns ``{section: {key: value}}`` as in ``smtp-sink.toml``; a ``@pytest.mark.smtp_sink(smtp={...})``
marker on a test, class or module merges its sections over it. Neither ``./smtp-sink.toml`` nor
``SMTP_SINK_*`` variables are read: a test's server is what the test says. Defaults differ from
``smtp-sink serve`` only where a test needs it: SMTP and implicit TLS on free ports, HTTP off.
"""

from __future__ import annotations

import asyncio
import functools
import ssl
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any

import pytest

from . import trace
from .checks.dkim_check import Report as DKIMReport
from .checks.dkim_check import keys_of
from .checks.dkim_check import verify as verify_dkim
from .config import ChecksConfig, Config, ConfigError, assemble, validate
from .duplicates import groups
from .errors import ListenError, NotFound
from .lint import LintReport, lint_recorded
from .matching import Criteria, SubjectMatcher
from .message import detail, summarize
from .plugin_sessions import find, recorded, wait_sessions
from .rules import Rule, RuleError
from .server import ServerThread, SinkServer
from .sessions import Session
from .sink import Sink
from .snapshot_pytest import Snapshots, add_option
from .summary import Summary
from .tls_findings import TLSFinding

__all__ = ["CapturedMessage", "SinkFixture", "build_config"]

MARKER = "smtp_sink"
POLL_INTERVAL = 0.01  # seconds between two looks at the store in wait_for
SESSION_WAIT = 5.0  # seconds message.session waits for its session to end and be written (issue 17)
REPORT_LIMIT = 20  # captured messages listed when wait_for times out (the newest)
# What a test's server differs in from `smtp-sink serve`: free ports, no web side.
TEST_DEFAULTS: dict[str, dict[str, Any]] = {
    "smtp": {"port": 0},
    "tls": {"port": 0},
    "http": {"enabled": False, "port": 0},
}
_SECTIONS = {"SMTP": "smtp", "implicit TLS": "tls", "HTTP": "http"}  # the settings of a listener's port
_parser = BytesParser(policy=policy.default)
Matcher = SubjectMatcher | None


@dataclass(frozen=True)
class CapturedMessage:
    """One stored message: its file, its envelope, what the index knows of it (:attr:`summary`)
    and, for anything else, :attr:`message`: the stored bytes parsed as an
    :class:`~email.message.EmailMessage` (``email.policy.default``) on first use.

    The shortcuts (:attr:`subject`, :attr:`to`, :attr:`text`...) are read as the web page and the
    CLI read them (:mod:`smtp_sink.message`): decoded, and within its display limits."""

    id: str
    path: Path
    mail_from: str  # envelope sender (MAIL FROM), "" for the null sender <>
    rcpt_to: tuple[str, ...]  # envelope recipients (RCPT TO), Bcc included
    raw: bytes = field(repr=False)  # the stored bytes, trace headers included
    summary: Summary = field(repr=False)  # the message's summary (as listed by the web page and the CLI)
    auth_user: str | None = None  # the user the client logged in as (AUTH), or None
    checks: ChecksConfig = field(default_factory=ChecksConfig, repr=False)  # the server's [checks] (DKIM keys)
    session_id: str = ""  # issue 17: the recorded SMTP session that delivered it ("" if none)
    _find_session: Callable[[str], Session | None] | None = field(default=None, repr=False, compare=False)

    @classmethod
    def read(cls, message_id: str, path: Path, raw: bytes, checks: ChecksConfig | None = None,
             find_session: Callable[[str], Session | None] | None = None) -> CapturedMessage:
        """A stored file: the envelope and login from the server's trace block, the rest from its
        summary (:func:`smtp_sink.message.summarize`)."""
        found = trace.read(raw)
        return cls(message_id, path, found.mail_from, found.rcpt_to, raw, summarize(message_id, raw),
                   found.auth_user, checks or ChecksConfig(), found.session, find_session)

    @functools.cached_property
    def dkim(self) -> DKIMReport:
        """The DKIM check (issue 17, :mod:`smtp_sink.checks.dkim_check`) with the keys of the server's
        ``checks`` settings (``dkim_keys``, ``dkim_keys_file``), never DNS: ``.valid``, ``.aligned``,
        ``.signatures``, ``.errors``, ``.warnings``."""
        return verify_dkim(self.raw, keys_of(self.checks.dkim_keys, self.checks.dkim_keys_file), self.from_)

    @property
    def session(self) -> Session | None:
        """The SMTP session that delivered this message (issue 17; see :class:`~smtp_sink.sessions.Session`),
        with its findings: waits up to SESSION_WAIT s for it to end; None when it was not recorded."""
        if not self.session_id or self._find_session is None:
            return None
        return self._find_session(self.session_id)

    @functools.cached_property
    def message(self) -> EmailMessage:
        """The stored bytes parsed with ``email.policy.default`` (``get_body()``, decoded headers)."""
        parsed = _parser.parsebytes(self.raw)
        assert isinstance(parsed, EmailMessage)
        return parsed

    @functools.cached_property
    def _detail(self) -> dict[str, Any]:
        return detail(self.id, self.raw)

    @property
    def subject(self) -> str:
        """The decoded ``Subject`` header ("" when absent)."""
        return self.summary.subject

    @property
    def from_(self) -> str:
        """The address in the ``From`` header ("" when absent)."""
        return self.summary.sender.address if self.summary.sender else ""

    @property
    def to(self) -> list[str]:
        """The addresses in the ``To`` header (the envelope is :attr:`rcpt_to`)."""
        return [address.address for address in self.summary.to]

    @property
    def cc(self) -> list[str]:
        """The addresses in the ``Cc`` header."""
        return [address.address for address in self.summary.cc]

    @property
    def text(self) -> str:
        """The plain-text body (the HTML body as text when there is no plain one), decoded."""
        text: str = self._detail["Text"]
        return text

    body = text

    @property
    def html(self) -> str:
        """The HTML body ("" when there is none)."""
        html: str = self._detail["HTML"]
        return html

    @functools.cached_property
    def lint(self) -> LintReport:
        """What the sending application did wrong (``docs/lint.md``): ``assert not message.lint.errors``.
        With the session that delivered it (:attr:`session`, waited for as there): its ``MAIL FROM``
        parameters and its command-stream findings are included."""
        return lint_recorded(self.raw, self.id, self.session)

    def describe(self) -> str:
        """One line for failure messages: id, envelope and subject."""
        rcpts = ", ".join(f"<{rcpt}>" for rcpt in self.rcpt_to)
        return f"{self.id} from <{self.mail_from}> to {rcpts or '(nobody)'} subject {self.subject!r}"


class SinkFixture:
    """A running smtp-sink for one test (the ``smtp_sink`` fixture), or anywhere as a context manager::

        with SinkFixture(build_config({"auth": {"mode": "accept-any"}}, store="/tmp/mail")) as sink:
            ...
    """

    def __init__(self, config: Config) -> None:
        self.config = config
        self._thread = ServerThread(config)
        self.server: SinkServer = self._thread.server
        self._cache: dict[str, CapturedMessage] = {}
        self.snapshots: Snapshots | None = None  # set by the smtp_sink fixture (issue 17: snapshot tests)

    def assert_snapshot(self, message: CapturedMessage | bytes, name: str, *,
                        tokens: Mapping[str, Any] | None = None) -> None:
        """Compare ``message`` (normalised: :mod:`smtp_sink.snapshot`) with its snapshot ``name``
        (``tokens``: name -> regular expression, each match shown as ``<name>``); see
        :mod:`smtp_sink.snapshot_pytest` and docs/snapshots.md."""
        __tracebackhide__ = True
        if self.snapshots is None:
            raise RuntimeError("smtp_sink.assert_snapshot needs the smtp_sink fixture (it knows the test's file)")
        raw, label = (message.raw, message.id) if isinstance(message, CapturedMessage) else (message, "(bytes)")
        self.snapshots.check(raw, name, label, tokens)

    @property
    def sink(self) -> Sink:
        """The running sink (its ``store``, ``rules``, ``policy``, ``subscribe``)."""
        return self.server.sink

    def start(self) -> SinkFixture:
        """Start the server; return once it listens."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the server: open sessions get 421."""
        self._thread.stop()

    def __enter__(self) -> SinkFixture:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def host(self) -> str:
        """The address the SMTP (and implicit-TLS) listener is bound to."""
        return self.config.smtp.host

    @property
    def port(self) -> int:
        """The SMTP port (STARTTLS is offered there when TLS is on)."""
        return self.server.smtp_port

    @property
    def tls_port(self) -> int | None:
        """The implicit-TLS port (SMTPS, RFC 8314), None when TLS is off."""
        return self.server.tls_port or None

    @property
    def tls_ca(self) -> str | None:
        """The PEM file a client trusts to verify the server: the generated authority, or the
        configured certificate (None: TLS off)."""
        return self.server.tls_ca or self.server.tls_cert

    @property
    def http_port(self) -> int | None:
        """The HTTP API and web page port, None unless ``{"http": {"enabled": True}}``."""
        return self.server.http_port or None

    @property
    def store_path(self) -> Path:
        """The folder where the ``.eml`` files land."""
        return self.server.store.path

    @property
    def tls_findings(self) -> list[TLSFinding]:
        """What the TLS probe (``tls_probe="expired"``...) found, oldest first: clients that took the
        bad certificate and sent mail (``check == "tls-not-verified"``, ``message_id``) and clients
        that refused it (``"tls-probe-refused"``). See docs/tls-probe.md."""
        return self.sink.tls_findings.all()

    def wait_for_tls_findings(self, count: int = 1, check: str | None = None, timeout: float = 5.0) -> list[TLSFinding]:
        """Wait until ``count`` TLS-probe findings (of ``check``, when given) are there; return them.
        A refusal is recorded as the server sees the handshake fail, a moment after the client's
        error. Raises AssertionError listing the findings when they do not come within ``timeout``."""
        __tracebackhide__ = True
        found = self.sink.tls_findings.wait(count, check, timeout)
        if len(found) < count:
            listed = "".join(f"\n  {finding.check}: {finding.evidence}" for finding in self.tls_findings)
            raise AssertionError(f"smtp_sink.wait_for_tls_findings({count}, check={check!r}): {len(found)} after "
                                 f"{timeout:g} s; findings:{listed or ' none'}")
        return found

    def ssl_context(self) -> ssl.SSLContext:
        """A client context that verifies the server's certificate (for STARTTLS and implicit TLS)."""
        if self.tls_ca is None:
            raise RuntimeError('smtp_sink: TLS is off; turn it on with {"tls": {"mode": "on"}} or an [auth] mode')
        return ssl.create_default_context(cafile=self.tls_ca)

    @property
    def messages(self) -> list[CapturedMessage]:
        """Every message stored so far, oldest first (each one read and parsed once)."""
        store, found = self.server.store, {}
        for message_id in store.ids():
            captured = self._cache.get(message_id)
            if captured is None:
                try:
                    raw = store.read(message_id)
                except NotFound:  # removed meanwhile
                    continue
                captured = CapturedMessage.read(message_id, store.path / f"{message_id}.eml", raw, self.config.checks,
                                                lambda sid: find(self.server, sid, SESSION_WAIT))
            found[message_id] = captured
        self._cache = found
        return list(found.values())

    @property
    def duplicates(self) -> list[list[CapturedMessage]]:
        """Mail stored more than once (a client's retry after a lost reply, docs/retries.md): one
        list per mail, its original (the oldest) first, then its duplicates; the same ``Message-ID``,
        or the same data when there is none. A mail stored once is in none of them."""
        return groups(self.messages, lambda message: message.summary.duplicate_key)

    @property
    def sessions(self) -> list[Session]:
        """Every recorded SMTP session (issue 17), oldest first, delivered or refused, each with its
        findings: ``[s.started for s in smtp_sink.sessions]`` shows a client's retry back-off."""
        return recorded(self.server)

    def wait_for_sessions(self, count: int = 1, timeout: float = 5.0) -> list[Session]:
        """:attr:`sessions` once at least ``count`` are recorded (a dropped connection ends a moment later)."""
        __tracebackhide__ = True
        return wait_sessions(self.server, count, timeout)

    def clear(self) -> int:
        """Delete every stored message; return how many were removed."""
        removed = self.server.store.delete_all()
        self._cache = {}
        return removed

    def add_rule(self, stage: str, action: str = "reply", **fields: Any) -> Rule:
        """Add a fault rule for this test, e.g. ``add_rule("rcpt", code=550, recipient="*@bad.test")``.

        The keys are those of a ``[[rules]]`` table (see the README); a bad one raises
        :class:`~smtp_sink.rules.RuleError` naming it.
        """
        try:
            rule = Rule.from_mapping({"stage": stage, "action": action, **fields})
        except RuleError as exc:
            raise RuleError(f"smtp_sink.add_rule: {exc}") from None
        return self.server.rules.add(rule)

    @property
    def rules(self) -> list[Rule]:
        """The fault rules in force (from settings and :meth:`add_rule`)."""
        return self.server.rules.rules()

    def clear_rules(self) -> None:
        """Remove every fault rule."""
        self.server.rules.clear()

    def matching(
        self, to: str | None = None, subject: Matcher = None, sender: str | None = None,
        match: Callable[[CapturedMessage], bool] | None = None,
    ) -> list[CapturedMessage]:
        """The captured messages that match every criterion given (see :meth:`wait_for`)."""
        criteria = Criteria(to, sender, subject)
        return [m for m in self.messages if criteria.matches(m.summary) and (match is None or match(m))]

    def wait_for(
        self, to: str | None = None, subject: Matcher = None, sender: str | None = None, count: int = 1,
        timeout: float = 5.0, match: Callable[[CapturedMessage], bool] | None = None,
    ) -> Any:
        """Wait until ``count`` messages match; return the first match (``count=1``) or all matches.

        ``to``: an address (whole, ignoring case) among the envelope recipients and the To, Cc and
        Bcc addresses; ``sender``: the envelope sender or the From address (whole, ignoring case);
        ``subject``: text the subject contains (ignoring case), or a compiled regular expression
        (see :mod:`smtp_sink.matching`); ``match``: any predicate on the :class:`CapturedMessage`.
        Raises AssertionError listing what was captured when they do not arrive within ``timeout``
        seconds. In ``async def`` tests use
        :meth:`wait_for_async`, which lets the test's event loop run meanwhile.
        """
        __tracebackhide__ = True  # a failure points at the test's line, not at this loop
        deadline = time.monotonic() + timeout
        in_loop = _loop_running()
        while (found := self._look("wait_for", deadline, to, subject, sender, match, count, timeout, in_loop)) is None:
            time.sleep(POLL_INTERVAL)
        return found

    async def wait_for_async(
        self, to: str | None = None, subject: Matcher = None, sender: str | None = None, count: int = 1,
        timeout: float = 5.0, match: Callable[[CapturedMessage], bool] | None = None,
    ) -> Any:
        """:meth:`wait_for` for ``async def`` tests: sleeps with ``asyncio.sleep``, never blocking the loop."""
        __tracebackhide__ = True  # a failure points at the test's line, not at this loop
        deadline = time.monotonic() + timeout
        while (found := self._look("wait_for_async", deadline, to, subject, sender, match, count, timeout)) is None:
            await asyncio.sleep(POLL_INTERVAL)
        return found

    def _look(
        self, name: str, deadline: float, to: str | None, subject: Matcher, sender: str | None,
        match: Callable[[CapturedMessage], bool] | None, count: int, timeout: float, in_loop: bool = False,
    ) -> Any:
        """One look for :meth:`wait_for`: the result, None to look again, AssertionError past ``deadline``."""
        __tracebackhide__ = True
        found = self.matching(to, subject, sender, match)
        if len(found) >= count:
            return found[0] if count == 1 else found
        if time.monotonic() >= deadline:
            raise AssertionError(self._timeout_report(name, found, to, subject, sender, match, count, timeout,
                                                      in_loop))
        return None

    def _timeout_report(
        self, name: str, found: list[CapturedMessage], to: str | None, subject: Matcher, sender: str | None,
        match: Callable[[CapturedMessage], bool] | None, count: int, timeout: float, in_loop: bool,
    ) -> str:
        criteria = ", ".join(text for text in (Criteria(to, sender, subject).describe(),
                                                  f"match={match!r}" if match is not None else "") if text)
        captured = self.messages
        lines = [f"smtp_sink.{name}({criteria or 'any message'}): {len(found)} of {count} matching message(s) "
                 f"after {timeout:g} s; {len(captured) or 'nothing'} captured{':' if captured else ''}"]
        first = max(0, len(captured) - REPORT_LIMIT)
        if first:
            lines.append(f"  ({first} older not shown)")
        lines += [f"  {number}. {message.describe()}" for number, message in enumerate(captured[first:], first + 1)]
        if in_loop:
            lines.append("  (called inside a running event loop: use `await smtp_sink.wait_for_async(...)` "
                         "so the test's own client can send meanwhile)")
        return "\n".join(lines)


def _shorthands(sections: Mapping[str, Any]) -> Mapping[str, Any]:
    """A marker's sections with ``tls_probe="expired"`` read as ``tls={"probe": "expired"}``."""
    if "tls_probe" not in sections:
        return sections
    expanded = dict(sections)
    tls = expanded.get("tls", {})
    expanded["tls"] = {**tls, "probe": expanded.pop("tls_probe")} if isinstance(tls, Mapping) else tls
    return expanded


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def build_config(
    *layers: Mapping[str, Any], store: str | Path, where: tuple[str, ...] = (),
) -> Config:
    """A :class:`Config` for a test server: :data:`TEST_DEFAULTS`, the store folder, then each layer.

    Layers are ``{section: {key: value}}`` dicts, checked like a config file; later ones win key
    by key, ``rules`` lists add up. ``where`` names each layer in error messages. No config file
    or environment is read.
    """
    checked = [validate(layer, where[number] if number < len(where) else "smtp_sink settings")
               for number, layer in enumerate(layers)]
    rules = tuple(rule for layer in checked for rule in layer.pop("rules", {}).get("rules", ()))
    base = {name: dict(table) for name, table in TEST_DEFAULTS.items()}
    base.setdefault("store", {})["path"] = str(store)
    return assemble([base, *checked, {"rules": {"rules": rules}}], " + ".join(where) or "smtp_sink settings")


# -- the pytest side ------------------------------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    """``--smtp-sink-snapshot-update`` (see :mod:`smtp_sink.snapshot_pytest`)."""
    add_option(parser)


def pytest_configure(config: pytest.Config) -> None:
    """Declare the ``smtp_sink`` marker."""
    config.addinivalue_line(
        "markers",
        "smtp_sink(**sections): settings for the smtp_sink fixture's server, merged over smtp_sink_settings, "
        'e.g. @pytest.mark.smtp_sink(smtp={"max_recipients": 5}, auth={"mode": "accept-any"}); '
        'tls_probe="expired" is short for tls={"probe": "expired"}',
    )


@pytest.fixture
def smtp_sink_settings() -> dict[str, Any]:
    """Settings for the ``smtp_sink`` server: ``{section: {key: value}}`` as in ``smtp-sink.toml``
    (``rules``: a list of rule dicts). Override this fixture to change them for a module or suite."""
    return {}


@pytest.fixture
def smtp_sink(
    request: pytest.FixtureRequest, smtp_sink_settings: dict[str, Any], tmp_path: Path,
) -> Iterator[SinkFixture]:
    """A running smtp-sink server for this test (see :class:`SinkFixture`)."""
    layers: list[Mapping[str, Any]] = [smtp_sink_settings]
    where = ["smtp_sink_settings"]
    for marker in reversed(list(request.node.iter_markers(MARKER))):  # the closest marker last: it wins
        if marker.args:
            pytest.fail(f"@pytest.mark.{MARKER}: give sections as keywords, e.g. smtp={{'max_recipients': 5}}, "
                        f"not {marker.args!r}", pytrace=False)
        layers.append(_shorthands(marker.kwargs))
        where.append(f"@pytest.mark.{MARKER}")
    problem = None
    try:
        sink = SinkFixture(build_config(*layers, store=tmp_path / "smtp-sink", where=tuple(where)))
        sink.snapshots = Snapshots.for_test(request)
        sink.start()
    except ConfigError as exc:
        problem = f"smtp_sink: {exc}"
    except ListenError as exc:  # the settings key to change, not the command-line flag
        problem = (f"smtp_sink: the server did not start: cannot listen on {exc.address} ({exc.listener}): "
                   f"{exc.strerror}; choose another port with {_SECTIONS[exc.listener]}={{'port': ...}} "
                   "(0: a free one)")
    except (OSError, RuntimeError) as exc:
        problem = f"smtp_sink: the server did not start: {exc}"
    if problem is not None:  # outside the except: a clean message without the chained traceback
        pytest.fail(problem, pytrace=False)
    try:
        yield sink
    finally:
        sink.stop()
