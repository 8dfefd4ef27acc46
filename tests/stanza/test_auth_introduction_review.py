"""Review of the introductions change (PROTOCOL.md 13.7, "Introductions"), as a
hostile server, a contact's password holder and a malicious contact.

Harness copied from ``test_auth_profile.py`` (``AuthTestCase``, ``TestIntroduction``).
Attacks that currently succeed are ``xfail(strict=True)`` with ``FINDING:``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding
from slixmpp.test import SlixTest
from slixmpp.xmlstream import tostring
from testkit import TESTER

import slixmpp_objenc
from slixmpp_objenc.core import Recipient, TimestampSource, seal
from slixmpp_objenc.core.auth_envelope import (
    AuthRecipient,
    AuthSender,
    seal_authenticated,
)
from slixmpp_objenc.core.constants import NS_OBJENC
from slixmpp_objenc.core.identities import (
    DeviceKeys,
    generate_device_keys,
)
from slixmpp_objenc.core.trust import MAX_HELD_PER_JID
from slixmpp_objenc.plugin import NODE_CERTS
from slixmpp_objenc.store import MemoryStorage, TrustState

NOW = datetime.now(UTC).replace(microsecond=0)
E2E = f"{{{NS_OBJENC}}}e2e"
KEY = f"{{{NS_OBJENC}}}key"
DATA = f"{{{NS_OBJENC}}}data"
ME = "tester@localhost"
ALICE_JID = "alice@example.org"
ALICE_DEVICE = generate_device_keys(ALICE_JID, now=NOW)
MALLORY_DEVICE = generate_device_keys("mallory@example.org", now=NOW)
CHAT = (
    "<message xmlns='jabber:client' from='alice@example.org/phone' "
    "to='tester@localhost/resource' type='chat' id='in1'><body>{body}</body></message>"
)
EVENTS = (
    "message",
    "objenc_decrypted",
    "objenc_decryption_failed",
    "objenc_bad_timestamp",
    "objenc_encryption_failed",
    "objenc_key_changed",
)


def der(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(Encoding.DER)


def cert_id(certificate: x509.Certificate) -> bytes:
    """A certificate's id in the profile: SHA-256 of its DER (32 bytes)."""
    return hashlib.sha256(der(certificate)).digest()


def sender_of(keys: DeviceKeys, encryption_key: X25519PrivateKey | None = None) -> AuthSender:
    """``keys``'s device as a sender; ``encryption_key``: who really wraps (an attacker)."""
    return AuthSender(
        encryption_key or keys.encryption_key,
        cert_id(keys.identity_certificate),
        cert_id(keys.encryption_certificate),
    )


def recipient_of(keys: DeviceKeys) -> AuthRecipient:
    """A device as a recipient, from its public certificates only."""
    public_key = keys.encryption_certificate.public_key()
    assert isinstance(public_key, X25519PublicKey)
    return AuthRecipient(
        cert_id(keys.identity_certificate), cert_id(keys.encryption_certificate), public_key
    )


def device_item(
    identity: x509.Certificate, encryption: x509.Certificate, item_id: str | None = None
) -> str:
    """One item of a certificate node (PROTOCOL.md 13.6): ``<device/>`` with both certificates."""
    b64 = base64.b64encode
    return (
        f"<item id='{item_id or hashlib.sha256(der(identity)).hexdigest()}'>"
        f"<device xmlns='{NS_OBJENC}'>"
        f"<identity>{b64(der(identity)).decode()}</identity>"
        f"<encryption>{b64(der(encryption)).decode()}</encryption>"
        "</device></item>"
    )


def alice_item() -> str:
    return device_item(ALICE_DEVICE.identity_certificate, ALICE_DEVICE.encryption_certificate)


