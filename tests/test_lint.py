"""Client lint (issue 17, part 2; docs/lint.md): every check provoked by a message sent over a real
SMTP socket (raw socket, smtplib, the bundled smtp-send) and read back through the HTTP API, the
CLI and the pytest plugin; a clean message yields no error and no warning; hostile input stays
linear and bounded."""

from __future__ import annotations

import json
import smtplib
import time
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest
from support.client import smtp_send
from support.http import get_json, request
from support.processes import run_cli
from support.servers import Servers
from support.wire import Wire

from smtp_sink import lint
from smtp_sink.findings import Finding
from smtp_sink.lint import CHECKS, LintReport, MailParams, lint_message, lint_stored
from smtp_sink.server import SinkServer
from smtp_sink.sessions import SessionStore

SENDER = "app@example.test"
BOB = "bob@example.test"
HEAD = {
    "Date": "Mon, 30 Nov 2026 12:00:00 +0000",
    "From": f"App <{SENDER}>",
    "To": f"Bob <{BOB}>",
    "Subject": "Hello",
    "Message-ID": "<hello.1@example.test>",
    "MIME-Version": "1.0",
    "Content-Type": "text/plain; charset=utf-8",
}
BODY = b"Hello Bob.\r\n"


def build(head: dict[str, str] | None = None, body: bytes = BODY, drop: tuple[str, ...] = (),
          extra: tuple[str, ...] = ()) -> bytes:
    """The clean message with headers changed (``head``), dropped or added (``extra``: raw lines)."""
    fields = {**HEAD, **(head or {})}
    lines = [f"{name}: {value}" for name, value in fields.items() if name not in drop] + list(extra)
    return "\r\n".join(lines).encode() + b"\r\n\r\n" + body


CLEAN = build()


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SinkServer]:
    """One server with its HTTP API for the module's messages (each test finds its own by id)."""
    servers = Servers(tmp_path_factory.mktemp("lint") / "mail")
    yield servers(http=True)
    servers.stop_all()


def deliver(server: SinkServer, data: bytes, rcpt: tuple[str, ...] = (BOB,), params: str = "") -> str:
    """Send ``data`` byte-exact on a raw socket (``params``: of MAIL FROM); the stored message's id."""
    wire = Wire(server.smtp_port)
    assert wire.code() == 220
    assert wire.cmd("EHLO lint.example.test")[0] == 250
    assert wire.cmd(f"MAIL FROM:<{SENDER}>{' ' + params if params else ''}")[0] == 250
    for address in rcpt:
        assert wire.cmd(f"RCPT TO:<{address}>")[0] == 250
    assert wire.cmd("DATA")[0] == 354
    assert not any(line.startswith(b".") for line in data.split(b"\n")), "the test does no dot-stuffing"
    wire.send(data + (b"" if data.endswith(b"\r\n") else b"\r\n") + b".\r\n")
    code, text = wire.reply()
    assert code == 250, text
    wire.cmd("QUIT")
    return text[-1].rsplit(" ", 1)[-1]


def newest(server: SinkServer, before: set[str]) -> str:
    """The id of the one message stored since ``before`` (the ids then)."""
    (new,) = set(server.store.ids()) - before
    return new


def api(server: SinkServer, message_id: str) -> dict:
    return get_json(server, f"/api/v1/message/{message_id}/lint")


def checks(report: dict) -> list[str]:
    return [finding["Check"] for finding in report["Findings"]]


# -- every check, provoked over SMTP and read back through the API ------------------------------------

def send_raw(data: bytes, rcpt: tuple[str, ...] = (BOB,), params: str = ""):
    return lambda server: deliver(server, data, rcpt, params)


def send_smtplib_bytes(data: bytes, rcpt: tuple[str, ...]):
    """smtplib's ``sendmail`` with the message as bytes (sent as they are, as many apps do)."""
    def send(server: SinkServer) -> str:
        before = set(server.store.ids())
        with smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=10) as smtp:
            smtp.sendmail(SENDER, list(rcpt), data)
        return newest(server, before)
    return send


def send_html_only(server: SinkServer) -> str:
    """An EmailMessage whose only body is HTML, sent with ``send_message``."""
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = f"App <{SENDER}>", BOB, "Newsletter"
    msg["Date"], msg["Message-ID"] = HEAD["Date"], "<news.1@example.test>"
    msg.set_content("<p>Hello <b>Bob</b></p>", subtype="html")
    before = set(server.store.ids())
    with smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=10) as smtp:
        smtp.send_message(msg)
    return newest(server, before)


