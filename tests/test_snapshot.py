"""Snapshot tests for emails (issue 17 part 6): the normalised form (smtp_sink/snapshot.py), the
pytest plugin's ``smtp_sink.assert_snapshot`` run in inner suites (``pytester``) that send real mail
over SMTP, and ``smtp-sink diff`` as a user runs it on a real store."""

from __future__ import annotations

import hashlib
import re
import smtplib
import subprocess
import textwrap
import time
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support.processes import run_cli
from test_message_fuzz import BIG

from smtp_sink import snapshot
from smtp_sink.server import SinkServer

pytest_plugins = ["pytester"]

FAST = ("-p", "no:cacheprovider", "-p", "no:hypothesispytest", "-p", "no:benchmark")
SECONDS_PER_MESSAGE = 2.0


def welcome(name: str = "Bob", code: str = "AbC123", extra: str = "") -> EmailMessage:
    """A message as an application builds it: a new Date, Message-ID, boundaries and Content-ID each time."""
    msg = EmailMessage()
    msg["From"] = "App <app@example.test>"
    msg["To"] = f"{name.lower()}@example.test"
    msg["Subject"] = "Grüße, reset your password"
    msg["Date"] = formatdate(localtime=True)
    msg["Message-ID"] = make_msgid(domain="app.example.test")
    msg["X-Mailer"] = f"app {time.time()}"
    msg.set_content(f"Hello {name},\nreset: https://app.test/reset/{code}\n{extra}")
    cid = make_msgid()
    msg.add_alternative(f'<html><head><style>p {{ color: red }}</style></head><body><p class="x">Hello '
                        f'<b>{name}</b> &amp; co</p><a href="https://app.test/reset/{code}">reset</a>'
                        f'<img src="cid:{cid[1:-1]}"><br></body></html>', subtype="html")
    msg.get_payload()[1].add_related(b"\x89PNG\r\n\x1a\n" + bytes(range(64)), maintype="image", subtype="png",
                                     cid=cid, filename="logo.png")
    msg.add_attachment(b"%PDF-1.4 invoice", maintype="application", subtype="pdf", filename="invoice.pdf")
    return msg


def send(server: SinkServer, msg: EmailMessage | bytes, to: tuple[str, ...] = ("bob@example.test",)) -> str:
    """Send over SMTP with smtplib; the id the 250 reply names."""
    with smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=10) as smtp:
        smtp.ehlo("app.example.test")
        smtp.mail("app@example.test")
        for rcpt in to:
            smtp.rcpt(rcpt)
        code, reply = smtp.data(msg if isinstance(msg, bytes) else msg.as_bytes())
    assert code == 250, reply
    return reply.decode().split()[-1]


def stored(server: SinkServer, message_id: str) -> bytes:
    return (server.store.path / f"{message_id}.eml").read_bytes()


def test_two_sends_of_the_same_mail_read_the_same(server: SinkServer) -> None:
    first = stored(server, send(server, welcome()))
    time.sleep(1.1)  # another Date second
    second = stored(server, send(server, welcome()))
    assert first.split(b"\r\n\r\n")[0] != second.split(b"\r\n\r\n")[0]
    text = snapshot.normalise(first)
    assert text == snapshot.normalise(second)
    lines = text.splitlines()
    assert lines[:2] == ["smtp-sink snapshot v1", "envelope: from <app@example.test> to <bob@example.test>"]
    for line in ["Subject: Grüße, reset your password", "Date: <date>", "Message-ID: <message-id-1>",
                 "X-Mailer: <x-mailer>", 'Content-Type: multipart/mixed; boundary="<boundary-1>"',
                 '[message] multipart/mixed; boundary="<boundary-1>"',
                 '  [1] multipart/alternative; boundary="<boundary-2>"',
                 '    [1.2] multipart/related; boundary="<boundary-3>"',
                 "              Content-ID: <content-id-1>", "  [2] application/pdf",
                 "      16 bytes, sha256 " + hashlib.sha256(b"%PDF-1.4 invoice").hexdigest()[:16]
                 + ", file invoice.pdf",
                 "== part 1.1 text/plain", "Hello Bob,", "== part 1.2.1 text/html", "<html>", "    <p class=\"x\">",
                 "      Hello", "        Bob", "      & co", '    <img src="cid:<content-id-1>">',
                 "      p { color: red }"]:
        assert line in lines, (line, text)
    assert "Received" not in text and "Return-Path" not in text  # the server's trace block is the envelope line
    assert lines.index("== part 1.1 text/plain") < lines.index("== part 1.2.1 text/html")


