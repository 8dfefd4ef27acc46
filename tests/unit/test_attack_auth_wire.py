"""Attacks on the authenticated profile's <e2e/> (core.auth_envelope,
core.authenticated): a hostile server holding every public certificate, a
malicious co-recipient, a malicious contact.

Tests named ``..._is_refused`` / ``..._fails`` show an attack that does not
work. A test that fails shows a real problem (see the docstring)."""

from __future__ import annotations

import base64
import hashlib
import os
import xml.etree.ElementTree as ET
from collections.abc import Callable
from itertools import count

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding

from slixmpp_objenc.core import InvalidEnvelope, Recipient, open_envelope, seal, xmpp_addresses
from slixmpp_objenc.core import auth_envelope as wire
from slixmpp_objenc.core.auth_envelope import (
    MAX_WRAPS,
    AuthRecipient,
    AuthSender,
    open_authenticated,
    seal_authenticated,
)
from slixmpp_objenc.core.authenticated import (
    Wrap,
    open_wrap,
    seal_content,
    seal_wraps,
)
from slixmpp_objenc.core.constants import NS_OBJENC
from slixmpp_objenc.core.errors import EncryptionError
from slixmpp_objenc.core.identities import (
    DeviceKeys,
    generate_device_keys,
    issue_encryption_certificate,
    validate_encryption_certificate,
    validate_identity_certificate,
)
from slixmpp_objenc.core.timestamps import utcnow

STANZA = (
    b"<message xmlns='jabber:client' from='alice@example.org/a' to='bob@example.org'"
    b" type='chat'><body>hi</body></message>"
)
KEY = f"{{{NS_OBJENC}}}key"
DATA = f"{{{NS_OBJENC}}}data"
E2E = f"{{{NS_OBJENC}}}e2e"

Resolver = Callable[[str, bytes, bytes], X25519PublicKey | None]
ALICE_JID = "alice@example.org"


def digest(certificate: object) -> bytes:
    return hashlib.sha256(certificate.public_bytes(Encoding.DER)).digest()  # type: ignore[attr-defined]


def ids(device: DeviceKeys) -> tuple[bytes, bytes]:
    return digest(device.identity_certificate), digest(device.encryption_certificate)


def me(device: DeviceKeys) -> AuthSender:
    return AuthSender(device.encryption_key, *ids(device))


def to(device: DeviceKeys) -> AuthRecipient:
    return AuthRecipient(*ids(device), device.encryption_key.public_key())


def resolver(*known: DeviceKeys) -> Resolver:
    table = {(jid_of(d), *ids(d)): d.encryption_key.public_key() for d in known}
    return lambda jid, identity, encryption: table.get((jid, identity, encryption))


def jid_of(device: DeviceKeys) -> str:
    [jid] = xmpp_addresses(device.identity_certificate)
    return jid


def on_wire(e2e: ET.Element) -> ET.Element:
    return ET.fromstring(ET.tostring(e2e))


def refused(
    e2e: ET.Element, device: DeviceKeys, resolve: Resolver, sender: str = ALICE_JID
) -> InvalidEnvelope:
    with pytest.raises(InvalidEnvelope) as raised:
        open_authenticated(e2e, me(device), resolve, sender)
    return raised.value


@pytest.fixture(scope="module")
def devices() -> dict[str, DeviceKeys]:
    names = {
        "alice": "alice@example.org",
        "alice2": "alice@example.org",
        "bob1": "bob@example.org",
        "bob2": "bob@example.org",
        "mallory": "mallory@example.org",
    }
    return {k: generate_device_keys(v) for k, v in names.items()}


# -- (1) misbinding / unknown key share ------------------------------------------


