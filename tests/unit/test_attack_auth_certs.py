"""Attacks on the authenticated profile's certificates (core.identities): a
hostile server substituting certificates, a malicious contact issuing odd
ones. A failing test shows a real problem (see its docstring)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.x509.oid import NameOID, ObjectIdentifier

from slixmpp_objenc.core.certificates import ID_ON_XMPPADDR, _der_utf8string
from slixmpp_objenc.core.errors import CertificateError
from slixmpp_objenc.core.identities import (
    DeviceKeys,
    generate_device_keys,
    issue_encryption_certificate,
    validate_encryption_certificate,
    validate_identity_certificate,
)
from slixmpp_objenc.core.timestamps import utcnow

UNKNOWN_OID = ObjectIdentifier("1.3.6.1.4.1.55555.1.1")

# small-order (and equivalent non-canonical) Curve25519 u-coordinates
LOW_ORDER = [
    bytes(32),
    (1).to_bytes(32, "little"),
    bytes.fromhex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"),
    bytes.fromhex("5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157"),
    bytes.fromhex("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
    bytes.fromhex("edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
    bytes.fromhex("eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
]


@pytest.fixture(scope="module")
def juliet() -> DeviceKeys:
    return generate_device_keys("juliet@example.org")


def _usage(*, cert_sign: bool = False, key_agreement: bool = False) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=False,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=key_agreement,
        key_cert_sign=cert_sign,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )


def _builder(jids: list[str], subject: x509.Name, issuer: x509.Name) -> x509.CertificateBuilder:
    start = utcnow() - timedelta(minutes=5)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + timedelta(days=30))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.OtherName(ID_ON_XMPPADDR, _der_utf8string(j)) for j in jids]
            ),
            critical=False,
        )
    )


def _name(jid: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, jid)])


def make_identity(
    jids: list[str],
    *,
    key_usage: bool = True,
    constraints: bool = True,
    extra: x509.ExtensionType | None = None,
) -> tuple[Ed25519PrivateKey, x509.Certificate]:
    key = Ed25519PrivateKey.generate()
    builder = _builder(jids, _name(jids[0]), _name(jids[0])).public_key(key.public_key())
    if constraints:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=0), True)
    if key_usage:
        builder = builder.add_extension(_usage(cert_sign=True), critical=True)
    if extra is not None:
        builder = builder.add_extension(extra, critical=True)
    return key, builder.sign(key, None)


def make_encryption(
    identity_key: Ed25519PrivateKey,
    identity: x509.Certificate,
    public_key: X25519PublicKey,
    jid: str,
    *,
    key_usage: bool = True,
    constraints: bool = True,
    extra: x509.ExtensionType | None = None,
) -> x509.Certificate:
    builder = _builder([jid], _name(jid), identity.subject).public_key(public_key)
    if constraints:
        builder = builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
    if key_usage:
        builder = builder.add_extension(_usage(key_agreement=True), critical=True)
    if extra is not None:
        builder = builder.add_extension(extra, critical=True)
    return builder.sign(identity_key, None)


def test_an_encryption_certificate_from_another_identity_of_the_same_jid_is_refused(
    juliet: DeviceKeys,
) -> None:
    """A server (or juliet's other device) with its own identity for
    juliet@example.org - same subject and issuer names - issues an encryption
    certificate: it does not chain to the identity held."""
    other = generate_device_keys("juliet@example.org")
    assert other.identity_certificate.subject == juliet.identity_certificate.subject
    held = validate_identity_certificate(juliet.identity_certificate)
    with pytest.raises(CertificateError):
        validate_encryption_certificate(other.encryption_certificate, held)
    forged = issue_encryption_certificate(
        other.identity_key, juliet.identity_certificate, X25519PrivateKey.generate().public_key()
    )
    with pytest.raises(CertificateError):
        validate_encryption_certificate(forged, held)


def test_identity_and_encryption_certificates_are_not_interchangeable(juliet: DeviceKeys) -> None:
    held = validate_identity_certificate(juliet.identity_certificate)
    with pytest.raises(CertificateError):
        validate_identity_certificate(juliet.encryption_certificate)
    with pytest.raises(CertificateError):
        validate_encryption_certificate(juliet.identity_certificate, held)


def test_missing_key_usage_or_basic_constraints_are_refused() -> None:
    for kwargs in ({"key_usage": False}, {"constraints": False}):
        _, identity = make_identity(["romeo@example.org"], **kwargs)  # type: ignore[arg-type]
        with pytest.raises(CertificateError):
            validate_identity_certificate(identity)
    key, identity = make_identity(["romeo@example.org"])
    held = validate_identity_certificate(identity)
    public = X25519PrivateKey.generate().public_key()
    for kwargs in ({"key_usage": False}, {"constraints": False}):
        certificate = make_encryption(key, identity, public, "romeo@example.org", **kwargs)  # type: ignore[arg-type]
        with pytest.raises(CertificateError):
            validate_encryption_certificate(certificate, held)


def test_an_identity_naming_two_jids_is_refused() -> None:
    """A contact's identity naming a second JID (alice@ next to mallory@) could
    issue encryption certificates for that one: an identity names exactly one
    JID (found by review; it was accepted for both)."""
    key, identity = make_identity(["mallory@example.org", "alice@example.org"])
    with pytest.raises(CertificateError, match="exactly one JID"):
        validate_identity_certificate(identity)
    public = X25519PrivateKey.generate().public_key()
    with pytest.raises(ValueError):
        issue_encryption_certificate(key, identity, public)


def test_an_unknown_critical_extension_is_refused() -> None:
    """Found by review (low), now refused: RFC 5280 section 4.2 - a certificate-using system MUST
    reject a certificate with a critical extension it does not recognise;
    both validators accept one (cryptography does not enforce criticality
    when loading or with verify_directly_issued_by). Fix: refuse any
    extension with ``critical=True`` other than basicConstraints, keyUsage
    (and subjectAltName)."""
    extra = x509.UnrecognizedExtension(UNKNOWN_OID, b"\x05\x00")
    _, identity = make_identity(["romeo@example.org"], extra=extra)
    with pytest.raises(CertificateError):
        validate_identity_certificate(identity)


def test_an_unknown_critical_extension_in_an_encryption_certificate_is_refused() -> None:
    """Found by review (low), now refused: as above, for the encryption certificate."""
    key, identity = make_identity(["romeo@example.org"])
    held = validate_identity_certificate(identity)
    extra = x509.UnrecognizedExtension(UNKNOWN_OID, b"\x05\x00")
    certificate = make_encryption(
        key, identity, X25519PrivateKey.generate().public_key(), "romeo@example.org", extra=extra
    )
    with pytest.raises(CertificateError):
        validate_encryption_certificate(certificate, held)


@pytest.mark.parametrize("point", LOW_ORDER, ids=lambda p: p.hex()[:8])
def test_a_low_order_x25519_key_in_an_encryption_certificate_is_refused(
    juliet: DeviceKeys, point: bytes
) -> None:
    """Found by review (low), now refused: validate_encryption_certificate accepts an X25519 key of
    small order (all-zero shared secret with any key). Opening with it fails
    safely (cryptography refuses the all-zero output), but sealing to it
    raises a bare ValueError for the whole stanza (see test_attack_auth_wire).
    Fix: after the type check, ``X25519PrivateKey.generate().exchange(key)``
    inside the try, turned into CertificateError (or compare against the list
    of small-order encodings, masking the top bit)."""
    held = validate_identity_certificate(juliet.identity_certificate)
    certificate = issue_encryption_certificate(
        juliet.identity_key,
        juliet.identity_certificate,
        X25519PublicKey.from_public_bytes(point),
    )
    with pytest.raises(CertificateError):
        validate_encryption_certificate(certificate, held)


def test_an_encryption_certificate_that_may_sign_is_refused() -> None:
    key, identity = make_identity(["romeo@example.org"])
    held = validate_identity_certificate(identity)
    public = X25519PrivateKey.generate().public_key()
    for usage, ca in (
        (_usage(key_agreement=True, cert_sign=True), False),
        (_usage(key_agreement=True), True),
    ):
        certificate = (
            _builder(["romeo@example.org"], _name("romeo@example.org"), identity.subject)
            .public_key(public)
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), True)
            .add_extension(usage, critical=True)
            .sign(key, None)
        )
        with pytest.raises(CertificateError):
            validate_encryption_certificate(certificate, held)
