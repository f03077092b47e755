"""The message detail field by field as Mailpit's ``Message`` (its source is the specification):
parts filed as enmime files them, checksums, ``ListUnsubscribe``, ``ReturnPath``, ``Date`` as Go
writes it, ``Username``, ``From`` never null. Mailpit's own test messages are in tests/data/mailpit."""

from __future__ import annotations

import base64
import hashlib
import json
import time
from datetime import datetime, timedelta, timezone

import pytest
from support import ROOT

from smtp_sink import message
from smtp_sink.ids import new_id
from smtp_sink.trace import Envelope, trace_headers
from smtp_sink.unsubscribe import list_unsubscribe

DATA = ROOT / "tests" / "data" / "mailpit"
DETAIL_KEYS = ["ID", "MessageID", "From", "To", "Cc", "Bcc", "ReplyTo", "ReturnPath", "Subject", "ListUnsubscribe",
               "Date", "Tags", "Username", "Text", "HTML", "Size", "Inline", "Attachments"]


def eml(name: str) -> bytes:
    return (DATA / f"{name}.eml").read_bytes()


def test_detail_keys_are_mailpits_in_its_order_then_ours() -> None:
    detail = message.detail(new_id(), eml("plain-text"))
    # SessionID: issue 17 (the recorded SMTP session)
    assert list(detail) == [*DETAIL_KEYS, "Read", "MailFrom", "RcptTo", "SMTP", "ParseError", "SessionID"]
    assert detail["ListUnsubscribe"] == {"Header": "", "Links": [], "Errors": "", "HeaderPost": ""}
    assert detail["Tags"] == [] and detail["Username"] == "" and detail["Inline"] == []
    assert message.detail(new_id(), eml("plain-text"), tags=["b", "a"])["Tags"] == ["b", "a"]


def test_mailpits_inline_attachment_case() -> None:
    detail = message.detail(new_id(), eml("inline-attachment"))
    assert [part["ContentID"] for part in detail["Inline"]] == ["test1@example.com"]
    assert detail["Attachments"] == []


def test_mailpits_regular_attachment_case_with_checksums() -> None:
    detail = message.detail(new_id(), eml("regular-attachment"))
    assert detail["Inline"] == []
    (attachment,) = detail["Attachments"]
    assert attachment["ContentID"] == "" and attachment["FileName"] == "document.pdf"
    assert attachment["Checksums"] == {
        "MD5": "b04930eb1ba0c62066adfa87e5d262c4",
        "SHA1": "15605d6a2fca44e966209d1701f16ecf816df880",
        "SHA256": "92c4ccff376003381bd9054d3da7b32a3c5661905b55e3b0728c17aba6d223ec",
    }


def test_mailpits_mixed_attachment_case() -> None:
    detail = message.detail(new_id(), eml("mixed-attachment"))
    assert [part["ContentID"] for part in detail["Inline"]] == ["inline@example.com"]
    assert [part["ContentID"] for part in detail["Attachments"]] == [""]


def test_mailpits_mime_attachment_case() -> None:
    raw = eml("mime-attachment")
    detail = message.detail(new_id(), raw)
    assert detail["From"] == {"Name": "Sender Smith", "Address": "sender2@example.com"}
    assert detail["To"] == [{"Name": "Recipient Ross", "Address": "recipient2@example.com"}]
    assert detail["Subject"] == "inline + attachment"
    assert [a["FileName"] for a in detail["Attachments"]] == ["Sample PDF.pdf"]
    assert [a["FileName"] for a in detail["Inline"]] == ["inline-image.jpg"]
    for listed in (*detail["Attachments"], *detail["Inline"]):
        content = message.part(raw, listed["PartID"])[2]
        assert listed["Size"] == len(content) and listed["Checksums"]["SHA256"] == hashlib.sha256(content).hexdigest()


def multipart(subtype: str, *parts: bytes, head: bytes = b"From: a@example.test\r\n") -> bytes:
    body = b"".join(b"--b\r\n" + part + b"\r\n" for part in parts)
    return head + b"Content-Type: multipart/" + subtype.encode() + b"; boundary=b\r\n\r\n" + body + b"--b--\r\n"


