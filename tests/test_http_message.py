"""One message over HTTP, as Mailpit serves it (against the real running server): the detail,
``/headers``, parts and thumbnails, ``/raw?dl=1``, the views, and ``latest`` on every route."""

from __future__ import annotations

import base64
import concurrent.futures
import io
import json
import os
import re
import smtplib
import struct
import threading
import time
import zlib
from email.message import EmailMessage
from pathlib import Path

import pytest
from PIL import Image
from support import wait_until
from support.http import get_json, request
from support.servers import Servers

from smtp_sink.ids import new_id
from smtp_sink.server import SinkServer

MAILPIT_DETAIL = ["ID", "MessageID", "From", "To", "Cc", "Bcc", "ReplyTo", "ReturnPath", "Subject", "ListUnsubscribe",
                  "Date", "Tags", "Username", "Text", "HTML", "Size", "Inline", "Attachments"]


def png(width: int, height: int, color: str = "red") -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), color).save(out, "PNG")
    return out.getvalue()


def newsletter() -> EmailMessage:
    """HTML with a related image referenced by cid: (quoted and not), a link, and a PDF."""
    msg = EmailMessage()
    msg["From"] = "News <news@example.test>"
    msg["To"] = "bob@example.test"
    msg["Subject"] = "Newsletter"
    msg["Message-ID"] = "<n1@example.test>"
    msg["Delivered-To"] = "bob@example.test"
    msg["Date"] = "Tue, 2 Jan 2024 03:04:05 +1300"
    msg["List-Unsubscribe"] = "<mailto:leave@example.test>, <https://example.test/leave>"
    msg.set_content("text version")
    msg.add_alternative('<p>Hi</p><img src="cid:logo@news"><img src=CID:logo@news>'
                        '<a href="https://example.test/read" target="_self">read</a>', subtype="html")
    msg.get_payload()[1].add_related(png(400, 300), "image", "png", cid="<logo@news>")
    msg.add_attachment(b"%PDF-1.4", maintype="application", subtype="pdf", filename="terms.pdf")
    return msg


def send(server: SinkServer, msg: EmailMessage, login: str | None = None) -> str:
    with smtplib.SMTP("127.0.0.1", server.smtp_port) as smtp:
        if login:
            smtp.login(login, "any password")
        smtp.send_message(msg, from_addr="news@example.test", to_addrs=["bob@example.test"])
    wait_until(lambda: get_json(server, "/api/v1/messages")["total"] >= 1, timeout=5, what="listed")
    return str(get_json(server, "/api/v1/messages")["messages"][0]["ID"])


def test_detail_over_http_is_mailpits_message(start_server: Servers) -> None:
    server = start_server(http=True, auth={"mode": "accept-any"})
    message_id = send(server, newsletter(), login="ann")
    status, headers, body = request(server, "/api/v1/message/latest")
    assert status == 200 and headers["Content-Type"].startswith("application/json")
    detail = json.loads(body)
    assert list(detail)[:len(MAILPIT_DETAIL)] == MAILPIT_DETAIL
    assert detail["ID"] == message_id and detail["MessageID"] == "n1@example.test"
    assert detail["Username"] == "ann" and detail["Read"] is True
    assert detail["ReturnPath"] == "news@example.test" and detail["Date"] == "2024-01-02T03:04:05+13:00"
    assert detail["ListUnsubscribe"]["Links"] == ["mailto:leave@example.test", "https://example.test/leave"]
    (image,) = detail["Inline"]
    assert (image["ContentID"], image["FileName"], image["ContentType"]) == ("logo@news", "logo@news", "image/png")
    (pdf,) = detail["Attachments"]
    assert pdf["FileName"] == "terms.pdf" and len(pdf["Checksums"]["SHA256"]) == 64


def test_headers_are_go_canonical_and_sorted_over_http(web_server: SinkServer) -> None:
    """What the PyPI client ``mailpit-api-client`` reads: its ``Headers`` model requires the exact
    keys ``Content-Type``, ``Date``, ``Delivered-To``, ``From`` and ``Message-Id`` (Go's form)."""
    send(web_server, newsletter())
    status, _, body = request(web_server, "/api/v1/message/latest/headers")
    assert status == 200
    keys = list(json.loads(body))  # the order as sent
    assert keys == sorted(keys)
    assert {"Content-Type", "Date", "Delivered-To", "From", "Message-Id", "Mime-Version", "X-Original-To",
            "Return-Path", "Received", "List-Unsubscribe"} <= set(keys)
    assert not {"Message-ID", "MIME-Version"} & set(keys)


