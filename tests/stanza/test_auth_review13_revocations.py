"""Review 13 (hostile): revocations of lost devices (PROTOCOL.md 13.13) through the
real plugin path (the directory reads a node, glue/revocations.py takes its
``<revocation/>`` items).

A test marked ``xfail(strict=True)`` is an attack that currently SUCCEEDS (its
reason names the finding); a plain test is an attack that was tried and held.
"""

from __future__ import annotations

import asyncio
import os
import xml.etree.ElementTree as ET
from datetime import timedelta

import pytest
from auth_harness import (
    ALICE_DEVICE,
    ALICE_JID,
    ME,
    NOW,
    AuthTestCase,
    alice_item,
    device_item,
)
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from slixmpp.xmlstream import tostring

from slixmpp_objenc.core.constants import NS_OBJENC as NS
from slixmpp_objenc.core.identities import generate_device_keys
from slixmpp_objenc.core.revocation import (
    Revocation,
    revocation_element,
    sign_revocation,
)
from slixmpp_objenc.store import TrustState

ALICE_SECOND = generate_device_keys(ALICE_JID, now=NOW)
"""A second device of Alice's (her good one, say)."""
OTHER_OWN = generate_device_keys(ME, now=NOW)
"""Another genuine device of our own account, already on our node."""
SERVER_OWN = generate_device_keys(ME, now=NOW)
"""A device the server (or whoever has our password) adds to our node later."""


def revocation_item(revocation: Revocation) -> str:
    return f"<item id='{revocation.item_id}'>{tostring(revocation_element(revocation))}</item>"


def junk_revocation(revoked: str) -> str:
    """A well-formed revocation of ``revoked`` by an identity nobody holds, with
    64 random bytes as its signature: what a hostile server can write on any
    node it hosts (rule 1 ignores it)."""
    return revocation_item(
        Revocation(revoked, os.urandom(32).hex(), NOW.replace(microsecond=0), os.urandom(64))
    )


class ReviewCase(AuthTestCase):
    def discover(self, owner: str, items: list[str]) -> BaseException | None:
        """The plugin reads ``owner``'s node and gets ``items``; the exception the
        read ended with, if any."""
        self.plugin.directory.forget_miss(owner)
        task = asyncio.ensure_future(self.plugin.discover(owner))
        self.answer_fetch(owner, items)
        try:
            self.run_coro(asyncio.wait_for(task, 2))
        except Exception as exc:
            return exc
        return None

    def trust(self, owner: str, fingerprint: str) -> TrustState | None:
        record = self.plugin.keyring.record(owner, fingerprint)
        return None if record is None else record.trust


class TestJunkRevocationOnAContactsNode(ReviewCase):
    def test_a_junk_revocation_does_not_break_reading_the_node(self) -> None:
        """Attack (hostile server, or a malicious contact on its own node): one
        ``<revocation/>`` item with a random revoker and signature beside Alice's
        genuine device item."""
        error = self.discover(ALICE_JID, [alice_item(), junk_revocation(ALICE_DEVICE.fingerprint)])
        assert error is None, repr(error)
        assert self.trust(ALICE_JID, ALICE_DEVICE.fingerprint) is TrustState.TOFU

    def test_a_first_message_to_alice_is_sent(self) -> None:
        self.xmpp.send_message(mto=ALICE_JID, mbody="hello", mtype="chat")
        self.answer_fetch(ALICE_JID, [alice_item(), junk_revocation(ALICE_DEVICE.fingerprint)])
        self.wait_(0.1)
        self.drain()
        assert self.events["objenc_encryption_failed"] == []
        assert any(s.get("type") == "chat" for s in self.outbox)


class TestJunkRevocationOnOurOwnNode(ReviewCase):
    def test_a_device_added_to_our_node_after_first_contact_is_held(self) -> None:
        """Attack (hostile server, our password): at this new device's first read of
        our node, the server adds one junk revocation item; later it publishes a
        device of its own on our node."""
        assert self.plugin.keyring.own_first_contact
        ours = device_item(self.tester.identity_certificate, self.tester.encryption_certificate)
        other = device_item(OTHER_OWN.identity_certificate, OTHER_OWN.encryption_certificate)
        junk = junk_revocation(OTHER_OWN.fingerprint)
        self.discover(ME, [ours, other, junk])
        assert self.trust(ME, OTHER_OWN.fingerprint) is TrustState.TOFU  # first contact: pinned
        evil = device_item(SERVER_OWN.identity_certificate, SERVER_OWN.encryption_certificate)
        self.discover(ME, [ours, other, junk, evil])
        assert self.trust(ME, SERVER_OWN.fingerprint) is TrustState.UNTRUSTED
        assert not self.plugin.keyring.own_first_contact

    def test_what_we_send_is_not_encrypted_to_the_servers_device(self) -> None:
        ours = device_item(self.tester.identity_certificate, self.tester.encryption_certificate)
        junk = junk_revocation(OTHER_OWN.fingerprint)
        self.discover(ME, [ours, junk])
        evil = device_item(SERVER_OWN.identity_certificate, SERVER_OWN.encryption_certificate)
        self.discover(ME, [ours, junk, evil])
        self.pin_alice()
        self.xmpp.send_message(mto=ALICE_JID, mbody="for alice only", mtype="chat")
        sent = self.take(lambda s: s.get("type") == "chat", "message to Alice")
        named = {k.get("identity-sha256") for k in sent.iter(f"{{{NS}}}key")}
        assert ALICE_DEVICE.fingerprint in named
        assert SERVER_OWN.fingerprint not in named


