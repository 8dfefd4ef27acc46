"""core.opening: which ``<e2e/>`` copy of a stanza we open (PROTOCOL.md 13.7).
An authenticated copy naming our device is the only one we open (the RSA copy
of the same stanza is never a second chance); an RSA copy is opened only from
a sender no identity is held for, or whose legacy devices the user allowed,
and then proves nothing about its sender. Real envelopes, plain values."""

from __future__ import annotations

import base64
import xml.etree.ElementTree as ET
from collections.abc import Sequence

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from slixmpp_objenc.core.auth_envelope import (
    CONTENT_ALGO,
    AuthRecipient,
    AuthSender,
    seal_authenticated,
)
from slixmpp_objenc.core.certificates import Identity, certificate_fingerprint, generate_identity
from slixmpp_objenc.core.constants import DEFAULT_MAX_ENVELOPE_SIZE, NS_OBJENC
from slixmpp_objenc.core.envelope import Recipient, open_envelope, seal
from slixmpp_objenc.core.identities import (
    DeviceKeys,
    generate_device_keys,
    issue_encryption_certificate,
)
from slixmpp_objenc.core.opening import (
    DOWNGRADE,
    UNDECRYPTABLE,
    UNKNOWN_SENDER,
    Opened,
    OpeningContext,
    OwnKeys,
    open_copies,
    replay_digest,
)
from slixmpp_objenc.core.timestamps import utcnow

ALICE = "alice@example.org"  # the sender
BOB = "bob@example.org"  # us
MALLORY = "mallory@example.org"
STANZA = (
    b"<message xmlns='jabber:client' to='bob@example.org' type='chat'><body>hi</body></message>"
)
DATA = f"{{{NS_OBJENC}}}data"
KEY = f"{{{NS_OBJENC}}}key"
MAX = DEFAULT_MAX_ENVELOPE_SIZE


def auth(device: DeviceKeys) -> AuthSender:
    return AuthSender(
        device.encryption_key,
        bytes.fromhex(device.fingerprint),
        bytes.fromhex(certificate_fingerprint(device.encryption_certificate)),
    )


def to(device: DeviceKeys) -> AuthRecipient:
    own = auth(device)
    return AuthRecipient(own.identity_id, own.encryption_id, device.encryption_key.public_key())


def wire(e2e: ET.Element) -> ET.Element:
    """As it travels: serialised and parsed again."""
    return ET.fromstring(ET.tostring(e2e))


def auth_copy(sender: DeviceKeys, *recipients: DeviceKeys) -> ET.Element:
    e2e = seal_authenticated(STANZA, auth(sender), [to(r) for r in recipients], timestamp=utcnow())
    return wire(e2e)


def rsa_copy(*recipients: Identity) -> ET.Element:
    e2e = seal(
        STANZA,
        [Recipient(r.private_key.public_key(), r.fingerprint) for r in recipients],
        timestamp=utcnow(),
    )
    return wire(e2e)


def resolver(*known: tuple[str, DeviceKeys], calls: list[str] | None = None):  # type: ignore[no-untyped-def]
    """Devices held per JID: ``(jid, device)``, as the key ring holds them."""
    table = {(jid, *_ids(d)): d.encryption_key.public_key() for jid, d in known}

    def resolve(jid: str, identity: bytes, encryption: bytes) -> X25519PublicKey | None:
        if calls is not None:
            calls.append(jid)
        return table.get((jid, identity, encryption))

    return resolve


def _ids(device: DeviceKeys) -> tuple[bytes, bytes]:
    own = auth(device)
    return own.identity_id, own.encryption_id


def context(
    *known: tuple[str, DeviceKeys],
    identity_for: Sequence[str] = (),
    legacy_for: Sequence[str] = (),
) -> OpeningContext:
    return OpeningContext(
        resolve_sender=resolver(*known),
        has_identity=lambda bare: bare in identity_for,
        legacy_allowed=lambda bare: bare in legacy_for,
    )


