"""What a fresh review of issue 10's first cut found, each now failing (the
review's tests with the assertions turned around)."""

from __future__ import annotations

import asyncio
import copy
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from typing import Any

from slixmpp.test import SlixTest
from test_plugin_stanzas import CHAT_TO_TESTER, ObjEncTestCase
from testkit import ALICE, TESTER

import slixmpp_objenc
from slixmpp_objenc.core import generate_identity
from slixmpp_objenc.core.trust import TrustState
from slixmpp_objenc.store import MemoryStorage
from slixmpp_objenc.store.base import PeerRecord


class TestOnlyOurServersStampsAreDelivered(ObjEncTestCase):
    def test_a_delay_from_another_server_is_not_delivered(self) -> None:
        forged = "<delay xmlns='urn:xmpp:delay' from='example.org' stamp='2001-01-01T00:00:00Z'/>"
        self.recv(self.alice_seals(CHAT_TO_TESTER.format(body="now"), extra=forged))
        delivered = self.events["message"][0]
        assert delivered.xml.find("{urn:xmpp:delay}delay") is None


class TestPlaintextWaitsForTheStore(SlixTest):
    def tearDown(self) -> None:
        self.stream_close()

    def test_plaintext_from_a_contact_is_judged_once_the_store_is_loaded(self) -> None:
        class SlowStorage(MemoryStorage):
            async def load_peers(self) -> list[PeerRecord]:
                await asyncio.sleep(0.3)  # any real I/O
                return await super().load_peers()

        storage = SlowStorage()
        now = datetime.now(UTC)
        storage.peers[("alice@example.org", ALICE.fingerprint)] = PeerRecord(
            "alice@example.org",
            ALICE.fingerprint,
            ALICE.certificate_pem(),
            TrustState.VERIFIED,
            now,
            now,
        )
        self.stream_start(mode="client", jid="tester@localhost/resource", plugins=["xep_0030"])
        self.xmpp.register_plugin(
            "objenc",
            module=slixmpp_objenc,
            pconfig={"identity": TESTER, "storage": storage, "pep": False},
        )
        plugin = self.xmpp.plugin["objenc"]
        got: list[Any] = []
        refused: list[Any] = []
        self.xmpp.add_event_handler("message", got.append)
        self.xmpp.add_event_handler("objenc_plaintext_refused", refused.append)
        self.recv(CHAT_TO_TESTER.format(body="injected by the server"))
        self.run_coro(plugin.ready())
        self.wait_(0.1)
        assert got == [] and len(refused) == 1


class TestUnload(ObjEncTestCase):
    def test_a_held_stanza_is_reported_when_the_plugin_is_unloaded(self) -> None:
        self.run_coro(self.plugin.ready())
        second = generate_identity("alice@example.org", key_size=2048, now=self.now)
        self.plugin.add_peer_certificate(second.certificate_pem(), trust="untrusted")
        iq = self.xmpp.make_iq_get(queryxmlns="urn:example:q", ito="alice@example.org/phone")
        future = iq.send(timeout=60)
        self.wait_for_send_queue()
        assert self.xmpp.socket.next_sent(timeout=0.2) is None  # held for a decision
        self.xmpp.plugin.disable("objenc")
        self.wait_(0.2)
        assert self.xmpp.socket.next_sent(timeout=0.2) is None
        assert len(self.events["objenc_encryption_failed"]) == 1
        assert future.done()  # failed at once, not after its timeout
        future.exception()


class TestReplacedObjectIsSealed(ObjEncTestCase):
    def test_a_later_filter_returning_a_copy_does_not_send_plaintext(self) -> None:
        self.xmpp.add_filter("out", lambda stanza: copy.copy(stanza))
        self.xmpp.send_message(mto="alice@example.org", mbody="top secret", mtype="chat")
        _outer, inner = self.sent_to_alice()
        assert b"top secret" in inner


