"""A local CA and a loopback server certificate for `envhub serve --tls`, kept under `<data-dir>/tls`.

Azure ML's SDK (and `requests`) refuse bearer tokens over plain http, so the local service can serve https with
a certificate its users trust by pointing REQUESTS_CA_BUNDLE at `ca.pem`. The CA is made once and kept, so that
trust survives restarts; the server certificate it signs is remade when missing, near expiry, or not signed by
the CA on disk. Private keys are written mode 0600, like the admin token beside them.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_VALID = timedelta(days=3650)
SERVER_VALID = timedelta(days=365)
RENEW_BEFORE = timedelta(days=30)  # remade this long before expiry, so a running client never meets an expired one
BACKDATE = timedelta(minutes=5)  # tolerates a client clock a little behind ours
NAMES = ("localhost",)
ADDRESSES = ("127.0.0.1", "::1")
WILDCARDS = frozenset({"", "0.0.0.0", "::"})  # noqa: S104 -- addresses to recognise, not to bind

Key = ec.EllipticCurvePrivateKey


@dataclass(frozen=True)
class TlsFiles:
    """Where the CA to trust and the server's certificate and key are, and what was made this time."""

    ca: Path
    certificate: Path
    key: Path
    new_ca: bool
    new_certificate: bool


def ensure(data_dir: Path, host: str = "127.0.0.1", now: datetime | None = None) -> TlsFiles:
    """The kept CA (made if missing or expiring) and a current server certificate for loopback and `host`."""
    moment = now or datetime.now(UTC)
    folder = data_dir / "tls"
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    ca_file, ca_key_file = folder / "ca.pem", folder / "ca-key.pem"
    cert_file, key_file = folder / "server.pem", folder / "server-key.pem"
    ca_pair = _load(ca_file, ca_key_file)
    new_ca = ca_pair is None or _expiring(ca_pair[0], moment)
    if new_ca or ca_pair is None:
        ca_pair = _make_ca(moment)
        _write(ca_key_file, _key_pem(ca_pair[1]), 0o600)
        _write(ca_file, ca_pair[0].public_bytes(serialization.Encoding.PEM), 0o644)
    ca, ca_key = ca_pair
    names = _names(host)
    server = _load(cert_file, key_file)
    new_certificate = server is None or not _current(server[0], ca, names, moment)
    if new_certificate:
        certificate, key = _make_server(ca, ca_key, names, moment)
        _write(key_file, _key_pem(key), 0o600)
        _write(cert_file, certificate.public_bytes(serialization.Encoding.PEM), 0o644)
    return TlsFiles(ca_file, cert_file, key_file, new_ca, new_certificate)


def sans(certificate: x509.Certificate) -> set[str]:
    """The DNS names and IP addresses a certificate's SubjectAltName lists, as text."""
    try:
        names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    return {*names.get_values_for_type(x509.DNSName),
            *(str(address) for address in names.get_values_for_type(x509.IPAddress))}


def _names(host: str) -> set[str]:
    """Loopback's names, plus the address served on when it is one particular host."""
    wanted = {*NAMES, *ADDRESSES}
    if host not in WILDCARDS:
        wanted.add(host.strip("[]"))
    return wanted


def _load(cert_file: Path, key_file: Path) -> tuple[x509.Certificate, Key] | None:
    """A certificate and its key from disk; None when either is missing, unreadable or they do not match."""
    try:
        certificate = x509.load_pem_x509_certificate(cert_file.read_bytes())
        key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
    except (OSError, ValueError, TypeError):
        return None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.public_key() != certificate.public_key():
        return None
    return certificate, key


def _expiring(certificate: x509.Certificate, now: datetime) -> bool:
    return not certificate.not_valid_before_utc <= now < certificate.not_valid_after_utc - RENEW_BEFORE


def _current(certificate: x509.Certificate, ca: x509.Certificate, names: set[str], now: datetime) -> bool:
    """Whether a kept server certificate is still good: signed by this CA, covers `names`, not near expiry."""
    try:
        certificate.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):  # signed by an earlier CA
        return False
    return not _expiring(certificate, now) and names <= sans(certificate)


def _make_ca(now: datetime) -> tuple[x509.Certificate, Key]:
    key = ec.generate_private_key(ec.SECP256R1())
    # A random suffix: a remade CA must not share a name with one a client still trusts.
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"envhub local CA {secrets.token_hex(4)}")])
    certificate = (
        _builder(name, name, key.public_key(), now, now + CA_VALID)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                     crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return certificate, key


def _make_server(ca: x509.Certificate, ca_key: Key, names: set[str],
                 now: datetime) -> tuple[x509.Certificate, Key]:
    key = ec.generate_private_key(ec.SECP256R1())
    addresses, dns = [], []
    for name in sorted(names):
        try:
            addresses.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            dns.append(x509.DNSName(name))
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    # Never outlive the CA: a chain fails on its shortest-lived link.
    until = min(now + SERVER_VALID, ca.not_valid_after_utc)
    ca_ski = ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    certificate = (
        _builder(subject, ca.subject, key.public_key(), now, until)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                     crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName([*dns, *addresses]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return certificate, key


def _builder(subject: x509.Name, issuer: x509.Name, public: ec.EllipticCurvePublicKey, now: datetime,
             until: datetime) -> x509.CertificateBuilder:
    """The fields both certificates share; the key identifiers are what strict verifiers (Python 3.13) want."""
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(until)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
    )


def _key_pem(key: Key) -> bytes:
    # Unencrypted like the admin token: the file's mode is the protection, and uvicorn needs no passphrase.
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _write(path: Path, data: bytes, mode: int) -> None:
    """Replace `path` atomically; the temporary file has its final mode from the start, so a key is never
    readable by others, even for a moment."""
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write(data)
        os.chmod(temporary, mode)  # the umask may have narrowed it; 0644 stays 0644 for the CA anyone may read
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