def test_text_of_a_mixed_message_joins_every_text_part_alternative_takes_the_first() -> None:
    one = b"Content-Type: text/plain\r\n\r\none"
    two = b"Content-Type: text/plain; name=two.txt\r\nContent-Disposition: inline\r\n\r\ntwo"
    attached = b"Content-Type: text/plain\r\nContent-Disposition: attachment; filename=a.txt\r\n\r\nthree"
    mixed = message.detail(new_id(), multipart("mixed", one, two, attached))
    assert mixed["Text"] == "one\n--\ntwo"  # enmime: every text/plain that is no attachment, depth first
    # the named inline text part is also listed; the attachment is not text
    assert [(p["PartID"], p["FileName"]) for p in mixed["Inline"]] == [("2", "two.txt")]
    assert [(p["PartID"], p["FileName"]) for p in mixed["Attachments"]] == [("3", "a.txt")]
    assert message.detail(new_id(), multipart("alternative", one, two))["Text"] == "one"


def test_parts_are_listed_breadth_first_and_only_with_a_name_or_content_id() -> None:
    inner = multipart("related", b"Content-Type: text/html\r\n\r\n<p>x</p>",
                      b"Content-Type: image/png\r\nContent-ID: <deep>\r\n\r\nPNG", head=b"")
    raw = multipart(
        "mixed",
        inner.rstrip(b"\r\n").replace(b"--b", b"--c").replace(b"boundary=b", b"boundary=c"),
        b"Content-Type: image/gif\r\nContent-ID: <top>\r\n\r\nGIF",
        b"Content-Type: application/octet-stream\r\n\r\nnameless",  # an attachment by its type
        b"Content-Type: image/jpeg\r\n\r\nnameless too",  # no name, no Content-ID: not listed
    )
    detail = message.detail(new_id(), raw)
    assert [(p["PartID"], p["FileName"]) for p in detail["Inline"]] == [("2", "top"), ("1.2", "deep")]
    assert detail["Attachments"] == []  # the octet-stream part has neither a name nor a Content-ID
    assert message.summarize(new_id(), raw).attachments == 1  # but a summary counts it, as Mailpit's does
    assert detail["HTML"] == "<p>x</p>"


@pytest.mark.parametrize(("header", "content_id"), [
    (b"<a%40b+c>", "a@b c"),  # RFC 2392: URL-escaped, as enmime decodes it
    (b"<bad%zz>", "bad%zz"),  # a malformed escape: kept
    (b"plain", "plain"),
])
def test_content_ids_are_read_as_enmime_reads_them(header: bytes, content_id: str) -> None:
    raw = multipart("related", b"Content-Type: text/html\r\n\r\n<img src=cid:x>",
                    b"Content-Type: image/png\r\nContent-ID: " + header + b"\r\n\r\nPNG")
    (inline,) = message.detail(new_id(), raw)["Inline"]
    assert (inline["ContentID"], inline["FileName"]) == (content_id, content_id)
    assert message.part(raw, "2")[1] == content_id


def test_single_part_messages() -> None:
    head = b"From: a@example.test\r\n"
    pdf = message.detail(new_id(), head + b"Content-Type: application/pdf; name=r.pdf\r\n\r\nPDF")
    assert ([p["PartID"] for p in pdf["Attachments"]], pdf["Text"]) == (["0"], "")
    html = message.detail(new_id(), head + b"Content-Type: text/html\r\n\r\n<p>Hi <b>there</b></p>")
    assert (html["HTML"], html["Text"], html["Attachments"]) == ("<p>Hi <b>there</b></p>", "Hi there", [])
    attached = message.detail(new_id(), head + b"Content-Type: text/plain\r\nContent-Disposition: attachment; "
                                              b"filename=notes.txt\r\n\r\nnotes")
    assert (attached["Text"], [p["FileName"] for p in attached["Attachments"]]) == ("", ["notes.txt"])


def test_a_text_attachment_is_measured_in_utf8_as_mailpit_serves_it() -> None:
    raw = multipart("mixed", b"Content-Type: text/plain\r\n\r\nhi",
                    b"Content-Type: text/csv; charset=iso-8859-1\r\nContent-Disposition: attachment; filename=a.csv"
                    b"\r\n\r\n\xe9t\xe9")
    (attachment,) = message.detail(new_id(), raw)["Attachments"]
    assert message.part(raw, "2")[2] == "été".encode()
    assert attachment["Size"] == len("été".encode())
    assert attachment["Checksums"]["MD5"] == hashlib.md5("été".encode()).hexdigest()


def stored(body: bytes, *, mail_from: str = "bounce@example.test", auth_user: str | None = None) -> bytes:
    envelope = Envelope(helo="client", mail_from=mail_from, rcpt_to=["bob@example.test"], peer="127.0.0.1",
                        auth_user=auth_user)
    return trace_headers(envelope, new_id(), "sink.test") + body