def spoil_data(e2e: ET.Element) -> ET.Element:
    """The same copy with one bit of T flipped (a wrap that no longer opens it)."""
    spoilt = wire(e2e)
    data = spoilt.find(DATA)
    assert data is not None and data.text
    sealed = bytearray(base64.b64decode(data.text))
    sealed[-1] ^= 0x01
    data.text = base64.b64encode(bytes(sealed)).decode()
    return spoilt


@pytest.fixture(scope="module")
def me_rsa() -> Identity:
    return generate_identity(BOB, key_size=2048)


@pytest.fixture(scope="module")
def me_device() -> DeviceKeys:
    return generate_device_keys(BOB)


@pytest.fixture(scope="module")
def my_other_device() -> DeviceKeys:
    """Another device of our account: a copy for it is not for us."""
    return generate_device_keys(BOB)


@pytest.fixture(scope="module")
def sender() -> DeviceKeys:
    return generate_device_keys(ALICE)


@pytest.fixture(scope="module")
def keys(me_rsa: Identity, me_device: DeviceKeys) -> OwnKeys:
    return OwnKeys(rsa=[me_rsa], device=[auth(me_device)])


@pytest.fixture(scope="module")
def ctx(sender: DeviceKeys) -> OpeningContext:
    """Alice's device is held for her JID, she has an identity, no legacy allowed."""
    return context((ALICE, sender), identity_for=[ALICE])


# --------------------------------------------------------------------- the authenticated copy


def test_an_authenticated_copy_for_us_opens_and_proves_its_sender(
    keys: OwnKeys, ctx: OpeningContext, sender: DeviceKeys, me_device: DeviceKeys
) -> None:
    e2e = auth_copy(sender, me_device)
    opened = open_copies([e2e], keys, ALICE, ctx, max_size=MAX)
    assert isinstance(opened, Opened)
    assert opened.authenticated
    assert opened.sender_fingerprint == sender.fingerprint
    assert opened.recipient_fingerprint == me_device.fingerprint
    assert opened.stanza_bytes == STANZA
    assert opened.stanza.findtext("{jabber:client}body") == "hi"
    assert opened.cipher == CONTENT_ALGO
    # the replay digest is the same for every copy of the stanza, whatever its profile
    assert opened.digest == replay_digest(opened.timestamp, STANZA)
    assert opened.legacy_digest is None


@pytest.mark.parametrize("rsa_first", [False, True], ids=["auth-first", "rsa-first"])
def test_the_authenticated_copy_is_opened_when_both_name_us(
    rsa_first: bool,
    keys: OwnKeys,
    ctx: OpeningContext,
    sender: DeviceKeys,
    me_device: DeviceKeys,
    me_rsa: Identity,
) -> None:
    copies = [auth_copy(sender, me_device), rsa_copy(me_rsa)]
    if rsa_first:
        copies.reverse()
    legacy = context((ALICE, sender), identity_for=[ALICE], legacy_for=[ALICE])
    for context_ in (ctx, legacy):
        opened = open_copies(copies, keys, ALICE, context_, max_size=MAX)
        assert isinstance(opened, Opened)
        assert opened.authenticated and opened.sender_fingerprint == sender.fingerprint


@pytest.mark.parametrize(
    "legacy",
    [
        context(identity_for=[ALICE]),
        context(identity_for=[ALICE], legacy_for=[ALICE]),
        context(),
    ],
    ids=["identity-held", "legacy-allowed", "no-identity"],
)
def test_the_rsa_copy_is_never_a_second_chance(
    legacy: OpeningContext,
    keys: OwnKeys,
    sender: DeviceKeys,
    me_device: DeviceKeys,
    me_rsa: Identity,
) -> None:
    """An authenticated copy names us but does not open (tampered): the valid RSA
    copy next to it is not opened, whatever is held or allowed for the sender."""
    ctx = OpeningContext(
        resolve_sender=resolver((ALICE, sender)),
        has_identity=legacy.has_identity,
        legacy_allowed=legacy.legacy_allowed,
    )
    good_rsa = rsa_copy(me_rsa)
    open_envelope(good_rsa, me_rsa.private_key, key_id=me_rsa.fingerprint)  # it would open
    spoilt = spoil_data(auth_copy(sender, me_device))
    for copies in ([spoilt, good_rsa], [good_rsa, spoilt]):
        assert open_copies(copies, keys, ALICE, ctx, max_size=MAX) == UNDECRYPTABLE