def test_parts_thumbnails_and_raw_download(web_server: SinkServer) -> None:
    message_id = send(web_server, newsletter())
    detail = get_json(web_server, f"/api/v1/message/{message_id}")
    image = detail["Inline"][0]
    status, headers, body = request(web_server, f"/api/v1/message/latest/part/{image['PartID']}")
    assert status == 200 and headers["Content-Type"] == "image/png" and body == png(400, 300)
    assert headers["Content-Disposition"] == 'attachment; filename="logo@news"'  # the Content-ID names it
    for owner in (message_id, "latest"):  # latest on /thumb too (Mailpit: only a literal id there)
        status, headers, body = request(web_server, f"/api/v1/message/{owner}/part/{image['PartID']}/thumb")
        assert status == 200 and headers["Content-Type"] == "image/jpeg"
        thumb = Image.open(io.BytesIO(body))
        assert (thumb.format, thumb.size) == ("JPEG", (180, 120))
        assert thumb.getpixel((90, 60))[0] > 200 and thumb.getpixel((90, 60))[1] < 60  # red, cropped to fill
    pdf = detail["Attachments"][0]
    status, _, body = request(web_server, f"/api/v1/message/{message_id}/part/{pdf['PartID']}/thumb")
    blank = Image.open(io.BytesIO(body))
    assert status == 200 and blank.size == (180, 120) and blank.getpixel((90, 60)) == (255, 255, 255)
    status, _, body = request(web_server, f"/api/v1/message/{message_id}/part/9/thumb")
    assert status == 400 and json.loads(body)["Error"] == f"part 9 of message {message_id} not found"
    status, headers, body = request(web_server, "/api/v1/message/latest/raw?dl=1")
    assert status == 200 and headers["Content-Disposition"] == f'attachment; filename="{message_id}.eml"'
    assert body.startswith(b"Return-Path: <news@example.test>")
    assert "Content-Disposition" not in request(web_server, "/api/v1/message/latest/raw")[1]


def test_a_small_image_is_fitted_on_white(web_server: SinkServer) -> None:
    msg = EmailMessage()
    msg["Subject"] = "small"
    msg.set_content("see")
    msg.add_attachment(png(60, 40, "blue"), maintype="image", subtype="png", filename="dot.png")
    message_id = send(web_server, msg)
    (attachment,) = get_json(web_server, f"/api/v1/message/{message_id}")["Attachments"]
    body = request(web_server, f"/api/v1/message/{message_id}/part/{attachment['PartID']}/thumb")[2]
    thumb = Image.open(io.BytesIO(body)).convert("RGB")
    assert thumb.getpixel((5, 5)) == (255, 255, 255)  # padding
    red, _green, blue = thumb.getpixel((90, 60))
    assert blue > 200 and red < 60  # the image itself, centred, not scaled up


def test_html_view_rewrites_cid_to_part_urls(web_server: SinkServer) -> None:
    message_id = send(web_server, newsletter())
    part_id = get_json(web_server, f"/api/v1/message/{message_id}")["Inline"][0]["PartID"]
    assert request(web_server, "/api/v1/messages", "PUT", json.dumps({"Read": False}).encode())[0] == 200
    status, headers, body = request(web_server, f"/view/{message_id}.html")
    html = body.decode()
    assert status == 200 and headers["Content-Type"] == "text/html; charset=utf-8"
    url = f"/api/v1/message/{message_id}/part/{part_id}"
    assert f'src="{url}"' in html and f"src={url}>" in html and "cid:" not in html.lower()
    assert 'target="_self"' in html  # links untouched without embed
    csp = headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "sandbox" in csp and "script-src" not in csp
    assert get_json(web_server, "/api/v1/messages")["unread"] == 0  # viewing marks it read, as in Mailpit


def test_embedded_html_view_carries_its_images_and_opens_links_apart(web_server: SinkServer) -> None:
    message_id = send(web_server, newsletter())
    html = request(web_server, f"/view/{message_id}.html?embed=1")[2].decode()
    data_url = "data:image/png;base64," + base64.b64encode(png(400, 300)).decode()
    assert html.count(f'src="{data_url}"') == 1 and html.count(f"src={data_url}>") == 1
    assert '<a href="https://example.test/read" target="_blank" rel="noreferrer noopener">' in html
    assert "<script" not in html


