"""The TLS probe (``[tls] probe``, docs/tls-probe.md) over real sockets, with real clients.

For every probe, on STARTTLS and on implicit TLS: a client that verifies the server (smtplib with
``ssl.create_default_context(cafile=<sink CA>)``, the bundled ``smtp-send`` by default, curl with
``--cacert``) refuses the handshake, leaves no message and is recorded as ``tls-probe-refused``;
a client that does not verify (smtplib with ``CERT_NONE``, ``smtp-send --insecure``, ``curl -k``)
sends its mail, which is flagged: the finding ``tls-not-verified``, the ``X-Sink-TLS-Probe`` trace
line and the ``tls-not-verified`` tag. ``CLIENTS`` is the results table of docs/tls-probe.md (a
test checks the page against it).
"""

from __future__ import annotations

import json
import re
import shutil
import smtplib
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support.processes import Processes
from support.servers import Servers

from smtp_sink import tls
from smtp_sink.config import ConfigError, load
from smtp_sink.message import parse, summarize
from smtp_sink.server import SinkServer
from smtp_sink.tls_findings import TLSFinding, TLSFindings
from smtp_sink.trace import Envelope, read, trace_headers

PROBES = ("expired", "self-signed", "wrong-host", "untrusted-ca", "tls1.0")
TRANSPORTS = ("STARTTLS", "implicit TLS")
HELO = "app.example.test"
MESSAGE = b"From: app@example.test\r\nTo: user@example.test\r\nSubject: probe\r\n\r\nhello\r\n"
LEGACY = "DEFAULT:@SECLEVEL=0"  # what OpenSSL 3 needs on the client too before it speaks TLS 1.0
ROOT = Path(__file__).resolve().parent.parent
CURL = shutil.which("curl")


# -- the clients ------------------------------------------------------------------------------

Client = Callable[[SinkServer, str, Path], bool]  # (server, transport, work folder) -> it sent the mail


def _smtplib(context: ssl.SSLContext, server: SinkServer, transport: str) -> bool:
    """Send MESSAGE with smtplib; False when the TLS handshake failed."""
    try:
        if transport == "STARTTLS":
            with smtplib.SMTP("127.0.0.1", server.smtp_port, local_hostname=HELO, timeout=10) as smtp:
                smtp.starttls(context=context)
                smtp.sendmail("app@example.test", ["user@example.test"], MESSAGE)
        else:
            with smtplib.SMTP_SSL("127.0.0.1", server.tls_port, local_hostname=HELO, context=context,
                                  timeout=10) as smtp:
                smtp.sendmail("app@example.test", ["user@example.test"], MESSAGE)
    except ssl.SSLError:  # SSLCertVerificationError included
        return False
    return True


def smtplib_default(server: SinkServer, transport: str, work: Path) -> bool:
    """smtplib with the default context, trusting the sink's CA: it must refuse every probe."""
    context = ssl.create_default_context(cafile=server.tls_ca)
    try:
        return _smtplib(context, server, transport)
    except ssl.SSLCertVerificationError:  # pragma: no cover - caught above; kept for the reader
        return False


def smtplib_unverified(server: SinkServer, transport: str, work: Path) -> bool:
    """smtplib with ``CERT_NONE`` and no host name check: takes any certificate (TLS 1.2 or newer)."""
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    return _smtplib(context, server, transport)


