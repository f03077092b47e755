"""Faults the read side survives (issue 13 §5): a full disk, the store folder deleted while the
server runs, saves racing the indexer, a message the display parser fails on.

Real servers, real files (a real tmpfs filled up, as in tests/test_faults.py), the real CLI.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path

import pytest
from support import wait_until
from support.http import get_json, send_json
from support.mail import send as send_mail
from support.processes import cli_json
from support.servers import Servers

from smtp_sink.index import INDEX_FILE
from smtp_sink.server import SinkServer
from smtp_sink.sink import save_message
from smtp_sink.store import Store
from smtp_sink.trace import Envelope


@pytest.fixture
def small_disk(tmp_path: Path, mount_tmpfs: Callable[[Path, str], Path]) -> Path:
    """A real 1 MiB filesystem (tmpfs, mounted as root) to fill up."""
    return mount_tmpfs(tmp_path / "small", "size=1m")


def put_read(server: SinkServer, read: bool) -> tuple[int, dict]:
    """``PUT /api/v1/messages {"Read": read}``: (status, JSON error or {})."""
    status, _, body = send_json(server, "/api/v1/messages", "PUT", {"Read": read})
    return status, json.loads(body) if status != 200 else {}


def search(server: SinkServer, query: str) -> dict:
    return get_json(server, "/api/v1/search?" + urllib.parse.urlencode({"query": query}))


def send(server: SinkServer, subject: str, content_type: str = "text/plain") -> None:
    send_mail(server, f"Subject: {subject}\r\nContent-Type: {content_type}\r\n\r\nhello {subject}\r\n")


def fill(disk: Path, leave: int = 0) -> Path:
    """Fill ``disk`` up to ``leave`` free bytes; return the filler file (unlink it to free the space)."""
    filler = disk / "filler"
    stat = os.statvfs(disk)
    filler.write_bytes(b"f" * max(0, stat.f_bavail * stat.f_frsize - leave))
    return filler


def subjects(listing: dict) -> list[str]:
    return [message["Subject"] for message in listing["messages"]]


# -- a full disk -------------------------------------------------------------------------


def test_reads_keep_working_on_a_full_disk(small_disk: Path, start_server: Servers) -> None:
    store = small_disk / "mail"
    server = start_server(store, http=True, store_options={"min_free_space": 0})
    for subject in ("one", "two", "three"):
        send(server, subject)
    first = get_json(server, "/api/v1/messages")["messages"][-1]["ID"]
    assert get_json(server, f"/api/v1/message/{first}")["Read"] is True  # marks it read
    filler = fill(small_disk, leave=4096)
    send(server, "late")  # its file fits; its index row does not
    assert len(list(store.glob("*.eml"))) == 4 and os.statvfs(small_disk).f_bavail == 0
    listing = get_json(server, "/api/v1/messages")  # the index as it is: the late one is pending
    assert (listing["total"], listing["unread"], subjects(listing)) == (3, 2, ["three", "two", "one"])
    assert get_json(server, "/api/v1/info")["Messages"] == 3
    assert subjects(search(server, "hello")) == ["three", "two", "one"]
    assert get_json(server, f"/api/v1/message/{first}")["Subject"] == "one"  # marking read fails quietly
    assert get_json(server, "/api/v1/message/latest")["Subject"] == "three"
    status, error = put_read(server, True)  # an explicit change that cannot be saved is not an "ok"
    assert status == 507 and "read flags not saved" in error["Error"], (status, error)
    by_cli = cli_json(store, "list")  # another process opens the index on the full disk
    assert (by_cli["total"], by_cli["unread"], subjects(by_cli)) == (3, 2, ["three", "two", "one"])
    assert subjects(cli_json(store, "search", "subject:two")) == ["two"]
    filler.unlink()  # space again: the pending message is indexed, nothing was lost
    wait_until(lambda: get_json(server, "/api/v1/messages")["total"] == 4)
    listing = get_json(server, "/api/v1/messages")
    assert subjects(listing) == ["late", "three", "two", "one"] and listing["unread"] == 3
    assert put_read(server, True) == (200, {}) and get_json(server, "/api/v1/messages")["unread"] == 0


def test_the_cli_reads_a_full_disk_without_an_index(small_disk: Path, start_server: Servers) -> None:
    store = small_disk / "mail"
    server = start_server(store, http=True, store_options={"min_free_space": 0})
    for subject in ("one", "two"):
        send(server, subject)
    start_server.stop(server)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{store / INDEX_FILE}{suffix}").unlink(missing_ok=True)
    filler = fill(small_disk)
    listing = cli_json(store, "list")  # no room for an index file: one in memory, built from the files
    assert (listing["total"], subjects(listing)) == (2, ["two", "one"])
    assert subjects(cli_json(store, "search", "hello two")) == ["two"]
    assert cli_json(store, "show", "latest")["Subject"] == "two"
    filler.unlink()
    assert subjects(cli_json(store, "list")) == ["two", "one"]
    assert (store / INDEX_FILE).stat().st_size > 0  # with room again, the file index is built


# -- the store folder or its index removed while the server runs ------------------------


@pytest.mark.parametrize("removed", ["store-folder", "index-file"])
def test_index_removed_while_running_is_reopened(tmp_path: Path, start_server: Servers, removed: str) -> None:
    """The server notices that its index file is no longer the one at the path (within
    INDEX_CHECK_INTERVAL) and reopens it: what it writes (a read flag) another process sees."""
    store = tmp_path / "mail"
    server = start_server(store, http=True)
    send(server, "before")
    send(server, "also before")
    assert get_json(server, "/api/v1/messages")["total"] == 2
    if removed == "store-folder":
        shutil.rmtree(store)
    else:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{store / INDEX_FILE}{suffix}").unlink(missing_ok=True)
    send(server, "after")
    expected = ["after"] if removed == "store-folder" else ["after", "also before", "before"]
    wait_until(lambda: subjects(get_json(server, "/api/v1/messages")) == expected)
    assert subjects(search(server, "hello")) == expected
    time.sleep(0.5)  # INDEX_CHECK_INTERVAL: whatever the server does about it, it did by now
    latest = get_json(server, "/api/v1/messages")["messages"][0]["ID"]
    assert get_json(server, f"/api/v1/message/{latest}")["Read"] is True  # the server marks it read
    by_cli = cli_json(store, "list")  # the index on disk is the one the server writes
    assert (subjects(by_cli), by_cli["unread"]) == (expected, len(expected) - 1)
    assert by_cli["messages"][0]["Read"] is True
    send(server, "later")
    wait_until(lambda: get_json(server, "/api/v1/messages")["total"] == len(expected) + 1)
    assert subjects(cli_json(store, "list"))[0] == "later"


# -- saves racing the indexer ------------------------------------------------------------


def test_saves_on_one_thread_while_another_rescans(tmp_path: Path) -> None:
    """``save`` (the event loop's thread) appends to the pending queue while ``rescan`` (the
    indexer's thread) reads it: with thread switches forced often, an unguarded queue fails
    with "deque mutated during iteration" within a few rescans."""
    store = Store(tmp_path / "mail")
    store.open()
    envelope = Envelope(helo="t", esmtp=True, mail_from="a@example.test", rcpt_to=["b@example.test"], peer="::1")
    for _ in range(6000):  # a long queue of saves whose files were then removed by hand:
        os.unlink(save_message(store, envelope, b"Subject: gone\r\n\r\nx\r\n", "sink.test").file)
    # each rescan below reads the whole queue, and has little else to do

    def saver() -> None:
        for _ in range(1000):
            save_message(store, envelope, b"Subject: racing\r\n\r\nx\r\n", "sink.test")

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    thread = threading.Thread(target=saver)
    thread.start()
    try:
        while thread.is_alive():
            store.rescan()
    finally:
        thread.join(60)
        sys.setswitchinterval(interval)
    store.index_pending()
    assert store.pending == 0 and store.counts() == (1000, 1000) and len(store.ids()) == 1000
    store.close()


# -- one message the display parser fails on --------------------------------------------


def test_a_message_the_parser_fails_on_is_listed_and_indexing_goes_on(tmp_path: Path, start_server: Servers) -> None:
    store = tmp_path / "mail"
    server = start_server(store, http=True)
    send(server, "before")
    send(server, "odd", "text/plain; charset=undefined")  # the 'undefined' codec raises on any decode
    send(server, "after")
    wait_until(lambda: get_json(server, "/api/v1/messages")["total"] == 3)
    listing = get_json(server, "/api/v1/messages")
    assert [m["RcptTo"] for m in listing["messages"]] == [["bob@example.test"]] * 3
    assert subjects(listing)[0] == "after" and subjects(listing)[2] == "before"
    assert subjects(search(server, "hello after")) == ["after"]
    assert subjects(search(server, "bcc:bob")) == subjects(listing)  # the envelope recipient, in Bcc
    start_server.stop(server)
    for suffix in ("", "-wal", "-shm"):  # and a rebuild from the files goes past it too
        Path(f"{store / INDEX_FILE}{suffix}").unlink(missing_ok=True)
    assert cli_json(store, "list")["total"] == 3
