"""Mailpit's search syntax (spec §3) over real sockets: ``/api/v1/search``, ``DELETE /api/v1/search``,
``PUT /api/v1/messages`` with ``Search``, ``latest?query=`` and ``smtp-sink search``, on three
messages sent over SMTP to the real server."""

from __future__ import annotations

import json
import smtplib
import urllib.parse
from datetime import datetime, timedelta, timezone
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from support import wait_until
from support.http import get_json, request, send_json
from support.processes import cli_json

from smtp_sink.config import AuthMode
from smtp_sink.search import clean, parse, parse_date, size_to_bytes, tokens
from smtp_sink.server import SinkServer

WELCOME, INVOICE, LUNCH = "Welcome aboard", "Invoice 100%_done", "Re: lunch"
ALL = {WELCOME, INVOICE, LUNCH}


def welcome() -> EmailMessage:
    """Text + a PDF attachment, X-Tags, a plus address, Reply-To, a Message-ID."""
    message = EmailMessage()
    message["From"] = "Ann Example <ann@example.test>"
    message["To"] = "Bob <bob+vip@example.test>"
    message["Reply-To"] = "reply@example.test"
    message["Subject"] = WELCOME
    message["Message-ID"] = "<one@example.test>"
    message["X-Tags"] = "Alpha, beta"
    message.set_content("first body text")
    message.add_attachment(b"%PDF-1.4", maintype="application", subtype="pdf", filename="report-2024.pdf")
    return message


def invoice() -> EmailMessage:
    """HTML only, with an inline image (Content-Disposition: inline), Cc."""
    message = EmailMessage()
    message["From"] = "carl@other.test"
    message["To"] = "dave@other.test"
    message["Cc"] = "Eve <eve@example.test>"
    message["Subject"] = INVOICE
    message["Message-ID"] = "<two@other.test>"
    message.set_content("<p>second <b>body</b></p>", subtype="html")
    message.add_related(b"\x89PNG\r\n\x1a\nfake", maintype="image", subtype="png", cid="<logo@x>",
                        filename="logo.png", disposition="inline")
    return message


def lunch() -> EmailMessage:
    """A big text (6 KB), sent with AUTH as frank, with a hidden (envelope-only) recipient."""
    message = EmailMessage()
    message["From"] = "frank@example.test"
    message["To"] = "grace@other.test"
    message["Subject"] = LUNCH
    message.set_content("see you at noon " + "x" * 6000)
    return message


@pytest.fixture
def mailbox(start_server: Any) -> SinkServer:
    """A server with HTTP and AUTH (any login) holding the three messages above, indexed."""
    server: SinkServer = start_server(http=True, auth={"mode": AuthMode.ACCEPT_ANY})
    with smtplib.SMTP("127.0.0.1", server.smtp_port) as smtp:
        smtp.send_message(welcome())
        smtp.send_message(invoice())
    with smtplib.SMTP("127.0.0.1", server.smtp_port) as smtp:
        smtp.login("frank", "secret")
        smtp.send_message(lunch(), to_addrs=["grace@other.test", "hidden@other.test"])
    wait_until(lambda: get_json(server, "/api/v1/messages")["total"] == 3, what="3 messages listed")
    return server


def found(server: SinkServer, query: str, extra: str = "") -> set[str]:
    """The subjects ``/api/v1/search`` finds for ``query`` (checking its counts agree)."""
    body = get_json(server, f"/api/v1/search?query={urllib.parse.quote(query)}{extra}")
    subjects = [m["Subject"] for m in body["messages"]]
    assert body["messages_count"] == body["count"] == len(subjects), (query, body)
    return set(subjects)