def test_a_wrap_relabelled_for_another_device_of_the_same_jid_is_refused(
    devices: dict[str, DeviceKeys],
) -> None:
    """The server copies bob1's <key/> under bob2's ids (bob2 got none)."""
    alice, bob1, bob2 = devices["alice"], devices["bob1"], devices["bob2"]
    e2e = on_wire(seal_authenticated(STANZA, me(alice), [to(bob1)], timestamp=utcnow()))
    key = e2e.find(KEY)
    assert key is not None
    key.set("identity-sha256", ids(bob2)[0].hex())
    key.set("cert-sha256", ids(bob2)[1].hex())
    refused(e2e, bob2, resolver(alice))
    # and bob2's identity with bob1's (rotated) encryption id, and the reverse
    for mixed in ((ids(bob2)[0], ids(bob1)[1]), (ids(bob1)[0], ids(bob2)[1])):
        key.set("identity-sha256", mixed[0].hex())
        key.set("cert-sha256", mixed[1].hex())
        refused(e2e, bob1, resolver(alice))


def test_sender_ids_swapped_for_another_device_of_the_same_jid_are_refused(
    devices: dict[str, DeviceKeys],
) -> None:
    """alice2 (alice's other device, which bob holds) is named in <data/> for a
    stanza alice sealed: the wrap's info and the content's aad both differ."""
    alice, alice2, bob1 = devices["alice"], devices["alice2"], devices["bob1"]
    e2e = on_wire(seal_authenticated(STANZA, me(alice), [to(bob1)], timestamp=utcnow()))
    data = e2e.find(DATA)
    assert data is not None
    for identity, encryption in (
        ids(alice2),
        (ids(alice)[0], ids(alice2)[1]),
        (ids(alice2)[0], ids(alice)[1]),
    ):
        data.set("identity-sha256", identity.hex())
        data.set("cert-sha256", encryption.hex())
        # a resolver that even maps these pairs to alice's real key
        refused(e2e, bob1, lambda j, i, e: alice.encryption_key.public_key())


def test_a_contact_certifying_the_senders_public_key_does_not_rebind_the_sender(
    devices: dict[str, DeviceKeys],
) -> None:
    """mallory issues, with her own identity, an encryption certificate holding
    alice's X25519 public key (no proof of possession is asked, so it
    validates). The server then names mallory's certificates in <data/> of
    alice's stanza: the ids in info/aad keep it alice's, it does not open as
    mallory's (no unknown-key share)."""
    alice, bob1, mallory = devices["alice"], devices["bob1"], devices["mallory"]
    stolen = issue_encryption_certificate(
        mallory.identity_key, mallory.identity_certificate, alice.encryption_key.public_key()
    )
    peer = validate_identity_certificate(mallory.identity_certificate)
    assert validate_encryption_certificate(stolen, peer).public_bytes_raw() == (
        alice.encryption_key.public_key().public_bytes_raw()
    )
    e2e = on_wire(seal_authenticated(STANZA, me(alice), [to(bob1)], timestamp=utcnow()))
    data = e2e.find(DATA)
    assert data is not None
    data.set("identity-sha256", ids(mallory)[0].hex())
    data.set("cert-sha256", digest(stolen).hex())
    table = {(ids(mallory)[0], digest(stolen)): alice.encryption_key.public_key()}
    refused(e2e, bob1, lambda j, i, e: table.get((i, e)))


def test_a_stanza_reflected_to_its_sender_is_refused(devices: dict[str, DeviceKeys]) -> None:
    """alice -> bob1, sent back to alice (who holds bob1), as is and with the
    <key/> relabelled for alice and <data/> naming bob1."""
    alice, bob1 = devices["alice"], devices["bob1"]
    e2e = on_wire(seal_authenticated(STANZA, me(alice), [to(bob1)], timestamp=utcnow()))
    both = resolver(alice, bob1)
    refused(e2e, alice, both)
    key, data = e2e.find(KEY), e2e.find(DATA)
    assert key is not None and data is not None
    key.set("identity-sha256", ids(alice)[0].hex())
    key.set("cert-sha256", ids(alice)[1].hex())
    refused(e2e, alice, both)
    data.set("identity-sha256", ids(bob1)[0].hex())
    data.set("cert-sha256", ids(bob1)[1].hex())
    refused(e2e, alice, both)


