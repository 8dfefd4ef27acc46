"""The post-quantum hybrid wrap (docs/_hybrid_draft.md) and the shared passphrase
through the real plugin path, on slixmpp's mock stream, attacked.

The tester's device runs the authenticated profile and makes an ML-KEM-768 key
with each encryption key (own_device). Alice is played by the core: her device
has all three certificates (identity, X25519 encryption, ML-KEM-768, the last
two of one issuance), published as ``<device><identity/><encryption/><kem/>``
on her node; she seals what she sends with ``seal_authenticated(...,
hybrid=True, second=...)`` and opens what the plugin sends her with
``open_authenticated``. A hostile server can change everything on the wire and
on her node, but holds none of her private keys.

The passphrase's scrypt (0.35 s) runs once per passphrase for Alice's side
(:func:`alice_second`, cached for the module) and once per ``set_passphrase``
on ours. A test marked ``xfail(strict=True)`` is an attack that currently
SUCCEEDS (its reason names the finding); a plain test is one that held.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import functools
import shutil
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from auth_harness import (
    ALICE_DEVICE,
    ALICE_JID,
    CHAT,
    DATA,
    E2E,
    KEY,
    MALLORY_DEVICE,
    ME,
    NOW,
    AuthTestCase,
    cert_id,
    der,
    device_item,
    recipient_of,
    sender_of,
)
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.mlkem import MLKEM768PrivateKey, MLKEM768PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from slixmpp_objenc.core import EncryptionError, InvalidEnvelope
from slixmpp_objenc.core.auth_envelope import (
    WRAP_ALGO,
    AuthRecipient,
    AuthSender,
    open_authenticated,
    seal_authenticated,
)
from slixmpp_objenc.core.constants import NS_OBJENC
from slixmpp_objenc.core.hybrid import (
    HYBRID_CIPHER_ALGO,
    issue_kem_certificate,
    stretch_passphrase,
    with_kem_key,
)
from slixmpp_objenc.core.identities import BACKDATE, DeviceKeys, generate_device_keys
from slixmpp_objenc.store import SQLiteStorage, Storage, TrustState

NS_CLIENT = "jabber:client"
PASSPHRASE = "correct horse"
WRONG = "correct horse battery"


ALICE = with_kem_key(ALICE_DEVICE)
"""Alice's device (the harness's identity and encryption certificates) with an ML-KEM key."""
ALICE_OTHERS = [with_kem_key(generate_device_keys(ALICE_JID, now=NOW)) for _ in range(3)]
"""Three more devices of Alice's, each with an ML-KEM key."""
ALICE_OLD = generate_device_keys(ALICE_JID, now=NOW)
"""A device of Alice's whose client predates the hybrid: no ML-KEM key."""


@functools.cache
def alice_second(passphrase: str) -> bytes:
    """Alice's ``second`` for the conversation with the tester (scrypt, once)."""
    return stretch_passphrase(passphrase, ALICE_JID, ME)


def item(keys: DeviceKeys, kem: x509.Certificate | None = None) -> str:
    """A ``<device/>`` item with ``<kem/>`` after ``<encryption/>``: ``kem``, else
    the device's own ML-KEM certificate, else none."""
    kem = kem or keys.kem_certificate
    if kem is None:
        return device_item(keys.identity_certificate, keys.encryption_certificate)
    b64 = base64.b64encode
    return (
        f"<item id='{keys.fingerprint}'><device xmlns='{NS_OBJENC}'>"
        f"<identity>{b64(der(keys.identity_certificate)).decode()}</identity>"
        f"<encryption>{b64(der(keys.encryption_certificate)).decode()}</encryption>"
        f"<kem>{b64(der(kem)).decode()}</kem>"
        "</device></item>"
    )


def hybrid_sender(keys: DeviceKeys) -> AuthSender:
    """A device as a sender that can also open hybrid wraps (its ML-KEM key)."""
    assert keys.kem_key is not None and keys.kem_certificate is not None
    base = sender_of(keys)
    return AuthSender(
        base.encryption_key,
        base.identity_id,
        base.encryption_id,
        keys.kem_key,
        cert_id(keys.kem_certificate),
    )


