"""Review of the introductions change (PROTOCOL.md 13.7, "Introductions"), as a
hostile server, a contact's password holder and a malicious contact.

Harness: ``auth_harness.py`` (``AuthTestCase``), shared with ``test_auth_profile.py``.
Attacks that currently succeed are ``xfail(strict=True)`` with ``FINDING:``.
"""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET

import pytest
from auth_harness import (
    ALICE_DEVICE,
    ALICE_JID,
    CAROL_CHAT,
    CAROL_DEVICE,
    CAROL_JID,
    CHAT,
    ME,
    NOW,
    AuthTestCase,
    device_item,
    introduced_by,
    recipient_of,
    sender_of,
)
from slixmpp.xmlstream import tostring

from slixmpp_objenc.core.auth_envelope import (
    seal_authenticated,
)
from slixmpp_objenc.core.identities import (
    DeviceKeys,
    generate_device_keys,
)
from slixmpp_objenc.core.trust import MAX_HELD_PER_JID
from slixmpp_objenc.store import TrustState

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
