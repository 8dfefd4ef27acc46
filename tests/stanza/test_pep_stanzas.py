"""PEP publication and discovery on slixmpp's mock stream."""

from __future__ import annotations

import base64
import os
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.serialization import Encoding
from slixmpp.test import SlixTest
from testkit import ALICE, TESTER

import slixmpp_objenc
from slixmpp_objenc import EncryptionError
from slixmpp_objenc.core import open_envelope
from slixmpp_objenc.core.constants import NS_OBJENC
from slixmpp_objenc.plugin import NODE_CERTS
from slixmpp_objenc.store import MemoryStorage


class PepTestCase(SlixTest):
    def setUp(self) -> None:
        self.stream_start(mode="client", jid="tester@localhost/resource", plugins=["xep_0030"])
        self.xmpp.register_plugin(
            "objenc",
            module=slixmpp_objenc,
            pconfig={"identity": TESTER, "storage": MemoryStorage()},
        )
        self.plugin = self.xmpp.plugin["objenc"]
        self.events: dict[str, list[Any]] = {}
        for name in ("objenc_publish_failed", "objenc_published", "objenc_key_changed"):
            self.xmpp.add_event_handler(name, self.events.setdefault(name, []).append)
        self.wait_()

    def tearDown(self) -> None:
        self.stream_close()

    def next_sent(self) -> ET.Element | None:
        # A stanza may leave the queue and come back once discovery is done, and
        # the mock stream runs its send queue only when asked: ask a few times.
        for _ in range(4):
            self.wait_for_send_queue()
            self.wait_()
            raw = self.xmpp.socket.next_sent(timeout=0.1)
            if raw is not None:
                return ET.fromstring(raw)
        return None

    def items_result(self, iq_id: str, *certificates: bytes) -> str:
        items = "".join(
            f"<item id='x{i}'><certificate xmlns='{NS_OBJENC}'>"
            f"{base64.b64encode(der).decode()}</certificate></item>"
            for i, der in enumerate(certificates)
        )
        return (
            f"<iq type='result' from='alice@example.org' to='tester@localhost/resource' "
            f"id='{iq_id}'><pubsub xmlns='http://jabber.org/protocol/pubsub'>"
            f"<items node='{NODE_CERTS}'>{items}</items></pubsub></iq>"
        )


class TestDiscovery(PepTestCase):
    def test_concurrent_sends_share_one_fetch_then_both_are_encrypted(self) -> None:
        self.xmpp.send_message(mto="alice@example.org", mbody="one", mtype="chat")
        self.xmpp.send_message(mto="alice@example.org", mbody="two", mtype="chat")
        fetch = self.next_sent()
        assert fetch is not None and fetch.get("type") == "get"
        assert NODE_CERTS in ET.tostring(fetch, encoding="unicode")
        assert self.next_sent() is None  # the second send waits on the same fetch
        self.recv(
            self.items_result(fetch.get("id", ""), ALICE.certificate.public_bytes(Encoding.DER))
        )
        self.wait_(0.2)
        bodies = []
        for _ in range(2):
            sent = self.next_sent()
            assert sent is not None
            e2e = sent.find(f"{{{NS_OBJENC}}}e2e")
            assert e2e is not None, ET.tostring(sent)
            inner = open_envelope(e2e, ALICE.private_key, key_id=ALICE.fingerprint).stanza
            bodies.append(inner.findtext("{jabber:client}body"))
        assert sorted(bodies) == ["one", "two"]

    def test_a_certificate_for_someone_else_is_ignored(self) -> None:
        self.xmpp.send_message(mto="bob@example.org", mbody="clear", mtype="chat")
        fetch = self.next_sent()
        assert fetch is not None
        # bob's node publishes alice's certificate: not bound to bob
        self.recv(
            self.items_result(
                fetch.get("id", ""), ALICE.certificate.public_bytes(Encoding.DER)
            ).replace("from='alice@example.org'", "from='bob@example.org'")
        )
        self.wait_(0.2)
        sent = self.next_sent()
        assert sent is not None and sent.find(f"{{{NS_OBJENC}}}e2e") is None
        assert self.plugin.keyring.records("bob@example.org") == []


class TestLateContact(PepTestCase):
    def test_a_contact_found_without_certificate_is_read_again_when_it_publishes(self) -> None:
        self.xmpp.send_message(mto="alice@example.org", mbody="hello", mtype="chat")
        fetch = self.next_sent()
        assert fetch is not None and NODE_CERTS in ET.tostring(fetch, encoding="unicode")
        self.recv(
            f"<iq type='error' from='alice@example.org' to='tester@localhost/resource' "
            f"id='{fetch.get('id')}'><error type='cancel'><item-not-found "
            "xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>"
        )
        sent = self.next_sent()  # the documented case: no certificate, so in the clear
        assert sent is not None and sent.find(f"{{{NS_OBJENC}}}e2e") is None
        # alice's client publishes a moment later (ejabberd: four requests)
        der = base64.b64encode(ALICE.certificate.public_bytes(Encoding.DER)).decode()
        self.recv(
            "<message from='alice@example.org' to='tester@localhost/resource' type='headline'>"
            "<event xmlns='http://jabber.org/protocol/pubsub#event'>"
            f"<items node='{NODE_CERTS}'><item id='{ALICE.fingerprint}'>"
            f"<certificate xmlns='{NS_OBJENC}'>{der}</certificate></item></items>"
            "</event></message>"
        )
        again = self.next_sent()  # not remembered as a miss for five minutes
        assert again is not None and again.get("type") == "get", again
        self.recv(
            self.items_result(again.get("id", ""), ALICE.certificate.public_bytes(Encoding.DER))
        )
        self.wait_(0.1)
        self.xmpp.send_message(mto="alice@example.org", mbody="now encrypted", mtype="chat")
        sent = self.next_sent()
        assert sent is not None and sent.find(f"{{{NS_OBJENC}}}e2e") is not None


def test_world_readable_key_file_is_refused(tmp_path: Path) -> None:
    from slixmpp import ClientXMPP

    key, cert = tmp_path / "me.key", tmp_path / "me.pem"
    key.write_bytes(TESTER.private_key_pem())
    cert.write_bytes(TESTER.certificate_pem())
    os.chmod(key, 0o644)
    client = ClientXMPP("tester@localhost", "x")
    with pytest.raises(EncryptionError, match="world-readable"):
        client.register_plugin(
            "objenc",
            module=slixmpp_objenc,
            pconfig={"key_file": str(key), "cert_file": str(cert), "storage": MemoryStorage()},
        )