def test_a_changed_mail_reads_differently_and_tokens_hide_what_varies(server: SinkServer) -> None:
    base = stored(server, send(server, welcome(code="AAA111")))
    other_code = stored(server, send(server, welcome(code="BBB222")))
    other_text = stored(server, send(server, welcome(code="AAA111", extra="PS: new line\n")))
    assert snapshot.normalise(base) != snapshot.normalise(other_code)
    tokens = {"reset-token": r"reset/[A-Za-z0-9]+"}
    assert snapshot.normalise(base, tokens) == snapshot.normalise(other_code, tokens)
    assert "https://app.test/<reset-token>" in snapshot.normalise(base, tokens)
    diff = snapshot.unified_diff(snapshot.normalise(base, tokens), snapshot.normalise(other_text, tokens), "a", "b")
    assert "+PS: new line" in diff.splitlines() and diff.startswith("--- a\n+++ b\n")
    with pytest.raises(snapshot.TokenError, match="token 'x': not a regular expression"):
        snapshot.normalise(base, {"x": "("})
    with pytest.raises(snapshot.TokenError, match="token name"):
        snapshot.normalise(base, {"a b": "x"})


def test_html_is_pretty_printed_one_tag_a_line() -> None:
    raw = (b"From: a@example.test\r\nContent-Type: text/html\r\n\r\n"
           b"<div><P  Class=a\r\n id='b'>one <i>two</i></span></p><br/><ul><li>x<li>y</ul></div>\r\n")
    text = snapshot.normalise(raw)
    assert text.split("== part 0 text/html\n")[1] == textwrap.dedent("""\
        <div>
          <p class="a" id="b">
            one
            <i>
              two
            </i>
            </span>
          </p>
          <br>
          <ul>
            <li>
              x
              <li>
                y
          </ul>
        </div>
        """)
    assert "envelope" not in text  # no trace block: no envelope line


@pytest.mark.parametrize("make", BIG.values(), ids=BIG.keys())
def test_hostile_messages_normalise_in_bounded_time(make) -> None:
    raw = make()
    started = time.process_time()  # CPU time: the bound holds on a loaded machine too
    text = snapshot.normalise(raw)
    elapsed = time.process_time() - started
    assert elapsed < SECONDS_PER_MESSAGE, f"{elapsed:.2f} s"
    assert text.startswith("smtp-sink snapshot v1\n")
    text.encode("utf-8")  # no lone surrogate


@pytest.mark.parametrize("markup", [
    "<div>" * 200_000, "<a " * 300_000, "<b>x</i>" * 120_000, "</p>" * 250_000, "<!--" + "x" * 1_000_000,
    "<style>" + "a{}\n" * 250_000, "<p " + 'a="' * 300_000,
], ids=["deep", "unclosed-tags", "stray-ends", "only-ends", "open-comment", "long-style", "open-quotes"])
def test_hostile_html_pretty_prints_in_bounded_time(markup: str) -> None:
    raw = b"Content-Type: text/html\r\n\r\n" + markup.encode()
    started = time.process_time()
    text = snapshot.normalise(raw)
    assert time.process_time() - started < SECONDS_PER_MESSAGE
    assert len(text) < snapshot.HTML_OUTPUT_LIMIT + 10_000
    assert max(len(line) - len(line.lstrip(" ")) for line in text.splitlines()) <= 2 * snapshot.INDENT_LIMIT


