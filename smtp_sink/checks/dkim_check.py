"""The DKIM check: each ``DKIM-Signature`` of a captured message verified with dkimpy against the
public keys the user supplies (:mod:`smtp_sink.checks.dkim_keys`), never DNS, and its alignment
with the ``From`` domain and the envelope sender (DMARC, RFC 7489 section 3.1.1).

What is reported per signature: ``Result`` (``pass``, ``fail``, ``no-key``, ``permerror`` for a
signature that cannot be read or used, ``not-verified`` past the bounds below) and why, the tags
(``d=``, ``s=``, ``a=``, ``c=``, ``h=``, ``l=``, ``t=``, ``x=``), whether ``d=`` aligns, and
:class:`~smtp_sink.findings.Finding` s with stable check names (see docs/dkim.md).

Organisational domain (for relaxed alignment): the last two labels of the domain, or the last
three when the last is a two-letter country code and the one before it a common second-level
name (``co``, ``com``, ``org``, ``net``, ``ac``, ``gov``, ``edu``, ``ne``, ``or``, ``go``: so
``shop.example.co.uk`` is in ``example.co.uk``). It is not the Public Suffix List: a domain
under a private suffix (``*.github.io``...) is taken as its own organisation's subdomain.

dkimpy is quadratic on some input (its relaxed body canonicalisation on long runs of spaces, its
header parser on many folded lines), so a message is verified only within :data:`MAX_BYTES`,
:data:`MAX_HEADER_BYTES`, :data:`MAX_SIGNATURES`, :data:`MAX_SIGNED_HEADERS` and a budget for runs
of white space (:data:`SPACE_RUN_BUDGET`); past them the report says ``not-verified`` and why.
Callers run it off the event loop (the web app's reader threads).
"""

from __future__ import annotations

import base64
import email.utils
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import dkim
from dkim.canonicalization import CanonicalizationPolicy
from dkim.crypto import HASH_ALGORITHMS
from dkim.util import InvalidTagValueList, parse_tag_value

from .. import trace
from ..findings import Finding
from .dkim_keys import check_keys, key_name, read_keys_file

__all__ = ["Report", "Signature", "keys_of", "organisational_domain", "verify"]

MAX_BYTES = 32 * 1024 * 1024  # message bytes verified (the default [smtp] max_message_size)
MAX_HEADER_BYTES = 64 * 1024  # header block bytes (dkimpy joins folded lines quadratically)
MAX_SIGNATURES = 8  # DKIM-Signature fields verified (each hashes the body again)
MAX_SIGNED_HEADERS = 256  # names in one h= tag (each is searched among the headers)
SPACE_RUN = 64  # runs of spaces and tabs at least this long count against the budget below
SPACE_RUN_BUDGET = 50_000_000  # the sum of their squared lengths (dkimpy's relaxed body is quadratic in them)
# Headers a signature should cover when the message has them (RFC 6376 section 5.4.1): not
# covering one is a warning, as anyone on the way may change it.
SHOULD_SIGN = ("subject", "to", "cc", "date", "message-id", "reply-to", "content-type", "mime-version")
RFC_DKIM = "RFC 6376"
REASON_MAX = 500  # characters of a signature's Reason (dkimpy quotes tag values in its errors)
_SECOND_LEVEL = frozenset({"co", "com", "org", "net", "ac", "gov", "edu", "ne", "or", "go"})
_SPACES_RE = re.compile(rb"[\t ]{%d,}" % SPACE_RUN)
_BLANK_RE = re.compile(rb"\r?\n\r?\n")
_FROM_LIMIT = 2048  # characters of the From header read for its address
_quiet = logging.getLogger("smtp_sink.dkim")
_quiet.addHandler(logging.NullHandler())
_quiet.propagate = False


