"""An index file that is valid SQLite but wrong inside is repaired (issue 13 §5).

Each case damages the index of a store the real server filled, then reads it with the real CLI
(a separate process) and a restarted server's HTTP API: both give the true listing, search and
counters, read flags and tags set through the API included where the damaged file still tells
them. An inconsistent file is rebuilt from the ``.eml`` files at open; a row whose summary does
not read back is re-derived from its ``.eml`` file when it is read.
"""

from __future__ import annotations

import json
import smtplib
import sqlite3
import urllib.parse
from collections.abc import Callable
from pathlib import Path

import pytest
from support.http import get_json
from support.processes import cli_json
from support.servers import Servers

from smtp_sink.index import INDEX_FILE
from smtp_sink.store import Store

SUBJECTS = ["alpha one", "beta two", "gamma three"]


@pytest.fixture
def filled(tmp_path: Path, start_server: Servers) -> tuple[Path, list[str]]:
    """A store of three messages (the first one read, the second tagged), written and indexed by
    the real server."""
    store = tmp_path / "mail"
    server = start_server(store, http=True)
    with smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=10) as smtp:
        for subject in SUBJECTS:
            smtp.sendmail("app@example.test", ["bob@example.test"], f"Subject: {subject}\r\n\r\nhi\r\n".encode())
    start_server.stop(server)
    ids = sorted(path.name[:-4] for path in store.glob("*.eml"))
    assert cli_json(store, "show", ids[0])["Subject"] == SUBJECTS[0]  # show marks it read
    tagger = Store(store)
    assert tagger.set_tags([ids[1]], ["Kept", "also kept"]) == {ids[1]: ["also kept", "Kept"]}
    tagger.close()
    return store, ids


def sql(store: Path, *statements: str) -> None:
    db = sqlite3.connect(store / INDEX_FILE)
    for statement in statements:
        db.execute(statement)
    db.commit()
    db.close()


def to_folder(store: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{store / INDEX_FILE}{suffix}").unlink(missing_ok=True)
    (store / INDEX_FILE).mkdir()
    (store / INDEX_FILE / "stray").write_text("not an index")


ROW = "(SELECT n FROM messages WHERE id = '{}')"
# name -> (damage, read flags and tags survive)
DAMAGE: dict[str, tuple[Callable[[Path, list[str]], None], bool]] = {
    "stats-row-missing": (lambda store, ids: sql(store, "DELETE FROM stats"), True),
    "wrong-counters": (lambda store, ids: sql(store, "UPDATE stats SET total = 7, unread = 0"), True),
    "search-table-dropped": (lambda store, ids: sql(store, "DROP TABLE search"), True),
    "tag-rows-of-no-message": (lambda store, ids: sql(store, "INSERT INTO message_tags VALUES (999, 1)"), True),
    "other-schema-version": (lambda store, ids: sql(store, "PRAGMA user_version = 99"), True),
    "summary-not-json": (lambda store, ids: sql(store, f"UPDATE summaries SET summary = '{{\"ID\": ' "
                                                       f"WHERE n = {ROW.format(ids[1])}"), True),
    "summary-incomplete": (lambda store, ids: sql(store, f"UPDATE summaries SET summary = json_remove(summary, "
                                                         f"'$.Subject') WHERE n = {ROW.format(ids[1])}"), True),
    "summary-wrong-types": (lambda store, ids: sql(store, "UPDATE summaries SET summary = json_set(summary, "
                                                          f"'$.To', 5, '$.Size', 'big') "
                                                          f"WHERE n = {ROW.format(ids[0])}"), True),
    "summary-missing": (lambda store, ids: sql(store, f"DELETE FROM summaries WHERE n = {ROW.format(ids[2])}"), True),
    "index-is-a-folder": (lambda store, ids: to_folder(store), False),
}


def check_listing(listing: dict, search: dict, ids: list[str], flags_kept: bool) -> None:
    assert (listing["total"], listing["unread"]) == (3, 2 if flags_kept else 3)
    assert [m["Subject"] for m in listing["messages"]] == SUBJECTS[::-1]
    assert [m["ID"] for m in listing["messages"]] == ids[::-1]
    assert all(m["To"] == [] and m["RcptTo"] == ["bob@example.test"] for m in listing["messages"])
    assert [m["Read"] for m in listing["messages"]] == [False, False, flags_kept]
    assert [m["Tags"] for m in listing["messages"]] == [[], ["also kept", "Kept"] if flags_kept else [], []]
    assert listing["tags"] == (["also kept", "Kept"] if flags_kept else [])
    assert [m["Subject"] for m in search["messages"]] == ["beta two"]


@pytest.mark.parametrize("case", DAMAGE)
def test_damaged_index_is_repaired_for_the_cli_and_the_server(filled: tuple[Path, list[str]], start_server: Servers,
                                                              case: str) -> None:
    store, ids = filled
    damage, flags_kept = DAMAGE[case]
    damage(store, ids)
    check_listing(cli_json(store, "list"), cli_json(store, "search", "subject:beta"), ids, flags_kept)
    damage(store, ids)  # the CLI repaired it: the same damage again, for the server
    server = start_server(store, http=True)
    check_listing(get_json(server, "/api/v1/messages"),
                  get_json(server, "/api/v1/search?" + urllib.parse.urlencode({"query": "subject:beta"})),
                  ids, flags_kept)
    start_server.stop(server)
    from smtp_sink.index import inconsistency

    db = sqlite3.connect(store / INDEX_FILE)
    assert inconsistency(db) is None
    for message_id, summary in db.execute("SELECT id, summary FROM messages JOIN summaries USING (n)"):
        data = json.loads(summary)  # a bad row was rewritten when it was read
        assert data["ID"] == message_id and data["Subject"] in SUBJECTS and isinstance(data["To"], list)
    db.close()
