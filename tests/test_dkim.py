"""DKIM and alignment, offline (issue 17 part 5): messages signed in the test with dkimpy and a key
made with cryptography, sent over SMTP with smtplib, then verified by the API
(``GET /api/v1/message/{id}/dkim``), the CLI (``smtp-sink dkim``), the pytest plugin
(``message.dkim``) and the check itself, with the public key given in ``[checks]``, never DNS."""

from __future__ import annotations

import base64
import dataclasses
import json
import smtplib
import textwrap
import time
import types
from pathlib import Path

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from dkim.canonicalization import CanonicalizationPolicy
from dkim.crypto import HASH_ALGORITHMS, parse_pem_private_key
from support.config import make_config
from support.http import get_json, request
from support.processes import run_cli
from support.servers import Servers

from smtp_sink.checks import dkim_check
from smtp_sink.config import ChecksConfig, ConfigError, load
from smtp_sink.server import SinkServer

pytest_plugins = ["pytester"]

SELECTOR = "s1"
KEY_NAME = "s1._domainkey.example.com"
MESSAGE = (b"From: Ann <ann@example.com>\r\nTo: bob@example.test\r\nSubject: Your invoice\r\n"
           b"Date: Mon, 30 Nov 2026 12:00:00 +0000\r\nMessage-ID: <1@example.com>\r\n\r\n"
           b"Hello Bob,\r\nthe invoice.\r\n")
SIGNED = [b"from", b"to", b"subject", b"date", b"message-id"]


@dataclasses.dataclass(frozen=True)
class Key:
    private: bytes  # PEM, as dkim.sign takes it
    record: str  # the DNS TXT record: v=DKIM1; k=rsa; p=...


@pytest.fixture(scope="module")
def key() -> Key:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                serialization.NoEncryption())
    der = private.public_key().public_bytes(serialization.Encoding.DER,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)
    return Key(pem, f"v=DKIM1; k=rsa; p={base64.b64encode(der).decode()}")


def sign(key: Key, message: bytes = MESSAGE, domain: str = "example.com", headers: list[bytes] = SIGNED,
         length: bool = False) -> bytes:
    """``message`` with a DKIM-Signature made by dkimpy."""
    return dkim.sign(message, SELECTOR.encode(), domain.encode(), key.private, include_headers=headers,
                     length=length) + message


def sign_with_tags(key: Key, message: bytes, headers: list[bytes], **tags: bytes) -> bytes:
    """A signature with tags ``dkim.sign`` does not write (``x=``, a past ``t=``) or refuses (no From):
    made by dkimpy's own header generator, as ``dkim.sign`` does it."""
    signer = dkim.DKIM(message)
    signer.hasher = HASH_ALGORITHMS[b"rsa-sha256"]
    canon = CanonicalizationPolicy.from_c_value(b"relaxed/simple")
    body_hash = base64.b64encode(signer.hasher(canon.canonicalize_body(signer.body)).digest())
    fields = [(b"v", b"1"), (b"a", b"rsa-sha256"), (b"c", b"relaxed/simple"), (b"d", b"example.com"),
              (b"s", SELECTOR.encode()), *((name.encode(), value) for name, value in tags.items()),
              (b"h", b" : ".join(headers)), (b"bh", body_hash), (b"b", b"0" * 60)]
    header = signer.gen_header(fields, headers, canon, b"DKIM-Signature", parse_pem_private_key(key.private))
    return b"DKIM-Signature: " + header + message


def send(server: SinkServer, data: bytes, sender: str = "bounce@example.com") -> str:
    """One message over SMTP (smtplib); the id the 250 reply names."""
    with smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=10) as smtp:
        smtp.ehlo("mail.example.com")
        smtp.mail(sender)
        smtp.rcpt("bob@example.test")
        code, reply = smtp.data(data)
    assert code == 250, reply
    return reply.decode().split()[-1]


@pytest.fixture
def dkim_server(start_server: Servers, key: Key) -> SinkServer:
    """A server with HTTP on and the test key in [checks] dkim_keys."""
    config = make_config(start_server.store, http=True)
    return start_server(config=dataclasses.replace(config, checks=ChecksConfig(dkim_keys={KEY_NAME: key.record})))


def report(server: SinkServer, message_id: str) -> dict:
    return get_json(server, f"/api/v1/message/{message_id}/dkim")


def checks(signature: dict) -> list[str]:
    return [finding["Check"] for finding in signature["Findings"]]