# -- the pytest plugin ------------------------------------------------------------------------------

INNER = '''
import smtplib
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

BODY = {body!r}


def send(sink):
    msg = EmailMessage()
    msg["From"] = "App <app@example.test>"
    msg["To"] = "ann@example.test"
    msg["Subject"] = "Welcome"
    msg["Date"] = formatdate()
    msg["Message-ID"] = make_msgid()
    msg.set_content(BODY)
    msg.add_alternative("<p>" + BODY + "</p>", subtype="html")
    with smtplib.SMTP(sink.host, sink.port, timeout=10) as smtp:
        smtp.send_message(msg)
    return sink.wait_for(to="ann@example.test")


def test_welcome_mail(smtp_sink):
    smtp_sink.assert_snapshot(send(smtp_sink), "welcome", tokens={{"code": r"code [0-9]+"}})
'''


def write_inner(pytester: pytest.Pytester, body: str) -> None:
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makepyfile(test_mail=INNER.format(body=body))


def test_assert_snapshot_fails_when_missing_writes_on_update_then_compares(pytester: pytest.Pytester) -> None:
    snap = pytester.path / "__snapshots__" / "test_mail" / "welcome.eml.txt"
    write_inner(pytester, "Hello Ann, your code 4711")
    missing = pytester.runpytest(*FAST)
    missing.assert_outcomes(failed=1)
    missing.stdout.fnmatch_lines(["*snapshot 'welcome' does not exist yet*--smtp-sink-snapshot-update*",
                                  "*Subject: Welcome*"])
    assert not snap.exists()  # as syrupy: a missing snapshot is not written by a plain run

    pytester.runpytest(*FAST, "--smtp-sink-snapshot-update").assert_outcomes(passed=1)
    written = snap.read_text()
    assert "Hello Ann, your <code>" in written and "Message-ID: <message-id-1>" in written
    pytester.runpytest(*FAST).assert_outcomes(passed=1)  # a new Date, Message-ID and boundary: still equal

    write_inner(pytester, "Hello Ann, your code 4712")  # only the token changes
    pytester.runpytest(*FAST).assert_outcomes(passed=1)

    write_inner(pytester, "Hi Ann, your code 4711")
    changed = pytester.runpytest(*FAST)
    changed.assert_outcomes(failed=1)
    changed.stdout.fnmatch_lines([
        "*differs from snapshot 'welcome'*--smtp-sink-snapshot-update*", "*--- snapshot welcome",
        "*+++ message *", "*-Hello Ann, your <code>", "*+Hi Ann, your <code>", "*-  Hello Ann, your <code>",
        "*+  Hi Ann, your <code>", "*test_mail.py:*"])
    assert snap.read_text() == written  # a failing run never changes the snapshot

    pytester.runpytest(*FAST, "--smtp-sink-snapshot-update").assert_outcomes(passed=1)
    assert "Hi Ann, your <code>" in snap.read_text()
    pytester.runpytest(*FAST).assert_outcomes(passed=1)


def test_assert_snapshot_names_are_checked_and_used_once(pytester: pytest.Pytester) -> None:
    write_inner(pytester, "x")
    pytester.makepyfile(test_names='''
        from test_mail import send

        def test_bad_name(smtp_sink):
            smtp_sink.assert_snapshot(send(smtp_sink), "../escape")

        def test_first(smtp_sink):
            smtp_sink.assert_snapshot(send(smtp_sink), "shared")

        def test_second(smtp_sink):
            smtp_sink.assert_snapshot(send(smtp_sink), "shared")
    ''')
    result = pytester.runpytest(*FAST, "--smtp-sink-snapshot-update", "test_names.py")
    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines(["*name '../escape': expected letters*",
                                 "*snapshot 'shared' * is already asserted by test_names.py::test_first*"])
    assert sorted(p.name for p in (pytester.path / "__snapshots__" / "test_names").iterdir()) == ["shared.eml.txt"]


# -- smtp-sink diff ---------------------------------------------------------------------------------