@dataclass
class Signature:
    """One ``DKIM-Signature`` field and what its verification found."""

    domain: str = ""  # d=
    selector: str = ""  # s=
    algorithm: str = ""  # a=
    canonicalization: str = ""  # c= (simple/simple when absent)
    identity: str = ""  # i=
    signed_headers: list[str] = field(default_factory=list)  # h=, lower case, in order
    body_length: int | None = None  # l=
    timestamp: int | None = None  # t=
    expires: int | None = None  # x=
    key: str = ""  # the key's name: s._domainkey.d
    result: str = "permerror"  # pass, fail, no-key, permerror, not-verified
    reason: str = ""
    from_aligned_relaxed: bool = False
    from_aligned_strict: bool = False
    return_path_aligned_relaxed: bool = False
    return_path_aligned_strict: bool = False
    findings: list[Finding] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        """The signature verified."""
        return self.result == "pass"

    def to_json(self) -> dict[str, Any]:
        """The API's shape."""
        return {
            "Domain": self.domain, "Selector": self.selector, "Algorithm": self.algorithm,
            "Canonicalization": self.canonicalization, "Identity": self.identity,
            "SignedHeaders": self.signed_headers, "BodyLength": self.body_length, "Timestamp": self.timestamp,
            "Expires": self.expires, "Key": self.key, "Result": self.result, "Valid": self.valid,
            "Reason": self.reason,
            "Alignment": {"From": {"Relaxed": self.from_aligned_relaxed, "Strict": self.from_aligned_strict},
                          "ReturnPath": {"Relaxed": self.return_path_aligned_relaxed,
                                         "Strict": self.return_path_aligned_strict}},
            "Findings": [finding.to_json() for finding in self.findings],
        }


@dataclass
class Report:
    """The DKIM check of one message."""

    from_domain: str = ""
    return_path: str = ""  # the envelope sender ("" for the null sender or none recorded)
    signatures: list[Signature] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)  # about the message (unsigned, keys unreadable...)

    @property
    def valid(self) -> bool:
        """At least one signature verified."""
        return any(signature.valid for signature in self.signatures)

    @property
    def aligned(self) -> bool:
        """A signature verified and its ``d=`` aligns with the From domain (relaxed): DMARC's DKIM pass."""
        return any(signature.valid and signature.from_aligned_relaxed for signature in self.signatures)

    @property
    def all_findings(self) -> list[Finding]:
        """The message's findings, then each signature's."""
        return [*self.findings, *(finding for signature in self.signatures for finding in signature.findings)]

    @property
    def errors(self) -> list[Finding]:
        """Every finding of severity ``error``."""
        return [finding for finding in self.all_findings if finding.severity == "error"]

    @property
    def warnings(self) -> list[Finding]:
        """Every finding of severity ``warning``."""
        return [finding for finding in self.all_findings if finding.severity == "warning"]

    def to_json(self) -> dict[str, Any]:
        """``GET /api/v1/message/{id}/dkim``'s body."""
        return {
            "FromDomain": self.from_domain, "ReturnPath": self.return_path,
            "Valid": self.valid, "Aligned": self.aligned,
            "Signatures": [signature.to_json() for signature in self.signatures],
            "Findings": [finding.to_json() for finding in self.findings],
        }


def keys_of(dkim_keys: Mapping[str, str], dkim_keys_file: str = "") -> dict[str, str]:
    """The keys of ``[checks] dkim_keys`` and ``dkim_keys_file`` (the file's win);
    :class:`~smtp_sink.checks.dkim_keys.DKIMKeyError` naming what is wrong."""
    keys = check_keys(dkim_keys, "[checks] dkim_keys")
    if dkim_keys_file:
        keys.update(read_keys_file(dkim_keys_file))
    return keys


def organisational_domain(domain: str) -> str:
    """The organisational domain as the module's docstring says (lower case, no final dot)."""
    labels = domain.lower().rstrip(".").split(".")
    keep = 3 if len(labels) >= 3 and len(labels[-1]) == 2 and labels[-2] in _SECOND_LEVEL else 2
    return ".".join(labels[-keep:])


def _domain_of(address: str) -> str:
    return address.rpartition("@")[2].strip().strip("<>").lower().rstrip(".") if "@" in address else ""


def _aligned(signer: str, domain: str) -> tuple[bool, bool]:
    """``(relaxed, strict)`` alignment of a ``d=`` with a domain."""
    if not signer or not domain:
        return False, False
    return organisational_domain(signer) == organisational_domain(domain), signer == domain


