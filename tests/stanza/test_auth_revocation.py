"""Revocation of a lost device (PROTOCOL.md 13.13), attacked through the plugin.

A device of an account revokes another device of the same account by a signed
``<revocation/>`` item on the account's node; a contact that trusts the signer
for that account marks the lost device ``revoked`` at once. Each test plays a
hostile server, a thief holding a lost device or a malicious contact on
slixmpp's mock stream, with the plugin's clock injected (``self.now``). A test
marked ``xfail(strict=True)`` is an attack that currently SUCCEEDS (its reason
names the finding); a plain test is an attack that was tried and held.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from auth_harness import (
    ALICE_JID,
    CHAT,
    E2E,
    EVENTS,
    KEY,
    ME,
    NOW,
    AuthTestCase,
    device_item,
    sender_of,
)
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from slixmpp.exceptions import IqError
from slixmpp.xmlstream import tostring

from slixmpp_objenc.core import EncryptionError
from slixmpp_objenc.core.identities import DeviceKeys, generate_device_keys
from slixmpp_objenc.core.revocation import (
    Revocation,
    read_revocation,
    revocation_element,
    revocation_message,
    sign_revocation,
    verify_revocation,
)
from slixmpp_objenc.core.trust import MAX_HELD_PER_JID
from slixmpp_objenc.events import DeviceRevokedEvent
from slixmpp_objenc.plugin import NODE_CERTS
from slixmpp_objenc.store import SQLiteStorage, Storage, TrustState

NS_PUBSUB = "http://jabber.org/protocol/pubsub"
A1 = generate_device_keys(ALICE_JID, now=NOW)
A2 = generate_device_keys(ALICE_JID, now=NOW)
A3 = generate_device_keys(ALICE_JID, now=NOW)
A4 = generate_device_keys(ALICE_JID, now=NOW)
STRANGER = generate_device_keys(ALICE_JID, now=NOW)
"""An identity of Alice's JID that her node never published."""
BOB_JID = "bob@example.org"
BOB = generate_device_keys(BOB_JID, now=NOW)
OWN2 = generate_device_keys(ME, now=NOW)
OWN3 = generate_device_keys(ME, now=NOW)
OWN4 = generate_device_keys(ME, now=NOW)
MORE_EVENTS = (
    "objenc_device_revoked",
    "objenc_device_added",
    "objenc_own_device_held",
    "objenc_own_device_added",
)


def item(keys: DeviceKeys) -> str:
    return device_item(keys.identity_certificate, keys.encryption_certificate)


def revoke(
    revoker: DeviceKeys, revoked: DeviceKeys | str, issued: datetime | None = None
) -> Revocation:
    target = revoked if isinstance(revoked, str) else revoked.fingerprint
    return sign_revocation(
        revoker.identity_key, revoker.identity_certificate, target, issued or NOW
    )


def revocation_item(
    revocation: Revocation,
    *,
    item_id: str | None = None,
    text: str | None = None,
    extra: dict[str, str] | None = None,
) -> str:
    """``<item id='revoke-{id}'>`` with the ``<revocation/>``, its signature
    text replaced by ``text``, ``extra`` attributes added."""
    element = revocation_element(revocation)
    if text is not None:
        element.text = text
    for name, value in (extra or {}).items():
        element.set(name, value)
    return f"<item id='{item_id or revocation.item_id}'>{tostring(element)}</item>"


def revoked_by(revoker: DeviceKeys, revoked: DeviceKeys | str) -> str:
    """The item of a valid revocation of ``revoked`` signed by ``revoker`` (now)."""
    return revocation_item(revoke(revoker, revoked))


def forged(revocation: Revocation) -> Revocation:
    """``revocation`` with one bit of its signature flipped."""
    signature = bytes([revocation.signature[0] ^ 1]) + revocation.signature[1:]
    return Revocation(revocation.revoked, revocation.revoker, revocation.issued_at, signature)