def hybrid_recipient(keys: DeviceKeys) -> AuthRecipient:
    """A device as a recipient of hybrid wraps, from its public certificates."""
    assert keys.kem_certificate is not None
    kem_public = keys.kem_certificate.public_key()
    assert isinstance(kem_public, MLKEM768PublicKey)
    base = recipient_of(keys)
    return AuthRecipient(
        base.identity_id,
        base.encryption_id,
        base.public_key,
        cert_id(keys.kem_certificate),
        kem_public,
    )


def key_names(e2e: ET.Element) -> set[tuple[str | None, ...]]:
    """``(cipher-algo, identity-sha256, cert-sha256, kem-sha256)`` of each ``<key/>``."""
    return {
        (k.get("cipher-algo"), k.get("identity-sha256"), k.get("cert-sha256"), k.get("kem-sha256"))
        for k in e2e.findall(KEY)
    }


def hybrid_name(keys: DeviceKeys) -> tuple[str | None, ...]:
    return (HYBRID_CIPHER_ALGO, keys.fingerprint, keys.encryption_fingerprint, keys.kem_fingerprint)


def auth_name(keys: DeviceKeys) -> tuple[str | None, ...]:
    return (WRAP_ALGO, keys.fingerprint, keys.encryption_fingerprint, None)


def held_bundle(record: Any) -> list[x509.Certificate]:
    """The encryption certificate held for a device and the ML-KEM one after it, if any."""
    assert record is not None and record.encryption_pem is not None
    return x509.load_pem_x509_certificates(record.encryption_pem)


class HybridCase(AuthTestCase):
    """The tester's device on a store of the test's choosing (``restart`` keeps
    it), with extra plugin configuration (``config``)."""

    def start_plugin(self) -> None:
        super().start_plugin()
        assert self.tester.kem_certificate is not None, "no ML-KEM key of ours"

    # Alice's node ------------------------------------------------------------------

    def pin(self, *items: str) -> None:
        """We read Alice's node (first contact): every device on it is pinned (TOFU)."""
        task = asyncio.ensure_future(self.plugin.discover(ALICE_JID))
        self.answer_fetch(ALICE_JID, list(items))
        self.run_coro(asyncio.wait_for(task, 2))

    def republish(self, *items: str) -> None:
        """Alice's server notifies a change of her node and serves ``items``."""
        self.notify(ALICE_JID, list(items))
        self.answer_fetch(ALICE_JID, list(items))

    def held_kem(self, keys: DeviceKeys) -> str | None:
        """The fingerprint of the ML-KEM certificate we would encrypt to, for a device."""
        for peer in self.plugin.keyring.usable(ALICE_JID):
            if peer.fingerprint == keys.fingerprint:
                assert peer.encryption is not None
                return None if peer.encryption.kem is None else peer.encryption.kem.fingerprint
        raise AssertionError(f"device {keys.fingerprint} is not usable")

    # what we send ----------------------------------------------------------------

    def send(self, body: str) -> ET.Element:
        """Send Alice a chat message; the one ``<e2e/>`` that went out."""
        self.xmpp.send_message(mto=ALICE_JID, mbody=body, mtype="chat")
        outer = self.take(
            lambda s: s.tag.endswith("message") and s.get("type") == "chat", "message"
        )
        assert body.encode() not in ET.tostring(outer)
        copies = outer.findall(E2E)
        assert len(copies) == 1, ET.tostring(outer)  # no draft copy beside it
        return copies[0]

    def refused(self, body: str) -> None:
        """Sending Alice ``body`` is refused: nothing goes out, the application hears why."""
        before = len(self.events["objenc_encryption_failed"])
        self.xmpp.send_message(mto=ALICE_JID, mbody=body, mtype="chat")
        self.drain()
        assert not any(body.encode() in ET.tostring(s) for s in self.outbox)
        chats = [s for s in self.outbox if s.get("type") == "chat"]
        assert chats == [], [ET.tostring(s) for s in chats]
        assert len(self.events["objenc_encryption_failed"]) == before + 1

    def resolve_tester(
        self, jid: str, identity: bytes, encryption: bytes
    ) -> X25519PublicKey | None:
        """Alice's view of the tester's device (its public certificates)."""
        tester = recipient_of(self.tester)
        known = (jid, identity, encryption) == (ME, tester.identity_id, tester.encryption_id)
        return tester.public_key if known else None

    def alice_opens(self, e2e: ET.Element, keys: DeviceKeys = ALICE, second: bytes = b"") -> str:
        """Alice's device opens what we sent, requiring the hybrid; the body."""
        opened = open_authenticated(
            e2e,
            hybrid_sender(keys),
            self.resolve_tester,
            ME,
            second=second,
            require_hybrid=True,
        )
        assert opened.hybrid is True
        assert opened.sender_identity_id.hex() == self.tester.fingerprint
        return opened.stanza.findtext(f"{{{NS_CLIENT}}}body") or ""

    def we_open_our_copy(self, e2e: ET.Element, second: bytes = b"") -> str:
        """Our own device opens its copy (what an archive or a carbon gives back)."""
        own = self.plugin.keyring.device.senders()[0]
        assert own.kem_id is not None and own.kem_id.hex() == self.tester.kem_fingerprint
        opened = open_authenticated(
            e2e, own, self.plugin.keyring.resolve_sender, ME, second=second, require_hybrid=True
        )
        return opened.stanza.findtext(f"{{{NS_CLIENT}}}body") or ""

    # what Alice sends --------------------------------------------------------------

    def me(self) -> AuthRecipient:
        """The tester's device as Alice sees it, ML-KEM key included."""
        return hybrid_recipient(self.tester)

    def from_alice(
        self,
        body: str,
        *,
        keys: DeviceKeys = ALICE,
        hybrid: bool = True,
        second: bytes = b"",
        recipients: Sequence[AuthRecipient] | None = None,
    ) -> ET.Element:
        return seal_authenticated(
            CHAT.format(body=body).encode(),
            sender_of(keys),
            recipients
            if recipients is not None
            else [self.me() if hybrid else recipient_of(self.tester)],
            timestamp=self.clock.next(),
            pad_to=64,
            hybrid=hybrid,
            second=second,
        )

    def error_replies(self) -> list[bytes]:
        """The error messages we sent back (taken from the outbox), without their id
        (each answers another stanza): what the sender learns."""
        self.drain()
        replies = [s for s in self.outbox if s.get("type") == "error"]
        for reply in replies:
            self.outbox.remove(reply)
            assert reply.get("to") == "alice@example.org/phone"
            del reply.attrib["id"]
        return [ET.tostring(r) for r in replies]


