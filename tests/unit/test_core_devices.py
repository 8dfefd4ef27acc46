"""core.devices: what a certificate node publishes, one item per device
(PROTOCOL.md 9, 13.6). ``validate_device`` takes an RSA certificate or an
identity with its encryption certificate; ``read_publication`` reads
``<certificate/>`` and ``<device/>`` items, one bad item never spoiling the
others, within caps; ``vouch_for``/``check_vouch`` carry an RSA key's trust to
the identity of the same device, once. Plain values in, values out."""

from __future__ import annotations

import base64
import hashlib
from datetime import timedelta

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.x509.oid import NameOID

from slixmpp_objenc.core.certificates import (
    ID_ON_XMPPADDR,
    MAX_CERTIFICATE_SIZE,
    Identity,
    PeerCertificate,
    _der_utf8string,
    certificate_fingerprint,
    generate_identity,
)
from slixmpp_objenc.core.devices import (
    VOUCH_LABEL,
    DevicePayload,
    Limit,
    PublishedItem,
    check_vouch,
    read_publication,
    validate_device,
    vouch_for,
)
from slixmpp_objenc.core.errors import CertificateError
from slixmpp_objenc.core.identities import (
    DeviceKeys,
    generate_device_keys,
    issue_encryption_certificate,
)
from slixmpp_objenc.core.timestamps import utcnow

ALICE = "alice@example.org"
BOB = "bob@example.org"


def der(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.DER)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def rsa_item(identity: Identity, item_id: str) -> PublishedItem:
    return PublishedItem(item_id, (b64(der(identity.certificate)),))


def device_item(
    device: DeviceKeys,
    item_id: str,
    *,
    vouches: tuple[tuple[str, str], ...] = (),
) -> PublishedItem:
    payload = DevicePayload(
        (b64(der(device.identity_certificate)),),
        (b64(der(device.encryption_certificate)),),
        vouches,
    )
    return PublishedItem(item_id, (), payload)


def paired(device: DeviceKeys) -> PeerCertificate:
    return validate_device(device.identity_certificate, encryption=device.encryption_certificate)


@pytest.fixture(scope="module")
def rsa_alice() -> Identity:
    return generate_identity(ALICE, key_size=2048)


@pytest.fixture(scope="module")
def rsa_alice_other() -> Identity:
    """Another RSA device of Alice's: the same JID, another key."""
    return generate_identity(ALICE, key_size=2048)


@pytest.fixture(scope="module")
def rsa_bob() -> Identity:
    return generate_identity(BOB, key_size=2048)


@pytest.fixture(scope="module")
def alice1() -> DeviceKeys:
    return generate_device_keys(ALICE)


@pytest.fixture(scope="module")
def alice2() -> DeviceKeys:
    return generate_device_keys(ALICE)


@pytest.fixture(scope="module")
def alice3() -> DeviceKeys:
    return generate_device_keys(ALICE)


@pytest.fixture(scope="module")
def bob1() -> DeviceKeys:
    return generate_device_keys(BOB)


