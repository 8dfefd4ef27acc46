"""Shared test identities: 2048-bit keys (the minimum) keep the suite fast."""

from __future__ import annotations

from slixmpp_objenc.core import Identity, generate_identity

TESTER: Identity = generate_identity("tester@localhost", key_size=2048)
ALICE: Identity = generate_identity("alice@example.org", key_size=2048)
MALLORY: Identity = generate_identity("mallory@example.org", key_size=2048)


def make_multi_jid_identity(jids: list[str]) -> Identity:
    """A self-signed certificate naming several JIDs (as an attacker might make)."""
    from datetime import UTC, datetime, timedelta

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    from slixmpp_objenc.core.certificates import ID_ON_XMPPADDR, _der_utf8string

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, jids[0])])
    start = datetime.now(UTC) - timedelta(days=1)  # valid for every fixed test clock of a long run
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + timedelta(days=30))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.OtherName(ID_ON_XMPPADDR, _der_utf8string(j)) for j in jids]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    return Identity(key, cert)