def test_a_signed_message_verifies_and_aligns(dkim_server: SinkServer, key: Key) -> None:
    found = report(dkim_server, send(dkim_server, sign(key)))
    assert (found["Valid"], found["Aligned"], found["FromDomain"], found["ReturnPath"]) == (
        True, True, "example.com", "bounce@example.com")
    (signature,) = found["Signatures"]
    assert {k: signature[k] for k in ("Domain", "Selector", "Algorithm", "Canonicalization", "Key", "Result",
                                      "Valid", "BodyLength", "Expires")} == {
        "Domain": "example.com", "Selector": "s1", "Algorithm": "rsa-sha256", "Canonicalization": "relaxed/simple",
        "Key": KEY_NAME, "Result": "pass", "Valid": True, "BodyLength": None, "Expires": None}
    assert signature["SignedHeaders"] == ["from", "to", "subject", "date", "message-id"]
    assert signature["Alignment"] == {"From": {"Relaxed": True, "Strict": True},
                                      "ReturnPath": {"Relaxed": True, "Strict": True}}
    assert signature["Findings"] == [] and found["Findings"] == []
    assert abs(signature["Timestamp"] - time.time()) < 600
    assert report(dkim_server, "latest") == found


def test_a_changed_body_is_a_body_hash_mismatch(dkim_server: SinkServer, key: Key) -> None:
    data = sign(key).replace(b"the invoice.", b"the invoice, now with a new bank account.")
    (signature,) = report(dkim_server, send(dkim_server, data))["Signatures"]
    assert (signature["Result"], signature["Valid"]) == ("fail", False)
    assert signature["Reason"].startswith("body hash mismatch: the body changed after signing")
    assert checks(signature) == ["dkim-body-hash-mismatch"]


def test_a_changed_signed_header_fails_the_signature(dkim_server: SinkServer, key: Key) -> None:
    data = sign(key).replace(b"Subject: Your invoice", b"Subject: Your URGENT invoice")
    found = report(dkim_server, send(dkim_server, data))
    (signature,) = found["Signatures"]
    assert (signature["Result"], found["Valid"], found["Aligned"]) == ("fail", False, False)
    assert "does not match the signed headers" in signature["Reason"]
    assert checks(signature) == ["dkim-bad-signature"]


def test_an_unsigned_subject_and_an_added_header_are_warnings(dkim_server: SinkServer, key: Key) -> None:
    data = sign(key, headers=[b"from", b"date", b"message-id"])
    data = data.replace(b"From: Ann", b"To: eve@example.test\r\nFrom: Ann")  # a second To, after signing
    (signature,) = report(dkim_server, send(dkim_server, data))["Signatures"]
    assert signature["Result"] == "pass"  # what is not signed can change: the signature still holds
    evidence = {f["Evidence"].split(" ")[0]: (f["Check"], f["Severity"], f["Reference"]) for f in signature["Findings"]}
    assert evidence == {"subject": ("dkim-header-not-signed", "warning", "RFC 6376 section 5.4.1"),
                        "to": ("dkim-header-not-signed", "warning", "RFC 6376 section 5.4.1")}

    data = sign(key)
    data = data.replace(b"From: Ann", b"Subject: Pay now\r\nFrom: Ann")  # a second Subject, unsigned
    (signature,) = report(dkim_server, send(dkim_server, data))["Signatures"]
    assert checks(signature) == ["dkim-header-not-signed"] and signature["Result"] == "pass"
    assert "subject appears 2 times and is signed 1 time(s)" in signature["Findings"][0]["Evidence"]


def test_from_must_be_signed(dkim_server: SinkServer, key: Key) -> None:
    data = sign_with_tags(key, MESSAGE, [b"to", b"subject"], t=str(int(time.time())).encode())
    (signature,) = report(dkim_server, send(dkim_server, data))["Signatures"]
    assert (signature["Result"], signature["Valid"]) == ("permerror", False)
    assert signature["Reason"] == "From is not signed: the signature is ignored"
    assert "dkim-from-not-signed" in checks(signature)
    assert signature["Findings"][0]["Severity"] == "error"


def test_body_length_l_is_reported(dkim_server: SinkServer, key: Key) -> None:
    data = sign(key, length=True) + b"PS: appended by someone else\r\n"
    (signature,) = report(dkim_server, send(dkim_server, data))["Signatures"]
    assert signature["Result"] == "pass" and signature["BodyLength"] == len(b"Hello Bob,\r\nthe invoice.\r\n")
    assert checks(signature) == ["dkim-body-length"]
    assert signature["Findings"][0]["Evidence"].startswith("l=26: only the first 26 bytes")


