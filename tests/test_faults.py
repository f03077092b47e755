"""Faults: process kill, full disk, store folder removed. Nothing accepted is lost, nothing half-written is kept."""

from __future__ import annotations

import asyncio
import os
import shutil
import smtplib
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from support.config import make_config
from support.processes import Processes
from support.servers import Servers
from support.wire import connect

from smtp_sink.ids import new_id
from smtp_sink.protocol import Policy
from smtp_sink.server import ServerThread, SinkServer
from smtp_sink.store import Store, StoredMessage


def test_kill9_during_data_leaves_nothing(start_process: Processes, tmp_path: Path) -> None:
    store_dir = tmp_path / "mail"
    server = start_process(store=store_dir)
    wire = connect(server.port)
    for line in ("EHLO k.test", "MAIL FROM:<a@example.test>", "RCPT TO:<b@example.test>"):
        assert wire.cmd(line)[0] == 250
    assert wire.cmd("DATA")[0] == 354
    wire.send(b"Subject: interrupted\r\n\r\n" + b"x" * 500_000)
    time.sleep(0.3)
    server.kill9()
    wire.close()
    assert list(store_dir.glob("*.eml")) == []
    restarted = start_process(store=store_dir)
    assert Store(store_dir).ids() == []
    assert list((store_dir / "tmp").iterdir()) == []
    restarted.stop()


def test_message_answered_250_survives_kill9(start_process: Processes, tmp_path: Path) -> None:
    store_dir = tmp_path / "mail"
    server = start_process(store=store_dir)
    body = b"Subject: durable\r\n\r\n" + b"line\r\n" * 10000
    with smtplib.SMTP("127.0.0.1", server.port, timeout=10) as smtp:
        smtp.ehlo()
        smtp.mail("a@example.test")
        smtp.rcpt("b@example.test")
        code, text = smtp.data(body)
        assert code == 250
        server.kill9()  # immediately after the reply
    message_id = text.decode().rsplit(" ", 1)[-1]
    start_process(store=store_dir)
    store = Store(store_dir)
    assert store.ids() == [message_id]
    assert store.read(message_id).endswith(body)


def test_startup_sweeps_orphan_temp_files_of_dead_processes(start_process: Processes, tmp_path: Path) -> None:
    store_dir = tmp_path / "mail"
    (store_dir / "tmp").mkdir(parents=True)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    orphan = store_dir / "tmp" / f"{new_id()}.{dead.pid}.tmp"
    orphan.write_bytes(b"Subject: half written")
    live = store_dir / "tmp" / f"{new_id()}.{os.getpid()}.tmp"  # a live writer's file is kept
    live.write_bytes(b"in progress")
    start_process(store=store_dir)
    assert not orphan.exists()
    assert live.exists()
    assert Store(store_dir).ids() == []


@pytest.fixture
def tiny_disk(tmp_path: Path, mount_tmpfs: Callable[[Path, str], Path]) -> Path:
    """A real 256 KiB filesystem (tmpfs, mounted as root) to fill up."""
    return mount_tmpfs(tmp_path / "tiny", "size=256k")


def test_disk_full_answers_451_and_keeps_serving(tiny_disk: Path, start_server: Servers) -> None:
    # min_free_space=0: no 452 up front, so the write itself fails mid-way
    server = start_server(tiny_disk / "mail", store_options={"min_free_space": 0})
    small = b"Subject: small\r\n\r\nfits\r\n"
    big = b"Subject: big\r\n\r\n" + b"z" * 400_000 + b"\r\n"
    with smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=10) as smtp:
        assert smtp.sendmail("a@example.test", ["b@example.test"], small) == {}
        with pytest.raises(smtplib.SMTPDataError) as refused:
            smtp.sendmail("a@example.test", ["b@example.test"], big)
        assert refused.value.smtp_code == 451
        # same session, still served
        assert smtp.noop()[0] == 250
        assert smtp.sendmail("a@example.test", ["b@example.test"], small) == {}
    assert len(server.store.ids()) == 2
    assert list(server.store.tmp.iterdir()) == []  # nothing half-written left behind
    for message_id in server.store.ids():
        assert server.store.read(message_id).endswith(small)


def test_store_folder_removed_while_running_is_recreated(server: SinkServer) -> None:
    server.store.counts()  # the index is open (it opens in the background at start-up)
    shutil.rmtree(server.store.path)
    with smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=10) as smtp:
        assert smtp.sendmail("a@example.test", ["b@example.test"], b"Subject: again\r\n\r\nx\r\n") == {}
    assert len(server.store.ids()) == 1


def test_short_of_min_free_space_answers_452_at_mail_and_data(tiny_disk: Path, start_server: Servers) -> None:
    server = start_server(tiny_disk / "mail", store_options={"min_free_space": 64 * 1024})
    with connect(server.smtp_port) as wire:
        wire.cmd("EHLO c.test")
        assert wire.cmd("MAIL FROM:<a@example.test>")[0] == 250  # more than 64 KiB free: enough
        assert wire.cmd("RCPT TO:<b@example.test>")[0] == 250
        stat = os.statvfs(tiny_disk)
        (tiny_disk / "filler").write_bytes(b"f" * (stat.f_bavail * stat.f_frsize - 32 * 1024))
        time.sleep(1.1)  # the check runs at most once a second
        code, lines = wire.cmd("DATA")
        assert code == 452 and "min_free_space" in lines[0]
        assert wire.cmd("RSET")[0] == 250
        assert wire.cmd("MAIL FROM:<a@example.test>")[0] == 452
        (tiny_disk / "filler").unlink()
        time.sleep(1.1)
        assert wire.cmd("MAIL FROM:<a@example.test>")[0] == 250
    assert server.store.ids() == []


