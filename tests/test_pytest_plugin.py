"""The pytest plugin (smtp_sink/pytest_plugin.py): inner test files run through ``pytester``.

Each test writes a small test suite the way a user would (smtplib in sync tests, aiosmtplib in
pytest-asyncio tests), runs it, and checks the inner outcomes and the report. The plugin is never
named: the ``pytest11`` entry point of the installed package loads it, in process and in a
subprocess alike.
"""

from __future__ import annotations

import textwrap

import pytest

pytest_plugins = ["pytester"]

# A helper module for the inner suites: plain smtplib, as an application would send.
SINKMAIL = '''
import smtplib


def send(sink, to, subject="hello", body="hi there", sender="app@example.test", headers=""):
    """Send one message to the fixture's server; return smtplib's refused-recipients dict."""
    to = [to] if isinstance(to, str) else list(to)
    data = (f"From: App <{sender}>\\r\\nTo: {to[0]}\\r\\nSubject: {subject}\\r\\n{headers}\\r\\n{body}\\r\\n")
    with smtplib.SMTP(sink.host, sink.port, timeout=10) as smtp:
        return smtp.sendmail(sender, to, data.encode())
'''

# The inner runs need none of the suite's other plugins; hypothesis alone costs ~0.7 s a run.
FAST = ("-p", "no:cacheprovider", "-p", "no:hypothesispytest", "-p", "no:benchmark")


@pytest.fixture
def inner(pytester: pytest.Pytester) -> pytest.Pytester:
    """A pytester folder with the ``sinkmail`` helper and an ini for pytest-asyncio's strict mode."""
    pytester.makepyfile(sinkmail=SINKMAIL)
    pytester.makeini("[pytest]\nasyncio_mode = strict\nasyncio_default_fixture_loop_scope = function\n")
    return pytester


def run(pytester: pytest.Pytester, source: str, *args: str) -> pytest.RunResult:
    """Write ``test_inner.py`` and run it in this process."""
    pytester.makepyfile(test_inner=textwrap.dedent(source))
    return pytester.runpytest(*FAST, *args)


def test_sync_messages_envelope_and_isolation_in_a_fresh_process(inner: pytest.Pytester) -> None:
    inner.makepyfile(test_inner=textwrap.dedent('''
        from email.message import EmailMessage
        from sinkmail import send

        def test_message_and_envelope(smtp_sink, tmp_path):
            assert smtp_sink.host == "127.0.0.1" and smtp_sink.port > 0
            assert smtp_sink.tls_port is None and smtp_sink.http_port is None
            assert smtp_sink.store_path.parent == tmp_path
            assert send(smtp_sink, ["to@example.test", "bcc@example.test"], subject="Grüße",
                        body="first line") == {}
            send(smtp_sink, "second@example.test", subject="two")
            first, second = smtp_sink.messages
            assert first.id < second.id
            assert first.path == smtp_sink.store_path / f"{first.id}.eml" and first.path.is_file()
            assert first.mail_from == "app@example.test"
            assert first.rcpt_to == ("to@example.test", "bcc@example.test")
            assert isinstance(first.message, EmailMessage)
            assert first.message["Return-Path"] == "<app@example.test>"
            assert first.subject == "Grüße" and first.to == ["to@example.test"]
            assert first.from_ == "app@example.test"
            assert first.text == first.body == "first line\\n"
            assert first.auth_user is None
            assert second.subject == "two" and second.rcpt_to == ("second@example.test",)

        def test_each_test_gets_its_own_empty_server(smtp_sink):
            assert smtp_sink.messages == []
            assert smtp_sink.rules == []
    '''))
    result = inner.runpytest_subprocess(*FAST)
    result.assert_outcomes(passed=2)


