"""Issue 13, device labels: a device's name ("laptop") travels in its encryption
certificate, signed by its identity, so no server can change it; what a contact
chose is cleaned before anyone shows it (escape sequences, length)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.x509.oid import NameOID

from slixmpp_objenc.core.certificates import LABEL_OID, MAX_LABEL, clean_label, encryption_label
from slixmpp_objenc.core.devices import validate_device
from slixmpp_objenc.core.identities import generate_device_keys, issue_encryption_certificate
from slixmpp_objenc.keyring import Keyring
from slixmpp_objenc.store import MemoryStorage

ME = "romeo@montague.net"
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("typed", "shown"),
    [
        ("laptop", "laptop"),
        ("  my   phone ", "my phone"),
        ("\x1b[31mred\x1b[0m", "[31mred [0m"),
        ("two\nlines", "two lines"),
        ("x" * 100, "x" * MAX_LABEL),
        ("", None),
        ("\x00\x07", None),
        (None, None),
    ],
)
def test_labels_are_cleaned(typed: str | None, shown: str | None) -> None:
    assert clean_label(typed) == shown


def test_a_label_is_signed_into_the_encryption_certificate() -> None:
    keys = generate_device_keys(ME, now=T0, label="laptop")
    assert encryption_label(keys.encryption_certificate) == "laptop"
    peer = validate_device(
        keys.identity_certificate, encryption=keys.encryption_certificate, now=T0
    )
    assert peer.label == "laptop"
    unlabelled = generate_device_keys(ME, now=T0)
    assert encryption_label(unlabelled.encryption_certificate) is None


def test_a_hostile_label_is_cleaned_when_read() -> None:
    """A malicious contact signs what it likes into its own certificate: an escape
    sequence or a screenful is cleaned when read, not only when issued."""
    keys = generate_device_keys(ME, now=T0)
    key = X25519PrivateKey.generate()
    certificate = (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.COMMON_NAME, ME),
                    x509.NameAttribute(LABEL_OID, "\x1b]0;owned\x07" + "y" * 500),
                ]
            )
        )
        .issuer_name(keys.identity_certificate.subject)
        .serial_number(1)
        .not_valid_before(T0 - timedelta(minutes=5))
        .not_valid_after(T0 + timedelta(days=30))
        .public_key(key.public_key())
        .add_extension(
            keys.encryption_certificate.extensions.get_extension_for_class(
                x509.SubjectAlternativeName
            ).value,
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            keys.encryption_certificate.extensions.get_extension_for_class(x509.KeyUsage).value,
            critical=True,
        )
        .sign(keys.identity_key, None)
    )
    peer = validate_device(keys.identity_certificate, encryption=certificate, now=T0)
    assert peer.label is not None
    assert peer.label.isprintable() and len(peer.label) <= MAX_LABEL
    assert "\x1b" not in peer.label


def test_two_labels_are_none() -> None:
    keys = generate_device_keys(ME, now=T0)
    certificate = issue_encryption_certificate(
        keys.identity_key,
        keys.identity_certificate,
        X25519PrivateKey.generate().public_key(),
        now=T0,
        label="one",
    )
    assert encryption_label(certificate) == "one"
    doubled = x509.Name([*certificate.subject, x509.NameAttribute(LABEL_OID, "two")])
    builder = (
        x509.CertificateBuilder()
        .subject_name(doubled)
        .issuer_name(certificate.issuer)
        .serial_number(2)
        .not_valid_before(certificate.not_valid_before_utc)
        .not_valid_after(certificate.not_valid_after_utc)
        .public_key(X25519PrivateKey.generate().public_key())
    )
    assert encryption_label(builder.sign(keys.identity_key, None)) is None


async def test_a_new_label_is_a_rotation_now() -> None:
    clock_now = [T0]
    storage = MemoryStorage()
    await storage.open()
    keyring = Keyring(storage, lambda: clock_now[0])
    await keyring.load()
    keyring.device.label = "laptop"
    keys = await keyring.device.ensure(ME)
    assert encryption_label(keys.encryption_certificate) == "laptop"
    outcome = await keyring.device.rotate_now()
    assert outcome is not None and outcome.rotated is None  # nothing due
    keyring.device.label = "work laptop"
    clock_now[0] = T0 + timedelta(hours=2)
    outcome = await keyring.device.rotate_now()
    assert outcome is not None and outcome.rotated is not None
    assert keyring.device.keys is not None
    assert encryption_label(keyring.device.keys.encryption_certificate) == "work laptop"
    assert outcome.retired == (keys.encryption_fingerprint,)  # still opens, kept