def encryption_naming(device: DeviceKeys, jid: str) -> x509.Certificate:
    """An encryption certificate issued and signed by ``device``'s identity key,
    with its issuer name, but naming ``jid``: only the JID can be wrong."""
    start = utcnow() - timedelta(minutes=5)
    usage = x509.KeyUsage(
        digital_signature=False,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=True,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, jid)]))
        .issuer_name(device.identity_certificate.subject)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + timedelta(days=30))
        .public_key(X25519PrivateKey.generate().public_key())
        .add_extension(
            x509.SubjectAlternativeName([x509.OtherName(ID_ON_XMPPADDR, _der_utf8string(jid))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(usage, critical=True)
        .sign(device.identity_key, None)
    )


# ------------------------------------------------------------------------------- validate_device


def test_validate_device_takes_an_rsa_certificate(rsa_alice: Identity) -> None:
    for given in (rsa_alice.certificate, der(rsa_alice.certificate), rsa_alice.certificate_pem()):
        peer = validate_device(given)
        assert not peer.authenticated
        assert peer.encryption is None
        assert peer.fingerprint == rsa_alice.fingerprint
        assert peer.jids == frozenset({ALICE})


def test_validate_device_takes_an_identity_with_its_encryption_certificate(
    alice1: DeviceKeys,
) -> None:
    for identity, encryption in (
        (alice1.identity_certificate, alice1.encryption_certificate),
        (der(alice1.identity_certificate), der(alice1.encryption_certificate)),
    ):
        peer = validate_device(identity, encryption=encryption)
        assert peer.authenticated
        assert peer.fingerprint == alice1.fingerprint
        assert peer.jids == frozenset({ALICE})
        assert peer.encryption is not None
        assert peer.encryption.fingerprint == certificate_fingerprint(alice1.encryption_certificate)
        raw = serialization.Encoding.Raw, serialization.PublicFormat.Raw
        assert peer.encryption.public_key.public_bytes(*raw) == (
            alice1.encryption_key.public_key().public_bytes(*raw)
        )


def test_validate_device_takes_a_rotated_encryption_certificate(alice1: DeviceKeys) -> None:
    rotated = issue_encryption_certificate(
        alice1.identity_key,
        alice1.identity_certificate,
        X25519PrivateKey.generate().public_key(),
    )
    peer = validate_device(alice1.identity_certificate, encryption=rotated)
    assert peer.fingerprint == alice1.fingerprint  # the identity is the device
    assert peer.encryption is not None
    assert peer.encryption.fingerprint == certificate_fingerprint(rotated)


def test_validate_device_refuses_an_encryption_certificate_of_another_identity(
    alice1: DeviceKeys, alice2: DeviceKeys
) -> None:
    with pytest.raises(CertificateError):
        validate_device(alice1.identity_certificate, encryption=alice2.encryption_certificate)


def test_validate_device_refuses_an_rsa_certificate_with_an_encryption_certificate(
    rsa_alice: Identity, alice1: DeviceKeys
) -> None:
    with pytest.raises(CertificateError, match="RSA"):
        validate_device(rsa_alice.certificate, encryption=alice1.encryption_certificate)


def test_validate_device_refuses_an_encryption_certificate_naming_another_jid(
    alice1: DeviceKeys,
) -> None:
    validate_device(alice1.identity_certificate, encryption=encryption_naming(alice1, ALICE))
    with pytest.raises(CertificateError, match="JID"):
        validate_device(alice1.identity_certificate, encryption=encryption_naming(alice1, BOB))


def test_validate_device_refuses_an_encryption_certificate_as_the_device(
    alice1: DeviceKeys,
) -> None:
    with pytest.raises(CertificateError):
        validate_device(alice1.encryption_certificate)


def test_validate_device_an_identity_alone_has_no_encryption(alice1: DeviceKeys) -> None:
    peer = validate_device(alice1.identity_certificate)
    assert peer.authenticated and peer.encryption is None


# ------------------------------------------------------------------------------ read_publication


def test_a_node_with_an_rsa_item_and_a_device_item_yields_both(
    rsa_alice: Identity, alice1: DeviceKeys
) -> None:
    publication = read_publication(ALICE, [rsa_item(rsa_alice, "rsa"), device_item(alice1, "dev")])
    assert list(publication.certificates) == [rsa_alice.fingerprint, alice1.fingerprint]
    assert publication.item_ids == {rsa_alice.fingerprint: "rsa", alice1.fingerprint: "dev"}
    rsa_peer = publication.certificates[rsa_alice.fingerprint]
    device = publication.certificates[alice1.fingerprint]
    assert not rsa_peer.authenticated and rsa_peer.encryption is None
    assert device.authenticated and device.encryption is not None
    assert device.encryption.fingerprint == certificate_fingerprint(alice1.encryption_certificate)
    assert publication.skipped == ()
    assert publication.limits == ()
    assert publication.vouches == {}


def _malformed(
    rsa: Identity, device: DeviceKeys, rsa_fp: str
) -> dict[str, tuple[PublishedItem, str]]:
    """Bad ``<device/>`` items (all for ``device``), with the reason each is skipped for."""
    identity = b64(der(device.identity_certificate))
    encryption = b64(der(device.encryption_certificate))
    signature = b64(vouch_for(rsa, device.identity_certificate))
    counts = "not one identity and one encryption certificate"

    def bad(
        identities: tuple[str, ...] = (identity,),
        encryptions: tuple[str, ...] = (encryption,),
        vouches: tuple[tuple[str, str], ...] = (),
        payloads: tuple[str, ...] = (),
    ) -> PublishedItem:
        return PublishedItem("bad", payloads, DevicePayload(identities, encryptions, vouches))

    return {
        "no-identity": (bad(identities=()), counts),
        "two-identities": (bad(identities=(identity, identity)), counts),
        "no-encryption": (bad(encryptions=()), counts),
        "two-encryptions": (bad(encryptions=(encryption, encryption)), counts),
        "rsa-certificate-and-device": (bad(payloads=(b64(der(rsa.certificate)),)), counts),
        "two-vouches": (
            bad(vouches=((rsa_fp, signature), (rsa_fp, signature))),
            "more than one vouch",
        ),
        "vouch-bad-hex": (bad(vouches=(("zz" * 32, signature),)), "a malformed vouch"),
        "vouch-short-hex": (bad(vouches=((rsa_fp[:-2], signature),)), "a malformed vouch"),
        "vouch-uppercase-hex": (bad(vouches=((rsa_fp.upper(), signature),)), "a malformed vouch"),
        "vouch-bad-base64": (bad(vouches=((rsa_fp, "!!not base64!!"),)), "a malformed vouch"),
        "vouch-empty": (bad(vouches=((rsa_fp, ""),)), "a malformed vouch"),
        "vouch-too-long": (bad(vouches=((rsa_fp, b64(b"\x01" * 2049)),)), "a malformed vouch"),
        "identity-not-base64": (bad(identities=("MIIB???",)), "not base64"),
        "encryption-not-base64": (bad(encryptions=("MIIB???",)), "not base64"),
    }


MALFORMED = [
    "no-identity",
    "two-identities",
    "no-encryption",
    "two-encryptions",
    "rsa-certificate-and-device",
    "two-vouches",
    "vouch-bad-hex",
    "vouch-short-hex",
    "vouch-uppercase-hex",
    "vouch-bad-base64",
    "vouch-empty",
    "vouch-too-long",
    "identity-not-base64",
    "encryption-not-base64",
]


@pytest.mark.parametrize("case", MALFORMED)
def test_a_malformed_device_item_is_skipped_and_spoils_nothing(
    case: str, rsa_alice: Identity, alice1: DeviceKeys, alice2: DeviceKeys
) -> None:
    bad, reason = _malformed(rsa_alice, alice2, rsa_alice.fingerprint)[case]
    items = [rsa_item(rsa_alice, "rsa"), bad, device_item(alice1, "dev")]
    publication = read_publication(ALICE, items)
    assert publication.item_ids == {rsa_alice.fingerprint: "rsa", alice1.fingerprint: "dev"}
    assert publication.skipped == (("bad", reason),)
    assert alice2.fingerprint not in publication.certificates
    assert publication.vouches == {}


@pytest.mark.parametrize(
    ("case", "found"),
    [("two-identities", 3), ("two-encryptions", 3), ("rsa-certificate-and-device", 3)],
)
def test_too_many_certificates_in_a_device_item_is_a_limit(
    case: str, found: int, rsa_alice: Identity, alice2: DeviceKeys
) -> None:
    bad, _ = _malformed(rsa_alice, alice2, rsa_alice.fingerprint)[case]
    publication = read_publication(ALICE, [bad])
    assert publication.limits == (Limit("certificates-per-item", found, 2),)


@pytest.mark.parametrize("case", ["no-identity", "no-encryption", "two-vouches"])
def test_too_few_certificates_or_vouches_is_no_limit(
    case: str, rsa_alice: Identity, alice2: DeviceKeys
) -> None:
    bad, _ = _malformed(rsa_alice, alice2, rsa_alice.fingerprint)[case]
    assert read_publication(ALICE, [bad]).limits == ()


def test_an_oversized_certificate_in_a_device_item_is_a_limit(alice1: DeviceKeys) -> None:
    huge = b64(b"\x00" * (MAX_CERTIFICATE_SIZE + 1))
    encryption = b64(der(alice1.encryption_certificate))
    item = PublishedItem("huge", (), DevicePayload((huge,), (encryption,)))
    publication = read_publication(ALICE, [item, device_item(alice1, "dev")])
    assert list(publication.item_ids.values()) == ["dev"]
    [(item_id, reason)] = publication.skipped
    assert item_id == "huge" and "bytes" in reason
    assert publication.limits == (
        Limit("certificate-size", MAX_CERTIFICATE_SIZE + 1, MAX_CERTIFICATE_SIZE),
    )


def test_an_encryption_certificate_not_signed_by_the_identity_is_dropped_alone(
    rsa_alice: Identity, alice1: DeviceKeys, alice2: DeviceKeys
) -> None:
    """A server substituting the encryption certificate cannot make the identity
    look unpublished: the identity is taken without it (the one held stays)."""
    swapped = PublishedItem(
        "swapped",
        (),
        DevicePayload(
            (b64(der(alice2.identity_certificate)),), (b64(der(alice1.encryption_certificate)),)
        ),
    )
    publication = read_publication(ALICE, [swapped, rsa_item(rsa_alice, "rsa")])
    assert list(publication.item_ids.values()) == ["swapped", "rsa"]
    assert publication.certificates[alice2.fingerprint].encryption is None
    [(item_id, reason)] = publication.skipped
    assert item_id == "swapped" and "signed by the identity" in reason


def test_an_identity_alone_in_a_certificate_item_is_skipped(
    rsa_alice: Identity, alice1: DeviceKeys
) -> None:
    lone = PublishedItem("lone", (b64(der(alice1.identity_certificate)),))
    publication = read_publication(ALICE, [lone, rsa_item(rsa_alice, "rsa")])
    assert list(publication.item_ids.values()) == ["rsa"]
    assert publication.skipped == (("lone", "an identity certificate alone"),)


def test_an_encryption_certificate_alone_in_a_certificate_item_is_skipped(
    rsa_alice: Identity, alice1: DeviceKeys
) -> None:
    lone = PublishedItem("lone", (b64(der(alice1.encryption_certificate)),))
    publication = read_publication(ALICE, [lone, rsa_item(rsa_alice, "rsa")])
    assert list(publication.item_ids.values()) == ["rsa"]
    [(item_id, _reason)] = publication.skipped
    assert item_id == "lone"


def test_a_device_item_naming_another_jid_is_skipped(
    rsa_alice: Identity, rsa_bob: Identity, alice1: DeviceKeys, bob1: DeviceKeys
) -> None:
    vouch = (rsa_bob.fingerprint, b64(vouch_for(rsa_bob, bob1.identity_certificate)))
    items = [device_item(bob1, "bob", vouches=(vouch,)), device_item(alice1, "dev")]
    publication = read_publication(ALICE, items)
    assert list(publication.item_ids.values()) == ["dev"]
    assert publication.skipped == (("bob", f"names {BOB}, not {ALICE}"),)
    assert publication.vouches == {}  # nothing of a skipped item is kept


def test_a_device_item_published_twice_is_taken_once(alice1: DeviceKeys) -> None:
    publication = read_publication(ALICE, [device_item(alice1, "a"), device_item(alice1, "b")])
    assert publication.item_ids == {alice1.fingerprint: "a"}
    assert publication.skipped == (("b", "a certificate published twice"),)


def test_the_vouch_of_a_device_item_is_kept_unchecked(
    rsa_alice: Identity, alice1: DeviceKeys, alice2: DeviceKeys
) -> None:
    signature = vouch_for(rsa_alice, alice1.identity_certificate)
    wrapped = "\n".join(base64.encodebytes(signature).decode().split())  # whitespace is fine
    items = [
        rsa_item(rsa_alice, "rsa"),
        device_item(alice1, "dev", vouches=((rsa_alice.fingerprint, wrapped),)),
        device_item(alice2, "other"),
    ]
    # held and pinned: the RSA certificate stays (its vouch carries its trust over)
    publication = read_publication(ALICE, items, held={rsa_alice.fingerprint})
    assert publication.vouches == {alice1.fingerprint: (rsa_alice.fingerprint, signature)}
    rsa_peer = publication.certificates[rsa_alice.fingerprint]
    assert check_vouch(rsa_peer, publication.certificates[alice1.fingerprint], signature)


def test_the_rsa_face_of_a_device_is_one_device_with_it(
    rsa_alice: Identity, alice1: DeviceKeys
) -> None:
    """Not held (or held but not pinned): the RSA certificate a <device/> vouches
    for is left out, so a new device is one decision, not two."""
    signature = b64(vouch_for(rsa_alice, alice1.identity_certificate))
    items = [
        rsa_item(rsa_alice, "rsa"),
        device_item(alice1, "dev", vouches=((rsa_alice.fingerprint, signature),)),
    ]
    for kwargs in ({}, {"held": {rsa_alice.fingerprint}, "pinned": set()}):
        publication = read_publication(ALICE, items, **kwargs)  # type: ignore[arg-type]
        assert list(publication.certificates) == [alice1.fingerprint]
        [(item_id, reason)] = publication.skipped
        assert item_id == "rsa" and alice1.fingerprint in reason
    # a vouch that does not check leaves it in
    forged = b64(bytes(256))
    items[1] = device_item(alice1, "dev", vouches=((rsa_alice.fingerprint, forged),))
    assert rsa_alice.fingerprint in read_publication(ALICE, items).certificates


def test_a_vouch_is_kept_as_published_even_if_it_does_not_check(
    rsa_alice: Identity, alice1: DeviceKeys
) -> None:
    """read_publication checks the vouch's form only: checking it is the caller's
    job, against the RSA certificate it holds."""
    junk = bytes(256)
    item = device_item(alice1, "dev", vouches=(("ab" * 32, b64(junk)),))
    publication = read_publication(ALICE, [item])
    assert publication.vouches == {alice1.fingerprint: ("ab" * 32, junk)}


def test_max_certificates_applies_to_device_items(
    rsa_alice: Identity, alice1: DeviceKeys, alice2: DeviceKeys
) -> None:
    items = [rsa_item(rsa_alice, "rsa"), device_item(alice1, "one"), device_item(alice2, "two")]
    publication = read_publication(ALICE, items, max_certificates=2)
    assert list(publication.item_ids.values()) == ["rsa", "one"]
    assert publication.skipped == (("two", "over the limit"),)
    assert publication.limits == (Limit("certificates-per-jid", 3, 2),)


def test_max_examined_applies_to_device_items(
    rsa_alice: Identity, alice1: DeviceKeys, alice2: DeviceKeys, alice3: DeviceKeys
) -> None:
    items = [device_item(d, f"d{n}") for n, d in enumerate((alice1, alice2, alice3))]
    publication = read_publication(ALICE, items, max_examined=1)
    assert list(publication.item_ids.values()) == ["d0"]
    assert publication.skipped == (("d1", "not examined"), ("d2", "not examined"))
    assert publication.limits == (Limit("items-examined", 3, 1),)


def test_a_held_device_item_is_taken_first_beyond_the_caps(
    rsa_alice: Identity, alice1: DeviceKeys, alice2: DeviceKeys
) -> None:
    items = [rsa_item(rsa_alice, "rsa"), device_item(alice1, "one"), device_item(alice2, "two")]
    publication = read_publication(
        ALICE, items, held=[alice2.fingerprint], max_certificates=1, max_examined=1
    )
    assert list(publication.certificates) == [alice2.fingerprint]
    assert publication.item_ids == {alice2.fingerprint: "two"}
    assert publication.skipped == (("rsa", "over the limit"), ("one", "over the limit"))
    assert publication.limits == (Limit("certificates-per-jid", 3, 1),)


# -------------------------------------------------------------------------- vouch_for / check_vouch


@pytest.fixture(scope="module")
def vouch(rsa_alice: Identity, alice1: DeviceKeys) -> bytes:
    return vouch_for(rsa_alice, alice1.identity_certificate)


def test_a_real_vouch_checks(rsa_alice: Identity, alice1: DeviceKeys, vouch: bytes) -> None:
    assert len(vouch) == 256  # RSA-2048
    assert check_vouch(validate_device(rsa_alice.certificate), paired(alice1), vouch)
    # the vouch is over the identity alone: an encryption certificate rotated since is fine
    rotated = issue_encryption_certificate(
        alice1.identity_key, alice1.identity_certificate, X25519PrivateKey.generate().public_key()
    )
    identity = validate_device(alice1.identity_certificate, encryption=rotated)
    assert check_vouch(validate_device(rsa_alice.certificate), identity, vouch)


def test_the_vouch_is_pss_over_the_label_and_the_identity_digest(
    rsa_alice: Identity, alice1: DeviceKeys, vouch: bytes
) -> None:
    """As documented: RSASSA-PSS (SHA-256, MGF1-SHA-256, 32-byte salt) over
    VOUCH_LABEL || 0x00 || SHA-256(identity DER), checked by cryptography alone."""
    message = VOUCH_LABEL + b"\x00" + hashlib.sha256(der(alice1.identity_certificate)).digest()
    pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
    rsa_alice.private_key.public_key().verify(vouch, message, pss, hashes.SHA256())
    with pytest.raises(InvalidSignature):
        rsa_alice.private_key.public_key().verify(vouch, message + b"x", pss, hashes.SHA256())


def test_the_vouch_label_is_the_one_of_the_protocol() -> None:
    assert VOUCH_LABEL == b"urn:ietf:params:xml:ns:xmpp-objenc:0#auth-1 vouch"  # 13.8


def test_two_vouches_for_the_same_identity_differ(
    rsa_alice: Identity, alice1: DeviceKeys, vouch: bytes
) -> None:
    again = vouch_for(rsa_alice, alice1.identity_certificate)
    assert again != vouch  # a random salt
    assert check_vouch(validate_device(rsa_alice.certificate), paired(alice1), again)


def test_a_vouch_over_another_identity_fails(
    rsa_alice: Identity, alice2: DeviceKeys, vouch: bytes
) -> None:
    assert not check_vouch(validate_device(rsa_alice.certificate), paired(alice2), vouch)


def test_a_vouch_by_another_rsa_key_fails(
    rsa_alice: Identity, rsa_alice_other: Identity, alice1: DeviceKeys
) -> None:
    signature = vouch_for(rsa_alice_other, alice1.identity_certificate)
    assert check_vouch(validate_device(rsa_alice_other.certificate), paired(alice1), signature)
    assert not check_vouch(validate_device(rsa_alice.certificate), paired(alice1), signature)


def test_a_vouch_across_jids_fails(rsa_bob: Identity, alice1: DeviceKeys) -> None:
    """Bob's RSA key signs Alice's identity: a good signature, refused because the
    certificates name different JIDs (a vouch never carries trust to another account)."""
    signature = vouch_for(rsa_bob, alice1.identity_certificate)
    message = VOUCH_LABEL + b"\x00" + hashlib.sha256(der(alice1.identity_certificate)).digest()
    pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
    rsa_bob.private_key.public_key().verify(signature, message, pss, hashes.SHA256())
    assert not check_vouch(validate_device(rsa_bob.certificate), paired(alice1), signature)


@pytest.mark.parametrize(
    "spoil",
    [
        lambda s: s[:-1],
        lambda s: s[1:],
        lambda s: s + b"\x00",
        lambda s: bytes([s[0] ^ 0x01]) + s[1:],
        lambda s: s[:-1] + bytes([s[-1] ^ 0x80]),
        lambda s: s[:100] + bytes([s[100] ^ 0x10]) + s[101:],
        lambda s: b"",
        lambda s: bytes(len(s)),
        lambda s: s * 9,  # over the largest RSA signature
    ],
    ids=[
        "truncated",
        "first-byte-dropped",
        "extended",
        "first-bit",
        "last-bit",
        "middle-bit",
        "empty",
        "zeros",
        "oversized",
    ],
)
def test_a_spoilt_vouch_fails(
    spoil: object, rsa_alice: Identity, alice1: DeviceKeys, vouch: bytes
) -> None:
    spoilt = spoil(vouch)  # type: ignore[operator]
    assert spoilt != vouch
    assert not check_vouch(validate_device(rsa_alice.certificate), paired(alice1), spoilt)


def test_check_vouch_with_its_arguments_swapped_fails(
    rsa_alice: Identity, alice1: DeviceKeys, vouch: bytes
) -> None:
    rsa_peer, identity = validate_device(rsa_alice.certificate), paired(alice1)
    assert not check_vouch(identity, rsa_peer, vouch)
    assert not check_vouch(identity, identity, vouch)
    assert not check_vouch(rsa_peer, rsa_peer, vouch)


def test_a_vouch_for_an_rsa_certificate_fails(
    rsa_alice: Identity, rsa_alice_other: Identity
) -> None:
    """Only an identity certificate inherits trust: an RSA key signing another
    RSA certificate vouches for nothing."""
    signature = vouch_for(rsa_alice, rsa_alice_other.certificate)
    assert not check_vouch(
        validate_device(rsa_alice.certificate),
        validate_device(rsa_alice_other.certificate),
        signature,
    )
