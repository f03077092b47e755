"""The npm Mailpit client ``mailpit-api`` (the version ``tests/mailpit_client/package.json`` pins)
against ``smtp-sink serve``: every method of its ``MailpitClient``, called by
``tests/mailpit_client/run.mjs`` as a test suite written for Mailpit calls it.

The scene (``support.mailpit_scene``): the server as a real process with its HTTP API, a second
smtp-sink as the relay upstream, a fake spamd, a local web server for the link check, and four
messages sent over SMTP. The script runs once for the module and records each call; each test
here checks the values one method gave against what Mailpit answers (the spec's section in the
comments), not merely that it did not throw. The client throws on any status but 200.
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import smtplib
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from support import ROOT
from support.images import jpeg_size
from support.mailpit_scene import (
    LOGO,
    NOTES,
    PARTS,
    PHOTO,
    RICH_DATE,
    RICH_DATE_JSON,
    RICH_HTML,
    RICH_RCPTS,
    RICH_SENDER,
    RICH_SNIPPET,
    RICH_TEXT,
    TAGS,
    Scene,
    mailpit_scene,
)
from support.npm import npm_modules
from support.spamd import RULES

import smtp_sink
from smtp_sink import trace

CLIENT = ROOT / "tests" / "mailpit_client"
PINNED = json.loads((CLIENT / "package.json").read_text())["dependencies"]["mailpit-api"]
SUMMARY_KEYS = {"ID", "MessageID", "Read", "From", "To", "Cc", "Bcc", "ReplyTo", "Subject", "Created", "Username",
                "Tags", "Size", "Attachments", "Snippet"}
DETAIL_KEYS = {"ID", "MessageID", "From", "To", "Cc", "Bcc", "ReplyTo", "ReturnPath", "Subject", "ListUnsubscribe",
               "Date", "Tags", "Username", "Text", "HTML", "Size", "Inline", "Attachments"}
CHAOS_DEFAULTS = {"Sender": {"ErrorCode": 451, "Probability": 0}, "Recipient": {"ErrorCode": 451, "Probability": 0},
                  "Authentication": {"ErrorCode": 535, "Probability": 0}}


@dataclass
class Run:
    """One run of the script: the client's version and methods, each call by its label."""

    scene: Scene
    version: str
    methods: list[str]
    calls: dict[str, dict[str, Any]]

    def value(self, label: str) -> Any:
        """What the call answered; the test fails, naming the call and the error, if it threw."""
        call = self.calls[label]
        assert call["ok"], f"{call['method']}({', '.join(map(json.dumps, call['args']))}) threw: {call['error']}"
        return call["value"]

    def after(self, label: str, when: str = "after") -> dict[str, Any]:
        """The mailbox right after the call (``when="before"``: right before it), by name of the messages
        sent (``ping1``...) or by id."""
        self.value(label)
        mailbox = self.calls[label][when]
        assert "error" not in mailbox, mailbox
        names = {message_id: name for name, message_id in self.scene.ids.items()}
        return {names.get(message_id, message_id): state for message_id, state in mailbox.items()}

    def ids(self, *names: str) -> list[str]:
        return [self.scene.ids[name] for name in names]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    assert shutil.which("node"), "node is not installed: run scripts/setup-tests.sh"
    modules = npm_modules("mailpit-api", PINNED)
    with mailpit_scene(tmp_path_factory.mktemp("npm-client")) as scene:
        context = {"baseURL": scene.base_url, "smtpPort": scene.sink.port, "modules": str(modules),
                   "ids": scene.ids, "parts": PARTS, "logo": base64.b64encode(LOGO).decode(), "callTimeoutMs": 10_000}
        done = subprocess.run(["node", str(CLIENT / "run.mjs")], input=json.dumps(context), capture_output=True,
                              text=True, timeout=300, cwd=CLIENT)
        assert done.returncode == 0, done.stderr
        (scene.sink.store.parent / "results.json").write_text(done.stdout)  # to read after a failure
        output = json.loads(done.stdout)
        yield Run(scene, output["version"], output["methods"], {call["label"]: call for call in output["results"]})


def blob(value: dict[str, Any]) -> tuple[str, bytes]:
    """A Blob the script recorded: its type and bytes."""
    assert value.get("blob"), value
    return value["type"], base64.b64decode(value["base64"])


