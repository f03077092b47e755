"""TLS for STARTTLS and the implicit-TLS port: the server's ``ssl.SSLContext`` and its certificate.

With no ``[tls] cert``, a private certificate authority and a server certificate signed by it
are generated once into ``<store>/tls/`` and reused on every start, like mkcert or trustme do:

- ``ca.pem``: the authority; trust it (``SSL_CERT_FILE``, curl ``--cacert``, nodemailer ``ca``)
  and clients that verify certificates accept the server under the names below;
- ``cert.pem`` + ``key.pem``: the server certificate for ``localhost``, ``127.0.0.1``, ``::1``
  and the configured hostname (and its chain), and its key (mode 0600);
- ``probe/expired.pem`` and ``probe/wrong-host.pem``: the bad certificates of the TLS probe that
  this CA signs (each with its chain and key), made together with it because the CA's own key
  is never written anywhere (:mod:`smtp_sink.tls_probe`).

They are made with `cryptography <https://cryptography.io>`_: the standard library can use
certificates but cannot create them, and the ``openssl`` command is not on every machine.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CERT_DAYS = 825  # the longest validity clients such as Apple's accept for a server certificate
CA_DAYS = 3650
RENEW_DAYS = 30  # a certificate this close to expiry is made again


class TLSSetupError(RuntimeError):
    """The certificate or key cannot be used; the message names the file."""


@dataclass(frozen=True)
class ServerTLS:
    """A ready server context and the files it came from."""

    context: ssl.SSLContext
    cert: Path
    key: Path
    ca: Path | None  # the generated authority to trust, None for a configured certificate


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    """A server-side context (TLS 1.2 or newer) with this certificate chain and key."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key)
    except FileNotFoundError as exc:
        raise TLSSetupError(f"{exc.filename}: no such file") from None
    except ssl.SSLError as exc:
        raise TLSSetupError(f"{cert} / {key}: not a usable PEM certificate and matching key ({exc.reason})") from None
    except OSError as exc:
        raise TLSSetupError(f"{exc.filename or cert}: cannot read: {exc.strerror}") from None
    return context


def setup(cert: str, key: str, folder: Path, hostname: str) -> ServerTLS:
    """The configured certificate (``cert`` and ``key``), or the generated one in ``folder``."""
    if cert or key:
        if not (cert and key):
            raise TLSSetupError("[tls] cert and key must be given together")
        return ServerTLS(server_context(Path(cert), Path(key)), Path(cert), Path(key), None)
    ca, cert_path, key_path = folder / "ca.pem", folder / "cert.pem", folder / "key.pem"
    if not _usable(ca, cert_path, key_path, hostname):
        generate(folder, hostname)
    return ServerTLS(server_context(cert_path, key_path), cert_path, key_path, ca)


def _usable(ca: Path, cert: Path, key: Path, hostname: str) -> bool:
    """The generated files exist, name ``hostname`` and stay valid for RENEW_DAYS more."""
    if not (ca.is_file() and key.is_file() and cert.is_file()):
        return False
    from cryptography import x509

    try:
        leaf = x509.load_pem_x509_certificate(cert.read_bytes())
        names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (ValueError, x509.ExtensionNotFound):
        return False
    renew = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=RENEW_DAYS)
    return leaf.not_valid_after_utc > renew and hostname in names.get_values_for_type(x509.DNSName)


def generate(folder: Path, hostname: str) -> None:
    """Write ``ca.pem``, ``cert.pem`` (server certificate then CA) and ``key.pem`` into ``folder``,
    and the TLS probe's certificates that this CA signs into ``folder/probe/`` (see below)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    now = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=5)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, f"smtp-sink local CA ({hostname})")])
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    issuer = Issuer(ca, ca_key)
    leaf = issuer.sign(key, server_names(hostname), now, now + datetime.timedelta(days=CERT_DAYS))
    # The TLS probe (tls_probe.py) presents certificates that smtp-sink's CA signed: they are made
    # here, with it, because the CA's key is never kept (it could sign any name for a client
    # that trusts ca.pem). "expired": the right names, dates in the past; "wrong-host": valid
    # dates, another name.
    probe_key = ec.generate_private_key(ec.SECP256R1())
    expired = issuer.sign(probe_key, server_names(hostname), now - datetime.timedelta(days=400),
                          now - datetime.timedelta(days=30))
    wrong = issuer.sign(probe_key, [x509.DNSName(WRONG_HOST)], now, now + datetime.timedelta(days=CERT_DAYS),
                        common_name=WRONG_HOST)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / PROBE_FOLDER).mkdir(exist_ok=True)
    write_file(folder / PROBE_FOLDER / "expired.pem", pem_bundle([expired, ca], probe_key), 0o600)
    write_file(folder / PROBE_FOLDER / "wrong-host.pem", pem_bundle([wrong, ca], probe_key), 0o600)
    write_file(folder / "key.pem", pem_bundle([], key), 0o600)
    write_file(folder / "cert.pem", pem_bundle([leaf, ca]), 0o644)
    write_file(folder / "ca.pem", pem_bundle([ca]), 0o644)


WRONG_HOST = "wrong-host.smtp-sink.invalid"  # the name of the wrong-host probe (.invalid: RFC 2606)
PROBE_FOLDER = "probe"  # <store>/tls/probe/: the TLS probe's certificates


def server_names(hostname: str) -> list[Any]:
    """The names a server certificate of the sink holds: ``hostname``, localhost, 127.0.0.1, ::1."""
    from cryptography import x509

    names: list[x509.GeneralName] = [x509.DNSName(name) for name in dict.fromkeys([hostname, "localhost"])]
    names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ("127.0.0.1", "::1")]
    return names


class Issuer:
    """A certificate authority (its certificate and key) that signs server certificates."""

    def __init__(self, certificate: Any, key: Any) -> None:
        self.certificate, self.key = certificate, key

    def sign(self, key: Any, names: list[Any], not_before: datetime.datetime, not_after: datetime.datetime,
             common_name: str = "") -> Any:
        """A server certificate for ``key``'s public key and ``names`` (the first DNS name is its
        common name unless ``common_name``), valid between the two dates."""
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

        ca_ski = self.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        common_name = common_name or next(str(n.value) for n in names if isinstance(n, x509.DNSName))
        return (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(self.certificate.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before).not_valid_after(not_after)
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(self.key, hashes.SHA256())
        )


def pem_bundle(certificates: list[Any], key: Any = None) -> bytes:
    """PEM text of ``certificates`` (a chain, leaf first) followed by ``key`` (PKCS #8), if any."""
    from cryptography.hazmat.primitives import serialization

    pem = serialization.Encoding.PEM
    data = b"".join(certificate.public_bytes(pem) for certificate in certificates)
    if key is not None:
        data += key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return data


def write_file(path: Path, data: bytes, mode: int) -> None:
    """Write atomically (a concurrent start never reads half a file)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    os.replace(tmp, path)
