"""The stanza-level harness of the authenticated profile's tests: the tester's
device under slixmpp's mock stream (``AuthTestCase``), Alice and Carol played
by the core, and the helpers that build their certificates, node items and
envelopes. Imported by the ``test_auth_*`` modules (which run the plugin with
``authenticated`` on: tests/stanza/conftest.py).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding
from slixmpp.test import SlixTest
from slixmpp.xmlstream import tostring
from testkit import TESTER

import slixmpp_objenc
from slixmpp_objenc.core import Recipient, TimestampSource, seal
from slixmpp_objenc.core.auth_envelope import (
    AuthRecipient,
    AuthSender,
    seal_authenticated,
)
from slixmpp_objenc.core.constants import NS_OBJENC
from slixmpp_objenc.core.identities import (
    DeviceKeys,
    generate_device_keys,
)
from slixmpp_objenc.plugin import NODE_CERTS
from slixmpp_objenc.store import MemoryStorage, Storage, TrustState

NOW = datetime.now(UTC).replace(microsecond=0)
E2E = f"{{{NS_OBJENC}}}e2e"
KEY = f"{{{NS_OBJENC}}}key"
DATA = f"{{{NS_OBJENC}}}data"
ME = "tester@localhost"
ALICE_JID = "alice@example.org"
ALICE_DEVICE = generate_device_keys(ALICE_JID, now=NOW)
MALLORY_DEVICE = generate_device_keys("mallory@example.org", now=NOW)
CHAT = (
    "<message xmlns='jabber:client' from='alice@example.org/phone' "
    "to='tester@localhost/resource' type='chat' id='in1'><body>{body}</body></message>"
)
EVENTS = (
    "message",
    "objenc_decrypted",
    "objenc_decryption_failed",
    "objenc_bad_timestamp",
    "objenc_encryption_failed",
    "objenc_key_changed",
)


def der(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(Encoding.DER)


def cert_id(certificate: x509.Certificate) -> bytes:
    """A certificate's id in the profile: SHA-256 of its DER (32 bytes)."""
    return hashlib.sha256(der(certificate)).digest()


def sender_of(keys: DeviceKeys, encryption_key: X25519PrivateKey | None = None) -> AuthSender:
    """``keys``'s device as a sender; ``encryption_key``: who really wraps (an attacker)."""
    return AuthSender(
        encryption_key or keys.encryption_key,
        cert_id(keys.identity_certificate),
        cert_id(keys.encryption_certificate),
    )


def recipient_of(keys: DeviceKeys) -> AuthRecipient:
    """A device as a recipient, from its public certificates only."""
    public_key = keys.encryption_certificate.public_key()
    assert isinstance(public_key, X25519PublicKey)
    return AuthRecipient(
        cert_id(keys.identity_certificate), cert_id(keys.encryption_certificate), public_key
    )


def device_item(
    identity: x509.Certificate, encryption: x509.Certificate, item_id: str | None = None
) -> str:
    """One item of a certificate node (PROTOCOL.md 13.6): ``<device/>`` with both certificates."""
    b64 = base64.b64encode
    return (
        f"<item id='{item_id or hashlib.sha256(der(identity)).hexdigest()}'>"
        f"<device xmlns='{NS_OBJENC}'>"
        f"<identity>{b64(der(identity)).decode()}</identity>"
        f"<encryption>{b64(der(encryption)).decode()}</encryption>"
        "</device></item>"
    )


def alice_item() -> str:
    return device_item(ALICE_DEVICE.identity_certificate, ALICE_DEVICE.encryption_certificate)


