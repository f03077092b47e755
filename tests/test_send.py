"""``POST /api/v1/send`` against the real server: Mailpit's JSON built into a real message, stored as
SMTP mail is, with trace headers saying it came from the HTTP API; Mailpit's validation texts."""

from __future__ import annotations

import base64
import email
import email.policy
import json
import smtplib
from typing import Any

import pytest
from support import wait_until
from support.http import get_json, request, send_json

from smtp_sink import trace
from smtp_sink.compose import canonical, sniff
from smtp_sink.server import SinkServer

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16
# Mailpit's own example (server/apiv1/swaggerParams.go, checked by its TestAPIv1Send)
EXAMPLE: dict[str, Any] = {
    "From": {"Email": "john@example.com", "Name": "John Doe"},
    "To": [{"Email": "jane@example.com", "Name": "Jane Doe"}],
    "Cc": [{"Email": "manager1@example.com", "Name": "Manager 1"},
           {"Email": "manager2@example.com", "Name": "Manager 2"}],
    "Bcc": ["jack@example.com"],
    "ReplyTo": [{"Email": "secretary@example.com", "Name": "Secretary"}],
    "Subject": "Mailpit message via the HTTP API",
    "Text": "Mailpit is awesome!",
    "HTML": '<div style="text-align:center"><p>Mailpit is <b>awesome</b>!</p>'
            '<p><img src="cid:mailpit-logo" /></p></div>',
    "Attachments": [
        {"Content": base64.b64encode(b"This is a plain text attachment").decode(), "Filename": "Attached File.txt"},
        {"Content": "data:image/png;base64," + base64.b64encode(PNG).decode(), "Filename": "logo.png",
         "ContentType": "overridden/type", "ContentID": "mailpit-logo"},
    ],
    "Tags": ["Tag 1", "Tag 2"],
    "Headers": {"X-IP": "1.2.3.4"},
}
MINIMAL = {"From": {"Email": "app@example.test"}, "To": [{"Email": "bob@example.test"}], "Subject": "hi", "Text": "x"}