def self_revocation(keys: DeviceKeys) -> Revocation:
    """A device revoking itself, correctly signed (``sign_revocation`` refuses to)."""
    fingerprint = keys.fingerprint
    message = revocation_message(fingerprint, fingerprint, NOW)
    return Revocation(fingerprint, fingerprint, NOW, keys.identity_key.sign(message))


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class RevocationCase(AuthTestCase):
    """The tester's device with a store that outlives the plugin (``restart``)."""

    recorded_events = EVENTS + MORE_EVENTS

    def start_plugin(self) -> None:
        super().start_plugin()
        self.xmpp.client_roster.add(BOB_JID, afrom=True, ato=True)

    def tearDown(self) -> None:
        self.stop_plugin()

    def drain(self) -> None:
        for _ in range(4):
            self.wait_for_send_queue()
            self.wait_()
            while (raw := self.xmpp.socket.next_sent()) is not None:
                self.outbox.append(ET.fromstring(raw))

    # nodes -----------------------------------------------------------------------------

    def discover(self, owner: str, items: Sequence[str]) -> None:
        """The plugin reads ``owner``'s node now, answered with ``items``."""
        task = asyncio.ensure_future(self.plugin.discover(owner))
        self.answer_fetch(owner, items)
        self.run_coro(asyncio.wait_for(task, 2))

    def publishes(self, owner: str, items: Sequence[str]) -> None:
        """``owner``'s node changed: a notification, then the read of it."""
        self.notify(owner, items[-1:] or ["<item id='x'/>"])
        self.answer_fetch(owner, items)

    def pin_alice(self, *devices: DeviceKeys, verified: bool = False) -> list[str]:
        """First contact: Alice's node lists ``devices``; all pinned. Returns the
        node's items."""
        items = [item(d) for d in devices]
        self.discover(ALICE_JID, items)
        for device in devices:
            assert self.trust(ALICE_JID, device) is TrustState.TOFU
            if verified:
                self.run_coro(
                    self.plugin.set_trust(ALICE_JID, device.fingerprint, TrustState.VERIFIED)
                )
        return items

    def trust(self, jid: str, device: DeviceKeys | str) -> TrustState | None:
        fingerprint = device if isinstance(device, str) else device.fingerprint
        record = self.plugin.keyring.record(jid, fingerprint)
        return None if record is None else record.trust

    def revoked_events(self) -> list[tuple[str, str, str]]:
        return [(e.jid, e.fingerprint, e.revoker) for e in self.events["objenc_device_revoked"]]

    # stanzas -----------------------------------------------------------------------------

    def send_to_alice(self, body: str) -> set[str | None]:
        """The identities a chat message to Alice is wrapped for."""
        self.xmpp.send_message(mto=ALICE_JID, mbody=body, mtype="chat")
        self.drain()
        sent = [s for s in self.outbox if s.tag.endswith("message") and s.find(E2E) is not None]
        assert len(sent) == 1, [ET.tostring(s) for s in self.outbox]
        self.outbox.remove(sent[0])
        assert body.encode() not in ET.tostring(sent[0])
        return {k.get("identity-sha256") for k in sent[0].iter(KEY)}

    def from_device(self, device: DeviceKeys, body: str, oid: str) -> None:
        e2e = self.sealed(CHAT.format(body=body), sender=sender_of(device))
        self.recv(self.wire(e2e, outer_id=oid))
        self.wait_(0.02)


def answer(case: RevocationCase, predicate: Any, what: str) -> ET.Element:
    """Take a sent iq matching ``predicate`` and answer it with an empty result."""
    iq = case.take(predicate, what)
    case.recv(f"<iq type='result' to='{ME}/resource' id='{iq.get('id')}'></iq>")
    return iq


# -- 1. a trusted device revokes another --------------------------------------------------


