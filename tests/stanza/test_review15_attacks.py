"""Review 15: a hostile server, a password thief and a malicious contact against
the older rules, through the plugin's real filters (no server)."""

from __future__ import annotations

import asyncio
import contextlib
import xml.etree.ElementTree as ET
from typing import Any

import pytest
from slixmpp.exceptions import IqError
from test_hostile_plaintext import ALICE_FULL, HostileTestCase

from slixmpp_objenc.core.constants import NS_OBJENC

E2E = f"{{{NS_OBJENC}}}e2e"
TO = "to='tester@localhost/resource'"


class TestPlaintextInjection(HostileTestCase):
    """Rule 2: alice is known to encrypt (her certificate is held)."""

    def test_plaintext_chat_with_a_mam_result_child_is_refused(self) -> None:
        self.assert_refused(
            f"<message xmlns='jabber:client' from='{ALICE_FULL}' {TO} type='chat'>"
            "<body>Pay 100 to X</body><result xmlns='urn:xmpp:mam:2' id='r1'/></message>"
        )

    def test_plaintext_from_the_bare_jid_with_a_trailing_dot_is_refused(self) -> None:
        self.assert_refused(
            f"<message xmlns='jabber:client' from='alice@example.org.' {TO} type='chat'>"
            "<body>X</body></message>"
        )

    def test_plaintext_from_a_full_jid_with_a_trailing_dot_is_refused(self) -> None:
        self.assert_refused(
            f"<message xmlns='jabber:client' from='alice@example.org./phone' {TO} type='chat'>"
            "<body>X</body></message>"
        )

    def test_plaintext_from_an_uppercase_or_fullwidth_spelling_is_refused(self) -> None:
        for frm in ("ALICE@Example.ORG/phone", "Alice@example.org", "\uff41lice@example.org/x"):
            self.assert_refused(
                f"<message xmlns='jabber:client' from='{frm}' {TO} type='chat'>"
                "<body>X</body></message>"
            )

    def test_control_our_encrypting_laptops_plaintext_is_refused(
        self,
    ) -> None:
        self.plugin.resources.encrypts("tester@localhost/laptop")
        self.assert_refused(
            "<message xmlns='jabber:client' from='tester@localhost/laptop' "
            f"{TO} type='chat'><body>X</body></message>"
        )

    def test_our_encrypting_laptops_plaintext_with_a_mam_result_child_is_refused(self) -> None:
        self.plugin.resources.encrypts("tester@localhost/laptop")
        self.assert_refused(
            "<message xmlns='jabber:client' from='tester@localhost/laptop' "
            f"{TO} type='chat'><body>X</body><result xmlns='urn:xmpp:mam:2'/></message>"
        )

    def test_plaintext_groupchat_and_error_carbons_are_refused(self) -> None:
        for kind_type, extra in (
            ("groupchat", ""),
            ("headline", ""),
            ("normal", ""),
            (
                "error",
                "<error type='cancel'><gone xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>"
                "<text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'>t</text></error>",
            ),
        ):
            for wrapper, frm, to in (
                ("received", ALICE_FULL, "tester@localhost/laptop"),
                ("sent", "tester@localhost/laptop", "alice@example.org"),
            ):
                self.assert_refused(
                    "<message xmlns='jabber:client' from='tester@localhost' "
                    f"{TO} type='chat'><{wrapper} xmlns='urn:xmpp:carbons:2'>"
                    "<forwarded xmlns='urn:xmpp:forward:0'>"
                    f"<message xmlns='jabber:client' from='{frm}' to='{to}' "
                    f"type='{kind_type}'><body>X</body>{extra}</message>"
                    f"</forwarded></{wrapper}></message>"
                )

    def test_plaintext_iq_get_and_result_from_the_full_jid_are_refused(self) -> None:
        before = len(self.refused)
        for kind_type in ("get", "set", "result"):
            self.recv(
                f"<iq xmlns='jabber:client' from='{ALICE_FULL}' {TO} type='{kind_type}' "
                f"id='q-{kind_type}'><query xmlns='urn:example:x'/></iq>"
            )
        assert len(self.refused) == before + 3

    def test_offline_plaintext_with_a_delay_from_our_server_is_refused(self) -> None:
        self.assert_refused(
            f"<message xmlns='jabber:client' from='{ALICE_FULL}' {TO}>"
            "<body>X</body><delay xmlns='urn:xmpp:delay' from='localhost' "
            "stamp='2020-01-01T00:00:00Z'/></message>"
        )

    def test_headline_with_a_pep_event_and_a_body_from_the_bare_jid_is_refused(self) -> None:
        self.assert_refused(
            "<message xmlns='jabber:client' from='alice@example.org' "
            f"{TO} type='headline'><body>X</body>"
            "<event xmlns='http://jabber.org/protocol/pubsub#event'>"
            "<items node='urn:xmpp:avatar:metadata'/></event></message>"
        )

    def test_error_with_content_inside_its_condition_is_refused(self) -> None:
        self.assert_refused(
            f"<message xmlns='jabber:client' from='{ALICE_FULL}' {TO} type='error'>"
            "<error type='cancel'><gone xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'>"
            "xmpp:evil@example.org?message;body=Pay%20100</gone></error></message>"
        )

    def test_plaintext_error_to_an_encrypted_request_keeps_nothing_inside_its_condition(
        self,
    ) -> None:
        iq = self.xmpp.make_iq_get(queryxmlns="urn:example:balance", ito=ALICE_FULL)
        future = iq.send(timeout=3)
        self.sent_to_alice()
        self.recv(
            f"<iq xmlns='jabber:client' from='alice@example.org' {TO} type='error' "
            f"id='{iq['id']}'><error type='cancel'>"
            "<undefined-condition xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'>"
            "<query xmlns='urn:example:balance'><amount>0</amount></query>"
            "</undefined-condition></error></iq>"
        )
        with pytest.raises(IqError) as caught:
            self.xmpp.loop.run_until_complete(asyncio.wait_for(future, 2))
        assert b"amount" not in ET.tostring(caught.value.iq.xml)


