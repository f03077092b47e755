"""``GET /api/v1/message/{id}/sa-check`` over real sockets (spec 8.3): against Debian's real spamd,
started by the test as an ordinary process (it answers in a few seconds; ``scripts/setup-tests.sh``
installs it), and against the fake spamd of tests/support/spamd.py for what a real one will not do
on demand: folded descriptions, a spamd that is down, one that answers garbage. 404 while
``[checks] spamassassin`` is empty (decision 14)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.checks import checks_server, deliver, html_message
from support.http import get_json, request
from support.spamd import RULES, fake_spamd

from smtp_sink.checks.spam_check import floor_tenth, parse
from smtp_sink.config import ConfigError, load
from smtp_sink.server import SinkServer

SPAMD = "/usr/sbin/spamd"
GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"  # SpamAssassin's test string
START_TIMEOUT = 60.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _pong(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
            sock.sendall(b"PING SPAMC/1.5\r\n\r\n")
            sock.shutdown(socket.SHUT_WR)
            return b"PONG" in sock.recv(100)
    except OSError:
        return False


@pytest.fixture(scope="module")
def spamd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """Debian's spamd on a free port of 127.0.0.1 (no network tests, one child): its port."""
    assert shutil.which(SPAMD) or os.path.exists(SPAMD), "spamd is not installed: run scripts/setup-tests.sh"
    folder = tmp_path_factory.mktemp("spamd")
    port = _free_port()
    command = [SPAMD, f"--listen=127.0.0.1:{port}", "--allowed-ips=127.0.0.1", "--min-children=1",
               "--max-children=2", "--local", "--nouser-config", "--syslog=stderr",
               f"--pidfile={folder / 'spamd.pid'}"]
    if os.geteuid() == 0:
        command.append("--username=nobody")  # spamd will not run its children as root
    with open(folder / "spamd.log", "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=folder)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not _pong(port):
            assert process.poll() is None, (folder / "spamd.log").read_text()[-2000:]
            assert time.monotonic() < deadline, f"spamd did not answer within {START_TIMEOUT} s"
            time.sleep(0.2)
        yield port
    finally:
        process.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(10)
        if process.poll() is None:
            process.kill()
            process.wait(5)


def sa_check(server: SinkServer, message_id: str) -> Any:
    return get_json(server, f"/api/v1/message/{message_id}/sa-check")


def test_real_spamd_finds_the_test_spam(start_server: Any, tmp_path: Path, spamd: int) -> None:
    """GTUBE scores 1000 in SpamAssassin; a plain note is not spam. Rules come with their scores
    (floored to a tenth) and descriptions; the total is spamd's."""
    server = checks_server(start_server, tmp_path / "mail", spamassassin=f"127.0.0.1:{spamd}")
    spam = sa_check(server, deliver(server, html_message(None, text=f"Buy now!\n{GTUBE}\n")))
    assert spam["IsSpam"] is True and spam["Error"] == "" and spam["Score"] >= 1000, spam
    gtube = next(rule for rule in spam["Rules"] if rule["Name"] == "GTUBE")
    assert gtube["Score"] == 1000 and "Generic Test for Unsolicited Bulk Email" in gtube["Description"]
    assert list(spam) == ["IsSpam", "Error", "Score", "Rules"]
    assert all(list(rule) == ["Score", "Name", "Description"] and rule["Name"] for rule in spam["Rules"])
    ham = sa_check(server, deliver(server, html_message(None, text="Lunch at noon tomorrow?\n")))
    assert ham["IsSpam"] is False and ham["Error"] == "" and ham["Score"] < 5 and isinstance(ham["Rules"], list)
    latest = sa_check(server, "latest")  # decision 3 (spamd lists rules of equal score in any order)
    assert latest["Score"] == ham["Score"] and sorted(map(str, latest["Rules"])) == sorted(map(str, ham["Rules"]))


def test_fake_spamd_report_is_read_as_mailpit_reads_it(start_server: Any, tmp_path: Path) -> None:
    """The stored bytes go to spamd with ``REPORT SPAMC/1.5``; folded descriptions are joined; scores
    are floored to a tenth; IsSpam is Mailpit's 5.0 threshold."""
    with fake_spamd(score=4.9) as fake:
        server = checks_server(start_server, tmp_path / "mail", spamassassin=f"127.0.0.1:{fake.port}")
        message_id = deliver(server, html_message("<p>hello</p>"))
        result = sa_check(server, message_id)
        assert result == {"IsSpam": False, "Error": "", "Score": 4.9, "Rules": [
            {"Score": points, "Name": name, "Description": text.replace("\n", " ")} for points, name, text in RULES]}
        assert fake.requests == [("REPORT SPAMC/1.5", server.store.read(message_id))]


def test_a_spamd_that_is_down_or_answers_garbage_is_a_200_with_the_error(start_server: Any, tmp_path: Path) -> None:
    """Mailpit's way: the check itself answers 200, ``Error`` says what went wrong, ``Rules`` is null."""
    port = _free_port()
    server = checks_server(start_server, tmp_path / "mail", spamassassin=f"127.0.0.1:{port}")
    message_id = deliver(server, html_message(None))
    result = sa_check(server, message_id)
    assert result == {"IsSpam": False, "Error": f"dial 127.0.0.1:{port}: connection refused", "Score": 0,
                      "Rules": None}
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        garbage = checks_server(start_server, tmp_path / "other", spamassassin=f"127.0.0.1:{listener.getsockname()[1]}")
        other_id = deliver(garbage, html_message(None))

        def answer_garbage() -> None:
            conn, _ = listener.accept()
            with conn:
                while conn.recv(65536):  # the whole request, as spamd reads it
                    pass
                conn.sendall(b"HTTP/1.1 200 OK\r\n\r\nnot spamd")
                conn.shutdown(socket.SHUT_WR)

        thread = threading.Thread(target=answer_garbage)
        thread.start()
        result = sa_check(garbage, other_id)
        thread.join(10)
    assert result["IsSpam"] is False and result["Rules"] is None and "not a spamd reply" in result["Error"]


def test_unconfigured_is_404_and_unknown_messages_are_404(web_server: SinkServer) -> None:
    """Decision 14: without ``[checks] spamassassin`` the route answers 404, as Mailpit's missing route."""
    message_id = deliver(web_server, html_message(None))
    status, _, body = request(web_server, f"/api/v1/message/{message_id}/sa-check")
    assert status == 404 and "[checks] spamassassin" in json.loads(body)["Error"]


def test_unknown_messages_are_404_when_configured(start_server: Any, tmp_path: Path) -> None:
    with fake_spamd() as fake:
        server = checks_server(start_server, tmp_path / "mail", spamassassin=f"127.0.0.1:{fake.port}")
        assert request(server, "/api/v1/message/latest/sa-check")[0] == 404
        assert request(server, "/api/v1/message/01ARZ3NDEKTSV4RRFFQ69G5FAV/sa-check")[0] == 404
        assert fake.requests == []


@pytest.mark.parametrize("value", ["localhost", "127.0.0.1:", ":783", "127.0.0.1:99999", "127.0.0.1:x", "unix:"])
def test_a_spamd_address_that_is_none_is_refused_at_start(tmp_path: Path, value: str) -> None:
    path = tmp_path / "smtp-sink.toml"
    path.write_text(f'[checks]\nspamassassin = "{value}"\n')
    with pytest.raises(ConfigError, match=r'\[checks\] spamassassin: expected "host:port"'):
        load(path, environ={})
    for good in ("127.0.0.1:783", "spamd.example.test:783", "[::1]:783", "unix:/run/spamd.sock"):
        path.write_text(f'[checks]\nspamassassin = "{good}"\n')
        assert load(path, environ={}).checks.spamassassin == good


def test_scores_floor_to_a_tenth_on_the_written_value() -> None:
    """Mailpit floors (``-0.15`` is ``-0.2``); spamd writes one decimal, which stays as written."""
    assert [floor_tenth(x) for x in (6.2, -0.1, -0.15, 3.8, 0.07, 1000.0)] == [6.2, -0.1, -0.2, 3.8, 0.0, 1000.0]
    score, rules = parse("SPAMD/1.1 0 EX_OK\r\nSpam: False ; 2.5 / 5.0\r\n\r\nContent analysis details:\r\n"
                         " 2.5 SOME_RULE   A rule\r\n")
    assert score == 2.5 and rules == [{"Score": 2.5, "Name": "SOME_RULE", "Description": "A rule"}]