def checksums(data: bytes) -> dict[str, str]:
    return {"MD5": hashlib.md5(data).hexdigest(), "SHA1": hashlib.sha1(data).hexdigest(),
            "SHA256": hashlib.sha256(data).hexdigest()}


def address(addr: str, name: str = "") -> dict[str, str]:
    return {"Name": name, "Address": addr}


def canonical(key: str) -> str:
    """Go's ``textproto.CanonicalMIMEHeaderKey`` (for keys made of token characters)."""
    return "-".join(word[:1].upper() + word[1:].lower() for word in key.split("-"))


def test_every_method_of_the_client_is_called(run: Run):
    assert run.version == PINNED
    assert set(run.methods) == {call["method"] for call in run.calls.values()}
    assert len(run.methods) == 27  # as many as the spec lists for 2.1.0 (section 11.1): none was missed reading it


def test_get_info(run: Run):
    """spec 2.7: the store's counts, tags with their counts, runtime statistics since start."""
    info = run.value("getInfo")
    stored = sum(len(run.scene.raw(name)) for name in run.scene.ids)
    assert info["Version"] == smtp_sink.__version__
    assert info["LatestVersion"] == "disabled"  # no network: never asks GitHub
    assert isinstance(info["Database"], str) and info["Database"]
    assert isinstance(info["DatabaseSize"], int) and info["DatabaseSize"] > 0
    assert (info["Messages"], info["Unread"], info["Tags"]) == (4, 4, {"Alpha": 1, "Beta": 1})
    stats = info["RuntimeStats"]
    assert isinstance(stats["Uptime"], int) and stats["Uptime"] >= 0
    assert isinstance(stats["Memory"], int) and stats["Memory"] > 0
    assert {key: stats[key] for key in ("MessagesDeleted", "SMTPAccepted", "SMTPAcceptedSize", "SMTPRejected",
                                        "SMTPIgnored")} == {
        "MessagesDeleted": 0, "SMTPAccepted": 4, "SMTPAcceptedSize": stored, "SMTPRejected": 0, "SMTPIgnored": 0}


def test_get_configuration(run: Run):
    """spec 2.8: the relay, spamd and chaos as configured (a release keeps the Message-ID: decision 6)."""
    config = run.value("getConfiguration")
    assert config["MessageRelay"] == {
        "Enabled": True, "SMTPServer": f"127.0.0.1:{run.scene.upstream.smtp_port}", "ReturnPath": "",
        "AllowedRecipients": "", "BlockedRecipients": "", "OverrideFrom": "", "PreserveMessageIDs": True,
        "RecipientAllowlist": ""}
    assert {key: config[key] for key in ("SpamAssassin", "ChaosEnabled", "DuplicatesIgnored", "HideDeleteAllButton")
            } == {"SpamAssassin": True, "ChaosEnabled": True, "DuplicatesIgnored": False, "HideDeleteAllButton": False}
    assert isinstance(config["Label"], str)


def test_list_messages(run: Run):
    """spec 1.1, 2.1, 2.2: newest first, the counts, every summary field; empty lists are []."""
    page = run.value("listMessages")
    assert {key: page[key] for key in ("total", "unread", "count", "messages_count", "messages_unread", "start",
                                       "tags")} == {
        "total": 4, "unread": 4, "count": 4, "messages_count": 4, "messages_unread": 4, "start": 0, "tags": TAGS}
    assert [m["ID"] for m in page["messages"]] == run.ids("rich", "plain", "ping2", "ping1")
    rich, ping1 = page["messages"][0], page["messages"][3]
    assert set(rich) >= SUMMARY_KEYS
    assert {key: rich[key] for key in SUMMARY_KEYS - {"Created"}} == {
        "ID": run.scene.ids["rich"], "MessageID": "rich-1@example.test", "Read": False,
        "From": address("alice@example.test", "Alice Example"),
        "To": [address("bob@example.test", "Bob"), address("carol@example.test")],
        "Cc": [address("dave@example.test", "Dave")],
        "Bcc": [address("secret@example.test")],  # an envelope recipient in no header (spec 2.6)
        "ReplyTo": [address("replies@example.test")], "Subject": "Welcome aboard", "Username": "", "Tags": TAGS,
        "Size": len(run.scene.raw("rich")), "Attachments": 2, "Snippet": RICH_SNIPPET}
    created = datetime.fromisoformat(rich["Created"].replace("Z", "+00:00"))
    assert abs(datetime.now(timezone.utc) - created) < timedelta(minutes=5)
    assert (ping1["Cc"], ping1["Bcc"], ping1["ReplyTo"], ping1["Tags"]) == ([], [], [], [])

    second = run.value("listMessages:page")  # start=1, limit=2
    assert [m["ID"] for m in second["messages"]] == run.ids("plain", "ping2")
    assert (second["start"], second["count"], second["messages_count"], second["total"]) == (1, 2, 4, 4)


