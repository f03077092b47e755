"""The scene the Mailpit client-library tests run in: ``smtp-sink serve`` as a real process with its
HTTP API, a relay upstream (a second smtp-sink), a fake spamd, a local web server for the link check,
and four messages sent over SMTP the way an application sends them.

What each message is and what Mailpit would answer about it is written down here once
(:data:`RICH_SNIPPET`, :data:`PARTS`...), so the npm and the PyPI client tests check the same
values, the ones Mailpit's source gives (the spec's sections cited beside them)."""

from __future__ import annotations

import contextlib
import email.policy
import http.server
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path

from smtp_sink import trace
from smtp_sink.server import SinkServer
from support import wait_until
from support.http import get_json
from support.images import png
from support.mail import send
from support.processes import Processes, ServerProcess
from support.servers import Servers
from support.spamd import FakeSpamd, fake_spamd

PHOTO = png(300, 200)  # an attachment larger than a thumbnail: cropped to 180x120
LOGO = png(40, 30, (20, 90, 200))  # an inline cid: image smaller than a thumbnail: padded
NOTES = b"Meeting notes: bring the thumbnails.\r\n"
RICH_TEXT = "Welcome aboard, Bob.\n\nRead the guide: {base}/ok\n"
RICH_HTML = (
    '<html><head><title>Welcome</title></head><body><p>Welcome aboard, Bob.</p>'
    '<div style="display: flex">Read the <a href="{base}/ok">guide</a>, the <a href="{base}/missing">old page</a> '
    'and the <a href="{base}/moved">moved page</a>.</div><img src="cid:logo@example.test" alt="logo"></body></html>'
)
# Mailpit's Snippet is the HTML as text (html2text.Strip: a space after each block, links without URLs)
RICH_SNIPPET = "Welcome aboard, Bob. Read the guide, the old page and the moved page."
RICH_DATE = "Tue, 02 Jan 2024 03:04:05 +1300"
RICH_DATE_JSON = "2024-01-02T03:04:05+13:00"  # the Date header with its own offset (spec 2.3)
RICH_SENDER = "bounce@example.test"  # MAIL FROM: the detail's ReturnPath
RICH_RCPTS = ("bob@example.test", "carol@example.test", "dave@example.test", "secret@example.test")
# enmime's part IDs (spec 2.4) for mixed[alternative[text, related[html, logo]], photo, notes]
PARTS = {"logo": "1.2.2", "photo": "2", "notes": "3"}
TAGS = ["Alpha", "Beta"]  # from the rich message's X-Tags header


@dataclass
class LinkTarget:
    """A web server for the link check: ``/ok`` 200, ``/missing`` 404, ``/moved`` 301 to ``/ok``;
    ``requests`` holds each ``(method, path)`` it was asked."""

    base: str = ""
    requests: list[tuple[str, str]] = field(default_factory=list)


class _LinkHandler(http.server.BaseHTTPRequestHandler):
    def _answer(self) -> None:
        target: LinkTarget = self.server.target  # type: ignore[attr-defined]
        target.requests.append((self.command, self.path))
        status = {"/ok": 200, "/moved": 301}.get(self.path, 404)
        self.send_response(status)
        if status == 301:
            self.send_header("Location", "/ok")
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_HEAD = _answer

    def log_message(self, *args: object) -> None:  # quiet
        pass


@contextlib.contextmanager
def link_target() -> Iterator[LinkTarget]:
    """A :class:`LinkTarget` on a free port of 127.0.0.1 until the block ends."""
    target = LinkTarget()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _LinkHandler)
    server.daemon_threads = True
    server.target = target  # type: ignore[attr-defined]
    target.base = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, name="link-target", daemon=True)
    thread.start()
    try:
        yield target
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def rich_message(base: str) -> bytes:
    """Text and HTML (with a ``cid:`` logo and three links), two attachments, X-Tags,
    List-Unsubscribe, Delivered-To: everything the clients read."""
    msg = EmailMessage(policy=email.policy.SMTP)
    msg["From"] = "Alice Example <alice@example.test>"
    msg["To"] = "Bob <bob@example.test>, carol@example.test"
    msg["Cc"] = "Dave <dave@example.test>"
    msg["Reply-To"] = "replies@example.test"
    msg["Subject"] = "Welcome aboard"
    msg["Message-ID"] = "<rich-1@example.test>"
    msg["Date"] = RICH_DATE
    msg["X-Tags"] = ", ".join(TAGS)
    msg["Delivered-To"] = "bob@example.test"
    msg["List-Unsubscribe"] = "<mailto:unsubscribe@example.test>, <https://example.test/unsubscribe>"
    msg.set_content(RICH_TEXT.format(base=base))
    msg.add_alternative(RICH_HTML.format(base=base), subtype="html")
    html = msg.get_payload()[1]
    html.add_related(LOGO, "image", "png", cid="<logo@example.test>")
    msg.add_attachment(PHOTO, maintype="image", subtype="png", filename="photo.png")
    msg.add_attachment(NOTES, maintype="text", subtype="plain", filename="notes.txt")
    return msg.as_bytes()