def smtplib_unverified_legacy(server: SinkServer, transport: str, work: Path) -> bool:
    """... and TLS 1.0 allowed as well (minimum version lowered, security level 0)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    context.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    context.set_ciphers(LEGACY)
    return _smtplib(context, server, transport)


def _smtp_send(server: SinkServer, transport: str, *options: str) -> bool:
    port = server.smtp_port if transport == "STARTTLS" else server.tls_port
    run = subprocess.run(
        [sys.executable, "-m", "smtp_sink.clients.smtp_client", "--server", f"127.0.0.1:{port}",
         "--starttls" if transport == "STARTTLS" else "--tls", *options, "--helo", HELO,
         "--from", "app@example.test", "--to", "user@example.test", "--subject", "probe", "-v"],
        capture_output=True, text=True, timeout=30)
    assert "Traceback" not in run.stderr
    if run.returncode == 0:
        assert "C: MAIL FROM:<app@example.test>" in run.stdout  # the dialogue is still printed
        return True
    assert run.returncode == 4, run.stdout + run.stderr  # EXIT_CONNECTION: a TLS failure
    assert "TLS handshake with 127.0.0.1" in run.stderr
    return False


def smtp_send_default(server: SinkServer, transport: str, work: Path) -> bool:
    """The bundled client as documented: it verifies against ``--cafile``."""
    return _smtp_send(server, transport, "--cafile", str(server.tls_ca))


def smtp_send_insecure(server: SinkServer, transport: str, work: Path) -> bool:
    """The bundled client with ``--insecure``."""
    return _smtp_send(server, transport, "--insecure")


def _curl(server: SinkServer, transport: str, work: Path, *options: str) -> bool:
    assert CURL is not None, "curl is not installed: run scripts/setup-tests.sh"
    url = (f"smtp://127.0.0.1:{server.smtp_port}/{HELO}" if transport == "STARTTLS"  # the path: curl's EHLO
           else f"smtps://127.0.0.1:{server.tls_port}/{HELO}")
    message = work / "message.eml"
    message.write_bytes(MESSAGE)
    run = subprocess.run(
        [CURL, "-sS", "--url", url, "--ssl-reqd", "--mail-from", "app@example.test", "--mail-rcpt",
         "user@example.test", "--upload-file", str(message), *options], capture_output=True, text=True, timeout=30)
    if run.returncode == 0:
        return True
    assert run.returncode in (35, 60), run.stderr  # handshake failed / certificate problem
    return False


def curl_default(server: SinkServer, transport: str, work: Path) -> bool:
    """curl trusting the sink's CA (``--cacert``)."""
    return _curl(server, transport, work, "--cacert", str(server.tls_ca))


def curl_insecure(server: SinkServer, transport: str, work: Path) -> bool:
    """``curl -k``."""
    return _curl(server, transport, work, "-k")


def curl_insecure_legacy(server: SinkServer, transport: str, work: Path) -> bool:
    """``curl -k --ciphers DEFAULT:@SECLEVEL=0`` (curl itself still allows TLS 1.0)."""
    return _curl(server, transport, work, "-k", "--ciphers", LEGACY)


def curl_legacy(server: SinkServer, transport: str, work: Path) -> bool:
    """``curl --cacert ... --ciphers DEFAULT:@SECLEVEL=0``: verifies the certificate, takes TLS 1.0."""
    return _curl(server, transport, work, "--cacert", str(server.tls_ca), "--ciphers", LEGACY)


# client -> (how docs/tls-probe.md names it, the probes it accepts, the probes it refuses only after
# completing the handshake); it refuses the others during the handshake.
ALL, CERTIFICATES, NONE = set(PROBES), set(PROBES) - {"tls1.0"}, set[str]()
CLIENTS: dict[str, tuple[Client, str, set[str], set[str]]] = {
    "smtplib-default": (smtplib_default, "smtplib, `create_default_context(cafile=ca.pem)`", NONE, NONE),
    "smtplib-unverified": (smtplib_unverified, "smtplib, `CERT_NONE`, `check_hostname=False`", CERTIFICATES, NONE),
    "smtplib-unverified-legacy": (smtplib_unverified_legacy,
                                  "smtplib, `CERT_NONE` + TLS 1.0 allowed (`@SECLEVEL=0`)", ALL, NONE),
    "smtp-send": (smtp_send_default, "`smtp-send --cafile ca.pem` (the default: it verifies)", NONE, NONE),
    "smtp-send-insecure": (smtp_send_insecure, "`smtp-send --insecure`", CERTIFICATES, NONE),
    # curl checks the host name once the handshake is done: wrong-host is refused after it
    "curl": (curl_default, "`curl --cacert ca.pem`", NONE, {"wrong-host"}),
    "curl-k": (curl_insecure, "`curl -k`", CERTIFICATES, NONE),
    "curl-k-legacy": (curl_insecure_legacy, "`curl -k --ciphers DEFAULT:@SECLEVEL=0`", ALL, NONE),
    "curl-legacy": (curl_legacy, "`curl --cacert ca.pem --ciphers DEFAULT:@SECLEVEL=0`", {"tls1.0"},
                    {"wrong-host"}),
}
OUTCOMES = {"accepted": "accepted, flagged", "refused": "refused", "late": "refused after the handshake"}