def diff(store: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli("diff", *args, store=store)


def test_cli_diff_exit_status_and_output(server: SinkServer) -> None:
    store = server.store.path
    first = send(server, welcome(code="AAA111"))
    same = send(server, welcome(code="AAA111"))
    other = send(server, welcome(name="Carol", code="BBB222"), to=("carol@example.test",))
    done = diff(store, first, same)
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    done = diff(store, first, "latest")
    assert done.returncode == 1 and done.stderr == ""
    lines = done.stdout.splitlines()
    assert lines[:2] == [f"--- {first}", f"+++ {other}"]
    for line in ["-envelope: from <app@example.test> to <bob@example.test>",
                 "+envelope: from <app@example.test> to <carol@example.test>",
                 "-reset: https://app.test/reset/AAA111", "+reset: https://app.test/reset/BBB222",
                 "-Hello Bob,", "+Hello Carol,"]:
        assert line in lines, (line, done.stdout)
    done = diff(store, first, other, "--tokens", r"reset/\w+", "--tokens", "name=Bob|Carol|bob|carol")
    assert done.returncode == 0, done.stdout
    done = diff(store, first, other, "--tokens", "(")
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith("smtp-sink: --tokens: token 'token': not a regular expression")
    done = diff(store, first, "01ZZZZZZZZZZZZZZZZZZZZZZZZ")
    assert done.returncode == 1 and done.stderr == f"smtp-sink: no message '01ZZZZZZZZZZZZZZZZZZZZZZZZ' in {store}\n"


def test_cli_diff_output_is_safe_on_a_terminal(server: SinkServer) -> None:
    store = server.store.path
    ids = [send(server, f"Subject: {subject}\r\n\r\nbody\r\n".encode()) for subject in ("plain", "\x1b]0;owned\x07")]
    done = diff(store, *ids)
    assert done.returncode == 1 and "\x1b" not in done.stdout and "+Subject: \ufffd]0;owned\ufffd" in done.stdout


# -- the diff ---------------------------------------------------------------------------------------

HUNK_RE = re.compile(r"@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")


def patched(old: list[str], diff_text: str) -> list[str]:
    """``old`` with the unified diff applied (the hunks must name the right lines)."""
    out: list[str] = []
    at = 0
    for line in [line + "\n" for line in diff_text.split("\n")[2:-1]]:
        found = HUNK_RE.match(line)
        if found:
            start, count = int(found.group(1)), int(found.group(2) or 1)
            start = start - 1 if count else start
            out += old[at:start]
            at = start
        elif line[0] == " ":
            assert old[at] == line[1:], (at, line)
            out.append(line[1:])
            at += 1
        elif line[0] == "-":
            assert old[at] == line[1:], (at, line)
            at += 1
        else:
            out.append(line[1:])
    return out + old[at:]


@settings(max_examples=300, deadline=None)
@given(old=st.lists(st.sampled_from(["a\n", "b\n", "c\n", "d\r\n", "\u2028\n"]), max_size=25),
       new=st.lists(st.sampled_from(["a\n", "b\n", "c\n", "d\r\n", "\u2028\n"]), max_size=25))
def test_the_diff_turns_one_text_into_the_other(old: list[str], new: list[str]) -> None:
    found = snapshot.unified_diff("".join(old), "".join(new), "old", "new")
    assert (found == "") == (old == new)
    assert found == "" or found.startswith("--- old\n+++ new\n@@ -")
    assert patched(old, found) == new


def test_a_huge_difference_is_one_hunk_in_linear_time() -> None:
    old = [f"line {n}\n" for n in range(200_000)]
    new = [f"line {n if n % 7 else -n}\n" for n in range(200_000)]
    started = time.process_time()
    found = snapshot.unified_diff("".join(old), "".join(new), "old", "new")
    assert time.process_time() - started < SECONDS_PER_MESSAGE
    assert found.count("\n@@ ") == 1 and found.splitlines()[2] == "@@ -5,199996 +5,199996 @@"
    assert patched(old, found) == new
