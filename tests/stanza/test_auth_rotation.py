"""Rotation of encryption keys (PROTOCOL.md 13.10), attacked through the plugin.

Our device replaces its X25519 encryption key every ``rotate_every`` and keeps a
replaced one ``retention`` long; a contact's replaced certificate only proves
stanzas dated before its successor. Each test plays a hostile server (it
withholds, rolls back, replays, re-stamps), a thief or a malicious contact on
slixmpp's mock stream, with the plugin's clock injected (``self.now``). A test
marked ``xfail(strict=True)`` is an attack that currently SUCCEEDS (its reason
names the finding); a plain test is an attack that was tried and held.
"""

from __future__ import annotations

import asyncio
import base64
import os
import tempfile
import xml.etree.ElementTree as ET
from datetime import datetime, timedelta
from typing import Any

import pytest
from auth_harness import (
    ALICE_DEVICE,
    ALICE_JID,
    CHAT,
    DATA,
    E2E,
    EVENTS,
    KEY,
    ME,
    NOW,
    AuthTestCase,
    cert_id,
    device_item,
    recipient_of,
    sender_of,
)
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from slixmpp.test import SlixTest
from slixmpp.xmlstream import tostring
from testkit import TESTER

import slixmpp_objenc
from slixmpp_objenc.core import EncryptionError
from slixmpp_objenc.core.auth_envelope import AuthRecipient, AuthSender, open_authenticated
from slixmpp_objenc.core.constants import NS_OBJENC
from slixmpp_objenc.core.identities import (
    BACKDATE,
    DeviceKeys,
    generate_device_keys,
    issue_encryption_certificate,
)
from slixmpp_objenc.core.opening import SUPERSEDED_SLACK
from slixmpp_objenc.core.rotation import DEFAULT_RETENTION, DEFAULT_ROTATE_EVERY
from slixmpp_objenc.core.timestamps import format_timestamp
from slixmpp_objenc.held_certificates import MAX_PREVIOUS, split_pem
from slixmpp_objenc.own_device import RotationOutcome
from slixmpp_objenc.plugin import NODE_CERTS
from slixmpp_objenc.store import MemoryStorage, SQLiteStorage, TrustState

NS_PUBSUB = "http://jabber.org/protocol/pubsub"
NS_OWNER = NS_PUBSUB + "#owner"
NS_DATA = "jabber:x:data"
DEVICE = f"{{{NS_OBJENC}}}device"
ENCRYPTION = f"{{{NS_OBJENC}}}encryption"
WEEK = DEFAULT_ROTATE_EVERY
RETENTION = DEFAULT_RETENTION
ROTATION_EVENTS = ("objenc_key_rotated", "objenc_key_destroyed", "objenc_own_device_held")
ALICE = generate_device_keys(
    ALICE_JID, now=NOW - timedelta(days=10), encryption_validity=timedelta(days=365)
)
"""Alice's device, valid for a year: the tests that move the clock by weeks are
about our keys, not hers (a default certificate of hers expires after 37 days)."""


def alice_item(encryption: x509.Certificate | None = None, keys: DeviceKeys = ALICE) -> str:
    return device_item(keys.identity_certificate, encryption or keys.encryption_certificate)


def delay(stamp: datetime) -> str:
    """An XEP-0203 stamp our own server adds (offline storage)."""
    return f"<delay xmlns='urn:xmpp:delay' from='localhost' stamp='{format_timestamp(stamp)}'/>"


