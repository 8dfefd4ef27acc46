"""Several devices, carbons, archives, EME and padding on slixmpp's mock stream."""

from __future__ import annotations

import base64
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from typing import Any

from slixmpp.test import SlixTest
from slixmpp.xmlstream import tostring
from testkit import ALICE, MALLORY, TESTER

import slixmpp_objenc
from slixmpp_objenc.core import Recipient, TimestampSource, open_envelope, seal
from slixmpp_objenc.core.constants import NS_OBJENC
from slixmpp_objenc.store import MemoryStorage

NOW = datetime.now(UTC).replace(microsecond=0)
E2E = f"{{{NS_OBJENC}}}e2e"
TESTER_2 = MALLORY  # stands in for the account's second device in these tests


class DevicesTestCase(SlixTest):
    def setUp(self) -> None:
        self.now = NOW
        self.stream_start(mode="client", jid="tester@localhost/resource", plugins=["xep_0030"])
        self.xmpp.register_plugin("xep_0280")
        self.xmpp.register_plugin(
            "objenc",
            module=slixmpp_objenc,
            pconfig={
                "identity": TESTER,
                "clock": lambda: self.now,
                "storage": MemoryStorage(),
                "pep": False,
            },
        )
        self.plugin = self.xmpp.plugin["objenc"]
        self.plugin.add_peer_certificate(ALICE.certificate_pem())
        self.clock = TimestampSource(lambda: self.now)
        self.events: dict[str, list[Any]] = {}
        for name in (
            "message",
            "carbon_received",
            "carbon_sent",
            "objenc_foreign_encryption",
            "objenc_decryption_failed",
        ):
            self.xmpp.add_event_handler(name, self.events.setdefault(name, []).append)
        self.wait_()

    def tearDown(self) -> None:
        self.stream_close()

    def sealed(self, inner: str, *recipients: Any, timestamp: datetime | None = None) -> str:
        keys = [Recipient(r.certificate.public_key(), r.fingerprint) for r in recipients]
        e2e = seal(inner.encode(), keys, timestamp=timestamp or self.clock.next())
        return tostring(e2e)

    def sent(self) -> ET.Element:
        self.wait_for_send_queue()
        raw = self.xmpp.socket.next_sent(timeout=1)
        assert raw is not None
        return ET.fromstring(raw)


class TestOutbound(DevicesTestCase):
    def test_one_named_key_per_certificate_and_an_honest_fallback(self) -> None:
        self.xmpp.send_message(mto="alice@example.org", mbody="real words", mtype="chat")
        outer = self.sent()
        keys = outer.findall(f"{E2E}/{{{NS_OBJENC}}}key")
        assert sorted(k.get("cert-sha256") for k in keys) == sorted(
            [ALICE.fingerprint, TESTER.fingerprint]  # the contact, and ourselves (archive)
        )
        e2e = outer.find(E2E)
        assert e2e is not None
        for identity in (ALICE, TESTER):
            inner = open_envelope(e2e, identity.private_key, key_id=identity.fingerprint)
            assert b"real words" in inner.stanza_bytes
        eme = outer.find("{urn:xmpp:eme:0}encryption")
        assert eme is not None and eme.get("namespace") == NS_OBJENC
        assert eme.get("name") == "Object Encryption"
        body = outer.findtext("{jabber:client}body") or outer.findtext("body")
        assert body is not None and "end-to-end encrypted" in body
        assert b"real words" not in ET.tostring(outer).replace(e2e.text or b"", b"")

    def test_padding_hides_small_length_differences(self) -> None:
        sizes = []
        for body in ("a", "a" * 10, "a" * 30, "a" * 400):
            self.xmpp.send_message(mto="alice@example.org", mbody=body, mtype="chat")
            data = self.sent().find(f"{E2E}/{{{NS_OBJENC}}}data")
            assert data is not None
            length = len(base64.b64decode(data.text or "")) - 16
            assert length % 64 == 0
            sizes.append(length)
        assert sizes[0] == sizes[1] == sizes[2] < sizes[3]


