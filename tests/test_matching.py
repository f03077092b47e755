"""One meaning for "the message a wait is for" (smtp_sink.matching), on summaries as indexed."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from smtp_sink.matching import Criteria
from smtp_sink.message import summarize
from smtp_sink.sink import save_message
from smtp_sink.store import Store
from smtp_sink.summary import Summary
from smtp_sink.trace import Envelope, trace_headers

MESSAGE_ID = "01HZZZZZZZZZZZZZZZZZZZZZZZ"


def summary(mail_from: str = "app@shop.test", rcpt_to: tuple[str, ...] = ("joann@example.test",),
            headers: str = "From: Shop <Billing@Shop.test>\r\nTo: Ann <ann@example.test>\r\n"
                           "Cc: carl@example.test\r\nSubject: Your Invoice 42\r\n") -> Summary:
    envelope = Envelope(helo="c.test", mail_from=mail_from, rcpt_to=list(rcpt_to), peer="127.0.0.1")
    raw = trace_headers(envelope, MESSAGE_ID, "sink.test") + f"{headers}\r\nbody\r\n".encode()
    return summarize(MESSAGE_ID, raw)


@pytest.mark.parametrize(("criteria", "expected"), [
    (Criteria(), True),
    (Criteria(to="joann@example.test"), True),  # an envelope recipient (a Bcc one here)
    (Criteria(to="ANN@example.test"), True),  # a To address, ignoring case
    (Criteria(to="carl@example.test"), True),  # a Cc address
    (Criteria(to="ann"), False),  # whole addresses, not word prefixes
    (Criteria(to="ann@example"), False),
    (Criteria(to="nn@example.test"), False),
    (Criteria(sender="app@shop.test"), True),  # the envelope sender
    (Criteria(sender="billing@shop.test"), True),  # the From address, ignoring case
    (Criteria(sender="shop.test"), False),
    (Criteria(subject="invoice"), True),  # contained, ignoring case
    (Criteria(subject="Invoice 43"), False),
    (Criteria(subject=re.compile(r"^Your")), True),
    (Criteria(subject=re.compile(r"^your")), False),  # a pattern says its own case rules
    (Criteria(to="ann@example.test", sender="app@shop.test", subject="42"), True),
    (Criteria(to="ann@example.test", subject="43"), False),  # every criterion must hold
])
def test_criteria(criteria: Criteria, expected: bool) -> None:
    assert criteria.matches(summary()) is expected


def test_the_null_sender_is_the_empty_address() -> None:
    assert Criteria(sender="").matches(summary(mail_from="", headers="Subject: bounce\r\n"))
    assert not Criteria(sender="").matches(summary())


def test_headers_in_the_data_never_forge_the_envelope() -> None:
    """A To line inside the message is a header address, but a forged trace header is not a recipient."""
    forged = summary(rcpt_to=("real@example.test",), headers="X-Original-To: victim@example.test\r\nSubject: x\r\n")
    assert Criteria(to="real@example.test").matches(forged)
    assert not Criteria(to="victim@example.test").matches(forged)


def test_a_summary_read_back_from_the_index_matches_alike(tmp_path: Path) -> None:
    store = Store(tmp_path / "mail")
    store.open()
    envelope = Envelope(helo="c.test", mail_from="app@shop.test", rcpt_to=["hidden@example.test"], peer="::1")
    stored = save_message(store, envelope, b"To: ann@example.test\r\nSubject: Welcome\r\n\r\nhi\r\n", "sink.test")
    store.index_pending()
    indexed = store.summary(stored.id)  # from the index's JSON
    for criteria in (Criteria(to="hidden@example.test"), Criteria(to="ann@example.test"),
                     Criteria(sender="app@shop.test", subject="welcome")):
        assert criteria.matches(indexed)
    assert not Criteria(to="hidden").matches(indexed)
    store.close()


def test_describe_lists_the_criteria_given() -> None:
    assert Criteria(to="a@b.test", subject="Hi").describe() == "to='a@b.test', subject='Hi'"
    assert Criteria().describe() == ""