class RotationCase(AuthTestCase):
    """The tester's device with a store that outlives the plugin (``restart``) and
    a scripted server for our own node (``serve``)."""

    recorded_events = EVENTS + ROTATION_EVENTS

    def setUp(self) -> None:
        self.published: list[x509.Certificate] = []
        """Encryption certificates in the <device/> items we published, in order."""
        super().setUp()

    def before_ready(self) -> None:
        self.own_items: dict[str, str] = {}

    def tearDown(self) -> None:
        self.stop_plugin()

    def drain(self) -> None:
        """The harness's, without waiting on an empty socket (the file stays fast)."""
        for _ in range(4):
            self.wait_for_send_queue()
            self.wait_()
            while (raw := self.xmpp.socket.next_sent()) is not None:
                self.outbox.append(ET.fromstring(raw))

    # our server ------------------------------------------------------------------------

    @property
    def keys(self) -> DeviceKeys:
        keys = self.plugin.keyring.device.keys
        assert keys is not None
        return keys

    def serve(self, until: asyncio.Future[Any] | None = None) -> None:
        """Play our own server for our node until nothing more is asked (and
        ``until`` is done): publications accepted (their <device/> items recorded
        in :attr:`published`), the node reported contacts-only, reads of it
        answered with what was published."""
        quiet = 0
        for _ in range(50):
            self.drain()
            requests = [s for s in self.outbox if self._to_own_node(s)]
            for iq in requests:
                self.outbox.remove(iq)
                self.recv(self._answer(iq))
            quiet = 0 if requests else quiet + 1
            if quiet >= 2 and (until is None or until.done()):
                return
            self.wait_(0.01)
        raise AssertionError("our node was still being asked after 50 rounds")

    def _to_own_node(self, stanza: ET.Element) -> bool:
        text = ET.tostring(stanza, encoding="unicode")
        return (
            stanza.tag.endswith("iq")
            and stanza.get("type") in ("get", "set")
            and stanza.get("to") in (None, ME)
            and NODE_CERTS in text
        )

    def _answer(self, iq: ET.Element) -> str:
        sender = f"from='{iq.get('to')}' " if iq.get("to") else ""
        head = f"<iq type='result' {sender}to='{ME}/resource' id='{iq.get('id')}'>"
        configure = iq.find(f"{{{NS_OWNER}}}pubsub/{{{NS_OWNER}}}configure")
        if configure is not None and iq.get("type") == "get":
            fields = "".join(
                f"<field var='pubsub#{name}'><value>{value}</value></field>"
                for name, value in (("access_model", "presence"), ("max_items", "max"))
            )
            return (
                f"{head}<pubsub xmlns='{NS_OWNER}'><configure node='{NODE_CERTS}'>"
                f"<x xmlns='{NS_DATA}' type='form'><field var='FORM_TYPE' type='hidden'>"
                f"<value>{NS_PUBSUB}#node_config</value></field>{fields}</x>"
                "</configure></pubsub></iq>"
            )
        item = iq.find(f"{{{NS_PUBSUB}}}pubsub/{{{NS_PUBSUB}}}publish/{{{NS_PUBSUB}}}item")
        if item is not None:
            encryption = item.find(f"{DEVICE}/{ENCRYPTION}")
            if encryption is not None:
                der = base64.b64decode(encryption.text or "")
                self.published.append(x509.load_der_x509_certificate(der))
            item.tag = "item"
            self.own_items[item.get("id", "")] = tostring(item)
            return f"{head}</iq>"
        if iq.find(f"{{{NS_PUBSUB}}}pubsub/{{{NS_PUBSUB}}}items") is not None:
            items = "".join(self.own_items.values())
            return (
                f"{head}<pubsub xmlns='{NS_PUBSUB}'><items node='{NODE_CERTS}'>"
                f"{items}</items></pubsub></iq>"
            )
        return f"{head}</iq>"

    def start_session(self) -> None:
        """The session starts: the plugin publishes our device and reads our node."""
        self.xmpp.event("session_start")
        self.serve()

    def rotate(self) -> RotationOutcome | None:
        """``rotate_keys()`` now, our server answering what it publishes."""
        task = asyncio.ensure_future(self.plugin.rotate_keys())
        self.serve(task)
        return self.run_coro(asyncio.wait_for(task, 5))

    # Alice ---------------------------------------------------------------------------

    def pin(self, item: str) -> None:
        """The tester reads Alice's node, answered with ``item``."""
        task = asyncio.ensure_future(self.plugin.discover(ALICE_JID))
        self.answer_fetch(ALICE_JID, [item])
        self.run_coro(asyncio.wait_for(task, 2))

    def alice_publishes(self, item: str) -> None:
        """A notification that Alice's node changed; it is read, answered with ``item``."""
        self.notify(ALICE_JID, [item])
        self.answer_fetch(ALICE_JID, [item])

    def from_alice(
        self,
        body: str,
        *,
        to: DeviceKeys | AuthRecipient | None = None,
        sender: DeviceKeys = ALICE,
        timestamp: datetime | None = None,
    ) -> ET.Element:
        """Alice's authenticated copy of a chat message, to ``to`` (our current key)."""
        recipient = to if isinstance(to, AuthRecipient) else recipient_of(to or self.keys)
        return self.sealed(
            CHAT.format(body=body),
            sender=sender_of(sender),
            recipients=[recipient],
            timestamp=timestamp,
        )

    def deliver(self, e2e: ET.Element, *, stamp: datetime | None = None, oid: str = "o") -> None:
        extra = delay(stamp) if stamp is not None else ""
        wire = self.wire(e2e, outer_id=oid)
        self.recv(wire.replace("</message>", f"{extra}</message>"))

    def send_to_alice(self, body: str) -> ET.Element | None:
        """What the plugin puts on the wire for a chat message to Alice (``None``: nothing)."""
        self.xmpp.send_message(mto=ALICE_JID, mbody=body, mtype="chat")
        self.drain()
        sent = [s for s in self.outbox if s.tag.endswith("message") and s.get("type") != "error"]
        for stanza in sent:
            self.outbox.remove(stanza)
            assert body.encode() not in ET.tostring(stanza), "sent in the clear"
        assert len(sent) <= 1
        return sent[0] if sent else None

    def replies(self) -> list[bytes]:
        """Error replies sent so far (removed from the outbox)."""
        self.drain()
        errors = [s for s in self.outbox if s.get("type") == "error"]
        for stanza in errors:
            self.outbox.remove(stanza)
        return [ET.tostring(s) for s in errors]