def test_an_authenticated_copy_by_an_impostor_is_undecryptable(
    keys: OwnKeys, ctx: OpeningContext, sender: DeviceKeys, me_device: DeviceKeys
) -> None:
    """Sealed with Alice's certificate ids but not her key: her device resolves,
    the wrap does not open."""
    forger = AuthSender(X25519PrivateKey.generate(), *_ids(sender))
    e2e = wire(seal_authenticated(STANZA, forger, [to(me_device)], timestamp=utcnow()))
    assert open_copies([e2e], keys, ALICE, ctx, max_size=MAX) == UNDECRYPTABLE


def test_an_authenticated_copy_over_max_size_is_undecryptable(
    keys: OwnKeys, ctx: OpeningContext, sender: DeviceKeys, me_device: DeviceKeys
) -> None:
    e2e = auth_copy(sender, me_device)
    assert open_copies([e2e], keys, ALICE, ctx, max_size=64) == UNDECRYPTABLE


def test_an_authenticated_copy_with_a_malformed_sender_claim_is_undecryptable(
    keys: OwnKeys, ctx: OpeningContext, sender: DeviceKeys, me_device: DeviceKeys
) -> None:
    e2e = auth_copy(sender, me_device)
    data = e2e.find(DATA)
    assert data is not None
    data.set("identity-sha256", (data.get("identity-sha256") or "").upper())
    assert open_copies([e2e], keys, ALICE, ctx, max_size=MAX) == UNDECRYPTABLE


def test_our_older_encryption_key_still_opens(
    me_rsa: Identity, me_device: DeviceKeys, sender: DeviceKeys, ctx: OpeningContext
) -> None:
    """After a rotation the current key comes first; a copy sealed to the previous
    encryption certificate opens with the previous key."""
    new_key = X25519PrivateKey.generate()
    rotated = issue_encryption_certificate(
        me_device.identity_key, me_device.identity_certificate, new_key.public_key()
    )
    current = DeviceKeys(me_device.identity_key, me_device.identity_certificate, new_key, rotated)
    keys = OwnKeys(rsa=[me_rsa], device=[auth(current), auth(me_device)])
    for device in (me_device, current):
        opened = open_copies([auth_copy(sender, device)], keys, ALICE, ctx, max_size=MAX)
        assert isinstance(opened, Opened)
        assert opened.recipient_fingerprint == me_device.fingerprint  # the identity
        assert opened.sender_fingerprint == sender.fingerprint


# ------------------------------------------------------------------------------ unknown sender


def test_an_unknown_sender_is_reported(
    keys: OwnKeys, sender: DeviceKeys, me_device: DeviceKeys, me_rsa: Identity
) -> None:
    ctx = context(identity_for=[ALICE])  # nothing held
    for copies in (
        [auth_copy(sender, me_device)],
        [auth_copy(sender, me_device), rsa_copy(me_rsa)],
    ):
        assert open_copies(copies, keys, ALICE, ctx, max_size=MAX) == UNKNOWN_SENDER


def test_a_sender_held_for_another_jid_is_unknown(
    keys: OwnKeys, sender: DeviceKeys, me_device: DeviceKeys
) -> None:
    """Alice's device is held for Alice: the same copy arriving from Mallory (the
    outer sender) is not Alice speaking; the resolver is asked about Mallory."""
    calls: list[str] = []
    ctx = OpeningContext(resolve_sender=resolver((ALICE, sender), calls=calls))
    e2e = auth_copy(sender, me_device)
    assert open_copies([e2e], keys, MALLORY, ctx, max_size=MAX) == UNKNOWN_SENDER
    assert calls and set(calls) == {MALLORY}
    calls.clear()
    assert isinstance(open_copies([e2e], keys, ALICE, ctx, max_size=MAX), Opened)
    assert calls and set(calls) == {ALICE}


