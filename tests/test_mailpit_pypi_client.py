"""The PyPI Mailpit client ``mailpit-api-client`` (the version pyproject.toml pins) against
``smtp-sink serve``: every call of its ``mailpit.client.api.API``, and its test helpers
(``mailpit.testing.unittest.EMailTestCase``, the ``mailpit_api`` pytest fixture), as a test suite
written for Mailpit uses them.

The scene is the npm client's (``support.mailpit_scene``): the server as a real process and four
messages sent over SMTP. The client parses every answer into its dataclasses (a missing key is a
``KeyError``) and raises on any 4xx/5xx; each test checks the parsed values.

Two of its calls send form-encoded bodies (``ids=a&ids=b``, ``Read=true``) where Mailpit expects
JSON: Mailpit itself deletes *everything* for the first and answers 400 to the second (spec 11.2);
smtp-sink reads them as meant (the lead's decision 4), so they are checked here for that.
"""

from __future__ import annotations

import subprocess
import sys
import unittest
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from mailpit.client.api import API
from mailpit.client.models import Attachment, Contact, Message
from mailpit.testing.unittest import EMailTestCase
from support.mailpit_scene import LOGO, NOTES, PARTS, PHOTO, RICH_HTML, RICH_TEXT, Scene, mailpit_scene
from support.processes import clean_env


@pytest.fixture
def scene(tmp_path: Path) -> Iterator[Scene]:
    with mailpit_scene(tmp_path) as started:
        yield started


@pytest.fixture
def api(scene: Scene) -> API:
    return API(scene.base_url, timeout=10)


def listed(api: API) -> dict[str, bool]:
    """Every message's id and read flag, as the client lists them."""
    return {message.id: message.read for message in api.get_messages(limit=1000).messages}


def test_get_messages(api: API, scene: Scene):
    page = api.get_messages()
    assert (page.total, page.unread, page.count, page.start) == (4, 4, 4, 0)
    newest_first = ("rich", "plain", "ping2", "ping1")
    assert [message.id for message in page.messages] == [scene.ids[name] for name in newest_first]
    rich = page.messages[0]
    assert (rich.message_id, rich.read, rich.subject, rich.size, rich.attachments) == (
        "rich-1@example.test", False, "Welcome aboard", len(scene.raw("rich")), 2)
    assert rich.from_ == Contact("Alice Example", "alice@example.test")
    assert rich.to == [Contact("Bob", "bob@example.test"), Contact("", "carol@example.test")]
    assert (rich.cc, rich.bcc) == ([Contact("Dave", "dave@example.test")], [Contact("", "secret@example.test")])
    assert abs(datetime.now(timezone.utc) - rich.created) < timedelta(minutes=5)  # Created parsed, with its zone

    second = api.get_messages(limit=2, start=1)
    assert (second.start, second.count, second.total) == (1, 2, 4)
    assert [message.id for message in second.messages] == [scene.ids["plain"], scene.ids["ping2"]]


def test_get_message(api: API, scene: Scene):
    message = api.get_message(scene.ids["rich"])
    assert (message.id, message.message_id, message.read, message.subject) == (
        scene.ids["rich"], "rich-1@example.test", True, "Welcome aboard")
    assert message.date == datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=13)))
    assert message.from_ == Contact("Alice Example", "alice@example.test")
    assert (message.cc, message.bcc) == ([Contact("Dave", "dave@example.test")], [Contact("", "secret@example.test")])
    assert message.text.rstrip() == RICH_TEXT.format(base=scene.links.base).rstrip()
    assert message.html.rstrip() == RICH_HTML.format(base=scene.links.base)
    assert message.size == len(scene.raw("rich"))
    assert message.attachments == [Attachment(PARTS["photo"], "photo.png", "image/png", "", len(PHOTO)),
                                   Attachment(PARTS["notes"], "notes.txt", "text/plain", "", len(NOTES))]
    assert message.inline == [Attachment(PARTS["logo"], "logo@example.test", "image/png", "logo@example.test",
                                         len(LOGO))]
    assert isinstance(message, Message) and message == api.get_message(scene.ids["rich"])  # its own __eq__