def test_store_not_writable_answers_452(
    tmp_path: Path, start_server: Servers, mount_tmpfs: Callable[[Path, str], Path]  # unmounted first, then stopped
) -> None:
    server = start_server(tmp_path / "ro" / "mail", store_options={"min_free_space": 0})
    mount_tmpfs(server.store.path, "ro,size=64k")
    time.sleep(1.1)
    with connect(server.smtp_port) as wire:
        wire.cmd("EHLO c.test")
        code, lines = wire.cmd("MAIL FROM:<a@example.test>")
        assert code == 452 and "not writable" in lines[0]


# -- an unexpected error in one session: a reply, a logged traceback, and everyone else goes on ----


class Bug(RuntimeError):
    """An unexpected error (a bug in a policy, a rule or the server)."""


class BuggyPolicy(Policy):
    """Accepts everything, except that some addresses make it raise."""

    def check_recipient(self, envelope, address):  # type: ignore[no-untyped-def]
        if address.startswith("boom@"):
            raise Bug("recipient check exploded")
        return None

    explode_at_helo = False

    def fault(self, stage, client, sender, recipients):  # type: ignore[no-untyped-def]
        if stage == "after-data" and "explode-after-data@example.test" in recipients:
            raise Bug("after-data rule exploded")
        if stage == "helo" and self.explode_at_helo:
            raise Bug("helo rule exploded")
        return None


@pytest.fixture
def buggy(start_server: Servers) -> SinkServer:
    return start_server(policy=BuggyPolicy())


@pytest.mark.parametrize(
    ("commands", "code"),
    [
        (["EHLO c.test", "MAIL FROM:<a@example.test>", "RCPT TO:<boom@example.test>"], 451),
        (["EHLO c.test", "MAIL FROM:<a@example.test>", "RCPT TO:<explode-after-data@example.test>", "DATA",
          "Subject: x\r\n\r\nbody\r\n."], 451),
        (["EHLO c.test"], 421),  # outside a transaction
    ],
    ids=["rcpt", "after-data", "helo"],
)
def test_an_unexpected_error_is_answered_logged_and_harms_no_other_session(
    buggy: SinkServer, caplog: pytest.LogCaptureFixture, commands: list[str], code: int
) -> None:
    bystander = connect(buggy.smtp_port)  # in a transaction when the bug strikes elsewhere
    for line in ("EHLO b.test", "MAIL FROM:<b@example.test>", "RCPT TO:<c@example.test>"):
        assert bystander.cmd(line)[0] == 250
    buggy.policy.explode_at_helo = code == 421
    with connect(buggy.smtp_port) as wire:
        for line in commands[:-1]:
            assert wire.cmd(line)[0] in (250, 354)
        reply = wire.cmd(commands[-1])
        assert reply[0] == code, reply
        assert wire.closed()
    buggy.policy.explode_at_helo = False
    failures = [r for r in caplog.records if "failed" in r.getMessage() and r.exc_info]
    assert len(failures) == 1 and failures[0].exc_info[0] is Bug  # logged with its traceback
    assert bystander.cmd("DATA")[0] == 354
    bystander.send(b"Subject: unharmed\r\n\r\nstill here\r\n.\r\n")
    assert bystander.code() == 250
    bystander.close()
    assert len(buggy.store.ids()) == 1  # the bystander's message; nothing of the failed one


def test_a_message_the_store_fails_on_unexpectedly_gets_451_and_the_session_goes_on(
    server: SinkServer, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    save = server.store.save

    def buggy_save(header: bytes, data: bytes, message_id: str | None = None) -> StoredMessage:
        if b"explode" in data:
            raise Bug("store exploded")
        return save(header, data, message_id)

    monkeypatch.setattr(server.store, "save", buggy_save)
    with smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=10) as smtp:
        with pytest.raises(smtplib.SMTPDataError) as refused:
            smtp.sendmail("a@example.test", ["b@example.test"], b"Subject: explode\r\n\r\nx\r\n")
        assert refused.value.smtp_code == 451
        assert smtp.sendmail("a@example.test", ["b@example.test"], b"Subject: fine\r\n\r\nx\r\n") == {}
    assert len(server.store.ids()) == 1
    assert any(r.exc_info and r.exc_info[0] is Bug for r in caplog.records)


# -- ServerThread never hangs ------------------------------------------------------------------------


def start_within(thread: ServerThread, seconds: float) -> BaseException | None:
    """Call thread.start() elsewhere; fail if it does not return within ``seconds``; its error."""
    errors: list[BaseException | None] = []

    def run() -> None:
        try:
            thread.start()
            errors.append(None)
        except BaseException as exc:  # what start() raised
            errors.append(exc)

    starter = threading.Thread(target=run, daemon=True)
    starter.start()
    starter.join(seconds)
    assert not starter.is_alive(), f"ServerThread.start() still waiting after {seconds} s"
    return errors[0]


def test_server_thread_reports_a_loop_it_cannot_make(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # `import uvloop` now fails
    thread = ServerThread(make_config(tmp_path / "mail", loop="uvloop"))
    error = start_within(thread, 10)
    assert isinstance(error, RuntimeError) and "uvloop" in str(error)
    thread.stop()


def test_server_thread_start_gives_up_after_its_timeout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    thread = ServerThread(make_config(tmp_path / "mail"))

    async def never() -> None:
        await asyncio.Event().wait()

    monkeypatch.setattr(thread.server, "start", never)
    started = time.monotonic()
    with pytest.raises(TimeoutError, match=r"did not start within 0\.5 s"):
        thread.start(timeout=0.5)
    assert time.monotonic() - started < 5
    assert thread._thread is not None and not thread._thread.is_alive()  # nothing left running