def wrapped_for(stanza: ET.Element) -> set[tuple[str | None, str | None]]:
    return {(k.get("identity-sha256"), k.get("cert-sha256")) for k in stanza.iter(KEY)}


def sealed_by(stanza: ET.Element) -> str | None:
    data = stanza.find(f"{E2E}/{DATA}")
    assert data is not None
    return data.get("cert-sha256")


def fingerprint(certificate: x509.Certificate) -> str:
    return cert_id(certificate).hex()


# -- 1. our rotation -------------------------------------------------------------------


class TestOurRotation(RotationCase):
    def test_rotation_publishes_seals_with_the_new_key_and_destroys_the_old_one(self) -> None:
        """Forward secrecy end to end: after rotate_every a new certificate is
        published and used; the old key opens late stanzas for the retention, then
        is destroyed, and a stanza sealed to it is refused with no oracle."""
        self.start_session()
        old = self.tester
        assert [fingerprint(c) for c in self.published] == [old.encryption_fingerprint]
        self.pin(alice_item())
        late = self.from_alice("sealed to the key of last week", to=old)
        sent_at = self.now

        self.now = NOW + WEEK
        outcome = self.rotate()
        new = self.keys
        assert outcome is not None and outcome.rotated == new.encryption_fingerprint
        assert outcome.retired == (old.encryption_fingerprint,) and outcome.destroyed == ()
        assert new.fingerprint == old.fingerprint  # same identity: no key-change prompt
        [rotated] = self.events["objenc_key_rotated"]
        assert rotated.fingerprint == new.encryption_fingerprint
        assert rotated.retired == (old.encryption_fingerprint,)
        assert self.events["objenc_key_destroyed"] == []
        # the <device/> item published now carries the new certificate
        assert self.published[1:] == [new.encryption_certificate]
        certificate = new.encryption_certificate
        assert certificate.not_valid_before_utc == self.now - BACKDATE
        assert certificate.not_valid_after_utc - certificate.not_valid_before_utc == (
            WEEK + RETENTION
        )
        # what we send from now on is sealed with the new key, and to it for us
        sent = self.send_to_alice("after the rotation")
        assert sent is not None and sealed_by(sent) == new.encryption_fingerprint
        assert wrapped_for(sent) == {
            (ALICE.fingerprint, ALICE.encryption_fingerprint),
            (new.fingerprint, new.encryption_fingerprint),
        }
        public = new.encryption_certificate.public_key()

        def resolve(jid: str, identity: bytes, encryption: bytes) -> X25519PublicKey | None:
            ours = (jid, identity.hex(), encryption.hex())
            expected = (ME, new.fingerprint, new.encryption_fingerprint)
            return public if ours == expected and isinstance(public, X25519PublicKey) else None

        [e2e] = sent.findall(E2E)
        opened = open_authenticated(e2e, sender_of(ALICE), resolve, ME)
        assert opened.stanza.findtext("{jabber:client}body") == "after the rotation"

        # a stanza Alice sealed to the old key before reading our node still opens
        self.deliver(late, stamp=sent_at, oid="late")
        assert self.bodies() == ["sealed to the key of last week"]
        fresh = self.from_alice("she has not read our node yet", to=old)
        self.deliver(fresh, oid="fresh")
        assert self.bodies()[-1] == "she has not read our node yet"

        # past the retention the old key is destroyed
        self.now = NOW + WEEK + RETENTION
        outcome = self.rotate()
        assert outcome is not None and outcome.destroyed == (old.encryption_fingerprint,)
        [destroyed] = self.events["objenc_key_destroyed"]
        assert destroyed.fingerprint == old.encryption_fingerprint
        assert destroyed.destroyed_at == self.now
        assert isinstance(self.storage, MemoryStorage)
        assert old.encryption_fingerprint not in self.storage.encryption_keys
        assert self.replies() == []

        # to the destroyed key: refused, said locally; the reply is case 4's
        to_destroyed = self.from_alice("to the destroyed key", to=old)
        self.deliver(to_destroyed, oid="probe")
        assert self.failures() == ["key-destroyed"]
        destroyed_reply = self.replies()
        # controls: a key of ours that never existed, and a spoiled one to the current key
        never = AuthRecipient(
            bytes.fromhex(new.fingerprint),
            os.urandom(32),
            X25519PrivateKey.generate().public_key(),
        )
        self.deliver(self.from_alice("to no key of ours", to=never), oid="probe")
        spoiled = self.from_alice("spoiled")
        data = spoiled.find(DATA)
        assert data is not None
        raw = bytearray(base64.b64decode(data.text or ""))
        raw[-1] ^= 1
        data.text = base64.b64encode(bytes(raw)).decode()
        self.deliver(spoiled, oid="probe")
        assert self.failures() == ["key-destroyed", "undecryptable", "undecryptable"]
        undecryptable = self.replies()
        assert len(destroyed_reply) == 1 and len(undecryptable) == 2
        assert destroyed_reply == undecryptable[:1] == undecryptable[1:]
        assert b"destroy" not in destroyed_reply[0]
        assert self.bodies()[-1] == "she has not read our node yet"


