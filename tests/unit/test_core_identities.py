"""core.identities: Ed25519 identity certificates and the X25519 encryption
certificates they issue (RFC 8410), and what a hostile server can substitute."""

from __future__ import annotations

from datetime import timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding

from slixmpp_objenc.core import CertificateError, certificate_fingerprint, generate_identity
from slixmpp_objenc.core.identities import (
    ENCRYPTION_VALIDITY,
    DeviceKeys,
    generate_device_keys,
    issue_encryption_certificate,
    validate_encryption_certificate,
    validate_identity_certificate,
)
from slixmpp_objenc.core.timestamps import utcnow

JULIET = "juliet@capulet.example"


@pytest.fixture(scope="module")
def juliet() -> DeviceKeys:
    return generate_device_keys(JULIET)


def test_a_device_checks_out_and_its_fingerprint_is_the_identitys(juliet: DeviceKeys) -> None:
    identity = validate_identity_certificate(juliet.identity_certificate)
    assert identity.jids == frozenset({JULIET})
    assert identity.fingerprint == juliet.fingerprint
    assert juliet.fingerprint == certificate_fingerprint(juliet.identity_certificate)
    key = validate_encryption_certificate(juliet.encryption_certificate, identity)
    assert key.public_bytes_raw() == juliet.encryption_key.public_key().public_bytes_raw()
    # DER round trip: what goes over PEP
    der = juliet.encryption_certificate.public_bytes(Encoding.DER)
    assert validate_encryption_certificate(der, identity) == key


def test_a_rotated_encryption_key_needs_no_new_identity(juliet: DeviceKeys) -> None:
    identity = validate_identity_certificate(juliet.identity_certificate)
    new_key = X25519PrivateKey.generate()
    rotated = issue_encryption_certificate(
        juliet.identity_key, juliet.identity_certificate, new_key.public_key()
    )
    assert validate_encryption_certificate(rotated, identity).public_bytes_raw() == (
        new_key.public_key().public_bytes_raw()
    )


def test_a_server_substituted_encryption_certificate_is_refused(juliet: DeviceKeys) -> None:
    """The server makes its own identity for juliet and issues an encryption
    certificate with it: it does not chain to the identity we pinned."""
    pinned = validate_identity_certificate(juliet.identity_certificate)
    forged = generate_device_keys(JULIET)
    with pytest.raises(CertificateError, match="not signed by the identity"):
        validate_encryption_certificate(forged.encryption_certificate, pinned)


def test_an_encryption_certificate_for_another_jid_is_refused(juliet: DeviceKeys) -> None:
    romeo = generate_device_keys("romeo@montague.example")
    with pytest.raises(CertificateError, match="names a JID"):
        validate_encryption_certificate(
            romeo.encryption_certificate, validate_identity_certificate(juliet.identity_certificate)
        )


def test_an_expired_encryption_certificate_is_refused(juliet: DeviceKeys) -> None:
    identity = validate_identity_certificate(juliet.identity_certificate)
    later = utcnow() + ENCRYPTION_VALIDITY + timedelta(days=1)
    with pytest.raises(CertificateError, match="expired"):
        validate_encryption_certificate(juliet.encryption_certificate, identity, now=later)


def test_an_identity_must_be_ed25519_and_allowed_to_sign(juliet: DeviceKeys) -> None:
    rsa_identity = generate_identity(JULIET, key_size=2048)
    with pytest.raises(CertificateError, match="not Ed25519"):
        validate_identity_certificate(rsa_identity.certificate)
    # the encryption certificate is no identity
    with pytest.raises(CertificateError):
        validate_identity_certificate(juliet.encryption_certificate)


def test_an_identity_signed_by_another_key_is_not_self_signed() -> None:
    other = Ed25519PrivateKey.generate()
    keys = generate_device_keys(JULIET)
    builder = x509.CertificateBuilder(
        issuer_name=keys.identity_certificate.issuer,
        subject_name=keys.identity_certificate.subject,
        public_key=keys.identity_key.public_key(),
        serial_number=1,
        not_valid_before=keys.identity_certificate.not_valid_before_utc,
        not_valid_after=keys.identity_certificate.not_valid_after_utc,
        extensions=list(keys.identity_certificate.extensions),
    )
    forged = builder.sign(other, None)
    with pytest.raises(CertificateError, match="not self-signed"):
        validate_identity_certificate(forged)


def test_an_encryption_certificate_must_hold_an_x25519_key_for_key_agreement(
    juliet: DeviceKeys,
) -> None:
    identity = validate_identity_certificate(juliet.identity_certificate)
    # the identity's own key put in an "encryption" certificate: not X25519
    wrong = x509.CertificateBuilder(
        issuer_name=juliet.identity_certificate.subject,
        subject_name=juliet.encryption_certificate.subject,
        public_key=ec.generate_private_key(ec.SECP256R1()).public_key(),
        serial_number=2,
        not_valid_before=juliet.encryption_certificate.not_valid_before_utc,
        not_valid_after=juliet.encryption_certificate.not_valid_after_utc,
        extensions=list(juliet.encryption_certificate.extensions),
    ).sign(juliet.identity_key, None)
    with pytest.raises(CertificateError, match="not X25519"):
        validate_encryption_certificate(wrong, identity)


def test_garbage_is_a_certificate_error(juliet: DeviceKeys) -> None:
    identity = validate_identity_certificate(juliet.identity_certificate)
    for junk in (b"", b"\x30\x03\x02\x01\x01", b"x" * 20000):
        with pytest.raises(CertificateError):
            validate_identity_certificate(junk)
        with pytest.raises(CertificateError):
            validate_encryption_certificate(junk, identity)