class TestRevocationRules(ReviewCase):
    """Attacks on the rules through the plugin. R13-1 would make any read with an
    ignored revocation fail (and so make these pass for the wrong reason): a
    harmless genuine revocation (Alice's first device pre-revoking an identity
    nobody holds) is accepted first, so that ``_accepted[alice]`` exists."""

    HARMLESS = sign_revocation(
        ALICE_DEVICE.identity_key, ALICE_DEVICE.identity_certificate, "ab" * 32, NOW
    )

    def items(self, *extra: str) -> list[str]:
        return [
            device_item(ALICE_DEVICE.identity_certificate, ALICE_DEVICE.encryption_certificate),
            device_item(ALICE_SECOND.identity_certificate, ALICE_SECOND.encryption_certificate),
            revocation_item(self.HARMLESS),
            *extra,
        ]

    def setUp(self) -> None:
        super().setUp()
        assert self.discover(ALICE_JID, self.items()) is None
        assert self.trust(ALICE_JID, ALICE_SECOND.fingerprint) is TrustState.TOFU
        assert self.plugin.directory.revocations.revoked_by(ALICE_JID, "ab" * 32) is not None

    def test_a_genuine_revocation_revokes_and_survives_the_item_disappearing(self) -> None:
        revocation = sign_revocation(
            ALICE_DEVICE.identity_key,
            ALICE_DEVICE.identity_certificate,
            ALICE_SECOND.fingerprint,
            NOW,
        )
        assert self.discover(ALICE_JID, self.items(revocation_item(revocation))) is None
        assert self.trust(ALICE_JID, ALICE_SECOND.fingerprint) is TrustState.REVOKED
        assert self.discover(ALICE_JID, self.items()) is None  # the server withdraws it
        assert self.trust(ALICE_JID, ALICE_SECOND.fingerprint) is TrustState.REVOKED

    def test_a_revocation_by_a_device_of_another_jid_is_void(self) -> None:
        """Attack (malicious contact Mallory, trusted for her own JID): she signs a
        revocation of Alice's device and the server puts it on Alice's node."""
        mallory = generate_device_keys("mallory@example.org", now=NOW)
        revocation = sign_revocation(
            mallory.identity_key, mallory.identity_certificate, ALICE_SECOND.fingerprint, NOW
        )
        assert self.discover(ALICE_JID, self.items(revocation_item(revocation))) is None
        assert self.trust(ALICE_JID, ALICE_SECOND.fingerprint) is TrustState.TOFU

    def test_a_revocation_with_the_wrong_key_or_a_changed_field_is_void(self) -> None:
        """Attack (hostile server): a genuine signature with ``issued`` changed, or
        moved onto another revoked id; a signature by another key under Alice's
        revoker id; a future-dated genuine one."""
        genuine = sign_revocation(
            ALICE_DEVICE.identity_key,
            ALICE_DEVICE.identity_certificate,
            ALICE_SECOND.fingerprint,
            NOW,
        )
        future = sign_revocation(
            ALICE_DEVICE.identity_key,
            ALICE_DEVICE.identity_certificate,
            ALICE_SECOND.fingerprint,
            NOW + timedelta(minutes=6),
        )
        bad = [
            Revocation(
                genuine.revoked,
                genuine.revoker,
                genuine.issued_at - timedelta(days=1),
                genuine.signature,
            ),
            Revocation(
                genuine.revoked,
                genuine.revoker,
                genuine.issued_at,
                Ed25519PrivateKey.generate().sign(b"x"),
            ),
            future,
        ]
        for revocation in bad:
            assert self.discover(ALICE_JID, self.items(revocation_item(revocation))) is None
            assert self.trust(ALICE_JID, ALICE_SECOND.fingerprint) is TrustState.TOFU
        moved = Revocation("cd" * 32, genuine.revoker, genuine.issued_at, genuine.signature)
        assert self.discover(ALICE_JID, self.items(revocation_item(moved))) is None
        assert self.plugin.directory.revocations.revoked_by(ALICE_JID, "cd" * 32) is None

    def test_a_revocation_of_a_device_held_for_another_jid_changes_nothing_there(self) -> None:
        """Attack (malicious contact Alice): her trusted device "revokes" the
        identity of Carol's device (not held for Alice: a pre-revocation): Carol's
        device, held for Carol, stays as it was."""
        carol = generate_device_keys("carol@example.org", now=NOW)
        self.xmpp.client_roster.add("carol@example.org", afrom=True, ato=True)
        item = device_item(carol.identity_certificate, carol.encryption_certificate)
        assert self.discover("carol@example.org", [item]) is None
        revocation = sign_revocation(
            ALICE_DEVICE.identity_key,
            ALICE_DEVICE.identity_certificate,
            carol.fingerprint,
            NOW,
        )
        assert self.discover(ALICE_JID, self.items(revocation_item(revocation))) is None
        assert self.trust("carol@example.org", carol.fingerprint) is TrustState.TOFU
        assert self.discover("carol@example.org", [item]) is None
        assert self.trust("carol@example.org", carol.fingerprint) is TrustState.TOFU