class TestSendingHybrid(HybridCase):
    def test_set_hybrid_seals_every_key_hybrid_for_alice_and_for_our_own_device(self) -> None:
        """Property: with set_hybrid, only hybrid <key/>s (Alice's device and our own,
        each naming its ML-KEM certificate, with a 1088-byte kem-ct), no Auth-mode
        key for the same R and no draft copy; Alice opens hers, we open ours."""
        self.pin(item(ALICE))
        assert self.held_kem(ALICE) == ALICE.kem_fingerprint
        self.run_coro(self.plugin.set_hybrid(ALICE_JID))
        e2e = self.send("post-quantum plans")
        assert key_names(e2e) == {hybrid_name(ALICE), hybrid_name(self.tester)}
        for key in e2e.findall(KEY):
            assert len(base64.b64decode(key.get("kem-ct", ""))) == 1088
            assert len(base64.b64decode(key.get("enc", ""))) == 32
        data = e2e.find(DATA)
        assert data is not None and data.get("identity-sha256") == self.tester.fingerprint
        assert self.alice_opens(e2e) == "post-quantum plans"
        assert self.we_open_our_copy(e2e) == "post-quantum plans"
        # Alice's ML-KEM key is what opens it: without it her X25519 key alone does not
        with pytest.raises(InvalidEnvelope):
            open_authenticated(e2e, sender_of(ALICE), self.resolve_tester, ME)

    def test_hybrid_is_off_by_default_and_set_hybrid_none_restores_the_default(self) -> None:
        """Property: by default (account ``hybrid`` off) Auth-mode keys only, even to
        a device with an ML-KEM key; set_hybrid(False/None) goes back to them."""
        self.pin(item(ALICE))
        assert key_names(self.send("classic")) == {auth_name(ALICE), auth_name(self.tester)}
        self.run_coro(self.plugin.set_hybrid(ALICE_JID))
        assert key_names(self.send("hybrid")) == {hybrid_name(ALICE), hybrid_name(self.tester)}
        self.run_coro(self.plugin.set_hybrid(ALICE_JID, False))
        assert key_names(self.send("off")) == {auth_name(ALICE), auth_name(self.tester)}
        self.run_coro(self.plugin.set_hybrid(ALICE_JID, None))
        assert key_names(self.send("default")) == {auth_name(ALICE), auth_name(self.tester)}