@pytest.mark.parametrize(("label", "names"), [
    ("subject", ["ping2", "ping1"]),
    ("substring", ["rich"]),  # "elcome" is inside "Welcome"
    ("addressed", ["rich"]),  # addressed:"carol@example.test", as Mailpit pytest plugins wait
    ("negated", ["rich", "plain"]),  # -subject:Ping
    ("tag", ["rich"]),  # tag:alpha, case-insensitive
    ("attachment", ["rich"]),  # has:attachment
    ("filename", ["rich"]),  # attachment names are searched text
])
def test_search_messages(run: Run, label: str, names: list[str]):
    """spec 1.4, 3: Mailpit's search syntax; the counts of the whole mailbox and of the matches."""
    page = run.value(f"searchMessages:{label}")
    assert [m["ID"] for m in page["messages"]] == run.ids(*names)
    assert {key: page[key] for key in ("total", "unread", "count", "messages_count", "messages_unread", "start",
                                       "tags")} == {
        "total": 4, "unread": 4, "count": len(names), "messages_count": len(names), "messages_unread": len(names),
        "start": 0, "tags": TAGS}


def test_search_messages_pages(run: Run):
    page = run.value("searchMessages:page")  # subject:Ping, start=1, limit=1
    assert [m["ID"] for m in page["messages"]] == run.ids("ping1")
    assert (page["start"], page["count"], page["messages_count"]) == (1, 1, 2)


def test_get_message_headers(run: Run):
    """spec 1.11: every header of the stored message, keys in Go's canonical form, sorted."""
    headers = run.value("getMessageHeaders")
    assert list(headers) == sorted(headers)
    assert all(key == canonical(key) for key in headers), list(headers)
    assert {key: headers.get(key) for key in ("Message-Id", "Mime-Version", "X-Tags", "Date", "Delivered-To", "From",
                                              "To", "Cc", "Reply-To", "Return-Path", "X-Original-To")} == {
        "Message-Id": ["<rich-1@example.test>"], "Mime-Version": ["1.0"], "X-Tags": ["Alpha, Beta"],
        "Date": [RICH_DATE], "Delivered-To": ["bob@example.test"], "From": ["Alice Example <alice@example.test>"],
        "To": ["Bob <bob@example.test>, carol@example.test"], "Cc": ["Dave <dave@example.test>"],
        "Reply-To": ["replies@example.test"], "Return-Path": [f"<{RICH_SENDER}>"], "X-Original-To": list(RICH_RCPTS)}
    assert headers["Content-Type"][0].startswith("multipart/mixed;")
    assert run.value("getMessageHeaders:latest") == headers  # the newest message


def test_get_message_source(run: Run):
    assert run.value("getMessageSource") == run.scene.raw("rich").decode()