def test_an_expired_signature_is_reported(dkim_server: SinkServer, key: Key) -> None:
    past = int(time.time()) - 30 * 86400
    data = sign_with_tags(key, MESSAGE, SIGNED, t=str(past).encode(), x=str(past + 86400).encode())
    (signature,) = report(dkim_server, send(dkim_server, data))["Signatures"]
    assert (signature["Result"], signature["Expires"]) == ("fail", past + 86400)
    assert signature["Reason"] == f"the signature expired (x={past + 86400})"
    assert checks(signature) == ["dkim-expired"]
    future = int(time.time()) + 86400
    data = sign_with_tags(key, MESSAGE, SIGNED, t=str(past).encode(), x=str(future).encode())
    (signature,) = report(dkim_server, send(dkim_server, data))["Signatures"]
    assert (signature["Result"], signature["Expires"]) == ("pass", future)


def test_a_missing_key_is_reported_and_dns_never_asked(dkim_server: SinkServer, key: Key) -> None:
    data = sign(key, domain="other.example")  # s1._domainkey.other.example: not configured
    found = report(dkim_server, send(dkim_server, data, sender="bounce@other.example"))
    (signature,) = found["Signatures"]
    assert (signature["Result"], signature["Key"], found["Valid"]) == ("no-key", "s1._domainkey.other.example", False)
    assert signature["Reason"] == ("no key s1._domainkey.other.example in [checks] dkim_keys or dkim_keys_file "
                                   "(DNS is never asked); the body hash matches")
    assert checks(signature) == ["dkim-key-missing"]
    unsigned = report(dkim_server, send(dkim_server, MESSAGE))
    assert unsigned["Signatures"] == [] and [f["Check"] for f in unsigned["Findings"]] == ["dkim-unsigned"]


def test_alignment_relaxed_and_strict(dkim_server: SinkServer, key: Key) -> None:
    sub = MESSAGE.replace(b"ann@example.com", b"ann@news.example.com")
    found = report(dkim_server, send(dkim_server, sign(key, sub), sender="bounce@mail.example.com"))
    (signature,) = found["Signatures"]
    assert found["FromDomain"] == "news.example.com" and found["Aligned"] is True
    assert signature["Alignment"] == {"From": {"Relaxed": True, "Strict": False},
                                      "ReturnPath": {"Relaxed": True, "Strict": False}}
    other = MESSAGE.replace(b"ann@example.com", b"ann@example.org")
    found = report(dkim_server, send(dkim_server, sign(key, other), sender="bounce@esp.example.net"))
    (signature,) = found["Signatures"]
    assert (signature["Result"], found["Valid"], found["Aligned"]) == ("pass", True, False)
    assert signature["Alignment"] == {"From": {"Relaxed": False, "Strict": False},
                                      "ReturnPath": {"Relaxed": False, "Strict": False}}
    assert checks(signature) == ["dkim-not-aligned"]


@pytest.mark.parametrize(("domain", "organisation"), [
    ("example.com", "example.com"), ("a.b.example.com", "example.com"), ("shop.example.co.uk", "example.co.uk"),
    ("example.co.uk", "example.co.uk"), ("x.example.com.au", "example.com.au"), ("EXAMPLE.COM.", "example.com"),
    ("a.example.de", "example.de"), ("com", "com"),
])
def test_organisational_domain(domain: str, organisation: str) -> None:
    assert dkim_check.organisational_domain(domain) == organisation


def test_the_cli_reports_and_exits_1_unless_all_pass(dkim_server: SinkServer, key: Key, tmp_path: Path) -> None:
    good = send(dkim_server, sign(key))
    bad = send(dkim_server, sign(key).replace(b"Hello Bob", b"Hello Eve"))
    keys = tmp_path / "keys.toml"
    keys.write_text(f'"{KEY_NAME}" = "{key.record}"\n')
    store = dkim_server.store.path
    done = run_cli("dkim", good, "--keys-file", str(keys), store=store)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[1] == "DKIM pass; aligned with From (DMARC relaxed): yes"
    assert lines[2] == "signature 1: PASS d=example.com s=s1 a=rsa-sha256 c=relaxed/simple"
    assert "  signed headers: from, to, subject, date, message-id" in lines
    done = run_cli("dkim", bad, "--keys-file", str(keys), "--json", store=store)
    assert done.returncode == 1
    assert json.loads(done.stdout)["Signatures"][0]["Result"] == "fail"
    done = run_cli("dkim", good, store=store)  # no key given: the CLI reads no server's settings
    assert done.returncode == 1 and "NO-KEY" in done.stdout
    keys.write_text('"nonsense" = "v=DKIM1; p=x"\n')
    done = run_cli("dkim", good, "--keys-file", str(keys), store=store)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == f'smtp-sink: {keys}."nonsense": expected a key name such as "mail._domainkey.example.com" ' \
                          "(selector._domainkey.domain)\n"


