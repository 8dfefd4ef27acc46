"""A hostile server answering the key directory, on slixmpp's mock stream (issue 9):
certificates that appear on our own node (kind 1), empty or malformed or huge
answers (kind 4), and JIDs that slixmpp normalizes (kind 8).

The server is played by the test: it answers the plugin's PEP fetches with
whatever items it likes."""

from __future__ import annotations

import asyncio
import base64
import logging
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from typing import Any, ClassVar

import hostile_certificates as hostile
import pytest
from cryptography.hazmat.primitives.serialization import Encoding
from test_pep_stanzas import PepTestCase
from testkit import ALICE, TESTER

import slixmpp_objenc
from slixmpp_objenc.core import (
    CertificateError,
    InvalidEnvelope,
    generate_identity,
    open_envelope,
)
from slixmpp_objenc.core.constants import NS_OBJENC
from slixmpp_objenc.plugin import NODE_CERTS
from slixmpp_objenc.store import MemoryStorage, TrustState

E2E = f"{{{NS_OBJENC}}}e2e"
KEY = f"{{{NS_OBJENC}}}key"
ME = "tester@localhost"
OTHER_DEVICE = generate_identity(ME, key_size=2048)  # a genuine second device of ours
ATTACKER = generate_identity(ME, key_size=2048)  # published by whoever has the password
EVENTS = (
    "objenc_own_device_held",
    "objenc_own_device_added",
    "objenc_key_changed",
    "objenc_device_added",
    "objenc_key_unpublished",
    "objenc_directory_limit",
    "objenc_encryption_failed",
)


def der(identity: Any) -> bytes:
    return bytes(identity.certificate.public_bytes(Encoding.DER))


class DirectoryTestCase(PepTestCase):
    config: ClassVar[dict[str, Any]] = {}

    def setUp(self) -> None:
        self.stream_start(mode="client", jid=f"{ME}/resource", plugins=["xep_0030"])
        self.storage = getattr(self, "prepared", None) or MemoryStorage()
        self.xmpp.register_plugin(
            "objenc",
            module=slixmpp_objenc,
            pconfig={"identity": TESTER, "storage": self.storage, **self.config},
        )
        self.plugin = self.xmpp.plugin["objenc"]
        self.events: dict[str, list[Any]] = {name: [] for name in EVENTS}
        for name in EVENTS:
            self.xmpp.add_event_handler(name, self.events[name].append)
        self.wait_()

    # the server's side (next_sent: PepTestCase's) ----------------------------------

    def answer_fetch(self, owner: str, items: Sequence[str] | None = None) -> None:
        """Answer the plugin's next request with ``items`` (raw <item/> XML) from
        ``owner``'s node; ``None``: an item-not-found error."""
        fetch = self.next_sent()
        assert fetch is not None and NODE_CERTS in ET.tostring(fetch, encoding="unicode")
        assert fetch.get("to") in (owner, None), ET.tostring(fetch)
        iq_id = fetch.get("id", "")
        if items is None:
            self.recv(
                f"<iq type='error' from='{owner}' to='{ME}/resource' id='{iq_id}'>"
                "<error type='cancel'><item-not-found "
                "xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>"
            )
        else:
            self.recv(
                f"<iq type='result' from='{owner}' to='{ME}/resource' id='{iq_id}'>"
                "<pubsub xmlns='http://jabber.org/protocol/pubsub'>"
                f"<items node='{NODE_CERTS}'>{''.join(items)}</items></pubsub></iq>"
            )
        self.wait_(0.1)

    def discover(self, owner: str, items: Sequence[str] | None) -> None:
        task = asyncio.ensure_future(self.plugin.discover(owner))
        self.answer_fetch(owner, items)
        for _ in range(20):
            if task.done():
                break
            self.wait_(0.05)
        assert task.done()
        task.result()  # never raises, whatever the server answered

    def send_to_alice(self, body: str = "hello") -> ET.Element:
        self.xmpp.send_message(mto="alice@example.org", mbody=body, mtype="chat")
        sent = self.next_sent()
        assert sent is not None, "nothing was sent"
        return sent


