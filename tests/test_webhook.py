"""``[webhook]`` against a local receiver over real sockets: Mailpit's summary of each new message,
retries with back-off, a rate limit, and an SMTP reply that never waits for a receiver that is
down, slow or hanging."""

from __future__ import annotations

import dataclasses
import json
import smtplib
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from support import wait_until
from support.config import make_config
from support.http import get_json

from smtp_sink import __version__
from smtp_sink.config import ConfigError, WebhookConfig, load
from smtp_sink.server import SinkServer

MESSAGE = b"From: Ann <ann@example.test>\r\nTo: bob@example.test\r\nSubject: hooked\r\n\r\nhello\r\n"


@dataclasses.dataclass
class Call:
    """One request the receiver got."""

    at: float
    path: str
    headers: dict[str, str]
    body: bytes


class Receiver:
    """An HTTP server on its own thread that records each POST and answers from a plan: each
    request takes the next planned status (200 when the plan is used up), or waits on ``hold`` first."""

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.plan: list[int] = []
        self.delay = 0.0  # seconds to wait before answering
        self.hold = threading.Event()
        self.hold.set()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # the name http.server calls
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.calls.append(Call(time.monotonic(), self.path, dict(self.headers), body))
                receiver.hold.wait(30)
                time.sleep(receiver.delay)
                status = receiver.plan.pop(0) if receiver.plan else 200
                self.send_response(status)
                if 300 <= status < 400:
                    self.send_header("Location", "/elsewhere")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.hold.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    got = Receiver()
    yield got
    got.close()


def hooked(start_server: Any, tmp_path: Path, url: str, **webhook: Any) -> SinkServer:
    """A sink (HTTP on) whose webhook posts to ``url``."""
    config = make_config(tmp_path / "mail", http=True)
    server: SinkServer = start_server(config=dataclasses.replace(config, webhook=WebhookConfig(url=url, **webhook)))
    return server


def smtp_send(server: SinkServer, subject: str = "hooked") -> None:
    data = MESSAGE.replace(b"hooked", subject.encode())
    with smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=5) as smtp:
        assert smtp.sendmail("ann@example.test", ["bob@example.test"], data) == {}


def test_each_new_message_posts_mailpits_summary(start_server: Any, tmp_path: Path, receiver: Receiver) -> None:
    server = hooked(start_server, tmp_path, receiver.url)
    smtp_send(server)
    wait_until(lambda: len(receiver.calls) == 1, what="the webhook")
    call = receiver.calls[0]
    assert call.path == "/hook" and call.headers["Content-Type"] == "application/json"
    assert call.headers["User-Agent"] == f"smtp-sink/{__version__}"
    summary = json.loads(call.body)
    assert summary == get_json(server, "/api/v1/messages")["messages"][0]  # the list's summary, as Mailpit's
    assert summary["Subject"] == "hooked" and summary["From"] == {"Name": "Ann", "Address": "ann@example.test"}
    assert summary["Read"] is False
    smtp_send(server, "second")
    wait_until(lambda: len(receiver.calls) == 2, what="the second webhook")
    assert json.loads(receiver.calls[1].body)["Subject"] == "second"  # one post a message


def test_a_failed_post_is_retried_with_back_off(start_server: Any, tmp_path: Path, receiver: Receiver) -> None:
    receiver.plan = [503, 500]
    server = hooked(start_server, tmp_path, receiver.url, retries=3)
    smtp_send(server)
    wait_until(lambda: len(receiver.calls) == 3, what="three attempts")
    assert len({call.body for call in receiver.calls}) == 1  # the same summary each time
    first, second, third = (call.at for call in receiver.calls)
    assert second - first >= 0.45 and third - second >= 0.95  # 0.5 s, then 1 s between attempts


def test_retries_are_bounded(start_server: Any, tmp_path: Path, receiver: Receiver) -> None:
    receiver.plan = [500] * 10
    server = hooked(start_server, tmp_path, receiver.url, retries=1)
    smtp_send(server)
    wait_until(lambda: len(receiver.calls) == 2, what="two attempts")
    time.sleep(1.3)  # past a third attempt's back-off (1 s)
    assert len(receiver.calls) == 2


@pytest.mark.parametrize("status", [404, 302])
def test_a_refusal_or_a_redirect_is_not_retried(start_server: Any, tmp_path: Path, receiver: Receiver,
                                                 status: int) -> None:
    receiver.plan = [status]
    server = hooked(start_server, tmp_path, receiver.url, retries=3)
    smtp_send(server)
    wait_until(lambda: len(receiver.calls) == 1, what="the webhook")
    time.sleep(1.2)  # past the first back-off
    assert [call.path for call in receiver.calls] == ["/hook"]  # tried once, the redirect not followed


def test_a_receiver_that_is_down_delays_nothing(start_server: Any, tmp_path: Path) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    server = hooked(start_server, tmp_path, f"http://127.0.0.1:{port}/hook", retries=10)
    for number in range(5):
        smtp_send(server, f"number {number}")
    wait_until(lambda: get_json(server, "/api/v1/messages")["total"] == 5, what="five listed")


def test_a_slow_receiver_times_out_and_is_tried_again(start_server: Any, tmp_path: Path,
                                                      receiver: Receiver) -> None:
    receiver.delay = 0.6
    server = hooked(start_server, tmp_path, receiver.url, timeout=0.2, retries=1)
    smtp_send(server)
    wait_until(lambda: len(receiver.calls) == 2, what="a second attempt after the timeout")


def test_a_hanging_receiver_never_holds_up_smtp(start_server: Any, tmp_path: Path, receiver: Receiver) -> None:
    """The receiver takes every request and does not answer; SMTP clients get their replies, a client
    in the middle of its session goes on, and the summaries go out once the receiver answers."""
    receiver.hold.clear()
    server = hooked(start_server, tmp_path, receiver.url, timeout=30, rate=0)
    with smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=5) as other:
        other.ehlo()
        for number in range(3):
            smtp_send(server, f"number {number}")
        wait_until(lambda: len(receiver.calls) == 1, what="the first webhook")
        assert other.sendmail("ann@example.test", ["carl@example.test"], MESSAGE) == {}
    receiver.hold.set()
    wait_until(lambda: len(receiver.calls) == 4, what="every webhook once the receiver answers")
    subjects = [json.loads(call.body)["Subject"] for call in receiver.calls]
    assert subjects[:3] == ["number 0", "number 1", "number 2"]  # in arrival order


def test_the_rate_limit_spaces_the_posts(start_server: Any, tmp_path: Path, receiver: Receiver) -> None:
    server = hooked(start_server, tmp_path, receiver.url, rate=2.0)
    for number in range(3):
        smtp_send(server, f"number {number}")
    wait_until(lambda: len(receiver.calls) == 3, what="three webhooks")
    gaps = [b.at - a.at for a, b in zip(receiver.calls, receiver.calls[1:], strict=False)]
    assert min(gaps) >= 0.4, gaps  # at most 2 a second: 0.5 s apart (slack for the network)


@pytest.mark.parametrize("url", ["ftp://example.test/hook", "example.test/hook", "http:///hook"])
def test_a_webhook_url_must_be_http(tmp_path: Path, url: str) -> None:
    path = tmp_path / "hook.toml"
    path.write_text(f'[webhook]\nurl = "{url}"\n')
    with pytest.raises(ConfigError, match=r"\[webhook\] url: expected an http:// or https:// URL"):
        load(path, environ={})
