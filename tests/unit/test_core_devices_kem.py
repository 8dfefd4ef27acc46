"""core.devices with the hybrid wrap's ML-KEM-768 certificate (docs/_hybrid_draft.md):
issued with the encryption certificate, it hangs off it
(``PeerCertificate.encryption.kem``), travels as ``<kem/>`` in the ``<device/>``
item (glue.publication) and beside the X25519 certificate in a PEM bundle
(``EncryptionKey.pem()``, what the key ring stores). Real keys throughout."""

from __future__ import annotations

import base64
import xml.etree.ElementTree as ET
from datetime import datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.mlkem import MLKEM768PrivateKey

from slixmpp_objenc.core.certificates import (
    EncryptionKey,
    Identity,
    KemKey,
    certificate_fingerprint,
    generate_identity,
)
from slixmpp_objenc.core.constants import NS_OBJENC, qname
from slixmpp_objenc.core.devices import (
    DevicePayload,
    Limit,
    PublishedItem,
    load_device,
    read_publication,
    validate_device,
)
from slixmpp_objenc.core.errors import CertificateError
from slixmpp_objenc.core.hybrid import issue_kem_certificate, with_kem_key
from slixmpp_objenc.core.identities import DeviceKeys, generate_device_keys
from slixmpp_objenc.core.timestamps import utcnow
from slixmpp_objenc.glue.publication import device_payload

ALICE = "alice@example.org"
NOW = utcnow().replace(microsecond=0)


def der(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.DER)


def pem(*certificates: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certificates)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def kem_for(device: DeviceKeys, *, now: datetime = NOW) -> x509.Certificate:
    """An ML-KEM-768 certificate issued by ``device``'s identity at ``now``."""
    public_key = MLKEM768PrivateKey.generate().public_key()
    return issue_kem_certificate(
        device.identity_key, device.identity_certificate, public_key, now=now
    )


def with_kem(jid: str = ALICE) -> DeviceKeys:
    """A device with all three certificates, issued together at :data:`NOW`."""
    return with_kem_key(generate_device_keys(jid, now=NOW))


@pytest.fixture(scope="module")
def alice1() -> DeviceKeys:
    return with_kem()


@pytest.fixture(scope="module")
def alice2() -> DeviceKeys:
    return with_kem()


@pytest.fixture(scope="module")
def plain() -> DeviceKeys:
    """A device without an ML-KEM certificate."""
    return generate_device_keys(ALICE, now=NOW)


@pytest.fixture(scope="module")
def rsa_alice() -> Identity:
    return generate_identity(ALICE, key_size=2048)


def kem_of(device: DeviceKeys) -> x509.Certificate:
    assert device.kem_certificate is not None
    return device.kem_certificate


def device_item(
    device: DeviceKeys, item_id: str, *, kem: tuple[str, ...] | None = None
) -> PublishedItem:
    """``device``'s ``<device/>`` item; ``kem`` replaces its ``<kem/>`` children."""
    if kem is None:
        kem = () if device.kem_certificate is None else (b64(der(device.kem_certificate)),)
    payload = DevicePayload(
        (b64(der(device.identity_certificate)),),
        (b64(der(device.encryption_certificate)),),
        (),
        kem,
    )
    return PublishedItem(item_id, (), payload)


def as_read(item_id: str, payload: ET.Element, *, devices_read: bool = True) -> PublishedItem:
    """An item as a reader takes it off the wire: a draft-only reader
    (``devices_read=False``) looks at ``<certificate/>`` children only."""
    item = ET.Element("item", {"id": item_id})
    item.append(payload)

    def texts(parent: ET.Element, name: str) -> tuple[str, ...]:
        return tuple(c.text or "" for c in parent.findall(qname(NS_OBJENC, name)))

    devices = item.findall(qname(NS_OBJENC, "device")) if devices_read else []
    device = None
    if devices:
        [found] = devices
        vouches = tuple(
            (v.get("cert-sha256", ""), v.text or "")
            for v in found.findall(qname(NS_OBJENC, "vouch"))
        )
        device = DevicePayload(
            texts(found, "identity"), texts(found, "encryption"), vouches, texts(found, "kem")
        )
    return PublishedItem(item_id, texts(item, "certificate"), device)


