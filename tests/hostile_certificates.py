"""Certificates a hostile server (or contact) might publish, for the key-directory
tests (issue 9, kinds 4 and 8): malformed ones ``cryptography`` cannot parse,
oversized ones, and many cheap distinct ones."""

from __future__ import annotations

import base64
import secrets
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from cryptography.x509.oid import NameOID

from slixmpp_objenc.core.certificates import ID_ON_XMPPADDR, _der_utf8string

_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
"""One key signs them all: distinct certificates are distinct fingerprints."""


def certificate(
    jids: Sequence[str],
    *,
    key: rsa.RSAPrivateKey | None = None,
    public_key: object | None = None,
    extensions: Sequence[x509.ExtensionType] = (),
    issuer: str | None = None,
    serial: int | None = None,
) -> x509.Certificate:
    """A certificate naming ``jids`` as id-on-xmppAddr, signed by ``key`` (self-signed
    unless ``issuer`` names someone else)."""
    signer = key or _KEY
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "device")])
    issuer_name = (
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]) if issuer else subject
    )
    start = datetime.now(UTC) - timedelta(minutes=5)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(public_key or signer.public_key())  # type: ignore[arg-type]
        .serial_number(serial if serial is not None else x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + timedelta(days=30))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.OtherName(ID_ON_XMPPADDR, _der_utf8string(j)) for j in jids]
            ),
            critical=False,
        )
    )
    for extension in extensions:
        builder = builder.add_extension(extension, critical=False)
    return builder.sign(signer, hashes.SHA256())


def der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def duplicate_extension(jid: str) -> bytes:
    """DER with two subjectAltName extensions: ``cryptography`` raises
    ``DuplicateExtension`` (not a ``ValueError``) when its extensions are read."""
    issuer_alt = x509.IssuerAlternativeName([x509.DNSName("example.org")])
    raw = der(certificate([jid], extensions=[issuer_alt]))
    assert raw.count(bytes.fromhex("0603551d12")) == 1
    return raw.replace(bytes.fromhex("0603551d12"), bytes.fromhex("0603551d11"))


def unknown_key_algorithm(jid: str) -> bytes:
    """DER whose key has an algorithm OID nobody knows (1.3.101.99): ``public_key()``
    raises ``UnsupportedAlgorithm`` (not a ``ValueError``)."""
    key = ed25519.Ed25519PrivateKey.generate().public_key()
    raw = der(certificate([jid], public_key=key))
    assert raw.count(bytes.fromhex("06032b6570")) == 1
    return raw.replace(bytes.fromhex("06032b6570"), bytes.fromhex("06032b6563"))


def huge(jid: str, size: int = 1_400_000) -> bytes:
    """A valid, self-signed certificate of about ``size`` bytes (a private extension)."""
    padding = x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.99999.1"), b"A" * size)
    return der(certificate([jid], extensions=[padding]))


def oversized_rsa(jid: str) -> bytes:
    """A certificate for a 16,400-bit RSA modulus (issued by another name, so no
    self-signature check runs first): no OpenSSL can encrypt to it."""
    modulus = secrets.randbits(16400) | (1 << 16399) | 1
    key = rsa.RSAPublicNumbers(65537, modulus).public_key()
    return der(certificate([jid], public_key=key, issuer="someone else"))


def many(jid: str, count: int) -> list[bytes]:
    """``count`` distinct valid certificates for ``jid`` (one key, many serials)."""
    return [der(certificate([jid], serial=n + 1)) for n in range(count)]