class TestOutboundTrailingDot(HostileTestCase):
    """Rule 7, the sending side: alice is known to encrypt."""

    def test_a_message_to_the_bare_jid_with_a_trailing_dot_is_not_sent_in_the_clear(
        self,
    ) -> None:
        failed: list[Any] = []
        self.xmpp.add_event_handler("objenc_encryption_failed", failed.append)
        self.xmpp.send_message(mto="alice@example.org.", mbody="secret", mtype="chat")
        self.wait_for_send_queue()
        raw = self.xmpp.socket.next_sent(timeout=0.5)
        text = raw.decode() if isinstance(raw, bytes) else (raw or "")
        assert "secret" not in text, text

    def test_a_message_to_a_full_jid_with_a_trailing_dot_is_encrypted(self) -> None:
        self.xmpp.send_message(mto="alice@example.org./phone", mbody="secret", mtype="chat")
        outer, inner = self.sent_to_alice()
        assert b"secret" in inner and b"secret" not in ET.tostring(outer)


class TestApplicationObjectsAreNotChanged(HostileTestCase):
    def test_iq_and_presence_objects_keep_id_and_children(self) -> None:
        iq = self.xmpp.make_iq_get(queryxmlns="urn:example:q", ito=ALICE_FULL)
        iq["id"] = "app-iq"
        before = ET.tostring(iq.xml)
        iq.send(timeout=2)
        self.sent_to_alice()
        assert ET.tostring(iq.xml) == before
        presence = self.xmpp.make_presence(pto=ALICE_FULL, pstatus="s")
        presence["id"] = "app-pres"
        before = ET.tostring(presence.xml)
        presence.send()
        self.sent_to_alice()
        assert ET.tostring(presence.xml) == before
        error = self.xmpp.make_message(mto=ALICE_FULL, mtype="error")
        error["id"] = "app-err"
        error["error"]["condition"] = "gone"
        error["error"]["text"] = "private detail"
        before = ET.tostring(error.xml)
        error.send()
        self.wait_for_send_queue()
        raw = self.xmpp.socket.next_sent(timeout=1)
        assert raw is not None and b"private detail" not in raw
        assert ET.tostring(error.xml) == before

    def test_too_large_iq_and_presence_are_refused_locally(self) -> None:
        failed: list[Any] = []
        self.xmpp.add_event_handler("objenc_encryption_failed", failed.append)
        presence = self.xmpp.make_presence(pto=ALICE_FULL, pstatus="x" * 300_000)
        presence.send()
        iq = self.xmpp.make_iq_set(ito=ALICE_FULL)
        ET.SubElement(iq.xml, "{urn:example:q}q").text = "y" * 300_000
        future = iq.send(timeout=2)
        self.wait_for_send_queue()
        assert self.xmpp.socket.next_sent(timeout=0.3) is None
        assert len(failed) == 2
        with pytest.raises(IqError):
            self.xmpp.loop.run_until_complete(asyncio.wait_for(future, 2))

    def test_hints_and_private_inside_the_envelope_are_the_senders_and_instruct_no_server(
        self,
    ) -> None:
        """PROTOCOL.md 3 (decided): server instructions are copied outside, where
        servers act on them, and kept inside, where they are the sender's
        authenticated words to the receiving client (a no-store hint, say). Inside,
        they reach the application; they were never the server's to add, unlike
        <delay/> and <stanza-id/>, which are dropped."""
        inner = (
            f"<message xmlns='jabber:client' from='{ALICE_FULL}' "
            "to='tester@localhost/resource' type='chat' id='in1'><body>x</body>"
            "<private xmlns='urn:xmpp:carbons:2'/><no-copy xmlns='urn:xmpp:hints'/>"
            "<stanza-id xmlns='urn:xmpp:sid:0' by='tester@localhost' id='forged'/>"
            "<delay xmlns='urn:xmpp:delay' from='localhost' stamp='2020-01-01T00:00:00Z'/>"
            "</message>"
        )
        self.recv(self.alice_seals(inner))
        [delivered] = self.events["message"]
        tags = {c.tag for c in delivered.xml}
        assert "{urn:xmpp:carbons:2}private" in tags
        assert "{urn:xmpp:hints}no-copy" in tags
        assert "{urn:xmpp:sid:0}stanza-id" not in tags  # the server's to add, not the sender's
        assert "{urn:xmpp:delay}delay" not in tags


