"""The lost 250 and retries (issue 17 part 4, docs/retries.md): the ``store-then-drop`` rule, and
duplicates found by Message-ID or data, flagged (``DuplicateOf``), searchable (``is:duplicate``) and
grouped by the pytest plugin (``smtp_sink.duplicates``). Real servers, real clients (smtplib in a
retry loop as applications write it, aiosmtplib, Django's mail API, raw sockets, the CLI, HTTP)."""

from __future__ import annotations

import asyncio
import json
import random
import shutil
import smtplib
import time
from email.utils import make_msgid
from pathlib import Path

import aiosmtplib
import pytest
from support.http import get_json, send_json
from support.processes import run_cli
from support.retrying import indexed, mail, send_with_retries, wait_indexed
from support.servers import Servers
from support.wire import connect

from smtp_sink.config import Config, ConfigError, load
from smtp_sink.index import INDEX_FILE
from smtp_sink.policy import MailboxPolicy
from smtp_sink.protocol import CLOSE, MessageReceived, Settings, SMTPSession, State
from smtp_sink.pytest_plugin import SinkFixture, build_config
from smtp_sink.rules import Rule, RuleError, RuleSet, StoreThenDrop
from smtp_sink.server import SinkServer
from smtp_sink.store import Store
from smtp_sink.summary import Summary

HTTP = pytest.mark.smtp_sink(http={"enabled": True})
DROP_FIRST = {"stage": "after-data", "action": "store-then-drop", "schedule": "nth", "n": 1}


# -- the rule -------------------------------------------------------------------------------------


def test_the_session_hands_over_the_message_then_closes_without_a_reply() -> None:
    """Sans-I/O: the message goes out marked ``drop`` and CLOSE follows; nothing pipelined runs."""
    rule = Rule(stage="after-data", action="store-then-drop")  # type: ignore[arg-type]
    assert rule.outcome == StoreThenDrop()
    session = SMTPSession(Settings.from_config(Config()), MailboxPolicy(Config().policy, rules=RuleSet([rule])),
                          peer="192.0.2.1")
    session.greeting()
    for line in (b"EHLO c.test\r\n", b"MAIL FROM:<a@example.test>\r\n", b"RCPT TO:<b@example.test>\r\n", b"DATA\r\n"):
        session.feed(line)
    out = session.feed(b"Subject: s\r\n\r\nbody\r\n.\r\nNOOP\r\nQUIT\r\n")
    assert out == [MessageReceived(out[0].envelope, b"Subject: s\r\n\r\nbody\r\n", True), CLOSE]  # type: ignore[union-attr]
    assert out[0].envelope.rcpt_to == ["b@example.test"]  # type: ignore[union-attr]
    assert session.state is State.QUIT and session.messages == 1


@HTTP
def test_a_lost_250_makes_a_retrying_sender_store_the_mail_twice(smtp_sink: SinkFixture) -> None:
    smtp_sink.add_rule("after-data", "store-then-drop", schedule="nth", n=1)
    failures = send_with_retries(smtp_sink.port, mail("Order 7"))
    assert [type(f) for f in failures] == [smtplib.SMTPServerDisconnected]  # the first attempt saw no 250
    first, second = smtp_sink.messages
    assert smtp_sink.duplicates == [[first, second]]
    assert first.raw.split(b"\r\n\r\n", 1)[1] == second.raw.split(b"\r\n\r\n", 1)[1]
    port = smtp_sink.http_port
    assert port is not None
    listed = {m["ID"]: m["DuplicateOf"] for m in wait_indexed(port, 2)}
    assert listed == {first.id: "", second.id: first.id}
    assert [m["ID"] for m in indexed(port, "is:duplicate")] == [second.id]
    assert [m["ID"] for m in indexed(port, "-is:duplicate")] == [first.id]
    assert [m["ID"] for m in indexed(port, "is:duplicate subject:order")] == [second.id]
    # the sessions tell the story (docs/sessions.md): the first ended by the rule after storing its
    # copy, the retry delivered the second and quit
    dropped, retried = smtp_sink.wait_for_sessions(2)
    assert (dropped.outcome, dropped.message_ids) == ("rule", (first.id,))
    assert (retried.outcome, retried.message_ids) == ("quit", (second.id,))
    assert first.session == dropped and retried.started >= dropped.ended


