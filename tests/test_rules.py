"""Fault rules through the real server: every stage, action and schedule; config and run time."""

from __future__ import annotations

import select
import smtplib
import threading
import time
from pathlib import Path

import pytest
from support.servers import Servers
from support.wire import Wire, connect

from smtp_sink.config import ConfigError, load
from smtp_sink.rules import Rule, RuleError
from smtp_sink.server import SinkServer


def send(server: SinkServer, rcpt: str = "bob@example.test", sender: str = "a@example.test") -> int:
    """One message; the reply code that ended it (0 when the server hung up)."""
    try:
        with smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=10) as smtp:
            smtp.sendmail(sender, [rcpt], b"Subject: r\r\n\r\nx\r\n")
            return 250
    except smtplib.SMTPRecipientsRefused as exc:
        return exc.recipients[rcpt][0]
    except smtplib.SMTPResponseException as exc:
        return exc.smtp_code
    except smtplib.SMTPServerDisconnected:
        return 0


BOB_SECOND_TIME = """
[[rules]]
stage = "rcpt"
recipient = "bob@example.test"
code = 550
text = "Mailbox unavailable (test rule)"
schedule = "nth"
n = 2
"""


def test_refuse_bob_with_550_the_second_time_only(start_server: Servers) -> None:
    server = start_server(toml=BOB_SECOND_TIME)
    assert [send(server) for _ in range(4)] == [250, 550, 250, 250]
    assert send(server, rcpt="alice@example.test") == 250  # others never match
    assert len(server.store.ids()) == 4


DROP_AFTER_DATA = """
[[rules]]
stage = "after-data"
action = "disconnect"
schedule = "probability"
probability = 0.1
seed = 7
"""


def test_drop_after_data_ten_percent_seed_7_repeats_exactly(tmp_path: Path, start_server: Servers) -> None:
    runs = []
    for run in range(2):
        server = start_server(tmp_path / f"mail{run}", toml=DROP_AFTER_DATA)
        runs.append([send(server) for _ in range(40)])
        assert len(server.store.ids()) == runs[-1].count(250)  # a dropped message is not stored
    assert runs[0] == runs[1]
    assert 1 <= runs[0].count(0) <= 10 and set(runs[0]) == {0, 250}


@pytest.mark.parametrize(
    ("schedule", "n", "expected"),
    [
        ("always", 1, [451] * 6),
        ("nth", 3, [250, 250, 451, 250, 250, 250]),
        ("every", 2, [250, 451, 250, 451, 250, 451]),
        ("first", 2, [451, 451, 250, 250, 250, 250]),
    ],
)
def test_schedules(server: SinkServer, schedule: str, n: int, expected: list[int]) -> None:
    server.rules.add(Rule(stage="mail", code=451, text="try later", schedule=schedule, n=n))
    assert [send(server) for _ in range(6)] == expected


def test_probability_without_seed_and_extremes(server: SinkServer) -> None:
    server.rules.add(Rule(stage="rcpt", code=450, schedule="probability", probability=0.0))
    assert {send(server) for _ in range(5)} == {250}
    server.rules.clear()
    server.rules.add(Rule(stage="rcpt", code=450, schedule="probability", probability=1.0))
    assert {send(server) for _ in range(5)} == {450}


def test_connect_554_serves_only_quit(server: SinkServer) -> None:
    server.rules.add(Rule(stage="connect", code=554, text="no SMTP service here"))
    with Wire(server.smtp_port) as wire:
        assert wire.reply() == (554, ["no SMTP service here"])
        assert wire.cmd("EHLO c.test")[0] == 503
        assert wire.cmd("MAIL FROM:<a@example.test>")[0] == 503
        assert wire.cmd("QUIT")[0] == 221
        assert wire.closed()


def test_connect_421_closes(server: SinkServer) -> None:
    server.rules.add(Rule(stage="connect", code=421, text="busy, come back later"))
    with Wire(server.smtp_port) as wire:
        assert wire.reply() == (421, ["busy, come back later"])
        assert wire.closed()


def test_multi_line_reply_at_helo(server: SinkServer) -> None:
    server.rules.add(Rule(stage="helo", code=550, text=("first line", "second line", "third line")))
    with connect(server.smtp_port) as wire:
        assert wire.cmd("EHLO c.test") == (550, ["first line", "second line", "third line"])
        assert wire.cmd("MAIL FROM:<a@example.test>")[0] == 503  # not greeted


def test_sender_glob_at_mail_and_data_stage(server: SinkServer) -> None:
    server.rules.add(Rule(stage="mail", sender="*@spam.test", code=553, text="go away"))
    server.rules.add(Rule(stage="data", recipient="full@*", code=452, text="mailbox full"))
    assert send(server, sender="x@spam.test") == 553
    assert send(server, rcpt="full@example.test") == 452
    assert send(server) == 250


def test_after_data_refusal_stores_nothing(server: SinkServer) -> None:
    server.rules.add(Rule(stage="after-data", code=554, text="content rejected", schedule="first", n=1))
    assert send(server) == 554
    assert server.store.ids() == []
    assert send(server) == 250
    assert len(server.store.ids()) == 1