class TestAccountDefaultOn(HybridCase):
    def config(self) -> dict[str, Any]:
        return {"hybrid": True}

    def test_the_account_switch_seals_hybrid_and_a_contact_switch_wins(self) -> None:
        """Property: configuration ``hybrid`` on seals hybrid to every contact without
        set_hybrid; set_hybrid(alice, False) wins over it for her."""
        self.pin(item(ALICE))
        e2e = self.send("by default")
        assert key_names(e2e) == {hybrid_name(ALICE), hybrid_name(self.tester)}
        assert self.alice_opens(e2e) == "by default"
        self.run_coro(self.plugin.set_hybrid(ALICE_JID, False))
        assert key_names(self.send("not her")) == {auth_name(ALICE), auth_name(self.tester)}


class TestReceivingHybrid(HybridCase):
    def test_a_hybrid_stanza_from_alice_opens_and_says_so(self) -> None:
        """Property: Alice's hybrid stanza opens through the plugin; encryption_info
        reports hybrid and authenticated; her Auth-mode one still opens, as such,
        even with set_hybrid on for her (receiving does not require the hybrid
        unless a passphrase is set: the sender chose how it sealed a stanza already
        on the wire, and the application is told)."""
        self.pin(item(ALICE))
        self.recv(self.wire(self.from_alice("quantum-safe hello")))
        self.run_coro(self.plugin.set_hybrid(ALICE_JID))
        self.recv(self.wire(self.from_alice("classic hello", hybrid=False), outer_id="o2"))
        assert self.bodies() == ["quantum-safe hello", "classic hello"]
        assert self.failures() == []
        infos = [self.plugin.encryption_info(m) for m in self.events["message"]]
        assert all(i is not None and i.authenticated for i in infos)
        assert [i.hybrid for i in infos if i is not None] == [True, False]
        first = infos[0]
        assert first is not None
        assert first.sender_fingerprint == ALICE.fingerprint
        assert first.recipient_fingerprint == self.tester.fingerprint
        assert first.sender_trust is TrustState.TOFU

    def test_a_first_hybrid_stanza_from_an_unknown_device_waits_for_her_node(self) -> None:
        """Property: the unknown-sender path (her node read, her device pinned) works
        for a hybrid stanza too, and the ML-KEM certificate is held with it."""
        self.recv(self.wire(self.from_alice("first contact")))
        assert self.bodies() == []
        self.answer_fetch(ALICE_JID, [item(ALICE)])
        assert self.bodies() == ["first contact"]
        info = self.plugin.encryption_info(self.events["message"][0])
        assert info is not None and info.hybrid and info.authenticated
        assert self.held_kem(ALICE) == ALICE.kem_fingerprint

    def test_four_devices_of_alice_round_trip(self) -> None:
        """Property: four hybrid devices of Alice: one stanza carries four hybrid
        keys of hers and ours, each of her devices opens it, and each one's hybrid
        stanza to us opens and is reported as that device's."""
        devices = [ALICE, *ALICE_OTHERS]
        self.pin(*(item(d) for d in devices))
        for device in devices:
            record = self.plugin.keyring.record(ALICE_JID, device.fingerprint)
            assert record is not None and record.trust is TrustState.TOFU
            assert self.held_kem(device) == device.kem_fingerprint
        self.run_coro(self.plugin.set_hybrid(ALICE_JID))
        e2e = self.send("to all of you")
        assert key_names(e2e) == {hybrid_name(d) for d in [*devices, self.tester]}
        assert len(e2e.findall(KEY)) == 5
        for device in devices:
            assert self.alice_opens(e2e, device) == "to all of you"
        for n, device in enumerate(devices):
            self.recv(self.wire(self.from_alice(f"from {n}", keys=device), outer_id=f"o{n}"))
        assert self.bodies() == [f"from {n}" for n in range(4)]
        infos = [self.plugin.encryption_info(m) for m in self.events["message"]]
        assert [i.sender_fingerprint for i in infos if i is not None and i.hybrid] == [
            d.fingerprint for d in devices
        ]


