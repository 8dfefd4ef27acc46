"""Certificates (draft section 8): generated identities name the bare JID as
id-on-xmppAddr; peer certificates are refused when unusable; an OpenSSL-made
certificate is understood."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID

from slixmpp_objenc.core import (
    CertificateError,
    Identity,
    PeerCertificate,
    Recipient,
    certificate_fingerprint,
    format_fingerprint,
    generate_identity,
    load_certificate,
    load_private_key,
    normalize_bare_jid,
    open_envelope,
    seal,
    validate_peer_certificate,
    xmpp_addresses,
)

XMPP_ADDR = x509.ObjectIdentifier("1.3.6.1.5.5.7.8.5")
NOW = datetime.now(UTC)


def utf8string(text: str) -> bytes:
    raw = text.encode()
    assert len(raw) < 128
    return b"\x0c" + bytes([len(raw)]) + raw


def make_cert(
    key,
    *,
    sans: list[x509.GeneralName] | None = None,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
    issuer_key=None,
    issuer_name: x509.Name | None = None,
    subject: str = "romeo",
) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_name or name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or NOW - timedelta(days=1))
        .not_valid_after(not_after or NOW + timedelta(days=30))
    )
    if sans is None:
        sans = [x509.OtherName(XMPP_ADDR, utf8string("romeo@example.net"))]
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    signer = issuer_key or key
    algorithm = None if isinstance(signer, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(signer, algorithm)


@pytest.fixture(scope="module")
def rsa_2048(identity_2048) -> rsa.RSAPrivateKey:
    return identity_2048.private_key


@pytest.fixture(scope="module")
def rsa_1024() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=1024)


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


# --------------------------------------------------------------------------- generate_identity


def test_generate_identity_names_bare_jid(identity_2048):
    cert = identity_2048.certificate
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    others = san.get_values_for_type(x509.OtherName)
    assert len(others) == 1
    assert others[0].type_id.dotted_string == "1.3.6.1.5.5.7.8.5"
    assert others[0].value == b"\x0c\x11romeo@example.net"  # DER UTF8String
    assert xmpp_addresses(cert) == ["romeo@example.net"]
    assert identity_2048.private_key.key_size == 2048
    assert isinstance(cert.public_key(), rsa.RSAPublicKey)
    assert cert.issuer == cert.subject
    cert.verify_directly_issued_by(cert)  # properly self-signed
    assert cert.signature_hash_algorithm.name == "sha256"


def test_generate_identity_default_size(identity_3072):
    assert identity_3072.private_key.key_size == 3072
    assert xmpp_addresses(identity_3072.certificate) == ["juliet@capulet.net"]


def test_generate_identity_strips_resource_and_lowercases():
    identity = generate_identity(
        "Romeo@Example.NET/orchard",
        key_size=2048,
        valid_for=timedelta(days=2),
        now=datetime(2030, 1, 1, tzinfo=UTC),
    )
    assert xmpp_addresses(identity.certificate) == ["romeo@example.net"]
    cert = identity.certificate
    assert cert.not_valid_before_utc <= datetime(2030, 1, 1, tzinfo=UTC)
    assert cert.not_valid_after_utc - cert.not_valid_before_utc == timedelta(days=2)
    peer = validate_peer_certificate(cert, now=datetime(2030, 1, 2, tzinfo=UTC))
    assert peer.jids == frozenset({"romeo@example.net"})
    with pytest.raises(CertificateError):
        validate_peer_certificate(cert, now=datetime(2030, 1, 4, tzinfo=UTC))


def test_generate_identity_is_valid_now(identity_2048):
    peer = validate_peer_certificate(identity_2048.certificate)
    assert peer.jids == frozenset({"romeo@example.net"})
    assert peer.fingerprint == identity_2048.fingerprint
    assert (
        peer.public_key.public_numbers() == identity_2048.private_key.public_key().public_numbers()
    )
    assert not peer.expired(datetime.now(UTC))


@pytest.mark.parametrize("size", [512, 1024, 2047])
def test_generate_identity_refuses_small_keys(size):
    with pytest.raises(CertificateError):
        generate_identity("romeo@example.net", key_size=size)


@pytest.mark.parametrize("jid", ["", "   ", "/resource"])
def test_generate_identity_refuses_empty_jid(jid):
    with pytest.raises(CertificateError):
        generate_identity(jid, key_size=2048)


def test_fingerprint_is_sha256_of_der(identity_2048):
    der = identity_2048.certificate.public_bytes(serialization.Encoding.DER)
    expected = hashlib.sha256(der).hexdigest()
    assert certificate_fingerprint(identity_2048.certificate) == expected
    assert identity_2048.fingerprint == expected
    assert len(expected) == 64 and expected == expected.lower()


def test_format_fingerprint():
    fp = "0123456789abcdef" * 4
    assert format_fingerprint(fp) == (
        "0123 4567 89AB CDEF 0123 4567 89AB CDEF\n0123 4567 89AB CDEF 0123 4567 89AB CDEF"
    )


def test_identity_refuses_mismatched_key(identity_2048, identity_3072):
    with pytest.raises(CertificateError):
        Identity(identity_3072.private_key, identity_2048.certificate)
    same = Identity(identity_2048.private_key, identity_2048.certificate)
    assert same.fingerprint == identity_2048.fingerprint


def test_identity_pem_round_trip(identity_2048):
    pem = identity_2048.private_key_pem()
    assert b"BEGIN PRIVATE KEY" in pem
    key = load_private_key(pem)
    assert key.private_numbers() == identity_2048.private_key.private_numbers()

    encrypted = identity_2048.private_key_pem(b"s3cret")
    assert b"ENCRYPTED PRIVATE KEY" in encrypted
    key = load_private_key(encrypted, b"s3cret")
    assert key.private_numbers() == identity_2048.private_key.private_numbers()
    with pytest.raises(CertificateError):
        load_private_key(encrypted, b"wrong")
    with pytest.raises(CertificateError):
        load_private_key(encrypted)
    with pytest.raises(CertificateError):
        load_private_key(pem, b"unexpected password")

    cert = load_certificate(identity_2048.certificate_pem())
    assert cert == identity_2048.certificate


# --------------------------------------------------------------------------- loading


def test_load_private_key_refusals(rsa_1024, ec_key):
    def pem(key):
        return key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    with pytest.raises(CertificateError):
        load_private_key(pem(rsa_1024))
    with pytest.raises(CertificateError):
        load_private_key(pem(ec_key))
    bad_pem = b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"
    for junk in (b"", b"garbage", bad_pem):
        with pytest.raises(CertificateError):
            load_private_key(junk)


def test_load_certificate_pem_and_der(identity_2048):
    cert = identity_2048.certificate
    assert load_certificate(cert.public_bytes(serialization.Encoding.PEM)) == cert
    assert load_certificate(cert.public_bytes(serialization.Encoding.DER)) == cert
    assert load_certificate(b"\n  " + cert.public_bytes(serialization.Encoding.PEM)) == cert


@pytest.mark.parametrize(
    "junk",
    [
        b"",
        b"garbage",
        b"-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n",
        b"\x30\x03\x02\x01\x01",
    ],
)
def test_load_certificate_garbage(junk):
    with pytest.raises(CertificateError):
        load_certificate(junk)
    with pytest.raises(CertificateError):
        validate_peer_certificate(junk)


# --------------------------------------------------------------------------- validation


def test_validate_accepts_builder_certificate(rsa_2048):
    cert = make_cert(rsa_2048)
    peer = validate_peer_certificate(cert)
    assert isinstance(peer, PeerCertificate)
    assert peer.jids == frozenset({"romeo@example.net"})
    assert peer.fingerprint == certificate_fingerprint(cert)
    # bytes (PEM and DER) are accepted too
    assert validate_peer_certificate(peer.pem()).fingerprint == peer.fingerprint
    der = cert.public_bytes(serialization.Encoding.DER)
    assert validate_peer_certificate(der).fingerprint == peer.fingerprint


def test_validate_multiple_addresses(rsa_2048):
    cert = make_cert(
        rsa_2048,
        sans=[
            x509.DNSName("example.net"),
            x509.OtherName(XMPP_ADDR, utf8string("romeo@example.net")),
            x509.OtherName(XMPP_ADDR, utf8string("romeo@montague.net")),
            x509.OtherName(x509.ObjectIdentifier("1.3.6.1.5.5.7.8.7"), b"\x16\x05_xmpp"),
        ],
    )
    assert xmpp_addresses(cert) == ["romeo@example.net", "romeo@montague.net"]
    assert validate_peer_certificate(cert).jids == frozenset(
        {"romeo@example.net", "romeo@montague.net"}
    )


@pytest.mark.parametrize(
    "sans",
    [
        [],
        [x509.DNSName("example.net")],
        [x509.RFC822Name("romeo@example.net")],
        [x509.OtherName(x509.ObjectIdentifier("1.3.6.1.5.5.7.8.7"), b"\x16\x05_xmpp")],
        [x509.OtherName(XMPP_ADDR, b"\x16\x11romeo@example.net")],  # IA5String, not UTF8
        [x509.OtherName(XMPP_ADDR, b"\x30\x13" + utf8string("romeo@example.net"))],  # SEQUENCE
        [x509.OtherName(XMPP_ADDR, b"\x0c\x02\xff\xfe")],  # not UTF-8
        [x509.OtherName(XMPP_ADDR, utf8string(""))],
        [x509.OtherName(XMPP_ADDR, utf8string("   "))],
    ],
    ids=[
        "no-san",
        "dns-only",
        "email-only",
        "srvname",
        "ia5string",
        "sequence",
        "bad-utf8",
        "empty",
        "blank",
    ],
)
def test_validate_refuses_without_xmpp_addr(rsa_2048, sans):
    cert = make_cert(rsa_2048, sans=sans)
    with pytest.raises(CertificateError):
        validate_peer_certificate(cert)


def test_validate_refuses_expired(rsa_2048):
    cert = make_cert(
        rsa_2048, not_before=NOW - timedelta(days=60), not_after=NOW - timedelta(days=1)
    )
    with pytest.raises(CertificateError):
        validate_peer_certificate(cert)
    # but it was fine while valid
    assert validate_peer_certificate(cert, now=NOW - timedelta(days=30)).jids
    peer = validate_peer_certificate(cert, now=NOW - timedelta(days=30))
    assert peer.expired(NOW)
    assert not peer.expired(NOW - timedelta(days=30))


def test_validate_refuses_not_yet_valid(rsa_2048):
    cert = make_cert(
        rsa_2048, not_before=NOW + timedelta(days=1), not_after=NOW + timedelta(days=60)
    )
    with pytest.raises(CertificateError):
        validate_peer_certificate(cert)
    assert validate_peer_certificate(cert, now=NOW + timedelta(days=2)).jids


def test_validate_refuses_weak_rsa(rsa_1024):
    with pytest.raises(CertificateError):
        validate_peer_certificate(make_cert(rsa_1024))


def test_validate_refuses_ec(ec_key):
    cert = make_cert(ec_key)
    assert xmpp_addresses(cert) == ["romeo@example.net"]
    with pytest.raises(CertificateError):
        validate_peer_certificate(cert)


def test_validate_refuses_ed25519():
    cert = make_cert(ed25519.Ed25519PrivateKey.generate())
    assert xmpp_addresses(cert) == ["romeo@example.net"]
    with pytest.raises(CertificateError):
        validate_peer_certificate(cert)


def test_validate_refuses_broken_self_signature(rsa_2048):
    cert = make_cert(rsa_2048)
    der = bytearray(cert.public_bytes(serialization.Encoding.DER))
    assert validate_peer_certificate(bytes(der)).jids  # positive control
    der[-10] ^= 0x01  # inside the signature BIT STRING
    broken = x509.load_der_x509_certificate(bytes(der))
    assert broken.tbs_certificate_bytes == cert.tbs_certificate_bytes
    with pytest.raises(CertificateError):
        validate_peer_certificate(broken)


def test_validate_refuses_self_issued_signed_by_other_key(rsa_2048, identity_3072):
    """Issuer == subject, but signed by a different key: the signature does not verify."""
    cert = make_cert(rsa_2048, issuer_key=identity_3072.private_key)
    with pytest.raises(CertificateError):
        validate_peer_certificate(cert)


def test_validate_accepts_ca_issued(rsa_2048, identity_3072):
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Capulet CA")])
    cert = make_cert(rsa_2048, issuer_key=identity_3072.private_key, issuer_name=ca_name)
    assert validate_peer_certificate(cert).jids == frozenset({"romeo@example.net"})


def test_normalize_bare_jid():
    assert normalize_bare_jid("Romeo@Example.NET/Orchard/x") == "romeo@example.net"
    assert normalize_bare_jid(" romeo@example.net ") == "romeo@example.net"
    assert normalize_bare_jid("example.net") == "example.net"


# --------------------------------------------------------------------------- OpenSSL


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl CLI not installed")
def test_openssl_cli_certificate(tmp_path):
    result = subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "k.pem",
            "-out",
            "c.pem",
            "-days",
            "30",
            "-subj",
            "/CN=romeo",
            "-addext",
            "subjectAltName=otherName:1.3.6.1.5.5.7.8.5;UTF8:romeo@example.net",
        ],
        cwd=tmp_path,
        capture_output=True,
        timeout=60,
        check=False,
    )
    if result.returncode != 0:
        pytest.skip(f"openssl failed: {result.stderr.decode(errors='replace')[-200:]}")
    cert = load_certificate((tmp_path / "c.pem").read_bytes())
    assert xmpp_addresses(cert) == ["romeo@example.net"]
    peer = validate_peer_certificate((tmp_path / "c.pem").read_bytes())
    assert peer.jids == frozenset({"romeo@example.net"})
    key = load_private_key((tmp_path / "k.pem").read_bytes())
    assert key.public_key().public_numbers() == peer.public_key.public_numbers()
    identity = Identity(key, cert)
    assert identity.fingerprint == peer.fingerprint
    # and it works end to end
    stanza = b"<message xmlns='jabber:client'><body>from openssl</body></message>"
    e2e = seal(
        stanza,
        [Recipient(peer.public_key, peer.fingerprint)],
        timestamp=datetime(2024, 1, 1, tzinfo=UTC),
    )
    assert open_envelope(e2e, key, key_id=identity.fingerprint).stanza_bytes == stanza


@pytest.mark.parametrize(
    "address",
    ["\uff21\uff2c\uff29\uff23\uff25@example.org", "alice\u00ad@example.org", "alice @x.org"],
)
def test_look_alike_addresses_are_refused(address):
    from cryptography import x509 as _x509
    from cryptography.hazmat.primitives import hashes as _hashes
    from cryptography.hazmat.primitives.asymmetric import rsa as _rsa
    from cryptography.x509.oid import NameOID as _NameOID

    from slixmpp_objenc.core.certificates import ID_ON_XMPPADDR, _der_utf8string

    key = _rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = _x509.Name([_x509.NameAttribute(_NameOID.COMMON_NAME, "x")])
    start = datetime.now(UTC) - timedelta(minutes=5)
    cert = (
        _x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(_x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + timedelta(days=1))
        .add_extension(
            _x509.SubjectAlternativeName(
                [_x509.OtherName(ID_ON_XMPPADDR, _der_utf8string(address))]
            ),
            critical=False,
        )
        .sign(key, _hashes.SHA256())
    )
    with pytest.raises(CertificateError, match="normal form"):
        validate_peer_certificate(cert)


# --------------------------------------------------------------------------- issue 9, kind 8


def stringprep_like(jid: str) -> str:
    """A stand-in for slixmpp's stringprep in core tests (the core takes any
    normalizer): nodeprep case-folds and maps ß to ss; invalid JIDs raise."""
    bare = jid.split("/", 1)[0]
    if not bare or bare.count("@") > 1 or bare.startswith("@") or bare.endswith("@"):
        raise ValueError(f"invalid JID {jid!r}")
    return bare.lower().replace("ß", "ss")


@pytest.mark.parametrize(
    ("address", "canonical"),
    [
        ("Romeo@Example.net", "romeo@example.net"),  # case: the old code folded it silently
        ("romeo@montague.net/orchard", "romeo@montague.net"),  # a full JID
        ("straße@example.org", "strasse@example.org"),  # nodeprep maps ß to ss
    ],
)
def test_an_address_the_normalizer_changes_is_refused(rsa_2048, address, canonical):
    cert = make_cert(rsa_2048, sans=[x509.OtherName(XMPP_ADDR, utf8string_any(address))])
    with pytest.raises(CertificateError, match="canonical"):
        validate_peer_certificate(cert, normalize=stringprep_like)
    # the canonical spelling itself is fine
    good = make_cert(rsa_2048, sans=[x509.OtherName(XMPP_ADDR, utf8string_any(canonical))])
    assert validate_peer_certificate(good, normalize=stringprep_like).jids == {canonical}


@pytest.mark.parametrize("address", ["a@b@example.org", "@example.org", "romeo@"])
def test_an_address_the_normalizer_rejects_is_refused(rsa_2048, address):
    cert = make_cert(rsa_2048, sans=[x509.OtherName(XMPP_ADDR, utf8string_any(address))])
    with pytest.raises(CertificateError, match="invalid JID"):
        validate_peer_certificate(cert, normalize=stringprep_like)


def test_one_non_canonical_address_refuses_the_whole_certificate(rsa_2048):
    cert = make_cert(
        rsa_2048,
        sans=[
            x509.OtherName(XMPP_ADDR, utf8string("mallory@evil.example")),
            x509.OtherName(XMPP_ADDR, utf8string("ALICE@example.org")),
        ],
    )
    with pytest.raises(CertificateError):
        validate_peer_certificate(cert)


def test_a_normalizer_that_raises_anything_is_a_certificate_error(rsa_2048):
    def broken(jid: str) -> str:
        raise RuntimeError("stringprep exploded")

    with pytest.raises(CertificateError):
        validate_peer_certificate(make_cert(rsa_2048), normalize=broken)


def test_generated_identities_use_the_canonical_bare_jid():
    identity = generate_identity(
        "Straße@Example.ORG/laptop", key_size=2048, normalize=stringprep_like
    )
    assert xmpp_addresses(identity.certificate) == ["strasse@example.org"]
    peer = validate_peer_certificate(identity.certificate, normalize=stringprep_like)
    assert peer.jids == {"strasse@example.org"}
    with pytest.raises(CertificateError):
        generate_identity("@example.org", key_size=2048, normalize=stringprep_like)


def utf8string_any(text: str) -> bytes:
    from slixmpp_objenc.core.certificates import _der_utf8string

    return _der_utf8string(text)


# --------------------------------------------------------------------------- issue 9, kind 4


def _crafted():
    import hostile_certificates as hostile

    return {
        "duplicate-extension": hostile.duplicate_extension("alice@example.org"),
        "unknown-key-algorithm": hostile.unknown_key_algorithm("alice@example.org"),
        "1.4-MB": hostile.huge("alice@example.org"),
        "16400-bit-rsa": hostile.oversized_rsa("alice@example.org"),
    }


@pytest.fixture(scope="module")
def crafted():
    return _crafted()


@pytest.mark.parametrize(
    "name", ["duplicate-extension", "unknown-key-algorithm", "1.4-MB", "16400-bit-rsa"]
)
def test_malformed_or_oversized_certificates_raise_only_certificate_error(crafted, name):
    # before issue 9: DuplicateExtension and UnsupportedAlgorithm escaped as such, and
    # the 1.4 MB certificate (and the unusable 16400-bit key) was accepted
    raw = crafted[name]
    with pytest.raises(CertificateError):
        validate_peer_certificate(raw)
    pem = (
        b"-----BEGIN CERTIFICATE-----\n"
        + __import__("base64").encodebytes(raw)
        + b"-----END CERTIFICATE-----\n"
    )
    with pytest.raises(CertificateError):
        validate_peer_certificate(pem)


@pytest.mark.parametrize("junk", [None, 42, "not a certificate", object(), b"\x30" * 40_000])
def test_any_input_raises_only_certificate_error(junk):
    with pytest.raises(CertificateError):
        validate_peer_certificate(junk)


def test_the_size_limit_leaves_room_for_honest_certificates(identity_3072):
    from slixmpp_objenc.core.certificates import MAX_CERTIFICATE_SIZE

    ours = identity_3072.certificate.public_bytes(serialization.Encoding.DER)
    assert len(ours) * 8 < MAX_CERTIFICATE_SIZE