def send_bundled(*args: str):
    """The bundled client ``smtp-send`` with these options."""
    def send(server: SinkServer) -> str:
        before = set(server.store.ids())
        done = smtp_send("--server", f"127.0.0.1:{server.smtp_port}", "--from", SENDER, "--to", BOB,
                         "--subject", "From the bundled client", "--body", "Hello.", *args)
        assert done.returncode == 0, done.stderr
        return newest(server, before)
    return send


DUPLICATE_CIDS = build({"Content-Type": 'multipart/mixed; boundary="b"'}, body=(
    b"--b\r\nContent-Type: text/plain\r\n\r\nSee the logo.\r\n"
    b"--b\r\nContent-Type: image/png\r\nContent-ID: <logo@example.test>\r\nContent-Transfer-Encoding: base64\r\n"
    b"\r\niVBORw0KGgo=\r\n"
    b"--b\r\nContent-Type: image/png\r\nContent-ID: <logo@example.test>\r\nContent-Transfer-Encoding: base64\r\n"
    b"\r\niVBORw0KGgo=\r\n--b--\r\n"))

# check -> (how the message is sent, a piece of the evidence). Each message is the clean one with
# exactly one mistake: the checks found must be exactly that one.
CASES = {
    "data-bare-lf": (send_raw(build(body=b"Hello Bob.\nBye.\r\n")), "line 9: Hello Bob.\\n"),
    "data-bare-cr": (send_raw(build(body=b"Hello Bob.\rBye.\r\n")), "line 9: Hello Bob.\\rBye."),
    "line-too-long": (send_raw(build(body=b"x" * 1500 + b"\r\n")), "(the longest 1500)"),
    "missing-date": (send_raw(build(drop=("Date",))), "no Date header"),
    "missing-from": (send_raw(build(drop=("From",))), "no From header"),
    "missing-message-id": (send_raw(build(drop=("Message-ID",))), "no Message-ID header"),
    "bcc-header-sent": (send_smtplib_bytes(build(extra=("Bcc: audit@example.test",)), (BOB, "audit@example.test")),
                        "Bcc: audit@example.test"),
    "header-recipient-not-in-envelope": (send_raw(build(extra=("Cc: carol@example.test",))),
                                         "carol@example.test in To/Cc, not in RCPT TO"),
    "envelope-recipient-not-in-headers": (send_bundled("--bcc", "audit@example.test"),
                                          "audit@example.test in RCPT TO"),
    "non-ascii-header": (send_raw(build({"Subject": "Grüße"}), params="BODY=8BITMIME"), "Subject: Grüße"),
    "duplicate-content-id": (send_raw(DUPLICATE_CIDS), "<logo@example.test> (2 parts)"),
    "html-without-text": (send_html_only, "text/html"),
    "list-unsubscribe-without-post": (send_bundled("--header", "List-Unsubscribe: <https://example.test/u/1>"),
                                      "List-Unsubscribe: <https://example.test/u/1> without"),
}
MAIL_PARAM_CHECKS = {"8bit-without-8bitmime", "size-parameter-too-small"}  # tested below, with the MAIL line


def test_every_check_has_a_case() -> None:
    assert set(CASES) | MAIL_PARAM_CHECKS == set(CHECKS)


@pytest.mark.parametrize("check", CASES)
def test_each_check_is_found_in_a_message_sent_over_smtp(web: SinkServer, check: str) -> None:
    send, evidence = CASES[check]
    report = api(web, send(web))
    assert checks(report) == [check], report
    (finding,) = report["Findings"]
    severity, reference = CHECKS[check]
    assert finding["Severity"] == severity and finding["Reference"] == reference
    assert evidence in finding["Evidence"], finding
    counts = {"error": report["Errors"], "warning": report["Warnings"], "info": report["Infos"]}
    assert counts == {name: int(name == severity) for name in counts}


