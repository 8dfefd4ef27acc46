"""Review of the authenticated profile (commits 9ca12c3, 2eafdcc) through the plugin.

Attacks by a hostile server, someone holding our password and a malicious
contact, each run through the real plugin path on slixmpp's mock stream (the
authenticated profile is on: this module is named ``test_auth_*``). A test
marked ``xfail(strict=True)`` is an attack that currently SUCCEEDS (its reason
names the finding); a plain test is an attack that was tried and held.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from auth_harness import cert_id, der, recipient_of, sender_of
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from slixmpp.test import SlixTest
from slixmpp.xmlstream import tostring
from testkit import ALICE, TESTER

import slixmpp_objenc
from slixmpp_objenc.core import (
    Identity,
    Recipient,
    ReplayGuard,
    TimestampSource,
    generate_identity,
    seal,
)
from slixmpp_objenc.core.auth_envelope import AuthRecipient, AuthSender, seal_authenticated
from slixmpp_objenc.core.constants import NS_OBJENC
from slixmpp_objenc.core.devices import vouch_for
from slixmpp_objenc.core.identities import (
    DeviceKeys,
    generate_device_keys,
    issue_encryption_certificate,
)
from slixmpp_objenc.core.timestamps import format_timestamp
from slixmpp_objenc.glue.inbound import MAX_AWAITING_TOTAL, MAX_PARKED, MAX_SENDERS_AWAITED
from slixmpp_objenc.plugin import NODE_CERTS, REORDER_TOLERANCE
from slixmpp_objenc.store import MemoryStorage, TrustState

NOW = datetime.now(UTC).replace(microsecond=0)
E2E = f"{{{NS_OBJENC}}}e2e"
KEY = f"{{{NS_OBJENC}}}key"
ME = "tester@localhost"
ALICE_JID = "alice@example.org"
ALICE_DEVICE = generate_device_keys(ALICE_JID, now=NOW)
EVIL_ALICE_DEVICE = generate_device_keys(ALICE_JID, now=NOW)  # a second identity for her JID
OWN_EVIL_DEVICE = generate_device_keys(ME, now=NOW)  # published on our node with our password
MALLORY_AS_ALICE = generate_identity(ALICE_JID, key_size=2048)  # another RSA device of her JID
CHAT = (
    "<message xmlns='jabber:client' from='alice@example.org/phone' "
    "to='tester@localhost/resource' type='chat' id='in1'><body>{body}</body></message>"
)
EVENTS = (
    "message",
    "carbon_sent",
    "carbon_received",
    "objenc_decrypted",
    "objenc_decryption_failed",
    "objenc_bad_timestamp",
    "objenc_encryption_failed",
    "objenc_plaintext_refused",
    "objenc_key_changed",
    "objenc_own_device_held",
)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def device_item(
    keys: DeviceKeys,
    *,
    encryption: x509.Certificate | None = None,
    vouched_by: Identity | None = None,
) -> str:
    """A ``<device/>`` item (PROTOCOL.md 13.6), vouched for by an RSA identity if given."""
    identity = keys.identity_certificate
    vouch = ""
    if vouched_by is not None:
        signature = vouch_for(vouched_by, identity)
        vouch = f"<vouch cert-sha256='{vouched_by.fingerprint}'>{b64(signature)}</vouch>"
    return (
        f"<item id='{hashlib.sha256(der(identity)).hexdigest()}'>"
        f"<device xmlns='{NS_OBJENC}'>"
        f"<identity>{b64(der(identity))}</identity>"
        f"<encryption>{b64(der(encryption or keys.encryption_certificate))}</encryption>"
        f"{vouch}</device></item>"
    )


def rsa_item(identity: Identity) -> str:
    """A draft-profile ``<certificate/>`` item (PROTOCOL.md 9)."""
    return (
        f"<item id='{identity.fingerprint}'>"
        f"<certificate xmlns='{NS_OBJENC}'>{b64(der(identity.certificate))}</certificate></item>"
    )


class ReviewCase(SlixTest):
    def setUp(self) -> None:
        self.now = NOW
        self.stream_start(mode="client", jid=f"{ME}/resource", plugins=["xep_0030"])
        self.xmpp.register_plugin("xep_0280")
        self.xmpp.register_plugin(
            "objenc",
            module=slixmpp_objenc,
            pconfig={
                "identity": TESTER,
                "clock": lambda: self.now,
                "storage": MemoryStorage(),
                **self.config(),
            },
        )
        self.plugin = self.xmpp.plugin["objenc"]
        self.events: dict[str, list[Any]] = {name: [] for name in EVENTS}
        for name in EVENTS:
            self.xmpp.add_event_handler(name, self.events[name].append)
        self.run_coro(self.plugin.ready())
        keys = self.plugin.keyring.device.keys
        assert keys is not None, "the authenticated profile is on in test_auth_* modules"
        self.tester: DeviceKeys = keys
        # Alice is a contact whose presence we receive: her node is readable to us
        self.xmpp.client_roster.add(ALICE_JID, afrom=True, ato=True)
        self.clock = TimestampSource(lambda: self.now)
        self.outbox: list[ET.Element] = []

    def config(self) -> dict[str, Any]:
        """More plugin configuration, for a test class that needs it."""
        return {}

    def tearDown(self) -> None:
        # reads of nodes nobody answered: cancelled, not left pending past the test
        directory = self.plugin.directory
        for future in [*directory._discovering.values(), *directory._retracting]:
            future.cancel()
        self.plugin.tasks.cancel_all()
        self.wait_(0.05)
        self.stream_close()

    # the wire ---------------------------------------------------------------------

    def drain(self) -> None:
        for _ in range(4):
            self.wait_for_send_queue()
            self.wait_()
            while (raw := self.xmpp.socket.next_sent(timeout=0.05)) is not None:
                self.outbox.append(ET.fromstring(raw))

    def take(self, predicate: Any, what: str) -> ET.Element:
        self.drain()
        for stanza in self.outbox:
            if predicate(stanza):
                self.outbox.remove(stanza)
                return stanza
        raise AssertionError(f"no {what} was sent: {[ET.tostring(s) for s in self.outbox]}")

    def fetches(self) -> list[ET.Element]:
        self.drain()
        return [
            s
            for s in self.outbox
            if s.get("type") == "get" and NODE_CERTS in ET.tostring(s, encoding="unicode")
        ]

    def answer_fetch(self, owner: str, items: Sequence[str]) -> None:
        """Play ``owner``'s server: answer the plugin's read of its node with ``items``."""
        fetch = self.take(
            lambda s: (
                s.get("type") == "get"
                and s.get("to", ME) == owner
                and NODE_CERTS in ET.tostring(s, encoding="unicode")
            ),
            f"read of {owner}'s node",
        )
        self.recv(
            f"<iq type='result' from='{owner}' to='{ME}/resource' id='{fetch.get('id')}'>"
            "<pubsub xmlns='http://jabber.org/protocol/pubsub'>"
            f"<items node='{NODE_CERTS}'>{''.join(items)}</items></pubsub></iq>"
        )
        self.wait_(0.05)

    def discover(self, owner: str, items: Sequence[str]) -> None:
        """Have the plugin read ``owner``'s node now, answered with ``items``."""
        task = asyncio.ensure_future(self.plugin.discover(owner))
        self.answer_fetch(owner, items)
        self.run_coro(asyncio.wait_for(task, 2))

    def notify(self, owner: str) -> None:
        """A PEP notification that ``owner``'s node changed (it is then read again)."""
        self.recv(
            f"<message from='{owner}' to='{ME}/resource' type='headline'>"
            "<event xmlns='http://jabber.org/protocol/pubsub#event'>"
            f"<items node='{NODE_CERTS}'><item id='x'/></items></event></message>"
        )

    def pin_alice(self, *items: str) -> None:
        self.discover(ALICE_JID, list(items) or [device_item(ALICE_DEVICE)])

    def trust(self, jid: str, fingerprint: str) -> TrustState | None:
        record = self.plugin.keyring.record(jid, fingerprint)
        return None if record is None else record.trust

    # senders -------------------------------------------------------------------------

    def sealed(
        self,
        inner: str,
        *,
        sender: AuthSender | None = None,
        recipients: Sequence[AuthRecipient] | None = None,
        timestamp: datetime | None = None,
    ) -> ET.Element:
        return seal_authenticated(
            inner.encode(),
            sender or sender_of(ALICE_DEVICE),
            recipients if recipients is not None else [recipient_of(self.tester)],
            timestamp=timestamp or self.clock.next(),
            pad_to=64,
        )

    def rsa_sealed(self, inner: str, timestamp: datetime | None = None) -> ET.Element:
        return seal(
            inner.encode(),
            [Recipient(TESTER.certificate.public_key())],
            timestamp=timestamp or self.clock.next(),
        )

    def wire(
        self,
        *copies: ET.Element,
        kind: str = "message",
        kind_type: str = "chat",
        outer_id: str = "outer1",
        frm: str = "alice@example.org/phone",
        extra: str = "",
    ) -> str:
        body = "".join(tostring(c) for c in copies)
        return (
            f"<{kind} xmlns='jabber:client' from='{frm}' to='{ME}/resource' "
            f"type='{kind_type}' id='{outer_id}'>{body}{extra}</{kind}>"
        )

    def bodies(self) -> list[str]:
        return [m["body"] for m in self.events["message"] if m["body"]]

    def failures(self) -> list[str]:
        return [e.reason for e in self.events["objenc_decryption_failed"]]

    def sent_message(self) -> ET.Element:
        return self.take(lambda s: s.tag.endswith("message") and s.find(E2E) is not None, "msg")

    def carbon(self, direction: str, frm: str, to: str, e2e: ET.Element) -> str:
        """A carbon (XEP-0280) of a message ``frm`` -> ``to``, from our bare JID."""
        return (
            f"<message xmlns='jabber:client' from='{ME}' to='{ME}/resource'>"
            f"<{direction} xmlns='urn:xmpp:carbons:2'><forwarded xmlns='urn:xmpp:forward:0'>"
            f"<message xmlns='jabber:client' from='{frm}' to='{to}' type='chat'>"
            f"{tostring(e2e)}</message></forwarded></{direction}></message>"
        )

    def carbons(self, direction: str) -> list[str]:
        name = f"carbon_{direction}"
        return [c[name]["body"] for c in self.events[name]]

    def migrate_alice(self, *extra: str) -> None:
        """Alice's device, whose RSA certificate we hold, publishes its <device/> item
        vouched for by that RSA key (PROTOCOL.md 13.8)."""
        self.notify(ALICE_JID)
        self.answer_fetch(
            ALICE_JID, [rsa_item(ALICE), device_item(ALICE_DEVICE, vouched_by=ALICE), *extra]
        )

    def own_node_with_a_held_device(self) -> None:
        """Our node read once (first contact over), then someone with our password
        publishes a <device/> item of theirs on it: held for a decision."""
        own = device_item(self.tester, vouched_by=TESTER)
        self.discover(ME, [own, rsa_item(TESTER)])
        assert not self.plugin.keyring.own_first_contact
        assert self.events["objenc_own_device_held"] == []  # our own items are not news
        self.notify(ME)
        self.answer_fetch(ME, [own, rsa_item(TESTER), device_item(OWN_EVIL_DEVICE)])
        assert self.trust(ME, OWN_EVIL_DEVICE.fingerprint) is TrustState.UNTRUSTED
        assert len(self.events["objenc_own_device_held"]) == 1


