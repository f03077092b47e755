"""The SQLite index and the store's reader API: paging, search, rebuild, rescan, retention, events."""

from __future__ import annotations

import shutil
import smtplib
import time
from pathlib import Path

import pytest

from smtp_sink.errors import NotFound
from smtp_sink.index import INDEX_FILE, id_floor, parse_query
from smtp_sink.search import SearchError, Term
from smtp_sink.sink import save_message
from smtp_sink.store import Deleted, Marked, Store
from smtp_sink.summary import Summary
from smtp_sink.trace import Envelope

COUNT = 5000


def save(store: Store, i: int, rcpt: str | None = None, subject: str | None = None) -> str:
    rcpt = rcpt or f"user{i % 10}@example.test"
    envelope = Envelope(helo="t", esmtp=True, mail_from=f"sender{i}@example.test",
                        rcpt_to=[rcpt, "audit@example.test"], peer="127.0.0.1")
    body = (f"From: Sender {i} <sender{i}@example.test>\r\nTo: {rcpt}\r\n"
            f"Subject: {subject or f'order {i} ' + ('even' if i % 2 == 0 else 'odd')}\r\n\r\n"
            f"Thanks for order number n{i}.\r\n").encode()
    return save_message(store, envelope, body, "sink.test").id


@pytest.fixture(scope="module")
def big_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """5,000 messages, saved and indexed once for the module (copied by tests that change it)."""
    path = tmp_path_factory.mktemp("big") / "mail"
    store = Store(path)
    store.open()
    store.index  # noqa: B018 - open the (empty) index first, so index_pending parses each message once
    for i in range(COUNT):
        save(store, i)
    assert store.index_pending() == COUNT
    store.close()
    return path


def copy_of(big_store: Path, tmp_path: Path) -> Path:
    target = tmp_path / "mail"
    shutil.copytree(big_store, target, ignore=shutil.ignore_patterns("*-wal", "*-shm"))  # a reader's, may vanish
    return target


def test_pages_cover_5000_messages_newest_first(big_store: Path) -> None:
    store = Store(big_store)
    first = store.query(0, 50)
    assert (first.total, first.unread, first.matched, len(first.messages)) == (COUNT, COUNT, COUNT, 50)
    assert first.messages[0].subject == f"order {COUNT - 1} odd"
    seen: list[str] = []
    for start in range(0, COUNT, 700):
        page = store.query(start, 700)
        seen += [m.id for m in page.messages]
    assert len(seen) == COUNT == len(set(seen))
    assert seen == sorted(seen, reverse=True) == sorted(store.ids(), reverse=True)
    last = store.query(COUNT - 3, 50)
    assert [m.subject for m in last.messages] == ["order 2 even", "order 1 odd", "order 0 even"]
    assert store.query(COUNT + 10, 50).messages == []


def test_listing_and_search_cost_the_page_not_the_store(big_store: Path) -> None:
    store = Store(big_store)
    db = store.index.db
    plan = " ".join(r[-1] for r in db.execute(
        "EXPLAIN QUERY PLAN SELECT n, id, read FROM messages ORDER BY id DESC LIMIT 50 OFFSET 0"))
    assert "TEMP B-TREE" not in plan and "INDEX" in plan  # walks the id index, no sort of the store
    started = time.perf_counter()
    for start in (0, 2500, 4950):
        assert len(store.query(start, 50).messages) == 50
    assert store.query(0, 20, "subject:odd").matched == COUNT // 2
    elapsed = time.perf_counter() - started
    assert elapsed < 1.0, f"3 pages and a search over {COUNT} messages took {elapsed:.2f} s"