class TestRevoked(RevocationCase):
    def check_a1_revokes_a2(self, before: TrustState) -> None:
        assert self.send_to_alice("to both") == {
            A1.fingerprint,
            A2.fingerprint,
            self.tester.fingerprint,
        }
        self.from_device(A2, "from A2 before", "b2")
        assert self.bodies() == ["from A2 before"]
        revocation = revoke(A1, A2)
        node = [item(A1), item(A2), revocation_item(revocation)]
        self.publishes(ALICE_JID, node)
        assert self.trust(ALICE_JID, A2) is TrustState.REVOKED
        assert self.trust(ALICE_JID, A1) is before
        [event] = self.events["objenc_device_revoked"]
        assert event == DeviceRevokedEvent(
            ALICE_JID, A2.fingerprint, A1.fingerprint, revocation.issued_at
        )
        # at once: the next message is not wrapped for A2
        assert self.send_to_alice("to A1 only") == {A1.fingerprint, self.tester.fingerprint}
        # A2's stanzas no longer open; A1's still do
        self.from_device(A2, "from the lost A2", "a2")
        self.from_device(A1, "from A1", "a1")
        # (a revoked sender reads as one we do not hold: her node is read once more)
        self.answer_fetch(ALICE_JID, node)
        assert self.bodies() == ["from A2 before", "from A1"]
        assert self.failures() == ["undecryptable"]
        # read again (same node): not reported again, still revoked
        self.publishes(ALICE_JID, node)
        self.now += timedelta(minutes=1)
        self.publishes(ALICE_JID, node)
        assert len(self.events["objenc_device_revoked"]) == 1
        assert self.trust(ALICE_JID, A2) is TrustState.REVOKED
        assert self.events["objenc_key_changed"] == []

    def test_a_tofu_device_revokes_another_tofu_device(self) -> None:
        """Both devices pinned on first use; A1 signs A2's revocation: A2 is
        revoked, reported once, not encrypted to, and its stanzas are refused."""
        self.pin_alice(A1, A2)
        self.check_a1_revokes_a2(TrustState.TOFU)

    def test_a_verified_device_revokes_another_verified_device(self) -> None:
        """The same with both verified: a verification does not shield a device
        from its own account's revocation."""
        self.pin_alice(A1, A2, verified=True)
        self.check_a1_revokes_a2(TrustState.VERIFIED)

    def test_a_revocation_settles_a_device_held_for_a_decision(self) -> None:
        """A2 appears next to the pinned A1 (held: a message to Alice waits for the
        user); A1 then revokes A2: nothing is left to decide, the waiting message
        goes to A1 only, A2 is never encrypted to."""
        self.pin_alice(A1)
        self.publishes(ALICE_JID, [item(A1), item(A2)])
        assert self.trust(ALICE_JID, A2) is TrustState.UNTRUSTED
        self.xmpp.send_message(mto=ALICE_JID, mbody="waits for a decision", mtype="chat")
        self.drain()
        assert not [s for s in self.outbox if s.tag.endswith("message")]
        self.publishes(ALICE_JID, [item(A1), item(A2), revoked_by(A1, A2)])
        assert self.trust(ALICE_JID, A2) is TrustState.REVOKED
        self.drain()
        sent = [s for s in self.outbox if s.tag.endswith("message") and s.find(E2E) is not None]
        assert len(sent) == 1
        assert {k.get("identity-sha256") for k in sent[0].iter(KEY)} == {
            A1.fingerprint,
            self.tester.fingerprint,
        }


# -- 2. revocations that change nothing ---------------------------------------------------


class TestIgnored(RevocationCase):
    def setUp(self) -> None:
        super().setUp()
        self.discover(BOB_JID, [item(BOB)])
        self.run_coro(self.plugin.set_trust(BOB_JID, BOB.fingerprint, TrustState.VERIFIED))
        self.base = self.pin_alice(A1, A2, A3)

    def ignored(self, *extra: str, what: str) -> None:
        """Alice's node serves ``extra`` too: A1, A2 and A3 stay as they were."""
        self.publishes(ALICE_JID, [*self.base, *extra])
        states = [self.trust(ALICE_JID, d) for d in (A1, A2, A3)]
        assert states == [TrustState.TOFU] * 3, (what, states)
        assert self.events["objenc_device_revoked"] == [], what

    def test_revocations_by_anyone_but_a_trusted_device_of_hers_are_ignored(self) -> None:
        """Signed by a verified contact's identity (its device even served on her
        node), by an identity of her JID never published, by her device held for a
        decision, by one the user rejected, with a bad signature, issued far
        ahead of our clock, or A1 revoking itself: nothing is revoked, and a
        message to her still goes to all three devices."""
        self.ignored(item(BOB), revoked_by(BOB, A2), what="another JID's verified identity")
        self.ignored(revoked_by(STRANGER, A2), what="an identity never published")
        self.ignored(revocation_item(self_revocation(A1)), what="A1 revoking itself")
        self.ignored(revocation_item(forged(revoke(A1, A2))), what="a bad signature")
        future = revoke(A1, A2, NOW + timedelta(minutes=6))
        self.ignored(revocation_item(future), what="issued six minutes ahead")
        # a device someone just added to her node: held for a decision, revokes nothing
        self.base.append(item(A4))
        self.ignored(revoked_by(A4, A2), what="a device held for a decision")
        assert self.trust(ALICE_JID, A4) is TrustState.UNTRUSTED
        assert len(self.events["objenc_key_changed"]) == 1
        self.run_coro(self.plugin.reject_key_change(ALICE_JID, A4.fingerprint))
        self.ignored(revoked_by(A4, A2), what="a device the user rejected")
        # her trusted device revokes a device of another contact: Bob's stays
        self.ignored(revoked_by(A1, BOB.fingerprint), what="Bob's device revoked by Alice")
        assert self.trust(BOB_JID, BOB) is TrustState.VERIFIED
        # ...and on Bob's node: an identity held for Alice revokes nothing of Bob's
        self.publishes(BOB_JID, [item(BOB), revoked_by(A1, BOB.fingerprint)])
        assert self.trust(BOB_JID, BOB) is TrustState.VERIFIED
        assert self.events["objenc_device_revoked"] == []
        assert self.send_to_alice("to all three") == {
            A1.fingerprint,
            A2.fingerprint,
            A3.fingerprint,
            self.tester.fingerprint,
        }
        # the far-future revocation was only ignored: once due, it is taken
        self.now = NOW + timedelta(minutes=2)
        self.publishes(ALICE_JID, [*self.base, revocation_item(future)])
        assert self.trust(ALICE_JID, A2) is TrustState.REVOKED
        assert self.revoked_events() == [(ALICE_JID, A2.fingerprint, A1.fingerprint)]

    def test_malformed_items_are_skipped_and_the_rest_of_the_node_is_read(self) -> None:
        """A1's revocations of A2 with an extra attribute (xml:lang too), a signature
        that is not base64, or of 63 bytes: each skipped; the node's other items
        (devices, A1's valid revocation of A3) are read."""
        good = revoke(A1, A2)
        node = [
            revocation_item(good, item_id="x1", extra={"extra": "1"}),
            revocation_item(good, item_id="x2", extra={"xml:lang": "en"}),
            revocation_item(good, item_id="x3", text="!" + b64(good.signature)[1:]),
            revocation_item(good, item_id="x4", text=b64(good.signature[:63])),
            revocation_item(good, item_id="x5", text=b64(good.signature + b"\\0")),
            revoked_by(A1, A3),
            *self.base,
        ]
        self.publishes(ALICE_JID, node)
        assert self.trust(ALICE_JID, A2) is TrustState.TOFU
        assert self.trust(ALICE_JID, A3) is TrustState.REVOKED
        assert self.revoked_events() == [(ALICE_JID, A3.fingerprint, A1.fingerprint)]
        assert self.send_to_alice("not to A3") == {
            A1.fingerprint,
            A2.fingerprint,
            self.tester.fingerprint,
        }


