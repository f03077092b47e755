"""The TLS probe (``[tls] probe``, ``serve --tls-probe``): does the sending application verify
the server's certificate? The server presents a bad certificate, or an old protocol, on STARTTLS
and on implicit TLS:

- ``expired``: the right names, dates in the past, signed by smtp-sink's CA (``ca.pem``, the one
  clients are told to trust: so expiry is the only fault);
- ``self-signed``: the right names and dates, signed by its own key (no CA);
- ``wrong-host``: valid dates, signed by smtp-sink's CA, for ``wrong-host.smtp-sink.invalid``
  only (no ``localhost``, no IP address);
- ``untrusted-ca``: the right names and dates, signed by a CA made at start-up that no client was
  given (its key is thrown away);
- ``tls1.0``: the good certificate, but TLS 1.0 only. OpenSSL 3 allows TLS 1.0 only at security
  level 0 (``@SECLEVEL=0``): the server sets it, and a client must too, and lower its own minimum
  version, before a TLS 1.0 handshake can succeed.

The certificates live in ``<store>/tls/probe/`` (``expired.pem`` and ``wrong-host.pem`` are made
with the CA, see :mod:`smtp_sink.tls`; the others at each start). A client that completes the
handshake and sends mail is recorded by the sink (:mod:`smtp_sink.tls_findings`). A client that
refuses is seen where the handshake fails: after STARTTLS in the server, and on the implicit-TLS
port in :class:`ImplicitHandshake`, which runs that handshake itself (a listener's own failed
handshake reaches no protocol and would go unseen).
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import logging
import ssl
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

from . import tls
from .tls import PROBE_FOLDER, ServerTLS, TLSSetupError, server_context
from .tls_findings import PROBES, TLSFindings

__all__ = ["ImplicitHandshake", "legacy_context", "setup"]

log = logging.getLogger("smtp_sink")
LEGACY_CIPHERS = "DEFAULT:@SECLEVEL=0"  # what OpenSSL 3 needs before it speaks TLS 1.0


def setup(cert: str, key: str, folder: Path, hostname: str, probe: str) -> ServerTLS:
    """:func:`smtp_sink.tls.setup`, with the context presenting ``probe`` instead of the good
    certificate (``cert``, ``key`` and ``ca`` still name the good ones: what clients should trust)."""
    if probe not in PROBES:
        raise TLSSetupError(f"[tls] probe: unknown probe {probe!r} (known: {', '.join(PROBES)})")
    base = tls.setup(cert, key, folder, hostname)
    probes = folder / PROBE_FOLDER
    if probe in ("expired", "wrong-host"):
        if base.ca is None:
            raise TLSSetupError(f'[tls] probe = "{probe}" needs smtp-sink\'s generated CA: leave [tls] cert/key unset')
        path = probes / f"{probe}.pem"
        if not _signed_by(path, base.ca):
            log.warning("TLS probe %s: %s is missing or not signed by %s (made by an older version): making the "
                        "CA and certificates in %s again; clients must trust the new ca.pem", probe, path, base.ca,
                        folder)
            tls.generate(folder, hostname)
            base = tls.setup(cert, key, folder, hostname)
        context = server_context(path, path)
    elif probe == "tls1.0":
        context = legacy_context(base.cert, base.key)
    else:
        path = _make(probes, probe, hostname)
        context = server_context(path, path)
    log.warning("TLS probe %s: STARTTLS and implicit TLS present %s; clients that take it and send mail get "
                "the finding tls-not-verified", probe, PROBES[probe])
    return dataclasses.replace(base, context=context)


def legacy_context(cert: Path, key: Path) -> ssl.SSLContext:
    """A server context that speaks TLS 1.0 and nothing else (security level 0)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        with warnings.catch_warnings():  # TLS 1.0 is deprecated: that is the point of the probe
            warnings.simplefilter("ignore", DeprecationWarning)
            context.minimum_version = context.maximum_version = ssl.TLSVersion.TLSv1
        context.set_ciphers(LEGACY_CIPHERS)
    except (ValueError, ssl.SSLError) as exc:
        raise TLSSetupError(f"[tls] probe = \"tls1.0\": this OpenSSL cannot offer TLS 1.0 ({exc})") from None
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise TLSSetupError(f"{cert} / {key}: not a usable certificate and key ({exc})") from None
    return context


