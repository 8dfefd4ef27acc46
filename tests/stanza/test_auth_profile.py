"""The authenticated profile through the plugin, on slixmpp's mock stream.

The tester's device runs the authenticated profile (``authenticated`` on:
this module is named ``test_auth_*``). Alice is played by the core directly:
she has her own device keys (an Ed25519 identity and the X25519 encryption
certificate it issued), publishes them on her node (the test answers the
plugin's PEP fetches as her server), seals what she sends with
``seal_authenticated`` and opens what the plugin sends her with
``open_authenticated``. Attackers know every certificate (they are public)
but not Alice's private keys.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import os
import xml.etree.ElementTree as ET

from auth_harness import (
    ALICE_DEVICE,
    ALICE_JID,
    CAROL_CHAT,
    CAROL_DEVICE,
    CAROL_JID,
    CHAT,
    DATA,
    E2E,
    KEY,
    MALLORY_DEVICE,
    ME,
    NOW,
    AuthTestCase,
    alice_item,
    cert_id,
    device_item,
    introduced_by,
    recipient_of,
    sender_of,
)
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from testkit import MALLORY, TESTER

from slixmpp_objenc.core import open_envelope
from slixmpp_objenc.core.auth_envelope import (
    AuthSender,
    introduction,
    is_authenticated,
    open_authenticated,
    seal_authenticated,
)
from slixmpp_objenc.core.authenticated import (
    NONCE_SIZE,
    Wrap,
    content_aad,
    open_content,
    open_wrap,
)
from slixmpp_objenc.core.envelope import build_plain
from slixmpp_objenc.core.identities import (
    generate_device_keys,
    issue_encryption_certificate,
)
from slixmpp_objenc.plugin import NODE_CERTS
from slixmpp_objenc.store import TrustState


class TestDelivery(AuthTestCase):
    def test_first_message_from_an_unknown_device_reads_her_node_and_pins_it(self) -> None:
        """Happy path: a device we do not hold wrote; its node is read, pinned, and it opens."""
        self.recv(self.wire(self.sealed(CHAT.format(body="hello from my phone"))))
        assert self.bodies() == []  # waits for Alice's node
        self.answer_fetch(ALICE_JID, [alice_item()])
        assert self.bodies() == ["hello from my phone"]
        delivered = self.events["message"][0]
        assert str(delivered["from"]) == "alice@example.org/phone"
        info = self.plugin.encryption_info(delivered)
        assert info is not None and info.authenticated is True
        assert info.sender_fingerprint == ALICE_DEVICE.fingerprint
        assert info.sender_trust is TrustState.TOFU
        assert info.recipient_fingerprint == self.tester.fingerprint
        assert info.cipher == "AES-256-GCM"
        assert self.failures() == []

    def test_a_device_published_in_a_notification_is_pinned_and_then_opens(self) -> None:
        """Happy path: Alice publishes after a miss; the notification has her node read, TOFU."""
        task = asyncio.ensure_future(self.plugin.discover(ALICE_JID))
        fetch = self.take(lambda s: NODE_CERTS in ET.tostring(s, encoding="unicode"), "fetch")
        self.recv(
            f"<iq type='error' from='{ALICE_JID}' to='{ME}/resource' id='{fetch.get('id')}'>"
            "<error type='cancel'><item-not-found "
            "xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>"
        )
        self.run_coro(asyncio.wait_for(task, 2))
        assert self.plugin.keyring.records(ALICE_JID) == []
        self.notify(ALICE_JID, [alice_item()])
        self.answer_fetch(ALICE_JID, [alice_item()])
        record = self.plugin.keyring.record(ALICE_JID, ALICE_DEVICE.fingerprint)
        assert record is not None and record.trust is TrustState.TOFU
        self.recv(self.wire(self.sealed(CHAT.format(body="wherefore"))))
        assert self.bodies() == ["wherefore"]
        info = self.plugin.encryption_info(self.events["message"][0])
        assert info is not None and info.authenticated is True
        assert info.sender_fingerprint == ALICE_DEVICE.fingerprint
        assert info.sender_trust is TrustState.TOFU


class TestForgery(AuthTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.pin_alice()

    def test_a_stanza_made_from_public_certificates_only_is_refused(self) -> None:
        """Forgery from public certificates: the wrap is not made with Alice's X25519 key."""
        forger = sender_of(ALICE_DEVICE, encryption_key=X25519PrivateKey.generate())
        self.recv(self.wire(self.sealed(CHAT.format(body="send me money"), sender=forger)))
        assert self.bodies() == []
        assert self.failures() == ["undecryptable"]
        # Alice herself still gets through (nothing was spoiled by the forgery)
        self.recv(self.wire(self.sealed(CHAT.format(body="genuine"))))
        assert self.bodies() == ["genuine"]

    def test_a_co_recipient_cannot_reuse_our_wrap_for_other_content(self) -> None:
        """Co-recipient rewrite: Mallory knows R but our wrap's AEAD data is SHA-256(T), not T'."""
        e2e = self.sealed(
            CHAT.format(body="meet at noon"),
            recipients=[recipient_of(self.tester), recipient_of(MALLORY_DEVICE)],
        )
        alice = sender_of(ALICE_DEVICE)
        # Mallory opens her own wrap: she learns the content key R (as she should)
        data = e2e.find(DATA)
        assert data is not None
        sealed = base64.b64decode(data.text or "")
        mine = next(
            k for k in e2e.findall(KEY) if k.get("identity-sha256") == MALLORY_DEVICE.fingerprint
        )
        alice_public = ALICE_DEVICE.encryption_certificate.public_key()
        assert isinstance(alice_public, X25519PublicKey)
        key = open_wrap(
            Wrap(
                cert_id(MALLORY_DEVICE.identity_certificate),
                cert_id(MALLORY_DEVICE.encryption_certificate),
                base64.b64decode(mine.get("enc", "")),
                base64.b64decode(mine.text or ""),
            ),
            sealed,
            MALLORY_DEVICE.encryption_key,
            alice_public,
            alice.identity_id,
            alice.encryption_id,
        )
        # ...and re-encrypts other content under R, as Alice, keeping the tester's <key/>
        forged_inner = CHAT.format(body="meet at midnight").encode()
        plain = build_plain(forged_inner, self.clock.next(), 64)
        nonce = os.urandom(NONCE_SIZE)
        forged_t = nonce + AESGCM(key).encrypt(
            nonce, plain, content_aad(alice.identity_id, alice.encryption_id)
        )
        assert open_content(key, forged_t, alice.identity_id, alice.encryption_id) == plain
        untouched = copy.deepcopy(e2e)
        e2e.remove(mine)
        data.text = base64.b64encode(forged_t).decode()
        self.recv(self.wire(e2e))
        assert self.bodies() == []
        assert self.failures() == ["undecryptable"]
        # control: the same stanza as Alice sealed it opens (only T' was refused)
        untouched.remove(
            next(
                k
                for k in untouched.findall(KEY)
                if k.get("identity-sha256") == MALLORY_DEVICE.fingerprint
            )
        )
        self.recv(self.wire(untouched))
        assert self.bodies() == ["meet at noon"]

    def test_a_downgrade_to_the_draft_profile_is_refused_until_legacy_is_allowed(self) -> None:
        """Downgrade: an RSA <e2e/> proves no sender; refused while Alice's identity is held."""
        self.recv(self.wire(self.rsa_sealed(CHAT.format(body="unauthenticated"))))
        assert self.bodies() == []
        assert self.failures() == ["downgrade"]
        self.run_coro(self.plugin.allow_legacy_devices(ALICE_JID))
        self.recv(self.wire(self.rsa_sealed(CHAT.format(body="from her old client"))))
        assert self.bodies() == ["from her old client"]
        info = self.plugin.encryption_info(self.events["message"][0])
        assert info is not None and info.authenticated is False
        assert info.sender_fingerprint is None and info.sender_trust is None
        assert info.recipient_fingerprint == TESTER.fingerprint

    def test_more_than_one_copy_per_profile_is_refused(self) -> None:
        """Two authenticated copies, or three <e2e/>: at most one per profile, else none opens."""
        two_auth = self.wire(
            self.sealed(CHAT.format(body="one")), self.sealed(CHAT.format(body="two"))
        )
        self.recv(two_auth)
        three = self.wire(
            self.rsa_sealed(CHAT.format(body="a")),
            self.sealed(CHAT.format(body="b")),
            self.rsa_sealed(CHAT.format(body="c")),
        )
        self.recv(three)
        assert self.bodies() == []
        assert self.failures() == ["undecryptable", "undecryptable"]
        # one copy per profile is the normal shape: the authenticated one is opened
        self.recv(
            self.wire(
                self.rsa_sealed(CHAT.format(body="rsa copy")),
                self.sealed(CHAT.format(body="auth copy")),
            )
        )
        assert self.bodies() == ["auth copy"]