# -- 3. counter-revocation --------------------------------------------------------------


class TestCounterRevocation(RevocationCase):
    def setUp(self) -> None:
        super().setUp()
        self.base = self.pin_alice(A1, A2, A3)

    def both_revoked(self) -> None:
        assert self.trust(ALICE_JID, A1) is TrustState.REVOKED
        assert self.trust(ALICE_JID, A2) is TrustState.REVOKED
        assert self.trust(ALICE_JID, A3) is TrustState.TOFU
        assert sorted(self.revoked_events()) == sorted(
            [
                (ALICE_JID, A1.fingerprint, A2.fingerprint),
                (ALICE_JID, A2.fingerprint, A1.fingerprint),
            ]
        )
        assert self.send_to_alice("to A3 only") == {A3.fingerprint, self.tester.fingerprint}

    def test_mutual_revocations_in_one_fetch_revoke_both(self) -> None:
        """A thief on A2 revokes A1, A1 revokes A2, both on the node: both revoked."""
        self.publishes(ALICE_JID, [*self.base, revoked_by(A2, A1), revoked_by(A1, A2)])
        self.both_revoked()

    def test_mutual_revocations_in_one_fetch_other_order(self) -> None:
        """The same, items in the other order."""
        self.publishes(ALICE_JID, [revoked_by(A1, A2), revoked_by(A2, A1), *self.base])
        self.both_revoked()

    def test_the_thief_first_then_the_good_device(self) -> None:
        """A2 (the thief) revokes A1, read alone; A1's revocation of A2 comes at the
        next fetch, the thief's item withheld by then: both revoked."""
        self.publishes(ALICE_JID, [*self.base, revoked_by(A2, A1)])
        assert self.trust(ALICE_JID, A1) is TrustState.REVOKED
        assert self.trust(ALICE_JID, A2) is TrustState.TOFU
        self.publishes(ALICE_JID, [*self.base, revoked_by(A1, A2)])
        self.both_revoked()

    def test_the_good_device_first_then_the_thief(self) -> None:
        """A1 revokes A2 first; A2's revocation of A1 arrives next: both revoked."""
        self.publishes(ALICE_JID, [*self.base, revoked_by(A1, A2)])
        assert self.trust(ALICE_JID, A2) is TrustState.REVOKED
        assert self.trust(ALICE_JID, A1) is TrustState.TOFU
        self.publishes(ALICE_JID, [*self.base, revoked_by(A1, A2), revoked_by(A2, A1)])
        self.both_revoked()

    def test_a_revoked_device_cannot_revoke_a_third_in_one_fetch(self) -> None:
        """A1 revokes A2; A2's revocation of A3 on the same node is void."""
        self.publishes(ALICE_JID, [revoked_by(A2, A3), *self.base, revoked_by(A1, A2)])
        assert self.trust(ALICE_JID, A2) is TrustState.REVOKED
        assert [self.trust(ALICE_JID, d) for d in (A1, A3)] == [TrustState.TOFU] * 2
        assert self.revoked_events() == [(ALICE_JID, A2.fingerprint, A1.fingerprint)]

    def test_a_revoked_device_cannot_revoke_a_third_later(self) -> None:
        """The same across fetches, A1's item withheld by then: still void."""
        self.publishes(ALICE_JID, [*self.base, revoked_by(A1, A2)])
        self.publishes(ALICE_JID, [*self.base, revoked_by(A2, A3)])
        assert self.trust(ALICE_JID, A2) is TrustState.REVOKED
        assert [self.trust(ALICE_JID, d) for d in (A1, A3)] == [TrustState.TOFU] * 2
        assert self.revoked_events() == [(ALICE_JID, A2.fingerprint, A1.fingerprint)]