# ------------------------------------------------------------------------------ validate_device


def test_the_bundle_gives_the_encryption_key_with_its_kem(alice1: DeviceKeys) -> None:
    bundle = pem(alice1.encryption_certificate, kem_of(alice1))
    peer = validate_device(alice1.identity_certificate, encryption=bundle)
    assert peer.encryption is not None and peer.encryption.kem is not None
    kem = peer.encryption.kem
    assert isinstance(kem, KemKey)
    assert kem.fingerprint == alice1.kem_fingerprint == certificate_fingerprint(kem_of(alice1))
    assert kem.certificate == kem_of(alice1)
    assert alice1.kem_key is not None
    assert kem.public_key.public_bytes_raw() == alice1.kem_key.public_key().public_bytes_raw()
    assert peer.encryption.fingerprint == alice1.encryption_fingerprint
    assert peer.encryption.pem() == bundle
    assert kem.pem() == pem(kem_of(alice1))


@pytest.mark.parametrize("form", ["certificate", "der", "pem"])
def test_the_kem_given_apart(form: str, alice1: DeviceKeys) -> None:
    kem = kem_of(alice1)
    forms: dict[str, x509.Certificate | bytes] = {
        "certificate": kem,
        "der": der(kem),
        "pem": pem(kem),
    }
    given = forms[form]
    peer = validate_device(
        der(alice1.identity_certificate), encryption=der(alice1.encryption_certificate), kem=given
    )
    assert peer.encryption is not None and peer.encryption.kem is not None
    assert peer.encryption.kem.fingerprint == alice1.kem_fingerprint


def test_without_kem_nothing_changes(plain: DeviceKeys) -> None:
    for encryption in (
        plain.encryption_certificate,
        der(plain.encryption_certificate),
        pem(plain.encryption_certificate),
    ):
        peer = validate_device(plain.identity_certificate, encryption=encryption)
        assert peer.encryption is not None and peer.encryption.kem is None
        assert peer.encryption.pem() == pem(plain.encryption_certificate)


def test_the_stored_bundle_validates_back_to_the_same_kem(alice1: DeviceKeys) -> None:
    first = validate_device(
        alice1.identity_certificate, encryption=alice1.encryption_certificate, kem=kem_of(alice1)
    )
    assert first.encryption is not None and first.encryption.kem is not None
    stored = first.encryption.pem()
    again = validate_device(first.pem(), encryption=stored)
    assert again.encryption is not None and again.encryption.kem is not None
    assert again.encryption.kem.fingerprint == first.encryption.kem.fingerprint
    assert again.encryption.fingerprint == first.encryption.fingerprint
    assert again.encryption == first.encryption


def test_encryption_key_pem_without_kem_is_the_one_certificate(plain: DeviceKeys) -> None:
    certificate = plain.encryption_certificate
    key = EncryptionKey(certificate, certificate.public_key(), "id")  # type: ignore[arg-type]
    assert key.kem is None
    assert key.pem() == pem(certificate)


def test_a_kem_a_second_off_is_the_same_issuance(alice1: DeviceKeys) -> None:
    """X.509 times are whole seconds: issuing the two a moment apart is fine."""
    close = kem_for(alice1, now=NOW + timedelta(seconds=1))
    peer = validate_device(
        alice1.identity_certificate, encryption=alice1.encryption_certificate, kem=close
    )
    assert peer.encryption is not None and peer.encryption.kem is not None