def test_get_message_headers(api: API, scene: Scene):
    """The model needs Content-Type, Date, Delivered-To, From and Message-Id, as Go spells them."""
    headers = api.get_message_headers(scene.ids["rich"])
    assert headers.content_type[0].startswith("multipart/mixed;")
    assert headers.date == [datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=13)))]
    assert (headers.delivered_to, headers.from_, headers.message_id) == (
        ["bob@example.test"], ["Alice Example <alice@example.test>"], ["<rich-1@example.test>"])
    assert (headers.additional["X-Tags"], headers.additional["Mime-Version"]) == (["Alpha, Beta"], ["1.0"])


def test_get_message_attachment(api: API, scene: Scene):
    assert api.get_message_attachment(scene.ids["rich"], PARTS["notes"]) == NOTES.decode()


def test_put_messages_marks_exactly_the_ids_given(api: API, scene: Scene):
    """A form body, ``ids=<id>&Read=true``: Mailpit answers 400; smtp-sink marks that message."""
    ping1 = scene.ids["ping1"]
    api.put_messages([ping1], "Read", True)
    assert listed(api) == {message_id: message_id == ping1 for message_id in scene.ids.values()}
    api.put_messages([ping1], "Read", False)
    assert not any(listed(api).values())


def test_delete_messages_deletes_exactly_the_ids_given(api: API, scene: Scene):
    """A form body, ``ids=a&ids=b``: Mailpit deletes every message; smtp-sink those two. An empty
    list sends no body: every message."""
    api.delete_messages([scene.ids["ping1"], scene.ids["ping2"]])
    assert set(listed(api)) == {scene.ids["plain"], scene.ids["rich"]}
    assert sorted(path.stem for path in scene.sink.store.glob("*.eml")) == sorted(set(listed(api)))
    api.delete_messages([])
    assert listed(api) == {}
    assert list(scene.sink.store.glob("*.eml")) == []


def test_unittest_helpers(scene: Scene):
    """``EMailTestCase``: assertMessageReceived looks for an RFC Message-ID among the listed messages."""
    class Received(EMailTestCase):
        api_url = scene.base_url

        def test_received(self) -> None:
            self.assertMessageReceived("rich-1@example.test")
            with self.assertRaises(self.failureException):
                self.assertMessageReceived("never-sent@example.test")

        def test_equal(self) -> None:
            assert self.mailpit_api is not None
            self.assertMessageEqual(self.mailpit_api.get_message(scene.ids["rich"]),
                                    self.mailpit_api.get_message(scene.ids["rich"]))

    result = unittest.TextTestRunner(stream=sys.stderr, verbosity=0).run(
        unittest.defaultTestLoader.loadTestsFromTestCase(Received))
    assert (result.testsRun, result.failures, result.errors) == (2, [], [])


INNER_TEST = '''
import os
import pytest

pytest_plugins = ["mailpit.testing.pytest"]


@pytest.mark.parametrize("mailpit_api", [os.environ["MAILPIT_URL"]], indirect=True)
def test_mailbox(mailpit_api):
    assert mailpit_api.get_messages().total == 4
'''


def test_pytest_fixture(scene: Scene, tmp_path: Path):
    """The ``mailpit_api`` fixture in a pytest run of its own: at the end of the session it deletes the
    messages it lists (the first 50), with a form body; all four here."""
    inner = tmp_path / "inner"
    inner.mkdir()
    (inner / "test_inner.py").write_text(INNER_TEST)
    (inner / "pytest.ini").write_text("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    command = [sys.executable, "-m", "pytest", "-q", "--tb=short", "-p", "no:cacheprovider", "test_inner.py"]
    done = subprocess.run(command, cwd=inner, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
                          env=clean_env(MAILPIT_URL=scene.base_url, PYTEST_ADDOPTS=""))
    assert done.returncode == 0, done.stdout[-1500:] + done.stderr[-1500:]  # the end says what failed
    assert "1 passed" in done.stdout and "error" not in done.stdout.lower(), done.stdout[-1500:]
    assert list(scene.sink.store.glob("*.eml")) == []