def _finding(check: str, severity: str, evidence: str, section: str) -> Finding:
    return Finding(check, severity, evidence, f"{RFC_DKIM} section {section}" if section[:1].isdigit() else section)


def verify(raw: bytes, keys: Mapping[str, str], from_address: str = "") -> Report:
    """The DKIM check of a stored message (its bytes, trace block included: the envelope sender is
    read from it and the client's data verified). ``keys``: name -> record, as :func:`keys_of`
    gives; ``from_address``: the From address (read from the message when ``""``)."""
    found = trace.read(raw)
    data = raw[found.length:] if found.own else raw
    report = Report(return_path=found.mail_from)
    header_end = _BLANK_RE.search(data, 0, MAX_HEADER_BYTES + 4)
    head = data[:header_end.start() if header_end else min(len(data), MAX_HEADER_BYTES + 1)]
    report.from_domain = _domain_of(from_address or _from_header(head))
    names = [line.split(b":", 1)[0].strip().lower() for line in head.split(b"\n") if line[:1] not in (b" ", b"\t")]
    count = names.count(b"dkim-signature")
    if count == 0:
        report.findings.append(_finding("dkim-unsigned", "warning", "no DKIM-Signature header", "3.5"))
        return report
    problem = _too_big(data, header_end is not None or len(data) <= MAX_HEADER_BYTES)
    if problem:
        report.signatures = [Signature(result="not-verified", reason=problem)
                             for _ in range(min(count, MAX_SIGNATURES))]
        report.findings.append(_finding("dkim-not-verified", "warning", problem, "docs/dkim.md"))
        return report
    if count > MAX_SIGNATURES:
        report.findings.append(_finding("dkim-not-verified", "warning",
                                        f"{count} DKIM-Signature fields: only the first {MAX_SIGNATURES} are verified",
                                        "docs/dkim.md"))
    try:
        message = dkim.DKIM(data, logger=_quiet, minkey=1024)
    except dkim.DKIMException as exc:
        report.findings.append(_finding("dkim-malformed", "error", f"the message cannot be read: {exc}", "3.4"))
        return report
    headers = [(name.lower(), value) for name, value in message.headers]
    present = {name for name, _ in headers}
    for index in range(min(count, MAX_SIGNATURES)):
        report.signatures.append(_one(message, index, headers, present, keys, report))
    return report


def _from_header(head: bytes) -> str:
    """The address in the first From header of a header block (a plain reading: enough for its domain)."""
    match = re.search(rb"^from:[ \t]*([^\r\n]*(?:\r?\n[ \t][^\r\n]*)*)", head, re.IGNORECASE | re.MULTILINE)
    if match is None:
        return ""
    value = match.group(1).decode("utf-8", "replace")[:_FROM_LIMIT]
    try:
        return email.utils.parseaddr(value)[1]
    except Exception:  # e.g. parentheses nested past the recursion limit
        return ""


def _too_big(data: bytes, header_ended: bool) -> str:
    """Why dkimpy is not run on ``data`` (``""``: it is)."""
    if len(data) > MAX_BYTES:
        return f"the message is larger than {MAX_BYTES} bytes"
    if not header_ended:
        return f"the header block is longer than {MAX_HEADER_BYTES} bytes"
    cost = 0
    for run in _SPACES_RE.finditer(data):
        cost += (run.end() - run.start()) ** 2
        if cost > SPACE_RUN_BUDGET:
            return (f"long runs of spaces or tabs (one of {run.end() - run.start()}): relaxed canonicalisation "
                    "would take too long")
    return ""


def _text(value: bytes | None) -> str:
    return value.decode("ascii", "replace") if value is not None else ""


def _number(value: bytes | None) -> int | None:
    return int(value) if value is not None and value.isdigit() and len(value) <= 20 else None


