"""Issue 9, kinds 2, 3, 6 and 7, through the plugin's real filters: what a server
(or anyone who can put stanzas on our stream) injects in the clear, or in an
envelope anyone can build, is refused.

Every test here failed on the code before the fix (noted per test).
"""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from typing import Any

import pytest
from slixmpp.exceptions import IqError
from test_plugin_stanzas import CHAT_TO_TESTER, ObjEncTestCase
from testkit import ALICE, MALLORY

from slixmpp_objenc.core import Recipient, seal
from slixmpp_objenc.core.constants import NS_OBJENC

E2E = f"{{{NS_OBJENC}}}e2e"
ALICE_FULL = "alice@example.org/phone"
OWN_LAPTOP = "tester@localhost/laptop"
ALICE_FINGERPRINT = ALICE.fingerprint


class HostileTestCase(ObjEncTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.refused: list[Any] = []
        self.xmpp.add_event_handler("objenc_plaintext_refused", self.refused.append)
        self.iqs: list[Any] = []
        self.xmpp.add_event_handler("objenc_decrypted", lambda _s: None)

    def delivered_messages(self) -> list[Any]:
        return self.events.get("message", [])

    def assert_refused(self, stanza: str) -> None:
        before = len(self.refused)
        messages = len(self.delivered_messages())
        self.recv(stanza)
        assert len(self.refused) == before + 1, stanza
        assert len(self.delivered_messages()) == messages, stanza


class TestPlaintextFromEveryAddressOfAContact(HostileTestCase):
    """Kind 2: alice is known to encrypt (we hold her certificate). Before the
    fix only plaintext from her *full* JID, of types chat/normal/headline, was
    refused; each of these was delivered."""

    def test_bare_jid_chat(self) -> None:
        self.assert_refused(
            "<message xmlns='jabber:client' from='alice@example.org' "
            "to='tester@localhost/resource' type='chat'><body>X</body></message>"
        )

    def test_normal_and_headline_from_the_bare_jid(self) -> None:
        for kind_type in ("normal", "headline"):
            self.assert_refused(
                "<message xmlns='jabber:client' from='alice@example.org' "
                f"to='tester@localhost/resource' type='{kind_type}'><body>X</body></message>"
            )

    def test_error_message_with_a_body(self) -> None:
        self.assert_refused(
            f"<message xmlns='jabber:client' from='{ALICE_FULL}' "
            "to='tester@localhost/resource' type='error' id='e1'><body>Pay 100 to X</body>"
            "<error type='cancel'><item-not-found "
            "xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>"
        )

    def test_error_with_text(self) -> None:
        self.assert_refused(
            f"<message xmlns='jabber:client' from='{ALICE_FULL}' "
            "to='tester@localhost/resource' type='error' id='e2'>"
            "<error type='cancel'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>"
            "<text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'>call +1 555</text>"
            "</error></message>"
        )

    def test_groupchat_from_a_jid_that_is_not_a_room_we_joined(self) -> None:
        self.assert_refused(
            f"<message xmlns='jabber:client' from='{ALICE_FULL}' "
            "to='tester@localhost/resource' type='groupchat'><body>X</body></message>"
        )

    def test_iq_set_from_the_bare_jid(self) -> None:
        before = len(self.refused)
        self.recv(
            "<iq xmlns='jabber:client' from='alice@example.org' to='tester@localhost/resource' "
            "type='set' id='s1'><query xmlns='jabber:iq:roster'><item jid='eve@example.org'/>"
            "</query></iq>"
        )
        assert len(self.refused) == before + 1

    def test_offline_message_from_the_bare_jid(self) -> None:
        self.assert_refused(
            "<message xmlns='jabber:client' from='alice@example.org' "
            "to='tester@localhost/resource' type='chat'><body>X</body>"
            "<delay xmlns='urn:xmpp:delay' from='localhost' stamp='2026-01-01T00:00:00Z'/>"
            "</message>"
        )

    def test_error_type_carbon(self) -> None:
        self.assert_refused(
            "<message xmlns='jabber:client' from='tester@localhost' "
            "to='tester@localhost/resource' type='chat'>"
            "<received xmlns='urn:xmpp:carbons:2'><forwarded xmlns='urn:xmpp:forward:0'>"
            f"<message xmlns='jabber:client' from='{ALICE_FULL}' to='tester@localhost/laptop' "
            "type='error'><body>X</body><error type='cancel'><gone "
            "xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>"
            "</forwarded></received></message>"
        )

    def test_receipts_and_markers_are_refused_too(self) -> None:
        """Decided (PROTOCOL.md 4): a client that encrypts sends them encrypted."""
        self.assert_refused(
            f"<message xmlns='jabber:client' from='{ALICE_FULL}' "
            "to='tester@localhost/resource' type='chat'>"
            "<received xmlns='urn:xmpp:receipts' id='m1'/></message>"
        )


class TestWhatStillPasses(HostileTestCase):
    def test_pep_event_from_the_bare_jid(self) -> None:
        self.recv(
            "<message xmlns='jabber:client' from='alice@example.org' "
            "to='tester@localhost/resource' type='headline'>"
            "<event xmlns='http://jabber.org/protocol/pubsub#event'>"
            "<items node='urn:xmpp:avatar:metadata'/></event></message>"
        )
        assert self.refused == []

    def test_condition_only_error(self) -> None:
        self.recv(
            f"<message xmlns='jabber:client' from='{ALICE_FULL}' "
            "to='tester@localhost/resource' type='error' id='e3'>"
            "<error type='cancel'><service-unavailable "
            "xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>"
        )
        assert self.refused == []

    def test_result_answering_our_plaintext_request_to_the_bare_jid(self) -> None:
        # disco#info to alice's bare JID goes in the clear (her server answers it)
        iq = self.xmpp.make_iq_get(queryxmlns="http://jabber.org/protocol/disco#info")
        iq["to"] = "alice@example.org"
        future = iq.send(timeout=5)
        self.wait_for_send_queue()
        raw = self.xmpp.socket.next_sent(timeout=1)
        assert raw is not None and b"disco#info" in raw and b"<e2e" not in raw
        self.recv(
            f"<iq xmlns='jabber:client' from='alice@example.org' to='tester@localhost/resource' "
            f"type='result' id='{iq['id']}'>"
            "<query xmlns='http://jabber.org/protocol/disco#info'>"
            "<identity category='account' type='registered'/></query></iq>"
        )
        result = self.wait_for(future)
        assert result["type"] == "result"
        assert self.refused == []

    def test_the_contacts_domain(self) -> None:
        self.recv(
            "<message xmlns='jabber:client' from='example.org' "
            "to='tester@localhost/resource' type='headline'><body>maintenance</body></message>"
        )
        assert self.refused == [] and len(self.delivered_messages()) == 1

    def wait_for(self, future: Any) -> Any:
        return self.xmpp.loop.run_until_complete(asyncio.wait_for(future, 2))


class TestEncryptedRequestAnsweredInTheClear(HostileTestCase):
    """Kind 3: before the fix, a plaintext <iq type='result'> with the inner id of
    a pending encrypted Iq.send() resolved the future with the attacker's payload."""

    def pending_request(self) -> tuple[Any, str]:
        iq = self.xmpp.make_iq_get(queryxmlns="urn:example:balance", ito=ALICE_FULL)
        inner_id = iq["id"]
        future = iq.send(timeout=3)
        self.sent_to_alice()
        return future, inner_id

    @pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
    def test_plaintext_result_from_anyone_is_refused(self) -> None:
        for sender in ("alice@example.org", "example.org", "tester@localhost", "localhost"):
            future, inner_id = self.pending_request()
            self.recv(
                f"<iq xmlns='jabber:client' from='{sender}' to='tester@localhost/resource' "
                f"type='result' id='{inner_id}'><query xmlns='urn:example:balance'>"
                "<amount>0</amount></query></iq>"
            )
            assert not future.done(), sender
            assert self.refused and self.refused[-1]["id"] == inner_id
            future.cancel()

    def test_plaintext_error_fails_the_request_at_once_stripped(self) -> None:
        future, inner_id = self.pending_request()
        self.recv(
            f"<iq xmlns='jabber:client' from='alice@example.org' to='tester@localhost/resource' "
            f"type='error' id='{inner_id}'><query xmlns='urn:example:balance'>"
            "<amount>1000000</amount></query><error type='cancel'><forbidden "
            "xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/><text "
            "xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'>call +1 555</text></error></iq>"
        )
        with pytest.raises(IqError) as raised:
            self.xmpp.loop.run_until_complete(asyncio.wait_for(future, 1))
        error = raised.value.iq
        assert error["error"]["condition"] == "forbidden"
        assert "555" not in str(error) and "1000000" not in str(error)
        assert self.plugin.encryption_info(error) is None

    def test_encrypted_result_from_another_resource_is_refused(self) -> None:
        future, inner_id = self.pending_request()
        inner = (
            "<iq xmlns='jabber:client' from='alice@example.org/laptop' "
            f"to='tester@localhost/resource' type='result' id='{inner_id}'>"
            "<query xmlns='urn:example:balance'><amount>0</amount></query></iq>"
        )
        self.recv(
            self.alice_seals(
                inner,
                kind="iq",
                kind_type="result",
                outer_attrs="from='alice@example.org/laptop' to='tester@localhost/resource'",
            )
        )
        assert not future.done()
        assert self.events["objenc_decryption_failed"][-1].reason == "forged"
        future.cancel()

    def test_encrypted_result_from_the_resource_asked_resolves(self) -> None:
        future, inner_id = self.pending_request()
        inner = (
            f"<iq xmlns='jabber:client' from='{ALICE_FULL}' "
            f"to='tester@localhost/resource' type='result' id='{inner_id}'>"
            "<query xmlns='urn:example:balance'><amount>42</amount></query></iq>"
        )
        self.recv(self.alice_seals(inner, kind="iq", kind_type="result"))
        result = self.xmpp.loop.run_until_complete(asyncio.wait_for(future, 1))
        assert "42" in str(result)
        assert self.plugin.encryption_info(result) is not None


class TestOneForgedEnvelopeCutsNobodyOff(HostileTestCase):
    """Kind 6: before the fix, any envelope that opened marked its sender
    "encryption required", persistently; anyone holding our certificate (here
    mallory, claiming to be bob, who has no certificate) could cut bob off."""

    def test_forged_envelope_marks_nothing(self) -> None:
        inner = (
            "<message xmlns='jabber:client' from='bob@example.org/pc' "
            "to='tester@localhost/resource' type='chat' id='f1'><body>hi</body></message>"
        )
        e2e = seal(
            inner.encode(),
            [Recipient(self.plugin.identity.certificate.public_key())],
            timestamp=self.alice_clock.next(),
        )
        from slixmpp.xmlstream import tostring

        self.recv(
            "<message xmlns='jabber:client' from='bob@example.org/pc' "
            f"to='tester@localhost/resource' type='chat' id='o1'>{tostring(e2e)}</message>"
        )
        assert len(self.events["objenc_decrypted"]) == 1
        assert not self.plugin.keyring.sticky("bob@example.org")
        # bob's plaintext still arrives, and we can still write to him
        self.recv(CHAT_TO_TESTER.format(body="clear").replace("alice@", "bob@"))
        assert self.refused == []
        self.xmpp.send_message(mto="bob@example.org", mbody="hello", mtype="chat")
        self.wait_for_send_queue()
        raw = self.xmpp.socket.next_sent(timeout=1)
        assert raw is not None and b"hello" in raw
        assert MALLORY is not None


class OwnClientsCase(HostileTestCase):
    """A second client of our own account (its certificate held) that the tests
    make announce, or not, the protocol in its disco#info."""

    def setUp(self) -> None:
        super().setUp()
        # our laptop's certificate is one of our own devices (alice's key stands in)
        from testkit import make_multi_jid_identity

        self.laptop = make_multi_jid_identity(["tester@localhost"])
        self.plugin.add_peer_certificate(self.laptop.certificate_pem())

    def announce(self, resource: str, features: list[str]) -> None:
        self.recv(
            f"<presence xmlns='jabber:client' from='tester@localhost/{resource}' "
            "to='tester@localhost/resource'/>"
        )
        self.wait_for_send_queue()
        raw = self.xmpp.socket.next_sent(timeout=1)
        assert raw is not None and b"disco#info" in raw, raw
        assert b"<e2e" not in raw  # asked in the clear: it may not encrypt
        import xml.etree.ElementTree as ET

        query_id = ET.fromstring(raw).get("id")
        body = "".join(f"<feature var='{f}'/>" for f in features)
        self.recv(
            f"<iq xmlns='jabber:client' from='tester@localhost/{resource}' "
            f"to='tester@localhost/resource' type='result' id='{query_id}'>"
            f"<query xmlns='http://jabber.org/protocol/disco#info'>{body}</query></iq>"
        )
        self.xmpp.loop.run_until_complete(asyncio.sleep(0.05))


class TestOurOwnOtherClients(OwnClientsCase):
    """Kind 7: before the fix, stanzas to another client of ours went in the clear
    even when its certificate was held, and plaintext "from my laptop" was
    accepted."""

    def test_client_that_announces_the_protocol_is_encrypted_to(self) -> None:
        self.announce("laptop", [NS_OBJENC])
        assert self.plugin.resources.encrypting(OWN_LAPTOP)
        self.xmpp.send_message(mto=OWN_LAPTOP, mbody="note to self", mtype="chat")
        self.wait_for_send_queue()
        raw = self.xmpp.socket.next_sent(timeout=1)
        assert raw is not None and b"<e2e" in raw and b"note to self" not in raw
        # and plaintext "from my laptop" is refused
        self.assert_refused(
            f"<message xmlns='jabber:client' from='{OWN_LAPTOP}' "
            "to='tester@localhost/resource' type='chat'><body>wire it</body></message>"
        )

    def test_client_that_does_not_announce_it_keeps_working_in_the_clear(self) -> None:
        self.announce("other", ["http://jabber.org/protocol/disco#info"])
        self.xmpp.send_message(mto="tester@localhost/other", mbody="plain", mtype="chat")
        self.wait_for_send_queue()
        raw = self.xmpp.socket.next_sent(timeout=1)
        assert raw is not None and b"plain" in raw
        self.recv(
            "<message xmlns='jabber:client' from='tester@localhost/other' "
            "to='tester@localhost/resource' type='chat'><body>hi</body></message>"
        )
        assert self.refused == []

    def test_one_disco_query_per_client_until_it_goes_offline(self) -> None:
        self.announce("other", ["http://jabber.org/protocol/disco#info"])
        self.recv(
            "<presence xmlns='jabber:client' from='tester@localhost/other' "
            "to='tester@localhost/resource'><show>away</show></presence>"
        )
        self.wait_for_send_queue()
        assert self.xmpp.socket.next_sent(timeout=0.3) is None  # asked once already
        self.recv(
            "<presence xmlns='jabber:client' from='tester@localhost/other' "
            "to='tester@localhost/resource' type='unavailable'/>"
        )
        self.announce("other", [NS_OBJENC])  # back online, announcing it now
        assert self.plugin.resources.encrypting("tester@localhost/other")

    def test_a_client_that_loads_the_protocol_later_is_asked_again_when_its_caps_change(
        self,
    ) -> None:
        self.announce("late", ["http://jabber.org/protocol/disco#info"])
        caps = "<c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='n' ver='{}'/>"
        presence = (
            "<presence xmlns='jabber:client' from='tester@localhost/late' "
            "to='tester@localhost/resource'>{}</presence>"
        )
        self.recv(presence.format(caps.format("v1")))  # new features: asked again
        [ours] = self.our_disco_queries()
        self.recv(
            "<iq xmlns='jabber:client' from='tester@localhost/late' "
            f"to='tester@localhost/resource' type='result' id='{ours.get('id')}'>"
            f"<query xmlns='http://jabber.org/protocol/disco#info'><feature var='{NS_OBJENC}'/>"
            "</query></iq>"
        )
        self.xmpp.loop.run_until_complete(asyncio.sleep(0.05))
        assert self.plugin.resources.encrypting("tester@localhost/late")
        self.recv(presence.format(caps.format("v1")))  # the same caps: not asked again
        assert self.our_disco_queries() == []

    def our_disco_queries(self) -> list[ET.Element]:
        """Our disco#info queries sent since (slixmpp's own XEP-0115 ones name a node)."""
        found = []
        self.wait_for_send_queue()
        while (raw := self.xmpp.socket.next_sent(timeout=0.3)) is not None:
            element = ET.fromstring(raw)
            query = element.find("{http://jabber.org/protocol/disco#info}query")
            if query is not None and query.get("node") is None:
                found.append(element)
        return found

    def test_our_bare_jid_is_never_encrypted_to(self) -> None:
        self.announce("laptop", [NS_OBJENC])
        iq = self.xmpp.make_iq_get(queryxmlns="jabber:iq:roster")
        iq.send()
        self.wait_for_send_queue()
        raw = self.xmpp.socket.next_sent(timeout=1)
        assert raw is not None and b"jabber:iq:roster" in raw


class TestNoSenderAuthenticationInTheDraftProfile(HostileTestCase):
    """The draft's envelope has no sender authentication: anyone holding our
    (public) certificate, the server included, can seal a stanza "from" a
    contact. Since the authenticated profile (issue 12), such a stanza is
    never presented as the contact's: ``encryption_info()`` says it is
    unauthenticated and reports no sender or trust state, even for a verified
    contact; and once the contact has an identity, the draft's profile is
    refused from it altogether (``downgrade``, tests/stanza/test_auth_profile.py)."""

    def test_an_envelope_forged_from_a_verified_contact_is_not_reported_as_theirs(self) -> None:
        from slixmpp.xmlstream import tostring

        from slixmpp_objenc.core.trust import TrustState

        self.xmpp.loop.run_until_complete(
            self.plugin.set_trust("alice@example.org", ALICE_FINGERPRINT, TrustState.VERIFIED)
        )
        inner = CHAT_TO_TESTER.format(body="wire 1000 to mallory")
        # sealed by mallory (the server), who only needs our certificate
        e2e = seal(
            inner.encode(),
            [Recipient(self.plugin.identity.certificate.public_key())],
            timestamp=self.alice_clock.next(),
        )
        self.recv(
            f"<message xmlns='jabber:client' from='{ALICE_FULL}' "
            f"to='tester@localhost/resource' type='chat' id='x1'>{tostring(e2e)}</message>"
        )
        [delivered] = self.delivered_messages()
        info = self.plugin.encryption_info(delivered)
        assert info is not None and not info.authenticated
        assert info.sender_fingerprint is None and info.sender_trust is None