# -- 4. pre-revocation ------------------------------------------------------------------

PROMPTED = (
    "FINDING: a device revoked before it was published is first recorded as KeyDirectory."
    "reconcile sees it (untrusted with objenc_key_changed, or tofu with objenc_device_added "
    "under trust_new_devices) and only then revoked by Revocations.read at the end"
)


class TestPreRevocation(RevocationCase):
    def test_a_device_revoked_before_it_is_published_is_revoked_when_it_appears(self) -> None:
        """A1 revokes A3 before A3 is ever on the node (kept, nothing reported); when
        A3 appears, the revocation withheld by then, it is revoked: never encrypted
        to, reported once."""
        self.pin_alice(A1, A2)
        self.publishes(ALICE_JID, [item(A1), item(A2), revoked_by(A1, A3)])
        assert self.trust(ALICE_JID, A3) is None
        assert self.events["objenc_device_revoked"] == []
        self.publishes(ALICE_JID, [item(A1), item(A2), item(A3)])
        assert self.trust(ALICE_JID, A3) is TrustState.REVOKED
        assert self.revoked_events() == [(ALICE_JID, A3.fingerprint, A1.fingerprint)]
        assert self.send_to_alice("not to A3") == {
            A1.fingerprint,
            A2.fingerprint,
            self.tester.fingerprint,
        }
        self.publishes(ALICE_JID, [item(A1), item(A2), item(A3)])
        assert len(self.events["objenc_device_revoked"]) == 1

    def test_a_device_revoked_before_it_is_published_is_never_asked_about(self) -> None:
        """When the pre-revoked A3 appears, the user is not asked about it: no
        key-change prompt for a device the account already declared lost."""
        self.pin_alice(A1, A2)
        self.publishes(ALICE_JID, [item(A1), item(A2), revoked_by(A1, A3)])
        self.publishes(ALICE_JID, [item(A1), item(A2), item(A3)])
        assert self.trust(ALICE_JID, A3) is TrustState.REVOKED
        assert self.events["objenc_key_changed"] == []

    def test_first_contact_pins_then_takes_the_revocations(self) -> None:
        """A first contact holds no revoker yet: it pins A1 and A3, then takes A1's
        revocation of A3 from the same read (PROTOCOL.md 13.13, limits)."""
        self.discover(ALICE_JID, [item(A1), item(A3), revoked_by(A1, A3)])
        assert self.trust(ALICE_JID, A1) is TrustState.TOFU
        assert self.trust(ALICE_JID, A3) is TrustState.REVOKED
        assert self.revoked_events() == [(ALICE_JID, A3.fingerprint, A1.fingerprint)]
        assert self.events["objenc_key_changed"] == []


class TestPreRevocationTrustingNewDevices(RevocationCase):
    def config(self) -> dict[str, Any]:
        return {"trust_new_devices": True}

    def test_a_device_revoked_before_it_is_published_is_never_pinned(self) -> None:
        """With ``trust_new_devices`` a new device of hers is pinned at once: one
        revoked before it was published must not be, even for a moment."""
        self.pin_alice(A1, A2)
        self.publishes(ALICE_JID, [item(A1), item(A2), revoked_by(A1, A3)])
        self.publishes(ALICE_JID, [item(A1), item(A2), item(A3)])
        assert self.trust(ALICE_JID, A3) is TrustState.REVOKED
        assert self.events["objenc_device_added"] == []
        assert self.events["objenc_key_changed"] == []


# -- 5. what is kept ---------------------------------------------------------------------