def test_text_view_latest_redirect_and_page_route(web_server: SinkServer) -> None:
    assert request(web_server, "/view/latest")[:2][0] == 302
    assert request(web_server, "/view/latest")[1]["Location"] == "/"
    status, _, body = request(web_server, "/view/latest.txt")
    assert status == 404 and json.loads(body)["Error"] == "message latest not found"
    message_id = send(web_server, newsletter())
    status, headers, body = request(web_server, "/view/latest.txt")
    assert status == 200 and headers["Content-Type"] == "text/plain; charset=utf-8"
    assert body == b"text version\n"
    status, headers, _ = request(web_server, "/view/latest")
    assert status == 302 and headers["Location"] == f"/view/{message_id}"
    status, headers, body = request(web_server, f"/view/{message_id}")
    assert status == 200 and b'<script type="module" src="/static/js/main.js">' in body


def test_html_view_of_a_message_without_html_is_404(web_server: SinkServer) -> None:
    msg = EmailMessage()
    msg["Subject"] = "plain"
    msg.set_content("only text")
    message_id = send(web_server, msg)
    status, _, body = request(web_server, f"/view/{message_id}.html")
    assert status == 404 and json.loads(body) == {"Error": "This message does not contain a HTML part"}
    assert request(web_server, f"/view/{new_id()}.html")[0] == 404


@pytest.mark.parametrize("path", ["/view/{id}.html", "/view/{id}.txt", "/api/v1/message/{id}"])
def test_views_that_mark_read_are_refused_from_another_site(web_server: SinkServer, path: str) -> None:
    message_id = send(web_server, newsletter())
    status, _, body = request(web_server, path.format(id=message_id), headers={"Sec-Fetch-Site": "cross-site"})
    assert status == 403 and json.loads(body) == {"Error": "cross-site request refused"}
    assert get_json(web_server, "/api/v1/messages")["unread"] == 1


def test_a_cid_scan_of_hostile_html_is_linear(web_server: SinkServer) -> None:
    """HTML made of ``=cid:`` and ``<a`` fragments (each a scan start) costs linear time, and a
    second client keeps being answered meanwhile."""
    hostile = "=cid:" + "/" * 300 + ('=cid:a/' * 100_000) + '<a href="' + "<a x" * 100_000
    msg = EmailMessage()
    msg["Subject"] = "hostile"
    msg.set_content("x")
    msg.add_alternative(hostile, subtype="html")
    msg.get_payload()[1].add_related(b"GIF89a", "image", "gif", cid="<a>")
    message_id = send(web_server, msg)
    for embed in ("", "?embed=1"):
        status, _, body = request(web_server, f"/view/{message_id}.html{embed}", timeout=10)
        assert status == 200 and len(body) >= len(hostile)
    assert get_json(web_server, "/api/v1/messages")["total"] == 1


HOSTILE_HTML = {
    "cid-refs": "=cid:a/" * 200_000,
    "cid-slashes": ("=cid:" + "/" * 300) * 5_000,
    "cid-long": "=cid:" + "a" * 1_000_000,
    "a-tags": "<a " * 300_000,
    "a-unclosed-quote": '<a x="' + "<a " * 300_000,
    "a-attributes": "<a " + "x=y " * 300_000 + ">",
    "a-equals": "<a " + "= " * 300_000 + ">",
}


@pytest.mark.parametrize("html", HOSTILE_HTML.values(), ids=HOSTILE_HTML.keys())
def test_view_rewrites_cost_linear_time(html: str) -> None:
    from smtp_sink.web.view import link_targets, rewrite_cids

    started = time.perf_counter()
    link_targets(rewrite_cids(html, {"a": "/u/1", "a/b": "/u/2"}))
    assert time.perf_counter() - started < 1.5, "the view's rewriting must stay linear"


def test_link_rewriting_keeps_other_attributes() -> None:
    from smtp_sink.web.view import MAX_LINKS, link_targets, rewrite_cids

    assert link_targets('<A HREF=x Target=_top rel="me">a</A><abbr><a/>') == (
        '<a HREF=x target="_blank" rel="noreferrer noopener">a</A><abbr>'
        '<a target="_blank" rel="noreferrer noopener">')
    assert link_targets('<a href="x>y">z') == '<a href="x>y" target="_blank" rel="noreferrer noopener">z'
    assert link_targets('<a href="never closed>') == '<a href="never closed>'
    assert link_targets("<a>" * (MAX_LINKS + 5)).count("_blank") == MAX_LINKS  # the rest is left as it is
    urls = {"Img@x": "/u/1", "p/q": "/u/2"}
    assert rewrite_cids('<img src="cid:img@X"> <img src=cid:p/q;> <x y=cid:img@xs>', urls) == (
        '<img src="/u/1"> <img src=/u/2;> <x y=cid:img@xs>')
    assert rewrite_cids("src=cid:img@x", urls) == "src=cid:img@x"  # no end after it: not Mailpit's pattern