def test_the_client_gets_no_reply_to_data_and_nothing_after_it_runs(start_server: Servers, tmp_path: Path) -> None:
    server = start_server(toml='[[rules]]\nstage = "after-data"\naction = "store-then-drop"\n')
    wire = connect(server.smtp_port)
    for line in ("EHLO retry.test", "MAIL FROM:<shop@example.test>", "RCPT TO:<ann@example.test>"):
        assert wire.cmd(line)[0] == 250
    assert wire.cmd("DATA")[0] == 354
    wire.send(b"Subject: dropped\r\n\r\nbody\r\n.\r\nMAIL FROM:<next@example.test>\r\nQUIT\r\n")  # pipelined
    assert wire.closed() and wire.buf == b""  # closed, and not one byte: no 250, no reply to what followed
    wire.close()
    stored = Store(tmp_path / "mail")
    assert len(stored.ids()) == 1 and b"Subject: dropped" in stored.read(stored.ids()[0])  # stored before the drop


def test_each_client_library_sees_the_lost_reply_as_a_disconnect(start_server: Servers, tmp_path: Path) -> None:
    server = start_server(toml='[[rules]]\nstage = "after-data"\naction = "store-then-drop"\n')
    with pytest.raises(smtplib.SMTPServerDisconnected), smtplib.SMTP("127.0.0.1", server.smtp_port) as smtp:
        smtp.sendmail("shop@example.test", ["ann@example.test"], mail("smtplib"))
    with pytest.raises(aiosmtplib.SMTPServerDisconnected):
        asyncio.run(aiosmtplib.send(mail("aiosmtplib"), hostname="127.0.0.1", port=server.smtp_port,
                                    sender="shop@example.test", recipients=["ann@example.test"], timeout=10))
    assert len(Store(tmp_path / "mail").ids()) == 2  # both stored all the same


async def test_aiosmtplib_in_a_retry_loop(smtp_sink: SinkFixture) -> None:
    smtp_sink.add_rule("after-data", "store-then-drop", schedule="first", n=2)
    failures = 0
    for attempt in range(5):
        try:
            await aiosmtplib.send(mail("async order", "<async-1@shop.example.test>"), hostname="127.0.0.1",
                                  port=smtp_sink.port, sender="shop@example.test", recipients=["ann@example.test"],
                                  timeout=10)
            break
        except aiosmtplib.SMTPServerDisconnected:
            failures += 1
            await asyncio.sleep(0.02 * 2 ** attempt)
    assert failures == 2
    (group,) = smtp_sink.duplicates
    assert [m.id for m in group] == [m.id for m in smtp_sink.messages] and len(group) == 3


def test_django_retries_are_duplicates_only_with_a_message_id_set_once(smtp_sink: SinkFixture) -> None:
    """Django's ``EmailMessage.send()`` makes a new Message-ID (and Date) at each call unless the
    application sets one: a retry that rebuilds the message is, to anyone, a different mail."""
    from django.conf import settings
    if not settings.configured:
        settings.configure(EMAIL_BACKEND="django.core.mail.backends.smtp.EmailBackend")
    from django.core.mail import EmailMessage as DjangoMessage
    from django.core.mail import get_connection

    smtp_sink.add_rule("after-data", "store-then-drop", schedule="every", n=2)  # drops the 2nd and 4th

    def send(message: DjangoMessage) -> int:
        for attempt in range(3):
            try:
                return message.send()
            except smtplib.SMTPServerDisconnected:
                time.sleep(0.02 * 2 ** attempt)
        raise AssertionError("not sent")

    connection = get_connection(host="127.0.0.1", port=smtp_sink.port, timeout=10)
    send(DjangoMessage("plain", "body\n", "shop@example.test", ["ann@example.test"], connection=connection))
    send(DjangoMessage("rebuilt", "body\n", "shop@example.test", ["ann@example.test"], connection=connection))
    fixed = {"Message-ID": make_msgid(domain="shop.example.test")}  # set once: the retry sends the same mail
    send(DjangoMessage("idempotent", "body\n", "shop@example.test", ["ann@example.test"], headers=fixed,
                       connection=connection))
    subjects = [m.subject for m in smtp_sink.messages]
    assert subjects == ["plain", "rebuilt", "rebuilt", "idempotent", "idempotent"]
    assert [[m.subject for m in group] for group in smtp_sink.duplicates] == [["idempotent", "idempotent"]]