def test_get_message_summary(run: Run):
    """spec 2.3, 2.4: the detail, field by field; it marks the message read."""
    detail = run.value("getMessageSummary")
    base = run.scene.links.base
    assert set(detail) >= DETAIL_KEYS
    assert {key: detail[key] for key in DETAIL_KEYS - {"Text", "HTML"}} == {
        "ID": run.scene.ids["rich"], "MessageID": "rich-1@example.test",
        "From": address("alice@example.test", "Alice Example"),
        "To": [address("bob@example.test", "Bob"), address("carol@example.test")],
        "Cc": [address("dave@example.test", "Dave")], "Bcc": [address("secret@example.test")],
        "ReplyTo": [address("replies@example.test")], "ReturnPath": RICH_SENDER, "Subject": "Welcome aboard",
        "ListUnsubscribe": {"Header": "<mailto:unsubscribe@example.test>, <https://example.test/unsubscribe>",
                            "Links": ["mailto:unsubscribe@example.test", "https://example.test/unsubscribe"],
                            "Errors": "", "HeaderPost": ""},
        "Date": RICH_DATE_JSON, "Tags": TAGS, "Username": "", "Size": len(run.scene.raw("rich")),
        "Inline": [{"PartID": PARTS["logo"], "FileName": "logo@example.test", "ContentType": "image/png",
                    "ContentID": "logo@example.test", "Size": len(LOGO), "Checksums": checksums(LOGO)}],
        "Attachments": [
            {"PartID": PARTS["photo"], "FileName": "photo.png", "ContentType": "image/png", "ContentID": "",
             "Size": len(PHOTO), "Checksums": checksums(PHOTO)},
            {"PartID": PARTS["notes"], "FileName": "notes.txt", "ContentType": "text/plain", "ContentID": "",
             "Size": len(NOTES), "Checksums": checksums(NOTES)}]}
    assert detail["Text"].rstrip() == RICH_TEXT.format(base=base).rstrip()
    assert detail["HTML"].rstrip() == RICH_HTML.format(base=base)
    assert detail.get("Read") is True  # not in Mailpit's detail; the PyPI client needs it (lead's decision 2)
    assert run.after("getMessageSummary")["rich"]["Read"] is True
    assert run.value("getMessageSummary:latest")["ID"] == run.scene.ids["rich"]
    assert run.calls["getMessageSummary:unknown"].get("status") == 404, run.calls["getMessageSummary:unknown"]


def test_get_message_attachment(run: Run):
    """spec 1.9: the decoded part, with its media type."""
    assert blob(run.value("getMessageAttachment")) == ("image/png", PHOTO)
    assert blob(run.value("getMessageAttachment:text")) == ("text/plain", NOTES)


@pytest.mark.parametrize("label", ["getAttachmentThumbnail", "getAttachmentThumbnail:small",
                                   "getAttachmentThumbnail:not-image"])
def test_get_attachment_thumbnail(run: Run, label: str):
    """spec 1.10: always a 180x120 JPEG: a large image cropped, a small one padded, anything else blank."""
    kind, data = blob(run.value(label))
    assert (kind, jpeg_size(data)) == ("image/jpeg", (180, 120))


def test_render_message_html(run: Run):
    """spec 1.16: cid: images point at their part; embed=1 opens links in a new tab; no HTML part: 404."""
    rich = run.scene.ids["rich"]
    html = run.value("renderMessageHTML")
    assert f'src="/api/v1/message/{rich}/part/{PARTS["logo"]}"' in html
    assert "cid:" not in html and "Welcome aboard, Bob." in html
    embedded = run.value("renderMessageHTML:embed")
    assert embedded.count('target="_blank"') == embedded.count("<a ") == 3
    assert embedded.count('rel="noreferrer noopener"') == 3
    assert run.calls["renderMessageHTML:no-html"].get("status") == 404, run.calls["renderMessageHTML:no-html"]


def test_render_message_text(run: Run):
    assert run.value("renderMessageText").rstrip() == RICH_TEXT.format(base=run.scene.links.base).rstrip()
    assert run.value("renderMessageText:plain").rstrip() == "Plain body."


def test_html_check(run: Run):
    """spec 8.1: caniemail's verdict on the HTML (display:flex is one warning)."""
    check = run.value("htmlCheck")
    slugs = {warning["Slug"]: warning for warning in check["Warnings"]}
    flex = slugs["css-display-flex"]
    assert set(flex) == {"Slug", "Title", "Description", "URL", "Category", "Tags", "Keywords", "Results",
                         "NotesByNumber", "Score"}
    assert flex["Score"]["Found"] == 1 and flex["Category"] == "css"
    assert flex["Results"] and {result["Support"] for result in flex["Results"]} <= {"yes", "no", "partial"}
    total = check["Total"]
    assert total["Nodes"] == 8  # title body p div a a a img
    assert total["Tests"] >= 186
    assert abs(total["Supported"] + total["Partial"] + total["Unsupported"] - 100) < 0.01
    assert check["Platforms"] and all(isinstance(names, list) for names in check["Platforms"].values())