def outcome(client: str, probe: str) -> str:
    """What ``client`` does under ``probe``: accepted, refused (in the handshake) or late."""
    _, _, accepts, late = CLIENTS[client]
    return "accepted" if probe in accepts else "late" if probe in late else "refused"


# -- helpers ----------------------------------------------------------------------------------


def findings(server: SinkServer, count: int, timeout: float = 5.0) -> list[TLSFinding]:
    """The probe's findings once there are ``count`` (a refusal is recorded as the server sees it)."""
    deadline = time.monotonic() + timeout
    while len(found := server.sink.tls_findings.all()) < count and time.monotonic() < deadline:
        time.sleep(0.01)
    return found


def stored(server: SinkServer) -> list[bytes]:
    return [server.store.read(message_id) for message_id in server.store.ids()]


def assert_refused(server: SinkServer, finding: TLSFinding, probe: str, transport: str, late: bool) -> None:
    assert finding.check == "tls-probe-refused" and finding.severity == "info"
    assert finding.probe == probe and finding.peer == "127.0.0.1" and finding.message_id == ""
    if late:
        assert "client [127.0.0.1] completed the handshake" in finding.evidence
        assert f"(probe {probe}) on {transport}, then closed the connection without sending mail" in finding.evidence
    else:
        assert "client [127.0.0.1] refused" in finding.evidence
        assert f"(probe {probe}) on {transport}:" in finding.evidence


def assert_flagged(server: SinkServer, finding: TLSFinding, probe: str, raw: bytes) -> None:
    assert finding.check == "tls-not-verified" and finding.severity == "error"
    assert finding.probe == probe and finding.peer == "127.0.0.1" and finding.helo == HELO
    assert f"client [127.0.0.1] (HELO {HELO})" in finding.evidence and f"(probe {probe})" in finding.evidence
    assert "RFC" in finding.reference
    # the message: the server's trace block says so, and it carries the tag
    assert f"\r\nX-Sink-TLS-Probe: {probe}\r\nReceived: from {HELO} ".encode() in raw
    assert read(raw).tls_probe == probe
    page = server.store.query(search="tag:tls-not-verified")
    assert finding.message_id in [summary.id for summary in page.messages]
    assert "tls-not-verified" in next(s for s in page.messages if s.id == finding.message_id).tags


# -- every probe x every client x STARTTLS and implicit TLS ------------------------------------


@pytest.mark.parametrize("client", list(CLIENTS))
@pytest.mark.parametrize("probe", PROBES)
def test_each_client_refuses_or_is_flagged(start_server: Servers, tmp_path: Path, probe: str, client: str) -> None:
    send, expected = CLIENTS[client][0], outcome(client, probe)
    server = start_server(tls={"probe": probe})
    for number, transport in enumerate(TRANSPORTS, 1):
        sent = send(server, transport, tmp_path)
        assert sent == (expected == "accepted"), f"{client} under {probe} on {transport}"
        (finding,) = findings(server, number)[number - 1:]
        messages = stored(server)
        if sent:
            assert len(messages) == number
            assert finding.message_id == server.store.ids()[-1]
            assert_flagged(server, finding, probe, server.store.read(finding.message_id))
        else:
            assert messages == []  # nothing got through
            assert_refused(server, finding, probe, transport, expected == "late")
    assert len(server.sink.tls_findings.all()) == 2  # one each, nothing else


def test_the_results_table_in_the_docs_is_the_tested_one() -> None:
    """docs/tls-probe.md's table of clients and probes says what CLIENTS says (and the tests prove)."""
    page = (ROOT / "docs" / "tls-probe.md").read_text()
    for name, (_, label, _, _) in CLIENTS.items():
        row = next((line for line in page.splitlines() if line.startswith(f"| {label} |")), None)
        assert row is not None, f"no row for {name} ({label}) in docs/tls-probe.md"
        cells = [cell.strip() for cell in row.strip("|").split("|")][1:]
        expected = [OUTCOMES[outcome(name, probe)] for probe in PROBES]
        assert cells == expected, f"{name}: {cells} != {expected}"


