"""The key directory: our certificate on PEP, contacts' certificates from PEP.

Publishes ours (contacts-only), fetches a contact's on first contact (one
shared fetch per contact), follows node notifications (our own other
devices too), and feeds what it learns to the key ring through the core's
:func:`~slixmpp_objenc.core.trust.reconcile`. It is also the view of the key
ring the send decision reads (:class:`~slixmpp_objenc.core.send.KeyDirectoryView`).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Final

from cryptography.hazmat.primitives.serialization import Encoding
from slixmpp import JID, Message, Presence
from slixmpp.exceptions import IqError, IqTimeout
from slixmpp.plugins.xep_0004 import Form

from ..core import CertificateError, Identity, PeerCertificate, validate_peer_certificate
from ..core.constants import NS_OBJENC, qname
from ..core.trust import Observation, TrustState, reconcile
from ..events import KeyChangedEvent, PublishFailedEvent
from ..keyring import Keyring
from ..stanza import Certificate
from .persistence import Persistence

__all__ = ["NODE_CERTS", "KeyDirectory"]

log = logging.getLogger(__name__)

NODE_CERTS: Final = NS_OBJENC + ":certs"
"""PEP node holding our certificates: one item per certificate, id = fingerprint."""

NEGATIVE_DISCOVERY_SECONDS: Final = 300.0
"""A contact with no certificates on PEP is asked again after this long..."""
STICKY_RETRY_SECONDS: Final = 10.0
"""...or this long when stanzas to it cannot go without a key."""
MAX_MISSES: Final = 10_000

_CERTIFICATE_TAG: Final = qname(NS_OBJENC, "certificate")


class KeyDirectory:
    """PEP publication and discovery, and the key ring as the send decision sees it."""

    def __init__(
        self,
        xmpp: Any,
        keyring: Keyring,
        persistence: Persistence,
        config: dict[str, Any],
        clock: Callable[[], datetime],
        identity: Callable[[], Identity],
    ) -> None:
        self.xmpp = xmpp
        self.keyring = keyring
        self._persistence = persistence
        self._clock = clock
        self._identity = identity
        self.enabled = bool(config.get("pep", True))
        self.timeout = float(config.get("discovery_timeout", 10.0))
        self.trust_new_devices = bool(config.get("trust_new_devices"))
        self._discovering: dict[str, asyncio.Future[None]] = {}
        self._misses: dict[str, float] = {}
        self._interest = False

    # -- the view the send decision reads ----------------------------------

    def usable(self, bare: str) -> list[PeerCertificate]:
        return self.keyring.usable(bare, self._clock())

    def held(self, bare: str) -> bool:
        return bool(self.keyring.records(bare))

    def pending(self, bare: str) -> bool:
        return bool(self.keyring.pending(bare))

    def sticky(self, bare: str) -> bool:
        return self.keyring.sticky(bare)

    def own_devices(self) -> Sequence[PeerCertificate]:
        return self.keyring.usable(self.xmpp.boundjid.bare, self._clock())

    def would_discover(self, bare: str) -> bool:
        if not self.enabled:
            return False
        missed = self._misses.get(bare)
        return missed is None or time.monotonic() - missed >= self._remember_for(bare)

    def _remember_for(self, bare: str) -> float:
        # A miss is remembered, briefly when the stanza cannot go without a key.
        return STICKY_RETRY_SECONDS if self.keyring.sticky(bare) else NEGATIVE_DISCOVERY_SECONDS

    # -- the session ---------------------------------------------------------

    def register_interest(self) -> None:
        """Ask for notifications of contacts' certificate nodes (+notify)."""
        # Not in post_init: slixmpp may call that before our dependencies exist.
        if self.enabled and not self._interest:
            self._interest = True
            self.xmpp.plugin["xep_0163"].add_interest(NODE_CERTS)
            self.xmpp.plugin["xep_0060"].map_node_event(NODE_CERTS, "objenc_certs")

    async def on_session_start(self) -> None:
        """Publish ours and learn our own other devices."""
        await self._persistence.loaded.wait()
        if self.enabled and self._persistence.load_error is None:
            await self.publish()
            await self.discover(self.xmpp.boundjid.bare)

    async def publish(self) -> bool:
        """Publish our certificate, readable by contacts only (see ``ObjEnc``)."""
        identity = self._identity()
        payload = Certificate()
        payload["value"] = base64.b64encode(identity.certificate.public_bytes(Encoding.DER)).decode(
            "ascii"
        )
        options = Form()
        options["type"] = "submit"
        options.add_field(
            var="FORM_TYPE",
            ftype="hidden",
            value="http://jabber.org/protocol/pubsub#publish-options",
        )
        options.add_field(var="pubsub#access_model", value="presence")
        options.add_field(var="pubsub#persist_items", value="true")
        options.add_field(var="pubsub#max_items", value="max")
        try:
            await self.xmpp.plugin["xep_0060"].publish(
                None,
                NODE_CERTS,
                id=identity.fingerprint,
                payload=payload,
                options=options,
                timeout=self.timeout,
            )
        except (IqError, IqTimeout) as exc:
            condition = exc.iq["error"]["condition"] if isinstance(exc, IqError) else "timeout"
            text = exc.iq["error"]["text"] if isinstance(exc, IqError) else ""
            log.warning("objenc: our certificate was not published (%s)", condition)
            self.xmpp.event("objenc_publish_failed", PublishFailedEvent(condition, text))
            return False
        self.xmpp.event("objenc_published", identity.fingerprint)
        return True

    # -- discovery -------------------------------------------------------------

    async def discover(self, bare: str) -> list[PeerCertificate]:
        """Fetch a bare JID's certificates now (forgetting a remembered miss)."""
        self._misses.pop(bare, None)
        await self.ensure_discovered(bare)
        return self.usable(bare)

    async def ensure_discovered(self, bare: str) -> None:
        """One fetch per contact at a time; concurrent senders share it."""
        if not self.enabled:
            return
        missed = self._misses.get(bare)
        if missed is not None and time.monotonic() - missed < self._remember_for(bare):
            return
        future = self._discovering.get(bare)
        if future is None:
            future = asyncio.ensure_future(self._fetch(bare), loop=self.xmpp.loop)
            self._discovering[bare] = future
            future.add_done_callback(lambda _f: self._discovering.pop(bare, None))
        await asyncio.shield(future)

    async def _fetch(self, bare: str) -> None:
        try:
            result = await self.xmpp.plugin["xep_0060"].get_items(
                bare, NODE_CERTS, timeout=self.timeout
            )
        except (IqError, IqTimeout) as exc:
            log.info("objenc: no certificates for %s over PEP (%s)", bare, exc)
            self.remember_miss(bare)
            return
        items = result["pubsub"]["items"]
        await self.reconcile(bare, [item.xml for item in items], complete=True)

    async def on_notified(self, msg: Message) -> None:
        """A certificate node changed (publish or retract): read it again."""
        sender = msg["from"].bare
        if not sender:
            return
        await self._persistence.loaded.wait()
        own = sender == self.xmpp.boundjid.bare
        if not own and not self.keyring.records(sender):
            return  # not a correspondent yet: its certificate is fetched on first send
        self._misses.pop(sender, None)
        await self.ensure_discovered(sender)

    def on_subscription_changed(self, presence: Presence) -> None:
        """PEP access follows presence subscriptions: an earlier refusal may be stale."""
        self._misses.pop(presence["from"].bare, None)

    def forget_miss(self, bare: str) -> None:
        """It uses this protocol after all: look again on the next send."""
        self._misses.pop(bare, None)

    def remember_miss(self, bare: str) -> None:
        self._misses.pop(bare, None)
        self._misses[bare] = time.monotonic()
        while len(self._misses) > MAX_MISSES:
            del self._misses[next(iter(self._misses))]

    async def reconcile(self, bare: str, items: list[ET.Element], *, complete: bool) -> None:
        """Take in the certificates a JID publishes; with ``complete``, those no
        longer published are revoked (the rules: :func:`~slixmpp_objenc.core.trust.reconcile`)."""
        published = self._valid_certificates(bare, items)
        held = {r.fingerprint: (r.trust, r.source) for r in self.keyring.records(bare)}
        own = {i.fingerprint for i in self.keyring.identities}
        sightings, revoked = reconcile(
            held,
            list(published),
            own,
            trust_new_devices=self.trust_new_devices,
            complete=complete,
        )
        for sighting in sightings:
            peer = published[sighting.fingerprint]
            await self.keyring.observe(peer, source="pep", jid=bare, trust=sighting.trust)
            event = {
                Observation.CHANGED: "objenc_key_changed",
                Observation.ADDED: "objenc_device_added",
            }.get(sighting.observation)
            if event is not None:
                self.xmpp.event(event, KeyChangedEvent(bare, sighting.previous, peer.fingerprint))
        for fingerprint in revoked:
            log.info("objenc: %s no longer publishes %s", bare, fingerprint)
            await self.keyring.set_trust(bare, fingerprint, TrustState.REVOKED)
        if not published:
            self.remember_miss(bare)

    def _valid_certificates(self, bare: str, items: list[ET.Element]) -> dict[str, PeerCertificate]:
        published: dict[str, PeerCertificate] = {}
        for item in items:
            certificate = item.find(_CERTIFICATE_TAG)
            if certificate is None or not certificate.text:
                continue
            try:
                der = base64.b64decode(certificate.text, validate=True)
                peer = validate_peer_certificate(der, now=self._clock())
            except (ValueError, CertificateError) as exc:
                log.info("objenc: ignoring a certificate published by %s: %s", bare, exc)
                continue
            if bare not in {JID(j).bare for j in peer.jids}:
                log.warning("objenc: %s published a certificate for %s", bare, peer.jids)
                continue
            published[peer.fingerprint] = peer
        return published