def test_client_glob(server: SinkServer) -> None:
    server.rules.add(Rule(stage="mail", client="10.*", code=550))
    assert send(server) == 250  # we are 127.0.0.1
    server.rules.add(Rule(stage="mail", client="127.0.0.*", code=550))
    assert send(server) == 550


def test_disconnect_without_reply(server: SinkServer) -> None:
    server.rules.add(Rule(stage="rcpt", action="disconnect"))
    with connect(server.smtp_port) as wire:
        wire.cmd("EHLO c.test")
        wire.cmd("MAIL FROM:<a@example.test>")
        wire.send("RCPT TO:<b@example.test>\r\nNOOP\r\n")
        assert wire.closed()
        assert wire.buf == b""  # no reply at all


def replied(wire: Wire) -> bool:
    """Something from the server is waiting to be read on ``wire`` (without reading it)."""
    return bool(select.select([wire.sock], [], [], 0)[0]) or bool(wire.buf)


def test_delay_before_the_reply_keeps_order(server: SinkServer) -> None:
    server.rules.add(Rule(stage="mail", action="delay", seconds=2.0))
    with connect(server.smtp_port) as wire:
        wire.cmd("EHLO c.test")
        started = time.monotonic()
        wire.send("MAIL FROM:<a@example.test>\r\nRCPT TO:<b@example.test>\r\nNOOP\r\n")  # pipelined
        with connect(server.smtp_port) as other:  # other sessions are served meanwhile, start to end
            assert other.cmd("EHLO o.test")[0] == 250
            assert other.cmd("NOOP")[0] == 250
            assert other.cmd("QUIT")[0] == 221
        assert not replied(wire), "the delay blocked the other session: it was served only after the delay"
        assert [wire.code() for _ in range(3)] == [250, 250, 250]
        assert time.monotonic() - started >= 1.95  # the loop timer has millisecond granularity


def test_throttle_limits_the_upload_rate(server: SinkServer) -> None:
    server.rules.add(Rule(stage="data", action="throttle", rate=100_000))
    body = b"Subject: slow\r\n\r\n" + b"z" * 98 + b"\r\n"
    upload = threading.Thread(target=lambda: send_body(server, body * 3000))  # 300 KB
    started = time.monotonic()
    upload.start()
    round_trips = []
    with connect(server.smtp_port) as other:  # meanwhile another session is answered at once
        while upload.is_alive():
            before = time.monotonic()
            assert other.cmd("NOOP")[0] == 250
            round_trips.append(time.monotonic() - before)
            time.sleep(0.05)
    upload.join()
    elapsed = time.monotonic() - started
    assert elapsed >= 2.0, elapsed  # 300 KB at 100 KB/s: about 3 s
    assert len(server.store.ids()) == 1
    assert len(round_trips) > 10 and max(round_trips) < 1.0, round_trips  # the throttle blocked no one


def send_body(server: SinkServer, body: bytes) -> None:
    with smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=20) as smtp:
        smtp.sendmail("a@example.test", ["b@example.test"], body)


def test_rules_added_at_run_time_apply_to_the_next_session_and_clear(server: SinkServer) -> None:
    assert send(server) == 250
    server.rules.add(Rule(stage="rcpt", code=450, text="greylisted"))
    assert send(server) == 450
    assert [r.code for r in server.rules.rules()] == [450]
    server.rules.clear()
    assert send(server) == 250


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('stage = "rcpt"\ncode = 600', r"#1: code: 600 is not an SMTP reply code \(200-599\)"),
        ('stage = "rcpt"\ncode = 199', r"#1: code: 199 is not an SMTP reply code"),
        ('stage = "rcpt"\ncode = 250', r"#1: code: a fault rule replies with a failure \(4xx or 5xx\), not 250"),
        ('stage = "rcpt"', r"#1: code: 0 is not an SMTP reply code"),
        ('stage = "later"\ncode = 550',
         r"#1: stage: must be one of connect, helo, starttls, auth, mail, rcpt, data, after-data"),
        ('code = 550', r"#1: stage: required"),
        ('stage = "rcpt"\ncode = 550\ncolour = "red"', r"#1: unknown key colour"),
        ('stage = "mail"\naction = "delay"', r"#1: seconds: a delay rule needs seconds > 0"),
        ('stage = "helo"\nrecipient = "a@b"\ncode = 550', r"#1: recipient: a helo rule has no recipient yet"),
        ('stage = "rcpt"\ncode = 550\nschedule = "probability"\nprobability = 2', r"#1: probability: must be between"),
        ('stage = "rcpt"\ncode = "550"', r"#1: code: expected a number"),
    ],
)
def test_rule_config_errors_name_the_rule_and_key(tmp_path: Path, table: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(f"[[rules]]\n{table}\n")
    with pytest.raises(ConfigError, match=rf"bad\.toml: \[\[rules\]\] {message}"):
        load(path, environ={})


def test_rule_objects_validate_too() -> None:
    with pytest.raises(RuleError, match="throttle rule needs rate"):
        Rule(stage="data", action="throttle")
