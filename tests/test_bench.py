"""The benchmark harness's own pieces that need no downloaded tools: the generated store is one the
real Store reads (ids, order, subjects), and the command line refuses unknown parts and servers."""

from __future__ import annotations

import time

import pytest

from bench.bench import parse_args
from bench.inspection import TOPICS, make_store
from smtp_sink.ids import id_time, is_id
from smtp_sink.store import Store


def test_generated_store_is_read_by_the_real_store(tmp_path):
    before = time.time()
    make_store(tmp_path / "mail", 120)
    store = Store(tmp_path / "mail")
    ids = store.ids()
    assert len(ids) == 120 and all(is_id(i) for i in ids)
    assert len({i[:10] for i in ids}) == 120  # one millisecond apart: sorted by arrival
    assert before - 1 <= id_time(ids[-1]) <= time.time()
    page = store.query(limit=50)
    assert (page.total, len(page.messages)) == (120, 50)
    assert page.messages[0].subject == f"Order 119 topic{119 % TOPICS:03d}"  # newest first
    found = store.query(limit=50, search="subject:topic007")
    assert [m.subject for m in found.messages] == ["Order 7 topic007"]
    store.close()


def test_command_line_rejects_unknown_parts_and_servers(capsys):
    with pytest.raises(SystemExit):
        parse_args(["--only", "a,zz"])
    assert "unknown part 'zz'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse_args(["--servers", "ours,exim"])
    assert "unknown server 'exim'" in capsys.readouterr().err
    quick = parse_args(["--quick", "--only", "a,b"])
    assert (quick.only, quick.runs, quick.sizes) == (["a", "b"], 1, [1000, 5000])