def test_search_substrings_fields_and_negation(big_store: Path) -> None:
    store = Store(big_store)
    assert store.query(0, 10, "n1234").matched == 1  # body text
    assert [m.subject for m in store.query(0, 10, "n1234").messages] == ["order 1234 even"]
    page = store.query(0, 1000, "to:user3@example.test subject:odd")
    assert page.matched == COUNT // 10 and all(m.subject.endswith("odd") for m in page.messages)
    assert store.query(0, 10, "from:sender4999").matched == 1
    assert store.query(0, 10, "from:sender4999 subject:even").matched == 0
    assert store.query(0, 10, 'subject:"order 42 even"').messages[0].subject == "order 42 even"
    assert store.query(0, 10, "to:audit").matched == 0  # to: is the To header (as Mailpit's)
    assert store.query(0, 10, "bcc:audit").matched == COUNT  # envelope recipients named nowhere else are Bcc
    assert store.query(0, 10, "addressed:audit").matched == COUNT
    assert store.query(0, 10, "nosuchword").matched == 0
    assert store.query(0, 10, "!!!").matched == COUNT  # "!" negates: no message holds "!!"
    assert store.query(0, 10, 'subject:"unbalanced').matched == 0
    assert store.query(0, 5, None, to="user7", subject="odd").matched == COUNT // 10
    assert store.query(0, 5, "-subject:odd").matched == COUNT // 2
    assert parse_query("from:a b").terms == [Term("text", "a", ("from_",)), Term("text", "b", ("text",))]


def test_rebuild_after_index_file_deleted(big_store: Path, tmp_path: Path) -> None:
    path = copy_of(big_store, tmp_path)
    Store(path).mark_read(["latest"])
    (path / INDEX_FILE).unlink()
    store = Store(path)
    page = store.query(0, 5, "subject:even")
    assert page.total == COUNT and page.matched == COUNT // 2
    assert store.index.rebuilt


def test_corrupt_index_is_rebuilt(big_store: Path, tmp_path: Path) -> None:
    path = copy_of(big_store, tmp_path)
    for suffix in ("-wal", "-shm"):
        Path(f"{path / INDEX_FILE}{suffix}").unlink(missing_ok=True)
    (path / INDEX_FILE).write_bytes(b"this is not a database" * 100)
    store = Store(path)
    assert store.counts() == (COUNT, COUNT)
    assert store.query(0, 1, "from:sender17").matched == 111  # word prefix: 17, 170-179, 1700-1799
    assert store.query(0, 1, "from:sender17@example.test").matched == 1


def test_damaged_pages_found_by_a_query_are_rebuilt(tmp_path: Path) -> None:
    store = Store(tmp_path / "mail")
    store.open()
    ids = [save(store, i) for i in range(300)]
    store.close()
    index = tmp_path / "mail" / INDEX_FILE
    data = bytearray(index.read_bytes())
    assert len(data) > 8192
    data[4096:] = b"\xff" * (len(data) - 4096)  # the header page is intact: the damage shows in a query
    index.write_bytes(bytes(data))
    store = Store(tmp_path / "mail")
    assert store.query(0, 1000, "order").matched == 300
    assert [m.id for m in store.query(0, 1000).messages] == ids[::-1]


def test_files_added_and_removed_by_hand_are_picked_up(big_store: Path, tmp_path: Path) -> None:
    path = copy_of(big_store, tmp_path)
    store = Store(path)
    assert store.counts()[0] == COUNT
    dropped = id_floor(time.time() + 1)  # a valid id, newer than every stored one
    (path / f"{dropped}.eml").write_bytes(b"From: hand@example.test\r\nSubject: dropped in by hand\r\n\r\nhi\r\n")
    assert store.latest_id() == dropped  # the next query sees it: nobody but this process saves here
    victim = store.query(0, 1, "from:sender10@example.test").messages[0].id
    (path / f"{victim}.eml").unlink()
    (path / "notes.txt").write_text("not a message")
    added, removed = store.rescan()
    assert (added, removed) == ([], [victim])
    assert store.summary("latest").subject == "dropped in by hand"
    assert store.query(0, 5, "sender10@example.test").matched == 0
    # a fresh process sees the same without being told
    other = Store(path)
    assert other.counts()[0] == COUNT and other.query(0, 1, "subject:dropped").matched == 1


def test_read_flags_and_counts(tmp_path: Path) -> None:
    events: list[object] = []
    store = Store(tmp_path / "mail", on_event=events.append)
    store.open()
    ids = [save(store, i) for i in range(4)]
    assert store.counts() == (4, 4)
    assert store.mark_read(ids[:3]) == 3
    assert store.mark_read(ids[:1]) == 0  # already read
    assert store.mark_read(ids[1:2], read=False) == 1
    assert store.counts() == (4, 2)
    assert store.query(0, 10, "is:unread").matched == 2
    assert store.query(0, 10, None, read=True).matched == 2
    assert Store(tmp_path / "mail").summary(ids[0]).read is True  # persisted for other processes
    assert next(e for e in events if isinstance(e, Marked)) == Marked(tuple(ids[:3]), True)
    assert store.mark_read(None) == 2 and store.counts() == (4, 0)


