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


def test_server_cpu_is_read_from_proc_and_tabled(capsys):
    import os

    from bench.bench import print_table
    from bench.tools import proc_cpu

    user, system = proc_cpu(os.getpid())
    deadline = time.process_time() + 0.05
    while time.process_time() < deadline:  # burn a little CPU
        pass
    assert proc_cpu(os.getpid())[0] + proc_cpu(os.getpid())[1] > user + system
    print_table({"throughput": {"b": {"servers": {
        "ours": {"msg_per_s": 3000.0, "mib_per_s": 2.9, "cpu_user_us": 110.0, "cpu_sys_us": 250.0},
        "postfix-d": {"msg_per_s": 4000.0, "mib_per_s": 3.9, "cpu_user_us": 15.0, "cpu_sys_us": 240.0},
    }}}})
    out = capsys.readouterr().out
    assert "| smtp-sink (ours, default loop) | 3,000 | 1.00 |" in out
    assert "| Postfix smtp-sink -d (C, file per msg) | 4,000 | 0.75 |" in out
    assert "| smtp-sink (ours, default loop) | 110 + 250 |" in out