# -- 2. rotation at start --------------------------------------------------------------


class TestRotationAtStart(RotationCase):
    def test_a_restart_after_rotate_every_rotates_before_the_first_publication(self) -> None:
        """A server that sees us reconnect after a week is never shown the old
        certificate again: the first <device/> item already carries the new one;
        past the retention the old key is destroyed at start (MemoryStorage here,
        SQLite below)."""
        self.start_session()
        old = self.tester
        self.pin(alice_item())
        offline = self.from_alice("written while we were away", to=old)
        sent_at = self.now
        self.now = NOW + WEEK + timedelta(hours=1)
        self.restart()
        new = self.keys
        assert new.fingerprint == old.fingerprint
        assert new.encryption_fingerprint != old.encryption_fingerprint
        [rotated] = self.events["objenc_key_rotated"]  # at load, before any session
        assert rotated.fingerprint == new.encryption_fingerprint
        assert rotated.retired == (old.encryption_fingerprint,)
        assert self.published == [old.encryption_certificate]  # nothing since the restart
        self.start_session()
        assert self.published[1:] == [new.encryption_certificate]
        # what Alice sealed to the old key while we were away still opens
        self.deliver(offline, stamp=sent_at, oid="offline")
        assert self.bodies() == ["written while we were away"]
        # restarted past the retention: destroyed at start, before anything opens
        self.now += RETENTION
        self.restart()
        assert [e.fingerprint for e in self.events["objenc_key_destroyed"]] == [
            old.encryption_fingerprint
        ]
        assert len(self.events["objenc_key_rotated"]) == 1
        self.start_session()
        assert old.encryption_certificate not in self.published[1:]
        assert self.published[-1] == self.keys.encryption_certificate
        self.deliver(self.from_alice("too late", to=old), oid="too-late")
        assert self.failures() == ["key-destroyed"]
        assert self.bodies() == []
        # reading our own node back never prompts about our own rotated device
        assert self.events["objenc_own_device_held"] == []
        assert self.events["objenc_key_changed"] == []