CASES = [
    ("elcome", {WELCOME}),  # a substring, not a word prefix
    ("ELCOME", {WELCOME}),
    ("from:ample", {WELCOME, LUNCH}),
    ("FROM:ANN", {WELCOME}),
    ("from:Example", {WELCOME, LUNCH}),  # the name and the address
    ('"first body"', {WELCOME}),
    ('"body first"', set()),
    ("-welcome", {INVOICE, LUNCH}),
    ("!welcome", {INVOICE, LUNCH}),
    ("-ThisDoesNotExist", ALL),
    ("thisdoesnotexist", set()),
    ("to:bob", {WELCOME}),
    ("to:name", set()),  # Mailpit matches its JSON keys here (decision 12)
    ("to:address", set()),
    ("cc:eve", {INVOICE}),
    ("-cc:eve", {WELCOME, LUNCH}),
    ("bcc:hidden", {LUNCH}),  # the envelope-only recipient
    ("reply-to:reply@", {WELCOME}),
    ('addressed:"eve@example.test"', {INVOICE}),
    ("addressed:ann@example.test", {WELCOME}),  # From counts
    ("-addressed:other.test", {WELCOME}),
    ('subject:"100%_done"', {INVOICE}),
    ("subject:100_", set()),  # no SQL wildcards (decision 12)
    ("subject:1%0", set()),
    ("Subject:RE:", {LUNCH}),
    ("message-id:one@example", {WELCOME}),
    ("message-id:<two@other.test>", {INVOICE}),
    ("tag:alpha", {WELCOME}),
    ("tag:ALPHA", {WELCOME}),
    ("tag:alp", set()),  # a tag is matched whole
    ("-tag:alpha", {INVOICE, LUNCH}),
    ("tag:vip", {WELCOME}),  # bob+vip@
    ("is:tagged", {WELCOME}),
    ("!is:tagged", {INVOICE, LUNCH}),
    ("has:attachment", {WELCOME}),
    ("has:attachments", {WELCOME}),
    ("has:inline", {INVOICE}),
    ("-has:inline", {WELCOME, LUNCH}),
    ("report-2024", {WELCOME}),  # attachment names are free text
    ("second", {INVOICE}),  # the HTML's text
    ("noon lunch", {LUNCH}),
    ("larger:4k", {LUNCH}),
    ("smaller:4k", {WELCOME, INVOICE}),
    ("-larger:4k", {WELCOME, INVOICE}),
    ("larger:1g", set()),  # no valid size: free text
    ("after:2000-01-01", ALL),
    ("before:2000-01-01", set()),
    ("-before:2000-01-01", ALL),
    ("after:2099-01-01", set()),
    ('before:"2099-01-01 10:00"', ALL),
    ("before:notadate", ALL),  # an unparseable date adds no condition
    ("is:unread", ALL),
    ("is:read", set()),
    ("from:example.test -has:attachment", {LUNCH}),
]


@pytest.mark.parametrize(("query", "expected"), CASES, ids=[c[0] for c in CASES])
def test_search_syntax(mailbox: SinkServer, query: str, expected: set[str]) -> None:
    """Each filter of spec §3.3, case-insensitive substrings, quotes and negation."""
    assert found(mailbox, query) == expected


def test_blank_query_is_400(mailbox: SinkServer) -> None:
    status, _, body = request(mailbox, "/api/v1/search?query=%20%20")
    assert (status, json.loads(body)) == (400, {"Error": "Error: no search query"})  # decision 16: JSON errors
    assert request(mailbox, "/api/v1/search?query=%20", "DELETE")[0] == 400


def test_dates_use_tz_when_they_name_no_zone(mailbox: SinkServer) -> None:
    """``after:`` a wall-clock time 30 minutes ahead in UTC: nothing; the same wall-clock time in
    Tokyo (9 hours ahead of UTC) is hours ago: everything."""
    soon = (datetime.now(timezone.utc) + timedelta(minutes=30)).strftime("%Y-%m-%dT%H:%M")
    assert found(mailbox, f"after:{soon}", "&tz=UTC") == set()
    assert found(mailbox, f"after:{soon}", "&tz=Asia/Tokyo") == ALL
    assert found(mailbox, f"after:{soon}Z", "&tz=Asia/Tokyo") == set()  # a zone of its own wins


def test_read_flags_and_unread_counts(mailbox: SinkServer) -> None:
    welcome_id = get_json(mailbox, "/api/v1/search?query=elcome")["messages"][0]["ID"]
    get_json(mailbox, f"/api/v1/message/{welcome_id}")  # opening it marks it read
    assert found(mailbox, "is:read") == {WELCOME}
    assert found(mailbox, "is:unread") == {INVOICE, LUNCH}
    body = get_json(mailbox, "/api/v1/search?query=example.test")
    assert (body["messages_count"], body["messages_unread"], body["total"], body["unread"]) == (3, 2, 3, 2)


def test_username_and_tags_in_summaries(mailbox: SinkServer) -> None:
    by_subject = {m["Subject"]: m for m in get_json(mailbox, "/api/v1/messages")["messages"]}
    assert by_subject[LUNCH]["Username"] == "frank"
    assert by_subject[WELCOME]["Username"] == ""
    assert by_subject[WELCOME]["Tags"] == ["Alpha", "beta", "vip"]
    assert by_subject[INVOICE]["Tags"] == []
    assert get_json(mailbox, "/api/v1/search?query=tag:beta")["tags"] == ["Alpha", "beta", "vip"]


def test_latest_with_a_query(mailbox: SinkServer) -> None:
    """``latest?query=`` is the newest match, not the newest message; no match: 404."""
    assert get_json(mailbox, "/api/v1/message/latest?query=has:attachment")["Subject"] == WELCOME
    assert get_json(mailbox, "/api/v1/message/latest")["Subject"] == LUNCH
    assert get_json(mailbox, "/api/v1/message/latest?query=-from:frank")["Subject"] == INVOICE
    status, _, raw = request(mailbox, "/api/v1/message/latest/raw?query=cc:eve")
    assert status == 200 and b"Subject: Invoice" in raw
    status, _, html = request(mailbox, "/view/latest.html?query=" + urllib.parse.quote("-has:attachment from:carl"))
    assert status == 200 and b"second" in html
    assert request(mailbox, "/api/v1/message/latest?query=nothinglikethis")[0] == 404