class TestForgedIqResult(AuthTestCase):
    def test_a_forged_result_does_not_answer_our_request(self) -> None:
        """Forged iq result: without Alice's X25519 key it does not open; the request waits."""
        self.pin_alice()
        iq = self.xmpp.make_iq_get(queryxmlns="urn:example:q", ito="alice@example.org/phone")
        inner_id = iq["id"]
        pending = iq.send(timeout=10)
        request = self.take(lambda s: s.tag.endswith("iq") and s.get("type") == "get", "request")
        assert request.find(E2E) is not None  # encrypted to Alice
        outer_id = request.get("id", "")
        assert outer_id != inner_id
        result = (
            "<iq xmlns='jabber:client' from='alice@example.org/phone' "
            f"to='tester@localhost/resource' type='result' id='{inner_id}'>"
            "<query xmlns='urn:example:q'><answer>{answer}</answer></query></iq>"
        )
        forger = sender_of(ALICE_DEVICE, encryption_key=X25519PrivateKey.generate())
        forged = self.sealed(result.replace("{answer}", "forged"), sender=forger)
        self.recv(self.wire(forged, kind="iq", kind_type="result", outer_id=outer_id))
        self.wait_(0.05)
        assert not pending.done()
        assert self.failures() == ["undecryptable"]
        genuine = self.sealed(result.replace("{answer}", "genuine"))
        self.recv(self.wire(genuine, kind="iq", kind_type="result", outer_id=outer_id))
        answer = self.run_coro(asyncio.wait_for(pending, 2))
        assert answer["type"] == "result"
        assert "genuine" in str(answer)
        info = self.plugin.encryption_info(answer)
        assert info is not None and info.sender_fingerprint == ALICE_DEVICE.fingerprint