def test_a_clean_message_has_no_errors_and_no_warnings(web: SinkServer) -> None:
    """A well-formed message as the email package builds it, sent with smtplib: nothing to report."""
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Cc"] = f"App <{SENDER}>", f"Bob <{BOB}>", "carol@example.test"
    msg["Subject"] = "Your order Ω"  # non-ASCII: RFC 2047 encoded by the email package
    msg["Date"], msg["Message-ID"] = HEAD["Date"], "<order.1@example.test>"
    msg["List-Unsubscribe"] = "<https://example.test/u/1>"
    msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    msg.set_content("Thank you for your order, ünïcode included.\n" + "A long line. " * 100 + "\n")
    msg.add_alternative("<p>Thank you for your <b>order</b>.</p>", subtype="html")
    msg.add_attachment(b"col1,col2\r\n1,2\r\n", maintype="text", subtype="csv", filename="order.csv")
    before = set(web.store.ids())
    with smtplib.SMTP("127.0.0.1", web.smtp_port, timeout=10) as smtp:
        smtp.send_message(msg, to_addrs=[BOB, "carol@example.test"])
    message_id = newest(web, before)
    assert api(web, message_id) == {"Findings": [], "Errors": 0, "Warnings": 0, "Infos": 0}
    raw = web.store.read(message_id)
    assert lint_stored(raw, MailParams.from_mail_line(f"MAIL FROM:<{SENDER}> BODY=8BITMIME SIZE={len(raw)}")) \
        == LintReport()


# -- the two checks that need the MAIL FROM parameters ------------------------------------------------

EIGHT_BIT = build(extra=("Content-Transfer-Encoding: 8bit",), body="Grüße, Bob.\r\n".encode())


@pytest.mark.parametrize(("params", "found"), [
    ("", ["8bit-without-8bitmime"]),
    ("BODY=7BIT", ["8bit-without-8bitmime"]),
    ("BODY=8BITMIME", []),
])
def test_8bit_data_without_body_8bitmime(web: SinkServer, params: str, found: list[str]) -> None:
    """The MAIL line as sent, parsed by MailParams.from_mail_line; the message as the API serves it."""
    mail_line = f"MAIL FROM:<{SENDER}> {params}".strip()
    message_id = deliver(web, EIGHT_BIT, params=params)
    status, _, raw = request(web, f"/api/v1/message/{message_id}/raw")
    assert status == 200
    report = lint_stored(raw, MailParams.from_mail_line(mail_line))
    assert report.checks == found
    if found:
        assert "8-bit data with" in report.errors[0].evidence and "line 10: Grüße, Bob." in report.errors[0].evidence
    assert api(web, message_id)["Findings"] == []  # the MAIL parameters are not known to the API (yet)


@pytest.mark.parametrize(("declared", "found"), [(10, ["size-parameter-too-small"]), (len(CLEAN), [])])
def test_size_parameter_smaller_than_the_data(web: SinkServer, declared: int, found: list[str]) -> None:
    message_id = deliver(web, CLEAN, params=f"SIZE={declared}")
    report = lint_stored(web.store.read(message_id), MailParams.from_mail_line(f"MAIL FROM:<{SENDER}> SIZE={declared}"))
    assert report.checks == found
    if found:
        assert report.warnings[0].evidence == f"MAIL FROM declared SIZE=10, the client sent {len(CLEAN)} octets"


def test_without_mail_params_those_checks_are_skipped() -> None:
    assert lint_message(EIGHT_BIT, None, None) == []
    assert [f.check for f in lint_message(EIGHT_BIT, None, MailParams(size=1))] == [
        "8bit-without-8bitmime", "size-parameter-too-small"]


def test_mail_params_from_mail_lines() -> None:
    read = MailParams.from_mail_line
    assert read("MAIL FROM:<a@b> BODY=8BITMIME SIZE=10") == MailParams("8BITMIME", 10, False)
    assert read("mail from:<a@b> body=7bit smtputf8\r\n") == MailParams("7BIT", None, True)
    assert read("MAIL FROM:<a@b>") == MailParams()
    assert read("MAIL FROM:<a b> SIZE=x BODY= SMTPUTF8") == MailParams(None, None, True)  # tolerant
    assert read("MAIL FROM:<a@b> SIZE=" + "9" * 30) == MailParams()
    assert read("") == MailParams() and read("\x00\udcff") == MailParams()


def test_smtputf8_allows_raw_utf8_headers() -> None:
    data = build({"Subject": "Grüße"})
    assert [f.check for f in lint_message(data, None, MailParams("8BITMIME", None, False))] == ["non-ascii-header"]
    assert lint_message(data, None, MailParams("8BITMIME", None, True)) == []


def test_list_unsubscribe_post_must_be_one_click() -> None:
    found = lint_message(build(extra=("List-Unsubscribe: <https://x.test/u>", "List-Unsubscribe-Post: yes")))
    assert [(f.check, f.evidence) for f in found] == [
        ("list-unsubscribe-without-post", "List-Unsubscribe-Post: yes is not List-Unsubscribe=One-Click")]


