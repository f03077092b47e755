"""Parsing stored messages for display: summaries, details, part ids, headers (smtp_sink/message.py)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from email.message import EmailMessage

import pytest

from smtp_sink import message
from smtp_sink.errors import NotFound
from smtp_sink.ids import id_time, new_id

TRACE = (
    b"Return-Path: <sender@example.test>\r\n"
    b"Received: from client ([127.0.0.1])\r\n\tby sink (smtp-sink) with ESMTP id X;\r\n"
    b"\tMon, 1 Jan 2024 00:00:00 +0000\r\n"
    b"X-Original-To: bob@example.test\r\n"
    b"X-Original-To: hidden@example.test\r\n"
)


def rich_message() -> bytes:
    """text + (html + related image) + pdf attachment, with encoded subject and names."""
    msg = EmailMessage()
    msg["From"] = "Alïce <alice@example.test>"
    msg["To"] = "bob@example.test, Carol <carol@example.test>"
    msg["Cc"] = "dave@example.test"
    msg["Reply-To"] = "replies@example.test"
    msg["Subject"] = "Héllo wörld"
    msg["Message-ID"] = "<m1@example.test>"
    msg["Date"] = "Tue, 02 Jan 2024 10:20:30 +0100"
    msg.set_content("Hello   world,\n\nthis is the text part.\n")
    msg.add_alternative("<p>Hello <b>HTML</b></p><img src='cid:logo'>", subtype="html")
    msg.get_payload()[1].add_related(b"\x89PNG fake", "image", "png", cid="<logo>")
    msg.add_attachment(b"%PDF-1.4 report", maintype="application", subtype="pdf", filename="réport.pdf")
    return TRACE + msg.as_bytes()


def checksums(data: bytes) -> dict[str, str]:
    return {"MD5": hashlib.md5(data).hexdigest(), "SHA1": hashlib.sha1(data).hexdigest(),
            "SHA256": hashlib.sha256(data).hexdigest()}


def test_summary_fields_and_mailpit_json() -> None:
    message_id = new_id()
    raw = rich_message()
    summary = message.summarize(message_id, raw, len(raw))
    data = summary.to_json()
    assert list(data)[:15] == ["ID", "MessageID", "Read", "From", "To", "Cc", "Bcc", "ReplyTo", "Subject",
                               "Created", "Username", "Tags", "Size", "Attachments", "Snippet"]
    assert data["ID"] == message_id
    assert data["MessageID"] == "m1@example.test"
    assert data["From"] == {"Name": "Alïce", "Address": "alice@example.test"}
    assert data["To"] == [
        {"Name": "", "Address": "bob@example.test"}, {"Name": "Carol", "Address": "carol@example.test"}
    ]
    assert data["Cc"] == [{"Name": "", "Address": "dave@example.test"}]
    # the envelope recipient named in neither To nor Cc is a Bcc recipient
    assert data["Bcc"] == [{"Name": "", "Address": "hidden@example.test"}]
    assert data["ReplyTo"] == [{"Name": "", "Address": "replies@example.test"}]
    assert data["Subject"] == "Héllo wörld"
    assert data["Size"] == len(raw)
    assert data["Attachments"] == 1
    assert data["Snippet"] == "Hello HTML"  # the HTML body wins, as in Mailpit
    assert data["Read"] is False and data["Tags"] == []
    assert data["MailFrom"] == "sender@example.test"
    assert data["RcptTo"] == ["bob@example.test", "hidden@example.test"]
    assert data["Created"].endswith("Z") and data["Created"] == message.rfc3339(id_time(message_id))
    assert message.Summary.from_json(data).to_json() == data


def test_detail_parts_numbered_like_mailpit() -> None:
    raw = rich_message()
    detail = message.detail("01HZZZZZZZZZZZZZZZZZZZZZZZ", raw)
    assert detail["Text"].startswith("Hello   world")
    assert "<b>HTML</b>" in detail["HTML"]
    assert detail["ReturnPath"] == "sender@example.test"
    assert detail["Date"] == "2024-01-02T10:20:30+01:00"
    # multipart/mixed -> 1: multipart/alternative (1.1 text, 1.2 related (1.2.1 html, 1.2.2 png)), 2: pdf
    pdf, png = b"%PDF-1.4 report", b"\x89PNG fake"
    assert detail["Attachments"] == [
        {"PartID": "2", "FileName": "réport.pdf", "ContentType": "application/pdf", "ContentID": "", "Size": 15,
         "Checksums": checksums(pdf)}
    ]
    # a related image without a file name is listed by its Content-ID, which is also its name
    assert detail["Inline"] == [
        {"PartID": "1.2.2", "FileName": "logo", "ContentType": "image/png", "ContentID": "logo", "Size": 9,
         "Checksums": checksums(png)}
    ]
    assert message.part(raw, "2") == ("application/pdf", "réport.pdf", b"%PDF-1.4 report")
    assert message.part(raw, "1.2.2")[2] == b"\x89PNG fake"
    assert message.part(raw, "1.1")[0] == "text/plain"
    with pytest.raises(NotFound, match=r"^part 9 of message 01H not found$"):
        message.part(raw, "9", within="message 01H")


def test_html_only_message_gets_text_and_snippet_from_html() -> None:
    raw = TRACE + (
        b"From: a@example.test\r\nTo: bob@example.test\r\nSubject: h\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
        b"<html><head><style>p {color: red}</style></head><body><p>Caf&eacute; <i>time</i></p>"
        b"<script>alert(1)</script></body></html>\r\n"
    )
    summary = message.summarize(new_id(), raw)
    assert summary.snippet == "Café time"
    detail = message.detail(new_id(), raw)
    assert detail["HTML"].startswith("<html>")
    assert "alert" not in detail["Text"] and "Café" in detail["Text"]


def test_snippet_is_cut_and_collapsed() -> None:
    raw = b"Subject: long\r\n\r\n" + b"word  \r\n" * 200
    summary = message.summarize(new_id(), raw)
    assert summary.snippet == "word " * 40 + "..."  # 200 bytes, then "..." (Go's cut keeps the space)
    assert "  " not in summary.snippet


def test_message_without_trace_headers_or_from() -> None:
    raw = b"Subject: dropped by hand\r\n\r\nhi\r\n"
    data = message.summarize(new_id(), raw).to_json()
    assert data["From"] == {"Name": "", "Address": ""} and data["MailFrom"] == ""
    assert data["Bcc"] == [] and data["To"] == []
    assert message.detail(new_id(), raw)["Attachments"] == []
    assert message.part(raw, "0") == ("text/plain", "", b"hi\r\n")


def test_headers_unfolded_canonical_sorted_not_decoded() -> None:
    """As Go's ``mail.ReadMessage`` + ``json.Encode`` give them (Mailpit's ``/headers``)."""
    raw = rich_message()
    found = message.headers(raw)
    assert found["X-Original-To"] == ["bob@example.test", "hidden@example.test"]
    assert found["Received"][0].startswith("from client ([127.0.0.1]) by sink")
    assert "\n" not in found["Received"][0]
    assert found["Subject"][0].startswith("=?utf-8?")  # as stored, not decoded
    assert list(found) == sorted(found)
    assert {"Message-Id", "Mime-Version", "Content-Type", "Reply-To", "Cc"} <= set(found)
    assert "Message-ID" not in found and "MIME-Version" not in found
    # names that differ in case only are one header; folding: each line trimmed, joined by one space
    raw = b"X-A: one  \r\n \t two\r\nx-a: three\r\nDKIM-Signature: v=1;\r\n\tb=x\r\n\r\nbody\r\n"
    assert message.headers(raw) == {"Dkim-Signature": ["v=1; b=x"], "X-A": ["one two", "three"]}


@pytest.mark.parametrize(("name", "canonical"), [
    ("message-id", "Message-Id"), ("MIME-VERSION", "Mime-Version"), ("x-original-to", "X-Original-To"),
    ("cc", "Cc"), ("x--y", "X--Y"), ("x_y", "X_y"), ("1st-a", "1st-A"), ("bad name", "bad name"),
    ("grüße", "grüße"),
])
def test_header_names_take_gos_canonical_form(name: str, canonical: str) -> None:
    assert message.canonical_header(name) == canonical


def test_eight_bit_headers_and_bad_charset_do_not_crash() -> None:
    raw = ("From: Jörg <jörg@exämple.test>\r\nTo: bob@example.test\r\nSubject: grüße\r\n"
           "Content-Type: text/plain; charset=x-unknown\r\n\r\nkörper\r\n").encode()
    summary = message.summarize(new_id(), raw)
    assert summary.subject == "grüße"
    assert summary.sender is not None and summary.sender.address == "jörg@exämple.test"
    assert summary.snippet == "körper"


def test_eight_bit_envelope_is_indexed(tmp_path) -> None:
    from smtp_sink.store import Store

    raw = "Return-Path: <jörg@exämple.test>\r\nX-Original-To: bö@exämple.test\r\nSubject: x\r\n\r\nhi\r\n".encode()
    summary = message.summarize(new_id(), raw)
    assert summary.mail_from == "jörg@exämple.test" and summary.rcpt_to == ["bö@exämple.test"]
    (tmp_path / f"{summary.id}.eml").write_bytes(raw)
    assert Store(tmp_path).query(0, 5, "addressed:bö").messages[0].mail_from == "jörg@exämple.test"


def big_multipart(text_lines: int) -> bytes:
    """A long text part, a long HTML part, two attachments of 600 KB and a text attachment full
    of lines that look like boundaries ("--..."): bigger than what a summary reads of each part."""
    msg = EmailMessage()
    msg["From"] = "Big Sender <big@example.test>"
    msg["To"] = "bob@example.test"
    msg["Subject"] = "quarterly export"
    msg.set_content("".join(f"line {n} of the report\n" for n in range(text_lines)), cte="quoted-printable")
    msg.add_alternative("<p>report</p>" * 30000, subtype="html")
    for number in range(2):
        msg.add_attachment(bytes(range(256)) * 2400, maintype="application", subtype="octet-stream",
                           filename=f"export-{number}.bin")
    msg.add_attachment("-- \n--not-a-boundary\n" * 20000, subtype="plain", filename="dashes.txt")
    return TRACE + msg.as_bytes()


def test_summary_of_a_big_message_reads_a_bounded_prefix_of_each_part() -> None:
    raw = big_multipart(40000)
    assert len(raw) > 4 * message.SUMMARY_PART_BYTES
    whole, (bounded, notes) = message.parse(raw), message._parse_for_summary(raw)
    assert notes == []
    shape = [(pid, leaf.get_content_type(), leaf.get_filename()) for pid, leaf, _ in message.leaves(whole)]
    assert [(pid, leaf.get_content_type(), leaf.get_filename()) for pid, leaf, _ in message.leaves(bounded)] == shape
    # Each part is cut, but for one made of "--" lines: every such line is kept (it may be a boundary).
    sizes = {leaf.get_filename(): len(leaf.get_payload()) for _, leaf, _ in message.leaves(bounded)}
    assert sizes.pop("dashes.txt") == len("-- \n--not-a-boundary\n" * 20000)
    assert max(sizes.values()) <= message.SUMMARY_PART_BYTES
    full = message.detail("01HZZZZZZZZZZZZZZZZZZZZZZZ", raw)  # parses and decodes every byte
    summary = message.summarize("01HZZZZZZZZZZZZZZZZZZZZZZZ", raw)
    assert [a["FileName"] for a in full["Attachments"]] == ["export-0.bin", "export-1.bin", "dashes.txt"]
    assert summary.attachments == 3
    assert (summary.subject, summary.size) == ("quarterly export", len(raw))
    assert summary.sender == message.Address("Big Sender", "big@example.test")
    assert [a.address for a in summary.to] == ["bob@example.test"]
    assert summary.snippet == message.snippet(full["Text"], full["HTML"])
    assert summary.text == full["Text"][:message.TEXT_SEARCH_LENGTH]


def test_summary_of_a_big_plain_message_reads_a_bounded_prefix() -> None:
    head = TRACE + b"From: App <app@example.test>\r\nTo: a@example.test,\r\n B <b@example.test>\r\nSubject: log\r\n\r\n"
    raw = head + b"".join(b"log line %d\r\n" % n for n in range(200000))
    assert len(message._parse_for_summary(raw)[0].get_payload()) <= message.SUMMARY_PART_BYTES
    summary = message.summarize(new_id(), raw)
    assert [(a.name, a.address) for a in summary.to] == [("", "a@example.test"), ("B", "b@example.test")]
    assert summary.snippet.startswith("log line 0 log line 1 ") and summary.attachments == 0
    assert summary.text.startswith("log line 0\nlog line 1\n") and len(summary.text) == message.TEXT_SEARCH_LENGTH
    small = head + b"short body\r\n"
    assert message.summarize("01HZZZZZZZZZZZZZZZZZZZZZZZ", small) == summarize_by_full_parse(small)


def summarize_by_full_parse(raw: bytes) -> message.Summary:
    """What summarize gives when it parses the message whole (the bounded paths must agree)."""
    original = message._parse_for_summary
    message._parse_for_summary = lambda data, keep=0: message._parse(data)
    try:
        return message.summarize("01HZZZZZZZZZZZZZZZZZZZZZZZ", raw)
    finally:
        message._parse_for_summary = original


def test_odd_header_blocks_summarize_as_the_full_parser_reads_them() -> None:
    bodies = [
        b"Subject: lf only\nTo: a@example.test\n\nbody\n",  # bare LF: the parser decides
        b"From someone Mon Jan  1 00:00:00 2024\r\nSubject: mbox line\r\n\r\nbody\r\n",
        b"Subject: folded\r\n  over two lines\r\nTo: b@example.test\r\n\r\nbody\r\n",
        b"Subject: no separator\r\nthis line is no header\r\n\r\nbody\r\n",
        b"Subject: no body\r\n",
        b":empty name\r\nSubject: x\r\n\r\nbody\r\n",
        b"Content-Type: message/rfc822\r\n\r\nSubject: inner\r\n\r\ninner body\r\n",
        b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\nw6lsw6luZQ==\r\n",
        b"\r\nno headers at all\r\n",
        b"",
    ]
    for raw in bodies:
        assert message.summarize("01HZZZZZZZZZZZZZZZZZZZZZZZ", raw) == summarize_by_full_parse(raw), raw


def test_plain_address_lists_read_as_the_stdlib_reads_them() -> None:
    import email.utils

    values = [
        "a@example.test", "<a@example.test>", "Ann <ann@example.test>", "Ann  Lee   <ann@example.test>",
        "bob@example.test, Carol <carol@example.test>,<dave@example.test>", "a.b+tag@sub-domain.example.test",
        "x_y-z <q@example.test>", "UPPER@EXAMPLE.TEST", " spaced@example.test ",
        # not plain: the stdlib parser reads these
        '"Lee, Ann" <ann@example.test>', "J. Smith <js@example.test>", "a (comment) <c@example.test>",
        "undisclosed-recipients:;", "=?utf-8?q?J=C3=B6rg?= <j@example.test>", "Jörg <j@example.test>",
        "bad@@example.test", "no-at-sign", "Name only", "a@example.test,", "<a@example.test", "",
    ]
    for value in values:
        msg = message.parse(f"To: {value}\r\n\r\n".encode())
        stdlib = [message.Address(n, a) for n, a in email.utils.getaddresses([value]) if a or n]
        if "=?" in value or '"' in value or "(" in value or not value.isascii():
            continue  # these take the header registry, not getaddresses
        assert message.addresses(msg, "To") == stdlib, value


# -- Hostile messages (issue 13): display parsing is total, bounded and flags what it could not read --

HEAD = b"From: Ann <ann@example.test>\r\nTo: bob@example.test\r\nSubject: still listed\r\n"


def nested(depth: int) -> bytes:
    """Multiparts nested ``depth`` deep with a text part at the bottom."""
    opens = b"".join(b"--b%d\r\nContent-Type: multipart/mixed; boundary=b%d\r\n\r\n" % (n, n + 1)
                     for n in range(depth - 1))
    closes = b"".join(b"--b%d--\r\n" % n for n in range(depth - 1, -1, -1))
    return (HEAD + b"Content-Type: multipart/mixed; boundary=b0\r\n\r\n" + opens
            + b"--b%d\r\nContent-Type: text/plain\r\n\r\ndeep text\r\n" % (depth - 1) + closes)


def many_parts(count: int, body: bytes = b"x") -> bytes:
    parts = b"".join(b"--p\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment;"
                     b" filename=f%d.bin\r\n\r\n%s\r\n" % (n, body) for n in range(count))
    return HEAD + b"Content-Type: multipart/mixed; boundary=p\r\n\r\n" + parts + b"--p--\r\n"


# The samples of issue 13 §1: each one made every listing fail before.
POISON = {
    "charset-undefined": HEAD + b"Content-Type: text/plain; charset=undefined\r\n\r\nbody text\r\n",
    "charset-nul": HEAD + b'Content-Type: text/plain; charset="utf\x008"\r\n\r\nbody text\r\n',
    "rfc2231-charset-nul": HEAD + b"Content-Type: text/plain; charset*=x%00''abc\r\n\r\nbody text\r\n",
    "charset-idna-8bit": HEAD + b"Content-Type: text/plain; charset=idna\r\n\r\nbody text \xe9\xff\r\n",
    "nested-1000": nested(1000),
}


@pytest.mark.parametrize("raw", POISON.values(), ids=POISON.keys())
def test_a_poison_message_is_summarized_and_flagged(raw: bytes) -> None:
    message_id = new_id()
    summary = message.summarize(message_id, raw)
    assert (summary.subject, summary.size, summary.created) == ("still listed", len(raw), id_time(message_id))
    assert summary.sender == message.Address("Ann", "ann@example.test")
    assert [a.address for a in summary.to] == ["bob@example.test"]
    assert summary.parse_error  # flagged, and the flag survives the index's JSON round trip
    data = summary.to_json()
    assert data["ParseError"] == summary.parse_error
    assert message.Summary.from_json(json.loads(json.dumps(data))) == summary.__class__(**{**vars(summary), "text": ""})
    detail = message.detail(message_id, raw)
    assert detail["ParseError"] and detail["Subject"] == "still listed" and detail["Size"] == len(raw)
    json.dumps(detail, ensure_ascii=False).encode()  # no lone surrogate anywhere
    assert message.headers(raw)["Subject"] == ["still listed"]


@pytest.mark.parametrize(("raw", "text", "note"), [
    (POISON["charset-undefined"], "body text\n", "unknown charset 'undefined'"),
    (POISON["charset-nul"], "body text\n", "unknown charset 'utf\\x008'"),
    (POISON["rfc2231-charset-nul"], "body text\n", "unreadable charset parameter"),
    (POISON["charset-idna-8bit"], "body text \ufffd\ufffd\n", "unknown charset 'idna'"),
])
def test_a_body_in_an_unusable_charset_is_shown_as_utf8(raw: bytes, text: str, note: str) -> None:
    detail = message.detail(new_id(), raw)
    assert detail["Text"] == text
    assert detail["ParseError"].startswith(f"part 0: {note}")
    assert message.part(raw, "0") == ("text/plain", "", raw.split(b"\r\n\r\n", 1)[1])


def test_ordinary_mail_has_an_empty_parse_error() -> None:
    raw = rich_message()
    assert message.summarize(new_id(), raw).parse_error == ""
    assert message.detail(new_id(), raw)["ParseError"] == ""
    assert message.summarize(new_id(), big_multipart(2000)).parse_error == ""


def test_nesting_past_max_depth_shows_the_parts_above_it() -> None:
    shallow = nested(message.MAX_DEPTH)
    detail = message.detail(new_id(), shallow)
    assert (detail["Text"], detail["ParseError"]) == ("deep text", "")
    deep = nested(message.MAX_DEPTH + 1)
    detail = message.detail(new_id(), deep)
    assert detail["Text"] == "" and f"nested more than {message.MAX_DEPTH} deep" in detail["ParseError"]
    assert message.summarize(new_id(), deep).parse_error == detail["ParseError"]


def test_parts_past_max_parts_are_not_parsed() -> None:
    raw = many_parts(message.MAX_PARTS + 500)
    detail = message.detail(new_id(), raw)
    # the message itself and the multipart are entities too: MAX_PARTS - 1 parts fit
    assert len(detail["Attachments"]) == message.MAX_PARTS - 1
    assert detail["Attachments"][-1]["FileName"] == f"f{message.MAX_PARTS - 2}.bin"
    assert f"more than {message.MAX_PARTS} MIME parts" in detail["ParseError"]
    summary = message.summarize(new_id(), raw)
    assert summary.attachments == message.MAX_PARTS - 1 and summary.parse_error == detail["ParseError"]
    assert message.part(raw, "1") == ("application/octet-stream", "f0.bin", b"x")
    with pytest.raises(NotFound):
        message.part(raw, str(message.MAX_PARTS + 100))
    assert message.detail(new_id(), many_parts(message.MAX_PARTS - 1))["ParseError"] == ""


def test_a_header_block_past_max_header_bytes_is_cut() -> None:
    junk = b"X-Junk: " + b"j" * 998 + b"\r\n"
    raw = (b"From: ann@example.test\r\n" + junk * (message.MAX_HEADER_BYTES // len(junk) + 1)
           + b"Subject: after the junk\r\n\r\nbody\r\n")
    detail = message.detail(new_id(), raw)
    assert detail["From"] == {"Name": "", "Address": "ann@example.test"}
    assert detail["Subject"] == "" and f"longer than {message.MAX_HEADER_BYTES} bytes" in detail["ParseError"]
    assert detail["Text"] == "body\n"
    found = message.headers(raw)
    assert "Subject" not in found and sum(len(v) + 10 for v in found["X-Junk"]) <= message.MAX_HEADER_BYTES
    # a short header block ended by a line that is no header (no blank line): the rest is body, uncut
    body = b"no header here\r\n" + b"x\r\n" * message.MAX_HEADER_BYTES
    detail = message.detail(new_id(), b"Subject: s\r\n" + body)
    assert detail["ParseError"] == "" and detail["Text"] == body.decode().replace("\r\n", "\n")


def test_an_overlong_boundary_is_not_used() -> None:
    boundary = b"b" * (message._BOUNDARY_LIMIT + 1)
    raw = (HEAD + b'Content-Type: multipart/mixed; boundary="' + boundary + b'"\r\n\r\n--' + boundary
           + b"\r\nContent-Type: text/plain\r\n\r\ninner\r\n--" + boundary + b"--\r\n")
    detail = message.detail(new_id(), raw)
    assert "boundary is longer than" in detail["ParseError"]
    assert detail["Attachments"] == [] and "inner" not in detail["Text"]


# Each took seconds before (quadratic regexes and MIME parameter splitting); the bound is generous.
LINEAR = {
    "to-20000-a": b"From: x@example.test\r\nTo: " + b"a" * 20000 + b"\r\nSubject: s\r\n\r\nhi\r\n",
    "to-a-then-at": b"To: " + b"a" * 20000 + b"@\r\n\r\nhi\r\n",
    "script-128k": b"Content-Type: text/html\r\n\r\n" + b"<script>" * 16384 + b"\r\n",
    "style-tags-no-close": b"Content-Type: text/html\r\n\r\n" + b"<style <br " * 12000 + b"\r\n",
    "lt-without-gt": b"Content-Type: text/html\r\n\r\n" + b"<" * 60000 + b"\r\n",
    "br-without-gt": b"Content-Type: text/html\r\n\r\n" + b"<br" * 30000 + b"\r\n",
    "quoted-semicolons": b'Content-Type: text/plain; name="' + b";" * 60000 + b"\r\n\r\nhi\r\n",
    "address-commas": b'To: "x" ' + b"a," * 30000 + b"\r\n\r\nhi\r\n",
    "parts-280k": many_parts(280000, b"y" * 20),
}


@pytest.mark.parametrize("raw", LINEAR.values(), ids=LINEAR.keys())
def test_hostile_content_costs_linear_time(raw: bytes) -> None:
    started = time.perf_counter()
    summary = message.summarize(new_id(), raw)
    detail = message.detail(new_id(), raw)
    message.headers(raw)
    with contextlib.suppress(NotFound):
        message.part(raw, "1")
    assert time.perf_counter() - started < 1.5, "display parsing must stay linear"
    assert summary.size == len(raw) and detail["Size"] == len(raw)


def test_eight_bit_headers_are_listed_as_utf8_text() -> None:
    raw = "Subject: grüße\r\nTo: Jörg <jörg@exämple.test>\r\n".encode() + b"X-Bad: \xff\r\n\r\nhi\r\n"
    found = message.headers(raw)
    assert found["Subject"] == ["grüße"] and found["To"] == ["Jörg <jörg@exämple.test>"]
    assert found["X-Bad"] == ["\ufffd"]  # not UTF-8: replaced, never a lone surrogate
    json.dumps(found, ensure_ascii=False).encode()


@pytest.mark.parametrize(("content_type", "expected"), [
    (b"image/png", "image/png"),
    (b"IMAGE/PNG; name=a.png", "image/png"),
    (b"image/\r\n png", "application/octet-stream"),  # folded inside the type
    (b"image/p\x01ng", "application/octet-stream"),  # a control character
    (b"image/png\x00", "application/octet-stream"),
    (b"text/html\x7f", "application/octet-stream"),
    (b"a/" + b"b" * 300, "application/octet-stream"),
    (b"image/png;\r\n name=\"a.png\"", "image/png"),  # folded between parameters: fine
])
def test_part_content_type_is_a_clean_token(content_type: bytes, expected: str) -> None:
    raw = (HEAD + b"Content-Type: multipart/mixed; boundary=q\r\n\r\n--q\r\nContent-Type: " + content_type
           + b"\r\nContent-Disposition: attachment; filename=a.bin\r\n\r\nDATA\r\n--q--\r\n")
    ctype, filename, data = message.part(raw, "1")
    assert (ctype, filename, data) == (expected, "a.bin", b"DATA")
    assert message.detail(new_id(), raw)["Attachments"][0]["ContentType"] == expected


@pytest.mark.parametrize(("disposition", "expected"), [
    (b"attachment; filename=\"r\xc3\xa9port.pdf\"", "réport.pdf"),  # raw UTF-8 (RFC 6532)
    (b"attachment; filename*=utf-8''r%C3%A9port.pdf", "réport.pdf"),
    (b"attachment; filename*=x%00''abc.pdf", "abc.pdf"),  # unusable RFC 2231 charset: read as UTF-8
    (b"attachment; filename*=undefined''abc.pdf", "abc.pdf"),
    (b"attachment; filename=\"a\x01b\x1bc.pdf\"", "abc.pdf"),  # control characters dropped
    (b"attachment; filename*0*=utf-8''%C3%A9; filename*" + b"9" * 5000 + b"=x", ""),  # int() refuses it
    (b"attachment; filename=\"=?utf-8?q?=C3=A9t=C3=A9.txt?=\"", "été.txt"),
])
def test_part_file_names_are_text(disposition: bytes, expected: str) -> None:
    raw = (HEAD + b"Content-Type: multipart/mixed; boundary=q\r\n\r\n--q\r\nContent-Type: application/pdf\r\n"
           b"Content-Disposition: " + disposition + b"\r\n\r\nPDF\r\n--q--\r\n")
    assert message.part(raw, "1") == ("application/pdf", expected, b"PDF")
    json.dumps(message.detail(new_id(), raw), ensure_ascii=False).encode()
