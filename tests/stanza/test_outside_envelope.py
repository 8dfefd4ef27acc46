"""Issue 10, item 4: what the server adds or must see stays outside, and only
outside counts; archived or not exactly as in the clear."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from test_plugin_stanzas import CHAT_TO_TESTER, ObjEncTestCase
from testkit import ALICE

from slixmpp_objenc.core import open_envelope
from slixmpp_objenc.core.rules import archived_in_the_clear

HINTS = "{urn:xmpp:hints}"
SID = "{urn:xmpp:sid:0}stanza-id"


class TestServerInstructionsStayOutside(ObjEncTestCase):
    def test_carbons_private_and_no_copy_are_outside(self) -> None:
        msg = self.xmpp.make_message(mto="alice@example.org", mbody="only here", mtype="chat")
        msg.xml.append(ET.Element("{urn:xmpp:carbons:2}private"))
        msg.xml.append(ET.Element(f"{HINTS}no-copy"))
        msg.send()
        outer, inner = self.sent_to_alice()
        assert outer.find("{urn:xmpp:carbons:2}private") is not None
        assert outer.find(f"{HINTS}no-copy") is not None
        assert b"only here" in inner and b"only here" not in ET.tostring(outer)

    def test_a_chat_state_alone_is_not_archived_a_body_is(self) -> None:
        state = self.xmpp.make_message(mto="alice@example.org", mtype="chat")
        state.xml.append(ET.Element("{http://jabber.org/protocol/chatstates}composing"))
        state.send()
        outer, _ = self.sent_to_alice()
        assert outer.find(f"{HINTS}no-store") is not None
        assert outer.find(f"{HINTS}store") is None
        self.xmpp.send_message(mto="alice@example.org", mbody="keep me", mtype="chat")
        outer, _ = self.sent_to_alice()
        assert outer.find(f"{HINTS}store") is not None
        assert outer.find(f"{HINTS}no-store") is None

    def test_receipts_and_markers_are_archived_as_in_the_clear(self) -> None:
        for payload in (
            "<received xmlns='urn:xmpp:receipts' id='m1'/>",
            "<displayed xmlns='urn:xmpp:chat-markers:0' id='m1'/>",
        ):
            msg = self.xmpp.make_message(mto="alice@example.org", mtype="chat")
            msg.xml.append(ET.fromstring(payload))
            msg.send()
            outer, _ = self.sent_to_alice()
            assert outer.find(f"{HINTS}store") is not None, payload


class TestOnlyOutsideCounts(ObjEncTestCase):
    def test_the_servers_stanza_id_is_kept_one_inside_is_dropped(self) -> None:
        inner = CHAT_TO_TESTER.format(body="x").replace(
            "<body>",
            "<stanza-id xmlns='urn:xmpp:sid:0' id='forged' by='tester@localhost'/><body>",
        )
        self.recv(
            self.alice_seals(
                inner, extra="<stanza-id xmlns='urn:xmpp:sid:0' id='real' by='tester@localhost'/>"
            )
        )
        delivered = self.events["message"][0]
        ids = [e.get("id") for e in delivered.xml.findall(SID)]
        assert ids == ["real"]


def test_archived_in_the_clear_follows_the_servers_rules() -> None:
    def message(children: str) -> ET.Element:
        return ET.fromstring(f"<message xmlns='jabber:client'>{children}</message>")

    assert archived_in_the_clear(message("<body>x</body>"))
    assert archived_in_the_clear(message("<subject>x</subject>"))
    assert archived_in_the_clear(message("<request xmlns='urn:xmpp:receipts'/>"))
    assert archived_in_the_clear(message("<store xmlns='urn:xmpp:hints'/>"))
    assert not archived_in_the_clear(
        message("<active xmlns='http://jabber.org/protocol/chatstates'/>")
    )
    assert not archived_in_the_clear(
        message("<body>x</body><no-permanent-store xmlns='urn:xmpp:hints'/>")
    )


class TestServerTime(ObjEncTestCase):
    """A carbon our server held through an 8-minute hibernation keeps the time
    the server first received it, like the direct message in the same queue."""

    def test_carbon_resent_after_hibernation_is_not_old(self) -> None:
        from datetime import timedelta

        from slixmpp.xmlstream import tostring

        from slixmpp_objenc.core import Recipient, seal

        self.xmpp.register_plugin("xep_0280")
        carbons: list[object] = []
        self.xmpp.add_event_handler("carbon_received", carbons.append)
        sent = self.now - timedelta(minutes=8)
        inner = CHAT_TO_TESTER.format(body="held").replace(
            "to='tester@localhost/resource'", "to='tester@localhost/laptop'"
        )
        e2e = seal(
            inner.encode(),
            [Recipient(self.plugin.identity.certificate.public_key())],
            timestamp=sent,
        )
        stamp = sent.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        self.recv(
            "<message xmlns='jabber:client' from='tester@localhost' "
            "to='tester@localhost/resource' type='chat'>"
            "<received xmlns='urn:xmpp:carbons:2'><forwarded xmlns='urn:xmpp:forward:0'>"
            "<message xmlns='jabber:client' from='alice@example.org/phone' "
            f"to='tester@localhost/laptop' type='chat' id='c1'>{tostring(e2e)}</message>"
            "</forwarded></received>"
            f"<delay xmlns='urn:xmpp:delay' from='tester@localhost' stamp='{stamp}'/>"
            "</message>"
        )
        assert "objenc_bad_timestamp" not in self.events
        assert len(carbons) == 1
        info = self.plugin.encryption_info(carbons[0])
        assert info is None or info.delay is not None  # the wrapper carries no info


class TestNoSilentLossOfLargeMessages(ObjEncTestCase):
    """A 150,000-character body grows to ~268,000 bytes encrypted: over the
    server's 256 KiB stanza limit, it would close the stream and be lost with
    no event. It is refused here instead; anything a sender may send is opened
    by a receiver with the default envelope limit."""

    def test_too_large_once_encrypted_is_refused_before_the_wire(self) -> None:
        msg = self.xmpp.make_message(mto="alice@example.org", mbody="x" * 150_000, mtype="chat")
        msg.send()
        self.wait_for_send_queue()
        assert self.xmpp.socket.next_sent(timeout=0.5) is None
        failed = self.events["objenc_encryption_failed"]
        assert len(failed) == 1 and "max_stanza_size" in str(failed[0].error)

    def test_the_largest_allowed_is_opened_by_a_receiver(self) -> None:
        for size in (140_000, 135_000, 130_000):
            self.events.pop("objenc_encryption_failed", None)
            msg = self.xmpp.make_message(mto="alice@example.org", mbody="y" * size, mtype="chat")
            msg.send()
            self.wait_for_send_queue()
            if "objenc_encryption_failed" in self.events:
                continue
            raw = self.xmpp.socket.next_sent(timeout=1)
            assert raw is not None and len(raw) <= 256 * 1024
            # alice (the core, default envelope limit) opens it
            e2e = ET.fromstring(raw).find("{urn:ietf:params:xml:ns:xmpp-objenc:0}e2e")
            assert e2e is not None
            opened = open_envelope(e2e, ALICE.private_key, key_id=ALICE.fingerprint)
            assert ("y" * size).encode() in opened.stanza_bytes
            return
        raise AssertionError("no size under the limit was sent")


class TestIdempotencyKey(ObjEncTestCase):
    """Every copy of one envelope carries the same key (issue 10, item 5)."""

    def test_direct_and_archived_copies_share_the_key(self) -> None:
        from slixmpp.xmlstream import tostring

        from slixmpp_objenc.core import Recipient, seal

        e2e = tostring(
            seal(
                CHAT_TO_TESTER.format(body="once").encode(),
                [Recipient(self.plugin.identity.certificate.public_key())],
                timestamp=self.now,
            )
        )
        self.recv(
            "<message xmlns='jabber:client' from='alice@example.org/phone' "
            f"to='tester@localhost/resource' type='chat' id='o1'>{e2e}</message>"
        )
        direct = self.plugin.encryption_info(self.events["message"][0])
        stamp = self.now.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        captured: list[object] = []
        self.xmpp.add_filter("in", lambda s: captured.append(s) or s)
        self.recv(
            "<message xmlns='jabber:client' from='tester@localhost' "
            "to='tester@localhost/resource'><result xmlns='urn:xmpp:mam:2' queryid='q' id='a1'>"
            "<forwarded xmlns='urn:xmpp:forward:0'>"
            f"<delay xmlns='urn:xmpp:delay' stamp='{stamp}'/>"
            "<message xmlns='jabber:client' from='alice@example.org/phone' "
            f"to='tester@localhost/resource' type='chat' id='o1'>{e2e}</message>"
            "</forwarded></result></message>"
        )
        element = captured[0].xml.find(  # type: ignore[attr-defined]
            "{urn:xmpp:mam:2}result/{urn:xmpp:forward:0}forwarded/{jabber:client}message"
        )
        archived = self.plugin.encryption_info(self.xmpp._build_stanza(element))
        assert direct is not None and archived is not None
        assert direct.idempotency_key and direct.idempotency_key == archived.idempotency_key