def test_link_check(run: Run):
    """spec 8.2: each link once, in order, by HEAD; redirects followed only when asked."""
    base = run.scene.links.base
    links = [{"URL": f"{base}/ok", "StatusCode": 200, "Status": "OK"},
             {"URL": f"{base}/missing", "StatusCode": 404, "Status": "Not Found"},
             {"URL": f"{base}/moved", "StatusCode": 301, "Status": "Moved Permanently"}]
    assert run.value("linkCheck") == {"Errors": 1, "Links": links}
    links[2].update(StatusCode=200, Status="OK")
    assert run.value("linkCheck:follow") == {"Errors": 1, "Links": links}
    assert {method for method, _ in run.scene.links.requests} == {"HEAD"}


def test_spam_assassin_check(run: Run):
    """spec 8.3: spamd's report of the stored message, scores floored to a tenth."""
    assert run.value("spamAssassinCheck") == {
        "IsSpam": True, "Error": "", "Score": 6.2,
        "Rules": [{"Score": points, "Name": name, "Description": text.replace("\n", " ")}
                  for points, name, text in RULES]}
    assert ("REPORT SPAMC/1.5", run.scene.raw("rich")) in run.scene.spamd.requests


def test_get_tags(run: Run):
    """spec 1.7: every tag name, case-insensitively sorted; unused tags disappear."""
    assert run.value("getTags") == TAGS
    assert run.value("getTags:after-set") == ["Alpha", "Beta", "delta tag", "Gamma"]
    assert run.value("getTags:after-clear") == TAGS


def test_set_tags(run: Run):
    """spec 4.3: the tags of the ids given are replaced; no tags removes them all."""
    assert run.value("setTags") == "ok"
    assert run.after("setTags")["ping1"]["Tags"] == ["delta tag", "Gamma"]
    assert run.value("setTags:clear") == "ok"
    assert run.after("setTags:clear")["ping1"]["Tags"] == []
    assert run.after("setTags:clear")["rich"]["Tags"] == TAGS


def test_rename_tag(run: Run):
    """spec 4.4: the name in the path is percent-encoded by the client (a space)."""
    assert run.value("renameTag") == "ok"
    assert run.after("renameTag")["ping1"]["Tags"] == ["Epsilon Tag", "Gamma"]


def test_delete_tag(run: Run):
    assert run.value("deleteTag") == "ok"
    assert run.after("deleteTag")["ping1"]["Tags"] == ["Gamma"]


@pytest.mark.parametrize(("label", "read"), [  # each call starts from a state the script set up
    ("setReadStatus", set()),  # no argument sends {}: every message unread (Read defaults to false)
    ("setReadStatus:ids", {"ping1"}),
    ("setReadStatus:search", {"ping2"}),  # Search: 'subject:"Ping 2"'
    ("setReadStatus:all-read", {"ping1", "ping2", "plain", "rich"}),
    ("setReadStatus:tz", set()),  # Search: after:2000-01-01 with ?tz=Pacific/Auckland, Read: false; all were read
])
def test_set_read_status(run: Run, label: str, read: set[str]):
    """spec 1.2: by ids, by search (with a time zone), or all."""
    assert run.value(label) == "ok"
    assert {name for name, state in run.after(label).items() if state["Read"]} == read


def test_release_message(run: Run):
    """spec 6 and the lead's decision 6: the upstream receives what the client sent, unchanged,
    from the From address, to the recipients given; ``latest`` works too (decision 3)."""
    assert run.value("releaseMessage") == "ok"
    assert run.value("releaseMessage:latest") == "ok"
    upstream = run.scene.upstream.store
    received = {trace.read(raw).rcpt_to: raw for raw in map(upstream.read, upstream.ids())}
    assert set(received) == {("relay-one@example.test",), ("relay-latest@example.test",)}
    for raw in received.values():
        assert trace.read(raw).mail_from == "alice@example.test"
        assert raw[trace.read(raw).length:] == run.scene.sent("rich")