@pytest.mark.parametrize(
    ("pem", "trust", "jid"),
    [
        (None, "tofu", None),
        (12, "tofu", None),
        ("not a pem", "tofu", None),
        (b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "tofu", None),
        (b"\x30\x82\xff\xff" + b"\x00" * 64, "tofu", None),
        ("ALICE", None, None),
        ("ALICE", [], None),
        ("ALICE", "TOFU", None),
        ("ALICE", "tofu", 12),
        ("ALICE", "tofu", b"alice@example.org"),
        ("ALICE", "tofu", "@"),
        ("ALICE", "tofu", ""),
        ("ALICE", "tofu", "a" * 2000 + "@example.org"),
        ("ALICE", "tofu", "alice@example..org"),
        ("ALICE", "tofu", "mallory@example.org"),
        ("ALICE", "tofu", object()),
    ],
)
def test_add_peer_certificate_raises_only_certificate_error(pem: Any, trust: Any, jid: Any) -> None:
    from test_plugin_stanzas import ObjEncTestCase
    from testkit import ALICE

    from slixmpp_objenc.core import CertificateError

    class Case(ObjEncTestCase):
        def runTest(self) -> None:
            pass

    case = Case()
    case.setUp()
    try:
        value = ALICE.certificate_pem() if pem == "ALICE" else pem
        with contextlib.suppress(CertificateError):
            case.plugin.add_peer_certificate(value, trust, jid)
    finally:
        case.tearDown()


# -- the authenticated profile ---------------------------------------------------------


from cryptography.hazmat.primitives.serialization import Encoding  # noqa: E402
from test_auth_review import (  # noqa: E402
    ALICE_DEVICE,
    ALICE_JID,
    KEY,
    ME,
    OWN_EVIL_DEVICE,
    ReviewCase,
    device_item,
    rsa_item,
    sender_of,
)
from test_auth_revocation import revoked_by  # noqa: E402

from slixmpp_objenc.plugin import NODE_CERTS  # noqa: E402

_DER = Encoding.DER
from testkit import TESTER  # noqa: E402

from slixmpp_objenc.core.identities import generate_device_keys  # noqa: E402
from slixmpp_objenc.store import TrustState  # noqa: E402

SECOND_OWN = generate_device_keys(ME)