# -- the API, the CLI and the pytest plugin -------------------------------------------------------------

def test_api_latest_and_unknown_ids(web: SinkServer) -> None:
    message_id = deliver(web, build(drop=("Date", "Message-ID")))
    report = get_json(web, "/api/v1/message/latest/lint")
    assert checks(report) == ["missing-date", "missing-message-id"] and report["Errors"] == 1
    assert report == api(web, message_id)
    status, _, body = request(web, "/api/v1/message/01ZZZZZZZZZZZZZZZZZZZZZZZZ/lint")
    assert status == 404 and "01ZZZZZZZZZZZZZZZZZZZZZZZZ" in json.loads(body)["Error"]
    swagger = get_json(web, "/api/v1/swagger.json")
    assert "client-lint findings" in swagger["paths"]["/api/v1/message/{id}/lint"]["get"]["summary"]


def test_cli_lint_prints_findings_and_exits_3_on_errors(start_server: Servers, tmp_path: Path) -> None:
    server = start_server()
    store = server.store.path
    bad = deliver(server, build(drop=("From",), body=b"Hello\nBob.\r\n"))
    done = run_cli("lint", bad, store=store)
    assert done.returncode == 3, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("error   data-bare-lf: 1 bare LF in the data, the first on line 8: Hello\\n")
    assert lines[0].endswith("(RFC 5321 section 2.3.8)")
    assert lines[1].startswith("error   missing-from: no From header")
    assert lines[-1] == f"{bad}: 2 error(s), 0 warning(s), 0 info"
    warned = deliver(server, build(drop=("Message-ID",)))
    done = run_cli("lint", "latest", "--json", store=store)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"ID": warned, "Findings": [Finding(
        "missing-message-id", "warning", "no Message-ID header in the message", "RFC 5322 section 3.6.4").to_json()],
        "Errors": 0, "Warnings": 1, "Infos": 0}
    assert run_cli("lint", "latest", "--strict", store=store).returncode == 3
    clean = deliver(server, CLEAN)
    done = run_cli("lint", clean, "--strict", store=store)
    assert (done.returncode, done.stdout) == (0, f"{clean}: no findings\n")
    missing = run_cli("lint", "01ZZZZZZZZZZZZZZZZZZZZZZZZ", store=store)
    assert missing.returncode == 1 and "no message '01ZZZZZZZZZZZZZZZZZZZZZZZZ'" in missing.stderr
    nowhere = run_cli("lint", "latest", store=tmp_path / "none")
    assert nowhere.returncode == 1 and "no store at" in nowhere.stderr and "Traceback" not in nowhere.stderr


def test_pytest_plugin_message_lint(smtp_sink) -> None:
    """``message.lint`` of a captured message: ``assert not message.lint.errors`` reads well."""
    with smtplib.SMTP(smtp_sink.host, smtp_sink.port, timeout=10) as smtp:
        smtp.sendmail(SENDER, [BOB, "audit@example.test"], build(extra=("Bcc: audit@example.test",)))
        smtp.sendmail(SENDER, [BOB], CLEAN)
    leaky, clean = smtp_sink.wait_for(to=BOB, count=2)
    if leaky.rcpt_to == (BOB,):
        leaky, clean = clean, leaky
    assert isinstance(leaky.lint, LintReport)
    assert [f.check for f in leaky.lint.errors] == ["bcc-header-sent"]
    assert not clean.lint.errors and not clean.lint.warnings and not clean.lint.infos
    assert str(clean.lint) == "no findings"
    assert str(leaky.lint).startswith("error: bcc-header-sent: Bcc: audit@example.test (sent to every recipient)")


# -- hostile input: total, linear, bounded ---------------------------------------------------------------