def test_return_path_username_from_and_message_id() -> None:
    body = b"From: Ann <ann@example.test>\r\nSubject: s\r\n\r\nhi\r\n"
    detail = message.detail(new_id(), stored(body, auth_user="ann-login"))
    assert (detail["ReturnPath"], detail["Username"]) == ("bounce@example.test", "ann-login")
    # a null sender: Mailpit's Return-Path is "<>", so it gives the From address
    assert message.detail(new_id(), stored(body, mail_from=""))["ReturnPath"] == "ann@example.test"
    # a file dropped in by hand: its own Return-Path header, else the From address
    assert message.detail(new_id(), b"Return-Path: <rp@example.test>\r\n" + body)["ReturnPath"] == "rp@example.test"
    assert message.detail(new_id(), body)["ReturnPath"] == "ann@example.test"
    bare = message.detail(new_id(), b"Subject: no sender\r\n\r\nhi\r\n")
    assert bare["From"] == {"Name": "", "Address": ""} and bare["ReturnPath"] == "" and bare["MessageID"] == ""
    assert json.dumps(bare)  # never null where Mailpit's clients expect an object


@pytest.mark.parametrize(("date", "expected"), [
    (b"Tue, 2 Jan 2024 03:04:05 +1300", "2024-01-02T03:04:05+13:00"),
    (b"Tue, 2 Jan 2024 03:04:05 +0000", "2024-01-02T03:04:05Z"),
    (b"Tue, 2 Jan 2024 03:04:05 -0000", "2024-01-02T03:04:05Z"),
    (b"Tue, 2 Jan 2024 03:04:05 -0530", "2024-01-02T03:04:05-05:30"),
])
def test_date_keeps_the_headers_offset_as_go_writes_it(date: bytes, expected: str) -> None:
    assert message.detail(new_id(), b"Date: " + date + b"\r\n\r\nhi")["Date"] == expected


def test_date_falls_back_to_the_arrival_time() -> None:
    message_id = new_id()
    got = message.detail(message_id, b"Date: not a date\r\n\r\nhi")["Date"]
    assert got.endswith("Z")
    assert abs(datetime.fromisoformat(got.replace("Z", "+00:00")).timestamp() - time.time()) < 5


@pytest.mark.parametrize(("when", "text"), [
    (datetime(2024, 5, 1, 10, 11, 12, 345000, timezone(timedelta(hours=12))), "2024-05-01T10:11:12.345+12:00"),
    (datetime(2024, 5, 1, 10, 11, 12, 300000, timezone.utc), "2024-05-01T10:11:12.3Z"),
    (datetime(2024, 5, 1, 10, 11, 12, tzinfo=timezone.utc), "2024-05-01T10:11:12Z"),
    (datetime(2024, 5, 1, 10, 11, 12, 1, timezone(-timedelta(hours=3, minutes=30))),
     "2024-05-01T10:11:12.000001-03:30"),
])
def test_go_time(when: datetime, text: str) -> None:
    assert message.go_time(when) == text