class TestOwnNodeAuthenticated(ReviewCase):
    authenticated_profile = True  # tests/stanza/conftest.py: the plugin's default

    def own_node(self) -> str:
        own = device_item(self.tester, vouched_by=TESTER)
        self.discover(ME, [own, rsa_item(TESTER)])
        assert not self.plugin.keyring.own_first_contact
        return own

    def keys_of_next_message(self) -> set[str]:
        self.xmpp.send_message(mto=ALICE_JID, mbody="for alice", mtype="chat")
        return {k.get("identity-sha256") or "" for k in self.sent_message().iter(KEY)}

    def test_an_intruder_item_under_our_own_item_id_is_held(self) -> None:
        self.own_node()
        self.pin_alice()
        evil = device_item(OWN_EVIL_DEVICE).replace(
            f"id='{OWN_EVIL_DEVICE.fingerprint}'", f"id='{self.tester.fingerprint}'"
        )
        self.notify(ME)
        self.answer_fetch(ME, [evil, rsa_item(TESTER)])
        assert self.trust(ME, OWN_EVIL_DEVICE.fingerprint) is TrustState.UNTRUSTED
        assert OWN_EVIL_DEVICE.fingerprint not in self.keys_of_next_message()

    def test_an_intruder_revocation_of_our_accepted_device_changes_nothing(self) -> None:
        own = self.own_node()
        self.notify(ME)
        self.answer_fetch(ME, [own, device_item(SECOND_OWN)])
        self.run_coro(self.plugin.accept_key_change(ME, SECOND_OWN.fingerprint))
        assert self.trust(ME, SECOND_OWN.fingerprint) is TrustState.TOFU
        self.pin_alice()
        self.notify(ME)
        self.answer_fetch(
            ME,
            [
                own,
                device_item(SECOND_OWN),
                device_item(OWN_EVIL_DEVICE),
                revoked_by(OWN_EVIL_DEVICE, SECOND_OWN),
                revoked_by(OWN_EVIL_DEVICE, self.tester),
            ],
        )
        assert self.trust(ME, SECOND_OWN.fingerprint) is TrustState.TOFU
        assert self.trust(ME, OWN_EVIL_DEVICE.fingerprint) is TrustState.UNTRUSTED
        assert self.keys_of_next_message() == {
            ALICE_DEVICE.fingerprint,
            self.tester.fingerprint,
            SECOND_OWN.fingerprint,
        }

    def test_an_intruder_device_speaking_first_in_a_carbon_is_held_and_not_delivered(
        self,
    ) -> None:
        own = self.own_node()
        self.pin_alice()
        inner = (
            f"<message xmlns='jabber:client' from='{ME}/evil' to='{ALICE_JID}' "
            "type='chat'><body>sent by me?</body></message>"
        )
        e2e = self.sealed(inner, sender=sender_of(OWN_EVIL_DEVICE))
        self.recv(self.carbon("sent", f"{ME}/evil", ALICE_JID, e2e))
        self.answer_fetch(ME, [own, device_item(OWN_EVIL_DEVICE)])
        self.wait_(0.05)
        assert self.carbons("sent") == []
        assert self.trust(ME, OWN_EVIL_DEVICE.fingerprint) is TrustState.UNTRUSTED
        assert OWN_EVIL_DEVICE.fingerprint not in self.keys_of_next_message()

    def test_an_intruder_introducing_itself_on_our_account_is_not_pinned(self) -> None:
        self.own_node()
        self.xmpp.client_roster.add(ME, afrom=True, ato=False)  # a server's roster push
        inner = (
            f"<message xmlns='jabber:client' from='{ME}/evil' to='{ME}/resource' "
            "type='chat'><body>hi me</body></message>"
        )
        from test_auth_review import recipient_of

        from slixmpp_objenc.core.auth_envelope import seal_authenticated

        e2e = seal_authenticated(
            inner.encode(),
            sender_of(OWN_EVIL_DEVICE),
            [recipient_of(self.tester)],
            timestamp=self.clock.next(),
            pad_to=64,
            introduce=(
                OWN_EVIL_DEVICE.identity_certificate.public_bytes(_DER),
                OWN_EVIL_DEVICE.encryption_certificate.public_bytes(_DER),
            ),
        )
        self.recv(self.wire(e2e, frm=f"{ME}/evil"))
        for fetch in self.fetches():
            self.outbox.remove(fetch)
            self.recv(
                f"<iq type='result' from='{ME}' to='{ME}/resource' id='{fetch.get('id')}'>"
                "<pubsub xmlns='http://jabber.org/protocol/pubsub'>"
                f"<items node='{NODE_CERTS}'>{device_item(self.tester)}</items></pubsub></iq>"
            )
        self.wait_(0.05)
        assert self.bodies() == []
        assert self.trust(ME, OWN_EVIL_DEVICE.fingerprint) in (None, TrustState.UNTRUSTED)