# -- duplicates ------------------------------------------------------------------------------------


@HTTP
def test_a_mail_without_message_id_sent_twice_is_a_duplicate_by_its_data(smtp_sink: SinkFixture) -> None:
    data = mail("no id", message_id=None)
    for _ in range(2):
        send_with_retries(smtp_sink.port, data)
    send_with_retries(smtp_sink.port, data, rcpt="bob@example.test")  # another envelope: the same data
    send_with_retries(smtp_sink.port, mail("no id", message_id=None, body="Another body.\n"))
    first, second, third, other = smtp_sink.messages
    assert smtp_sink.duplicates == [[first, second, third]]
    port = smtp_sink.http_port
    assert port is not None
    listed = {m["ID"]: m["DuplicateOf"] for m in wait_indexed(port, 4)}
    assert listed == {first.id: "", second.id: first.id, third.id: first.id, other.id: ""}
    assert {m["ID"] for m in indexed(port, "is:duplicate")} == {second.id, third.id}


@HTTP
def test_different_mails_are_not_duplicates(smtp_sink: SinkFixture) -> None:
    send_with_retries(smtp_sink.port, mail("one", "<one@shop.example.test>"))
    send_with_retries(smtp_sink.port, mail("one", "<two@shop.example.test>"))  # same text, another id
    send_with_retries(smtp_sink.port, mail("one", None))  # the same text without an id
    send_with_retries(smtp_sink.port, mail("one", "<ONE@shop.example.test>"))  # ids compare exactly
    assert smtp_sink.duplicates == []
    port = smtp_sink.http_port
    assert port is not None
    assert {m["DuplicateOf"] for m in wait_indexed(port, 4)} == {""}
    assert indexed(port, "is:duplicate") == []


def test_message_ids_compare_without_angle_brackets_and_white_space(smtp_sink: SinkFixture) -> None:
    send_with_retries(smtp_sink.port, mail("bracketed", "<same@shop.example.test>"))
    send_with_retries(smtp_sink.port, b"Message-ID:   same@shop.example.test  \r\nSubject: bare\r\n\r\nx\r\n")
    assert [[m.subject for m in group] for group in smtp_sink.duplicates] == [["bracketed", "bare"]]


# -- the schedules ---------------------------------------------------------------------------------


def test_schedule_first_drops_the_first_attempts(smtp_sink: SinkFixture) -> None:
    smtp_sink.add_rule("after-data", "store-then-drop", schedule="first", n=2)
    assert len(send_with_retries(smtp_sink.port, mail("first"))) == 2
    assert send_with_retries(smtp_sink.port, mail("later", "<later@shop.example.test>")) == []
    assert [len(group) for group in smtp_sink.duplicates] == [3]
    assert len(smtp_sink.messages) == 4


def test_schedule_every_drops_every_nth_message(smtp_sink: SinkFixture) -> None:
    smtp_sink.add_rule("after-data", "store-then-drop", schedule="every", n=2)
    failures = [len(send_with_retries(smtp_sink.port, mail(f"m{i}", f"<m{i}@shop.example.test>")))
                for i in range(4)]
    assert failures == [0, 1, 1, 1]  # occurrences 2, 4 and 6 dropped; each retry is the next occurrence
    assert [[m.subject for m in group] for group in smtp_sink.duplicates] == [["m1", "m1"], ["m2", "m2"],
                                                                              ["m3", "m3"]]


def test_schedule_probability_with_a_seed_is_reproducible(smtp_sink: SinkFixture) -> None:
    seed, probability = 7, 0.5
    smtp_sink.add_rule("after-data", "store-then-drop", schedule="probability", probability=probability, seed=seed)
    draws = random.Random(seed)
    expected = []
    for _ in range(6):  # each attempt draws once; an attempt drawn below the probability is dropped
        lost = 0
        while draws.random() < probability:
            lost += 1
        expected.append(lost)
    assert sum(expected) > 0 and 0 in expected  # the seed drops some and spares some
    failures = [len(send_with_retries(smtp_sink.port, mail(f"p{i}", f"<p{i}@shop.example.test>"), attempts=10))
                for i in range(6)]
    assert failures == expected
    assert sorted(len(group) - 1 for group in smtp_sink.duplicates) == sorted(n for n in expected if n)