# -- what a probe presents --------------------------------------------------------------------


def test_each_probe_presents_what_it_says(start_server: Servers) -> None:
    """The certificate each probe presents, read from the wire (no verification)."""
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature

    now = time.time()
    for probe in PROBES:
        server = start_server(tls={"probe": probe})
        ca = x509.load_pem_x509_certificate(Path(server.tls_ca or "").read_bytes())
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        if probe == "tls1.0":
            context.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
            context.set_ciphers(LEGACY)
        with smtplib.SMTP_SSL("127.0.0.1", server.tls_port, context=context, timeout=10) as smtp:
            sock = smtp.sock
            assert isinstance(sock, ssl.SSLSocket)
            der, version = sock.getpeercert(binary_form=True), sock.version()
        assert der is not None
        leaf = x509.load_der_x509_certificate(der)
        names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        dns = names.get_values_for_type(x509.DNSName)
        valid = leaf.not_valid_before_utc.timestamp() < now < leaf.not_valid_after_utc.timestamp()
        assert (version == "TLSv1") == (probe == "tls1.0"), probe
        if probe in ("expired", "wrong-host", "tls1.0"):  # signed by the CA clients trust
            leaf.verify_directly_issued_by(ca)
        else:
            with pytest.raises((ValueError, InvalidSignature)):  # another issuer
                leaf.verify_directly_issued_by(ca)
        assert valid == (probe != "expired"), probe
        assert (dns == [tls.WRONG_HOST]) == (probe == "wrong-host"), probe
        assert ("localhost" in dns) == (probe != "wrong-host"), probe
        assert (leaf.issuer == leaf.subject) == (probe == "self-signed"), probe
        start_server.stop(server)


def test_without_tls_the_probe_flags_nothing(start_server: Servers) -> None:
    """Plain SMTP under a probe is not a verification failure: no finding, no flag, no tag."""
    server = start_server(tls={"probe": "expired"})
    with smtplib.SMTP("127.0.0.1", server.smtp_port, local_hostname=HELO, timeout=10) as smtp:
        smtp.sendmail("app@example.test", ["user@example.test"], MESSAGE)
    (raw,) = stored(server)
    assert b"X-Sink-TLS-Probe" not in raw and read(raw).tls_probe == ""
    assert server.sink.tls_findings.all() == []
    assert server.store.query(search="tag:tls-not-verified").messages == []


def test_without_a_probe_nothing_is_recorded(start_server: Servers) -> None:
    """TLS on, probe off: the good certificate verifies; a failed handshake is no probe finding."""
    server = start_server(tls={"mode": "on"})
    assert smtplib_default(server, "STARTTLS", Path()) and smtplib_default(server, "implicit TLS", Path())
    context = ssl.create_default_context()  # does not trust the sink's CA: refuses
    assert not _smtplib(context, server, "STARTTLS") and not _smtplib(context, server, "implicit TLS")
    assert server.sink.tls_findings.probe == "" and server.sink.tls_findings.all() == []
    assert all(read(raw).tls_probe == "" for raw in stored(server))


# -- the flag cannot be forged ----------------------------------------------------------------

FORGED = b"X-Sink-TLS-Probe: expired\r\n"


def test_content_cannot_forge_the_flag(start_server: Servers) -> None:
    """An ``X-Sink-TLS-Probe`` line in the client's data is content: no flag, no tag, no finding."""
    server = start_server(tls={"mode": "on"})
    context = ssl.create_default_context(cafile=server.tls_ca)
    with smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=10) as smtp:
        smtp.starttls(context=context)
        smtp.sendmail("app@example.test", ["user@example.test"], FORGED + MESSAGE)
    (raw,) = stored(server)
    assert read(raw).tls_probe == "" and raw.count(b"X-Sink-TLS-Probe") == 1  # kept as content
    assert server.store.query(search="tag:tls-not-verified").messages == []