# -- findings: attacks that currently succeed ------------------------------------------


class TestFetchSenderCarbons(ReviewCase):
    def test_a_carbon_from_a_device_not_held_yet_is_delivered_after_the_fetch(self) -> None:
        inner = (
            "<message xmlns='jabber:client' from='alice@example.org/phone' "
            "to='tester@localhost/other' type='chat'><body>to my other device</body></message>"
        )
        self.recv(
            self.carbon("received", "alice@example.org/phone", f"{ME}/other", self.sealed(inner))
        )
        assert self.carbons("received") == []  # waits for Alice's node
        self.answer_fetch(ALICE_JID, [device_item(ALICE_DEVICE)])
        self.wait_(0.1)
        assert len(self.events["objenc_decrypted"]) == 1  # it did open...
        assert self.events["objenc_plaintext_refused"] == []  # ...and was then refused
        assert self.carbons("received") == ["to my other device"]

    def test_control_the_same_carbon_from_a_device_already_held_is_delivered(self) -> None:
        self.pin_alice()
        inner = (
            "<message xmlns='jabber:client' from='alice@example.org/phone' "
            "to='tester@localhost/other' type='chat'><body>to my other device</body></message>"
        )
        self.recv(
            self.carbon("received", "alice@example.org/phone", f"{ME}/other", self.sealed(inner))
        )
        assert self.carbons("received") == ["to my other device"]
        assert self.events["objenc_plaintext_refused"] == []


