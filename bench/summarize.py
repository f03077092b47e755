"""Display-parsing cost of ordinary mail: ``summarize`` (run for every message indexed) and ``detail``.

    python -m bench.summarize [--runs N]

Prints microseconds per call (best of N runs) for three ordinary messages: a short plain-text
notification (the inspection benchmark's message), a newsletter (text + HTML + an inline image +
a PDF attachment, encoded names) and an HTML-only receipt. Compare the figures before and after a
change to ``smtp_sink/message.py``; the numbers depend on the machine, the ratio is what counts.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from email.message import EmailMessage

from smtp_sink import message

MESSAGE_ID = "01HZZZZZZZZZZZZZZZZZZZZZZZ"
TRACE = (
    b"Return-Path: <shop@example.test>\r\n"
    b"X-Original-To: user1@example.test\r\n"
    b"Received: from bench.example.test ([127.0.0.1])\r\n\tby smtp-sink.localhost (smtp-sink) with ESMTP"
    b" id 01HZZZZZZZZZZZZZZZZZZZZZZZ\r\n\tfor <user1@example.test>;\r\n\tMon, 01 Jan 2024 00:00:00 +0000\r\n"
)


def plain() -> bytes:
    """The message bench/inspection.py fills its store with."""
    return TRACE + (
        "From: Shop <shop@example.test>\r\nTo: user1@example.test\r\n"
        "Subject: Order 1 topic001\r\nDate: Mon, 01 Jan 2024 00:00:00 +0000\r\n"
        "Message-ID: <1.01HZZZZZZZZZZZZZZZZZZZZZZZ@example.test>\r\nMIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n\r\n"
        "Hello user1,\r\n\r\nyour order 1 is on its way. " + "Thank you for shopping with us. " * 12 + "\r\n"
    ).encode()


def newsletter() -> bytes:
    """text + (html + related image) + a PDF attachment, RFC 2047 subject and RFC 2231 file name."""
    msg = EmailMessage()
    msg["From"] = "Nëws Team <news@example.test>"
    msg["To"] = "bob@example.test, Carol Lee <carol@example.test>"
    msg["Cc"] = "dave@example.test"
    msg["Reply-To"] = "replies@example.test"
    msg["Subject"] = "Wöchentliche Neuigkeiten"
    msg["Message-ID"] = "<n1@example.test>"
    msg["Date"] = "Tue, 02 Jan 2024 10:20:30 +0100"
    msg.set_content("Hello,\n\nthis week's news.\n" * 20)
    msg.add_alternative("<html><head><style>p{color:red}</style></head><body>"
                        + "<p>This <b>week</b>'s news.</p>" * 40 + "<img src='cid:logo'></body></html>",
                        subtype="html")
    msg.get_payload()[1].add_related(b"\x89PNG fake" * 300, "image", "png", cid="<logo>")
    msg.add_attachment(b"%PDF-1.4 report" * 2000, maintype="application", subtype="pdf", filename="réport.pdf")
    return TRACE + msg.as_bytes()


def html_only() -> bytes:
    return TRACE + (
        b"From: Shop <shop@example.test>\r\nTo: user1@example.test\r\nSubject: Receipt\r\n"
        b"Content-Type: text/html; charset=utf-8\r\n\r\n<html><head><title>r</title></head><body>"
        + b"<table><tr><td>Item</td><td>&euro; 9.99</td></tr></table><br>" * 50 + b"</body></html>\r\n"
    )


def best(call: Callable[[], object], runs: int, repeat: int) -> float:
    """Best microseconds per call over ``runs`` runs of ``repeat`` calls."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        for _ in range(repeat):
            call()
        times.append((time.perf_counter() - start) / repeat)
    return min(times) * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="runs per figure (best is printed)")
    args = parser.parse_args(argv)
    print(f"{'message':<12} {'bytes':>7} {'summarize µs':>13} {'detail µs':>10}")
    for name, raw in (("plain", plain()), ("newsletter", newsletter()), ("html-only", html_only())):
        summary = best(lambda raw=raw: message.summarize(MESSAGE_ID, raw), args.runs, 300)
        full = best(lambda raw=raw: message.detail(MESSAGE_ID, raw), args.runs, 100)
        print(f"{name:<12} {len(raw):>7} {summary:>13.1f} {full:>10.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