class AuthTestCase(SlixTest):
    def setUp(self) -> None:
        self.now = NOW
        self.stream_start(mode="client", jid=f"{ME}/resource", plugins=["xep_0030"])
        self.xmpp.register_plugin(
            "objenc",
            module=slixmpp_objenc,
            pconfig={"identity": TESTER, "clock": lambda: self.now, "storage": MemoryStorage()},
        )
        self.plugin = self.xmpp.plugin["objenc"]
        self.events: dict[str, list[Any]] = {name: [] for name in EVENTS}
        for name in EVENTS:
            self.xmpp.add_event_handler(name, self.events[name].append)
        self.run_coro(self.plugin.ready())  # our device keys are made at load
        # Alice is a contact whose presence we receive: her node is readable to us
        self.xmpp.client_roster.add(ALICE_JID, afrom=True, ato=True)
        keys = self.plugin.keyring.device.keys
        assert keys is not None, "the authenticated profile is on in test_auth_* modules"
        self.tester: DeviceKeys = keys
        self.clock = TimestampSource(lambda: self.now)  # Alice's sending clock
        self.outbox: list[ET.Element] = []  # sent stanzas not looked at yet

    def tearDown(self) -> None:
        self.stream_close()

    # the wire ---------------------------------------------------------------------

    def drain(self) -> None:
        """Move everything the plugin sent so far into :attr:`outbox`."""
        for _ in range(4):
            self.wait_for_send_queue()
            self.wait_()
            while (raw := self.xmpp.socket.next_sent(timeout=0.05)) is not None:
                self.outbox.append(ET.fromstring(raw))

    def take(self, predicate: Any, what: str) -> ET.Element:
        """The first sent stanza matching ``predicate`` (removed from the outbox)."""
        self.drain()
        for stanza in self.outbox:
            if predicate(stanza):
                self.outbox.remove(stanza)
                return stanza
        raise AssertionError(f"no {what} was sent: {[ET.tostring(s) for s in self.outbox]}")

    def answer_fetch(self, owner: str, items: Sequence[str]) -> None:
        """Play ``owner``'s server: answer the plugin's read of its node with ``items``."""
        fetch = self.take(
            lambda s: s.get("type") == "get" and NODE_CERTS in ET.tostring(s, encoding="unicode"),
            f"read of {owner}'s node",
        )
        assert fetch.get("to") == owner, ET.tostring(fetch)
        self.recv(
            f"<iq type='result' from='{owner}' to='{ME}/resource' id='{fetch.get('id')}'>"
            "<pubsub xmlns='http://jabber.org/protocol/pubsub'>"
            f"<items node='{NODE_CERTS}'>{''.join(items)}</items></pubsub></iq>"
        )
        self.wait_(0.05)

    def no_fetch_pending(self) -> bool:
        self.drain()
        return not any(NODE_CERTS in ET.tostring(s, encoding="unicode") for s in self.outbox)

    def notify(self, owner: str, items: Sequence[str]) -> None:
        """Play ``owner``'s server: a PEP notification that its node changed."""
        self.recv(
            f"<message from='{owner}' to='{ME}/resource' type='headline'>"
            "<event xmlns='http://jabber.org/protocol/pubsub#event'>"
            f"<items node='{NODE_CERTS}'>{''.join(items)}</items></event></message>"
        )

    def pin_alice(self) -> None:
        """The tester reads Alice's node (first contact): her device is pinned (TOFU)."""
        task = asyncio.ensure_future(self.plugin.discover(ALICE_JID))
        self.answer_fetch(ALICE_JID, [alice_item()])
        self.run_coro(asyncio.wait_for(task, 2))
        record = self.plugin.keyring.record(ALICE_JID, ALICE_DEVICE.fingerprint)
        assert record is not None and record.trust is TrustState.TOFU

    # Alice (or whoever claims to be her) ------------------------------------------------

    def sealed(
        self,
        inner: str,
        *,
        sender: AuthSender | None = None,
        recipients: Sequence[AuthRecipient] | None = None,
        timestamp: datetime | None = None,
    ) -> ET.Element:
        """An authenticated ``<e2e/>`` of ``inner``: Alice's by default, to the tester."""
        return seal_authenticated(
            inner.encode(),
            sender or sender_of(ALICE_DEVICE),
            recipients if recipients is not None else [recipient_of(self.tester)],
            timestamp=timestamp or self.clock.next(),
            pad_to=64,
        )

    def rsa_sealed(self, inner: str, timestamp: datetime | None = None) -> ET.Element:
        """A draft-profile ``<e2e/>`` to the tester's RSA certificate (anyone can make one)."""
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
    ) -> str:
        body = "".join(tostring(c) for c in copies)
        return (
            f"<{kind} xmlns='jabber:client' from='{frm}' to='{ME}/resource' "
            f"type='{kind_type}' id='{outer_id}'>{body}</{kind}>"
        )

    def bodies(self) -> list[str]:
        return [m["body"] for m in self.events["message"]]

    def failures(self) -> list[str]:
        return [e.reason for e in self.events["objenc_decryption_failed"]]