class TestFetchSenderFlood(ReviewCase):
    def test_stanzas_awaiting_sender_fetches_are_bounded_in_total(self) -> None:
        """Claimed unknown devices: strangers make us fetch nothing; contacts at most
        MAX_SENDERS_AWAITED fetches at once, MAX_AWAITING_TOTAL stanzas kept."""
        e2e = tostring(self.sealed(CHAT.format(body="x")))
        senders = MAX_PARKED + 100
        for i in range(senders):
            self.recv(
                f"<message xmlns='jabber:client' from='s{i}@evil.example/r' to='{ME}/resource' "
                f"type='chat' id='o{i}'>{e2e}</message>"
            )
        assert self.fetches() == [] and not self.plugin.inbound._awaiting
        for i in range(200):
            self.xmpp.client_roster.add(f"c{i}@example.net", afrom=True, ato=True)
            for n in range(3):
                self.recv(
                    f"<message xmlns='jabber:client' from='c{i}@example.net/r' "
                    f"to='{ME}/resource' type='chat' id='c{i}-{n}'>{e2e}</message>"
                )
        waiting = sum(len(v) for v in self.plugin.inbound._awaiting.values())
        assert len(self.fetches()) <= MAX_SENDERS_AWAITED
        assert waiting <= MAX_AWAITING_TOTAL