def test_a_contact_cannot_speak_as_another_jid(devices: dict[str, DeviceKeys]) -> None:
    """mallory, a contact bob holds, seals a stanza whose inner ``from`` is alice;
    a hostile server delivers it with outer ``from=alice@example.org/a``. The
    resolver is asked for a device *of alice* (the outer sender's JID), so
    mallory's certificates are not found: refused. (Found by review: the
    resolver first took no JID.)"""
    alice, bob1, mallory = devices["alice"], devices["bob1"], devices["mallory"]
    e2e = on_wire(seal_authenticated(STANZA, me(mallory), [to(bob1)], timestamp=utcnow()))
    refused(e2e, bob1, resolver(alice, mallory), sender=ALICE_JID)
    opened = open_authenticated(e2e, me(bob1), resolver(alice, mallory), jid_of(mallory))
    assert opened.sender == jid_of(mallory)  # as herself, it opens, and says so


# -- (2) co-recipient, duplicates, cross-profile ---------------------------------


def test_a_co_recipient_cannot_give_another_recipient_a_wrap_from_another_stanza(
    devices: dict[str, DeviceKeys],
) -> None:
    """bob1 (who knows R of both stanzas) puts bob2's <key/> from stanza 1 first,
    then stanza 2's: the first one for bob2 is the one read, and it is refused;
    nothing makes bob2 take other content."""
    alice, bob1, bob2 = devices["alice"], devices["bob1"], devices["bob2"]
    one = on_wire(seal_authenticated(STANZA, me(alice), [to(bob1), to(bob2)], timestamp=utcnow()))
    two = on_wire(
        seal_authenticated(
            STANZA.replace(b"hi", b"bye"), me(alice), [to(bob1), to(bob2)], timestamp=utcnow()
        )
    )
    mixed = ET.Element(E2E)
    mixed.append(one.findall(KEY)[1])
    mixed.append(two.findall(KEY)[1])
    mixed.append(two.find(DATA))  # type: ignore[arg-type]
    refused(mixed, bob2, resolver(alice))
    # the same R re-encrypted by bob1 with alice's ids for new content: refused
    r = open_wrap(
        Wrap(*ids(bob1), *_enc_ct(one.findall(KEY)[0])),
        _t(one),
        bob1.encryption_key,
        alice.encryption_key.public_key(),
        *ids(alice),
    )
    _, forged_t = seal_content(
        b"<plain/>", *ids(alice), random_bytes=lambda n: (r + os.urandom(12))[:n]
    )
    forged = ET.Element(E2E)
    forged.append(one.findall(KEY)[1])
    data = one.find(DATA)
    assert data is not None
    data.text = base64.b64encode(forged_t).decode()
    forged.append(data)
    refused(forged, bob2, resolver(alice))


def _enc_ct(key: ET.Element) -> tuple[bytes, bytes]:
    return base64.b64decode(key.get("enc", "")), base64.b64decode(key.text or "")


def _t(e2e: ET.Element) -> bytes:
    data = e2e.find(DATA)
    assert data is not None
    return base64.b64decode(data.text or "")


def test_a_duplicate_key_in_front_makes_the_receiver_refuse(
    devices: dict[str, DeviceKeys],
) -> None:
    """A server that puts a junk <key/> for bob1 first gets the stanza refused
    (it could as well drop it: denial of service only, nothing accepted)."""
    alice, bob1 = devices["alice"], devices["bob1"]
    e2e = on_wire(seal_authenticated(STANZA, me(alice), [to(bob1)], timestamp=utcnow()))
    junk = ET.fromstring(ET.tostring(e2e.find(KEY)))  # type: ignore[arg-type]
    junk.set("enc", base64.b64encode(os.urandom(32)).decode())
    e2e.insert(0, junk)
    refused(e2e, bob1, resolver(alice))