class TestSizeRefusedBeforeStreamManagement(ObjEncTestCase):
    def test_refused_stanza_is_never_queued_for_a_resend(self) -> None:
        self.xmpp.register_plugin("xep_0198")
        sm = self.xmpp.plugin["xep_0198"]
        sm.enabled_out = True
        big = self.xmpp.make_message(mto="alice@example.org", mbody="x" * 150_000, mtype="chat")
        big.send()
        self.wait_for_send_queue()
        assert self.xmpp.socket.next_sent(timeout=0.3) is None
        assert len(self.events["objenc_encryption_failed"]) == 1
        assert list(sm.unacked_queue) == [] and sm.seq == 0

    def test_the_estimate_holds_for_multibyte_text_and_long_addresses(self) -> None:
        limit = 8192
        self.plugin.outbound.max_stanza_size = limit
        self.plugin.outbound.fallback_body = "Это сообщение зашифровано " * 10
        to = "alice@example.org/" + "é" * 511  # a 1022-byte resource
        for length in range(100, 7000, 64):
            self.events.pop("objenc_encryption_failed", None)
            self.xmpp.send_message(mto=to, mbody="y" * length, mtype="chat")
            self.wait_for_send_queue()
            raw = self.xmpp.socket.next_sent(timeout=0.5)
            if raw is None:
                assert "objenc_encryption_failed" in self.events
                return
            size = len(raw if isinstance(raw, bytes) else raw.encode())
            assert size <= limit, (length, size)
        raise AssertionError("the limit was never reached")


class TestWhatTravelsOutside(ObjEncTestCase):
    def test_a_copy_of_a_sealed_stanza_with_a_new_body_is_refused(self) -> None:
        msg = self.xmpp.make_message(mto="alice@example.org", mbody="first", mtype="chat")
        self.plugin.seal_stanza(msg, [self.plugin.peer_certificate("alice@example.org")])
        again = copy.copy(msg)
        again["body"] = "SECOND-SECRET"
        again.send()
        self.wait_for_send_queue()
        assert self.xmpp.socket.next_sent(timeout=0.3) is None

    def test_hints_travel_outside_without_their_content(self) -> None:
        msg = self.xmpp.make_message(mto="alice@example.org", mbody="b", mtype="chat")
        msg.xml.append(ET.fromstring("<store xmlns='urn:xmpp:hints'>leaked text</store>"))
        msg.send()
        outer, _inner = self.sent_to_alice()
        assert b"leaked text" not in ET.tostring(outer)

    def test_the_language_stays_inside(self) -> None:
        msg = self.xmpp.make_message(mto="alice@example.org", mbody="hallo", mtype="chat")
        msg["lang"] = "de"
        msg.send()
        outer, inner = self.sent_to_alice()
        assert outer.get("{http://www.w3.org/XML/1998/namespace}lang") is None
        assert b'xml:lang="de"' in inner

    def test_application_specific_error_content_is_stripped(self) -> None:
        from test_plugin_stanzas import TestReviewFindings

        request = TestReviewFindings._decrypted_iq_from_stranger(self)  # type: ignore[arg-type]
        error = request.reply(clear=False)
        error["type"] = "error"
        error["error"]["condition"] = "forbidden"
        error["error"].xml.append(
            ET.fromstring("<detail xmlns='urn:x:app'>account 4711 is locked</detail>")
        )
        error.send()
        self.wait_for_send_queue()
        raw = self.xmpp.socket.next_sent(timeout=1)
        assert raw is not None and b"forbidden" in raw and b"4711" not in raw


class TestHeldStanzaIsACopy(ObjEncTestCase):
    def test_what_the_application_changes_while_it_waits_is_not_sent(self) -> None:
        self.run_coro(self.plugin.ready())
        self.plugin.persistence.loaded.clear()  # as while the store loads
        msg = self.xmpp.make_message(mto="alice@example.org", mbody="first", mtype="chat")
        msg.send()
        self.wait_for_send_queue()
        msg["body"] = "second"
        msg.send()
        self.wait_for_send_queue()
        assert self.xmpp.socket.next_sent(timeout=0.2) is None
        self.plugin.persistence.loaded.set()
        self.wait_(0.1)
        bodies = sorted(self.sent_to_alice()[1] for _ in range(2))
        assert any(b"first" in b for b in bodies) and any(b"second" in b for b in bodies)