CAROL_JID = "carol@example.org"
CAROL_DEVICE = generate_device_keys(CAROL_JID, now=NOW)
CAROL_CHAT = (
    f"<message xmlns='jabber:client' from='{CAROL_JID}/laptop' to='{ME}/resource' "
    "type='chat'><body>{body}</body></message>"
)


def introduced_by(keys: DeviceKeys) -> tuple[bytes, bytes]:
    return (
        keys.identity_certificate.public_bytes(Encoding.DER),
        keys.encryption_certificate.public_bytes(Encoding.DER),
    )


STRANGER_JID = "mallory@evil.example"
STRANGER_DEVICE = generate_device_keys(STRANGER_JID, now=NOW)
STRANGER_CHAT = (
    f"<message xmlns='jabber:client' from='{STRANGER_JID}/bot' to='{ME}/resource' "
    "type='chat'><body>{body}</body></message>"
)


class IntroductionCase(AuthTestCase):
    def intro_sealed(
        self,
        device: DeviceKeys,
        chat: str,
        body: str,
        introduce: tuple[bytes, bytes] | None,
    ) -> ET.Element:
        return seal_authenticated(
            chat.format(body=body).encode(),
            sender_of(device),
            [recipient_of(self.tester)],
            timestamp=self.clock.next(),
            pad_to=64,
            introduce=introduce,
        )

    def stranger_writes(self, body: str = "buy now") -> None:
        e2e = self.intro_sealed(
            STRANGER_DEVICE, STRANGER_CHAT, body, introduced_by(STRANGER_DEVICE)
        )
        self.recv(self.wire(e2e, frm=f"{STRANGER_JID}/bot"))
        self.wait_(0.05)


class TestStrangerBecomesRosterItem(IntroductionCase):
    """slixmpp's ``roster[jid]`` creates the item, and BaseXMPP does
    ``self.roster[to][from]`` for every presence it handles: any JID that sends us
    any presence is then ``client_roster.has_jid``. A fresh reviewer found that
    ``may_fetch_sender`` took that as "a contact"; it now needs the subscription
    ``from`` (the contact receives our presence)."""

    def test_a_subscription_request_does_not_make_a_stranger_introducible(self) -> None:
        """Only a subscription we granted makes a contact (slixmpp's auto_authorize
        grants every request by default: then the JID is a contact, as in XMPP)."""
        self.xmpp.auto_authorize = False
        self.recv(f"<presence from='{STRANGER_JID}/bot' to='{ME}' type='subscribe'/>")
        self.wait_(0.05)
        self.stranger_writes()
        assert self.bodies() == [] and self.plugin.keyring.records(STRANGER_JID) == []

    def test_a_directed_presence_does_not_make_a_stranger_introducible(self) -> None:
        self.recv(f"<presence from='{STRANGER_JID}/bot' to='{ME}/resource'/>")
        self.wait_(0.05)
        self.stranger_writes()
        assert self.bodies() == [] and self.plugin.keyring.records(STRANGER_JID) == []

    def test_many_strangers_cannot_grow_the_keyring(self) -> None:
        self.xmpp.auto_authorize = False  # requests are not granted: no contact
        for n in range(5):
            jid = f"spam{n}@evil.example"
            device = generate_device_keys(jid, now=NOW)
            chat = (
                f"<message xmlns='jabber:client' from='{jid}/bot' to='{ME}/resource' "
                "type='chat'><body>{body}</body></message>"
            )
            self.recv(f"<presence from='{jid}/bot' to='{ME}' type='subscribe'/>")
            e2e = self.intro_sealed(device, chat, "spam", introduced_by(device))
            self.recv(self.wire(e2e, frm=f"{jid}/bot", outer_id=f"o{n}"))
        self.wait_(0.1)
        assert sum(len(self.plugin.keyring.records(f"spam{n}@evil.example")) for n in range(5)) == 0

    def test_without_any_presence_a_stranger_is_still_refused(self) -> None:
        self.stranger_writes()
        assert self.bodies() == [] and self.failures() == ["undecryptable"]
        assert self.plugin.keyring.records(STRANGER_JID) == []