# -- restart, rebuild, deletion --------------------------------------------------------------------


def test_the_flag_survives_a_restart_and_an_index_rebuild(start_server: Servers, tmp_path: Path) -> None:
    store = tmp_path / "mail"
    server = start_server(http=True)
    server.rules.add(Rule.from_mapping(DROP_FIRST))
    send_with_retries(server.smtp_port, mail("kept"))
    first, second = Store(store).ids()
    wait_indexed(server.http_port, 2)
    assert [m["ID"] for m in indexed(server.http_port, "is:duplicate")] == [second]
    start_server.stop(server)
    restarted = start_server(http=True)
    assert [m["ID"] for m in indexed(restarted.http_port, "is:duplicate")] == [second]
    start_server.stop(restarted)
    (store / INDEX_FILE).unlink()  # thrown away: rebuilt from the .eml files
    for suffix in ("-wal", "-shm"):
        (store / f"{INDEX_FILE}{suffix}").unlink(missing_ok=True)
    rebuilt = start_server(http=True)
    assert {m["ID"]: m["DuplicateOf"] for m in wait_indexed(rebuilt.http_port, 2)} == {first: "", second: first}
    assert [m["ID"] for m in indexed(rebuilt.http_port, "is:duplicate")] == [second]


def test_deleting_the_original_makes_the_oldest_copy_the_original(web_server: SinkServer, tmp_path: Path) -> None:
    web_server.rules.add(Rule.from_mapping({**DROP_FIRST, "schedule": "first", "n": 2}))
    send_with_retries(web_server.smtp_port, mail("three copies"))
    first, second, third = Store(tmp_path / "mail").ids()
    port = web_server.http_port
    assert {m["ID"]: m["DuplicateOf"] for m in wait_indexed(port, 3)} == {first: "", second: first, third: first}
    status, _, body = send_json(port, "/api/v1/messages", "DELETE", {"IDs": [first]})
    assert status == 200, body
    assert {m["ID"]: m["DuplicateOf"] for m in indexed(port)} == {second: "", third: second}
    assert [m["ID"] for m in indexed(port, "is:duplicate")] == [third]
    send_with_retries(web_server.smtp_port, mail("three copies"))  # a later copy: a duplicate of the oldest
    assert {m["DuplicateOf"] for m in wait_indexed(port, 3)} == {"", second}
    assert [m["DuplicateOf"] for m in indexed(port, "is:duplicate")] == [second, second]


def test_an_older_copy_indexed_later_becomes_the_original(tmp_path: Path) -> None:
    """A rescan may index a file older than one already indexed (copied in by hand): the flags follow
    the ids, not the order of indexing."""
    folder = tmp_path / "mail"
    with SinkFixture(build_config(store=folder)) as sink:
        sink.add_rule("after-data", "store-then-drop", schedule="nth", n=1)
        send_with_retries(sink.port, mail("moved"))
    first, second = Store(folder).ids()
    aside = tmp_path / f"{first}.eml"
    shutil.move(folder / f"{first}.eml", aside)
    store = Store(folder)
    store.refresh(0)
    assert store.summary(second).duplicate_of == ""
    shutil.move(aside, folder / f"{first}.eml")
    store.refresh(0)
    assert (store.summary(first).duplicate_of, store.summary(second).duplicate_of) == ("", first)
    assert [s.id for s in store.query(search="is:duplicate").messages] == [second]
    store.close()


# -- where the rule comes from ----------------------------------------------------------------------