class TestRotationAtStartSQLite(TestRotationAtStart):
    def setUp(self) -> None:
        self.files = tempfile.TemporaryDirectory()
        self.addCleanup(self.files.cleanup)
        super().setUp()

    def start_plugin(self) -> None:
        if not isinstance(self.storage, SQLiteStorage):
            self.storage = SQLiteStorage(os.path.join(self.files.name, "account.sqlite"))
        super().start_plugin()


# -- 3. the server withholds Alice's new certificate -------------------------------------


class TestWithheldCertificate(RotationCase):
    def test_we_encrypt_to_her_certificate_until_it_expires_then_fail_closed(self) -> None:
        """Withholding: the server never shows Alice's next certificate. Her current
        one is used until its notAfter (rotate_every + retention after issuance),
        never after: the message is refused loudly, not sent, never in the clear."""
        self.pin(alice_item(keys=ALICE_DEVICE))
        held = ALICE_DEVICE.encryption_certificate
        to_held = (ALICE_DEVICE.fingerprint, fingerprint(held))
        expiry = held.not_valid_after_utc
        assert expiry == NOW - BACKDATE + WEEK + RETENTION
        for days in (8, 15, 22, 29, 36):
            self.now = NOW + timedelta(days=days)
            self.rotate()  # our own key stays fresh (the timer's work)
            sent = self.send_to_alice(f"day {days}")
            assert sent is not None and to_held in wrapped_for(sent)
        self.now = expiry
        sent = self.send_to_alice("the last second of her certificate")
        assert sent is not None and to_held in wrapped_for(sent)
        self.now = expiry + timedelta(seconds=1)
        assert self.send_to_alice("one second too late") is None
        [failed] = self.events["objenc_encryption_failed"]
        assert "not sending in the clear" in str(failed.error)
        assert self.plugin.peer_certificate(ALICE_JID) is None
        # her stanzas sealed with the expired key do not open either (a thief's)
        self.deliver(self.from_alice("expired key", sender=ALICE_DEVICE), oid="expired")
        if not self.no_fetch_pending():  # unknown: her node is read once, as withheld
            self.answer_fetch(ALICE_JID, [alice_item(keys=ALICE_DEVICE)])
        assert self.bodies() == [] and self.failures() == ["undecryptable"]
        # the server finally lets her new certificate through: encryption resumes
        renewed_key = X25519PrivateKey.generate()
        renewed = issue_encryption_certificate(
            ALICE_DEVICE.identity_key,
            ALICE_DEVICE.identity_certificate,
            renewed_key.public_key(),
            now=self.now,
        )
        self.alice_publishes(alice_item(renewed, keys=ALICE_DEVICE))
        sent = self.send_to_alice("to her new key")
        assert sent is not None
        assert (ALICE_DEVICE.fingerprint, fingerprint(renewed)) in wrapped_for(sent)
        assert to_held not in wrapped_for(sent)


# -- 4. the server rolls Alice's certificate back ----------------------------------------


class TestRolledBackCertificate(RotationCase):
    def test_an_older_certificate_served_again_proves_only_what_predates_its_successor(
        self,
    ) -> None:
        """Rollback: after we saw Alice's newer certificate the server serves the
        older (still valid) one again. We keep sealing to the newer; the older key
        (a thief's copy of it) proves only stanzas dated before the newer's
        notBefore plus SUPERSEDED_SLACK."""
        self.pin(alice_item())
        older = ALICE.encryption_certificate
        rotated_at = NOW + timedelta(days=1)
        sealed_before = self.from_alice(
            "before her rotation", timestamp=rotated_at - timedelta(hours=1)
        )
        newer_key = X25519PrivateKey.generate()
        newer = issue_encryption_certificate(
            ALICE.identity_key, ALICE.identity_certificate, newer_key.public_key(), now=rotated_at
        )
        self.now = rotated_at + timedelta(minutes=1)
        self.alice_publishes(alice_item(newer))
        # the server now serves her node as it was, by notification and after a restart
        self.alice_publishes(alice_item(older))
        self.restart()
        self.alice_publishes(alice_item(older))
        record = self.plugin.keyring.record(ALICE_JID, ALICE.fingerprint)
        assert record is not None and record.trust is TrustState.TOFU
        assert x509.load_pem_x509_certificate(record.encryption_pem or b"") == newer
        assert self.events["objenc_key_changed"] == []  # a rotation is no key change
        self.now = rotated_at + timedelta(hours=2)
        sent = self.send_to_alice("to her newer key only")
        assert sent is not None
        assert (ALICE.fingerprint, fingerprint(newer)) in wrapped_for(sent)
        assert (ALICE.fingerprint, fingerprint(older)) not in wrapped_for(sent)
        # the older key, for stanzas dated up to the newer's notBefore + slack
        limit = newer.not_valid_before_utc + SUPERSEDED_SLACK
        self.deliver(sealed_before, stamp=rotated_at - timedelta(hours=1), oid="a")
        on_time = limit - timedelta(seconds=1)
        self.deliver(self.from_alice("at the limit", timestamp=on_time), stamp=on_time, oid="b")
        assert self.bodies() == ["before her rotation", "at the limit"]
        past = limit + timedelta(seconds=1)
        self.deliver(self.from_alice("just past it", timestamp=past), stamp=past, oid="c")
        self.deliver(self.from_alice("dated now"), oid="d")  # a thief with the old key
        assert self.failures() == ["undecryptable", "undecryptable"]
        assert self.bodies() == ["before her rotation", "at the limit"]
        newer_sender = AuthSender(newer_key, cert_id(ALICE.identity_certificate), cert_id(newer))
        self.deliver(
            self.sealed(CHAT.format(body="with her newer key"), sender=newer_sender), oid="e"
        )
        assert self.bodies()[-1] == "with her newer key"