class TestContactDirectoryAuthenticated(ReviewCase):
    authenticated_profile = True

    def test_forty_devices_at_first_contact_are_capped(self) -> None:
        devices = [generate_device_keys(ALICE_JID, now=self.now) for _ in range(40)]
        limits: list[Any] = []
        self.xmpp.add_event_handler("objenc_directory_limit", limits.append)
        self.pin_alice(*[device_item(d) for d in devices])
        assert len(self.plugin.keyring.usable(ALICE_JID)) <= 16
        assert limits
        self.xmpp.send_message(mto=ALICE_JID, mbody="x", mtype="chat")
        assert len(list(self.sent_message().iter(KEY))) <= 16 + 1

    def test_an_empty_items_answer_keeps_a_verified_identity_in_use(self) -> None:
        self.pin_alice()
        self.run_coro(
            self.plugin.set_trust(ALICE_JID, ALICE_DEVICE.fingerprint, TrustState.VERIFIED)
        )
        self.notify(ALICE_JID)
        self.answer_fetch(ALICE_JID, [])
        assert self.trust(ALICE_JID, ALICE_DEVICE.fingerprint) is TrustState.VERIFIED
        self.xmpp.send_message(mto=ALICE_JID, mbody="x", mtype="chat")
        named = {k.get("identity-sha256") for k in self.sent_message().iter(KEY)}
        assert ALICE_DEVICE.fingerprint in named

    def test_a_malformed_device_item_beside_hers_is_skipped(self) -> None:
        bad = (
            device_item(ALICE_DEVICE)
            .replace("<identity>", "<identity>!!")
            .replace(f"id='{ALICE_DEVICE.fingerprint}'", "id='bad'")
        )
        two_encryptions = device_item(generate_device_keys(ALICE_JID, now=self.now)).replace(
            "</device>", "<encryption>AAAA</encryption></device>"
        )
        self.pin_alice(bad, two_encryptions, device_item(ALICE_DEVICE))
        assert [p.fingerprint for p in self.plugin.keyring.usable(ALICE_JID)] == [
            ALICE_DEVICE.fingerprint
        ]


# -- replay and limits through carbons (draft profile) ---------------------------------

from slixmpp.xmlstream import tostring as _tostring  # noqa: E402
from testkit import TESTER as _TESTER  # noqa: E402

from slixmpp_objenc.core import Recipient, seal  # noqa: E402


class TestCarbonsReplayAndLimits(HostileTestCase):
    def carbon_of(self, inner: str) -> str:
        e2e = seal(
            inner.encode(),
            [Recipient(_TESTER.certificate.public_key())],
            timestamp=self.alice_clock.next(),
        )
        return self.carbon_wrapping(_tostring(e2e))

    def carbon_wrapping(self, e2e_xml: str) -> str:
        return (
            "<message xmlns='jabber:client' from='tester@localhost' "
            f"{TO} type='chat'><received xmlns='urn:xmpp:carbons:2'>"
            "<forwarded xmlns='urn:xmpp:forward:0'>"
            f"<message xmlns='jabber:client' from='{ALICE_FULL}' to='tester@localhost/laptop' "
            f"type='chat'>{e2e_xml}</message></forwarded></received></message>"
        )

    def test_a_direct_stanza_replayed_as_a_carbon_is_refused(self) -> None:
        stale: list[Any] = []
        self.xmpp.add_event_handler("objenc_bad_timestamp", stale.append)
        inner = (
            f"<message xmlns='jabber:client' from='{ALICE_FULL}' "
            "to='tester@localhost/resource' type='chat'><body>once</body></message>"
        )
        wire = self.alice_seals(inner)
        self.recv(wire)
        assert [m["body"] for m in self.delivered_messages()] == ["once"]
        e2e = ET.fromstring(wire).find(E2E)
        assert e2e is not None
        self.recv(self.carbon_wrapping(_tostring(e2e)))
        # and from another resource of hers
        self.recv(wire.replace("alice@example.org/phone'", "alice@example.org/other'", 1))
        assert [m["body"] for m in self.delivered_messages()] == ["once"]
        assert len(stale) == 2

    def test_deeply_nested_content_in_a_carbon_is_refused(self) -> None:
        failed: list[Any] = []
        self.xmpp.add_event_handler("objenc_decryption_failed", failed.append)
        carbons: list[Any] = []
        self.xmpp.add_event_handler("carbon_received", carbons.append)
        deep = "<x xmlns='urn:example:x'>" * 80 + "</x>" * 80
        inner = (
            f"<message xmlns='jabber:client' from='{ALICE_FULL}' "
            f"to='tester@localhost/laptop' type='chat'><body>deep</body>{deep}</message>"
        )
        self.recv(self.carbon_of(inner))
        many = "<y xmlns='urn:example:y'/>" * 12_000
        inner = (
            f"<message xmlns='jabber:client' from='{ALICE_FULL}' "
            f"to='tester@localhost/laptop' type='chat'><body>wide</body>{many}</message>"
        )
        self.recv(self.carbon_of(inner))
        assert carbons == [] and self.delivered_messages() == []
        assert len(failed) == 2