def test_an_unknown_sender_is_reported_before_any_opening(
    keys: OwnKeys, sender: DeviceKeys, me_device: DeviceKeys
) -> None:
    """Even a copy that would not open: fetching the sender's node comes first."""
    spoilt = spoil_data(auth_copy(sender, me_device))
    assert open_copies([spoilt], keys, ALICE, context(), max_size=MAX) == UNKNOWN_SENDER


# ----------------------------------------------------------------------------------- RSA copies


def test_an_rsa_copy_from_a_sender_with_an_identity_is_a_downgrade(
    keys: OwnKeys, sender: DeviceKeys, my_other_device: DeviceKeys, me_rsa: Identity
) -> None:
    not_ours = auth_copy(sender, my_other_device)
    ctx = context((ALICE, sender), identity_for=[ALICE])
    for copies in ([not_ours, rsa_copy(me_rsa)], [rsa_copy(me_rsa)]):
        assert open_copies(copies, keys, ALICE, ctx, max_size=MAX) == DOWNGRADE


def test_an_rsa_copy_from_an_allowed_legacy_sender_opens_unauthenticated(
    keys: OwnKeys, sender: DeviceKeys, my_other_device: DeviceKeys, me_rsa: Identity
) -> None:
    not_ours = auth_copy(sender, my_other_device)
    ctx = context((ALICE, sender), identity_for=[ALICE], legacy_for=[ALICE])
    for copies in ([not_ours, rsa_copy(me_rsa)], [rsa_copy(me_rsa)]):
        opened = open_copies(copies, keys, ALICE, ctx, max_size=MAX)
        assert isinstance(opened, Opened)
        assert not opened.authenticated
        assert opened.sender_fingerprint is None
        assert opened.recipient_fingerprint == me_rsa.fingerprint
        assert opened.stanza_bytes == STANZA
        assert opened.cipher != CONTENT_ALGO


def test_an_rsa_copy_from_a_sender_without_an_identity_opens(
    keys: OwnKeys, sender: DeviceKeys, my_other_device: DeviceKeys, me_rsa: Identity
) -> None:
    ctx = context((ALICE, sender))
    for copies in ([auth_copy(sender, my_other_device), rsa_copy(me_rsa)], [rsa_copy(me_rsa)]):
        opened = open_copies(copies, keys, ALICE, ctx, max_size=MAX)
        assert isinstance(opened, Opened)
        assert not opened.authenticated and opened.sender_fingerprint is None


def test_an_rsa_copy_not_for_us_is_undecryptable(keys: OwnKeys, outsider_2048: Identity) -> None:
    assert open_copies([rsa_copy(outsider_2048)], keys, ALICE, context(), max_size=MAX) == (
        UNDECRYPTABLE
    )


def test_an_authenticated_copy_for_another_device_alone_is_undecryptable(
    keys: OwnKeys, ctx: OpeningContext, sender: DeviceKeys, my_other_device: DeviceKeys
) -> None:
    e2e = auth_copy(sender, my_other_device)
    assert open_copies([e2e], keys, ALICE, ctx, max_size=MAX) == UNDECRYPTABLE
    assert open_copies([e2e], keys, ALICE, context((ALICE, sender)), max_size=MAX) == (
        UNDECRYPTABLE
    )