# -- 5. replays to a replaced or destroyed key -------------------------------------------


class TestReplayAcrossRotation(RotationCase):
    def test_replays_to_a_replaced_or_destroyed_key_with_fresh_stamps_are_refused(self) -> None:
        """Replay: the server re-sends stanzas sealed to our old key with a fresh
        <delay/> stamp, before and after the key is destroyed (and after a restart)."""
        self.pin(alice_item())
        old = self.tester
        delivered = self.from_alice("delivered before the rotation", to=old)
        delivered_at = self.now
        self.deliver(delivered, oid="s1")
        self.now = NOW + timedelta(hours=1)
        withheld_at = self.now
        withheld = self.from_alice("withheld by the server", to=old)
        never = self.from_alice("never delivered", to=old)
        self.now = NOW + WEEK
        assert self.rotate() is not None
        # replayed while the old key is still kept: the replay state refuses it
        self.deliver(delivered, stamp=self.now, oid="r1")  # fresh stamp: N is far from it
        self.deliver(delivered, stamp=delivered_at, oid="r2")  # its own stamp: a replay
        self.deliver(delivered, oid="r3")  # no stamp
        assert [e.reason for e in self.events["objenc_bad_timestamp"]] == ["replay"] * 3
        self.deliver(never, stamp=self.now, oid="r4")  # withheld, then re-stamped
        assert [e.reason for e in self.events["objenc_bad_timestamp"]][-1] == "old"
        # control: a genuine late delivery, with the stamp of when it was stored
        self.deliver(withheld, stamp=withheld_at, oid="late")
        assert self.bodies() == ["delivered before the rotation", "withheld by the server"]
        # destroyed: whatever the stamp, nothing opens
        self.now = NOW + WEEK + RETENTION
        outcome = self.rotate()
        assert outcome is not None and outcome.destroyed == (old.encryption_fingerprint,)
        for oid, e2e in (("d1", delivered), ("d2", withheld), ("d3", never)):
            self.deliver(e2e, stamp=self.now, oid=oid)
        assert self.failures() == ["key-destroyed"] * 3
        self.restart()
        self.deliver(never, stamp=self.now, oid="d4")
        assert self.failures() == ["key-destroyed"]
        assert self.bodies() == []


# -- 6. our clock jumps back -------------------------------------------------------------