@pytest.mark.parametrize("stage", ["connect", "helo", "mail", "rcpt", "data"])
def test_store_then_drop_is_refused_at_any_other_stage(stage: str, web_server: SinkServer, smtp_sink: SinkFixture,
                                                      tmp_path: Path) -> None:
    refusal = rf"^stage: action store-then-drop works at stage after-data only .*got {stage}$"
    with pytest.raises(RuleError, match=refusal):
        Rule(stage=stage, action="store-then-drop")  # type: ignore[arg-type]
    status, _, body = send_json(web_server, "/api/v1/rules", "POST", {"stage": stage, "action": "store-then-drop"})
    assert status == 400 and b"stage: action store-then-drop works at stage after-data only" in body
    config = tmp_path / "bad.toml"
    config.write_text(f'[[rules]]\nstage = "{stage}"\naction = "store-then-drop"\n')
    with pytest.raises(ConfigError, match=r"bad\.toml.*stage: action store-then-drop"):
        load(config, {}, environ={})
    with pytest.raises(RuleError, match=r"^smtp_sink\.add_rule: stage: action store-then-drop"):
        smtp_sink.add_rule(stage, "store-then-drop")


def test_the_cli_and_the_api_add_a_store_then_drop_rule(web_server: SinkServer, tmp_path: Path) -> None:
    base = f"http://127.0.0.1:{web_server.http_port}"
    added = run_cli("rules", "add", "--stage", "after-data", "--action", "store-then-drop", "--schedule", "nth",
                    "--n", "1", "--api", base)
    assert added.returncode == 0, added.stderr
    assert added.stdout == "added: at after-data: store-then-drop (stored, then dropped before the 250), nth 1\n"
    refused = run_cli("rules", "add", "--stage", "mail", "--action", "store-then-drop", "--api", base)
    assert refused.returncode != 0 and "stage: action store-then-drop" in refused.stderr
    assert refused.stderr.count("\n") == 1  # one line, no traceback
    assert get_json(web_server, "/api/v1/rules")[0]["action"] == "store-then-drop"
    assert len(send_with_retries(web_server.smtp_port, mail("via the CLI"))) == 1
    assert len(Store(tmp_path / "mail").ids()) == 2


@pytest.mark.smtp_sink(http={"enabled": True}, tags={"filters": {"is:duplicate": "retried"}})
def test_a_tag_filter_tags_duplicates_as_they_arrive(smtp_sink: SinkFixture) -> None:
    smtp_sink.add_rule("after-data", "store-then-drop", schedule="nth", n=1)
    send_with_retries(smtp_sink.port, mail("tagged copy"))
    port = smtp_sink.http_port
    assert port is not None
    original, duplicate = smtp_sink.messages
    assert {m["ID"]: m["Tags"] for m in wait_indexed(port, 2)} == {original.id: [], duplicate.id: ["retried"]}


def test_the_cli_marks_duplicates_and_finds_them(start_server: Servers, tmp_path: Path) -> None:
    server = start_server()
    server.rules.add(Rule.from_mapping(DROP_FIRST))
    send_with_retries(server.smtp_port, mail("listed twice"))
    send_with_retries(server.smtp_port, mail("listed once", "<once@shop.example.test>"))
    first, second, once = Store(tmp_path / "mail").ids()
    listed = run_cli("list", store=tmp_path / "mail")
    assert listed.returncode == 0, listed.stderr
    rows = [line for line in listed.stdout.splitlines() if line.split(" ", 1)[0] in (first, second, once)]
    subjects = {line.split()[0]: line.split("  ")[-1] for line in rows}
    assert subjects == {first: "listed twice", second: "(dup) listed twice", once: "listed once"}
    found = run_cli("search", "is:duplicate", "--json", store=tmp_path / "mail")
    assert found.returncode == 0, found.stderr
    assert [(m["ID"], m["DuplicateOf"]) for m in json.loads(found.stdout)["messages"]] == [(second, first)]


def test_the_new_message_event_says_which_message_it_duplicates(smtp_sink: SinkFixture) -> None:
    """Subscribers (the page's /api/events, webhooks) get the flag with the new message."""
    seen: list[Summary] = []
    smtp_sink.sink.subscribe(lambda event: seen.append(event) if isinstance(event, Summary) else None)
    smtp_sink.add_rule("after-data", "store-then-drop", schedule="nth", n=1)
    send_with_retries(smtp_sink.port, mail("announced"))
    first, second = (m.id for m in smtp_sink.messages)
    deadline = time.monotonic() + 10
    while len(seen) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert {s.id: s.to_json()["DuplicateOf"] for s in seen} == {first: "", second: first}