def test_wait_for_returns_matches_sent_later(inner: pytest.Pytester) -> None:
    result = run(inner, '''
        import re
        import threading
        import time
        from sinkmail import send

        def later(sink, *args, **kwargs):
            def go():
                time.sleep(0.2)
                send(sink, *args, **kwargs)
            threading.Thread(target=go).start()

        def test_waits_for_a_message_sent_later(smtp_sink):
            later(smtp_sink, "ann@example.test", subject="Your code is 4711")
            started = time.monotonic()
            mail = smtp_sink.wait_for(to="ANN@example.test", subject="code", timeout=5)
            assert 0.15 < time.monotonic() - started < 3
            assert mail.subject == "Your code is 4711"
            assert re.search(r"\\d+", mail.subject).group() == "4711"

        def test_criteria_and_count(smtp_sink):
            send(smtp_sink, "a@example.test", subject="Invoice 1", sender="billing@shop.test")
            send(smtp_sink, "b@example.test", subject="Newsletter", sender="news@shop.test")
            later(smtp_sink, "c@example.test", subject="Invoice 2", sender="billing@shop.test")
            both = smtp_sink.wait_for(sender="billing@shop.test", count=2)
            assert [m.subject for m in both] == ["Invoice 1", "Invoice 2"]
            assert smtp_sink.wait_for(subject=re.compile(r"^News")).rcpt_to == ("b@example.test",)
            assert smtp_sink.wait_for(match=lambda m: "c@example.test" in m.rcpt_to).subject == "Invoice 2"
            assert smtp_sink.wait_for(to="a@example.test", subject="Invoice").subject == "Invoice 1"

        def test_to_matches_header_recipients_too(smtp_sink):
            send(smtp_sink, "envelope@example.test", headers="Cc: Carol <carol@example.test>\\r\\n")
            assert smtp_sink.wait_for(to="carol@example.test").rcpt_to == ("envelope@example.test",)

        def test_the_meaning_smtp_sink_wait_has_too(smtp_sink):
            # smtp_sink.matching: whole addresses ignoring case, subject text ignoring case
            send(smtp_sink, "joann@example.test", subject="Your INVOICE")
            assert smtp_sink.matching(to="ann@example.test") == []
            assert smtp_sink.matching(to="joann") == []
            assert smtp_sink.wait_for(to="JoAnn@Example.test", subject="invoice").subject == "Your INVOICE"
    ''')
    result.assert_outcomes(passed=4)


def test_captured_messages_read_as_the_web_page_and_cli_read_them(inner: pytest.Pytester) -> None:
    result = run(inner, '''
        from email.message import EmailMessage
        from smtp_sink.message import detail
        from sinkmail import send

        HTML = "<html><head><style>p {}</style></head><body><p>Hello <b>Ann</b></p><p>code 4711</p></body></html>"

        def test_text_html_and_the_parsed_message(smtp_sink):
            send(smtp_sink, "ann@example.test", subject="=?utf-8?q?Gr=C3=BC=C3=9Fe?=", body=HTML,
                 headers="Content-Type: text/html; charset=utf-8\\r\\n")
            mail = smtp_sink.wait_for(to="ann@example.test")
            shown = detail(mail.id, mail.raw)  # what GET /api/v1/message/{id} and smtp-sink show say
            assert mail.text == shown["Text"] == "Hello Ann code 4711"
            assert mail.html == shown["HTML"] and mail.subject == shown["Subject"] == "Grüße"
            assert mail.summary.to_json()["Subject"] == "Grüße" and mail.summary.id == mail.id
            assert isinstance(mail.message, EmailMessage)  # for anything else, email.policy.default
            assert mail.message.get_body(preferencelist=("html",)).get_content().startswith("<html>")
    ''')
    result.assert_outcomes(passed=1)