def test_config_errors_name_the_key_and_the_file(tmp_path: Path, key: Key) -> None:
    config = tmp_path / "smtp-sink.toml"
    config.write_text('[checks]\ndkim_keys = { "s1._domainkey.example.com" = "v=DKIM1; k=rsa" }\n')
    with pytest.raises(ConfigError, match=r'^\[checks\] dkim_keys."s1._domainkey.example.com": expected a DKIM key '
                                          r'record "v=DKIM1; k=rsa; p=<base64>"'):
        load(config, environ={})
    config.write_text(f'[checks]\ndkim_keys_file = "{tmp_path}/missing.toml"\n')
    with pytest.raises(ConfigError, match=rf"^\[checks\] dkim_keys_file: {tmp_path}/missing.toml: cannot read: "):
        load(config, environ={})
    keys = tmp_path / "keys.toml"
    keys.write_text("not = toml = at all\n")
    config.write_text(f'[checks]\ndkim_keys_file = "{keys}"\n')
    with pytest.raises(ConfigError, match=rf"^\[checks\] dkim_keys_file: {keys}: invalid TOML"):
        load(config, environ={})
    keys.write_text(f'"S1._domainkey.Example.com." = "{key.record}"\n')
    loaded = load(config, environ={}).checks
    assert dkim_check.keys_of(loaded.dkim_keys, loaded.dkim_keys_file) == {KEY_NAME: key.record}


def test_the_pytest_plugin_gives_message_dkim(pytester: pytest.Pytester, key: Key) -> None:
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makepyfile(test_inner=textwrap.dedent(f'''
        import smtplib
        import pytest

        SIGNED = {sign(key)!r}

        @pytest.mark.smtp_sink(checks={{"dkim_keys": {{"{KEY_NAME}": "{key.record}"}}}})
        def test_signed_mail(smtp_sink):
            with smtplib.SMTP(smtp_sink.host, smtp_sink.port) as smtp:
                smtp.sendmail("bounce@example.com", ["bob@example.test"], SIGNED)
            mail = smtp_sink.wait_for(to="bob@example.test")
            assert mail.dkim.valid and mail.dkim.aligned and not mail.dkim.errors
            assert mail.dkim.signatures[0].domain == "example.com"

        def test_without_the_key(smtp_sink):
            with smtplib.SMTP(smtp_sink.host, smtp_sink.port) as smtp:
                smtp.sendmail("bounce@example.com", ["bob@example.test"], SIGNED)
            mail = smtp_sink.wait_for(to="bob@example.test")
            assert not mail.dkim.valid
            assert [f.check for f in mail.dkim.errors] == ["dkim-key-missing"]
    '''))
    pytester.runpytest("-p", "no:cacheprovider", "-p", "no:hypothesispytest").assert_outcomes(passed=2)


# -- bounded on hostile input -------------------------------------------------------------------------

SECONDS = 2.0


@pytest.mark.parametrize(("make", "verified"), [
    (lambda data: data.replace(b"the invoice.", b"the invoice." + b" " * 200_000 + b"x"), False),
    (lambda data: data.replace(b"the invoice.", b"the invoice." + (b" " * 63 + b"x") * 60_000), True),
    (lambda data: data.replace(b"Subject: Your invoice", b"Subject: x" + b"\r\n y" * 300_000), False),
    (lambda data: data.replace(b"h=", b"h=" + b"x:" * 30_000, 1), False),
    (lambda data: data, True),
], ids=["200k-spaces", "short-space-runs", "300k-folded-lines", "30k-signed-names", "plain"])
def test_hostile_messages_verify_in_bounded_time(key: Key, make, verified: bool) -> None:
    data = make(sign(key))
    signatures = data.split(b"\r\n\r\n")[0].count(b"DKIM-Signature:")
    started = time.process_time()
    found = dkim_check.verify(data, {KEY_NAME: key.record})
    assert time.process_time() - started < SECONDS
    assert len(found.signatures) == signatures == 1
    assert (found.signatures[0].result != "not-verified") == verified, found.signatures[0].reason