class TestClockJumpsBack(RotationCase):
    def test_a_key_dated_in_the_future_is_replaced_and_nothing_is_destroyed_early(self) -> None:
        """Clock jump: our clock goes back more than rotate_every before the current
        key's issuance. The plan replaces that key (else it would be kept for
        ever); no key is destroyed before it was retired for the retention, and
        the new certificate is valid now."""
        present = NOW + timedelta(days=20)
        first = self.tester  # made 20 days before the present
        self.now = present
        assert (outcome := self.rotate()) is not None and outcome.rotated is not None
        second = self.keys  # issued at present
        self.pin(alice_item())
        to_second = self.from_alice("to the second key", to=second)
        sealed_at = self.now
        self.now = present - WEEK - timedelta(days=1)  # eight days before the second key
        outcome = self.rotate()
        third = self.keys
        assert outcome is not None and outcome.rotated == third.encryption_fingerprint
        assert outcome.retired == (second.encryption_fingerprint,)
        assert outcome.destroyed == ()  # the first was retired "in the future"
        certificate = third.encryption_certificate
        assert certificate.not_valid_before_utc <= self.now <= certificate.not_valid_after_utc
        own = self.plugin.keyring.device.certificate()
        assert own is not None and own.encryption is not None
        assert own.encryption.fingerprint == third.encryption_fingerprint
        sent = self.send_to_alice("after the jump")
        assert sent is not None and sealed_by(sent) == third.encryption_fingerprint
        to_third = self.from_alice("to the third key", to=third, timestamp=self.now)
        self.deliver(to_third, oid="a")  # dated as our clock reads (else: "future")
        # the clock comes back: the third key is due (eight days old); nothing destroyed
        self.now = present + timedelta(hours=1)
        outcome = self.rotate()
        assert outcome is not None and outcome.rotated is not None and outcome.destroyed == ()
        self.deliver(to_second, stamp=sealed_at, oid="b")
        self.deliver(self.from_alice("to the first key", to=first), oid="c")
        assert self.bodies() == ["to the third key", "to the second key", "to the first key"]
        assert self.events["objenc_key_destroyed"] == []
        # each is destroyed the retention after its own retirement by this clock
        retired_at = {
            first.encryption_fingerprint: present,
            second.encryption_fingerprint: present - WEEK - timedelta(days=1),
        }
        for fingerprint_, at in sorted(retired_at.items(), key=lambda kv: kv[1]):
            self.now = at + RETENTION - timedelta(seconds=1)
            self.rotate()
            assert fingerprint_ not in [e.fingerprint for e in self.events["objenc_key_destroyed"]]
            self.now = at + RETENTION
            self.rotate()
            assert fingerprint_ in [e.fingerprint for e in self.events["objenc_key_destroyed"]]


# -- a malicious contact rotating without end --------------------------------------------


class TestRotationFlood(RotationCase):
    def test_a_contact_rotating_without_end_does_not_grow_what_we_keep(self) -> None:
        """Flood: Alice (malicious) publishes a newer encryption certificate at every
        notification. What we hold for her stays bounded: the record keeps the
        current one and MAX_PREVIOUS earlier ones; the checked views too."""
        self.pin(alice_item())
        rotations = 3 * MAX_PREVIOUS
        for second in range(rotations):
            certificate = issue_encryption_certificate(
                ALICE.identity_key,
                ALICE.identity_certificate,
                X25519PrivateKey.generate().public_key(),
                now=self.now - timedelta(seconds=rotations - second),
            )
            self.alice_publishes(alice_item(certificate))
        record = self.plugin.keyring.record(ALICE_JID, ALICE.fingerprint)
        assert record is not None
        assert x509.load_pem_x509_certificate(record.encryption_pem or b"") == certificate
        assert len(split_pem(record.previous_encryption_pem)) == MAX_PREVIOUS
        assert self.events["objenc_key_changed"] == []  # rotation never prompts
        cache = self.plugin.keyring._checked._cache
        views = sum(len(v) if isinstance(v, dict) else 1 for v in cache.values())
        assert views <= MAX_PREVIOUS + 2, views


# -- our certificate past its notAfter without a rotation run ----------------------------

SUSPENDED = (
    "FINDING (medium, availability; no attacker needed): the rotation runs at plugin "
    "load and on a loop timer (monotonic, at most 6 h), not at session start nor before "
    "sealing. A process that slept past our certificate's notAfter (laptop lid closed "
    "for 38 days) reconnects and "
)


class TestLongSuspend(RotationCase):
    def long_suspend(self) -> None:
        self.pin(alice_item())
        self.now = NOW + WEEK + RETENTION + timedelta(days=1)  # no rotation ran meanwhile

    def test_the_session_after_a_long_suspend_publishes_a_certificate_valid_now(self) -> None:
        """Stale publication: the session that starts on resume publishes a
        certificate valid now, never the expired one."""
        self.long_suspend()
        self.start_session()
        assert self.published
        certificate = self.published[-1]
        assert certificate.not_valid_before_utc <= self.now <= certificate.not_valid_after_utc

    def test_a_message_sent_after_a_long_suspend_is_sealed_or_reported(self) -> None:
        """Silent loss: a message sent before the timer catches up is either sealed
        with a valid key or reported as not sent (objenc_encryption_failed)."""
        self.long_suspend()
        sent = self.send_to_alice("after a long suspend")
        assert sent is not None or self.events["objenc_encryption_failed"]
        if sent is not None:
            assert sealed_by(sent) == self.keys.encryption_fingerprint
            certificate = self.keys.encryption_certificate
            assert certificate.not_valid_after_utc >= self.now