class TestSubstitutedEncryptionCertificate(AuthTestCase):
    def test_an_encryption_certificate_not_issued_by_the_identity_is_not_taken(self) -> None:
        """Server substitution: an encryption certificate her identity did not sign is not taken."""
        self.pin_alice()
        # the server issues its own X25519 certificate under Alice's name, with another Ed25519 key
        server_key = X25519PrivateKey.generate()
        substituted = issue_encryption_certificate(
            Ed25519PrivateKey.generate(),  # not Alice's identity key
            ALICE_DEVICE.identity_certificate,  # so it names her as its issuer
            server_key.public_key(),
            now=NOW,
        )
        self.notify(ALICE_JID, [device_item(ALICE_DEVICE.identity_certificate, substituted)])
        self.answer_fetch(ALICE_JID, [device_item(ALICE_DEVICE.identity_certificate, substituted)])
        record = self.plugin.keyring.record(ALICE_JID, ALICE_DEVICE.fingerprint)
        assert record is not None
        held = x509.load_pem_x509_certificate(record.encryption_pem or b"")
        assert held == ALICE_DEVICE.encryption_certificate  # the one her identity issued
        # a stanza wrapped by the substituted key, claiming Alice, is refused
        impostor = AuthSender(
            server_key, cert_id(ALICE_DEVICE.identity_certificate), cert_id(substituted)
        )
        self.recv(self.wire(self.sealed(CHAT.format(body="from the server"), sender=impostor)))
        if not self.no_fetch_pending():  # an unknown device: her node is read once more
            self.answer_fetch(
                ALICE_JID, [device_item(ALICE_DEVICE.identity_certificate, substituted)]
            )
        assert self.bodies() == []
        assert self.failures() == ["undecryptable"]
        # Alice's genuine key still opens
        self.recv(self.wire(self.sealed(CHAT.format(body="still me"))))
        assert self.bodies() == ["still me"]
        # and nothing the tester sends her is ever wrapped for the substituted key
        self.outbox.clear()
        self.xmpp.send_message(mto=ALICE_JID, mbody="for alice only", mtype="chat")
        if not self.no_fetch_pending():
            self.answer_fetch(
                ALICE_JID, [device_item(ALICE_DEVICE.identity_certificate, substituted)]
            )
        self.drain()
        for stanza in self.outbox:
            assert b"for alice only" not in ET.tostring(stanza)
            named = {k.get("cert-sha256") for k in stanza.iter(KEY)}
            assert cert_id(substituted).hex() not in named