class TestDevicesWithoutKem(HybridCase):
    def test_hybrid_to_a_contact_with_no_ml_kem_key_is_refused_never_sent(self) -> None:
        """Attack (downgrade): with the hybrid on for Alice and no <kem/> on her node
        (her old client, or a server that strips it), nothing is sent: no Auth-mode
        wrap, no plaintext; the application gets objenc_encryption_failed. With the
        hybrid off again, she is written to in Auth mode."""
        self.pin(item(ALICE_DEVICE))
        assert self.held_kem(ALICE_DEVICE) is None
        self.run_coro(self.plugin.set_hybrid(ALICE_JID))
        self.refused("must stay post-quantum")
        [failure] = self.events["objenc_encryption_failed"]
        assert "ML-KEM" in str(failure.error)
        self.run_coro(self.plugin.set_hybrid(ALICE_JID, False))
        assert key_names(self.send("classic")) == {auth_name(ALICE), auth_name(self.tester)}

    def test_a_device_without_ml_kem_is_left_out_the_other_gets_its_hybrid_key(self) -> None:
        """Property: of two devices of Alice's, the one without an ML-KEM key gets no
        <key/> at all (an Auth-mode copy of R would undo the hybrid), the other a
        hybrid one; with the hybrid off both get an Auth-mode one."""
        self.pin(item(ALICE), item(ALICE_OLD))
        assert self.held_kem(ALICE_OLD) is None
        self.run_coro(self.plugin.set_hybrid(ALICE_JID))
        e2e = self.send("new phone only")
        assert key_names(e2e) == {hybrid_name(ALICE), hybrid_name(self.tester)}
        assert ALICE_OLD.fingerprint not in ET.tostring(e2e).decode()
        assert self.alice_opens(e2e) == "new phone only"
        with pytest.raises(InvalidEnvelope):
            open_authenticated(e2e, sender_of(ALICE_OLD), self.resolve_tester, ME)
        self.run_coro(self.plugin.set_hybrid(ALICE_JID, False))
        assert key_names(self.send("everyone")) == {
            auth_name(ALICE),
            auth_name(ALICE_OLD),
            auth_name(self.tester),
        }