class AuthTestCase(SlixTest):
    """The tester's device on slixmpp's mock stream, on :attr:`storage` (which a
    :meth:`restart` keeps), with the events of :attr:`recorded_events` kept in
    :attr:`events`. Subclasses choose the store (:meth:`make_storage`), more
    plugin configuration (:meth:`config`) and what to set up while the plugin
    loads (:meth:`before_ready`)."""

    recorded_events: tuple[str, ...] = EVENTS

    def setUp(self) -> None:
        self.now = NOW
        self.clock = TimestampSource(lambda: self.now)  # Alice's sending clock
        self.storage: Storage = self.make_storage()
        self.start_plugin()

    def make_storage(self) -> Storage:
        return MemoryStorage()

    def config(self) -> dict[str, Any]:
        """More plugin configuration, for a test class that needs it."""
        return {}

    def before_ready(self) -> None:
        """What the test's server needs before the plugin loads (it publishes then)."""

    def start_plugin(self) -> None:
        """A new stream and plugin on :attr:`storage`, with our keys loaded."""
        self.stream_start(mode="client", jid=f"{ME}/resource", plugins=["xep_0030"])
        self.xmpp.register_plugin(
            "objenc",
            module=slixmpp_objenc,
            pconfig={
                "identity": TESTER,
                "clock": lambda: self.now,
                "storage": self.storage,
                **self.config(),
            },
        )
        self.plugin = self.xmpp.plugin["objenc"]
        self.events: dict[str, list[Any]] = {name: [] for name in self.recorded_events}
        for name, seen in self.events.items():
            self.xmpp.add_event_handler(name, seen.append)
        self.outbox: list[ET.Element] = []  # sent stanzas not looked at yet
        self.before_ready()
        self.run_coro(self.plugin.ready())  # our device keys are made at load
        # Alice is a contact whose presence we receive: her node is readable to us
        self.xmpp.client_roster.add(ALICE_JID, afrom=True, ato=True)
        keys = self.plugin.keyring.device.keys
        assert keys is not None, "the authenticated profile is on in test_auth_* modules"
        self.tester: DeviceKeys = keys

    def stop_plugin(self) -> None:
        """Flush and close the plugin and its stream (the store stays)."""
        self.run_coro(self.plugin.flush())
        directory = self.plugin.directory
        for future in [*directory._discovering.values(), *directory._retracting]:
            future.cancel()
        self.plugin.rotation.stop()  # its timer: the loop outlives this stream
        self.plugin.tasks.cancel_all()
        self.run_coro(self.plugin.close())
        self.wait_(0.01)
        self.stream_close()

    def restart(self) -> None:
        """A new plugin on a new stream, on the same store (the device restarted)."""
        self.stop_plugin()
        self.start_plugin()

    def fresh(self) -> None:
        """Another device of ours, on a new store: nothing of Alice's held."""
        self.storage = self.make_storage()
        self.restart()

    def tearDown(self) -> None:
        self.stream_close()

    # the wire ---------------------------------------------------------------------

    def drain(self) -> None:
        """Move everything the plugin sent so far into :attr:`outbox`."""
        for _ in range(4):
            self.wait_for_send_queue()
            self.wait_()
            while (raw := self.xmpp.socket.next_sent(timeout=0.05)) is not None:
                self.outbox.append(ET.fromstring(raw))

    def take(self, predicate: Any, what: str) -> ET.Element:
        """The first sent stanza matching ``predicate`` (removed from the outbox)."""
        self.drain()
        for stanza in self.outbox:
            if predicate(stanza):
                self.outbox.remove(stanza)
                return stanza
        raise AssertionError(f"no {what} was sent: {[ET.tostring(s) for s in self.outbox]}")

    def answer_fetch(self, owner: str, items: Sequence[str]) -> None:
        """Play ``owner``'s server: answer the plugin's read of its node with ``items``."""
        fetch = self.take(
            lambda s: s.get("type") == "get" and NODE_CERTS in ET.tostring(s, encoding="unicode"),
            f"read of {owner}'s node",
        )
        assert fetch.get("to") == owner, ET.tostring(fetch)
        self.recv(
            f"<iq type='result' from='{owner}' to='{ME}/resource' id='{fetch.get('id')}'>"
            "<pubsub xmlns='http://jabber.org/protocol/pubsub'>"
            f"<items node='{NODE_CERTS}'>{''.join(items)}</items></pubsub></iq>"
        )
        self.wait_(0.05)

    def no_fetch_pending(self) -> bool:
        self.drain()
        return not any(NODE_CERTS in ET.tostring(s, encoding="unicode") for s in self.outbox)

    def notify(self, owner: str, items: Sequence[str]) -> None:
        """Play ``owner``'s server: a PEP notification that its node changed."""
        self.recv(
            f"<message from='{owner}' to='{ME}/resource' type='headline'>"
            "<event xmlns='http://jabber.org/protocol/pubsub#event'>"
            f"<items node='{NODE_CERTS}'>{''.join(items)}</items></event></message>"
        )

    def pin_alice(self) -> None:
        """The tester reads Alice's node (first contact): her device is pinned (TOFU)."""
        task = asyncio.ensure_future(self.plugin.discover(ALICE_JID))
        self.answer_fetch(ALICE_JID, [alice_item()])
        self.run_coro(asyncio.wait_for(task, 2))
        record = self.plugin.keyring.record(ALICE_JID, ALICE_DEVICE.fingerprint)
        assert record is not None and record.trust is TrustState.TOFU

    # Alice (or whoever claims to be her) ------------------------------------------------

    def sealed(
        self,
        inner: str,
        *,
        sender: AuthSender | None = None,
        recipients: Sequence[AuthRecipient] | None = None,
        timestamp: datetime | None = None,
    ) -> ET.Element:
        """An authenticated ``<e2e/>`` of ``inner``: Alice's by default, to the tester."""
        return seal_authenticated(
            inner.encode(),
            sender or sender_of(ALICE_DEVICE),
            recipients if recipients is not None else [recipient_of(self.tester)],
            timestamp=timestamp or self.clock.next(),
            pad_to=64,
        )

    def rsa_sealed(self, inner: str, timestamp: datetime | None = None) -> ET.Element:
        """A draft-profile ``<e2e/>`` to the tester's RSA certificate (anyone can make one)."""
        return seal(
            inner.encode(),
            [Recipient(TESTER.certificate.public_key())],
            timestamp=timestamp or self.clock.next(),
        )

    def wire(
        self,
        *copies: ET.Element,
        kind: str = "message",
        kind_type: str = "chat",
        outer_id: str = "outer1",
        frm: str = "alice@example.org/phone",
    ) -> str:
        body = "".join(tostring(c) for c in copies)
        return (
            f"<{kind} xmlns='jabber:client' from='{frm}' to='{ME}/resource' "
            f"type='{kind_type}' id='{outer_id}'>{body}</{kind}>"
        )

    def bodies(self) -> list[str]:
        return [m["body"] for m in self.events["message"]]

    def failures(self) -> list[str]:
        return [e.reason for e in self.events["objenc_decryption_failed"]]


CAROL_JID = "carol@example.org"
CAROL_DEVICE = generate_device_keys(CAROL_JID, now=NOW)
CAROL_CHAT = (
    f"<message xmlns='jabber:client' from='{CAROL_JID}/laptop' to='{ME}/resource' "
    "type='chat'><body>{body}</body></message>"
)


def introduced_by(keys: DeviceKeys) -> tuple[bytes, bytes]:
    return (
        keys.identity_certificate.public_bytes(Encoding.DER),
        keys.encryption_certificate.public_bytes(Encoding.DER),
    )