def test_wait_for_timeout_lists_what_was_captured(inner: pytest.Pytester) -> None:
    result = run(inner, '''
        import time
        from sinkmail import send

        def test_nothing_matches(smtp_sink):
            send(smtp_sink, "ann@example.test", subject="Welcome")
            started = time.monotonic()
            try:
                smtp_sink.wait_for(to="bob@example.test", subject="Reset", timeout=0.3)
            finally:
                assert 0.3 <= time.monotonic() - started < 2

        def test_nothing_at_all(smtp_sink):
            smtp_sink.wait_for(count=2, timeout=0.05)
    ''')
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines([
        "E *AssertionError: smtp_sink.wait_for(to='bob@example.test', subject='Reset'): "
        "0 of 1 matching message(s) after 0.3 s; 1 captured:",
        "E *  1. * from <app@example.test> to <ann@example.test> subject 'Welcome'",
    ])
    result.stdout.fnmatch_lines([
        "E *AssertionError: smtp_sink.wait_for(any message): 0 of 2 matching message(s) after 0.05 s; "
        "nothing captured",
    ])


def test_clear_empties_the_store(inner: pytest.Pytester) -> None:
    result = run(inner, '''
        from sinkmail import send

        def test_clear(smtp_sink):
            send(smtp_sink, "a@example.test")
            send(smtp_sink, "b@example.test")
            assert len(smtp_sink.messages) == 2
            assert smtp_sink.clear() == 2
            assert smtp_sink.messages == [] and list(smtp_sink.store_path.glob("*.eml")) == []
            send(smtp_sink, "c@example.test", subject="after")
            (only,) = smtp_sink.messages
            assert only.subject == "after"
            assert smtp_sink.wait_for(subject="after") == only
    ''')
    result.assert_outcomes(passed=1)


def test_add_rule_refuses_a_recipient_for_one_test_only(inner: pytest.Pytester) -> None:
    result = run(inner, '''
        import smtplib
        import pytest
        from smtp_sink.rules import RuleError
        from sinkmail import send

        def test_refused(smtp_sink):
            rule = smtp_sink.add_rule(stage="rcpt", action="reply", code=550, recipient="*@blocked.test",
                                      text="5.1.1 mailbox unavailable")
            assert smtp_sink.rules == [rule]
            refused = send(smtp_sink, ["ok@example.test", "x@blocked.test"])
            assert refused == {"x@blocked.test": (550, b"5.1.1 mailbox unavailable")}
            (mail,) = smtp_sink.messages
            assert mail.rcpt_to == ("ok@example.test",)
            with pytest.raises(smtplib.SMTPRecipientsRefused):
                send(smtp_sink, "only@blocked.test")
            smtp_sink.clear_rules()
            assert send(smtp_sink, "only@blocked.test") == {}

        def test_the_rule_is_gone(smtp_sink):
            assert smtp_sink.rules == []
            assert send(smtp_sink, "x@blocked.test") == {}

        def test_a_bad_rule_names_the_key(smtp_sink):
            with pytest.raises(RuleError, match=r"^smtp_sink.add_rule: code: .*\\(4xx or 5xx\\), not 250"):
                smtp_sink.add_rule("rcpt", code=250)
            with pytest.raises(RuleError, match=r"unknown key colour"):
                smtp_sink.add_rule("mail", code=451, colour="red")
    ''')
    result.assert_outcomes(passed=3)