# -- 7. the policy's configuration -------------------------------------------------------


class TestPolicyInSeconds(RotationCase):
    def config(self) -> dict[str, Any]:
        return {"rotate_every": 86400, "retention": timedelta(days=2)}

    def test_rotate_every_and_retention_set_the_certificate_validity(self) -> None:
        """Policy: a day (in seconds) and two days (a timedelta) make certificates
        valid three days, rotated daily, their keys destroyed two days after."""
        three_days = timedelta(days=3)
        first = self.tester.encryption_certificate
        assert first.not_valid_after_utc - first.not_valid_before_utc == three_days
        self.now = NOW + timedelta(days=1) - timedelta(seconds=1)
        outcome = self.rotate()
        assert outcome is not None and outcome.rotated is None
        self.now = NOW + timedelta(days=1)
        outcome = self.rotate()
        assert outcome is not None and outcome.rotated is not None
        second = self.keys.encryption_certificate
        assert second.not_valid_after_utc - second.not_valid_before_utc == three_days
        assert outcome.next_check == self.now + timedelta(days=1)
        self.now = NOW + timedelta(days=3)
        outcome = self.rotate()
        assert outcome is not None
        assert fingerprint(first) in outcome.destroyed


class TestPolicyAsTimedelta(RotationCase):
    def config(self) -> dict[str, Any]:
        return {"rotate_every": timedelta(hours=1), "retention": 90.0}

    def test_the_shortest_schedule_is_taken(self) -> None:
        """Policy: one hour (the minimum) and 90 seconds (a float) are taken as given."""
        first = self.tester.encryption_certificate
        validity = first.not_valid_after_utc - first.not_valid_before_utc
        assert validity == timedelta(hours=1, seconds=90)
        self.now = NOW + timedelta(hours=1)
        assert (outcome := self.rotate()) is not None and outcome.rotated is not None
        self.now += timedelta(seconds=90)
        assert (outcome := self.rotate()) is not None
        assert outcome.destroyed == (fingerprint(first),)


class TestPolicyRefused(SlixTest):
    def test_a_schedule_under_an_hour_is_refused_at_registration(self) -> None:
        """Policy: rotate_every under an hour (seconds or timedelta) or a negative
        retention is refused at registration, before any key is made or published."""
        for config in (
            {"rotate_every": 3599},
            {"rotate_every": timedelta(minutes=59, seconds=59.9)},
            {"rotate_every": 0},
            {"retention": -1},
            {"retention": timedelta(seconds=-1)},
        ):
            storage = MemoryStorage()
            self.stream_start(mode="client", jid=f"{ME}/resource", plugins=["xep_0030"])
            try:
                with pytest.raises(EncryptionError):
                    self.xmpp.register_plugin(
                        "objenc",
                        module=slixmpp_objenc,
                        pconfig={"identity": TESTER, "storage": storage, **config},
                    )
                self.wait_for_send_queue()
                self.wait_()
                assert storage.identities == {} and storage.encryption_keys == {}, config
                assert self.xmpp.socket.next_sent() is None, config
            finally:
                self.stream_close()
        # the minimum itself is taken
        self.stream_start(mode="client", jid=f"{ME}/resource", plugins=["xep_0030"])
        try:
            self.xmpp.register_plugin(
                "objenc",
                module=slixmpp_objenc,
                pconfig={"identity": TESTER, "storage": MemoryStorage(), "rotate_every": 3600},
            )
            policy = self.xmpp.plugin["objenc"].keyring.device.policy
            assert policy.rotate_every == timedelta(hours=1)
            self.run_coro(self.xmpp.plugin["objenc"].ready())
        finally:
            self.xmpp.plugin["objenc"].rotation.stop()
            self.xmpp.plugin["objenc"].tasks.cancel_all()
            self.stream_close()