class TestKept(RevocationCase):
    @pytest.fixture(autouse=True)
    def sqlite_file(self, tmp_path: Path) -> Iterator[None]:
        self.path = tmp_path / "account.sqlite"
        yield

    def make_storage(self) -> Storage:
        return SQLiteStorage(str(self.path))

    def stored(self, revoked: DeviceKeys) -> dict[str, Any]:
        """The revocation of ``revoked`` kept for Alice (settings
        ``revocation:{bare}:{revoked id}``, JSON)."""
        prefix = f"revocation:{ALICE_JID}:{revoked.fingerprint}"
        [value] = self.run_coro(self.storage.settings_with_prefix(prefix)).values()
        return dict(json.loads(value))

    def test_revocations_outlive_a_restart_and_the_server_withholding_them(self) -> None:
        """A1 revokes A2 and pre-revokes A4; after a restart on the same SQLite
        store, with the revocations withheld by the server: A2 stays revoked (not
        reported again), A2 still revokes nobody else, A4 is revoked when it
        appears."""
        base = self.pin_alice(A1, A2, A3)
        self.publishes(ALICE_JID, [*base, revoked_by(A1, A2), revoked_by(A1, A4)])
        assert self.trust(ALICE_JID, A2) is TrustState.REVOKED
        self.run_coro(self.plugin.flush())
        assert self.stored(A2)["applied"] is True
        assert self.stored(A2)["before"] == "tofu"
        assert self.stored(A2)["revoker"] == A1.fingerprint
        assert self.stored(A4)["applied"] is False  # kept, not held yet
        self.restart()
        assert self.trust(ALICE_JID, A2) is TrustState.REVOKED
        self.discover(ALICE_JID, base)  # withheld
        assert self.trust(ALICE_JID, A2) is TrustState.REVOKED
        assert self.events["objenc_device_revoked"] == []
        self.publishes(ALICE_JID, [*base, revoked_by(A2, A3)])
        assert self.trust(ALICE_JID, A3) is TrustState.TOFU
        self.publishes(ALICE_JID, [*base, item(A4)])
        assert self.trust(ALICE_JID, A4) is TrustState.REVOKED
        assert self.revoked_events() == [(ALICE_JID, A4.fingerprint, A1.fingerprint)]
        assert self.send_to_alice("to A1 and A3") == {
            A1.fingerprint,
            A3.fingerprint,
            self.tester.fingerprint,
        }

    def test_the_user_restoring_a_revoked_device_stands(self) -> None:
        """The user restores A2 (``set_trust`` tofu): the same revocation read again,
        before and after a restart, does not revoke it again; the revocation is
        still kept, so the restored A2 revokes nobody (rule 6)."""
        node = [*self.pin_alice(A1, A2, A3), revoked_by(A1, A2)]
        self.publishes(ALICE_JID, node)
        assert self.trust(ALICE_JID, A2) is TrustState.REVOKED
        self.run_coro(self.plugin.set_trust(ALICE_JID, A2.fingerprint, TrustState.TOFU))
        self.publishes(ALICE_JID, node)
        assert self.trust(ALICE_JID, A2) is TrustState.TOFU
        self.restart()
        self.discover(ALICE_JID, node)
        assert self.trust(ALICE_JID, A2) is TrustState.TOFU
        assert self.events["objenc_device_revoked"] == []
        self.publishes(ALICE_JID, [*node, revoked_by(A2, A3)])
        assert self.trust(ALICE_JID, A3) is TrustState.TOFU
        assert self.send_to_alice("to all three") == {
            A1.fingerprint,
            A2.fingerprint,
            A3.fingerprint,
            self.tester.fingerprint,
        }


# -- 6. our own account --------------------------------------------------------------------


def is_publish(stanza: ET.Element) -> bool:
    return stanza.find(f"{{{NS_PUBSUB}}}pubsub/{{{NS_PUBSUB}}}publish") is not None


def is_retract(stanza: ET.Element) -> bool:
    return stanza.find(f"{{{NS_PUBSUB}}}pubsub/{{{NS_PUBSUB}}}retract") is not None