class TestStrangersBecomeContacts(ReviewCase):
    MAX_SENDERS = 4

    def config(self) -> dict[str, Any]:
        # the plugin's own guard (replay_guard_from_config), with a small max_senders
        return {
            "replay_guard": ReplayGuard(
                reorder=REORDER_TOLERANCE,
                max_senders=self.MAX_SENDERS,
                protect=lambda bare: bare == ME or self.plugin.keyring.sticky(bare),
            )
        }

    def test_strangers_who_wrote_once_do_not_defeat_the_replay_state_bound(self) -> None:
        strangers = [f"s{i}@evil.example" for i in range(2 * self.MAX_SENDERS)]
        for i, stranger in enumerate(strangers):
            device = generate_device_keys(stranger, now=NOW)
            inner = (
                f"<message xmlns='jabber:client' from='{stranger}/r' to='{ME}/resource' "
                f"type='chat'><body>spam {i}</body></message>"
            )
            self.recv(self.wire(self.sealed(inner, sender=sender_of(device)), frm=f"{stranger}/r"))
            assert self.fetches() == []  # no read of a stranger's node
        # strangers (not in our roster): no node read, nothing pinned, nothing kept
        assert self.bodies() == []
        assert not any(self.plugin.keyring.sticky(s) for s in strangers)
        assert self.plugin.replay_guard._ledger.senders <= self.MAX_SENDERS


class TestCrossProfileReplay(ReviewCase):
    """Alice and the tester allowed each other's legacy devices: Alice's device sends
    one <e2e/> per profile, both for the tester (its RSA certificate and its identity)."""

    def setUp(self) -> None:
        super().setUp()
        self.pin_alice()
        self.run_coro(self.plugin.allow_legacy_devices(ALICE_JID))
        inner = CHAT.format(body="pay the invoice")
        timestamp = self.clock.next()
        self.draft = self.rsa_sealed(inner, timestamp=timestamp)
        self.recv(self.wire(self.draft, self.sealed(inner, timestamp=timestamp)))
        assert self.bodies() == ["pay the invoice"]
        info = self.plugin.encryption_info(self.events["message"][0])
        assert info is not None and info.authenticated

    def test_the_draft_copy_replayed_from_another_resource_is_refused(self) -> None:
        self.recv(self.wire(self.draft, frm="alice@example.org/laptop", outer_id="o2"))
        assert self.bodies() == ["pay the invoice"]

    def test_the_draft_copy_replayed_from_the_same_resource_is_refused(self) -> None:
        self.recv(self.wire(self.draft, outer_id="o2"))
        assert self.bodies() == ["pay the invoice"]


class TestVouchOnce(ReviewCase):
    def test_one_rsa_certificate_vouches_for_one_identity_only(self) -> None:
        self.pin_alice(rsa_item(ALICE))
        self.run_coro(self.plugin.set_trust(ALICE_JID, ALICE.fingerprint, TrustState.VERIFIED))
        self.migrate_alice(device_item(EVIL_ALICE_DEVICE, vouched_by=ALICE))
        states = {
            self.trust(ALICE_JID, ALICE_DEVICE.fingerprint),
            self.trust(ALICE_JID, EVIL_ALICE_DEVICE.fingerprint),
        }
        assert states != {TrustState.VERIFIED}, "both identities verified by one vouch"


class TestVerificationAfterMigration(ReviewCase):
    def test_verifying_a_migrated_contact_does_not_hold_stanzas_to_it(self) -> None:
        from slixmpp_objenc.core.verification import SasInitiator, SasResponder

        self.pin_alice(rsa_item(ALICE))
        self.migrate_alice()
        assert self.trust(ALICE_JID, ALICE_DEVICE.fingerprint) is TrustState.TOFU  # vouched
        # the users compare the 6 characters of a completed exchange and they match
        verification = self.plugin.verification
        peer_set, own_set = verification.peer_set(ALICE_JID), verification.own_set(ALICE_JID)
        assert peer_set == {ALICE_DEVICE.fingerprint}
        initiator = SasInitiator(own_set, peer_set)
        initiator.receive_nonce(SasResponder(peer_set, own_set).receive_commit(initiator.commit()))
        verification._sessions["sid1"] = initiator
        verification._peers["sid1"] = ALICE_JID
        self.run_coro(self.plugin.confirm_verification("sid1", True))
        assert self.trust(ALICE_JID, ALICE_DEVICE.fingerprint) is TrustState.VERIFIED
        self.xmpp.send_message(mto=ALICE_JID, mbody="now that we verified", mtype="chat")
        self.drain()
        assert self.events["objenc_key_changed"] == []
        assert [s for s in self.outbox if s.find(E2E) is not None], "the message is held"