class TestHostileServerRosterPush(IntroductionCase):
    @pytest.mark.xfail(
        strict=True,
        reason="FINDING (low, TOFU-inherent): our server's roster push puts any JID in "
        "our roster and then its injected introduction is pinned; the same server "
        "could already push 'both' and answer the node read, so no new power",
    )
    def test_a_roster_push_does_not_let_the_server_pin_a_device(self) -> None:
        self.recv(
            "<iq type='set' id='push1'><query xmlns='jabber:iq:roster'>"
            f"<item jid='{STRANGER_JID}' subscription='from'/></query></iq>"
        )
        self.wait_(0.05)
        self.stranger_writes()
        assert self.plugin.keyring.records(STRANGER_JID) == []

    def test_a_roster_push_from_someone_else_is_refused(self) -> None:
        self.recv(
            f"<iq type='set' id='push2' from='{STRANGER_JID}/bot'>"
            "<query xmlns='jabber:iq:roster'>"
            f"<item jid='{CAROL_JID}' subscription='from'/></query></iq>"
        )
        self.wait_(0.05)
        assert not self.xmpp.client_roster.has_jid(CAROL_JID)

    def test_demoting_a_held_readable_contact_only_holds_a_new_device(self) -> None:
        """The server flips Alice (held, node readable) to 'from' and introduces its
        own device for her: held for a decision, her pinned device untouched."""
        self.pin_alice()
        self.recv(
            "<iq type='set' id='push3'><query xmlns='jabber:iq:roster'>"
            f"<item jid='{ALICE_JID}' subscription='from'/></query></iq>"
        )
        self.wait_(0.05)
        fake = generate_device_keys(ALICE_JID, now=NOW)
        e2e = self.intro_sealed(fake, CHAT, "it's me", introduced_by(fake))
        self.recv(self.wire(e2e))
        self.wait_(0.05)
        record = self.plugin.keyring.record(ALICE_JID, fake.fingerprint)
        assert record is not None and record.trust is TrustState.UNTRUSTED
        pinned = self.plugin.keyring.record(ALICE_JID, ALICE_DEVICE.fingerprint)
        assert pinned is not None and pinned.trust is TrustState.TOFU
        assert len(self.events["objenc_key_changed"]) == 1