def test_list_unsubscribe_in_the_detail() -> None:
    raw = (b"List-Unsubscribe: =?utf-8?q?<mailto:u@example.test>?=, <https://example.test/u>\r\n"
           b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n\r\nhi")
    assert message.detail(new_id(), raw)["ListUnsubscribe"] == {
        "Header": "<mailto:u@example.test>, <https://example.test/u>",
        "Links": ["mailto:u@example.test", "https://example.test/u"],
        "Errors": "", "HeaderPost": "List-Unsubscribe=One-Click"}


# Mailpit's TestListUnsubscribeParser (internal/tools/tools_test.go): True = no error.
UNSUBSCRIBE = {
    "<mailto:unsubscribe@example.com>": True,
    "<https://example.com>": True,
    "<HTTPS://EXAMPLE.COM>": True,
    "<mailto:unsubscribe@example.com>, <http://example.com>": True,
    "<mailto:unsubscribe@example.com>, <https://example.com>": True,
    "<https://example.com>, <mailto:unsubscribe@example.com>": True,
    "<https://example.com> , \t\t<mailto:unsubscribe@example.com>": True,
    "<https://example.com> ,<mailto:unsubscribe@example.com>": True,
    "<mailto:unsubscribe@example.com>,<https://example.com>": True,
    "<https://example.com> ,\n\t\t <mailto:unsubscribe@example.com>": True,
    "<mailto:unsubscribe@example.com?subject=unsubscribe%20me>": True,
    "(Use this command to get off the list) <mailto:unsubscribe@example.com?subject=unsubscribe%20me>": True,
    "<mailto:unsubscribe@example.com> (Use this command to get off the list)": True,
    "(Use this command to get off the list) <mailto:unsubscribe@example.com>, "
    "(Click this link to unsubscribe) <http://example.com>": True,
    "mailto:unsubscribe@example.com": False,
    "<mailto::unsubscribe@example.com>": False,
    "https://example.com/": False,
    "mailto:unsubscribe@example.com, <https://example.com/>": False,
    "<MAILTO:unsubscribe@example.com>": False,
    "<mailto:unsubscribe@example.com>, <mailto:test2@example.com>": False,
    "<http://exampl\\e2.com>, <http://example2.com>": False,
    "<http://example.com>, <mailto:unsubscribe@example.com>, <http://example2.com>": False,
    "<mailto:unsubscribe@example.com>, <example.com>": False,
    "<mailto: unsubscribe@example.com>, <unsubscribe@lol.com>": False,
    "<mailto:unsubscribe@example.com?subject=unsubscribe me>": False,
    "<http:///example.com>": False,
    "<https://example.com/%zz>": False,
    "<https://example.com:port/>": False,
}


@pytest.mark.parametrize(("header", "valid"), UNSUBSCRIBE.items())
def test_list_unsubscribe_checks_are_mailpits(header: str, valid: bool) -> None:
    found = list_unsubscribe(header, "")
    assert (found["Errors"] == "") is valid, found["Errors"]
    assert found["Header"] == header and isinstance(found["Links"], list)


@pytest.mark.parametrize("header", ["<" * 200_000, "<a>" * 100_000, "(" * 200_000, "<x" + ">" * 200_000,
                                    "<a" + ",<a" * 100_000])
def test_list_unsubscribe_costs_linear_time(header: str) -> None:
    started = time.perf_counter()
    list_unsubscribe(header, "")
    assert time.perf_counter() - started < 0.5


def test_the_detail_of_an_unreadable_part_still_lists_the_rest() -> None:
    raw = multipart("mixed", b"Content-Type: text/plain\r\n\r\nhello",
                    b"Content-Type: image/png; name=a.png\r\nContent-Transfer-Encoding: base64\r\n\r\n"
                    + base64.b64encode(b"PNG")[:-1])
    detail = message.detail(new_id(), raw)
    assert detail["Text"] == "hello" and [p["FileName"] for p in detail["Inline"]] == ["a.png"]


SNIPPETS = [  # (text body, HTML body, Mailpit's Snippet), worked out from tools.CreateSnippet and html2text.Strip
    ("text", "<p>a</p><p>b</p> <b>c</b>d<br>e<img src=x>f &amp; 1 < 2 <!-- note --><title>t</title>",
     "a b cd e f & 1 < 2"),
    ("the text is not used", '<html><head><style>p{}</style></head><body><img src="cid:x"></body></html>', ""),
    ("", "<div>one</div> <div>two</div><div>three</div><script>x()</script><noscript>n</noscript>",
     "one two three"),
    (" a\ufeff  b\n\u00a0c ", "", "a b \u00a0c"),  # only ASCII white space collapses in the text
    ("", "<p>tab\there\u00a0nbsp\u200bzero</p>", "tab here nbsp zero"),  # non-printable: a space
    ("é" * 150, "", "é" * 99 + "..."),  # 200 bytes end on a whole é: Go's truncate drops it too
    ("x" + "é" * 150, "", "x" + "é" * 99 + "..."),  # byte 200 is inside an é: cut before it
    ("word " * 100, "", "word " * 40 + "..."),  # the cut is not trimmed
    ("", "<p>" + "y" * 300 + "</p>", "y" * 200 + "..."),
]


@pytest.mark.parametrize(("text", "html", "expected"), SNIPPETS)
def test_snippet_is_built_as_mailpit_builds_it(text: str, html: str, expected: str) -> None:
    assert message.snippet(text, html) == expected


def test_a_summary_snippet_prefers_the_html_body() -> None:
    raw = (b"Subject: both\r\nContent-Type: multipart/alternative; boundary=b\r\n\r\n--b\r\n"
           b"Content-Type: text/plain\r\n\r\nthe text\r\n--b\r\nContent-Type: text/html\r\n\r\n"
           b"<p>the</p><p>html</p>\r\n--b--\r\n")
    assert message.summarize(new_id(), raw).snippet == "the html"


@pytest.mark.parametrize("html", ["<p>" * 300_000, "<title>" * 300_000, "&" * 1_000_000, "<a " * 300_000,
                                  "\x01" * 1_000_000 + "end", "</p><" * 300_000])
def test_the_snippet_of_hostile_html_costs_linear_time(html: str) -> None:
    started = time.perf_counter()
    message.snippet("", html)
    assert time.perf_counter() - started < 1.5