class TestEncryptionCertificates(ReviewCase):
    def test_an_older_encryption_certificate_does_not_replace_a_newer_one(self) -> None:
        self.pin_alice()
        rotated_key = X25519PrivateKey.generate()
        self.now = NOW + timedelta(days=30)
        rotated = issue_encryption_certificate(
            ALICE_DEVICE.identity_key,
            ALICE_DEVICE.identity_certificate,
            rotated_key.public_key(),
            now=self.now,
        )
        self.notify(ALICE_JID)
        self.answer_fetch(ALICE_JID, [device_item(ALICE_DEVICE, encryption=rotated)])
        record = self.plugin.keyring.record(ALICE_JID, ALICE_DEVICE.fingerprint)
        assert record is not None and record.encryption_pem is not None
        assert x509.load_pem_x509_certificate(record.encryption_pem) == rotated
        # the server serves the node as it was a month ago
        self.notify(ALICE_JID)
        self.answer_fetch(ALICE_JID, [device_item(ALICE_DEVICE)])
        self.now += timedelta(hours=1)  # the replaced key speaks for nothing after its time
        self.recv(self.wire(self.sealed(CHAT.format(body="with the retired key"))))
        assert self.bodies() == []
        record = self.plugin.keyring.record(ALICE_JID, ALICE_DEVICE.fingerprint)
        assert record is not None and record.encryption_pem is not None
        assert x509.load_pem_x509_certificate(record.encryption_pem) == rotated

    def test_a_stanza_sealed_before_a_rotation_still_opens_when_it_arrives_late(self) -> None:
        """Offline storage: sealed with the old key, delivered after the sender's new
        certificate was read. The replaced certificate proves stanzas dated before
        its successor, never after (PROTOCOL.md 13.10)."""
        self.pin_alice()
        sent_at = self.clock.next()
        late = self.wire(
            self.sealed(CHAT.format(body="sealed before the rotation"), timestamp=sent_at),
            extra="<delay xmlns='urn:xmpp:delay' from='localhost' "
            f"stamp='{format_timestamp(sent_at)}'/>",
            outer_id="late",
        )
        self.now = NOW + timedelta(days=1)
        rotated_key = X25519PrivateKey.generate()
        rotated = issue_encryption_certificate(
            ALICE_DEVICE.identity_key,
            ALICE_DEVICE.identity_certificate,
            rotated_key.public_key(),
            now=self.now,
        )
        self.notify(ALICE_JID)
        self.answer_fetch(ALICE_JID, [device_item(ALICE_DEVICE, encryption=rotated)])
        self.recv(late)
        assert self.bodies() == ["sealed before the rotation"]
        self.now += timedelta(hours=1)
        forged = self.sealed(CHAT.format(body="old key, new date"))  # after the successor
        self.recv(self.wire(forged, outer_id="forged"))
        assert self.bodies() == ["sealed before the rotation"]
        assert self.failures() == ["undecryptable"]

    def test_an_expired_encryption_certificate_is_not_used(self) -> None:
        short = issue_encryption_certificate(
            ALICE_DEVICE.identity_key,
            ALICE_DEVICE.identity_certificate,
            ALICE_DEVICE.encryption_key.public_key(),
            now=NOW,
            valid_for=timedelta(days=1),
        )
        self.pin_alice(device_item(ALICE_DEVICE, encryption=short))
        self.now = NOW + timedelta(days=3)
        self.notify(ALICE_JID)  # the node is read again: nothing newer
        self.answer_fetch(ALICE_JID, [device_item(ALICE_DEVICE, encryption=short)])
        stolen = AuthSender(
            ALICE_DEVICE.encryption_key, cert_id(ALICE_DEVICE.identity_certificate), cert_id(short)
        )
        self.recv(self.wire(self.sealed(CHAT.format(body="expired key"), sender=stolen)))
        self.xmpp.send_message(mto=ALICE_JID, mbody="to an expired key", mtype="chat")
        self.drain()
        wrapped = {k.get("cert-sha256") for s in self.outbox for k in s.iter(KEY)}
        assert cert_id(short).hex() not in wrapped
        assert self.bodies() == []

    def test_a_year_after_our_keys_were_made_sending_still_works_or_fails_loudly(self) -> None:
        self.pin_alice()
        self.now = NOW + timedelta(days=366)
        self.xmpp.send_message(mto=ALICE_JID, mbody="a year later", mtype="chat")
        self.drain()
        sent = [s for s in self.outbox if s.tag.endswith("message")]
        assert sent or self.events["objenc_encryption_failed"]