def test_cross_profile_mixtures_are_refused(devices: dict[str, DeviceKeys]) -> None:
    """The draft RSA profile's <key/>/<data/> and this one's do not mix."""
    from testkit import ALICE, MALLORY  # RSA identities

    alice, bob1 = devices["alice"], devices["bob1"]
    auth = on_wire(seal_authenticated(STANZA, me(alice), [to(bob1)], timestamp=utcnow()))
    draft = on_wire(
        seal(
            STANZA,
            [Recipient(MALLORY.certificate.public_key(), MALLORY.fingerprint)],
            timestamp=utcnow(),
        )
    )
    # RSA <key/> named with bob1's ids, alongside this profile's <data/>
    rsa_key = draft.find(KEY)
    assert rsa_key is not None
    rsa_key.set("identity-sha256", ids(bob1)[0].hex())
    rsa_key.set("cert-sha256", ids(bob1)[1].hex())
    mixed = ET.Element(E2E)
    mixed.append(rsa_key)
    mixed.append(auth.find(DATA))  # type: ignore[arg-type]
    refused(mixed, bob1, resolver(alice))
    # this profile's <key/> labelled RSA
    relabelled = on_wire(auth)
    relabelled.find(KEY).set("cipher-algo", "RSA-OAEP-256")  # type: ignore[union-attr]
    refused(relabelled, bob1, resolver(alice))
    # the draft's opener on this profile's envelope, and on an RSA <data/> with
    # this profile's algorithm name
    with pytest.raises(InvalidEnvelope):
        open_envelope(auth, MALLORY.private_key, key_id=MALLORY.fingerprint)
    renamed = on_wire(draft)
    renamed.find(DATA).set("cipher-algo", "AES-256-GCM")  # type: ignore[union-attr]
    with pytest.raises(InvalidEnvelope):
        open_envelope(renamed, MALLORY.private_key, key_id=MALLORY.fingerprint)
    refused(renamed, bob1, resolver(alice))
    assert ALICE.fingerprint != MALLORY.fingerprint


# -- (3) parsing of ids, oversize, low-order points, one error -------------------


def test_sender_ids_in_upper_case_are_refused(devices: dict[str, DeviceKeys]) -> None:
    alice, bob1 = devices["alice"], devices["bob1"]
    e2e = on_wire(seal_authenticated(STANZA, me(alice), [to(bob1)], timestamp=utcnow()))
    data, key = e2e.find(DATA), e2e.find(KEY)
    assert data is not None and key is not None
    data.set("identity-sha256", ids(alice)[0].hex().upper())
    refused(e2e, bob1, resolver(alice))
    data.set("identity-sha256", ids(alice)[0].hex())
    key.set("cert-sha256", ids(bob1)[1].hex().upper())
    refused(e2e, bob1, resolver(alice))


def test_the_resolver_only_ever_sees_32_byte_ids(devices: dict[str, DeviceKeys]) -> None:
    """Found by review (low), now refused: ``_id`` checks 64 characters and lower case, then
    ``bytes.fromhex``, which skips ASCII whitespace, so ``'ab' * 31 + '  '``
    passes as a 31-byte id and reaches ``resolve_sender`` (attacker-chosen
    bytes of a length no certificate id has). It is refused later, but a
    resolver doing prefix or LIKE matching would be fooled. Fix: accept only
    ``re.fullmatch('[0-9a-f]{64}', text)`` (or check ``len(...) == 32``)."""
    alice, bob1 = devices["alice"], devices["bob1"]
    e2e = on_wire(seal_authenticated(STANZA, me(alice), [to(bob1)], timestamp=utcnow()))
    data = e2e.find(DATA)
    assert data is not None
    seen: list[tuple[bytes, bytes]] = []

    def spy(jid: str, identity: bytes, encryption: bytes) -> X25519PublicKey | None:
        seen.append((identity, encryption))
        return alice.encryption_key.public_key()

    for spaced in (
        ids(alice)[0].hex()[:62] + "  ",
        ids(alice)[0].hex()[:62] + "\t\n",
        " " + ids(alice)[0].hex()[:62] + " ",
    ):
        data.set("identity-sha256", spaced)
        refused(e2e, bob1, spy)
    assert all(len(i) == 32 and len(e) == 32 for i, e in seen), [len(i) for i, _ in seen]


