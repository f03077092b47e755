#!/usr/bin/env python3
"""Refresh the web page's screenshots in docs/screenshots/: start a server on free ports with a
temporary store, send a few realistic messages over SMTP, and photograph the page in Debian's
chromium (Playwright): light, dark, phone width (375 px), a message with its HTML check open, and
the fault-rules panel.

    .venv/bin/python scripts/screenshots.py            # writes docs/screenshots/*.png
    .venv/bin/python scripts/screenshots.py --out DIR
"""

from __future__ import annotations

import argparse
import dataclasses
import smtplib
import struct
import sys
import tempfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path
from typing import Any

from smtp_sink.config import Config, SMTPConfig, StoreConfig
from smtp_sink.rules import Rule
from smtp_sink.server import ServerThread, SinkServer

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 375, "height": 812}
WAIT = 10_000  # ms
# name -> (viewport, colour scheme): what each picture is taken with
SHOTS = {"light": (DESKTOP, "light"), "dark": (DESKTOP, "dark"), "phone": (PHONE, "light"),
         "message-checks": (DESKTOP, "light"), "rules": (DESKTOP, "light")}


def png(width: int, height: int) -> bytes:
    """A small logo-like PNG (a blue-to-teal gradient) without an imaging library."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + bytes(v for x in range(width) for v in (30 + x // 4, 90 + y, 190 - x // 6))
                    for y in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


NEWSLETTER = """\
<!doctype html><html><body style="margin:0;background:#eef2f7;font-family:Helvetica,Arial,sans-serif">
<table role="presentation" width="100%" cellpadding="0" cellspacing="0"><tr><td align="center">
<table role="presentation" width="600" cellpadding="0" cellspacing="0" style="background:#ffffff;margin:24px 0">
<tr><td style="padding:24px 32px;background:#1f3b5c;color:#ffffff">
<img src="cid:{logo}" width="160" height="48" alt="Acme" style="display:block">
</td></tr>
<tr><td style="padding:28px 32px;color:#1d1f23">
<h1 style="margin:0 0 12px;font-size:24px">What's new in November</h1>
<p style="font-size:15px;line-height:1.5">Dark mode, faster search and a brand new mobile app. Here is
everything we shipped this month.</p>
<h2 style="font-size:18px;margin:20px 0 8px">Search that keeps up</h2>
<p style="font-size:15px;line-height:1.5">Results now appear as you type, even with a million documents.</p>
<p style="margin:24px 0"><a href="https://example.test/changelog" style="background:#2b6cb0;color:#fff;
padding:12px 20px;border-radius:6px;text-decoration:none">Read the changelog</a></p>
<p style="font-size:12px;color:#666">You get this because you signed up at example.test.
<a href="https://example.test/unsubscribe?u=42">Unsubscribe</a></p>
</td></tr></table></td></tr></table></body></html>
"""


def messages() -> Iterator[tuple[EmailMessage, list[str]]]:
    """The messages to show, oldest first, each with its envelope recipients."""
    plain = [
        ("GitHub <noreply@github.example>", "dev@example.test", "[acme/api] CI failed on main (#1423)",
         "The build of commit 4f2c1e9 failed in job tests (3.12).\n\nView the logs: https://ci.example.test/1423\n"),
        ("Ops bot <ops@example.test>", "dev@example.test", "Disk usage above 90% on db-2",
         "db-2: /var/lib/postgresql at 91%.\nThreshold 90%, checked 14:02 UTC.\n"),
        ("Acme Accounts <accounts@acme.example>", "ann+signup@example.test", "Confirm your email address",
         "Hi Ann,\n\nConfirm your address within 24 hours: https://acme.example/confirm/7f3a\n\nThe Acme team\n"),
        ("Acme Security <security@acme.example>", "ann@example.test", "Your password reset code",
         "Your code is 482 913. It expires in 10 minutes.\n\nIf you did not ask for it, ignore this email.\n"),
    ]
    for sender, to, subject, body in plain:
        message = EmailMessage()
        message["From"], message["To"], message["Subject"] = sender, to, subject
        message.set_content(body)
        yield message, [to]

    invoice = EmailMessage()
    invoice["From"] = "Billing <billing@shop.example>"
    invoice["To"] = "Ann Example <ann@example.test>"
    invoice["Subject"] = "Invoice INV-2026-0117 for November"
    invoice["X-Tags"] = "invoice, billing"
    invoice.set_content("Hello Ann,\n\nPlease find your invoice and the usage report attached.\n\n"
                        "Best regards,\nShop\n")
    invoice.add_attachment(b"%PDF-1.4\n% a tiny placeholder invoice\n%%EOF\n", maintype="application",
                           subtype="pdf", filename="INV-2026-0117.pdf")
    invoice.add_attachment(b"date,requests\n2026-11-01,1204\n2026-11-02,1388\n", maintype="text",
                           subtype="csv", filename="usage-november.csv")
    yield invoice, ["ann@example.test", "accounting@example.test"]  # the second one is a Bcc

    logo = make_msgid(domain="acme.example")
    newsletter = EmailMessage()
    newsletter["From"] = "Acme News <news@acme.example>"
    newsletter["To"] = "ann@example.test"
    newsletter["Subject"] = "What's new in November: dark mode, faster search"
    newsletter["X-Tags"] = "newsletter"
    newsletter["List-Unsubscribe"] = "<https://example.test/unsubscribe?u=42>, <mailto:unsubscribe@acme.example>"
    newsletter.set_content("What's new in November\n\nDark mode, faster search and a brand new mobile app.\n")
    newsletter.add_alternative(NEWSLETTER.format(logo=logo[1:-1]), subtype="html")
    html_part = newsletter.get_payload()[1]  # type: ignore[index]
    assert isinstance(html_part, EmailMessage)
    html_part.add_related(png(160, 48), maintype="image", subtype="png", cid=logo, filename="logo.png")
    yield newsletter, ["ann@example.test"]


@contextmanager
def running_server(store: Path) -> Iterator[SinkServer]:
    """A server with HTTP on, both on free ports, storing in ``store``."""
    base = Config()
    config = dataclasses.replace(base, smtp=SMTPConfig(port=0), store=StoreConfig(path=str(store)),
                                 tls=dataclasses.replace(base.tls, port=0),
                                 http=dataclasses.replace(base.http, enabled=True, port=0))
    thread = ServerThread(config)
    try:
        yield thread.start()
    finally:
        thread.stop()


def fill(server: SinkServer) -> None:
    """Send the messages over SMTP and add one fault rule (the header badge shows it)."""
    with smtplib.SMTP("127.0.0.1", server.smtp_port) as smtp:
        for message, recipients in messages():
            smtp.send_message(message, to_addrs=recipients)
    server.rules.add(Rule(stage="rcpt", recipient="blocked@example.test", code=550,  # type: ignore[arg-type]
                          text="Mailbox unavailable (test rule)"))


def shoot(browser: Any, server: SinkServer, name: str, out: Path) -> Path:
    """Take the picture ``name`` (see SHOTS) into ``out/<name>.png``."""
    from playwright.sync_api import expect

    viewport, scheme = SHOTS[name]
    context = browser.new_context(viewport=viewport, color_scheme=scheme, device_scale_factor=1)
    page = context.new_page()
    page.add_init_script(f"localStorage.setItem('smtp-sink-theme', '{scheme}')")  # the page's theme switch
    page.goto(f"http://127.0.0.1:{server.http_port}/")
    page.evaluate("theme => { document.documentElement.dataset.theme = theme; }", scheme)
    items = page.locator("#messages li")
    expect(items.first).to_be_visible(timeout=WAIT)
    expect(page.locator("#rules-badge")).to_contain_text("1 fault rule", timeout=WAIT)
    if name in ("light", "dark", "message-checks"):
        items.filter(has_text="What's new in November").click()
        expect(page.frame_locator("#html").locator("h1")).to_have_text("What's new in November", timeout=WAIT)
    if name == "message-checks":
        tab = page.locator("#tabs [data-tab=checks]")
        if tab.count():  # the HTML check tab, where the page has it; else the message view
            tab.click()
            # a locator wait: the page's CSP forbids the eval a polled wait_for_function needs
            page.locator("#html-check *").first.wait_for(timeout=WAIT)
    if name == "rules":
        page.locator("#rules-badge button").click()
        expect(page.locator("#rules-panel tbody tr")).to_have_count(1, timeout=WAIT)
    page.evaluate("document.fonts.ready")
    path = out / f"{name}.png"
    page.screenshot(path=str(path))
    context.close()
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots", help="folder for the PNGs")
    args = parser.parse_args(argv)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="smtp-sink-shots-") as store, running_server(Path(store)) as server:
        fill(server)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            try:
                for name in SHOTS:
                    print(shoot(browser, server, name, out))
            finally:
                browser.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