def test_the_reader_takes_the_flag_only_from_the_servers_block() -> None:
    envelope = Envelope(helo=HELO, mail_from="a@example.test", rcpt_to=["b@example.test"], peer="127.0.0.1",
                        tls=True, esmtp=True, tls_probe="self-signed")
    block = trace_headers(envelope, "01HV0000000000000000000000", "sink.test")
    assert read(block + MESSAGE).tls_probe == "self-signed"
    envelope.tls_probe = ""
    clean = trace_headers(envelope, "01HV0000000000000000000000", "sink.test")
    assert read(clean + FORGED + MESSAGE).tls_probe == ""  # after the server's Received: content
    head, received = clean.split(b"Received:", 1)
    assert read(head + FORGED + b"Received:" + received).tls_probe == "expired"  # only the server writes there
    # without the server's own Received line after it, the block is not the server's
    assert read(b"Return-Path: <a@example.test>\r\nX-Original-To: b@example.test\r\n" + FORGED
                + b"Received: from x ([1.2.3.4]) by mx.example (Postfix)\r\n" + MESSAGE).tls_probe == ""


_LINES = st.sampled_from([
    FORGED, b"X-Sink-TLS-Probe: tls1.0\r\n", b"X-Sink-TLS-Probe:\r\n", b"Return-Path: <f@victim.test>\r\n",
    b"X-Original-To: f@victim.test\r\n", b"X-Sink-Auth: admin\r\n",
    b"Received: from x ([1.2.3.4])\r\n\tby h (smtp-sink 9) with ESMTPS id 01F;\r\n\tMon, 1 Jan 2024\r\n",
    b"\r\n", b"\n", b"\t", b" ", b":", b"\xff",
])


@settings(max_examples=400, deadline=None)
@given(content=st.lists(st.one_of(_LINES, st.binary(max_size=8)), max_size=30).map(b"".join),
       probe=st.sampled_from(["", *PROBES]), auth_user=st.none() | st.just("ann"),
       rcpt_to=st.lists(st.sampled_from(["b@example.test", "c@example.test"]), min_size=1, max_size=3))
def test_for_any_content_the_flag_is_what_the_server_wrote(
    content: bytes, probe: str, auth_user: str | None, rcpt_to: list[str],
) -> None:
    """Whatever the client's data holds, the flag read back (from the bytes, from the parsed
    message, into the summary the tag comes from) is the one the server wrote, or none."""
    envelope = Envelope(helo=HELO, esmtp=True, mail_from="a@example.test", rcpt_to=rcpt_to, peer="127.0.0.1",
                        tls=bool(probe), auth_user=auth_user, tls_probe=probe)
    raw = trace_headers(envelope, "01HV0000000000000000000000", "sink.test") + content
    assert read(raw).tls_probe == probe
    assert read(parse(raw)).tls_probe == probe
    assert summarize("01HV0000000000000000000000", raw).tls_probe == probe


# -- the API, the pytest plugin, the findings list ---------------------------------------------


def test_the_api_lists_the_findings(start_server: Servers) -> None:
    server = start_server(http=True, tls={"probe": "untrusted-ca"})
    assert not smtplib_default(server, "implicit TLS", Path())
    assert smtplib_unverified(server, "STARTTLS", Path())
    findings(server, 2)
    with urllib.request.urlopen(f"http://127.0.0.1:{server.http_port}/api/v1/tls-findings", timeout=10) as reply:
        body = json.load(reply)
    assert body["Probe"] == "untrusted-ca"
    refused, flagged = body["Findings"]
    assert refused["Check"] == "tls-probe-refused" and refused["Severity"] == "info"
    assert "on implicit TLS" in refused["Evidence"] and refused["MessageID"] == ""
    assert flagged["Check"] == "tls-not-verified" and flagged["Severity"] == "error"
    assert flagged["Helo"] == HELO and flagged["Peer"] == "127.0.0.1" and flagged["Probe"] == "untrusted-ca"
    assert flagged["MessageID"] == server.store.ids()[0]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", flagged["Time"])
    # the message's lint names it too (from the server's flag in the file: the API, CLI and plugin alike)
    lint_url = f"http://127.0.0.1:{server.http_port}/api/v1/message/{flagged['MessageID']}/lint"
    with urllib.request.urlopen(lint_url, timeout=10) as reply:
        lint = json.load(reply)
    first = lint["Findings"][0]
    assert first["Check"] == "tls-not-verified" and first["Severity"] == "error" and lint["Errors"] >= 1
    assert "'untrusted-ca'" in first["Evidence"] and "RFC 8314" in first["Reference"]
    with urllib.request.urlopen(f"http://127.0.0.1:{server.http_port}/api/v1/swagger.json", timeout=10) as reply:
        assert "/api/v1/tls-findings" in json.load(reply)["paths"]