def test_oversized_envelopes_are_refused_before_any_lookup_or_crypto(
    devices: dict[str, DeviceKeys], monkeypatch: pytest.MonkeyPatch
) -> None:
    alice, bob1 = devices["alice"], devices["bob1"]
    good = on_wire(seal_authenticated(STANZA, me(alice), [to(bob1)], timestamp=utcnow()))
    calls = count()
    monkeypatch.setattr(wire, "open_wrap", lambda *a, **k: next(calls) and b"")

    def spy(jid: str, identity: bytes, encryption: bytes) -> X25519PublicKey | None:
        next(calls)
        return alice.encryption_key.public_key()

    huge = on_wire(good)
    huge.find(DATA).text = "A" * (300 * 1024)  # type: ignore[union-attr]
    many = on_wire(good)
    key = many.find(KEY)
    for _ in range(10_000):
        many.append(ET.fromstring(ET.tostring(key)))  # type: ignore[arg-type]
    just_over = on_wire(good)
    for _ in range(MAX_WRAPS):
        just_over.insert(0, ET.fromstring(ET.tostring(key)))  # type: ignore[arg-type]
    for e2e in (huge, many, just_over):
        refused(e2e, bob1, spy)
    assert next(calls) == 0  # neither the resolver nor the wrap was reached