def test_put_messages_with_search_marks_only_the_matches(mailbox: SinkServer) -> None:
    status, _, body = send_json(mailbox, "/api/v1/messages", "PUT", {"Read": True, "Search": "to:other.test"})
    assert (status, body) == (200, b"ok")
    assert found(mailbox, "is:read") == {INVOICE, LUNCH}
    assert send_json(mailbox, "/api/v1/messages", "PUT", {"Search": "subject:lunch"})[0] == 200  # Read: false
    assert found(mailbox, "is:read") == {INVOICE}


def test_delete_search_deletes_only_the_matches(mailbox: SinkServer) -> None:
    status, _, body = request(mailbox, "/api/v1/search?query=" + urllib.parse.quote('addressed:"@other.test"'),
                              "DELETE")
    assert (status, body) == (200, b"ok")
    assert found(mailbox, "example") == {WELCOME}
    info = get_json(mailbox, "/api/v1/info")
    assert info["RuntimeStats"]["MessagesDeleted"] == 2 and info["Messages"] == 1


def test_cli_search_uses_the_same_syntax(mailbox: SinkServer, tmp_path: Path) -> None:
    store = tmp_path / "mail"
    found_cli = cli_json(store, "search", "-welcome has:inline")
    assert [m["Subject"] for m in found_cli["messages"]] == [INVOICE]
    assert [m["Subject"] for m in cli_json(store, "list", "--tag", "ALPHA")["messages"]] == [WELCOME]


# -- the parser, on its own ------------------------------------------------------------------------

def test_tokens_are_split_on_spaces_outside_quotes() -> None:
    assert tokens('from:"John Doe" "foo bar" -"x y" a\tb') == ["from:John Doe", "foo bar", "-x y", "a\tb"]
    assert tokens('subject:"unbalanced rest of it') == ["subject:unbalanced rest of it"]


def test_clean_is_mailpits() -> None:
    assert clean(" A<b>,\tc;(D)\r\n\ufeffE ") == "a b c d e"


@pytest.mark.parametrize(("text", "size"), [
    ("1m", 1048576), ("1mb", 1048576), ("1 M", 1048576), ("1 MB", 1048576), ("1k", 1024), ("1kb", 1024),
    ("1 K", 1024), ("1 kB", 1024), ("1234567890", 1234567890), ("1.5M", 1572864), ("invalid", 0), ("1.2.3", 0),
    ("1.2.3M", 0), ("1g", 0),
])
def test_sizes_are_mailpits(text: str, size: int) -> None:
    assert size_to_bytes(text) == size


@pytest.mark.parametrize(("text", "iso"), [
    ("2024-01-02", "2024-01-02T00:00:00+00:00"),
    ("2024-01-02 15:04", "2024-01-02T15:04:00+00:00"),
    ("2024-01-02T15:04:05.5Z", "2024-01-02T15:04:05.500000+00:00"),
    ("2024-01-02T15:04:05+02:00", "2024-01-02T13:04:05+00:00"),
    ("2024/01/02", "2024-01-02T00:00:00+00:00"),
    ("01/02/2024", "2024-01-02T00:00:00+00:00"),  # US: month first
    ("2 january 2024", "2024-01-02T00:00:00+00:00"),
    ("Jan 2, 2024", "2024-01-02T00:00:00+00:00"),
    ("Tue, 02 Jan 2024 15:04:05 -0700", "2024-01-02T22:04:05+00:00"),
    ("1704153600", "2024-01-02T00:00:00+00:00"),
    ("1704153600000", "2024-01-02T00:00:00+00:00"),
])
def test_dates_dateparse_knows(text: str, iso: str) -> None:
    when = parse_date(text, timezone.utc)
    assert when is not None and when.astimezone(timezone.utc).isoformat() == iso


def test_bad_dates_are_none() -> None:
    assert parse_date("2024-02-30", timezone.utc) is None
    assert parse_date("yesterday", timezone.utc) is None


def test_a_lone_dash_is_text_and_prefixes_ignore_case() -> None:
    (term,) = parse("-")
    assert (term.kind, term.value, term.exclude) == ("text", "-", False)
    (term,) = parse("IS:Read")
    assert (term.kind, term.value) == ("read", True)
    assert json.dumps([t.kind for t in parse("Has:Attachments -HAS:INLINE is:TAGGED")]) == \
        '["attachments", "inline", "tagged"]'