def _one(message: dkim.DKIM, index: int, headers: list[tuple[bytes, bytes]], present: set[bytes],
         keys: Mapping[str, str], report: Report) -> Signature:
    """Verify signature ``index`` of ``message``."""
    signature = Signature()
    field_value = [value for name, value in headers if name == b"dkim-signature"][index]
    try:
        tags = parse_tag_value(field_value)
    except InvalidTagValueList as exc:
        signature.reason = f"the DKIM-Signature cannot be read: {exc}"
        signature.findings.append(_finding("dkim-malformed", "error", signature.reason, "3.5"))
        return signature
    signature.domain = _text(tags.get(b"d")).lower()
    signature.selector = _text(tags.get(b"s"))
    signature.algorithm = _text(tags.get(b"a"))
    signature.canonicalization = _text(tags.get(b"c")) or "simple/simple"
    signature.identity = _text(tags.get(b"i"))
    signed = [name.strip().lower() for name in tags.get(b"h", b"").split(b":") if name.strip()]
    signature.signed_headers = [_text(name) for name in signed]
    signature.body_length = _number(tags.get(b"l"))
    signature.timestamp = _number(tags.get(b"t"))
    signature.expires = _number(tags.get(b"x"))
    signature.key = key_name(f"{signature.selector}._domainkey.{signature.domain}")
    signature.from_aligned_relaxed, signature.from_aligned_strict = _aligned(signature.domain, report.from_domain)
    signature.return_path_aligned_relaxed, signature.return_path_aligned_strict = _aligned(
        signature.domain, _domain_of(report.return_path))
    if len(signed) > MAX_SIGNED_HEADERS:
        signature.result, signature.reason = "not-verified", f"h= names more than {MAX_SIGNED_HEADERS} headers"
        signature.findings.append(_finding("dkim-not-verified", "warning", signature.reason, "docs/dkim.md"))
        return signature
    _coverage(signature, signed, headers, present, len(message.body))
    _check(message, index, tags, signature, keys)
    if signature.valid and report.from_domain and not signature.from_aligned_relaxed:
        signature.findings.append(_finding(
            "dkim-not-aligned", "warning", f"d={signature.domain} does not align with the From domain "
            f"{report.from_domain}: the signature does not count for DMARC", "RFC 7489 section 3.1.1"))
    return signature


def _coverage(signature: Signature, signed: list[bytes], headers: list[tuple[bytes, bytes]], present: set[bytes],
              body_size: int) -> None:
    """Findings on what the signature leaves open: From, other headers, extra instances, ``l=``, SHA-1."""
    if b"from" not in signed:
        signature.findings.append(_finding("dkim-from-not-signed", "error",
                                           f"h={b':'.join(signed).decode('ascii', 'replace')} leaves out From",
                                           "6.1.1"))
    for name in SHOULD_SIGN:
        if name.encode() in present and name.encode() not in signed:
            signature.findings.append(_finding("dkim-header-not-signed", "warning",
                                               f"{name} is in the message but not signed: it can be changed on the way",
                                               "5.4.1"))
    for signed_name in dict.fromkeys(signed):
        there = sum(1 for header, _ in headers if header == signed_name)
        if there > signed.count(signed_name):
            signature.findings.append(_finding(
                "dkim-header-not-signed", "warning",
                f"{signed_name.decode('ascii', 'replace')} appears {there} times and is signed "
                f"{signed.count(signed_name)} "
                "time(s): an unsigned instance may be the one a reader sees", "8.15"))
    if signature.body_length is not None:
        signature.findings.append(_finding(
            "dkim-body-length", "warning", f"l={signature.body_length}: only the first {signature.body_length} "
            f"bytes of the canonical body are signed (the body has about {body_size}); text can be appended",
            "8.2"))
    if signature.algorithm == "rsa-sha1":
        signature.findings.append(_finding("dkim-weak-algorithm", "warning", "a=rsa-sha1 (RFC 8301: must not be used)",
                                           "RFC 8301 section 3.1"))