def test_low_order_points_in_enc_fail_alike(devices: dict[str, DeviceKeys]) -> None:
    alice, bob1 = devices["alice"], devices["bob1"]
    e2e = on_wire(seal_authenticated(STANZA, me(alice), [to(bob1)], timestamp=utcnow()))
    key = e2e.find(KEY)
    assert key is not None
    for point in (
        bytes(32),
        (1).to_bytes(32, "little"),
        bytes.fromhex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"),
        bytes.fromhex("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
        b"\x00" * 31,
        b"\x00" * 33,
    ):
        key.set("enc", base64.b64encode(point).decode())
        error = refused(e2e, bob1, resolver(alice))
        assert error.__context__ is None and error.__cause__ is None


def test_every_failure_is_the_same_error_with_nothing_attached(
    devices: dict[str, DeviceKeys],
) -> None:
    alice, bob1 = devices["alice"], devices["bob1"]
    good = on_wire(seal_authenticated(STANZA, me(alice), [to(bob1)], timestamp=utcnow()))

    def boom(identity: bytes, encryption: bytes) -> X25519PublicKey | None:
        raise RuntimeError("secret store detail")

    def mutated(change: Callable[[ET.Element], object]) -> ET.Element:
        copy = on_wire(good)
        change(copy)
        return copy

    cases: list[tuple[ET.Element, Resolver]] = [
        (good, boom),
        (good, resolver()),
        (good, resolver(bob1)),  # wrong key for the sender
        (mutated(lambda e: e.find(DATA).set("cipher-algo", "AES-128-GCM")), resolver(alice)),  # type: ignore[union-attr]
        (mutated(lambda e: setattr(e.find(DATA), "text", "AAAA")), resolver(alice)),
        (mutated(lambda e: setattr(e.find(KEY), "text", "AAAA")), resolver(alice)),
        (mutated(lambda e: setattr(e, "tag", "{x}e2e")), resolver(alice)),
    ]
    messages = set()
    for e2e, resolve in cases:
        error = refused(e2e, bob1, resolve)
        assert type(error) is InvalidEnvelope
        assert error.__context__ is None and error.__cause__ is None
        assert error.__traceback__ is not None
        messages.add(str(error))
    assert len(messages) == 1


def test_nested_envelopes_and_non_stanzas_are_refused_as_in_the_draft_profile(
    devices: dict[str, DeviceKeys],
) -> None:
    """read_plain is shared with the RSA profile: the same inner checks."""
    alice, bob1 = devices["alice"], devices["bob1"]
    nested = (
        b"<message xmlns='jabber:client' to='bob@example.org' type='chat'>"
        b"<x><e2e xmlns='" + NS_OBJENC.encode() + b"'/></x></message>"
    )
    for inner in (nested, b"<body xmlns='jabber:client'>x</body>", b"<message", b"\xff"):
        e2e = seal_authenticated(inner, me(alice), [to(bob1)], timestamp=utcnow())
        refused(e2e, bob1, resolver(alice))


# -- (4) the sending side ---------------------------------------------------------


def _fake_recipients(n: int) -> list[tuple[AuthRecipient, X25519PrivateKey]]:
    out = []
    for _ in range(n):
        secret = X25519PrivateKey.generate()
        out.append((AuthRecipient(os.urandom(32), os.urandom(32), secret.public_key()), secret))
    return out


def test_a_stanza_sealed_for_more_devices_than_are_read_still_opens_or_is_not_sealed(
    devices: dict[str, DeviceKeys],
) -> None:
    """Found by review (low), now refused: seal_authenticated accepts any number of
    recipients, but open_authenticated refuses every envelope with more than
    MAX_WRAPS <key/>s, so a stanza for 65 devices opens for none of them, and
    the sender is not told. Fix: EncryptionError in seal_authenticated past
    MAX_WRAPS (or read the first MAX_WRAPS and ignore the rest, as
    PROTOCOL.md's "at most 64 read" suggests)."""
    alice = devices["alice"]
    recipients = _fake_recipients(MAX_WRAPS + 1)
    try:
        e2e = seal_authenticated(STANZA, me(alice), [r for r, _ in recipients], timestamp=utcnow())
    except EncryptionError:
        return
    first, secret = recipients[0]
    own = AuthSender(secret, first.identity_id, first.encryption_id)
    open_authenticated(on_wire(e2e), own, resolver(alice), ALICE_JID)


def test_a_low_order_recipient_key_is_an_encryption_error(devices: dict[str, DeviceKeys]) -> None:
    """Found by review (low), now refused: a recipient key of small order (which
    validate_encryption_certificate accepts, see test_attack_auth_certs) makes
    seal_authenticated raise cryptography's bare ValueError("Error computing
    shared key.") instead of the documented EncryptionError, so one bad device
    among many aborts the whole send in a way the caller does not expect.
    Fix: refuse such keys when validating certificates, and turn any failure
    of seal_auth into EncryptionError (naming the recipient to drop)."""
    alice, bob1 = devices["alice"], devices["bob1"]
    bad = AuthRecipient(
        os.urandom(32), os.urandom(32), X25519PublicKey.from_public_bytes(bytes(32))
    )
    with pytest.raises(EncryptionError):
        seal_authenticated(STANZA, me(alice), [to(bob1), bad], timestamp=utcnow())


def test_injected_randomness_is_the_only_nonce_safeguard() -> None:
    """Documents two foot-guns of the test hooks (no failure with the defaults):
    a constant ``random_bytes`` gives the same (R, nonce) to two stanzas
    (AES-GCM nonce reuse), and a reused ``ephemeral_ikm`` gives the same HPKE
    key and nonce to two wraps for one recipient (their cts XOR to R1 ^ R2).
    Defaults draw R, the nonce and each ephemeral key fresh."""
    sender, recipient = X25519PrivateKey.generate(), X25519PrivateKey.generate()
    s_ids, r_ids = (os.urandom(32), os.urandom(32)), (os.urandom(32), os.urandom(32))
    r1, t1 = seal_content(b"a" * 32, *s_ids, random_bytes=lambda n: b"\x01" * n)
    r2, t2 = seal_content(b"b" * 32, *s_ids, random_bytes=lambda n: b"\x01" * n)
    assert r1 == r2 and t1[:12] == t2[:12]  # nonce reuse under one key
    ikm = [b"\x02" * 32]
    w1 = seal_wraps(r1, t1, sender, *s_ids, [(*r_ids, recipient.public_key())], ephemeral_ikm=ikm)
    k2 = os.urandom(32)
    w2 = seal_wraps(k2, t2, sender, *s_ids, [(*r_ids, recipient.public_key())], ephemeral_ikm=ikm)
    assert w1[0].enc == w2[0].enc
    xor = bytes(a ^ b for a, b in zip(w1[0].ct[:32], w2[0].ct[:32], strict=True))
    assert xor == bytes(a ^ b for a, b in zip(r1, k2, strict=True))
    # the defaults: fresh every time
    assert seal_content(b"x", *s_ids)[0] != seal_content(b"x", *s_ids)[0]