def item(raw: bytes, item_id: str | None = None) -> str:
    import hashlib

    return (
        f"<item id='{item_id or hashlib.sha256(raw).hexdigest()}'>"
        f"<certificate xmlns='{NS_OBJENC}'>{base64.b64encode(raw).decode()}</certificate></item>"
    )


def key_ids(message: ET.Element) -> set[str]:
    e2e = message.find(E2E)
    assert e2e is not None, ET.tostring(message)
    return {k.get("cert-sha256", "") for k in e2e.findall(KEY)}


# -- kind 1: our own devices -----------------------------------------------------------


class TestOwnDevices(DirectoryTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.plugin.add_peer_certificate(ALICE.certificate_pem())
        self.wait_()

    def start_as_the_only_device(self) -> None:
        """This device's first read of its own node finds only itself."""
        self.discover(ME, [item(der(TESTER))])

    def test_a_certificate_published_on_our_node_is_held_not_encrypted_to(self) -> None:
        # before issue 9: pinned as our own device (tofu, no event), and every
        # message carried a <key/> the attacker could open
        self.start_as_the_only_device()
        self.discover(ME, [item(der(TESTER)), item(der(ATTACKER))])
        [record] = self.plugin.keyring.records(ME)
        assert record.fingerprint == ATTACKER.fingerprint
        assert record.trust is TrustState.UNTRUSTED
        [event] = self.events["objenc_own_device_held"]
        assert event.jid == ME and event.new_fingerprint == ATTACKER.fingerprint
        sent = self.send_to_alice("for alice only")
        assert key_ids(sent) == {ALICE.fingerprint, TESTER.fingerprint}
        e2e = sent.find(E2E)
        assert e2e is not None
        with pytest.raises(InvalidEnvelope):
            open_envelope(e2e, ATTACKER.private_key, key_id=ATTACKER.fingerprint)
        assert not self.events["objenc_own_device_added"]

    def test_accepting_a_device_of_ours_encrypts_to_it_rejecting_does_not(self) -> None:
        self.start_as_the_only_device()
        self.discover(ME, [item(der(TESTER)), item(der(OTHER_DEVICE)), item(der(ATTACKER))])
        assert len(self.events["objenc_own_device_held"]) == 2
        self.xmpp.loop.run_until_complete(
            self.plugin.accept_key_change(f"{ME}/laptop", OTHER_DEVICE.fingerprint)
        )
        self.xmpp.loop.run_until_complete(self.plugin.reject_key_change(ME, ATTACKER.fingerprint))
        assert key_ids(self.send_to_alice()) == {
            ALICE.fingerprint,
            TESTER.fingerprint,
            OTHER_DEVICE.fingerprint,
        }

    def test_a_new_device_pins_what_its_account_already_publishes(self) -> None:
        assert self.plugin.keyring.own_first_contact  # a fresh store
        self.discover(ME, [item(der(OTHER_DEVICE)), item(der(TESTER))])
        [record] = self.plugin.keyring.records(ME)
        assert (record.fingerprint, record.trust) == (OTHER_DEVICE.fingerprint, TrustState.TOFU)
        assert not self.events["objenc_own_device_held"]
        self.assertEqual(
            self.xmpp.loop.run_until_complete(self.storage.get_setting("own-devices")), "known"
        )
        # only once: what appears later is held
        self.discover(ME, [item(der(OTHER_DEVICE)), item(der(TESTER)), item(der(ATTACKER))])
        assert self.plugin.keyring.record(ME, ATTACKER.fingerprint).trust is TrustState.UNTRUSTED
        assert key_ids(self.send_to_alice()) == {
            ALICE.fingerprint,
            TESTER.fingerprint,
            OTHER_DEVICE.fingerprint,
        }

    def test_no_node_at_all_means_we_are_the_first_device(self) -> None:
        self.discover(ME, None)
        assert not self.plugin.keyring.own_first_contact
        self.plugin.directory.forget_miss(ME)
        self.discover(ME, [item(der(TESTER)), item(der(ATTACKER))])
        assert self.plugin.keyring.record(ME, ATTACKER.fingerprint).trust is TrustState.UNTRUSTED

    def test_removing_a_device_of_ours_revokes_and_retracts_it(self) -> None:
        self.discover(ME, [item(der(OTHER_DEVICE)), item(der(TESTER))])  # first contact
        self.plugin.remove_peer_certificate(ME, OTHER_DEVICE.fingerprint)
        retract = self.next_sent()
        assert retract is not None and "retract" in ET.tostring(retract, encoding="unicode")
        assert OTHER_DEVICE.fingerprint in ET.tostring(retract, encoding="unicode")
        self.recv(f"<iq type='result' to='{ME}/resource' id='{retract.get('id')}'/>")
        # the server keeps publishing it: it never comes back, not even as a question
        self.discover(ME, [item(der(OTHER_DEVICE)), item(der(TESTER))])
        record = self.plugin.keyring.record(ME, OTHER_DEVICE.fingerprint)
        assert record is not None and record.trust is TrustState.REVOKED
        assert not self.events["objenc_own_device_held"]
        assert key_ids(self.send_to_alice()) == {ALICE.fingerprint, TESTER.fingerprint}


class TestTrustOwnNewDevices(DirectoryTestCase):
    config: ClassVar[dict[str, Any]] = {"trust_own_new_devices": True}

    def test_opt_in_trusts_at_once_loudly(self) -> None:
        self.plugin.add_peer_certificate(ALICE.certificate_pem())
        self.discover(ME, [item(der(TESTER))])
        with self.assertLogs("slixmpp_objenc", logging.WARNING) as logs:
            self.discover(ME, [item(der(TESTER)), item(der(OTHER_DEVICE))])
        assert any("WITHOUT A DECISION" in line for line in logs.output)
        [event] = self.events["objenc_own_device_added"]
        assert event.new_fingerprint == OTHER_DEVICE.fingerprint
        assert OTHER_DEVICE.fingerprint in key_ids(self.send_to_alice())


# -- kind 4: the key directory obeys whatever the server answers -----------------------


class TestHostileAnswers(DirectoryTestCase):
    def first_contact(self, *items: str) -> ET.Element:
        """Send to alice; the server answers the fetch with ``items``."""
        self.xmpp.send_message(mto="alice@example.org", mbody="first", mtype="chat")
        self.answer_fetch("alice@example.org", list(items))
        sent = self.next_sent()
        assert sent is not None
        return sent

    def test_a_verified_certificate_survives_an_empty_items_answer(self) -> None:
        # before issue 9: revoked without an event, and every later send failed
        self.first_contact(item(der(ALICE)))
        self.xmpp.loop.run_until_complete(
            self.plugin.set_trust("alice@example.org", ALICE.fingerprint, TrustState.VERIFIED)
        )
        self.discover("alice@example.org", [])
        record = self.plugin.keyring.record("alice@example.org", ALICE.fingerprint)
        assert record is not None and record.trust is TrustState.VERIFIED
        [event] = self.events["objenc_key_unpublished"]
        assert (event.jid, event.fingerprint) == ("alice@example.org", ALICE.fingerprint)
        assert ALICE.fingerprint in key_ids(self.send_to_alice("still encrypted"))
        self.discover("alice@example.org", [])
        assert len(self.events["objenc_key_unpublished"]) == 1  # told once

    def test_a_pinned_certificate_unpublished_then_published_again_is_restored(self) -> None:
        # before issue 9: revoked for good; republishing did not restore it
        self.first_contact(item(der(ALICE)))
        self.discover("alice@example.org", [])
        record = self.plugin.keyring.record("alice@example.org", ALICE.fingerprint)
        assert record is not None and record.trust is TrustState.UNPUBLISHED
        # meanwhile nothing goes in the clear
        self.xmpp.send_message(mto="alice@example.org", mbody="not now", mtype="chat")
        assert self.next_sent() is None and self.events["objenc_encryption_failed"]
        # alice publishes the same key again (a notification makes us read the node)
        self.discover("alice@example.org", [item(der(ALICE))])
        assert ALICE.fingerprint in key_ids(self.send_to_alice("back"))
        assert not self.events["objenc_key_changed"]

    def test_after_an_empty_answer_a_later_send_looks_again(self) -> None:
        self.first_contact(item(der(ALICE)))
        self.discover("alice@example.org", [])
        self.plugin.directory.forget_miss("alice@example.org")  # 10 s later
        self.xmpp.send_message(mto="alice@example.org", mbody="back", mtype="chat")
        self.answer_fetch("alice@example.org", [item(der(ALICE))])
        sent = self.next_sent()
        assert sent is not None and ALICE.fingerprint in key_ids(sent)

    @pytest.mark.filterwarnings("ignore")
    def test_a_malformed_item_next_to_a_good_certificate_is_skipped(self) -> None:
        # before issue 9: DuplicateExtension / UnsupportedAlgorithm aborted the
        # discovery and the message was not sent at all
        for bad in (
            hostile.duplicate_extension("alice@example.org"),
            hostile.unknown_key_algorithm("alice@example.org"),
        ):
            self.plugin.remove_peer_certificate("alice@example.org")
            self.plugin.directory.forget_miss("alice@example.org")
            with self.assertLogs("slixmpp_objenc", logging.INFO) as logs:
                sent = self.first_contact(item(bad, "bad-item"), item(der(ALICE)))
            assert key_ids(sent) == {ALICE.fingerprint, TESTER.fingerprint}
            assert any("bad-item" in line for line in logs.output)
        assert not self.events["objenc_encryption_failed"]

    def test_fifteen_hundred_certificates_are_capped_with_an_event(self) -> None:
        # before issue 9: all pinned, and every message grew to ~700 KiB
        flood = [item(raw) for raw in hostile.many("alice@example.org", 1499)]
        sent = self.first_contact(item(der(ALICE)), *flood)
        assert len(key_ids(sent)) == 16 + 1  # 16 of alice's, and ours
        assert ALICE.fingerprint in key_ids(sent)
        assert len(ET.tostring(sent)) < 16 * 1024
        [event] = self.events["objenc_directory_limit"]
        assert (event.jid, event.limit, event.maximum) == (
            "alice@example.org",
            "certificates-per-jid",
            16,
        )
        assert event.found == 1500

    def test_a_huge_certificate_is_refused_with_an_event(self) -> None:
        # before issue 9: a 1.4 MB certificate was accepted
        huge = hostile.huge("alice@example.org")
        with pytest.raises(CertificateError):
            self.plugin.add_peer_certificate(huge)
        sent = self.first_contact(item(huge), item(der(ALICE)))
        assert key_ids(sent) == {ALICE.fingerprint, TESTER.fingerprint}
        assert [e.limit for e in self.events["objenc_directory_limit"]] == ["certificate-size"]


@pytest.mark.parametrize(
    ("pem", "jid", "trust"),
    [
        (hostile.duplicate_extension("alice@example.org"), None, "tofu"),
        (hostile.unknown_key_algorithm("alice@example.org"), None, "tofu"),
        (hostile.huge("alice@example.org"), None, "tofu"),
        (b"garbage", None, "tofu"),
        ("not even bytes", None, "tofu"),
        (None, None, "tofu"),
        (ALICE.certificate_pem(), "not a jid@@", "tofu"),
        (ALICE.certificate_pem(), "bob@example.org", "tofu"),
        (ALICE.certificate_pem(), None, "trusted-ish"),
    ],
)
def test_add_peer_certificate_raises_only_certificate_error(pem: Any, jid: Any, trust: Any) -> None:
    from slixmpp import ClientXMPP

    client = ClientXMPP(f"{ME}/resource", "x")
    client.register_plugin(
        "objenc",
        module=slixmpp_objenc,
        pconfig={"identity": TESTER, "storage": MemoryStorage(), "pep": False},
    )
    with pytest.raises(CertificateError):
        client.plugin["objenc"].add_peer_certificate(pem, trust=trust, jid=jid)


# -- kind 8: one JID normalization everywhere --------------------------------------------


class TestNormalization(DirectoryTestCase):
    def test_a_certificate_for_a_non_canonical_spelling_is_refused(self) -> None:
        # before issue 9: held under 'straße@...' while slixmpp looks up
        # 'strasse@...', so messages to that contact went in the clear
        strasse = hostile.certificate(["straße@example.org"])
        with pytest.raises(CertificateError, match="canonical"):
            self.plugin.add_peer_certificate(hostile.pem(strasse))
        assert self.plugin.keyring.all_records() == []

    def test_discovery_of_a_normalized_jid_does_not_raise(self) -> None:
        # before issue 9: the certificate matched the node after slixmpp's
        # normalization but not the key ring's, and discovery raised
        spelled = hostile.certificate(["straße@example.org"])
        self.xmpp.send_message(mto="Straße@Example.org", mbody="hi", mtype="chat")
        self.answer_fetch("strasse@example.org", [item(hostile.der(spelled))])
        sent = self.next_sent()
        assert sent is not None  # no certificate in canonical form: nothing is held
        assert not self.events["objenc_encryption_failed"]
        assert self.plugin.keyring.all_records() == []

    def test_the_canonical_certificate_is_found_by_every_spelling(self) -> None:
        canonical = hostile.certificate(["strasse@example.org"], key=hostile._KEY)
        self.xmpp.send_message(mto="Straße@Example.org", mbody="hi", mtype="chat")
        self.answer_fetch("strasse@example.org", [item(hostile.der(canonical))])
        sent = self.next_sent()
        assert sent is not None and sent.find(E2E) is not None
        assert self.plugin.peer_certificate("STRASSE@example.org") is not None
        assert self.plugin.keyring.records("straße@example.org")


class TestUpgradedStore(DirectoryTestCase):
    """A store written before issue 9, holding a device of ours pinned without a
    decision: held again, and the application asked at session start."""

    def setUp(self) -> None:
        from datetime import UTC, datetime

        from slixmpp_objenc.store import OwnIdentityRecord, PeerRecord

        storage = MemoryStorage()
        now = datetime.now(UTC)

        async def old_store() -> None:
            await storage.save_identity(
                OwnIdentityRecord(
                    TESTER.fingerprint, TESTER.private_key_pem(), TESTER.certificate_pem(), now
                )
            )
            await storage.save_peer(
                PeerRecord(
                    ME,
                    ATTACKER.fingerprint,
                    ATTACKER.certificate_pem(),
                    TrustState.TOFU,
                    now,
                    now,
                    "pep",
                )
            )

        asyncio.new_event_loop().run_until_complete(old_store())
        self.prepared = storage
        super().setUp()

    def test_asked_again_at_session_start(self) -> None:
        record = self.plugin.keyring.record(ME, ATTACKER.fingerprint)
        assert record is not None and record.trust is TrustState.UNTRUSTED
        task = asyncio.ensure_future(self.plugin.directory.on_session_start())
        publish = self.next_sent()
        assert publish is not None
        self.recv(f"<iq type='result' to='{ME}/resource' id='{publish.get('id')}'/>")
        read = self.next_sent()  # the node's configuration, checked after publishing
        assert read is not None
        self.recv(f"<iq type='result' to='{ME}/resource' id='{read.get('id')}'/>")
        self.wait_(0.1)
        self.answer_fetch(ME, [item(der(TESTER)), item(der(ATTACKER))])
        for _ in range(20):
            if task.done():
                break
            self.wait_(0.05)
        task.result()
        [event] = self.events["objenc_own_device_held"]
        assert event.new_fingerprint == ATTACKER.fingerprint