class TestWhatHeld(IntroductionCase):
    def test_an_introduction_from_a_contact_whose_node_we_read_is_ignored(self) -> None:
        """Alice ('both'): her node is read; her introduction is not taken."""
        e2e = self.intro_sealed(ALICE_DEVICE, CHAT, "hi", introduced_by(ALICE_DEVICE))
        self.recv(self.wire(e2e))
        self.wait_(0.05)
        assert self.plugin.keyring.records(ALICE_JID) == []
        self.answer_fetch(ALICE_JID, [])  # the node does not list it
        assert self.plugin.keyring.records(ALICE_JID) == []
        assert self.bodies() == []

    def test_an_introduction_naming_another_jid_is_refused(self) -> None:
        """Carol introduces a device whose certificates name Alice: not pinned anywhere."""
        self.xmpp.client_roster.add(CAROL_JID, afrom=True)
        alien = generate_device_keys(ALICE_JID, now=NOW)
        e2e = self.intro_sealed(alien, CAROL_CHAT, "as alice", introduced_by(alien))
        self.recv(self.wire(e2e, frm=f"{CAROL_JID}/laptop"))
        self.wait_(0.05)
        assert self.bodies() == [] and self.failures() == ["undecryptable"]
        assert self.plugin.keyring.records(CAROL_JID) == []
        assert self.plugin.keyring.records(ALICE_JID) == []

    def test_an_introduction_for_our_own_account_is_never_taken(self) -> None:
        """A 'new device of ours' introduced from our own JID: our node is read instead."""
        own = generate_device_keys(ME, now=NOW)
        chat = (
            f"<message xmlns='jabber:client' from='{ME}/evil' to='{ME}/resource' "
            "type='chat'><body>{body}</body></message>"
        )
        e2e = self.intro_sealed(own, chat, "i am you", introduced_by(own))
        self.recv(self.wire(e2e, frm=f"{ME}/evil"))
        self.wait_(0.05)
        assert self.plugin.keyring.record(ME, own.fingerprint) is None
        self.answer_fetch(ME, [])
        assert self.plugin.keyring.record(ME, own.fingerprint) is None
        assert self.bodies() == []

    def test_many_introduced_devices_are_bounded_and_held(self) -> None:
        """A malicious one-way contact introduces a fresh device per stanza."""
        self.xmpp.client_roster.add(CAROL_JID, afrom=True)
        for n in range(MAX_HELD_PER_JID + 6):
            device = generate_device_keys(CAROL_JID, now=NOW)
            e2e = self.intro_sealed(device, CAROL_CHAT, f"m{n}", introduced_by(device))
            self.recv(self.wire(e2e, frm=f"{CAROL_JID}/laptop", outer_id=f"o{n}"))
            self.wait_(0.01)
        self.wait_(0.2)
        records = self.plugin.keyring.records(CAROL_JID)
        assert len(records) <= MAX_HELD_PER_JID
        assert sum(r.trust is TrustState.TOFU for r in records) == 1
        # one key-change report per introduced device, no rate limit (noted, low)
        assert len(self.events["objenc_key_changed"]) == len(records) - 1

    def test_a_carbon_does_not_introduce(self) -> None:
        """A received carbon (made by our server) with an introduction pins nothing
        (the introduction is looked for on the outer stanza only)."""
        self.xmpp.client_roster.add(CAROL_JID, afrom=True)
        e2e = self.intro_sealed(CAROL_DEVICE, CAROL_CHAT, "carbon", introduced_by(CAROL_DEVICE))
        self.recv(
            f"<message xmlns='jabber:client' from='{ME}' to='{ME}/resource' type='chat'>"
            "<received xmlns='urn:xmpp:carbons:2'><forwarded xmlns='urn:xmpp:forward:0'>"
            f"<message xmlns='jabber:client' from='{CAROL_JID}/laptop' to='{ME}/other' "
            f"type='chat'>{tostring(e2e)}</message></forwarded></received></message>"
        )
        self.wait_(0.05)
        assert self.plugin.keyring.records(CAROL_JID) == []
        assert self.bodies() == []

    def test_the_node_disagreeing_with_an_introduction_is_seen(self) -> None:
        """The server introduced its own device for one-way Carol (pinned, TOFU);
        once her node is readable and lists her real device, the fake is no longer
        used and the real one is held with a key change reported."""
        self.xmpp.client_roster.add(CAROL_JID, afrom=True)
        fake = generate_device_keys(CAROL_JID, now=NOW)
        e2e = self.intro_sealed(fake, CAROL_CHAT, "fake", introduced_by(fake))
        self.recv(self.wire(e2e, frm=f"{CAROL_JID}/laptop"))
        self.wait_(0.05)
        assert self.bodies() == ["fake"]  # TOFU: the first introduction wins
        self.xmpp.client_roster.add(CAROL_JID, afrom=True, ato=True)
        task = asyncio.ensure_future(self.plugin.directory.refresh(CAROL_JID))
        real = device_item(CAROL_DEVICE.identity_certificate, CAROL_DEVICE.encryption_certificate)
        self.answer_fetch(CAROL_JID, [real])
        self.run_coro(asyncio.wait_for(task, 2))
        record = self.plugin.keyring.record(CAROL_JID, fake.fingerprint)
        assert record is not None and not record.trust.usable
        genuine = self.plugin.keyring.record(CAROL_JID, CAROL_DEVICE.fingerprint)
        assert genuine is not None and genuine.trust is TrustState.UNTRUSTED
        assert len(self.events["objenc_key_changed"]) == 1

    def test_a_stripped_introduction_only_makes_the_stanza_undecryptable(self) -> None:
        """DoS only (a server can always drop): nothing pinned, reported."""
        self.xmpp.client_roster.add(CAROL_JID, afrom=True)
        e2e = self.intro_sealed(CAROL_DEVICE, CAROL_CHAT, "stripped", None)
        self.recv(self.wire(e2e, frm=f"{CAROL_JID}/laptop"))
        self.wait_(0.05)
        assert self.bodies() == [] and self.failures() == ["undecryptable"]
        assert self.plugin.keyring.records(CAROL_JID) == []