class TestOwnAccount(RevocationCase):
    def setUp(self) -> None:
        super().setUp()
        own = item(self.tester)
        self.discover(ME, [own])  # our first read of our node: only this device
        self.base = [own, item(OWN2), item(OWN3)]
        self.publishes(ME, self.base)  # two more devices: held for a decision...
        assert self.trust(ME, OWN2) is TrustState.UNTRUSTED
        assert len(self.events["objenc_own_device_held"]) == 2
        for device in (OWN2, OWN3):  # ...and accepted
            self.run_coro(self.plugin.accept_key_change(ME, device.fingerprint))
            assert self.trust(ME, device) is TrustState.TOFU

    def test_an_accepted_device_of_ours_revokes_a_third(self) -> None:
        """OWN2 revokes OWN3 on our node: OWN3 revoked, reported once."""
        self.publishes(ME, [*self.base, revoked_by(OWN2, OWN3)])
        self.publishes(ME, [*self.base, revoked_by(OWN2, OWN3)])
        assert self.trust(ME, OWN3) is TrustState.REVOKED
        assert self.trust(ME, OWN2) is TrustState.TOFU
        assert self.revoked_events() == [(ME, OWN3.fingerprint, OWN2.fingerprint)]

    def test_another_device_of_ours_revokes_this_one(self) -> None:
        """OWN2 says this device is lost: reported with our own fingerprint, once."""
        self.publishes(ME, [*self.base, revoked_by(OWN2, self.tester.fingerprint)])
        self.publishes(ME, [*self.base, revoked_by(OWN2, self.tester.fingerprint)])
        assert self.revoked_events() == [(ME, self.tester.fingerprint, OWN2.fingerprint)]
        assert self.trust(ME, OWN2) is TrustState.TOFU

    def test_a_device_of_ours_held_for_a_decision_revokes_nothing(self) -> None:
        """Someone with our password publishes OWN4 (held, not accepted) and signs
        revocations of OWN2 and of this device with it: ignored."""
        node = [*self.base, item(OWN4)]
        self.publishes(ME, node)
        assert self.trust(ME, OWN4) is TrustState.UNTRUSTED
        self.publishes(
            ME, [*node, revoked_by(OWN4, OWN2), revoked_by(OWN4, self.tester.fingerprint)]
        )
        assert self.trust(ME, OWN2) is TrustState.TOFU
        assert self.events["objenc_device_revoked"] == []

    def test_revoke_device_publishes_a_signed_revocation_and_retracts(self) -> None:
        """``revoke_device(OWN3)``: one item ``revoke-{id}-{ours}`` published on our node,
        signed by this device's identity; OWN3 revoked here, its item retracted."""
        task = asyncio.ensure_future(self.plugin.revoke_device(OWN3.fingerprint))
        publish = answer(self, is_publish, "publish of the revocation")
        revocation = self.run_coro(asyncio.wait_for(task, 2))
        assert publish.get("to") in (None, ME)
        [published] = publish.iter(f"{{{NS_PUBSUB}}}publish")
        assert published.get("node") == NODE_CERTS
        [entry] = published.findall(f"{{{NS_PUBSUB}}}item")
        assert entry.get("id") == f"revoke-{OWN3.fingerprint}-{self.tester.fingerprint}"
        [element] = list(entry)
        read = read_revocation(element)
        assert isinstance(read, Revocation), read
        assert read == revocation
        assert (read.revoked, read.revoker) == (OWN3.fingerprint, self.tester.fingerprint)
        public_key = self.tester.identity_certificate.public_key()
        assert isinstance(public_key, Ed25519PublicKey)
        assert verify_revocation(read, public_key)
        assert self.trust(ME, OWN3) is TrustState.REVOKED
        retract = answer(self, is_retract, "retraction of OWN3's item")
        assert OWN3.fingerprint in ET.tostring(retract, encoding="unicode")
        # our node read back with it: nothing more to report
        self.publishes(ME, [*self.base, revocation_item(read)])
        assert self.trust(ME, OWN3) is TrustState.REVOKED
        assert self.events["objenc_device_revoked"] == []

    def test_revoke_device_refuses_this_device_and_an_unknown_one(self) -> None:
        """This device itself, or a fingerprint not held for our account (Alice's
        device included): EncryptionError, nothing published, nothing kept."""
        self.pin_alice(A1)
        for fingerprint in (self.tester.fingerprint, OWN4.fingerprint, A1.fingerprint):
            with pytest.raises(EncryptionError):
                self.run_coro(self.plugin.revoke_device(fingerprint))
        self.drain()
        assert [s for s in self.outbox if is_publish(s) or is_retract(s)] == []
        self.run_coro(self.plugin.flush())
        assert self.run_coro(self.storage.settings_with_prefix("revocation:")) == {}
        assert self.trust(ALICE_JID, A1) is TrustState.TOFU


# -- findings: attacks that currently succeed ------------------------------------------------