def test_send_message(run: Run):
    """spec 5 (Mailpit's own TestAPIv1Send, with these values): the message as built and stored."""
    sent_id = run.value("sendMessage")["ID"]
    detail = run.value("getMessageSummary:sent")
    assert detail["ID"] == sent_id
    assert {key: detail[key] for key in ("From", "To", "Cc", "Bcc", "ReplyTo", "Subject", "Tags")} == {
        "From": address("john@example.test", "John Doe"), "To": [address("jane@example.test", "Jane Doe")],
        "Cc": [address("manager@example.test"), address("ceo@example.test", "The CEO")],
        "Bcc": [address("jack@example.test")], "ReplyTo": [address("secretary@example.test", "Secretary")],
        "Subject": "Sent through the API", "Tags": ["Tag 1", "Tag 2"]}
    assert detail["Text"].rstrip() == "Text body from the API."
    assert "<p>HTML body from the API.</p>" in detail["HTML"]
    assert [(a["FileName"], a["ContentType"], a["ContentID"]) for a in detail["Attachments"]] == [
        ("Attached File.txt", "text/plain", "")]
    assert [(a["FileName"], a["ContentType"], a["ContentID"]) for a in detail["Inline"]] == [
        ("logo.png", "overridden/type", "mailpit-logo")]
    assert blob(run.value("getMessageAttachment:sent"))[1] == b"This is a plain text attachment"
    headers = run.value("getMessageHeaders:sent")
    assert (headers["X-Ip"], headers["X-Tags"]) == (["1.2.3.4"], ["Tag 1, Tag 2"])
    source = run.value("getMessageSource:sent").encode()
    envelope = trace.read(source)
    assert (envelope.mail_from, envelope.rcpt_to) == (
        "john@example.test", ("jane@example.test", "manager@example.test", "ceo@example.test", "jack@example.test"))
    assert b"http" in source[:envelope.length].lower()  # the trace says it came from the HTTP API (decision 9)


def test_wait_for_message(run: Run):
    """Polls the search until a message matches, then reads it; one that never comes times out."""
    assert run.value("waitForMessage")["MessageID"] == "rich-1@example.test"
    late = run.calls["waitForMessage:late"]
    assert run.value("waitForMessage:late")["Subject"] == "Late arrival"
    assert late["ms"] >= 500  # it was waiting before the message was sent (over SMTP)
    assert run.value("waitForMessage:late")["MessageID"] == "late@example.test"
    timeout = run.calls["waitForMessage:timeout"]
    assert not timeout["ok"]
    assert timeout["error"] == 'Timeout waiting for messages matching query "subject:nothing-has-this-subject"'


def test_wait_for_messages(run: Run):
    """Polls until ``messages_count`` is reached: of a search, or of the whole list."""
    matches = run.value("waitForMessages")
    assert (matches["messages_count"], [m["ID"] for m in matches["messages"]]) == (2, run.ids("ping2", "ping1"))
    everything = run.value("waitForMessages:list")  # no query: the list; count: what the mailbox holds, exact
    count = run.calls["waitForMessages:list"]["args"][0]["count"]
    assert count >= 5  # the four sent first, and the late one
    assert everything["messages_count"] == everything["total"] == count
    assert run.value("waitForMessages:empty")["messages_count"] == 0


def test_delete_messages(run: Run):
    """spec 1.3, 1.5: by ids, by search, all (no body); the files go too."""
    for label, gone in (("deleteMessages:ids", "ping1"), ("deleteMessagesBySearch", "ping2")):
        assert run.value(label) == "ok"
        before = run.after(label, "before")
        assert gone in before
        assert run.after(label) == {name: state for name, state in before.items() if name != gone}
    assert run.value("deleteMessages") == "ok"
    assert run.after("deleteMessages") == {}
    assert list(run.scene.sink.store.glob("*.eml")) == []


def test_chaos(run: Run):
    """spec 7: triggers read and set (a trigger left out is reset); the one left on refuses RCPT."""
    assert run.value("getChaosTriggers") == CHAOS_DEFAULTS
    assert run.value("setChaosTriggers:auth") == {
        **CHAOS_DEFAULTS, "Authentication": {"ErrorCode": 535, "Probability": 50}}
    assert run.value("setChaosTriggers") == CHAOS_DEFAULTS
    recipient = {**CHAOS_DEFAULTS, "Recipient": {"ErrorCode": 452, "Probability": 100}}
    assert run.value("setChaosTriggers:recipient") == recipient
    assert run.value("getChaosTriggers:after") == recipient
    with smtplib.SMTP("127.0.0.1", run.scene.sink.port, timeout=10) as smtp:
        smtp.ehlo()
        assert smtp.mail("app@example.test")[0] == 250
        assert smtp.rcpt("bob@example.test")[0] == 452