class TestPassphrase(HybridCase):
    def setUp(self) -> None:
        super().setUp()
        self.pin(item(ALICE))

    def garbage_reply(self) -> bytes:
        """The reply to a stanza that does not open (a forged wrap), no passphrase set."""
        forger = sender_of(ALICE, encryption_key=X25519PrivateKey.generate())
        forged = seal_authenticated(
            CHAT.format(body="garbage").encode(),
            forger,
            [recipient_of(self.tester)],
            timestamp=self.clock.next(),
            pad_to=64,
        )
        self.recv(self.wire(forged, outer_id="garbage"))
        assert self.failures()[-1] == "undecryptable"
        [reply] = self.error_replies()
        return reply

    def test_only_stanzas_sealed_with_the_passphrase_open(self) -> None:
        """Attack (a stolen or broken key without the passphrase): after
        set_passphrase, Alice's hybrid stanza with the same passphrase opens; with a
        wrong one, with none (hybrid, no second) or in Auth mode it is not delivered,
        reason ``passphrase`` locally, and the reply to her is byte for byte the one
        a garbage stanza gets (no guessing oracle)."""
        garbage = self.garbage_reply()
        self.run_coro(self.plugin.set_passphrase(ALICE_JID, PASSPHRASE))
        self.recv(self.wire(self.from_alice("right", second=alice_second(PASSPHRASE))))
        assert self.bodies() == ["right"]
        info = self.plugin.encryption_info(self.events["message"][0])
        assert info is not None and info.hybrid and info.authenticated
        attempts = [
            self.from_alice("wrong passphrase", second=alice_second(WRONG)),
            self.from_alice("no passphrase"),
            self.from_alice("auth mode", hybrid=False),
        ]
        for n, e2e in enumerate(attempts):
            self.recv(self.wire(e2e, outer_id=f"bad{n}"))
        assert self.bodies() == ["right"]
        assert self.failures() == ["undecryptable", "passphrase", "passphrase", "passphrase"]
        assert self.error_replies() == [garbage] * 3
        # a stanza not for us at all, passphrase set: the same reply again
        self.recv(self.wire(self.from_alice("x", recipients=[hybrid_recipient(ALICE_OTHERS[0])])))
        assert self.failures()[-1] == "undecryptable"
        assert self.error_replies() == [garbage]

    def test_what_we_send_after_set_passphrase_is_hybrid_and_needs_it(self) -> None:
        """Property: set_passphrase alone turns the hybrid on for Alice; what we send
        opens for her with the same passphrase only (not with none, not with another);
        our own copy is sealed with it too. set_passphrase(None) restores normal
        behaviour: Auth mode both ways."""
        self.run_coro(self.plugin.set_passphrase(ALICE_JID, PASSPHRASE))
        second = alice_second(PASSPHRASE)
        e2e = self.send("between us")
        assert key_names(e2e) == {hybrid_name(ALICE), hybrid_name(self.tester)}
        assert self.alice_opens(e2e, second=second) == "between us"
        for other in (b"", alice_second(WRONG)):
            with pytest.raises(InvalidEnvelope):
                self.alice_opens(e2e, second=other)
        assert self.we_open_our_copy(e2e, second=second) == "between us"
        with pytest.raises(InvalidEnvelope):
            self.we_open_our_copy(e2e)
        # cleared: Alice's Auth-mode stanza opens, and we write Auth mode again
        self.run_coro(self.plugin.set_passphrase(ALICE_JID, None))
        self.recv(self.wire(self.from_alice("back to normal", hybrid=False)))
        self.recv(self.wire(self.from_alice("hybrid, no passphrase"), outer_id="o2"))
        assert self.bodies() == ["back to normal", "hybrid, no passphrase"]
        assert self.failures() == []
        assert key_names(self.send("plain auth")) == {auth_name(ALICE), auth_name(self.tester)}

    def test_an_empty_passphrase_is_refused_and_changes_nothing(self) -> None:
        """Property: an empty passphrase would add nothing: refused, nothing kept."""
        with pytest.raises(EncryptionError):
            self.run_coro(self.plugin.set_passphrase(ALICE_JID, ""))
        assert self.plugin.persistence.conversations.second(ALICE_JID) == b""
        assert key_names(self.send("as before")) == {auth_name(ALICE), auth_name(self.tester)}

    def test_a_draft_copy_does_not_skip_the_passphrase(self) -> None:
        """Attack (passphrase bypass by downgrade): with Alice's legacy devices allowed
        and a passphrase set, anyone holding our public RSA certificate seals a
        draft-profile copy "from Alice": only stanzas sealed with the passphrase
        may open in this conversation, so it must not be delivered."""
        self.run_coro(self.plugin.allow_legacy_devices(ALICE_JID))
        self.run_coro(self.plugin.set_passphrase(ALICE_JID, PASSPHRASE))
        self.recv(self.wire(self.rsa_sealed(CHAT.format(body="no passphrase needed"))))
        assert self.bodies() == []
        assert self.failures() == ["passphrase"]


class TestPassphraseWithoutKem(HybridCase):
    def test_a_passphrase_to_a_contact_without_ml_kem_is_never_sent_auth_mode(self) -> None:
        """Attack (downgrade): a passphrase set for Alice, whose device has no ML-KEM
        key (a server stripped <kem/> at first contact, or her old client): refused,
        never an Auth-mode wrap that skips the passphrase; her Auth-mode stanzas are
        refused too (reason ``passphrase``)."""
        self.pin(item(ALICE_DEVICE))
        assert self.held_kem(ALICE_DEVICE) is None
        self.run_coro(self.plugin.set_passphrase(ALICE_JID, PASSPHRASE))
        self.refused("keep it between us")
        self.recv(self.wire(self.from_alice("classic", hybrid=False)))
        assert self.bodies() == [] and self.failures() == ["passphrase"]