class TestSending(AuthTestCase):
    def test_a_message_to_alice_carries_one_authenticated_copy(self) -> None:
        """Sending: one <e2e/>, <data/> naming our device, one <key/> for Alice's and our device."""
        self.pin_alice()
        msg = self.xmpp.make_message(mto=ALICE_JID, mbody="secret plans", mtype="chat")
        msg["id"] = "inner-id"
        msg.send()
        outer = self.take(lambda s: s.tag.endswith("message"), "message")
        copies = outer.findall(E2E)
        assert len(copies) == 1
        [e2e] = copies
        data = e2e.find(DATA)
        assert data is not None and data.get("cipher-algo") == "AES-256-GCM"
        assert data.get("identity-sha256") == self.tester.fingerprint
        assert data.get("cert-sha256") == cert_id(self.tester.encryption_certificate).hex()
        named = {(k.get("identity-sha256"), k.get("cert-sha256")) for k in e2e.findall(KEY)}
        assert named == {
            (ALICE_DEVICE.fingerprint, cert_id(ALICE_DEVICE.encryption_certificate).hex()),
            (self.tester.fingerprint, cert_id(self.tester.encryption_certificate).hex()),
        }
        assert b"secret plans" not in ET.tostring(e2e)
        # the application's object is as it made it
        assert msg["id"] == "inner-id" and msg["body"] == "secret plans"
        assert msg.xml.find(E2E) is None
        # Alice opens her copy, proving the tester's device wrote it
        tester = recipient_of(self.tester)

        def resolve(jid: str, identity: bytes, encryption: bytes) -> X25519PublicKey | None:
            known = (jid, identity, encryption) == (ME, tester.identity_id, tester.encryption_id)
            return tester.public_key if known else None

        opened = open_authenticated(e2e, sender_of(ALICE_DEVICE), resolve, ME)
        assert opened.stanza.findtext("{jabber:client}body") == "secret plans"
        assert opened.stanza.get("id") == "inner-id"
        assert opened.stanza.get("from") == f"{ME}/resource"
        assert opened.sender_identity_id.hex() == self.tester.fingerprint

    def test_a_message_to_a_draft_only_contact_carries_an_rsa_copy_first(self) -> None:
        """Sending: a draft-only recipient gets the RSA copy first; our own device the auth copy."""
        self.plugin.add_peer_certificate(MALLORY.certificate_pem())  # RSA only, no identity
        self.xmpp.send_message(mto="mallory@example.org", mbody="old client", mtype="chat")
        outer = self.take(lambda s: s.tag.endswith("message"), "message")
        draft, authenticated = outer.findall(E2E)
        assert not is_authenticated(draft) and is_authenticated(authenticated)
        opened = open_envelope(draft, MALLORY.private_key, key_id=MALLORY.fingerprint)
        assert b"old client" in opened.stanza_bytes
        named = {k.get("identity-sha256") for k in authenticated.findall(KEY)}
        assert named == {self.tester.fingerprint}  # our own device: the archive stays readable


