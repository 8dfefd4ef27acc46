"""The key directory: our certificate on PEP, contacts' certificates from PEP.

Publishes ours (contacts-only), fetches a contact's on first contact (one
shared fetch per contact), follows node notifications (our own other
devices too), and feeds what it learns to the key ring through the core's
:func:`~slixmpp_objenc.core.devices.read_publication` (one bad item is
skipped, sets are capped) and :func:`~slixmpp_objenc.core.trust.reconcile`
(a server can hide a key but not undo a verification; a device of ours is
never trusted without a decision). It is also the view of the key ring the
send decision reads (:class:`~slixmpp_objenc.core.send.KeyDirectoryView`).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import time
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Final

from slixmpp import Message, Presence
from slixmpp.exceptions import IqError, IqTimeout

from ..core import CertificateError, Identity, PeerCertificate
from ..core.certificates import canonical_jid
from ..core.constants import NS_OBJENC, qname
from ..core.devices import (
    DevicePayload,
    Publication,
    PublishedItem,
    check_vouch,
    load_device,
    read_publication,
)
from ..core.trust import (
    MAX_HELD_PER_JID,
    Observation,
    Reconciliation,
    TrustState,
    reconcile,
)
from ..events import DirectoryLimitEvent, KeyChangedEvent, KeyUnpublishedEvent
from ..keyring import Keyring
from .common import address, parse_address
from .persistence import Persistence
from .publication import NODE_CERTS, Publisher
from .revocations import Revocations

__all__ = ["NODE_CERTS", "KeyDirectory", "normalize_jid"]

log = logging.getLogger(__name__)


NEGATIVE_DISCOVERY_SECONDS: Final = 300.0
"""A contact with no certificates on PEP is asked again after this long..."""
STICKY_RETRY_SECONDS: Final = 10.0
"""...or this long when stanzas to it cannot go without a key."""
MAX_MISSES: Final = 10_000

_CERTIFICATE_TAG: Final = qname(NS_OBJENC, "certificate")
_DEVICE_TAG: Final = qname(NS_OBJENC, "device")
_IDENTITY_TAG: Final = qname(NS_OBJENC, "identity")
_ENCRYPTION_TAG: Final = qname(NS_OBJENC, "encryption")
_VOUCH_TAG: Final = qname(NS_OBJENC, "vouch")
_KEM_TAG: Final = qname(NS_OBJENC, "kem")


def normalize_jid(text: str) -> str:
    """The core's :data:`~slixmpp_objenc.core.certificates.Normalizer` with slixmpp's
    stringprep (nodeprep and nameprep, as Prosody applies them): the canonical
    bare JID; ``ValueError`` for an invalid or empty one."""
    bare = parse_address(text).bare
    if not bare:
        raise ValueError(f"invalid JID {text!r}")
    return bare


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
        self.trust_own_new_devices = bool(config.get("trust_own_new_devices"))
        self.publisher = Publisher(
            xmpp,
            persistence,
            identity,
            clock,
            self.timeout,
            enabled=self.enabled,
            device=lambda: keyring.device.keys,
        )
        self.released: Callable[[str], None] = lambda _bare: None
        """Called when a JID has no more decisions pending (held stanzas may go)."""
        self.revocations = Revocations(xmpp, keyring, persistence, clock, self.timeout)
        """Lost devices: revocations read from nodes and published on ours."""
        self._discovering: dict[str, asyncio.Future[None]] = {}
        self._misses: dict[str, float] = {}
        self._interest = False
        self._own_item_ids: dict[str, str] = {}
        self._told_withdrawn: set[tuple[str, str]] = set()
        self._retracting: set[asyncio.Future[None]] = set()
        self._changes: dict[str, asyncio.Event] = {}
        self._asked_own: set[str] = set()
        """Certificates on our node the application was asked about this session."""

    # -- the view the send decision reads ----------------------------------

    def usable(self, bare: str) -> list[PeerCertificate]:
        return self.keyring.usable(bare, self._clock())

    def held(self, bare: str) -> bool:
        # Only unpublished ones held: discovery may find them published again.
        return any(r.trust is not TrustState.UNPUBLISHED for r in self.keyring.records(bare))

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
        own = self.xmpp.boundjid.bare
        for record in self.keyring.pending(own):  # still undecided: asked again
            if record.fingerprint not in self._asked_own:
                self._asked_own.add(record.fingerprint)
                others = tuple(r.fingerprint for r in self.keyring.records(own) if r != record)
                event = KeyChangedEvent(own, others, record.fingerprint)
                self.xmpp.event("objenc_own_device_held", event)

    async def publish(self) -> bool:
        """Publish our certificate, readable by contacts only (see :class:`Publisher`)."""
        return await self.publisher.publish()

    # -- discovery -------------------------------------------------------------

    async def discover(self, bare: str) -> list[PeerCertificate]:
        """Fetch a bare JID's certificates now (forgetting a remembered miss)."""
        self._misses.pop(bare, None)
        await self.ensure_discovered(bare)
        return self.usable(bare)

    async def refresh(self, bare: str) -> None:
        """Read a JID's node again now (a device of it we do not hold wrote to us),
        sharing a fetch already running."""
        self._misses.pop(bare, None)
        await self.ensure_discovered(bare)

    async def introduced(self, bare: str, identity: bytes, encryption: bytes) -> None:
        """A device a stanza introduced (its sender's node is closed to us): taken
        as one item of that node would be, with the same rules (first contact
        pinned, anything new held), never as the whole node."""
        item = ET.Element("item", {"id": hashlib.sha256(identity).hexdigest()})
        device = ET.SubElement(item, _DEVICE_TAG)
        for tag, der in ((_IDENTITY_TAG, identity), (_ENCRYPTION_TAG, encryption)):
            ET.SubElement(device, tag).text = base64.b64encode(der).decode("ascii")
        await self.reconcile(bare, [item], complete=False)

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
            if (
                isinstance(exc, IqError)
                and exc.iq["error"]["condition"] == "item-not-found"
                and bare == self.xmpp.boundjid.bare
            ):
                await self.keyring.own_devices_known()  # no node: we are the first device
            return
        items = result["pubsub"]["items"]
        await self.reconcile(bare, [item.xml for item in items], complete=True)

    async def on_notified(self, msg: Message) -> None:
        """A certificate node changed (publish or retract): read it again."""
        sender = address(msg["from"]).bare  # one spelling: a final dot is no other node
        if not sender:
            return
        await self._persistence.loaded.wait()
        own = sender == self.xmpp.boundjid.bare
        if not own and not self.keyring.records(sender) and sender not in self._misses:
            return  # not a correspondent yet: its certificate is fetched on first send
        # (one we looked up and found nothing for has just published: read it now,
        # rather than writing to it in the clear until the miss expires)
        self._misses.pop(sender, None)
        await self.ensure_discovered(sender)

    async def on_configured(self, msg: Message) -> None:
        """Our node's configuration changed (XEP-0060 section 8.2.5: someone
        with our password, or the server): check it again, publishing anew."""
        if self.enabled and address(msg["from"]).bare == self.xmpp.boundjid.bare:
            await self._persistence.loaded.wait()
            await self.publisher.recheck()

    def on_subscription_changed(self, presence: Presence) -> None:
        """PEP access follows presence subscriptions: an earlier refusal may be stale."""
        self._misses.pop(address(presence["from"]).bare, None)

    async def next_change(self, bare: str) -> None:
        """Wait until a JID's node is read again (a notification), at most
        ``discovery_timeout`` seconds."""
        event = self._changes.setdefault(bare, asyncio.Event())
        try:
            await asyncio.wait_for(event.wait(), self.timeout)
        except TimeoutError:
            self._changes.pop(bare, None)

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
        longer published are dealt with (the rules:
        :func:`~slixmpp_objenc.core.trust.reconcile`)."""
        own_account = bare == self.xmpp.boundjid.bare
        held = {r.fingerprint: (r.trust, r.source) for r in self.keyring.records(bare)}
        publication = read_publication(
            bare,
            # a device of the draft's profile only reads RSA certificates (§13.6)
            [_published_item(item, self.keyring.device.keys is not None) for item in items],
            held=held,
            now=self._clock(),
            normalize=self.keyring.normalize,
            pinned={fp for fp, (trust, _source) in held.items() if trust.usable},
        )
        for item_id, reason in publication.skipped:
            log.info("objenc: ignoring item %r of %s's certificates: %s", item_id, bare, reason)
        for limit in publication.limits:
            log.warning(
                "objenc: %s's certificate node exceeds a limit: %s (%d, at most %d)",
                bare,
                limit.name,
                limit.found,
                limit.maximum,
            )
            self.xmpp.event(
                "objenc_directory_limit",
                DirectoryLimitEvent(bare, limit.name, limit.found, limit.maximum),
            )
        if own_account:
            self._own_item_ids.update(publication.item_ids)
        first_contact = own_account and complete and self.keyring.own_first_contact
        inherited = vouched_trust(self.keyring, bare, publication)
        result = reconcile(
            held,
            list(publication.certificates),
            self.keyring.own_fingerprints(),
            trust_new_devices=self.trust_own_new_devices if own_account else self.trust_new_devices,
            complete=complete,
            own_account=own_account,
            first_contact=first_contact,
            inherited=inherited,
        )
        new = [s.fingerprint for s in result.sightings if s.fingerprint not in held]
        barred = self.revocations.barred(bare, items) if new else set()
        for sighting in result.sightings:
            peer = publication.certificates[sighting.fingerprint]
            if sighting.fingerprint in barred and sighting.fingerprint not in held:
                # revoked before it was published: never pinned, never asked about
                await self.keyring.observe(peer, source="pep", jid=bare, trust=TrustState.REVOKED)
                continue
            if sighting.observation is Observation.VOUCHED:
                rsa_fingerprint = publication.vouches[sighting.fingerprint][0]
                await take_vouch(self.keyring, self._persistence, bare, rsa_fingerprint, peer)
            await self.keyring.observe(peer, source="pep", jid=bare, trust=sighting.trust)
            self._report(bare, sighting.observation, sighting.trust, sighting.previous, peer)
        await self._withdrawn(bare, result)
        if first_contact:
            await self.keyring.own_devices_known()  # before anything else can fail
        await self.revocations.take(bare, items, publication.vouches)
        if result.over_limit:
            log.warning("objenc: %d new certificates of %s not recorded", result.over_limit, bare)
            self.xmpp.event(
                "objenc_directory_limit",
                DirectoryLimitEvent(
                    bare, "certificates-held", len(held) + result.over_limit, MAX_HELD_PER_JID
                ),
            )
        changed = self._changes.pop(bare, None)
        if changed is not None:
            changed.set()
        if not self.keyring.pending(bare):
            self.released(bare)
        if not publication.certificates:
            self.remember_miss(bare)

    def _report(
        self,
        bare: str,
        observation: Observation,
        trust: TrustState | None,
        previous: tuple[str, ...],
        peer: PeerCertificate,
    ) -> None:
        own_account = bare == self.xmpp.boundjid.bare
        event = KeyChangedEvent(bare, previous, peer.fingerprint, peer.label)
        if observation is Observation.RESTORED:
            log.info("objenc: %s publishes %s again: %s", bare, peer.fingerprint, trust)
            if trust is not TrustState.UNTRUSTED:
                return
            observation = Observation.CHANGED
        if own_account:
            if observation is Observation.FIRST:
                log.info("objenc: pinned %s, a device our account already had", peer.fingerprint)
            elif observation is Observation.CHANGED:
                log.warning(
                    "objenc: a new certificate %s is on our own node: not used until a "
                    "device of ours accepts it (accept_key_change(%s, fingerprint))",
                    peer.fingerprint,
                    bare,
                )
                self._asked_own.add(peer.fingerprint)
                self.xmpp.event("objenc_own_device_held", event)
            elif observation is Observation.ADDED:
                log.warning(
                    "objenc: TRUSTING a new certificate %s on our own node WITHOUT A "
                    "DECISION (trust_own_new_devices): every stanza is now encrypted to it "
                    "too; if no device of yours was just added, your account is compromised",
                    peer.fingerprint,
                )
                self.xmpp.event("objenc_own_device_added", event)
            return
        name = {
            Observation.CHANGED: "objenc_key_changed",
            Observation.ADDED: "objenc_device_added",
        }.get(observation)
        if name is not None:
            self.xmpp.event(name, event)

    async def _withdrawn(self, bare: str, result: Reconciliation) -> None:
        for fingerprint in result.unpublished:
            log.info("objenc: %s no longer publishes %s: not used until it does", bare, fingerprint)
            await self.keyring.set_trust(bare, fingerprint, TrustState.UNPUBLISHED)
        for fingerprint in result.forgotten:
            log.info("objenc: %s withdrew %s before it was decided on", bare, fingerprint)
            await self.keyring.forget(bare, fingerprint)
        for fingerprint in result.withdrawn_verified:
            if (bare, fingerprint) in self._told_withdrawn:
                continue
            self._told_withdrawn.add((bare, fingerprint))
            log.warning(
                "objenc: %s no longer publishes its verified certificate %s; it is kept "
                "(only you can revoke it)",
                bare,
                fingerprint,
            )
            self.xmpp.event(
                "objenc_key_unpublished",
                KeyUnpublishedEvent(bare, fingerprint, TrustState.VERIFIED),
            )

    # -- by hand ---------------------------------------------------------------

    def add_manual(self, pem: bytes, trust: TrustState | str, jid: Any = None) -> PeerCertificate:
        """The plugin's ``add_peer_certificate``: :class:`CertificateError`, and only
        that, for any bad input (certificate, JID or trust state)."""
        peer = load_device(pem, now=self._clock(), normalize=self.keyring.normalize)
        if jid is None and len(peer.jids) != 1:
            raise CertificateError(
                f"certificate names {len(peer.jids)} JIDs; pass jid= to choose one"
            )
        try:
            target = canonical_jid(str(jid), self.keyring.normalize) if jid is not None else None
            state = TrustState(trust)
        except ValueError as exc:
            raise CertificateError(str(exc)) from exc
        _, records = self.keyring.observe_now(peer, source="manual", trust=state, jid=target)
        for record in records:
            self._persistence.save_peer(record)
            self.released(record.jid)
        return peer

    def remove(self, jid: str, fingerprint: str | None) -> None:
        """The plugin's ``remove_peer_certificate``: a contact's certificates are
        forgotten; a device of ours is revoked (so it never comes back as
        trusted, nor as a question) and retracted from our node."""
        bare = self.keyring.bare(jid)
        own = bare == self.xmpp.boundjid.bare
        for record in self.keyring.records(jid):
            if fingerprint is not None and record.fingerprint != fingerprint:
                continue
            if own:
                revoked = TrustState.REVOKED
                self._persistence.save_peer(
                    self.keyring.set_trust_now(record.jid, record.fingerprint, revoked)
                )
                task = asyncio.ensure_future(
                    self.retract_own(record.fingerprint), loop=self.xmpp.loop
                )
                self._retracting.add(task)
                task.add_done_callback(self._retracting.discard)
            else:
                self.keyring.forget_now(record.jid, record.fingerprint)
                self._persistence.delete_peer(record.jid, record.fingerprint)
        if bare is not None:
            self.released(bare)

    async def retract_own(self, fingerprint: str) -> None:
        """Retract a removed device of ours from our node (best effort), so that
        contacts stop encrypting to it too; the key ring keeps it ``revoked``."""
        if not self.enabled:
            return
        for item_id in {fingerprint, self._own_item_ids.get(fingerprint, fingerprint)}:
            try:
                await self.xmpp.plugin["xep_0060"].retract(
                    None, NODE_CERTS, item_id, notify=True, timeout=self.timeout
                )
            except (IqError, IqTimeout) as exc:
                log.info("objenc: could not retract %s from our node: %s", item_id, exc)


def _published_item(item: ET.Element, devices_read: bool) -> PublishedItem:
    devices = item.findall(_DEVICE_TAG) if devices_read else []
    device = None
    if devices:
        # more than one <device/> reads as one with too many certificates
        device = DevicePayload(
            tuple(c.text or "" for d in devices for c in d.findall(_IDENTITY_TAG)),
            tuple(c.text or "" for d in devices for c in d.findall(_ENCRYPTION_TAG)),
            tuple(
                (v.get("cert-sha256", ""), v.text or "")
                for d in devices
                for v in d.findall(_VOUCH_TAG)
            ),
            tuple(c.text or "" for d in devices for c in d.findall(_KEM_TAG)),
        )
    return PublishedItem(
        item.get("id", ""),
        tuple(c.text or "" for c in item.findall(_CERTIFICATE_TAG)),
        device,
    )


async def take_vouch(
    keyring: Keyring,
    persistence: Persistence,
    bare: str,
    rsa_fingerprint: str,
    peer: PeerCertificate,
) -> None:
    """A vouch carries the RSA certificate's trust to the identity: remember that
    it was used (once), and drop the RSA certificate, which is the same device
    (it would otherwise stay beside it, outside every verification)."""
    key, value = keyring.use_vouch_now(bare, rsa_fingerprint, peer.fingerprint)
    persistence.set_setting(key, value)
    log.info("objenc: %s's %s vouches for its identity %s", bare, rsa_fingerprint, peer.fingerprint)
    await keyring.forget(bare, rsa_fingerprint)


def vouched_trust(keyring: Keyring, bare: str, publication: Publication) -> dict[str, TrustState]:
    """New identities that take the trust of the RSA certificate vouching for
    them: one we hold pinned or verified for this JID, not used before, and
    vouching for no other identity in this publication (one device, one
    identity: two claims take nothing, and are held like any new device)."""
    inherited = {}
    claims = Counter(rsa for rsa, _signature in publication.vouches.values())
    for fingerprint, (rsa_fingerprint, signature) in publication.vouches.items():
        if claims[rsa_fingerprint] != 1:
            continue
        record = keyring.record(bare, rsa_fingerprint)
        if (
            keyring.record(bare, fingerprint) is not None
            or record is None
            or not record.trust.usable
            or keyring.vouch_used(bare, rsa_fingerprint)
        ):
            continue
        rsa = keyring.validated(record)
        identity = publication.certificates[fingerprint]
        if rsa is not None and check_vouch(rsa, identity, signature):
            inherited[fingerprint] = record.trust
    return inherited