def _refused(alice1: DeviceKeys, alice2: DeviceKeys) -> dict[str, tuple[dict[str, object], str]]:
    """validate_device keyword arguments for ``alice1``'s identity, each refused,
    with a word of the reason."""
    encryption = alice1.encryption_certificate
    kem = kem_of(alice1)
    return {
        "kem-of-another-identity": (
            {"encryption": encryption, "kem": kem_of(alice2)},
            "not signed by the identity",
        ),
        "bundled-kem-of-another-identity": (
            {"encryption": pem(encryption, kem_of(alice2))},
            "not signed by the identity",
        ),
        "x25519-in-the-kem-slot": ({"encryption": encryption, "kem": encryption}, "ML-KEM-768"),
        "x25519-twice-in-the-bundle": ({"encryption": pem(encryption, encryption)}, "ML-KEM-768"),
        "kem-of-an-earlier-rotation": (
            {"encryption": encryption, "kem": kem_for(alice1, now=NOW - timedelta(days=7))},
            "not issued with",
        ),
        "kem-of-a-later-rotation": (
            {
                "encryption": encryption,
                "kem": kem_for(alice1, now=NOW + timedelta(days=7)),
                "now": NOW + timedelta(days=8),
            },
            "not issued with",
        ),
        "kem-two-seconds-off": (
            {"encryption": encryption, "kem": kem_for(alice1, now=NOW - timedelta(seconds=2))},
            "not issued with",
        ),
        "three-in-the-bundle": (
            {"encryption": pem(encryption, kem, kem_for(alice1))},
            "3 certificates",
        ),
        "kem-first": ({"encryption": pem(kem, encryption)}, "not X25519"),
        "kem-alone-as-encryption": ({"encryption": pem(kem)}, "not X25519"),
        "bundle-and-kem-apart": (
            {"encryption": pem(encryption, kem), "kem": kem},
            "two ML-KEM certificates",
        ),
        "two-in-the-kem-slot": ({"encryption": encryption, "kem": pem(kem, kem)}, "2 certificates"),
        "kem-without-encryption": ({"kem": kem}, "comes with its encryption certificate"),
        "kem-garbage": ({"encryption": encryption, "kem": b"\x30\x03junk"}, "cannot load"),
        "bundle-garbage": (
            {"encryption": b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"},
            "cannot load",
        ),
    }


REFUSED = [
    "kem-of-another-identity",
    "bundled-kem-of-another-identity",
    "x25519-in-the-kem-slot",
    "x25519-twice-in-the-bundle",
    "kem-of-an-earlier-rotation",
    "kem-of-a-later-rotation",
    "kem-two-seconds-off",
    "three-in-the-bundle",
    "kem-first",
    "kem-alone-as-encryption",
    "bundle-and-kem-apart",
    "two-in-the-kem-slot",
    "kem-without-encryption",
    "kem-garbage",
    "bundle-garbage",
]


@pytest.mark.parametrize("case", REFUSED)
def test_a_bad_kem_or_bundle_is_refused(case: str, alice1: DeviceKeys, alice2: DeviceKeys) -> None:
    arguments, reason = _refused(alice1, alice2)[case]
    with pytest.raises(CertificateError, match=reason):
        validate_device(alice1.identity_certificate, **arguments)  # type: ignore[arg-type]


def test_an_expired_kem_is_refused(alice1: DeviceKeys) -> None:
    with pytest.raises(CertificateError, match="expired"):
        validate_device(
            alice1.identity_certificate,
            encryption=alice1.encryption_certificate,
            kem=kem_of(alice1),
            now=NOW + timedelta(days=400),
        )


def test_an_rsa_certificate_has_no_kem(rsa_alice: Identity, alice1: DeviceKeys) -> None:
    with pytest.raises(CertificateError, match="RSA"):
        validate_device(rsa_alice.certificate, kem=kem_of(alice1))


# ------------------------------------------------------------------------------ load_device


def test_load_device_takes_three_certificates(alice1: DeviceKeys) -> None:
    peer = load_device(
        pem(alice1.identity_certificate, alice1.encryption_certificate, kem_of(alice1))
    )
    assert peer.fingerprint == alice1.fingerprint
    assert peer.encryption is not None and peer.encryption.kem is not None
    assert peer.encryption.kem.fingerprint == alice1.kem_fingerprint


def test_load_device_still_takes_two(plain: DeviceKeys) -> None:
    peer = load_device(pem(plain.identity_certificate, plain.encryption_certificate))
    assert peer.encryption is not None and peer.encryption.kem is None


@pytest.mark.parametrize("case", ["four", "kem-second", "kem-of-another"])
def test_load_device_refuses_a_bad_set(case: str, alice1: DeviceKeys, alice2: DeviceKeys) -> None:
    identity, encryption, kem = (
        alice1.identity_certificate,
        alice1.encryption_certificate,
        kem_of(alice1),
    )
    given = {
        "four": pem(identity, encryption, kem, kem),
        "kem-second": pem(identity, kem, encryption),
        "kem-of-another": pem(identity, encryption, kem_of(alice2)),
    }[case]
    with pytest.raises(CertificateError):
        load_device(given)


# ------------------------------------------------------------------------------ read_publication


def test_a_device_item_with_kem_is_taken_with_it(alice1: DeviceKeys, plain: DeviceKeys) -> None:
    publication = read_publication(ALICE, [device_item(alice1, "pq"), device_item(plain, "x")])
    assert publication.item_ids == {alice1.fingerprint: "pq", plain.fingerprint: "x"}
    pq = publication.certificates[alice1.fingerprint].encryption
    assert pq is not None and pq.kem is not None
    assert pq.kem.fingerprint == alice1.kem_fingerprint
    classic = publication.certificates[plain.fingerprint].encryption
    assert classic is not None and classic.kem is None
    assert publication.skipped == () and publication.limits == ()


def test_what_we_publish_reads_back_with_its_kem(rsa_alice: Identity, alice1: DeviceKeys) -> None:
    payload = device_payload(rsa_alice, alice1)
    names = [child.tag.rsplit("}", 1)[1] for child in payload]
    assert names == ["identity", "encryption", "kem", "vouch"]
    publication = read_publication(ALICE, [as_read(alice1.fingerprint, payload)])
    peer = publication.certificates[alice1.fingerprint]
    assert peer.encryption is not None and peer.encryption.kem is not None
    assert peer.encryption.kem.fingerprint == alice1.kem_fingerprint
    assert set(publication.vouches) == {alice1.fingerprint}


def test_a_device_without_kem_publishes_none(rsa_alice: Identity, plain: DeviceKeys) -> None:
    payload = device_payload(rsa_alice, plain)
    names = [child.tag.rsplit("}", 1)[1] for child in payload]
    assert names == ["identity", "encryption", "vouch"]


def test_a_draft_only_reader_is_unaffected(rsa_alice: Identity, alice1: DeviceKeys) -> None:
    """A reader of the draft's profile finds no ``<certificate/>`` in the item with
    ``<kem/>`` and skips it; the RSA item beside it is read as always."""
    device = as_read(alice1.fingerprint, device_payload(rsa_alice, alice1), devices_read=False)
    rsa_payload = ET.Element(qname(NS_OBJENC, "certificate"))
    rsa_payload.text = b64(der(rsa_alice.certificate))
    rsa = as_read(rsa_alice.fingerprint, rsa_payload, devices_read=False)
    publication = read_publication(ALICE, [device, rsa])
    assert list(publication.certificates) == [rsa_alice.fingerprint]
    assert publication.skipped == ((alice1.fingerprint, "0 certificates in one item"),)
    assert publication.certificates[rsa_alice.fingerprint].encryption is None


def _bad_kem_items(alice1: DeviceKeys, alice2: DeviceKeys) -> dict[str, tuple[PublishedItem, str]]:
    """Items of ``alice2`` skipped whole for a malformed ``<kem/>``, with the reason."""
    kem = b64(der(kem_of(alice2)))
    return {
        "two-kems": (device_item(alice2, "bad", kem=(kem, kem)), "more than one ML-KEM"),
        "two-different-kems": (
            device_item(alice2, "bad", kem=(kem, b64(der(kem_for(alice2))))),
            "more than one ML-KEM",
        ),
        "kem-not-base64": (device_item(alice2, "bad", kem=("MIIB???",)), "not base64"),
        "kem-oversized": (
            device_item(alice2, "bad", kem=(b64(b"\x00" * (16 * 1024 + 1)),)),
            "certificate of 16385 bytes",
        ),
    }


@pytest.mark.parametrize(
    "case", ["two-kems", "two-different-kems", "kem-not-base64", "kem-oversized"]
)
def test_a_malformed_kem_skips_its_item_only(
    case: str, alice1: DeviceKeys, alice2: DeviceKeys
) -> None:
    bad, reason = _bad_kem_items(alice1, alice2)[case]
    publication = read_publication(ALICE, [bad, device_item(alice1, "good")])
    assert publication.item_ids == {alice1.fingerprint: "good"}
    [(item_id, skipped)] = publication.skipped
    assert item_id == "bad" and reason in skipped
    assert alice2.fingerprint not in publication.certificates


def _invalid_kem(alice1: DeviceKeys, alice2: DeviceKeys) -> dict[str, tuple[x509.Certificate, str]]:
    return {
        "another-identity": (kem_of(alice1), "not signed by the identity"),
        "x25519": (alice2.encryption_certificate, "not ML-KEM-768"),
        "another-rotation": (kem_for(alice2, now=NOW - timedelta(days=7)), "not issued with"),
    }


@pytest.mark.parametrize("case", ["another-identity", "x25519", "another-rotation"])
def test_an_invalid_kem_leaves_the_identity_alone(
    case: str, alice1: DeviceKeys, alice2: DeviceKeys
) -> None:
    """As for a substituted encryption certificate: the identity stands without
    its encryption certificate (the ones held stay in use), never with the
    encryption certificate and no ML-KEM one (that would be a downgrade)."""
    certificate, reason = _invalid_kem(alice1, alice2)[case]
    item = device_item(alice2, "bad", kem=(b64(der(certificate)),))
    publication = read_publication(ALICE, [item, device_item(alice1, "good")])
    assert publication.item_ids == {alice2.fingerprint: "bad", alice1.fingerprint: "good"}
    assert publication.certificates[alice2.fingerprint].encryption is None
    [(item_id, skipped)] = publication.skipped
    assert item_id == "bad" and skipped.startswith("encryption certificate: ")
    assert reason in skipped


def test_the_kem_counts_as_a_certificate_examined(
    alice1: DeviceKeys, alice2: DeviceKeys, plain: DeviceKeys
) -> None:
    items = [device_item(alice1, "a"), device_item(plain, "p"), device_item(alice2, "b")]
    publication = read_publication(ALICE, items, max_examined=3)
    assert list(publication.item_ids.values()) == ["a", "p"]
    assert publication.skipped == (("b", "not examined"),)
    assert publication.limits == (Limit("items-examined", 4, 3),)
    # one examined left is not enough for an item with its ML-KEM certificate
    publication = read_publication(ALICE, [device_item(alice1, "a")], max_examined=1)
    assert publication.certificates == {}
    assert publication.skipped == (("a", "not examined"),)
    # what is held is taken beyond the caps, its ML-KEM certificate included
    held = read_publication(ALICE, items, held=[alice2.fingerprint], max_examined=2)
    assert list(held.item_ids.values()) == ["b", "a"]
    taken = held.certificates[alice2.fingerprint].encryption
    assert taken is not None and taken.kem is not None
