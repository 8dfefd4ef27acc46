"""Review 13 (hostile): the hybrid wrap, ML-KEM certificates on a contact's node,
and passphrases, through the real plugin path (harness of test_auth_hybrid).

A test marked ``xfail(strict=True)`` is an attack that currently SUCCEEDS (its
reason names the finding); a plain test is an attack that was tried and held.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import timedelta

from auth_harness import ALICE_JID, ME, NOW, device_item, sender_of
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from slixmpp.xmlstream import tostring
from test_auth_hybrid import (
    ALICE,
    PASSPHRASE,
    HybridCase,
    alice_second,
    hybrid_name,
    item,
    key_names,
)

from slixmpp_objenc.core.auth_envelope import seal_authenticated
from slixmpp_objenc.core.hybrid import with_kem_key
from slixmpp_objenc.core.identities import DeviceKeys, issue_encryption_certificate


def rotated(keys: DeviceKeys, hours: int) -> DeviceKeys:
    """``keys``'s device after a rotation ``hours`` later: a new X25519 key and
    certificate, and an ML-KEM certificate of that issuance."""
    key = X25519PrivateKey.generate()
    certificate = issue_encryption_certificate(
        keys.identity_key,
        keys.identity_certificate,
        key.public_key(),
        now=NOW + timedelta(hours=hours),
        valid_for=timedelta(days=37),
    )
    return with_kem_key(DeviceKeys(keys.identity_key, keys.identity_certificate, key, certificate))


ALICE_NEXT = rotated(ALICE, 1)


class TestKemStrippedOnce(HybridCase):
    def test_her_ml_kem_certificate_served_after_a_stripped_read_is_taken(self) -> None:
        self.pin(item(ALICE))
        self.run_coro(self.plugin.set_hybrid(ALICE_JID))
        self.now = NOW + timedelta(hours=1, minutes=1)
        stripped = device_item(ALICE_NEXT.identity_certificate, ALICE_NEXT.encryption_certificate)
        self.republish(stripped)  # Alice rotated; the server strips her new <kem/>
        assert self.held_kem(ALICE_NEXT) is None
        self.republish(item(ALICE_NEXT))  # her genuine item, served again
        assert self.held_kem(ALICE_NEXT) == ALICE_NEXT.kem_fingerprint
        e2e = self.send("after her rotation")
        assert hybrid_name(ALICE_NEXT) in key_names(e2e)

    def test_meanwhile_nothing_goes_out_without_the_hybrid(self) -> None:
        """The same attack, then sending: refused, never Auth mode (it holds)."""
        self.pin(item(ALICE))
        self.run_coro(self.plugin.set_passphrase(ALICE_JID, PASSPHRASE))
        self.now = NOW + timedelta(hours=1, minutes=1)
        stripped = device_item(ALICE_NEXT.identity_certificate, ALICE_NEXT.encryption_certificate)
        self.republish(stripped)
        self.refused("between us")


class TestPassphraseBypassAttempts(HybridCase):
    """Attacks on the passphrase at receive time by a server holding (or having
    broken) Alice's X25519 and ML-KEM keys but not the passphrase: it seals
    ``from_alice(..., second=b"")``."""

    def setUp(self) -> None:
        super().setUp()
        self.pin(item(ALICE))
        self.run_coro(self.plugin.set_passphrase(ALICE_JID, PASSPHRASE))

    def carbon(self, direction: str, frm: str, to: str, e2e: ET.Element) -> str:
        return (
            f"<message xmlns='jabber:client' from='{ME}' to='{ME}/resource'>"
            f"<{direction} xmlns='urn:xmpp:carbons:2'><forwarded xmlns='urn:xmpp:forward:0'>"
            f"<message xmlns='jabber:client' from='{frm}' to='{to}' type='chat'>"
            f"{tostring(e2e)}</message></forwarded></{direction}></message>"
        )

    def test_a_received_carbon_without_the_passphrase_is_refused(self) -> None:
        e2e = self.from_alice("via carbon")
        self.recv(self.carbon("received", "alice@example.org/phone", f"{ME}/other", e2e))
        assert self.bodies() == []

    def test_an_iq_without_the_passphrase_is_refused(self) -> None:
        inner = (
            "<iq xmlns='jabber:client' from='alice@example.org/phone' "
            f"to='{ME}/resource' type='get' id='q1'><query xmlns='jabber:iq:version'/></iq>"
        )
        e2e = seal_authenticated(
            inner.encode(),
            sender_of(ALICE),
            [self.me()],
            timestamp=self.clock.next(),
            hybrid=True,
        )
        self.recv(self.wire(e2e, kind="iq", kind_type="get"))
        assert self.failures() == ["passphrase"]

    def test_an_uppercase_sender_jid_still_needs_the_passphrase(self) -> None:
        e2e = self.from_alice("shouting")
        self.recv(self.wire(e2e, frm="ALICE@EXAMPLE.ORG/phone"))
        assert self.bodies() == []

    def test_with_the_passphrase_it_opens(self) -> None:
        """Control."""
        self.recv(self.wire(self.from_alice("ok", second=alice_second(PASSPHRASE))))
        assert self.bodies() == ["ok"]