class TestHeldOwnDevice(ReviewCase):
    def test_a_sent_carbon_from_a_held_device_of_ours_is_not_delivered_as_ours(self) -> None:
        self.own_node_with_a_held_device()
        inner = (
            "<message xmlns='jabber:client' from='tester@localhost/evil' "
            "to='alice@example.org' type='chat'><body>I owe you 1000 EUR</body></message>"
        )
        e2e = self.sealed(inner, sender=sender_of(OWN_EVIL_DEVICE))
        self.recv(self.carbon("sent", f"{ME}/evil", ALICE_JID, e2e))
        assert self.carbons("sent") == []


class TestOwnEcho(ReviewCase):
    def test_our_own_message_echoed_as_a_sent_carbon_is_refused(self) -> None:
        self.pin_alice()
        self.xmpp.send_message(mto=ALICE_JID, mbody="see you at 5", mtype="chat")
        e2e = self.sent_message().find(E2E)
        assert e2e is not None
        self.recv(self.carbon("sent", f"{ME}/resource", ALICE_JID, e2e))
        assert self.carbons("sent") == []


# -- attacks that held (regression tests) ------------------------------------------------


class TestDowngradeHolds(ReviewCase):
    def setUp(self) -> None:
        super().setUp()
        self.pin_alice()

    def test_a_draft_copy_in_a_received_carbon_is_a_downgrade(self) -> None:
        """Carbons: a draft-profile copy 'from' Alice (who has an identity) is refused."""
        inner = (
            "<message xmlns='jabber:client' from='alice@example.org/phone' "
            "to='tester@localhost/other' type='chat'><body>unauthenticated</body></message>"
        )
        self.recv(
            self.carbon(
                "received", "alice@example.org/phone", f"{ME}/other", self.rsa_sealed(inner)
            )
        )
        assert self.carbons("received") == []
        assert self.failures() == ["downgrade"]

    def test_renaming_our_key_in_the_authenticated_copy_does_not_open_the_draft_copy(
        self,
    ) -> None:
        """Mixed stanza: the server spoils our <key/> in the authenticated copy so that
        we skip it; the draft copy is still a downgrade."""
        inner = CHAT.format(body="both")
        timestamp = self.clock.next()
        auth = self.sealed(inner, timestamp=timestamp)
        for key in auth.findall(KEY):
            key.set("cert-sha256", "0" * 64)
        self.recv(self.wire(self.rsa_sealed(inner, timestamp=timestamp), auth))
        assert self.bodies() == []
        assert self.failures() == ["downgrade"]

    def test_hiding_her_device_item_does_not_bring_the_draft_profile_back(self) -> None:
        """Withholding: her node without the <device/> item (only an RSA certificate the
        server made for her) keeps her identity counting: nothing RSA either way."""
        self.notify(ALICE_JID)
        self.answer_fetch(ALICE_JID, [rsa_item(ALICE)])
        assert self.trust(ALICE_JID, ALICE_DEVICE.fingerprint) is TrustState.UNPUBLISHED
        self.run_coro(self.plugin.accept_key_change(ALICE_JID, ALICE.fingerprint))
        self.xmpp.send_message(mto=ALICE_JID, mbody="not to RSA", mtype="chat")
        self.drain()
        assert not [s for s in self.outbox if s.find(E2E) is not None]
        assert self.events["objenc_encryption_failed"]  # fail closed, loudly
        self.recv(self.wire(self.rsa_sealed(CHAT.format(body="rsa"))))
        assert self.bodies() == [] and self.failures() == ["downgrade"]

    def test_the_authenticated_copy_replayed_from_another_resource_is_refused(self) -> None:
        e2e = self.sealed(CHAT.format(body="once"))
        self.recv(self.wire(e2e))
        self.recv(self.wire(e2e, frm="alice@example.org/laptop", outer_id="o2"))
        assert self.bodies() == ["once"]
        assert [e.reason for e in self.events["objenc_bad_timestamp"]] == ["replay"]