def test_delete_and_delete_all(tmp_path: Path) -> None:
    events: list[object] = []
    store = Store(tmp_path / "mail", on_event=events.append)
    store.open()
    ids = [save(store, i) for i in range(5)]
    store.index_pending()
    assert [e.id for e in events if isinstance(e, Summary)] == ids
    assert store.delete([ids[0], ids[1], "01BADBADBADBADBADBADBADBAD"]) == 2
    assert store.delete(ids[0]) == 0
    assert events[-1] == Deleted((ids[0], ids[1]))
    assert store.ids() == ids[2:] and store.counts() == (3, 3)
    with pytest.raises(NotFound, match=f"^message {ids[0]} not found$"):
        store.summary(ids[0])
    assert store.delete_all() == 3
    assert events[-1] == Deleted(tuple(ids[2:]), all=True)
    assert store.ids() == [] and store.counts() == (0, 0) and store.latest_id() is None


def test_retention_max_messages(tmp_path: Path) -> None:
    store = Store(tmp_path / "mail", max_messages=10)
    store.open()
    ids = [save(store, i) for i in range(25)]
    store.index_pending()
    assert store.ids() == ids[-10:]
    assert store.counts() == (10, 10)
    assert [m.id for m in store.query(0, 50).messages] == ids[-10:][::-1]


def test_retention_max_age(tmp_path: Path) -> None:
    path = tmp_path / "mail"
    path.mkdir()
    old = [id_floor(time.time() - 7200 - i) for i in range(3)]  # two hours old
    for message_id in old:
        (path / f"{message_id}.eml").write_bytes(b"Subject: old\r\n\r\nold\r\n")
    store = Store(path, max_age=3600)
    fresh = save(store, 1)
    store.index_pending()
    assert store.ids() == [fresh]
    assert Store(path).query(0, 10, "old").matched == 0


def test_server_indexes_off_the_reply_path_and_notifies(server) -> None:
    events: list[object] = []
    server.sink.subscribe(events.append)
    with smtplib.SMTP("127.0.0.1", server.smtp_port) as smtp:
        for i in range(20):
            smtp.sendmail("app@example.test", ["bob@example.test", "secret@example.test"],
                          f"From: app@example.test\r\nTo: bob@example.test\r\nSubject: live {i}\r\n\r\nhi\r\n".encode())
    deadline = time.monotonic() + 5
    while len(events) < 20 and time.monotonic() < deadline:
        time.sleep(0.02)
    summaries = [e for e in events if isinstance(e, Summary)]
    assert [s.subject for s in summaries] == [f"live {i}" for i in range(20)]
    assert summaries[0].bcc[0].address == "secret@example.test"
    page = server.store.query(0, 5, "subject:live")
    assert page.matched == 20 and page.messages[0].subject == "live 19"
    # another process's view (a fresh Store on the same folder) agrees
    assert Store(server.store.path).counts() == (20, 20)


def test_a_search_running_too_long_is_stopped_and_the_next_one_is_right(big_store: Path) -> None:
    """A search past its time limit ends in SearchError (400 over HTTP), in a page, ``latest``
    or a mark by search; the temporary match sets are emptied, so the next search is right."""
    store = Store(big_store)
    store.index.search_seconds = 0  # every search is over its time at once
    for attempt in (lambda: store.query(0, 10, "-n1234"), lambda: store.latest_id("-order"),  # no match: a walk
                    lambda: store.mark_matching("-n1234", True)):
        with pytest.raises(SearchError, match="search stopped after 0 s"):
            attempt()
    store.index.search_seconds = 5
    assert store.query(0, 10, "-n1234 -n1235").matched == COUNT - 2
    assert store.query(0, 10, "n1234").matched == 1
    assert store.counts() == (COUNT, COUNT)  # nothing was marked
    store.close()