def test_at_most_max_signatures_are_verified(key: Key) -> None:
    data = MESSAGE
    for _ in range(dkim_check.MAX_SIGNATURES + 4):
        data = sign(key, data)
    found = dkim_check.verify(data, {KEY_NAME: key.record})
    assert len(found.signatures) == dkim_check.MAX_SIGNATURES and all(s.valid for s in found.signatures)
    assert [f.check for f in found.findings] == ["dkim-not-verified"]


def test_a_key_file_error_is_an_api_error(start_server: Servers, key: Key, tmp_path: Path) -> None:
    keys = tmp_path / "keys.toml"
    keys.write_text(f'"{KEY_NAME}" = "{key.record}"\n')
    config = make_config(start_server.store, http=True)
    server = start_server(config=dataclasses.replace(config, checks=ChecksConfig(dkim_keys_file=str(keys))))
    message_id = send(server, sign(key))
    assert report(server, message_id)["Valid"] is True
    keys.write_text("broken = \n")
    status, _, body = request(server, f"/api/v1/message/{message_id}/dkim")
    assert status == 500 and json.loads(body)["Error"].startswith(f"[checks] dkim_keys_file: {keys}: invalid TOML")
    status, _, body = request(server, "/api/v1/message/01ZZZZZZZZZZZZZZZZZZZZZZZZ/dkim")
    assert status == 404


class _Ed25519Signer:
    """What dkimpy's header generator calls for ed25519-sha256 (PyNaCl's ``SigningKey.sign``), made
    with cryptography: the test signs without PyNaCl, as an ed25519 sender would."""

    def __init__(self, private: Ed25519PrivateKey) -> None:
        self.private = private

    def sign(self, data: bytes) -> types.SimpleNamespace:
        return types.SimpleNamespace(signature=self.private.sign(data))


def test_an_ed25519_signature_says_pynacl_is_needed(start_server: Servers) -> None:
    private = Ed25519PrivateKey.generate()
    public = private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    signer = dkim.DKIM(MESSAGE, signature_algorithm=b"ed25519-sha256")
    signer.hasher = HASH_ALGORITHMS[b"ed25519-sha256"]
    canon = CanonicalizationPolicy.from_c_value(b"relaxed/simple")
    body_hash = base64.b64encode(signer.hasher(canon.canonicalize_body(signer.body)).digest())
    fields = [(b"v", b"1"), (b"a", b"ed25519-sha256"), (b"c", b"relaxed/simple"), (b"d", b"example.com"),
              (b"s", b"ed"), (b"h", b" : ".join(SIGNED)), (b"bh", body_hash), (b"b", b"0" * 60)]
    header = signer.gen_header(fields, SIGNED, canon, b"DKIM-Signature", _Ed25519Signer(private))
    record = f"v=DKIM1; k=ed25519; p={base64.b64encode(public).decode()}"
    config = make_config(start_server.store, http=True)
    server = start_server(config=dataclasses.replace(
        config, checks=ChecksConfig(dkim_keys={"ed._domainkey.example.com": record})))
    found = report(server, send(server, b"DKIM-Signature: " + header + MESSAGE))
    (signature,) = found["Signatures"]
    assert (signature["Algorithm"], signature["Result"]) == ("ed25519-sha256", "permerror")
    assert signature["Reason"] == "key ed._domainkey.example.com: ed25519 keys need PyNaCl (pip install pynacl)"
    assert checks(signature) == ["dkim-key-invalid"]


def test_sha1_is_weak_and_a_broken_signature_is_malformed(dkim_server: SinkServer, key: Key) -> None:
    data = dkim.sign(MESSAGE, b"s1", b"example.com", key.private, include_headers=SIGNED,
                     signature_algorithm=b"rsa-sha1") + MESSAGE
    (signature,) = report(dkim_server, send(dkim_server, data))["Signatures"]
    assert (signature["Result"], signature["Algorithm"]) == ("pass", "rsa-sha1")
    assert checks(signature) == ["dkim-weak-algorithm"]
    data = b"DKIM-Signature: v=1; a=rsa-sha256; d=example.com; h=from; bh=AAAA; b=AAAA\r\n" + MESSAGE  # no s=
    (signature,) = report(dkim_server, send(dkim_server, data))["Signatures"]
    assert (signature["Result"], signature["Reason"]) == ("permerror", "the DKIM-Signature is invalid: missing s=")
    assert checks(signature)[-1] == "dkim-malformed"