def simple_message(subject: str, body: str, sender: str = "Pat <pat@example.test>") -> bytes:
    """A text-only message to ops@example.test."""
    msg = EmailMessage(policy=email.policy.SMTP)
    msg["From"] = sender
    msg["To"] = "ops@example.test"
    msg["Subject"] = subject
    msg["Message-ID"] = f"<{subject.lower().replace(' ', '-')}@example.test>"
    msg["Delivered-To"] = "ops@example.test"
    msg.set_content(body)
    return msg.as_bytes()


@dataclass
class Scene:
    """Everything a client test talks to, and the ids of the messages sent (``ping1``, ``ping2``,
    ``plain``, ``rich``: oldest to newest, so ``rich`` is ``latest``)."""

    sink: ServerProcess
    upstream: SinkServer
    spamd: FakeSpamd
    links: LinkTarget
    ids: dict[str, str]
    stored: dict[str, bytes]  # the stored bytes of each, read when it was sent (the clients delete them)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.sink.http_port}"

    def raw(self, name: str) -> bytes:
        """The stored bytes of a message sent here."""
        return self.stored[name]

    def sent(self, name: str) -> bytes:
        """What the client sent of a message: the stored bytes without the server's trace block."""
        raw = self.raw(name)
        return raw[trace.read(raw).length:]


def _id_of(store: Path, message_id: str) -> str:
    """The id of the stored message whose data has this Message-ID."""
    for path in store.glob("*.eml"):
        if f"Message-ID: {message_id}".encode() in path.read_bytes():
            return path.stem
    raise AssertionError(f"no stored message with Message-ID {message_id}")


@contextlib.contextmanager
def mailpit_scene(folder: Path) -> Iterator[Scene]:
    """Start the scene in ``folder`` and send the four messages; stop everything afterwards."""
    servers, processes = Servers(folder / "upstream"), Processes(folder / "mail")
    with contextlib.ExitStack() as stack, fake_spamd() as spamd, link_target() as links:
        stack.callback(servers.stop_all)
        stack.callback(processes.stop_all)
        upstream = servers()
        config = folder / "smtp-sink.toml"
        config.write_text(
            f'[relay]\nhost = "127.0.0.1"\nport = {upstream.smtp_port}\n\n'
            f'[checks]\nspamassassin = "127.0.0.1:{spamd.port}"\nallow_internal = true\n'
        )
        sink = processes("--config", str(config), http=True)
        ids, stored = {}, {}
        for name, raw, sender, rcpts in (
            ("ping1", simple_message("Ping 1", "First ping."), "pat@example.test", ["ops@example.test"]),
            ("ping2", simple_message("Ping 2", "Second ping."), "pat@example.test", ["ops@example.test"]),
            ("plain", simple_message("Plain text only", "Plain body.", "Quinn <quinn@example.test>"),
             "quinn@example.test", ["ops@example.test"]),
            ("rich", rich_message(links.base), RICH_SENDER, list(RICH_RCPTS)),
        ):
            send(sink.port, raw, rcpts, sender)
            message_id = next(line for line in raw.splitlines() if line.startswith(b"Message-ID: "))
            ids[name] = _id_of(sink.store, message_id.split(b": ", 1)[1].decode())
            stored[name] = (sink.store / f"{ids[name]}.eml").read_bytes()
            time.sleep(0.01)  # distinct receive times: newest first is one order
        wait_until(lambda: get_json(sink.http_port, "/api/v1/messages")["total"] == len(ids), what="all four listed")
        yield Scene(sink, upstream, spamd, links, ids, stored)
