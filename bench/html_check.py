"""How long the HTML check (``GET /api/v1/message/{id}/html-check``) takes on an ordinary newsletter
and on hostile HTML at the check's limits (5,000,000 characters, 50,000 elements): the work a
reader thread does for one request. Run: ``python -m bench.html_check [--runs N]``."""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

from smtp_sink.checks.html_check import check

NEWSLETTER = (
    "<!DOCTYPE html><html><head><style>.btn{border-radius:4px;background-color:#06c} "
    "@media (max-width:600px){.col{display:block}} a:hover{color:red}</style></head><body>"
    + '<table width="600" bgcolor="#fff"><tr><td class="col" style="padding:10px;font-family:Arial">'
      '<h1>News</h1><p style="line-height:1.4">Some text <a class="btn" href="https://x.test/">read</a></p>'
      '<img src="https://x.test/a.png" width="580"></td></tr></table>' * 40
    + "</body></html>"
)
SHAPES: dict[str, Callable[[], str]] = {
    "newsletter (40 table blocks, 10 KB)": lambda: NEWSLETTER,
    "49,000 styled elements": lambda: '<p style="display:flex;color:red;width:1px">x' * 49_000,
    "40,000 descendant rules x 49,000 elements": lambda: (
        "<style>" + "div div div div div div p { border-radius: 1px }\n" * 40_000 + "</style>"
        + "<div>" * 200 + "<p>x" * 48_000),
    "unclosed tags, 4.9 MB": lambda: "<a " * 1_600_000,
    "unclosed comment, 4.9 MB": lambda: "<!--" + "x" * 4_900_000,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    runs = parser.parse_args().runs
    for name, make in SHAPES.items():
        html = make()
        times = []
        for _ in range(runs):
            started = time.perf_counter()
            check(html)
            times.append(time.perf_counter() - started)
        print(f"{name:45} {len(html):>9} chars  median {statistics.median(times) * 1000:8.1f} ms")


if __name__ == "__main__":
    main()