def test_the_part_route_and_view_read_big_messages_off_the_loop(web_server: SinkServer, tmp_path: Path) -> None:
    """A message dropped in by hand with a 4 MB image: the thumbnail is made and a second client
    gets its list meanwhile (work runs in the reader threads)."""
    raw = (b"Subject: big image\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
           b"Content-Type: image/png; name=big.png\r\nContent-Transfer-Encoding: base64\r\n\r\n"
           + base64.encodebytes(png(3000, 2000)) + b"--b--\r\n")
    message_id = new_id()
    Path(web_server.store.path, f"{message_id}.eml").write_bytes(raw)
    status, headers, body = request(web_server, f"/api/v1/message/{message_id}/part/1/thumb")
    assert status == 200 and Image.open(io.BytesIO(body)).size == (180, 120)
    assert re.fullmatch(r'inline; filename="big\.png"', headers["Content-Disposition"])


def lying_png(width: int, height: int) -> bytes:
    """A 1x1 PNG whose header claims ``width`` x ``height`` pixels (a decompression bomb's shape)."""
    data = bytearray(png(1, 1))
    data[16:24] = struct.pack(">II", width, height)  # IHDR's width and height, then its CRC
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def stored(server: SinkServer, image: bytes, name: str = "big.png") -> str:
    """A message dropped into the store by hand with ``image`` as its only part (part 1)."""
    raw = (b"Subject: big image\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
           b"Content-Type: image/png; name=" + name.encode() + b"\r\nContent-Transfer-Encoding: base64\r\n\r\n"
           + base64.encodebytes(image) + b"--b--\r\n")
    message_id = new_id()
    Path(server.store.path, f"{message_id}.eml").write_bytes(raw)
    return message_id


def test_an_image_claiming_too_many_pixels_gets_the_blank_thumbnail_at_once(web_server: SinkServer) -> None:
    message_id = stored(web_server, lying_png(100_000, 100_000))
    started = time.perf_counter()
    status, _, body = request(web_server, f"/api/v1/message/{message_id}/part/1/thumb")
    assert status == 200 and time.perf_counter() - started < 2
    thumb = Image.open(io.BytesIO(body))
    assert thumb.size == (180, 120) and thumb.getpixel((90, 60)) == (255, 255, 255)


def resident() -> int:
    """This process's resident memory now, in bytes (the servers of the test run in it)."""
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_huge_thumbnails_are_made_one_at_a_time_while_a_second_client_is_answered(web_server: SinkServer) -> None:
    """Four thumbnails of a 20-megapixel transparent PNG (80 MB decoded, 90 kB sent) asked at once:
    memory grows by about one decoding, not four, and another client's list answers meanwhile."""
    out = io.BytesIO()
    Image.new("RGBA", (5000, 4000), (0, 0, 255, 255)).save(out, "PNG")
    message_id = stored(web_server, out.getvalue())
    get_json(web_server, "/api/v1/messages")  # the index has read the message: no rescan while measuring
    baseline, peak, done = resident(), [0], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], resident())
            time.sleep(0.002)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            thumbs = [pool.submit(request, web_server, f"/api/v1/message/{message_id}/part/1/thumb")
                      for _ in range(4)]
            answered = 0
            while not all(thumb.done() for thumb in thumbs):
                started = time.perf_counter()
                assert get_json(web_server, "/api/v1/messages")["total"] == 1
                assert time.perf_counter() - started < 2, "a list waited for thumbnails"
                answered += 1
            replies = [thumb.result() for thumb in thumbs]
    finally:
        done.set()
        sampler.join()
    assert answered >= 1
    for status, _, body in replies:
        thumb = Image.open(io.BytesIO(body)).convert("RGB")
        assert status == 200 and thumb.size == (180, 120) and thumb.getpixel((90, 60))[2] > 200
    assert peak[0] - baseline < 400 * 2**20, f"memory grew by {(peak[0] - baseline) >> 20} MB"