class TestHostileServerOnTheWire(HybridCase):
    def setUp(self) -> None:
        super().setUp()
        self.pin(item(ALICE))

    def our_key(self, e2e: ET.Element) -> ET.Element:
        [key] = [k for k in e2e.findall(KEY) if k.get("identity-sha256") == self.tester.fingerprint]
        return key

    def test_a_stripped_or_swapped_kem_ct_or_a_rewritten_algo_does_not_open(self) -> None:
        """Attack (rewrite of a hybrid <key/>): kem-ct stripped, kem-ct swapped for a
        fresh encapsulation to our own ML-KEM key (same size, another secret),
        cipher-algo rewritten to the Auth one (kem attributes kept, or dropped too),
        kem-sha256 changed, a second <key/> for us added: each is undecryptable,
        nothing is delivered; the untouched stanza then opens (nothing was spoiled)."""
        kem_public = self.me().kem_key
        assert kem_public is not None
        _, swapped_ct = kem_public.encapsulate()

        def strip(key: ET.Element) -> None:
            del key.attrib["kem-ct"]

        def swap(key: ET.Element) -> None:
            key.set("kem-ct", base64.b64encode(swapped_ct).decode())

        def to_auth(key: ET.Element) -> None:
            key.set("cipher-algo", WRAP_ALGO)

        def to_auth_bare(key: ET.Element) -> None:
            key.set("cipher-algo", WRAP_ALGO)
            del key.attrib["kem-ct"], key.attrib["kem-sha256"]

        def other_kem_id(key: ET.Element) -> None:
            key.set("kem-sha256", ALICE.kem_fingerprint or "")

        tampers = (strip, swap, to_auth, to_auth_bare, other_kem_id)
        for n, tamper in enumerate(tampers):
            e2e = self.from_alice(f"tampered {n}")
            tamper(self.our_key(e2e))
            self.recv(self.wire(e2e, outer_id=f"t{n}"))
        # a second <key/> for us beside the genuine one (the same, or an Auth-mode
        # copy of it): several for us are refused, not chosen from
        for n, algo in enumerate((HYBRID_CIPHER_ALGO, WRAP_ALGO)):
            e2e = self.from_alice(f"doubled {n}")
            extra = copy.deepcopy(self.our_key(e2e))
            extra.set("cipher-algo", algo)
            if algo == WRAP_ALGO:
                del extra.attrib["kem-ct"], extra.attrib["kem-sha256"]
            e2e.insert(0, extra)
            self.recv(self.wire(e2e, outer_id=f"d{n}"))
        assert self.bodies() == []
        assert self.failures() == ["undecryptable"] * (len(tampers) + 2)
        self.recv(self.wire(self.from_alice("untouched"), outer_id="fine"))
        assert self.bodies() == ["untouched"]


class TestHostileServerOnTheNode(HybridCase):
    def forged_kems(self) -> list[x509.Certificate]:
        """ML-KEM certificates for Alice's JID her identity did not sign: one issued
        by Mallory's identity (naming Mallory), one by an unknown key naming Alice's
        identity as its issuer; and one of hers of another issuance (an hour older)."""
        encryption = ALICE.encryption_certificate
        validity = encryption.not_valid_after_utc - encryption.not_valid_before_utc
        issued = encryption.not_valid_before_utc + BACKDATE
        public = MLKEM768PrivateKey.generate().public_key()
        by_mallory = issue_kem_certificate(
            MALLORY_DEVICE.identity_key,
            MALLORY_DEVICE.identity_certificate,
            public,
            now=issued,
            valid_for=validity,
        )
        unknown_key = issue_kem_certificate(
            Ed25519PrivateKey.generate(),
            ALICE.identity_certificate,
            public,
            now=issued,
            valid_for=validity,
        )
        other_issuance = issue_kem_certificate(
            ALICE.identity_key,
            ALICE.identity_certificate,
            public,
            now=issued - timedelta(hours=1),
            valid_for=validity,
        )
        return [by_mallory, unknown_key, other_issuance]

    def test_a_substituted_kem_at_first_contact_is_not_taken(self) -> None:
        """Attack (server substitution at first contact): Alice's <kem/> replaced by
        an ML-KEM certificate her identity did not issue with this encryption
        certificate. Her device is not written to with the hybrid (no such key is
        held: the record carries no ML-KEM certificate), so the substituted key
        never receives a wrap."""
        for n, forged in enumerate(self.forged_kems()):
            if n:
                self.fresh()
            self.pin(item(ALICE, kem=forged))
            record = self.plugin.keyring.record(ALICE_JID, ALICE.fingerprint)
            assert record is not None and record.trust is TrustState.TOFU
            # the whole <device/> fails with it: her identity is pinned alone, with
            # no encryption certificate (and so no ML-KEM one) to write to
            assert record.encryption_pem is None
            assert self.plugin.keyring.usable(ALICE_JID) == []
            self.run_coro(self.plugin.set_hybrid(ALICE_JID))
            self.refused(f"for alice's ML-KEM key only {n}")
            # her genuine node, once served, is taken: the hybrid goes to her key
            self.republish(item(ALICE))
            assert self.held_kem(ALICE) == ALICE.kem_fingerprint
            e2e = self.send(f"genuine {n}")
            assert key_names(e2e) == {hybrid_name(ALICE), hybrid_name(self.tester)}

    def test_a_substituted_kem_after_the_genuine_one_changes_nothing(self) -> None:
        """Attack (server substitution later): after we held Alice's genuine ML-KEM
        certificate, her node is served with a forged one: the genuine one stays held
        and the hybrid names it; the forged key never gets a wrap."""
        self.pin(item(ALICE))
        self.run_coro(self.plugin.set_hybrid(ALICE_JID))
        for n, forged in enumerate(self.forged_kems()):
            self.republish(item(ALICE, kem=forged))
            record = self.plugin.keyring.record(ALICE_JID, ALICE.fingerprint)
            assert held_bundle(record)[1] == ALICE.kem_certificate
            assert self.held_kem(ALICE) == ALICE.kem_fingerprint
            e2e = self.send(f"still to the genuine key {n}")
            assert key_names(e2e) == {hybrid_name(ALICE), hybrid_name(self.tester)}
            assert cert_id(forged).hex() not in ET.tostring(e2e).decode()
            assert self.alice_opens(e2e) == f"still to the genuine key {n}"

    def test_a_kem_removed_from_her_node_later_is_still_held(self) -> None:
        """Attack (server strips <kem/> after we saw it): the held bundle (her
        encryption certificate and its ML-KEM certificate) is kept, since the
        published encryption certificate is not newer than the held one (the same);
        the hybrid still goes to her, nothing falls back to Auth mode. Only Alice
        can drop her ML-KEM key: by a newer encryption certificate without one
        (her identity signs it), which a server cannot make."""
        self.pin(item(ALICE))
        self.run_coro(self.plugin.set_hybrid(ALICE_JID))
        self.republish(item(ALICE_DEVICE))  # the same device, <kem/> removed
        record = self.plugin.keyring.record(ALICE_JID, ALICE.fingerprint)
        assert held_bundle(record) == [ALICE.encryption_certificate, ALICE.kem_certificate]
        e2e = self.send("still hybrid")
        assert key_names(e2e) == {hybrid_name(ALICE), hybrid_name(self.tester)}
        assert self.alice_opens(e2e) == "still hybrid"