class TestRevocationFlood(ReviewCase):
    HARMLESS = TestRevocationRules.HARMLESS

    def test_revocations_remembered_per_contact_are_bounded(self) -> None:
        device = device_item(ALICE_DEVICE.identity_certificate, ALICE_DEVICE.encryption_certificate)
        for _round in range(4):
            flood = [
                revocation_item(
                    sign_revocation(
                        ALICE_DEVICE.identity_key,
                        ALICE_DEVICE.identity_certificate,
                        os.urandom(32).hex(),
                        NOW,
                    )
                )
                for _ in range(64)
            ]
            assert self.discover(ALICE_JID, [device, *flood]) is None
        stored = self.run_coro(self.plugin.persistence.storage.settings_with_prefix("revocation:"))
        assert len(stored) <= 64, len(stored)


class TestPreRevoked(ReviewCase):
    HARMLESS = TestRevocationRules.HARMLESS

    def test_a_pre_revoked_device_published_later_is_never_asked_about(self) -> None:
        """Attack (a thief holding a lost device of Alice's, publishing it again after
        Alice's good device revoked it before we ever saw it)."""
        device = device_item(ALICE_DEVICE.identity_certificate, ALICE_DEVICE.encryption_certificate)
        pre = sign_revocation(
            ALICE_DEVICE.identity_key,
            ALICE_DEVICE.identity_certificate,
            ALICE_SECOND.fingerprint,
            NOW,
        )
        assert self.discover(ALICE_JID, [device, revocation_item(pre)]) is None
        assert self.trust(ALICE_JID, ALICE_SECOND.fingerprint) is None  # not held: remembered
        lost = device_item(ALICE_SECOND.identity_certificate, ALICE_SECOND.encryption_certificate)
        assert self.discover(ALICE_JID, [device, lost]) is None  # the revocation item withheld
        assert self.trust(ALICE_JID, ALICE_SECOND.fingerprint) is TrustState.REVOKED
        assert self.events["objenc_key_changed"] == []


class TestRevokeWhenTheServerRefuses(ReviewCase):
    def test_a_refused_publication_still_revokes_the_lost_device_here(self) -> None:
        ours = device_item(self.tester.identity_certificate, self.tester.encryption_certificate)
        lost = device_item(OTHER_OWN.identity_certificate, OTHER_OWN.encryption_certificate)
        assert self.discover(ME, [ours, lost]) is None  # first contact: pinned
        assert self.trust(ME, OTHER_OWN.fingerprint) is TrustState.TOFU
        task = asyncio.ensure_future(self.plugin.revoke_device(OTHER_OWN.fingerprint))
        publish = self.take(
            lambda s: s.get("type") == "set" and "revoke-" in ET.tostring(s, encoding="unicode"),
            "publication of the revocation",
        )
        self.recv(
            f"<iq type='error' from='{ME}' to='{ME}/resource' id='{publish.get('id')}'>"
            "<error type='cancel'><forbidden xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>"
            "</error></iq>"
        )
        with pytest.raises(Exception):  # noqa: B017 - the application is told
            self.run_coro(asyncio.wait_for(task, 2))
        # the user did ask to revoke it: it must not be encrypted to any more
        assert self.trust(ME, OTHER_OWN.fingerprint) is TrustState.REVOKED
