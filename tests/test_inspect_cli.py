"""The inspection commands as a user runs them: real processes on a real store, server running or not."""

from __future__ import annotations

import json
import mailbox
import smtplib
import subprocess
import sys
import threading
import time
from email.message import EmailMessage
from pathlib import Path

import pytest
from support.processes import run_cli
from support.servers import Servers

from smtp_sink.server import SinkServer


def run(store: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    return run_cli(*args, store=store, text=False, timeout=30)


def out(result: subprocess.CompletedProcess[bytes]) -> str:
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout.decode()


def send(server: SinkServer, subject: str, to: str = "bob@example.test", *, attach: bool = False,
         bcc: str | None = None) -> None:
    msg = EmailMessage()
    msg["From"] = "App <app@example.test>"
    msg["To"] = to
    msg["Subject"] = subject
    msg.set_content(f"Text of {subject}.\n")
    if attach:
        msg.add_alternative(f"<p>HTML of <b>{subject}</b></p>", subtype="html")
        msg.add_attachment(b"col1,col2\n1,2\n", maintype="text", subtype="csv", filename="../../evil/data.csv")
    with smtplib.SMTP("127.0.0.1", server.smtp_port) as smtp:
        smtp.send_message(msg, to_addrs=[to] + ([bcc] if bcc else []))


@pytest.fixture
def filled(server: SinkServer) -> SinkServer:
    send(server, "Welcome Alice", "alice@example.test")
    send(server, "Invoice 42", "bob@example.test", attach=True, bcc="audit@example.test")
    send(server, "Reset your password", "carol@example.test")
    return server


def test_list_table_and_json(filled: SinkServer) -> None:
    store = filled.store.path
    table = out(run(store, "list"))
    lines = table.splitlines()
    assert lines[0].split()[:5] == ["ID", "RECEIVED", "FROM", "TO", "SUBJECT"]
    assert "Reset your password" in lines[1] and "Welcome Alice" in lines[3]
    assert "Invoice 42 [1]" in lines[2]  # attachment count
    assert lines[-1] == "1-3 of 3 messages, 3 unread"
    data = json.loads(out(run(store, "list", "--json")))
    assert list(data) == ["total", "unread", "count", "messages_count", "messages_unread", "start", "tags", "messages"]
    assert (data["total"], data["count"], data["messages_count"]) == (3, 3, 3)
    first = data["messages"][0]
    assert first["Subject"] == "Reset your password" and first["From"] == {"Name": "App", "Address": "app@example.test"}
    assert first["ID"] == filled.store.ids()[-1]
    invoice = data["messages"][1]
    assert invoice["Bcc"] == [{"Name": "", "Address": "audit@example.test"}] and invoice["Attachments"] == 1


def test_list_filters(filled: SinkServer) -> None:
    store = filled.store.path

    def subjects(*args: str) -> list[str]:
        return [m["Subject"] for m in json.loads(out(run(store, "list", "--json", *args)))["messages"]]

    assert subjects("--to", "alice@example.test") == ["Welcome Alice"]
    assert subjects("--to", "audit") == ["Invoice 42"]  # an envelope-only (Bcc) recipient
    assert subjects("--from", "app", "--subject", "invoice") == ["Invoice 42"]
    assert subjects("--limit", "2") == ["Reset your password", "Invoice 42"]
    assert subjects("--since", "10m") == ["Reset your password", "Invoice 42", "Welcome Alice"]
    assert subjects("--since", "2999-01-01") == []
    bad = run(store, "list", "--since", "yesterday-ish")
    assert bad.returncode == 2 and bad.stderr.decode().count("\n") == 1 and "--since" in bad.stderr.decode()
    assert out(run(store, "list", "--to", "nobody")).strip() == "0 messages (3 in store, 3 unread)"


def test_search(filled: SinkServer) -> None:
    store = filled.store.path
    data = json.loads(out(run(store, "search", "password", "--json")))
    assert [m["Subject"] for m in data["messages"]] == ["Reset your password"]
    assert data["messages_count"] == 1 and data["total"] == 3
    assert "Invoice 42" in out(run(store, "search", "to:bob subject:invoice"))
    assert json.loads(out(run(store, "search", "text of welcome", "--json")))["count"] == 1  # body words


def test_show_views(filled: SinkServer, tmp_path: Path) -> None:
    store = filled.store.path
    invoice_id = filled.store.ids()[1]
    human = out(run(store, "show", invoice_id))
    assert "Subject:   Invoice 42" in human and "Bcc:       audit@example.test" in human
    assert "Attached:  part 2: ../../evil/data.csv (text/csv" in human or "data.csv" in human
    assert human.rstrip().endswith("Text of Invoice 42.")
    detail = json.loads(out(run(store, "show", invoice_id, "--json")))
    assert detail["ID"] == invoice_id and detail["Read"] is True
    assert detail["Attachments"][0]["PartID"] == "2" and detail["Attachments"][0]["ContentType"] == "text/csv"
    assert detail["HTML"] == "<p>HTML of <b>Invoice 42</b></p>\n"
    assert detail["ReturnPath"] == "app@example.test"
    raw = run(store, "show", invoice_id, "--raw")
    assert raw.returncode == 0 and raw.stdout == (store / f"{invoice_id}.eml").read_bytes()
    headers = json.loads(out(run(store, "show", invoice_id, "--headers", "--json")))
    assert headers["Subject"] == ["Invoice 42"] and len(headers["X-Original-To"]) == 2
    assert "X-Original-To: audit@example.test" in out(run(store, "show", invoice_id, "--headers"))
    assert out(run(store, "show", invoice_id, "--text")) == "Text of Invoice 42.\n"
    assert out(run(store, "show", invoice_id, "--html")) == "<p>HTML of <b>Invoice 42</b></p>\n"
    assert run(store, "show", invoice_id, "--part", "2").stdout == b"col1,col2\n1,2\n"
    saved = json.loads(out(run(store, "show", invoice_id, "--save-attachments", str(tmp_path / "att"), "--json")))
    assert [Path(s["Path"]).name for s in saved] == ["data.csv"]  # the path in the name is dropped
    assert (tmp_path / "att" / "data.csv").read_bytes() == b"col1,col2\n1,2\n"
    latest = json.loads(out(run(store, "show", "latest", "--json")))
    assert latest["Subject"] == "Reset your password"
    no_html = run(store, "show", "latest", "--html")
    assert no_html.returncode == 1 and "no HTML part" in no_html.stderr.decode()
    unknown = (["show", "01HZZZZZZZZZZZZZZZZZZZZZZZ"], ["show", "../../etc/passwd"],
               ["show", invoice_id, "--part", "7"])
    for args in unknown:
        failed = run(store, *args)
        assert failed.returncode == 1 and failed.stderr.decode().startswith("smtp-sink: ")
        assert "Traceback" not in failed.stderr.decode()
    # show marked what it displayed as read
    assert json.loads(out(run(store, "list", "--json")))["unread"] == 1


def test_wait_for_a_message_sent_from_another_thread(server: SinkServer) -> None:
    store = server.store.path
    send(server, "old news", "x@y.test")
    sender = threading.Timer(0.8, send, (server, "your code is 123456", "x@y.test"))
    started = time.monotonic()
    sender.start()
    try:
        result = run(store, "wait", "--to", "x@y.test", "--new", "--timeout", "10")
    finally:
        sender.join()
    waited = time.monotonic() - started
    message_id = out(result).strip()
    assert waited >= 0.8
    assert message_id == server.store.ids()[-1]
    assert json.loads(out(run(store, "show", message_id, "--json")))["Subject"] == "your code is 123456"
    # without --new an existing match counts (the mail may have arrived before wait started)
    existing = json.loads(out(run(store, "wait", "--to", "x@y.test", "--subject", "old", "--json")))
    assert existing["Subject"] == "old news"


def test_wait_times_out_with_exit_1(server: SinkServer) -> None:
    started = time.monotonic()
    result = run(server.store.path, "wait", "--to", "nobody@example.test", "--timeout", "0.5")
    assert result.returncode == 1 and result.stdout == b""
    assert result.stderr.decode() == "smtp-sink: no message matching --to nobody@example.test within 0.5 s\n"
    assert 0.5 <= time.monotonic() - started < 10


def test_watch_prints_each_new_message(server: SinkServer) -> None:
    send(server, "before watch")
    proc = subprocess.Popen(
        [sys.executable, "-m", "smtp_sink", "watch", "--json", "--timeout", "6", "--store", str(server.store.path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
    )
    try:
        time.sleep(1.0)  # let it start and note the newest message
        send(server, "first live")
        send(server, "second live")
        lines = [proc.stdout.readline(), proc.stdout.readline()]
    finally:
        proc.kill()
        proc.wait()
    assert [json.loads(line)["Subject"] for line in lines] == ["first live", "second live"]


def test_watch_human_output_and_timeout(server: SinkServer) -> None:
    threading.Timer(0.8, send, (server, "watched subject")).start()
    result = run(server.store.path, "watch", "--timeout", "2.5")
    assert "watched subject" in out(result) and "watching" in result.stderr.decode()


def test_clear_asks_refuses_without_stdin_and_deletes_with_yes(filled: SinkServer) -> None:
    store = filled.store.path
    refused = run(store, "clear")
    assert refused.returncode == 1
    assert refused.stderr.decode() == (
        f"smtp-sink: not deleting 3 messages in {store} without confirmation: run it in a terminal, or pass --yes\n"
    )
    assert len(filled.store.ids()) == 3
    assert json.loads(out(run(store, "clear", "--yes", "--json"))) == {"deleted": 3}
    assert filled.store.ids() == []
    assert json.loads(out(run(store, "list", "--json")))["total"] == 0
    assert out(run(store, "clear", "--yes")) == "deleted 0 messages\n"


def test_export_mbox(filled: SinkServer, tmp_path: Path) -> None:
    store = filled.store.path
    target = tmp_path / "all.mbox"
    send(filled, "From the start", "bob@example.test")  # a subject starting with "From "
    result = run(store, "export", "--mbox", str(target), "--json")
    assert json.loads(out(result)) == {"exported": 4, "file": str(target)}
    box = mailbox.mbox(target)
    assert [m["Subject"] for m in box] == ["Welcome Alice", "Invoice 42", "Reset your password", "From the start"]
    assert box[1].get_from().startswith("app@example.test ")
    stdout = run(store, "export", "--mbox", "-")
    assert stdout.stdout.count(b"\nFrom app@example.test ") == 3 and stdout.stdout.startswith(b"From ")


def test_commands_work_without_the_server_and_take_config(tmp_path: Path, start_server: Servers) -> None:
    server = start_server()
    send(server, "written while running")
    start_server.stop(server)
    store = server.store.path
    config = tmp_path / "sink.toml"
    config.write_text(f'[store]\npath = "{store}"\n')
    # --config names the store; no --store given
    result = run_cli("list", "--json", "--config", str(config), text=False)
    assert [m["Subject"] for m in json.loads(out(result))["messages"]] == ["written while running"]
    bad = run_cli("list", "--config", str(tmp_path / "missing.toml"), text=False)
    assert bad.returncode == 2 and "missing.toml" in bad.stderr.decode()


def test_commands_on_a_store_no_server_ever_wrote(tmp_path: Path) -> None:
    store = tmp_path / "mail"
    store.mkdir()
    (store / "01HZZZZZZZZZZZZZZZZZZZZZZZ.eml").write_bytes(b"From: a@b.test\r\nSubject: by hand\r\n\r\nhello\r\n")
    assert "by hand" in out(run(store, "list"))
    assert out(run(store, "show", "latest", "--text")) == "hello\n"
    (store / "index.sqlite").unlink()
    assert json.loads(out(run(store, "search", "hello", "--json")))["count"] == 1


def test_human_output_never_passes_terminal_controls_and_flags_unreadable_mail(server: SinkServer) -> None:
    """Captured mail is attacker-controlled: an ESC sequence (screen clear, window title), a CSI,
    a C1 control or a bidi override in a subject, a name or the body is shown as U+FFFD, never sent
    to the terminal; a message that could not be read whole is marked in list and explained in show."""
    evil = "\x1b]0;owned\x07\x1b[2J\x9b31m\u202etxt.exe"
    raw = (f"From: Eve{evil} <eve@example.test>\r\nTo: bob@example.test\r\nSubject: Hi{evil}\r\n"
           f"Content-Type: text/plain; charset=undefined\r\n\r\nbody{evil}\r\nline two\r\n").encode()
    with smtplib.SMTP("127.0.0.1", server.smtp_port) as smtp:
        smtp.sendmail("eve@example.test", ["bob@example.test"], raw)
    store = server.store.path
    for command in (("list",), ("search", "Hi"), ("show", "latest"), ("show", "latest", "--text"),
                    ("show", "latest", "--headers")):
        shown = out(run(store, *command))
        assert not any((ord(c) < 32 and c not in "\n\t") or 0x7F <= ord(c) < 0xA0 or c == "\u202e" for c in shown), \
            (command, shown)
        assert "\ufffd" in shown, command
    assert "(!) Hi" in out(run(store, "list"))
    shown = out(run(store, "show", "latest"))
    assert "Warning:" in shown and "charset 'undefined'" in shown and "line two" in shown
    assert evil.encode() in run(store, "show", "latest", "--raw").stdout  # --raw keeps every byte


# -- no store: said so, never created ------------------------------------------------------------


def no_store_line(path: Path) -> str:
    return (f"smtp-sink: no store at {path}: give its folder with --store DIR (or [store] path in --config FILE), "
            "or start `smtp-sink serve` here first")


def test_commands_without_a_store_name_the_folder_and_create_none(tmp_path: Path) -> None:
    missing = tmp_path / "mail"
    for command in (["list"], ["search", "x"], ["show", "latest"], ["clear", "--yes"],
                    ["export", "--mbox", str(tmp_path / "all.mbox")]):
        result = run(missing, *command)
        assert result.returncode == 1 and result.stdout == b"", command
        assert result.stderr.decode().splitlines() == [no_store_line(missing)], command
    # the default store (./mail) names the folder it looked for
    default = run_cli("list", cwd=tmp_path)
    assert default.returncode == 1 and default.stderr.splitlines() == [no_store_line(missing)]
    assert sorted(tmp_path.iterdir()) == []  # no store, no mbox file
    missing.write_text("")
    not_a_folder = run(missing, "list")
    assert not_a_folder.returncode == 1
    assert not_a_folder.stderr.decode() == (
        f"smtp-sink: {missing} is not a folder: give the store folder with --store DIR\n")


def test_wait_waits_for_the_store_a_server_creates(tmp_path: Path, start_server: Servers) -> None:
    store = tmp_path / "mail"
    waiting = subprocess.Popen([sys.executable, "-m", "smtp_sink", "wait", "--to", "late@example.test",
                                "--timeout", "20", "--store", str(store)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    try:
        time.sleep(1.0)
        assert waiting.poll() is None and not store.exists()  # waiting, and it did not create the store
        server = start_server()
        send(server, "after the store appeared", "late@example.test")
        stdout, stderr = waiting.communicate(timeout=20)
    finally:
        waiting.kill()
        waiting.wait()
    assert waiting.returncode == 0, stderr
    assert stdout.strip() == server.store.ids()[-1]


def test_wait_and_watch_without_a_store_give_up_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "mail"
    for command in (["wait", "--timeout", "0.3"], ["watch", "--json", "--timeout", "0.3"]):
        result = run(missing, *command)
        assert result.returncode == 1 and result.stdout == b"", command
        assert result.stderr.decode().splitlines()[-1] == no_store_line(missing) + " (waited 0.3 s)", command
    assert not missing.exists()


def test_watch_prints_the_mail_of_a_store_that_appears_later(tmp_path: Path, start_server: Servers) -> None:
    store = tmp_path / "mail"
    proc = subprocess.Popen([sys.executable, "-m", "smtp_sink", "watch", "--timeout", "20", "--store", str(store)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    try:
        assert proc.stderr is not None and proc.stdout is not None
        assert proc.stderr.readline() == f"waiting for a store at {store} (Ctrl-C to stop)\n"
        assert not store.exists()
        server = start_server()
        send(server, "first in a new store")
        line = proc.stdout.readline()
    finally:
        proc.kill()
        proc.wait()
    assert "first in a new store" in line and line.startswith(server.store.ids()[-1])


def test_wait_matches_as_the_pytest_plugins_wait_for(server: SinkServer) -> None:
    """`smtp-sink wait` and the plugin's `wait_for` share one meaning (smtp_sink.matching.Criteria):
    whole addresses ignoring case, subject text ignoring case; not word prefixes."""
    from smtp_sink.matching import Criteria

    send(server, "Welcome Bobby", "bobby@example.test")
    send(server, "Your invoice", "Bob@Example.test")
    store = server.store.path
    cases = [
        ({"to": "bob@example.test"}, "Your invoice"),  # whole address, any case; not bobby@
        ({"to": "BOBBY@EXAMPLE.TEST"}, "Welcome Bobby"),
        ({"subject": "elcome"}, "Welcome Bobby"),  # text inside a word
        ({"sender": "APP@example.test", "to": "bobby@example.test"}, "Welcome Bobby"),
        ({"to": "bob@example"}, None),  # not a whole address
    ]
    summaries = server.store.query(0, 10).messages
    for wanted, subject in cases:
        flags = [f"--{'from' if key == 'sender' else key}={value}" for key, value in wanted.items()]
        result = run(store, "wait", *flags, "--timeout", "0.3", "--json")
        by_cli = json.loads(result.stdout)["Subject"] if result.returncode == 0 else None
        by_plugin = next((s.subject for s in summaries if Criteria(**wanted).matches(s)), None)
        assert by_cli == by_plugin == subject, (wanted, by_cli, by_plugin)