class TestCarbons(DevicesTestCase):
    def carbon(self, direction: str, inner: str, outer_from: str, outer_to: str, **kw: Any) -> str:
        e2e = self.sealed(inner, TESTER, ALICE, **kw)
        frm = kw.get("wrapper_from", "tester@localhost")
        return (
            f"<message xmlns='jabber:client' from='{frm}' to='tester@localhost/resource'>"
            f"<{direction} xmlns='urn:xmpp:carbons:2'><forwarded xmlns='urn:xmpp:forward:0'>"
            f"<message xmlns='jabber:client' from='{outer_from}' to='{outer_to}' type='chat'>"
            f"{e2e}</message></forwarded></{direction}></message>"
        )

    def test_received_carbon_is_decrypted_for_slixmpp(self) -> None:
        inner = (
            "<message xmlns='jabber:client' from='alice@example.org/phone' "
            "to='tester@localhost/other' type='chat'><body>to my other device</body></message>"
        )
        self.recv(
            self.carbon("received", inner, "alice@example.org/phone", "tester@localhost/other")
        )
        carbon = self.events["carbon_received"][0]["carbon_received"]
        assert carbon["body"] == "to my other device"
        assert self.plugin.encryption_info(carbon) is not None

    def test_sent_carbon_is_decrypted(self) -> None:
        inner = (
            "<message xmlns='jabber:client' from='tester@localhost/other' "
            "to='alice@example.org' type='chat'><body>sent elsewhere</body></message>"
        )
        self.recv(self.carbon("sent", inner, "tester@localhost/other", "alice@example.org"))
        assert self.events["carbon_sent"][0]["carbon_sent"]["body"] == "sent elsewhere"

    def test_carbon_not_from_our_account_is_dropped(self) -> None:
        inner = (
            "<message xmlns='jabber:client' from='alice@example.org/phone' "
            "to='tester@localhost/other' type='chat'><body>forged</body></message>"
        )
        wire = self.carbon("received", inner, "alice@example.org/phone", "tester@localhost/other")
        self.recv(wire.replace("from='tester@localhost'", "from='alice@example.org/phone'", 1))
        assert "carbon_received" not in self.events or not self.events["carbon_received"]
        assert self.events["objenc_decryption_failed"][0].reason == "forged"

    def test_sent_carbon_claiming_another_sender_is_refused(self) -> None:
        inner = (
            "<message xmlns='jabber:client' from='alice@example.org/phone' "
            "to='tester@localhost' type='chat'><body>x</body></message>"
        )
        self.recv(self.carbon("sent", inner, "alice@example.org/phone", "tester@localhost"))
        assert not self.events.get("carbon_sent")


class TestArchive(DevicesTestCase):
    def test_archived_message_is_checked_against_the_archive_stamp(self) -> None:
        sent_at = NOW - timedelta(days=200)
        inner = (
            "<message xmlns='jabber:client' from='alice@example.org/phone' "
            "to='tester@localhost/resource' type='chat'><body>from last year</body></message>"
        )

        def result(stamp: datetime, rid: str) -> str:
            e2e = self.sealed(inner, TESTER, timestamp=sent_at)
            return (
                f"<message xmlns='jabber:client' from='tester@localhost' "
                f"to='tester@localhost/resource'><result xmlns='urn:xmpp:mam:2' id='{rid}'>"
                f"<forwarded xmlns='urn:xmpp:forward:0'><delay xmlns='urn:xmpp:delay' "
                f"stamp='{stamp.strftime('%Y-%m-%dT%H:%M:%SZ')}'/>"
                f"<message xmlns='jabber:client' from='alice@example.org/phone' "
                f"to='tester@localhost/resource' type='chat'>{e2e}</message>"
                f"</forwarded></result></message>"
            )

        captured: list[Any] = []
        self.xmpp.add_filter("in", lambda s: captured.append(s) or s)
        self.recv(result(sent_at + timedelta(seconds=1), "r1"))
        self.recv(result(sent_at + timedelta(hours=1), "r2"))  # stamp does not match
        first = captured[0].xml.find(
            "{urn:xmpp:mam:2}result/{urn:xmpp:forward:0}forwarded/{jabber:client}message"
        )
        assert first is not None and first.findtext("{jabber:client}body") == "from last year"
        info = self.plugin.encryption_info(self.xmpp._build_stanza(first))
        assert info is not None and info.delay is not None
        assert self.plugin.inbound.archive_error(captured[1]) == "old"


class TestForeignEncryption(DevicesTestCase):
    def test_omemo_fallback_is_not_shown_as_the_message(self) -> None:
        self.recv(
            "<message xmlns='jabber:client' from='bob@example.org/pc' "
            "to='tester@localhost/resource' type='chat'>"
            "<body>I sent you an OMEMO encrypted message</body>"
            "<encryption xmlns='urn:xmpp:eme:0' namespace='eu.siacs.conversations.axolotl'/>"
            "</message>"
        )
        assert "message" not in self.events or not self.events["message"]
        event = self.events["objenc_foreign_encryption"][0]
        assert event.namespace == "eu.siacs.conversations.axolotl"