def _signed_by(path: Path, ca: Path) -> bool:
    """``path`` holds a certificate that the CA in ``ca`` issued (and was made with it)."""
    from cryptography import x509

    try:
        leaf = x509.load_pem_x509_certificate(path.read_bytes())
        leaf.verify_directly_issued_by(x509.load_pem_x509_certificate(ca.read_bytes()))
    except Exception:  # missing, unreadable, not PEM, or another CA's (InvalidSignature, ValueError...)
        return False
    return True


def _make(folder: Path, probe: str, hostname: str) -> Path:
    """Write ``<probe>.pem`` (chain and key) for a probe that needs no smtp-sink CA: ``self-signed``
    or ``untrusted-ca``, made again at each start."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    now = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=5)
    until = now + datetime.timedelta(days=tls.CERT_DAYS)
    key = ec.generate_private_key(ec.SECP256R1())
    names = tls.server_names(hostname)
    chain: list[Any]
    if probe == "self-signed":  # its own issuer: a leaf signed with its own key
        name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, hostname)])
        chain = [
            x509.CertificateBuilder()
            .subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(until)
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(key, hashes.SHA256())
        ]
    else:  # untrusted-ca: a CA of its own, sent along in the chain, that no client trusts
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "smtp-sink untrusted CA (TLS probe)")])
        ca = (
            x509.CertificateBuilder()
            .subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(until)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        chain = [tls.Issuer(ca, ca_key).sign(key, names, now, until), ca]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{probe}.pem"
    tls.write_file(path, tls.pem_bundle(chain, key), 0o600)
    return path


class ImplicitHandshake(asyncio.Protocol):
    """A connection to the implicit-TLS port under the probe: runs the TLS handshake, records a
    client that refuses it, and hands a completed one to the SMTP connection (``connection()``),
    as if the listener had done the handshake.

    The handshake is asyncio's own ``SSLProtocol``, the one ``loop.start_tls`` uses, put in place
    at once in :meth:`connection_made`: ``start_tls`` itself would run a loop iteration later, and
    uvloop starts reading right after ``connection_made`` (a ``pause_reading`` there is undone),
    so the client's hello could arrive here first and be lost."""

    def __init__(self, connection: Callable[[], asyncio.BaseProtocol], context: ssl.SSLContext, timeout: float,
                 findings: TLSFindings) -> None:
        self._connection = connection
        self._context = context
        self._timeout = timeout
        self._findings = findings

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Hand the connection to an ``SSLProtocol`` before a byte is read."""
        from asyncio import sslproto

        loop = asyncio.get_running_loop()
        peer = transport.get_extra_info("peername")
        peer = peer[0] if isinstance(peer, tuple) else str(peer or "")
        handshake: asyncio.Future[None] = loop.create_future()
        timeout: Any = self._timeout  # seconds, a float (typeshed says int)
        secured = sslproto.SSLProtocol(loop, self._connection(), self._context, handshake, server_side=True,
                                       call_connection_made=True, ssl_handshake_timeout=timeout)
        transport.set_protocol(secured)
        secured.connection_made(cast(asyncio.Transport, transport))  # the SMTP connection's follows the handshake
        handshake.add_done_callback(lambda done: self._done(done, peer))

    def _done(self, handshake: asyncio.Future[None], peer: str) -> None:
        """A refused handshake is a finding (the SSLProtocol closed the connection already)."""
        error = None if handshake.cancelled() else handshake.exception()
        if error is not None:
            log.info("implicit-TLS handshake with %s failed under the TLS probe: %s", peer,
                     error or type(error).__name__)
            self._findings.refused(peer, "implicit TLS", error)

    def data_received(self, data: bytes) -> None:
        """Never called: the SSLProtocol reads from the first byte on."""