def post(server: SinkServer, body: Any, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    status, _, raw = send_json(server, "/api/v1/send", "POST", body, headers)
    return status, json.loads(raw)


def stored(server: SinkServer) -> list[bytes]:
    return [server.store.read(message_id) for message_id in server.store.ids()]


def test_send_builds_mailpits_example_and_answers_its_id(web_server: SinkServer) -> None:
    status, answer = post(web_server, EXAMPLE)
    assert status == 200 and set(answer) == {"ID"}
    message_id = answer["ID"]
    detail = get_json(web_server, f"/api/v1/message/{message_id}")
    assert detail["From"] == {"Name": "John Doe", "Address": "john@example.com"}
    assert detail["To"] == [{"Name": "Jane Doe", "Address": "jane@example.com"}]
    assert [a["Address"] for a in detail["Cc"]] == ["manager1@example.com", "manager2@example.com"]
    assert detail["Bcc"] == [{"Name": "", "Address": "jack@example.com"}]  # envelope only, as in Mailpit
    assert detail["ReplyTo"] == [{"Name": "Secretary", "Address": "secretary@example.com"}]
    assert detail["Subject"] == "Mailpit message via the HTTP API"
    assert detail["Text"].strip() == "Mailpit is awesome!" and "<b>awesome</b>" in detail["HTML"]
    (attachment,) = detail["Attachments"]
    assert attachment["FileName"] == "Attached File.txt" and attachment["ContentType"] == "text/plain"
    (inline,) = detail["Inline"]
    assert (inline["FileName"], inline["ContentType"], inline["ContentID"]) == ("logo.png", "overridden/type",
                                                                               "mailpit-logo")
    status, _, part = request(web_server, f"/api/v1/message/{message_id}/part/{attachment['PartID']}")
    assert status == 200 and part == b"This is a plain text attachment"
    assert request(web_server, f"/api/v1/message/{message_id}/part/{inline['PartID']}")[2] == PNG
    raw = web_server.store.read(message_id)
    content = email.message_from_bytes(raw[trace.read(raw).length:], policy=email.policy.default)
    assert content["X-Tags"] == "Tag 1, Tag 2" and content["X-Ip"] == "1.2.3.4" and "Bcc" not in content
    assert content["Date"] and content["Message-ID"].endswith("@smtp-sink.localhost>")
    # Mailpit's layout: mixed[related[alternative[text, html], inline], attachment]
    assert content.get_content_type() == "multipart/mixed"
    related, _ = content.iter_parts()
    assert related.get_content_type() == "multipart/related"
    assert [p.get_content_type() for p in next(related.iter_parts()).iter_parts()] == ["text/plain", "text/html"]
    assert raw.isascii()  # 7-bit: any upstream takes it when it is relayed


def test_sent_mail_carries_trace_headers_saying_http_api(web_server: SinkServer) -> None:
    status, answer = post(web_server, {**MINIMAL, "Cc": [{"Email": "carl@example.test"}], "Bcc": ["dan@example.test"]})
    assert status == 200
    raw = web_server.store.read(answer["ID"])
    assert raw.startswith(b"Return-Path: <app@example.test>\r\nX-Original-To: bob@example.test\r\n"
                          b"X-Original-To: carl@example.test\r\nX-Original-To: dan@example.test\r\n"
                          b"Received: from api ([127.0.0.1])\r\n\tby smtp-sink.localhost (smtp-sink ")
    assert f"with HTTP id {answer['ID']};".encode() in raw
    recorded = trace.read(raw)
    assert recorded.own and recorded.auth_user is None
    assert (recorded.mail_from, recorded.rcpt_to) == ("app@example.test", ("bob@example.test", "carl@example.test",
                                                                          "dan@example.test"))
    assert raw[recorded.length:].startswith(b"Date: ")  # what the builder made follows the block


def test_the_basic_auth_user_is_recorded(start_server: Any) -> None:
    server = start_server(http={"auth": "ann:secret"})
    token = base64.b64encode(b"ann:secret").decode()
    status, answer = post(server, MINIMAL, {"Authorization": f"Basic {token}"})
    assert status == 200
    assert trace.read(server.store.read(answer["ID"])).auth_user == "ann"
    assert post(server, MINIMAL)[0] == 401 and len(server.store.ids()) == 1


def test_sent_mail_is_listed_like_smtp_mail(web_server: SinkServer) -> None:
    post(web_server, {**MINIMAL, "Subject": "via api"})
    with smtplib.SMTP("127.0.0.1", web_server.smtp_port) as smtp:
        smtp.sendmail("app@example.test", ["bob@example.test"], b"Subject: via smtp\r\n\r\nhello\r\n")
    wait_until(lambda: get_json(web_server, "/api/v1/messages")["total"] == 2, what="both listed")
    page = get_json(web_server, "/api/v1/search?query=subject:%22via%20api%22")
    assert [m["Subject"] for m in page["messages"]] == ["via api"]


@pytest.mark.parametrize(("body", "error"), [
    (MINIMAL | {"To": [{"Email": "not an address"}]}, "invalid To address: not an address"),
    (MINIMAL | {"Cc": [{"Email": "a@"}]}, "invalid Cc address: a@"),
    (MINIMAL | {"Bcc": ["bcc"]}, "invalid Bcc address: bcc"),
    (MINIMAL | {"ReplyTo": [{"Email": "@x"}]}, "invalid Reply-To address: @x"),
    (MINIMAL | {"From": {"Name": "nobody"}}, "error building message: from not set"),
    ({"From": {"Email": "app@example.test"}}, "error building message: no recipients (to, cc, bcc) set"),
    (MINIMAL | {"From": {"Email": "app"}}, "invalid From address: app"),
    (MINIMAL | {"Headers": {"subject": "x"}}, 'cannot overwrite header: "subject"'),
    (MINIMAL | {"Headers": {"Mime-Version": "2.0"}}, 'cannot overwrite header: "Mime-Version"'),
    (MINIMAL | {"Tags": ["a"], "Headers": {"X-Tags": "b"}}, 'cannot overwrite header: "X-Tags"'),
    (MINIMAL | {"Attachments": [{"Content": "abc", "Filename": "f.txt"}]},
     'error decoding base64 attachment "f.txt": Incorrect padding'),
    (MINIMAL | {"To": "bob@example.test"}, "To: expected a list of {Email, Name} objects, got \"bob@example.test\""),
    (MINIMAL | {"Subject": 5}, "Subject: expected a string, got 5"),
    (MINIMAL | {"Headers": {"X-A": 1}}, "Headers.X-A: expected a string, got 1"),
    (MINIMAL | {"Bogus": 1}, "body: unknown field 'Bogus'"),
    ([MINIMAL], "expected a JSON object"),
])
def test_a_bad_request_is_400_json_naming_the_problem(web_server: SinkServer, body: Any, error: str) -> None:
    status, answer = post(web_server, body)
    assert status == 400 and answer["Error"].startswith(error), answer
    assert stored(web_server) == []


def test_bad_json_is_400_json(web_server: SinkServer) -> None:
    for raw in (b"", b"{", b'{"From": 1} {', b"\xff"):
        status, _, answer = request(web_server, "/api/v1/send", "POST", raw, {"Content-Type": "application/json"})
        assert status == 400 and json.loads(answer)["Error"].startswith("invalid JSON"), raw
    assert stored(web_server) == []


def test_keys_match_without_regard_to_case_and_null_is_absent(web_server: SinkServer) -> None:
    body = {"from": {"email": "app@example.test", "NAME": "App"}, "TO": [{"eMail": "bob@example.test"}],
            "subject": "lower", "cc": None, "attachments": None, "text": None}
    status, answer = post(web_server, body)
    assert status == 200
    detail = get_json(web_server, f"/api/v1/message/{answer['ID']}")
    assert detail["From"] == {"Name": "App", "Address": "app@example.test"} and detail["Subject"] == "lower"


def test_no_header_can_be_injected(web_server: SinkServer) -> None:
    for headers in ({"X-A": "1\r\nBcc: evil@example.test"}, {"X-A": "1\nX-B: 2"}, {"Bad Name": "x"}, {"X:y": "x"}):
        status, answer = post(web_server, MINIMAL | {"Headers": headers})
        assert status == 400 and "Headers" in answer["Error"], headers
    evil = "Ann\r\nBcc: evil@example.test"
    status, answer = post(web_server, MINIMAL | {"From": {"Email": "ann@example.test", "Name": evil},
                                                  "Subject": "a\r\nBcc: evil@example.test",
                                                  "Attachments": [{"Content": "eA==", "Filename": "a\r\nB: c"}]})
    assert status == 200
    raw = web_server.store.read(answer["ID"])
    content = email.message_from_bytes(raw[trace.read(raw).length:], policy=email.policy.default)
    assert "Bcc" not in content and "B" not in next(content.iter_attachments())
    assert content["From"].addresses[0].display_name == "Ann Bcc: evil@example.test"


def test_custom_headers_get_gos_spelling(web_server: SinkServer) -> None:
    status, answer = post(web_server, MINIMAL | {"Headers": {"x-ip": "1.2.3.4", "X-CUSTOM-thing": "y"}})
    assert status == 200
    raw = web_server.store.read(answer["ID"])
    assert b"\r\nX-Ip: 1.2.3.4\r\n" in raw and b"\r\nX-Custom-Thing: y\r\n" in raw
    assert canonical("x-ip") == "X-Ip" and canonical("x_y(z)") == "x_y(z)"  # not a token: kept, as Go keeps it


def test_a_given_message_id_is_kept(web_server: SinkServer) -> None:
    status, answer = post(web_server, MINIMAL | {"Headers": {"Message-ID": "<mine@example.test>"}})
    assert status == 200
    assert get_json(web_server, f"/api/v1/message/{answer['ID']}")["MessageID"] == "mine@example.test"
    assert web_server.store.read(answer["ID"]).count(b"Message-Id:") + \
        web_server.store.read(answer["ID"]).count(b"Message-ID:") == 1


def test_attachment_types_are_sniffed_as_go_does() -> None:
    assert sniff(PNG) == "image/png"
    assert sniff(b"%PDF-1.7 ...") == "application/pdf"
    assert sniff(b"  <html><body>x") == "text/html; charset=utf-8"
    assert sniff(b"plain words\n") == "text/plain; charset=utf-8"
    assert sniff(b"\x00\x01binary") == "application/octet-stream"


def test_non_ascii_names_and_addresses(web_server: SinkServer) -> None:
    body = {"From": {"Email": "zoë@exämple.test", "Name": "Zoë Ünïcode"}, "To": [{"Email": "bob@example.test"}],
            "Subject": "Grüße", "Text": "Größe"}
    status, answer = post(web_server, body)
    assert status == 200
    detail = get_json(web_server, f"/api/v1/message/{answer['ID']}")
    assert detail["From"] == {"Name": "Zoë Ünïcode", "Address": "zoë@exämple.test"}
    assert detail["Subject"] == "Grüße" and detail["Text"].strip() == "Größe"
    assert trace.read(web_server.store.read(answer["ID"])).mail_from == "zoë@exämple.test"


def test_the_message_size_limit_is_413_and_others_go_on(start_server: Any) -> None:
    server = start_server(http=True, max_message_size=4000)
    big = MINIMAL | {"Text": "x" * 5000}
    with smtplib.SMTP("127.0.0.1", server.smtp_port) as smtp:  # a client in the middle of its session
        smtp.ehlo()
        status, answer = post(server, big)
        assert status == 413 and "[smtp] max_message_size" in answer["Error"]
        built = MINIMAL | {"Attachments": [{"Content": base64.b64encode(b"y" * 2800).decode(), "Filename": "a"}]}
        status, answer = post(server, built)  # the body fits, the built message does not
        assert status == 413 and "exceeds the limit of 4000 bytes" in answer["Error"], answer
        assert smtp.sendmail("a@example.test", ["b@example.test"], b"Subject: still\r\n\r\nok\r\n") == {}
    assert post(server, MINIMAL)[0] == 200 and len(server.store.ids()) == 2


def test_too_many_recipients(start_server: Any) -> None:
    server = start_server(http=True, max_recipients=2)
    status, answer = post(server, MINIMAL | {"Cc": [{"Email": "c@example.test"}], "Bcc": ["d@example.test"]})
    assert status == 400 and answer["Error"].startswith("too many recipients: 3 (at most 2")


def test_sending_from_another_site_is_refused(web_server: SinkServer) -> None:
    status, answer = post(web_server, MINIMAL, {"Origin": "http://evil.example"})
    assert status == 403 and answer["Error"] == "cross-site request refused" and stored(web_server) == []