class TestSenderBinding(ReviewCase):
    def test_a_held_device_cannot_speak_as_the_verified_device_of_the_same_jid(self) -> None:
        """The server adds a device of its own to a verified Alice (held) and wraps with
        its key while <data/> names her verified device: it does not open."""
        self.pin_alice()
        self.run_coro(
            self.plugin.set_trust(ALICE_JID, ALICE_DEVICE.fingerprint, TrustState.VERIFIED)
        )
        self.notify(ALICE_JID)
        self.answer_fetch(ALICE_JID, [device_item(ALICE_DEVICE), device_item(EVIL_ALICE_DEVICE)])
        assert self.trust(ALICE_JID, EVIL_ALICE_DEVICE.fingerprint) is TrustState.UNTRUSTED
        claimed = sender_of(ALICE_DEVICE, encryption_key=EVIL_ALICE_DEVICE.encryption_key)
        self.recv(self.wire(self.sealed(CHAT.format(body="as her phone"), sender=claimed)))
        assert self.bodies() == [] and self.failures() == ["undecryptable"]
        # what the held device may say comes with its own trust state, not hers
        self.recv(
            self.wire(self.sealed(CHAT.format(body="held"), sender=sender_of(EVIL_ALICE_DEVICE)))
        )
        info = self.plugin.encryption_info(self.events["message"][0])
        assert info is not None and info.sender_fingerprint == EVIL_ALICE_DEVICE.fingerprint
        assert info.sender_trust is TrustState.UNTRUSTED

    def test_an_unknown_sender_makes_us_read_its_own_node_once_a_minute(self) -> None:
        """FetchSender: Alice's device ids from Mallory's JID read Mallory's node (not
        Alice's), once; a second stanza within the minute makes no new read."""
        self.pin_alice()
        self.xmpp.client_roster.add("mallory@example.org", afrom=True, ato=True)  # a contact
        frm = "mallory@example.org/r"
        self.recv(self.wire(self.sealed(CHAT.format(body="x")), frm=frm))
        self.answer_fetch("mallory@example.org", [device_item(ALICE_DEVICE)])
        assert self.fetches() == []
        self.recv(self.wire(self.sealed(CHAT.format(body="y")), frm=frm, outer_id="o2"))
        assert self.fetches() == []
        assert self.bodies() == [] and self.failures() == ["undecryptable", "undecryptable"]

    def test_history_from_before_a_migration_opens_unauthenticated(self) -> None:
        """An archive result in the draft's profile from Alice, who has an identity
        now: history from before her migration; it opens, unauthenticated (a live
        stanza like it is a downgrade)."""
        self.pin_alice()
        inner = CHAT.format(body="before the migration")
        stamp = NOW.strftime("%Y-%m-%dT%H:%M:%SZ")
        received: list[Any] = []
        self.xmpp.add_event_handler("objenc_decrypted", received.append)
        self.recv(
            f"<message xmlns='jabber:client' from='{ME}' to='{ME}/resource'>"
            "<result xmlns='urn:xmpp:mam:2' id='r1'><forwarded xmlns='urn:xmpp:forward:0'>"
            f"<delay xmlns='urn:xmpp:delay' stamp='{stamp}'/>"
            "<message xmlns='jabber:client' from='alice@example.org/phone' "
            f"to='{ME}/resource' type='chat'>{tostring(self.rsa_sealed(inner))}</message>"
            "</forwarded></result></message>"
        )
        [opened] = received
        forwarded = opened.xml.find(".//{jabber:client}message/{jabber:client}body/..")
        assert forwarded is not None
        info = self.plugin.inbound._info.get(forwarded)
        assert info is not None and not info.authenticated and info.sender_fingerprint is None

    def test_a_stranger_makes_us_read_no_node(self) -> None:
        """A sender not in our roster (whose node we could not read anyway): no
        fetch, nothing pinned, refused."""
        self.recv(self.wire(self.sealed(CHAT.format(body="x")), frm="stranger@evil.example/r"))
        assert self.fetches() == []
        assert self.plugin.keyring.records("stranger@evil.example") == []
        assert self.bodies() == [] and self.failures() == ["undecryptable"]

    def test_an_archive_result_from_an_unknown_device_reads_no_node(self) -> None:
        inner = CHAT.format(body="history")
        stamp = NOW.strftime("%Y-%m-%dT%H:%M:%SZ")
        self.recv(
            f"<message xmlns='jabber:client' from='{ME}' to='{ME}/resource'>"
            "<result xmlns='urn:xmpp:mam:2' id='r1'><forwarded xmlns='urn:xmpp:forward:0'>"
            f"<delay xmlns='urn:xmpp:delay' stamp='{stamp}'/>"
            "<message xmlns='jabber:client' from='alice@example.org/phone' "
            f"to='{ME}/resource' type='chat'>{tostring(self.sealed(inner))}</message>"
            "</forwarded></result></message>"
        )
        assert self.fetches() == []