class TestFindings(RevocationCase):
    def setUp(self) -> None:
        super().setUp()
        self.base = self.pin_alice(A1, A2, A3)

    def test_hiding_the_good_device_once_defeats_its_counter_revocation(self) -> None:
        """The thief on A2 (with the account's password, or the server) retracts
        A1's item and publishes A2's revocation of A1 in one go; A1 comes back and
        revokes A2. Rule 6 says both are revoked; A2 must not stay the only device
        of Alice we encrypt to."""
        self.publishes(ALICE_JID, [item(A2), item(A3), revoked_by(A2, A1)])
        assert self.trust(ALICE_JID, A1) is TrustState.REVOKED
        self.publishes(ALICE_JID, [*self.base, revoked_by(A2, A1), revoked_by(A1, A2)])
        assert self.trust(ALICE_JID, A2) is TrustState.REVOKED

    def test_control_the_same_counter_revocation_with_the_good_device_shown(self) -> None:
        """Control: when A1's item stays on the node, the same two revocations
        revoke both."""
        self.publishes(ALICE_JID, [*self.base, revoked_by(A2, A1)])
        self.publishes(ALICE_JID, [*self.base, revoked_by(A2, A1), revoked_by(A1, A2)])
        assert self.trust(ALICE_JID, A1) is TrustState.REVOKED
        assert self.trust(ALICE_JID, A2) is TrustState.REVOKED

    def test_a_thief_revoked_by_two_devices_revokes_nothing(self) -> None:
        """A1 revokes the thief A3, then A2 does too (its item replaces A1's: one item
        per revoked device); the thief answers by revoking A2. Revoked by two, it
        revokes nothing more (PROTOCOL.md 13.13, limits)."""
        self.publishes(ALICE_JID, [*self.base, revoked_by(A1, A3)])
        self.publishes(ALICE_JID, [*self.base, revoked_by(A2, A3)])
        self.publishes(ALICE_JID, [*self.base, revoked_by(A2, A3), revoked_by(A3, A2)])
        assert self.trust(ALICE_JID, A3) is TrustState.REVOKED
        assert self.trust(ALICE_JID, A2) is TrustState.TOFU
        assert self.revoked_events() == [(ALICE_JID, A3.fingerprint, A1.fingerprint)]

    def test_control_revoked_by_two_in_one_read(self) -> None:
        """Control: both revocations of A3 and A3's answer in one read (two item ids):
        the core's rule 6 holds, A2 stays."""
        both = revocation_item(revoke(A1, A3), item_id="one")
        self.publishes(ALICE_JID, [*self.base, both, revoked_by(A2, A3), revoked_by(A3, A2)])
        assert self.trust(ALICE_JID, A3) is TrustState.REVOKED
        assert self.trust(ALICE_JID, A2) is TrustState.TOFU

    def test_a_device_the_user_already_revoked_is_not_reported_again(self) -> None:
        """The user rejected A2 earlier; A1's revocation of it changes nothing and
        reports nothing."""
        self.run_coro(self.plugin.set_trust(ALICE_JID, A2.fingerprint, TrustState.REVOKED))
        self.publishes(ALICE_JID, [*self.base, revoked_by(A1, A2)])
        assert self.trust(ALICE_JID, A2) is TrustState.REVOKED
        assert self.events["objenc_device_revoked"] == []

    def test_pre_revocations_kept_for_one_contact_are_bounded(self) -> None:
        """A1 publishes 64 revocations of identities nobody holds at each of three
        reads: what we keep for Alice stays within MAX_HELD_PER_JID."""
        for round_ in range(3):
            ids = [hashlib.sha256(f"{round_}-{n}".encode()).hexdigest() for n in range(64)]
            self.publishes(ALICE_JID, [*self.base, *(revoked_by(A1, fp) for fp in ids)])
        self.run_coro(self.plugin.flush())
        kept = self.run_coro(self.storage.settings_with_prefix(f"revocation:{ALICE_JID}:"))
        assert len(kept) <= MAX_HELD_PER_JID


class TestRevokeDeviceRefused(RevocationCase):
    def test_a_refused_publish_still_revokes_the_lost_device_here(self) -> None:
        """Our server (or the thief, who changed the node) refuses the revocation's
        publish: revoke_device raises, but the lost device is ours to reject: it
        must not stay trusted here."""
        own = item(self.tester)
        self.discover(ME, [own])
        self.publishes(ME, [own, item(OWN3)])
        self.run_coro(self.plugin.accept_key_change(ME, OWN3.fingerprint))
        task = asyncio.ensure_future(self.plugin.revoke_device(OWN3.fingerprint))
        iq = self.take(is_publish, "publish of the revocation")
        self.recv(
            f"<iq type='error' to='{ME}/resource' id='{iq.get('id')}'><error type='cancel'>"
            "<not-allowed xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>"
        )
        with pytest.raises(IqError):
            self.run_coro(asyncio.wait_for(task, 2))
        assert self.trust(ME, OWN3) is TrustState.REVOKED