def test_only_rsa_keys_take_the_rsa_path(
    me_rsa: Identity, sender: DeviceKeys, me_device: DeviceKeys
) -> None:
    """A device without keys of the authenticated profile ignores the
    authenticated copy, even one naming a device of ours, and opens the RSA one."""
    keys = OwnKeys(rsa=[me_rsa])
    copies = [auth_copy(sender, me_device), rsa_copy(me_rsa)]
    opened = open_copies(copies, keys, ALICE, context((ALICE, sender)), max_size=MAX)
    assert isinstance(opened, Opened)
    assert not opened.authenticated and opened.recipient_fingerprint == me_rsa.fingerprint
    # the RSA path's rule still holds: a sender with an identity is a downgrade
    held = context((ALICE, sender), identity_for=[ALICE])
    assert open_copies(copies, keys, ALICE, held, max_size=MAX) == DOWNGRADE


def test_only_device_keys_and_only_an_rsa_copy_is_undecryptable(
    me_device: DeviceKeys, sender: DeviceKeys, me_rsa: Identity
) -> None:
    keys = OwnKeys(device=[auth(me_device)])
    ctx = context((ALICE, sender))
    assert open_copies([rsa_copy(me_rsa)], keys, ALICE, ctx, max_size=MAX) == UNDECRYPTABLE


def test_an_older_rsa_identity_of_ours_opens_within_the_limit(
    identities_2048: list[Identity], sender: DeviceKeys
) -> None:
    """Our RSA identities are tried active first, at most MAX_OWN_KEYS_TRIED (3)."""
    keys = OwnKeys(rsa=identities_2048)  # four
    ctx = context((ALICE, sender))
    opened = open_copies([rsa_copy(identities_2048[2])], keys, ALICE, ctx, max_size=MAX)
    assert isinstance(opened, Opened)
    assert opened.recipient_fingerprint == identities_2048[2].fingerprint
    fourth = rsa_copy(identities_2048[3])
    assert open_copies([fourth], keys, ALICE, ctx, max_size=MAX) == UNDECRYPTABLE


# ------------------------------------------------------------------------------ how many copies


def test_no_copy_is_undecryptable(keys: OwnKeys, ctx: OpeningContext) -> None:
    assert open_copies([], keys, ALICE, ctx, max_size=MAX) == UNDECRYPTABLE


def test_three_copies_are_undecryptable(
    keys: OwnKeys, sender: DeviceKeys, me_device: DeviceKeys, me_rsa: Identity
) -> None:
    ctx = context((ALICE, sender))
    copies = [auth_copy(sender, me_device), rsa_copy(me_rsa), rsa_copy(me_rsa)]
    assert open_copies(copies, keys, ALICE, ctx, max_size=MAX) == UNDECRYPTABLE
    copies = [auth_copy(sender, me_device), auth_copy(sender, me_device), rsa_copy(me_rsa)]
    assert open_copies(copies, keys, ALICE, ctx, max_size=MAX) == UNDECRYPTABLE


def test_two_authenticated_copies_are_undecryptable(
    keys: OwnKeys, ctx: OpeningContext, sender: DeviceKeys, me_device: DeviceKeys
) -> None:
    copies = [auth_copy(sender, me_device), auth_copy(sender, me_device)]
    assert open_copies(copies, keys, ALICE, ctx, max_size=MAX) == UNDECRYPTABLE


def test_two_rsa_copies_are_undecryptable(
    keys: OwnKeys, sender: DeviceKeys, me_rsa: Identity
) -> None:
    ctx = context((ALICE, sender))
    copies = [rsa_copy(me_rsa), rsa_copy(me_rsa)]
    assert open_copies(copies, keys, ALICE, ctx, max_size=MAX) == UNDECRYPTABLE


def test_no_own_keys_is_undecryptable(
    sender: DeviceKeys, me_device: DeviceKeys, me_rsa: Identity
) -> None:
    ctx = context((ALICE, sender), legacy_for=[ALICE])
    copies = [auth_copy(sender, me_device), rsa_copy(me_rsa)]
    for some in (copies, copies[:1], copies[1:]):
        assert open_copies(some, OwnKeys(), ALICE, ctx, max_size=MAX) == UNDECRYPTABLE