class TestVouchHolds(ReviewCase):
    def test_a_later_vouch_from_the_same_rsa_certificate_is_a_key_change(self) -> None:
        self.pin_alice(rsa_item(ALICE))
        self.run_coro(self.plugin.set_trust(ALICE_JID, ALICE.fingerprint, TrustState.VERIFIED))
        self.migrate_alice()
        assert self.trust(ALICE_JID, ALICE_DEVICE.fingerprint) is TrustState.VERIFIED
        self.migrate_alice(device_item(EVIL_ALICE_DEVICE, vouched_by=ALICE))
        assert self.trust(ALICE_JID, EVIL_ALICE_DEVICE.fingerprint) is TrustState.UNTRUSTED

    def test_a_vouch_from_a_revoked_rsa_certificate_carries_nothing(self) -> None:
        self.pin_alice(rsa_item(ALICE))
        self.run_coro(self.plugin.reject_key_change(ALICE_JID, ALICE.fingerprint))
        self.migrate_alice()
        assert self.trust(ALICE_JID, ALICE_DEVICE.fingerprint) is TrustState.UNTRUSTED

    def test_a_vouch_pointed_at_another_rsa_device_hides_nothing(self) -> None:
        """The RSA-face rule: a <device/> item whose vouch names another device's RSA
        certificate (her signature, relabelled) does not make us drop that device."""
        other_rsa = MALLORY_AS_ALICE
        self.pin_alice(rsa_item(ALICE))
        self.notify(ALICE_JID)
        relabelled = device_item(ALICE_DEVICE, vouched_by=ALICE).replace(
            ALICE.fingerprint, other_rsa.fingerprint
        )
        self.answer_fetch(ALICE_JID, [rsa_item(ALICE), rsa_item(other_rsa), relabelled])
        assert self.trust(ALICE_JID, other_rsa.fingerprint) is TrustState.UNTRUSTED  # held
        assert self.trust(ALICE_JID, ALICE_DEVICE.fingerprint) is TrustState.UNTRUSTED


class TestOwnNodeHolds(ReviewCase):
    def test_a_device_published_with_our_password_is_never_encrypted_to(self) -> None:
        self.own_node_with_a_held_device()
        self.pin_alice()
        self.xmpp.send_message(mto=ALICE_JID, mbody="not for the intruder", mtype="chat")
        named = {k.get("identity-sha256") for k in self.sent_message().iter(KEY)}
        assert named == {ALICE_DEVICE.fingerprint, self.tester.fingerprint}

    def test_once_rejected_its_stanzas_do_not_open(self) -> None:
        self.own_node_with_a_held_device()
        self.plugin.remove_peer_certificate(ME, OWN_EVIL_DEVICE.fingerprint)
        assert self.trust(ME, OWN_EVIL_DEVICE.fingerprint) is TrustState.REVOKED
        inner = (
            "<message xmlns='jabber:client' from='tester@localhost/evil' "
            "to='tester@localhost/resource' type='chat'><body>hi me</body></message>"
        )
        self.recv(
            self.wire(self.sealed(inner, sender=sender_of(OWN_EVIL_DEVICE)), frm=f"{ME}/evil")
        )
        for fetch in self.fetches():  # our node read once more, if at all: still revoked
            self.outbox.remove(fetch)
            self.recv(
                f"<iq type='result' from='{ME}' to='{ME}/resource' id='{fetch.get('id')}'>"
                "<pubsub xmlns='http://jabber.org/protocol/pubsub'>"
                f"<items node='{NODE_CERTS}'>{device_item(OWN_EVIL_DEVICE)}</items></pubsub></iq>"
            )
        self.wait_(0.05)
        assert self.bodies() == []
        assert self.trust(ME, OWN_EVIL_DEVICE.fingerprint) is TrustState.REVOKED


class TestIqHolds(ReviewCase):
    def test_an_iq_to_a_contact_with_legacy_devices_allowed_carries_one_copy(self) -> None:
        self.pin_alice(device_item(ALICE_DEVICE), rsa_item(ALICE))
        self.run_coro(self.plugin.allow_legacy_devices(ALICE_JID))
        self.xmpp.make_iq_get(queryxmlns="urn:example:q", ito="alice@example.org/phone").send(
            timeout=5
        )
        request = self.take(lambda s: s.tag.endswith("iq") and s.get("type") == "get", "iq")
        copies = request.findall(E2E)
        assert len(copies) == 1
        assert {k.get("identity-sha256") for k in copies[0].findall(KEY)} == {
            ALICE_DEVICE.fingerprint
        }