SECONDS = 2.0  # a generous safety net, as tests/test_message_fuzz.py's (not a benchmark)
HOSTILE = {
    "50000-headers": lambda: b"X-H: v\r\n" * 50_000 + b"\r\nbody\r\n",
    "50000-headers-bare-lf": lambda: b"X-H: v\n" * 50_000 + b"\nbody\n",
    "5mb-line": lambda: CLEAN + b"y" * 5_000_000 + b"\r\n",
    "5mb-header-line": lambda: b"X-Long: " + b"a" * 5_000_000 + b"\r\n\r\nbody\r\n",
    "5mb-of-short-lines": lambda: CLEAN + b"ab\r\n" * 1_250_000,
    "5mb-of-bare-cr": lambda: CLEAN + b"\r" * 5_000_000,
    "5mb-8bit": lambda: CLEAN + b"\xff" * 5_000_000,
    "30000-to-addresses": lambda: build({"To": ", ".join(f"u{n}@example.test" for n in range(30_000))}),
    "1m-to-addresses": lambda: b"To: " + b"a@b.c, " * 700_000 + b"\r\n\r\nx\r\n",
    "50000-content-ids": lambda: build({"Content-Type": "multipart/mixed; boundary=p"}, body=(
        b"--p\r\nContent-ID: <same>\r\nContent-Type: text/html\r\n\r\nx\r\n" * 50_000 + b"--p--\r\n")),
    "1000-deep": lambda: b"Content-Type: multipart/mixed; boundary=b\r\n\r\n" + b"--b\r\nContent-Type: multipart/mixed;"
                         b" boundary=b\r\n\r\n" * 1000,
    "nul-and-garbage": lambda: b"\x00\xff\r\r\n\n:\r\n: \x80\r\n\t\r\n" * 10_000,
}


@pytest.mark.parametrize("make", HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_input_is_total_linear_and_bounded(make) -> None:
    raw = make()
    started = time.perf_counter()
    found = lint_message(raw, lint.trace.Trace(SENDER, tuple(f"r{n}@x.test" for n in range(10_000))),
                         MailParams(size=1))
    elapsed = time.perf_counter() - started
    assert elapsed < SECONDS, f"{elapsed:.2f} s for {len(raw)} bytes"
    assert len(found) <= len(CHECKS)  # at most one finding a check
    assert len({f.check for f in found}) == len(found)
    for finding in found:
        assert len(finding.evidence) <= 200 and finding.check in CHECKS
        json.dumps(finding.to_json(), ensure_ascii=False).encode()  # valid UTF-8, no lone surrogate


def test_lint_time_grows_linearly() -> None:
    """Ten times the data costs about ten times the time, not a hundred (best of three each)."""
    def cost(copies: int) -> float:
        raw = build(body=b"line of text\nwith bare LF\rand CR \xff\r\n" * copies, extra=("X-H: \xff",) * 1000)
        best = float("inf")
        for _ in range(3):
            started = time.process_time()
            lint_message(raw, None, MailParams(size=1))
            best = min(best, time.process_time() - started)
        return best
    small, large = cost(20_000), cost(200_000)
    assert large < small * 30, (small, large)


# -- with the session that delivered the message (docs/sessions.md) ---------------------------------------


def test_the_lint_includes_what_the_session_recorded(start_server: Servers, tmp_path: Path) -> None:
    """The API, the CLI and the plugin's reading of the same message: the MAIL FROM parameters the
    session recorded make the SIZE and 8BITMIME checks run, and the session's own command-stream
    findings (here ``no-quit``) are listed with the message's."""
    server = start_server(http=True)
    wire = Wire(server.smtp_port)
    assert wire.code() == 220
    assert wire.cmd("EHLO lint.example.test")[0] == 250
    assert wire.cmd(f"MAIL FROM:<{SENDER}> SIZE=10")[0] == 250
    assert wire.cmd(f"RCPT TO:<{BOB}>")[0] == 250
    assert wire.cmd("DATA")[0] == 354
    wire.send(build(body="Grüße\r\n".encode()) + b".\r\n")
    code, text = wire.reply()
    assert code == 250, text
    wire.close()  # no QUIT
    message_id = text[-1].rsplit(" ", 1)[-1]
    store = SessionStore(server.store.path)
    session_id = lint.trace.read(server.store.read(message_id)).session
    deadline = time.monotonic() + 10
    while store.get(session_id) is None and time.monotonic() < deadline:  # written by its thread once it ended
        time.sleep(0.05)
    expected = {"8bit-without-8bitmime", "size-parameter-too-small", "no-quit"}
    found = get_json(server.http_port, f"/api/v1/message/{message_id}/lint")
    assert {f["Check"] for f in found["Findings"]} == expected
    done = run_cli("lint", message_id, "--json", store=server.store.path)
    assert {f["Check"] for f in json.loads(done.stdout)["Findings"]} == expected
    stored = server.store.read(message_id)  # what message.lint of the pytest plugin reads
    assert set(lint.lint_recorded(stored, message_id, store.get(session_id)).checks) == expected
    assert set(lint.lint_recorded(stored, message_id, None).checks) == set()  # without it: unknown, skipped