class TestIntroduction(AuthTestCase):
    """A one-way subscription: Carol receives our presence (so she reads our node),
    we do not receive hers (her node is closed to us). Her stanzas introduce her
    device (PROTOCOL.md 13.7); only a JID in our roster is taken that way."""

    def carol_sealed(self, body: str, introduce: tuple[bytes, bytes] | None) -> ET.Element:
        return seal_authenticated(
            CAROL_CHAT.format(body=body).encode(),
            sender_of(CAROL_DEVICE),
            [recipient_of(self.tester)],
            timestamp=self.clock.next(),
            pad_to=64,
            introduce=introduce,
        )

    def test_a_device_introduced_by_a_contact_whose_node_is_closed_to_us_opens(self) -> None:
        """First contact in one direction: pinned from the introduction, authenticated."""
        self.xmpp.client_roster.add(CAROL_JID, afrom=True)  # 'from': she sees us
        e2e = self.carol_sealed("hi, one way", introduced_by(CAROL_DEVICE))
        self.recv(self.wire(e2e, frm=f"{CAROL_JID}/laptop"))
        assert self.no_fetch_pending()  # her node is not read: it is closed to us
        assert self.bodies() == ["hi, one way"]
        info = self.plugin.encryption_info(self.events["message"][0])
        assert info is not None and info.authenticated
        assert info.sender_fingerprint == CAROL_DEVICE.fingerprint
        assert info.sender_trust is TrustState.TOFU

    def test_a_stranger_introducing_a_device_is_refused_and_not_pinned(self) -> None:
        """Not in our roster: no introduction is taken (nothing pinned, nothing grows)."""
        e2e = self.carol_sealed("spam", introduced_by(CAROL_DEVICE))
        self.recv(self.wire(e2e, frm=f"{CAROL_JID}/laptop"))
        assert self.bodies() == [] and self.failures() == ["undecryptable"]
        assert self.plugin.keyring.records(CAROL_JID) == []

    def test_an_introduction_of_another_device_than_the_sender_is_refused(self) -> None:
        """The introduced certificates must be the ones <data/> names."""
        self.xmpp.client_roster.add(CAROL_JID, afrom=True)
        other = generate_device_keys(CAROL_JID, now=NOW)
        e2e = self.carol_sealed("who wrote this", introduced_by(other))
        self.recv(self.wire(e2e, frm=f"{CAROL_JID}/laptop"))
        assert self.bodies() == [] and self.failures() == ["undecryptable"]
        assert self.plugin.keyring.records(CAROL_JID) == []

    def test_an_introduction_never_replaces_what_is_held(self) -> None:
        """A new device introduced for a contact we hold: held for a decision."""
        self.xmpp.client_roster.add(CAROL_JID, afrom=True)
        self.recv(
            self.wire(
                self.carol_sealed("one", introduced_by(CAROL_DEVICE)), frm=f"{CAROL_JID}/laptop"
            )
        )
        self.plugin.inbound._fetched.clear()  # a minute later (one introduction a minute)
        intruder = generate_device_keys(CAROL_JID, now=NOW)
        e2e = seal_authenticated(
            CAROL_CHAT.format(body="two").encode(),
            sender_of(intruder),
            [recipient_of(self.tester)],
            timestamp=self.clock.next(),
            introduce=introduced_by(intruder),
        )
        self.recv(self.wire(e2e, frm=f"{CAROL_JID}/laptop", outer_id="o2"))
        record = self.plugin.keyring.record(CAROL_JID, intruder.fingerprint)
        assert record is not None and record.trust is TrustState.UNTRUSTED
        assert len(self.events["objenc_key_changed"]) == 1

    def test_we_introduce_ourselves_to_a_contact_that_does_not_see_our_presence(self) -> None:
        """Sending: a <device/> with our certificates only where the contact cannot
        read our node; none to a contact subscribed to us."""
        self.pin_alice()
        for subscription, introduced in (("to", True), ("both", False)):
            self.xmpp.client_roster.add(ALICE_JID, afrom=subscription == "both", ato=True)
            self.xmpp.send_message(mto=ALICE_JID, mbody="x", mtype="chat")
            outer = self.take(lambda s: s.tag.endswith("message"), "message")
            [e2e] = outer.findall(E2E)
            assert (introduction(e2e) is not None) is introduced, subscription
            if introduced:
                assert introduction(e2e) == introduced_by(self.tester)
