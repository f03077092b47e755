"""Mailbox policy through the real server: known, unknown, forwarded, moved, forbidden; VRFY and EXPN."""

from __future__ import annotations

from pathlib import Path

import pytest
from support import ROOT
from support.servers import Servers
from support.wire import connect

from smtp_sink.config import load


def test_std10_dialogue_replayed_line_by_line(start_server: Servers) -> None:
    """RFC 821's example: Green is refused 550, the message is accepted for Jones and Brown."""
    server = start_server(toml=ROOT / "examples" / "std10.toml")
    dialogue = [
        ("MAIL FROM:<Smith@Alpha.ARPA>", 250, None),
        ("RCPT TO:<Jones@Beta.ARPA>", 250, None),
        ("RCPT TO:<Green@Beta.ARPA>", 550, "No such user here"),
        ("RCPT TO:<Brown@Beta.ARPA>", 250, None),
        ("DATA", 354, "Start mail input; end with <CRLF>.<CRLF>"),
    ]
    with connect(server.smtp_port) as wire:
        assert wire.cmd("HELO Alpha.ARPA")[0] == 250
        for command, code, text in dialogue:
            got_code, lines = wire.cmd(command)
            assert got_code == code, command
            if text is not None:
                assert lines == [text]
        wire.send("Blah blah blah...\r\n...etc. etc. etc.\r\n.\r\n")
        assert wire.code() == 250
        assert wire.cmd("QUIT")[0] == 221
    raw = server.store.read(server.store.ids()[0])
    assert raw.count(b"X-Original-To: ") == 2
    assert b"X-Original-To: Jones@Beta.ARPA\r\nX-Original-To: Brown@Beta.ARPA\r\n" in raw
    assert b"Green" not in raw
    assert raw.endswith(b"Blah blah blah...\r\n..etc. etc. etc.\r\n")


POLICY = """
[policy]
mailboxes = ["ann@example.test"]
domains = ["team.test"]
unknown = "550"
forbidden = ["root@*", "*@blocked.test"]
forwards = { "old@example.test" = "new@example.test" }
moved = { "gone@example.test" = "gone@elsewhere.test" }
lists = { staff = ["ann@example.test", "bob@team.test"] }
"""


@pytest.mark.parametrize(
    ("address", "code", "text"),
    [
        ("ann@example.test", 250, None),
        ("ANN@Example.Test", 250, None),
        ("anyone@team.test", 250, None),
        ("stranger@example.test", 550, "No such user here"),
        ("old@example.test", 251, "User not local; will forward to <new@example.test>"),
        ("gone@example.test", 551, "User not local; please try <gone@elsewhere.test>"),
        ("root@team.test", 553, "<root@team.test>: mailbox name not allowed"),
        ("x@blocked.test", 553, None),
    ],
)
def test_rcpt_and_vrfy_agree(start_server: Servers, address: str, code: int, text: str | None) -> None:
    server = start_server(toml=POLICY)
    with connect(server.smtp_port) as wire:
        wire.cmd("EHLO c.test")
        wire.cmd("MAIL FROM:<a@example.test>")
        rcpt_code, lines = wire.cmd(f"RCPT TO:<{address}>")
        assert rcpt_code == code
        if text:
            assert lines == [text]
        assert wire.cmd(f"VRFY {address}")[0] == code


def test_forward_is_stored_for_both(start_server: Servers) -> None:
    server = start_server(toml=POLICY)
    with connect(server.smtp_port) as wire:
        for command in ("EHLO c.test", "MAIL FROM:<a@example.test>", "RCPT TO:<old@example.test>", "DATA"):
            wire.cmd(command)
        wire.send("Subject: fwd\r\n\r\nx\r\n.\r\n")
        assert wire.code() == 250
    raw = server.store.read(server.store.ids()[0])
    assert b"X-Original-To: old@example.test\r\nX-Original-To: new@example.test\r\n" in raw


def test_all_recipients_refused_gives_554_at_data(start_server: Servers) -> None:
    server = start_server(toml=POLICY)
    with connect(server.smtp_port) as wire:
        wire.cmd("EHLO c.test")
        wire.cmd("MAIL FROM:<a@example.test>")
        assert wire.cmd("RCPT TO:<stranger@example.test>")[0] == 550
        code, lines = wire.cmd("DATA")
        assert code == 554 and "no valid recipients" in lines[0]


def test_expn(start_server: Servers) -> None:
    server = start_server(toml=POLICY)
    with connect(server.smtp_port) as wire:
        assert wire.cmd("EXPN staff") == (250, ["<ann@example.test>", "<bob@team.test>"])
        assert wire.cmd("EXPN Staff")[0] == 250
        assert wire.cmd("EXPN nobody") == (550, ["nobody: no such mailing list"])
    disabled = start_server(toml=POLICY + "expn = false\n")
    with connect(disabled.smtp_port) as wire:
        assert wire.cmd("EXPN staff")[0] == 502


def test_unknown_553_and_default_accept(start_server: Servers) -> None:
    server = start_server(toml='[policy]\nmailboxes = ["ann@example.test"]\nunknown = "553"\n')
    with connect(server.smtp_port) as wire:
        wire.cmd("EHLO c.test")
        wire.cmd("MAIL FROM:<a@example.test>")
        assert wire.cmd("RCPT TO:<x@example.test>")[0] == 553
        assert wire.cmd("VRFY ann@example.test") == (250, ["<ann@example.test>"])
    accepting = start_server(toml="")
    with connect(accepting.smtp_port) as wire:
        wire.cmd("EHLO c.test")
        wire.cmd("MAIL FROM:<a@example.test>")
        assert wire.cmd("RCPT TO:<anyone@anywhere.test>")[0] == 250
        assert wire.cmd("VRFY anyone@anywhere.test")[0] == 252


def test_policy_config_errors_name_the_key(tmp_path: Path) -> None:
    from smtp_sink.config import ConfigError

    bad = tmp_path / "bad.toml"
    for text, message in [
        ('[policy]\nunknown = "451"\n', r'\[policy\] unknown: must be one of accept, 550, 553'),
        ('[policy]\nmailboxes = "ann@example.test"\n', r"\[policy\] mailboxes: expected a list of strings"),
        ("[policy]\nforwards = { a = 1 }\n", r'\[policy\] forwards\."a": expected a string, got 1'),
        ('[policy]\nlists = { staff = "ann" }\n', r'\[policy\] lists\."staff": expected a list of strings'),
    ]:
        bad.write_text(text)
        with pytest.raises(ConfigError, match=message):
            load(bad, environ={})