def test_the_findings_list_is_bounded_and_answers_per_message_and_client() -> None:
    kept = TLSFindings("expired", limit=3)
    for number in range(5):
        kept.accepted(Envelope(helo=HELO, peer=f"10.0.0.{number}", tls=True), f"id{number}")
    assert [finding.message_id for finding in kept.all()] == ["id2", "id3", "id4"]
    assert [finding.peer for finding in kept.for_message("id3")] == ["10.0.0.3"]
    kept.refused("10.0.0.4", "STARTTLS", ssl.SSLError(1, "alert"))
    assert [finding.check for finding in kept.for_peer("10.0.0.4")] == ["tls-not-verified", "tls-probe-refused"]
    assert kept.for_peer("10.0.0.4", since=time.time() + 60) == []
    long = kept.accepted(Envelope(helo="h" * 500, peer="10.0.0.9", tls=True), "id9")
    assert len(long.evidence) <= 200  # Finding's bound
    kept.clear()
    assert kept.all() == []


pytest_plugins = ["pytester"]


def test_the_pytest_marker_and_tls_findings(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nasyncio_mode = strict\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makepyfile(test_inner='''
        import smtplib, ssl
        import pytest

        def send(sink, context):
            with smtplib.SMTP(sink.host, sink.port, local_hostname="app.test", timeout=10) as smtp:
                smtp.starttls(context=context)
                smtp.sendmail("a@example.test", ["b@example.test"], b"Subject: x\\r\\n\\r\\nx\\r\\n")

        @pytest.mark.smtp_sink(tls_probe="expired")
        def test_shorthand(smtp_sink):
            with pytest.raises(ssl.SSLCertVerificationError):
                send(smtp_sink, smtp_sink.ssl_context())
            unverified = ssl.create_default_context()
            unverified.check_hostname, unverified.verify_mode = False, ssl.CERT_NONE
            send(smtp_sink, unverified)
            refused, flagged = smtp_sink.wait_for_tls_findings(2)
            assert refused.check == "tls-probe-refused"
            assert flagged.check == "tls-not-verified" and flagged.probe == "expired"
            (message,) = smtp_sink.messages
            assert flagged.message_id == message.id and message.message["X-Sink-TLS-Probe"] == "expired"

        @pytest.mark.smtp_sink(tls={"probe": "self-signed"})
        def test_section(smtp_sink):
            with pytest.raises(ssl.SSLCertVerificationError):
                send(smtp_sink, smtp_sink.ssl_context())
            (refused,) = smtp_sink.wait_for_tls_findings(check="tls-probe-refused")
            assert "self-signed" in refused.evidence and smtp_sink.tls_findings == [refused]
            with pytest.raises(AssertionError, match="wait_for_tls_findings.1, check='tls-not-verified'.: 0 after"):
                smtp_sink.wait_for_tls_findings(check="tls-not-verified", timeout=0.2)

        def test_off_by_default(smtp_sink):
            assert smtp_sink.tls_findings == [] and smtp_sink.tls_port is None

        @pytest.mark.smtp_sink(tls_probe="bogus")
        def test_bad_probe(smtp_sink):
            pass
    ''')
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:hypothesispytest")
    result.assert_outcomes(passed=3, errors=1)
    result.stdout.fnmatch_lines(["*smtp_sink: @pytest.mark.smtp_sink: [[]tls[]] probe: must be one of off, expired,*"])


# -- configuration and the command line --------------------------------------------------------


def test_config_errors_name_the_key_and_the_file(tmp_path: Path) -> None:
    config = tmp_path / "smtp-sink.toml"
    config.write_text('[tls]\nprobe = "stale"\n')
    with pytest.raises(ConfigError, match=r"smtp-sink.toml: \[tls\] probe: must be one of off, expired, self-signed"):
        load(config, environ={})
    config.write_text('[tls]\nmode = "off"\nprobe = "expired"\n')
    with pytest.raises(ConfigError, match=r'smtp-sink.toml: \[tls\] probe = "expired" needs TLS, but \[tls\] mode'):
        load(config, environ={})
    config.write_text('[tls]\ncert = "c.pem"\nkey = "k.pem"\nprobe = "wrong-host"\n')
    with pytest.raises(ConfigError, match=r'smtp-sink.toml: \[tls\] probe = "wrong-host" signs its certificate'):
        load(config, environ={})
    config.write_text('[tls]\nprobe = "tls1.0"\n')
    assert load(config, environ={}).tls.probe == "tls1.0"
    assert load(None, environ={"SMTP_SINK_TLS_PROBE": "self-signed"}).tls.probe == "self-signed"


def test_serve_tls_probe_flag(tmp_path: Path) -> None:
    run = subprocess.run([sys.executable, "-m", "smtp_sink", "serve", "--store", str(tmp_path / "mail"),
                          "--tls-probe", "bogus"], capture_output=True, text=True, timeout=30, cwd=tmp_path)
    assert run.returncode != 0 and "Traceback" not in run.stderr
    assert ("option --tls-probe: must be one of off, expired, self-signed, wrong-host, untrusted-ca, tls1.0"
            in run.stderr)


def test_serve_with_a_probe_flags_a_real_client(start_process: Processes, tmp_path: Path) -> None:
    """``smtp-sink serve --tls-probe wrong-host`` as a user runs it, with ``curl -k`` against it."""
    process = start_process("--tls-probe", "wrong-host", "--tls-port", "0")
    assert "TLS probe wrong-host" in process.log()
    message = tmp_path / "m.eml"
    message.write_bytes(MESSAGE)
    assert CURL is not None
    run = subprocess.run([CURL, "-sS", "-k", "--url", f"smtps://127.0.0.1:{process.tls_port}",
                          "--mail-from", "app@example.test", "--mail-rcpt", "user@example.test", "--upload-file",
                          str(message)], capture_output=True, text=True, timeout=30)
    assert run.returncode == 0, run.stderr
    (eml,) = (tmp_path / "mail").glob("*.eml")
    assert read(eml.read_bytes()).tls_probe == "wrong-host"


# -- certificates ------------------------------------------------------------------------------


def test_a_store_made_before_the_probe_gets_a_new_ca(start_server: Servers, tmp_path: Path) -> None:
    """The probe's CA-signed certificates are made with the CA (its key is never kept): a store
    whose tls/ folder has no probe/ (an older version's) gets a new CA, with a warning, and works."""
    store = tmp_path / "mail"
    tls.generate(store / "tls", "smtp-sink.localhost")
    shutil.rmtree(store / "tls" / "probe")
    old_ca = (store / "tls" / "ca.pem").read_bytes()
    server = start_server(tls={"probe": "expired"})
    new_ca = Path(server.tls_ca or "").read_bytes()
    assert new_ca != old_ca
    assert not smtplib_default(server, "STARTTLS", tmp_path)
    assert smtplib_unverified(server, "STARTTLS", tmp_path)
    start_server.stop(server)
    again = start_server(tls={"probe": "wrong-host"})  # made together: kept on the next start
    assert Path(again.tls_ca or "").read_bytes() == new_ca
    assert not any(path.name.endswith("key.pem") and "ca" in path.name for path in (store / "tls").rglob("*"))


def test_the_ca_key_is_never_written(tmp_path: Path) -> None:
    """Every private key in tls/ belongs to a certificate that is not a CA."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    folder = tmp_path / "tls"
    tls.generate(folder, "smtp-sink.localhost")
    ca = x509.load_pem_x509_certificate((folder / "ca.pem").read_bytes())
    ca_public = ca.public_key().public_bytes(serialization.Encoding.DER,
                                             serialization.PublicFormat.SubjectPublicKeyInfo)
    for path in folder.rglob("*.pem"):
        text = path.read_bytes()
        if b"PRIVATE KEY" in text:
            key = serialization.load_pem_private_key(text[text.index(b"-----BEGIN PRIVATE KEY"):], None)
            public = key.public_key().public_bytes(serialization.Encoding.DER,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo)
            assert public != ca_public, path
            assert path.stat().st_mode & 0o077 == 0, path
