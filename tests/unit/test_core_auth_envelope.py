"""core.auth_envelope: the authenticated profile's <e2e/> end to end (plain
values), and the attacks of issue 12 at the wire level."""

from __future__ import annotations

import base64
import hashlib
import xml.etree.ElementTree as ET

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding

from slixmpp_objenc.core import InvalidEnvelope, seal, xmpp_addresses
from slixmpp_objenc.core.auth_envelope import (
    WRAP_ALGO,
    AuthRecipient,
    AuthSender,
    is_authenticated,
    open_authenticated,
    seal_authenticated,
)
from slixmpp_objenc.core.constants import NS_OBJENC
from slixmpp_objenc.core.identities import DeviceKeys, generate_device_keys
from slixmpp_objenc.core.timestamps import utcnow

STANZA = (
    b"<message xmlns='jabber:client' to='bob@example.org' type='chat'><body>hi</body></message>"
)
ALICE = "alice@example.org"
KEY = f"{{{NS_OBJENC}}}key"
DATA = f"{{{NS_OBJENC}}}data"


def ids(device: DeviceKeys) -> tuple[bytes, bytes]:
    def digest(c: object) -> bytes:
        return hashlib.sha256(c.public_bytes(Encoding.DER)).digest()  # type: ignore[attr-defined]

    return digest(device.identity_certificate), digest(device.encryption_certificate)


def me(device: DeviceKeys) -> AuthSender:
    return AuthSender(device.encryption_key, *ids(device))


def to(device: DeviceKeys) -> AuthRecipient:
    return AuthRecipient(*ids(device), device.encryption_key.public_key())


@pytest.fixture(scope="module")
def devices() -> dict[str, DeviceKeys]:
    names = {"alice": "alice@example.org", "bob1": "bob@example.org", "bob2": "bob@example.org"}
    return {k: generate_device_keys(v) for k, v in names.items()}


def resolver(*known: DeviceKeys):  # type: ignore[no-untyped-def]
    """Devices held per JID, as the key ring will hold them."""
    table = {(xmpp_addresses(d.identity_certificate)[0], *ids(d)): d for d in known}

    def resolve(jid: str, identity: bytes, encryption: bytes) -> X25519PublicKey | None:
        device = table.get((jid, identity, encryption))
        return None if device is None else device.encryption_key.public_key()

    return resolve


def test_round_trip_for_every_device(devices: dict[str, DeviceKeys]) -> None:
    alice, bob1, bob2 = devices["alice"], devices["bob1"], devices["bob2"]
    now = utcnow()
    e2e = seal_authenticated(STANZA, me(alice), [to(bob1), to(bob2)], timestamp=now, pad_to=64)
    assert is_authenticated(e2e)
    assert [k.get("cipher-algo") for k in e2e.findall(KEY)] == [WRAP_ALGO, WRAP_ALGO]
    wire = ET.fromstring(ET.tostring(e2e))  # as it travels
    for device in (bob1, bob2):
        opened = open_authenticated(wire, me(device), resolver(alice), ALICE)
        assert opened.stanza_bytes == STANZA
        assert abs((opened.timestamp - now).total_seconds()) < 1
        assert (opened.sender_identity_id, opened.sender_encryption_id) == ids(alice)
        assert opened.stanza.findtext("{jabber:client}body") == "hi"
        sealed = base64.b64decode(wire.find(DATA).text or "")  # type: ignore[union-attr]
        assert opened.digest == hashlib.sha256(sealed).digest()  # the replay digest


def test_an_envelope_from_public_certificates_only_is_refused(
    devices: dict[str, DeviceKeys],
) -> None:
    alice, bob1 = devices["alice"], devices["bob1"]
    forger = AuthSender(X25519PrivateKey.generate(), *ids(alice))  # alice's ids, not her key
    e2e = seal_authenticated(STANZA, forger, [to(bob1)], timestamp=utcnow())
    with pytest.raises(InvalidEnvelope):
        open_authenticated(e2e, me(bob1), resolver(alice), ALICE)


def test_a_sender_we_do_not_hold_is_refused(devices: dict[str, DeviceKeys]) -> None:
    alice, bob1 = devices["alice"], devices["bob1"]
    e2e = seal_authenticated(STANZA, me(alice), [to(bob1)], timestamp=utcnow())
    with pytest.raises(InvalidEnvelope):
        open_authenticated(e2e, me(bob1), resolver(), ALICE)


def test_a_co_recipient_rewrite_is_refused(devices: dict[str, DeviceKeys]) -> None:
    """bob1 takes a real envelope, keeps bob2's <key/>, puts other content in
    <data/> (sealed by alice for bob1 alone, or by itself): bob2 refuses it."""
    alice, bob1, bob2 = devices["alice"], devices["bob1"], devices["bob2"]
    real = seal_authenticated(STANZA, me(alice), [to(bob1), to(bob2)], timestamp=utcnow())
    other = seal_authenticated(
        STANZA.replace(b"hi", b"pay 1000"), me(alice), [to(bob1)], timestamp=utcnow()
    )
    spliced = ET.Element(real.tag)
    spliced.append(real.findall(KEY)[1])  # bob2's
    spliced.append(other.find(DATA))  # type: ignore[arg-type]
    with pytest.raises(InvalidEnvelope):
        open_authenticated(spliced, me(bob2), resolver(alice), ALICE)


def test_malformed_envelopes_fail_alike(devices: dict[str, DeviceKeys]) -> None:
    alice, bob1 = devices["alice"], devices["bob1"]
    good = seal_authenticated(STANZA, me(alice), [to(bob1)], timestamp=utcnow())
    cases = []
    for mutate in (
        lambda e: e.find(DATA).set("identity-sha256", "00" * 31),  # type: ignore[union-attr]
        lambda e: e.find(DATA).set("cert-sha256", "AB" * 32),  # type: ignore[union-attr]
        lambda e: e.find(KEY).set("enc", "!!"),  # type: ignore[union-attr]
        lambda e: e.find(KEY).set("cipher-algo", "RSAES-OAEP"),  # type: ignore[union-attr]
        lambda e: e.remove(e.find(DATA)),  # type: ignore[arg-type]
        lambda e: e.append(ET.fromstring(ET.tostring(e.find(DATA)))),  # type: ignore[arg-type]
    ):
        copy = ET.fromstring(ET.tostring(good))
        mutate(copy)
        cases.append(copy)
    for e2e in cases:
        with pytest.raises(InvalidEnvelope) as raised:
            open_authenticated(e2e, me(bob1), resolver(alice), ALICE)
        assert raised.value.__context__ is None


def test_the_draft_profile_is_not_this_one(devices: dict[str, DeviceKeys]) -> None:
    from testkit import ALICE  # an RSA identity

    from slixmpp_objenc.core import Recipient

    draft = seal(STANZA, [Recipient(ALICE.certificate.public_key())], timestamp=utcnow())
    assert not is_authenticated(draft)
    with pytest.raises(InvalidEnvelope):
        open_authenticated(draft, me(devices["bob1"]), resolver(devices["alice"]), ALICE)