class TestStore(HybridCase):
    @pytest.fixture(autouse=True)
    def _directory(self) -> Iterator[None]:
        self.directory = Path(tempfile.mkdtemp(prefix="objenc-hybrid-"))
        yield
        shutil.rmtree(self.directory, ignore_errors=True)

    def make_storage(self) -> Storage:
        return SQLiteStorage(self.directory / "tester.sqlite3")

    def test_choices_and_the_ml_kem_key_survive_a_restart(self) -> None:
        """Property: a plugin restarted on the same SQLite store keeps set_hybrid (per
        contact), the passphrase (stretched, not retyped) and its ML-KEM key: Alice's
        stanza sealed to our ML-KEM key before the restart opens after it, what we
        send after it is hybrid with the passphrase; clearing both also survives."""
        carol = "carol@example.org"
        self.pin(item(ALICE))
        self.run_coro(self.plugin.set_hybrid(carol))
        self.run_coro(self.plugin.set_passphrase(ALICE_JID, PASSPHRASE))
        before = self.tester
        second = alice_second(PASSPHRASE)
        sealed_before = self.from_alice("sealed before the restart", second=second)
        self.restart()
        assert self.tester.kem_fingerprint == before.kem_fingerprint
        assert self.tester.encryption_fingerprint == before.encryption_fingerprint
        conversations = self.plugin.persistence.conversations
        assert conversations.hybrid(carol) is True
        assert conversations.second(ALICE_JID) == second
        assert self.held_kem(ALICE) == ALICE.kem_fingerprint
        self.recv(self.wire(sealed_before))
        assert self.bodies() == ["sealed before the restart"]
        e2e = self.send("after the restart")
        assert key_names(e2e) == {hybrid_name(ALICE), hybrid_name(self.tester)}
        assert self.alice_opens(e2e, second=second) == "after the restart"
        # cleared, then restarted: cleared
        self.run_coro(self.plugin.set_hybrid(carol, None))
        self.run_coro(self.plugin.set_passphrase(ALICE_JID, None))
        self.restart()
        conversations = self.plugin.persistence.conversations
        assert conversations.hybrid(carol) is False
        assert conversations.second(ALICE_JID) == b""
        assert key_names(self.send("normal")) == {auth_name(ALICE), auth_name(self.tester)}