def test_settings_fixture_and_marker_merge(inner: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    # Stray local configuration must not leak into a test's server.
    (inner.path / "smtp-sink.toml").write_text("[smtp]\nmax_recipients = 1\nhostname = 'file.test'\n")
    monkeypatch.setenv("SMTP_SINK_SMTP_HOSTNAME", "env.test")
    monkeypatch.setenv("SMTP_SINK_POLICY_UNKNOWN", "550")
    inner.makeconftest('''
        import pytest

        @pytest.fixture
        def smtp_sink_settings():
            return {
                "smtp": {"max_recipients": 2, "hostname": "suite.test"},
                "policy": {"mailboxes": ["known@example.test"], "unknown": "550"},
                "rules": [{"stage": "mail", "code": 451, "sender": "flaky@example.test"}],
            }
    ''')
    result = run(inner, '''
        import smtplib
        import pytest
        from sinkmail import send

        def test_suite_settings(smtp_sink):
            assert smtp_sink.server.config.smtp.hostname == "suite.test"
            refused = send(smtp_sink, ["known@example.test", "who@example.test"])
            assert list(refused) == ["who@example.test"] and refused["who@example.test"][0] == 550
            with pytest.raises(smtplib.SMTPSenderRefused) as flaky:
                send(smtp_sink, "known@example.test", sender="flaky@example.test")
            assert flaky.value.smtp_code == 451

        @pytest.mark.smtp_sink(smtp={"max_recipients": 3}, policy={"unknown": "accept"})
        def test_marker_wins_key_by_key(smtp_sink):
            config = smtp_sink.server.config
            assert (config.smtp.max_recipients, config.smtp.hostname) == (3, "suite.test")
            assert config.policy.mailboxes == ("known@example.test",)
            with smtplib.SMTP(smtp_sink.host, smtp_sink.port) as smtp:
                smtp.ehlo()
                smtp.mail("a@example.test")
                assert [smtp.rcpt(f"r{n}@example.test")[0] for n in range(4)] == [250, 250, 250, 452]

        @pytest.mark.smtp_sink(smtp={"hostname": "class.test", "max_recipients": 5})
        class TestClassMarker:
            @pytest.mark.smtp_sink(smtp={"hostname": "method.test"})
            def test_closest_marker_wins(self, smtp_sink):
                config = smtp_sink.server.config
                assert (config.smtp.hostname, config.smtp.max_recipients) == ("method.test", 5)
                assert len(config.rules) == 1

        class TestOverride:
            @pytest.fixture
            def smtp_sink_settings(self):
                return {}

            def test_an_override_gives_plain_defaults(self, smtp_sink):
                config = smtp_sink.server.config
                assert (config.smtp.hostname, config.smtp.max_recipients) == ("smtp-sink.localhost", 1000)
                assert config.policy.unknown == "accept" and config.rules == ()
    ''')
    result.assert_outcomes(passed=4)


def test_bad_settings_are_clear_setup_errors(inner: pytest.Pytester) -> None:
    result = run(inner, '''
        import socket
        import pytest

        BUSY = socket.socket()
        BUSY.bind(("127.0.0.1", 0))
        BUSY.listen()

        class TestTypo:
            @pytest.fixture
            def smtp_sink_settings(self):
                return {"smtp": {"max_recipient": 5}}

            def test_typo_in_settings(self, smtp_sink):
                pass

        @pytest.mark.smtp_sink(smtp={"max_connections": "ten"})
        def test_wrong_type_in_marker(smtp_sink, smtp_sink_settings):
            pass

        @pytest.mark.smtp_sink(smpt={"port": 0})
        def test_unknown_section(smtp_sink):
            pass

        @pytest.mark.smtp_sink({"smtp": {}})
        def test_positional_marker(smtp_sink):
            pass

        @pytest.mark.smtp_sink(rules=[{"stage": "rcpt", "code": 200}])
        def test_bad_rule(smtp_sink):
            pass

        @pytest.mark.smtp_sink(auth={"mode": "sometimes"})
        def test_bad_choice(smtp_sink):
            pass

        @pytest.mark.smtp_sink(smtp={"port": BUSY.getsockname()[1]})
        def test_port_in_use(smtp_sink):
            pass
    ''')
    result.assert_outcomes(errors=7)
    lines = result.stdout.lines
    for message in [  # each error is one line of its own, naming where the setting came from and the key
        "smtp_sink: smtp_sink_settings: unknown key [smtp] max_recipient (known: host, port, hostname, "
        "max_message_size, max_recipients, max_connections, idle_timeout, command_timeout, data_min_rate, "
        "data_rate_grace, smtputf8, loop, workers)",
        "smtp_sink: @pytest.mark.smtp_sink: [smtp] max_connections: expected an integer, got 'ten'",
        "smtp_sink: @pytest.mark.smtp_sink: unknown section [smpt] "
        "(known: smtp, store, policy, auth, tls, http, log, tags, relay, webhook, checks, sessions, rules)",
        "@pytest.mark.smtp_sink: give sections as keywords, e.g. smtp={'max_recipients': 5}, not ({'smtp': {}},)",
        "smtp_sink: @pytest.mark.smtp_sink: [[rules]] #1: code: a fault rule replies with a failure (4xx or 5xx), "
        "not 200",
        "smtp_sink: @pytest.mark.smtp_sink: [auth] mode: must be one of off, accept-any, users, got 'sometimes'",
    ]:
        assert message in lines
    result.stdout.fnmatch_lines(["smtp_sink: the server did not start: cannot listen on 127.0.0.1:* (SMTP): "
                                 "address already in use; choose another port with smtp={'port': ...} (0: a free one)"])
    assert "Traceback" not in result.stdout.str()


def test_async_tests_with_aiosmtplib(inner: pytest.Pytester) -> None:
    result = run(inner, '''
        import asyncio
        import time
        import aiosmtplib
        import pytest

        async def send(sink, to, subject):
            message = f"From: a@example.test\\r\\nTo: {to}\\r\\nSubject: {subject}\\r\\n\\r\\nbody\\r\\n"
            await aiosmtplib.send(message, sender="a@example.test", recipients=[to],
                                  hostname=sink.host, port=sink.port, timeout=10)

        @pytest.mark.asyncio
        async def test_send_then_wait(smtp_sink):
            await send(smtp_sink, "ann@example.test", "async hello")
            mail = await smtp_sink.wait_for_async(to="ann@example.test")
            assert mail.subject == "async hello" and mail.text == "body\\n"
            assert smtp_sink.wait_for(subject="async hello") == mail  # already there: no waiting

        @pytest.mark.asyncio
        async def test_waiting_does_not_block_the_loop(smtp_sink):
            async def later():
                await asyncio.sleep(0.2)
                for n in range(3):
                    await send(smtp_sink, f"r{n}@example.test", f"n{n}")

            task = asyncio.create_task(later())  # runs on this loop while wait_for_async waits
            started = time.monotonic()
            mails = await smtp_sink.wait_for_async(subject="n", count=3, timeout=5)
            assert [m.subject for m in mails] == ["n0", "n1", "n2"]
            assert time.monotonic() - started >= 0.2
            await task

        @pytest.mark.asyncio
        async def test_sync_wait_inside_a_loop_explains_itself(smtp_sink):
            task = asyncio.create_task(send(smtp_sink, "late@example.test", "never seen"))
            with pytest.raises(AssertionError, match="use `await smtp_sink.wait_for_async"):
                smtp_sink.wait_for(to="late@example.test", timeout=0.1)  # blocks the loop: the task cannot run
            await task
            assert (await smtp_sink.wait_for_async(to="late@example.test")).subject == "never seen"

        @pytest.mark.asyncio
        async def test_async_timeout(smtp_sink):
            with pytest.raises(AssertionError, match=r"wait_for_async\\(to='x@example.test'\\): 0 of 1"):
                await smtp_sink.wait_for_async(to="x@example.test", timeout=0.05)
    ''')
    result.assert_outcomes(passed=4)


def test_auth_accept_any_and_tls_via_settings(inner: pytest.Pytester) -> None:
    inner.makeconftest('''
        import pytest

        @pytest.fixture
        def smtp_sink_settings():
            return {"auth": {"mode": "accept-any"}}
    ''')
    result = run(inner, '''
        import smtplib
        import aiosmtplib
        import pytest
        from sinkmail import send

        MESSAGE = b"From: app@example.test\\r\\nTo: ann@example.test\\r\\nSubject: secret\\r\\n\\r\\nhi\\r\\n"

        def test_starttls_and_login_with_any_password(smtp_sink):
            assert smtp_sink.tls_port and smtp_sink.tls_ca
            with smtplib.SMTP(smtp_sink.host, smtp_sink.port, timeout=10) as smtp:
                smtp.starttls(context=smtp_sink.ssl_context())  # verifies the generated certificate
                assert smtp.login("whoever", "anything")[0] == 235
                smtp.sendmail("app@example.test", ["ann@example.test"], MESSAGE)
            mail = smtp_sink.wait_for(to="ann@example.test")
            assert mail.auth_user == "whoever"
            assert "with ESMTPSA" in mail.message["Received"]

        def test_implicit_tls_port(smtp_sink):
            with smtplib.SMTP_SSL(smtp_sink.host, smtp_sink.tls_port, context=smtp_sink.ssl_context()) as smtp:
                smtp.login("someone", "x")
                smtp.sendmail("app@example.test", ["ann@example.test"], MESSAGE)
            assert smtp_sink.wait_for(subject="secret").auth_user == "someone"

        def test_login_stays_optional(smtp_sink):
            assert send(smtp_sink, "bob@example.test") == {}
            assert smtp_sink.wait_for(to="bob@example.test").auth_user is None

        @pytest.mark.asyncio
        async def test_aiosmtplib_upgrades_and_logs_in(smtp_sink):
            await aiosmtplib.send(MESSAGE, sender="app@example.test", recipients=["ann@example.test"],
                                  hostname=smtp_sink.host, port=smtp_sink.port, username="async-user",
                                  password="pw", tls_context=smtp_sink.ssl_context(), timeout=10)
            mail = await smtp_sink.wait_for_async(subject="secret")
            assert mail.auth_user == "async-user"

        @pytest.mark.smtp_sink(auth={"mode": "users", "users": {"ann": "right"}})
        def test_marker_switches_to_a_users_table(smtp_sink):
            with smtplib.SMTP(smtp_sink.host, smtp_sink.port, timeout=10) as smtp:
                smtp.starttls(context=smtp_sink.ssl_context())
                with pytest.raises(smtplib.SMTPAuthenticationError) as refused:
                    smtp.login("ann", "wrong")
                assert refused.value.smtp_code == 535
                assert smtp.login("ann", "right")[0] == 235
    ''')
    result.assert_outcomes(passed=5)


def test_content_cannot_forge_the_envelope_or_a_login(inner: pytest.Pytester) -> None:
    result = run(inner, '''
        import smtplib
        import pytest

        FORGED = (b"X-Original-To: forged@victim.test\\r\\nX-Sink-Auth: admin\\r\\n"
                  b"From: app@example.test\\r\\nSubject: forged\\r\\n\\r\\nhi\\r\\n")

        def test_forged_trace_headers_at_the_top_of_data_are_content(smtp_sink):
            with smtplib.SMTP(smtp_sink.host, smtp_sink.port, timeout=10) as smtp:
                smtp.sendmail("app@example.test", ["bob@example.test", "hidden@example.test"], FORGED)
            mail = smtp_sink.wait_for(subject="forged")
            assert mail.rcpt_to == ("bob@example.test", "hidden@example.test")
            assert mail.auth_user is None and mail.mail_from == "app@example.test"
            assert mail.message["X-Sink-Auth"] == "admin"  # still there, as content
            assert smtp_sink.matching(to="forged@victim.test") == []
            with pytest.raises(AssertionError, match="0 of 1"):
                smtp_sink.wait_for(to="forged@victim.test", timeout=0.2)
    ''')
    result.assert_outcomes(passed=1)


def test_tls_off_by_default_explains_ssl_context(inner: pytest.Pytester) -> None:
    result = run(inner, '''
        import pytest

        def test_no_tls(smtp_sink):
            assert smtp_sink.tls_port is None and smtp_sink.tls_ca is None
            with pytest.raises(RuntimeError, match="TLS is off"):
                smtp_sink.ssl_context()

        @pytest.mark.smtp_sink(http={"enabled": True})
        def test_http_on_request(smtp_sink):
            import json, urllib.request
            assert smtp_sink.http_port
            with urllib.request.urlopen(f"http://127.0.0.1:{smtp_sink.http_port}/api/v1/messages") as answer:
                assert json.load(answer)["total"] == 0
    ''')
    result.assert_outcomes(passed=2)