def _check(message: dkim.DKIM, index: int, tags: dict[bytes, bytes], signature: Signature,
           keys: Mapping[str, str]) -> None:
    """The cryptographic verification of one signature, its result and reason set on ``signature``."""
    def fail(result: str, check: str, reason: str, section: str, severity: str = "error") -> None:
        signature.result, signature.reason = result, reason[:REASON_MAX]
        signature.findings.append(_finding(check, severity, reason, section))

    if b"from" not in [name.strip().lower() for name in tags.get(b"h", b"").split(b":")]:
        # the finding is dkim-from-not-signed (_coverage); RFC 6376 6.1.1: the signature is ignored
        signature.result, signature.reason = "permerror", "From is not signed: the signature is ignored"
        return None
    try:
        prepared = message.verify_headerprep(index)
    except dkim.ValidationError as exc:
        text = _said(exc)
        if text.startswith("x= value is past"):
            return fail("fail", "dkim-expired", f"the signature expired (x={signature.expires})", "3.5")
        return fail("permerror", "dkim-malformed", f"the DKIM-Signature is invalid: {text}", "3.5")
    except dkim.DKIMException as exc:
        return fail("permerror", "dkim-malformed", f"the DKIM-Signature cannot be read: {_said(exc)}", "3.5")
    if not prepared:
        return fail("permerror", "dkim-malformed", "the DKIM-Signature cannot be read", "3.5")
    record = keys.get(signature.key)
    if record is None:
        body_hash = _body_hash(message, tags)
        return fail("no-key", "dkim-key-missing", f"no key {signature.key} in [checks] dkim_keys or dkim_keys_file "
                    f"(DNS is never asked){body_hash}", "6.1.2")
    sig, include_headers, sigheaders = prepared

    def lookup(name: bytes, timeout: int = 5) -> bytes:
        return record.encode("ascii")

    try:
        message.pk, message.keysize, message.ktag, message.seqtlsrpt = dkim.load_pk_from_dns(
            signature.key.encode(), lookup)
        valid = message.verify_sig_process(sig, include_headers, sigheaders[index], lookup)
    except dkim.ValidationError as exc:
        if str(exc).startswith("body hash mismatch"):
            return fail("fail", "dkim-body-hash-mismatch", "body hash mismatch: the body changed after signing "
                        f"(bh={signature_bh(tags)})", "3.7")
        return fail("permerror", "dkim-malformed", f"the DKIM-Signature is invalid: {_said(exc)}", "3.5")
    except dkim.KeyFormatError as exc:
        return fail("permerror", "dkim-key-invalid", f"key {signature.key}: {_said(exc)}", "3.6.1")
    except (dkim.NaClNotFoundError, NameError):  # dkimpy's ed25519 support needs PyNaCl
        return fail("permerror", "dkim-key-invalid", f"key {signature.key}: ed25519 keys need PyNaCl "
                    "(pip install pynacl)", "RFC 8463")
    except dkim.DKIMException as exc:
        return fail("permerror", "dkim-malformed", f"{type(exc).__name__}: {_said(exc)}", "3.5")
    if not valid:
        return fail("fail", "dkim-bad-signature", "the signature does not match the signed headers: one of "
                    f"{', '.join(signature.signed_headers)} changed after signing, or another key signed it", "3.7")
    signature.result, signature.reason = "pass", "the signature verifies"
    return None


_BYTES_REPR_RE = re.compile(r"""\bb'([^'\\]*)'""")


def _said(exc: Exception) -> str:
    """dkimpy's message, without the ``b'...'`` of the bytes it quotes."""
    return _BYTES_REPR_RE.sub(r"\1", str(exc))


def signature_bh(tags: dict[bytes, bytes]) -> str:
    """The ``bh=`` tag without its folding white space."""
    return _text(re.sub(rb"\s+", b"", tags.get(b"bh", b"")))


def _body_hash(message: dkim.DKIM, tags: dict[bytes, bytes]) -> str:
    """``"; the body hash matches"`` or ``"; ... does not match"`` (it needs no key), or ``""``."""
    try:
        policy = CanonicalizationPolicy.from_c_value(tags.get(b"c", b"simple/simple"))
        body = policy.canonicalize_body(message.body)
        if b"l" in tags and tags[b"l"].isdigit():
            body = body[:int(tags[b"l"])]
        digest = HASH_ALGORITHMS[tags[b"a"]](body).digest()
        expected = base64.b64decode(re.sub(rb"\s+", b"", tags[b"bh"]))
    except Exception:
        return ""
    return "; the body hash matches" if digest == expected else "; the body hash does not match: the body changed"
