"""Our identities and the peer certificates we hold, with their trust states.

Cached in memory so the stanza path never waits on storage, and written
through to a :class:`~slixmpp_objenc.store.Storage` so nothing is lost. No
slixmpp here: the plugin and the ``objenc`` command line share it, and each
passes the same JID normalizer (slixmpp's stringprep), so a certificate is
held under the spelling slixmpp looks it up by.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

from .core import (
    CertificateError,
    Identity,
    PeerCertificate,
    generate_identity,
    load_certificate,
    load_private_key,
    normalize_bare_jid,
    xmpp_addresses,
)
from .core.certificates import DEFAULT_KEY_SIZE, Normalizer, canonical_jid
from .core.timestamps import utcnow
from .core.trust import Observation, classify_certificate
from .held_certificates import CheckedCertificates, newer_encryption, previous_after
from .own_device import OwnDevice
from .store import OwnIdentityRecord, PeerRecord, Storage, TrustState

__all__ = ["OWN_DEVICES_SETTING", "CertificateSighting", "Keyring"]

_REQUIRE_PREFIX = "require-encryption:"
_LEGACY_PREFIX = "legacy-devices:"
_VOUCHED_PREFIX = "vouched:"
_COUNTS_AS_IDENTITY = frozenset(
    {TrustState.VERIFIED, TrustState.TOFU, TrustState.UNTRUSTED, TrustState.UNPUBLISHED}
)
"""An identity in these states turns off the draft's profile for its JID (a
server hiding it, ``unpublished``, must not turn it back on); one the user
rejected (``revoked``) does not."""
OWN_DEVICES_SETTING = "own-devices"
"""``first-contact`` until this device has read its own account's node once
(it then pins the devices it finds, as a first contact), ``known`` after:
from then on a new device of ours is held for a decision."""


@dataclass(frozen=True, slots=True)
class CertificateSighting:
    """The outcome of :meth:`Keyring.observe`."""

    jid: str
    fingerprint: str
    observation: Observation
    trust: TrustState
    previous: tuple[str, ...]
    """Fingerprints already held for the JID (for a change: the old ones)."""


class Keyring:
    """Identities and peer certificates of one account."""

    def __init__(
        self,
        storage: Storage,
        clock: Callable[[], datetime] = utcnow,
        *,
        normalize: Normalizer = normalize_bare_jid,
    ) -> None:
        self.storage = storage
        self._clock = clock
        self.normalize = normalize
        """Canonical bare JIDs (``ValueError`` for an invalid one)."""
        self._identities: list[Identity] = []
        self.device = OwnDevice(storage, clock, normalize)
        """Our keys of the authenticated profile."""
        self._legacy: set[str] = set()
        self._vouched: set[str] = set()
        self._peers: dict[str, dict[str, PeerRecord]] = {}
        self._checked = CheckedCertificates(normalize)
        self._required: set[str] = set()
        self._own_first_contact = False

    def bare(self, jid: str) -> str | None:
        """``jid`` as the canonical bare JID things are held under; ``None`` if invalid."""
        try:
            return canonical_jid(jid, self.normalize)
        except ValueError:
            return None

    def _require_bare(self, jid: str) -> str:
        bare = self.bare(jid)
        if bare is None:
            raise CertificateError(f"{jid!r} is not a valid JID")
        return bare

    # -- loading -----------------------------------------------------------

    async def load(self) -> None:
        """Read everything from storage."""
        identities = await self.storage.load_identities()
        self.device.load(identities)
        await self.device.load_history()
        rsa = [r for r in identities if r.encryption_key_pem is None]
        active = [r for r in rsa if r.active] + [r for r in rsa if not r.active]
        loaded = [
            Identity(load_private_key(r.key_pem), load_certificate(r.cert_pem)) for r in active
        ]
        known = {i.fingerprint for i in loaded}
        self._identities = loaded + [i for i in self._identities if i.fingerprint not in known]
        added_before_load = self._peers
        self._peers = {}
        for record in await self.storage.load_peers():
            bare = self.bare(record.jid) or record.jid
            self._peers.setdefault(bare, {})[record.fingerprint] = record
        for jid, held in added_before_load.items():  # their writes are still queued
            self._peers.setdefault(jid, {}).update(held)
        required = await self.storage.settings_with_prefix(_REQUIRE_PREFIX)
        self._required = {
            self.bare(k[len(_REQUIRE_PREFIX) :]) or k[len(_REQUIRE_PREFIX) :]
            for k, v in required.items()
            if v == "1"
        }
        legacy = await self.storage.settings_with_prefix(_LEGACY_PREFIX)
        self._legacy = {k[len(_LEGACY_PREFIX) :] for k, v in legacy.items() if v == "1"}
        vouched = await self.storage.settings_with_prefix(_VOUCHED_PREFIX)
        self._vouched = {k[len(_VOUCHED_PREFIX) :] for k in vouched}
        own_devices = await self.storage.get_setting(OWN_DEVICES_SETTING)
        if own_devices is None:
            # A fresh store is a new device: its first read of its own node is a
            # first contact. A store from before this setting has read it already,
            # and pinned what appeared there without a decision: held again.
            own_devices = "first-contact" if not identities else "known"
            if identities:
                await self._hold_undecided_own_devices()
            await self.storage.set_setting(OWN_DEVICES_SETTING, own_devices)
        self._own_first_contact = own_devices == "first-contact"

    async def _hold_undecided_own_devices(self) -> None:
        own = {
            self.bare(address)
            for identity in self._identities
            for address in xmpp_addresses(identity.certificate)
        }
        for record in self.all_records():
            pinned = record.source == "pep" and record.trust is TrustState.TOFU
            if pinned and self.bare(record.jid) in own:
                await self.set_trust(record.jid, record.fingerprint, TrustState.UNTRUSTED)

    # -- our own account's other devices -----------------------------------

    @property
    def own_first_contact(self) -> bool:
        """Whether this device has yet to read its own account's node for the first
        time (it then pins what it finds; afterwards new devices are held)."""
        return self._own_first_contact

    async def own_devices_known(self) -> None:
        """This device has read its own node once: new devices of ours are held from now."""
        if self._own_first_contact:
            self._own_first_contact = False
            await self.storage.set_setting(OWN_DEVICES_SETTING, "known")

    # -- our identities ----------------------------------------------------

    @property
    def identities(self) -> list[Identity]:
        """Ours, the active one first."""
        return list(self._identities)

    def own_fingerprints(self) -> set[str]:
        """Every certificate of this device: RSA identities and our device's identity."""
        keys = self.device.keys
        return {i.fingerprint for i in self._identities} | ({keys.fingerprint} if keys else set())

    @property
    def identity(self) -> Identity | None:
        """The active identity, if any."""
        return self._identities[0] if self._identities else None

    async def add_identity(self, identity: Identity, *, active: bool = True) -> None:
        """Store an identity (made elsewhere, or loaded from files)."""
        record = OwnIdentityRecord(
            fingerprint=identity.fingerprint,
            key_pem=identity.private_key_pem(),
            cert_pem=identity.certificate_pem(),
            created_at=self._clock(),
            active=active,
        )
        if active:
            for other in self._identities:
                if other.fingerprint != identity.fingerprint:
                    await self.storage.save_identity(
                        OwnIdentityRecord(
                            other.fingerprint,
                            other.private_key_pem(),
                            other.certificate_pem(),
                            self._clock(),
                            active=False,
                        )
                    )
        await self.storage.save_identity(record)
        rest = [i for i in self._identities if i.fingerprint != identity.fingerprint]
        self._identities = [identity, *rest] if active else [*rest, identity]

    async def ensure_identity(self, jid: str, *, key_size: int = DEFAULT_KEY_SIZE) -> Identity:
        """The active identity; on first start, a new key and certificate for ``jid``."""
        if self.identity is not None:
            return self.identity
        make = functools.partial(generate_identity, normalize=self.normalize, now=self._clock())
        identity = await asyncio.to_thread(make, jid, key_size=key_size)
        await self.add_identity(identity)
        return identity

    # -- the authenticated profile's rules, per JID -----------------------------

    def has_identity(self, jid: str) -> bool:
        """Whether an identity certificate is held for ``jid`` (not rejected): the
        draft's profile is then neither sent to it nor accepted from it, unless
        its legacy devices are allowed."""
        return any(
            r.trust in _COUNTS_AS_IDENTITY and is_identity(r.cert_pem) for r in self.records(jid)
        )

    def legacy_allowed(self, jid: str) -> bool:
        """Whether the user allowed ``jid``'s devices of the draft's profile
        next to its identities (delivered unauthenticated)."""
        bare = self.bare(jid)
        return bare is not None and bare in self._legacy

    def allow_legacy_now(self, jid: str, allowed: bool = True) -> tuple[str, str | None]:
        """In memory only: see :meth:`legacy_allowed`; returns the setting to store."""
        bare = self._require_bare(jid)
        if allowed:
            self._legacy.add(bare)
        else:
            self._legacy.discard(bare)
        return _LEGACY_PREFIX + bare, "1" if allowed else None

    def vouch_used(self, jid: str, rsa_fingerprint: str) -> bool:
        """Whether an RSA certificate of ``jid`` already carried its trust to an
        identity (a vouch is taken once: a stolen RSA key replaces nothing later)."""
        return f"{self.bare(jid)}:{rsa_fingerprint}" in self._vouched

    def use_vouch_now(self, jid: str, rsa_fingerprint: str, identity: str) -> tuple[str, str]:
        """In memory only: see :meth:`vouch_used`; returns the setting to store."""
        name = f"{self._require_bare(jid)}:{rsa_fingerprint}"
        self._vouched.add(name)
        return _VOUCHED_PREFIX + name, identity

    def resolve_sender(
        self, jid: str, identity_id: bytes, encryption_id: bytes
    ) -> X25519PublicKey | None:
        """The X25519 key of a device held **for** ``jid`` (the outer sender's bare
        JID) with these certificate ids (ours, for our own). A contact's device in
        any state but ``revoked`` (its state is reported with what is delivered);
        one of our own account only once accepted (a held one does not speak as us)."""
        fingerprint, encryption = identity_id.hex(), encryption_id.hex()
        if self.device.keys is not None and fingerprint == self.device.keys.fingerprint:
            return self.device.public_key(self.bare(jid), encryption)
        record = self.record(jid, fingerprint)
        if record is None or record.trust in _refused_senders(record, self.device.certificate()):
            return None
        now = self._clock()
        peer = self._validated_certificate(record, now)
        if peer is not None and peer.encryption and peer.encryption.fingerprint == encryption:
            return peer.encryption.public_key
        return self._checked.previous_key(record, encryption, now)  # sealed before it rotated

    def superseded_at(self, jid: str, identity_id: bytes, encryption_id: bytes) -> datetime | None:
        """When a sender device's encryption certificate was replaced, if it was (see
        :meth:`CheckedCertificates.superseded_at`); ours: when we retired it."""
        fingerprint, encryption = identity_id.hex(), encryption_id.hex()
        if self.device.keys is not None and fingerprint == self.device.keys.fingerprint:
            return self.device.retired_at(encryption)
        record = self.record(jid, fingerprint)
        now = self._clock()
        return None if record is None else self._checked.superseded_at(record, encryption, now)

    # -- peers -------------------------------------------------------------

    def records(self, jid: str) -> list[PeerRecord]:
        """Every certificate held for a bare JID, any trust state."""
        bare = self.bare(jid)
        return list(self._peers.get(bare, {}).values()) if bare is not None else []

    def all_records(self) -> list[PeerRecord]:
        """Every peer certificate held."""
        return [r for held in self._peers.values() for r in held.values()]

    def record(self, jid: str, fingerprint: str) -> PeerRecord | None:
        """One certificate held for a JID."""
        bare = self.bare(jid)
        return self._peers.get(bare, {}).get(fingerprint) if bare is not None else None

    def usable(self, jid: str, now: datetime | None = None) -> list[PeerCertificate]:
        """Certificates we may encrypt to: trusted, valid now, naming the JID."""
        now = now or self._clock()
        bare = self.bare(jid)
        draft = not self.has_identity(jid) or self.legacy_allowed(jid)
        result = []
        for record in self.records(jid):
            if not record.trust.usable:
                continue
            peer = self._validated_certificate(record, now)
            if peer is None or bare not in peer.jids:
                continue
            if peer.encryption is not None if peer.authenticated else draft:
                result.append(peer)
        return result

    def pending(self, jid: str) -> list[PeerRecord]:
        """Certificates awaiting the application's decision (state ``untrusted``)."""
        return [r for r in self.records(jid) if r.trust.pending]

    def sticky(self, jid: str) -> bool:
        """Whether plaintext to this JID is refused: a certificate was ever held,
        or encryption was required in advance."""
        bare = self.bare(jid)
        return bare is not None and (bare in self._required or bool(self._peers.get(bare)))

    def validated(self, record: PeerRecord) -> PeerCertificate | None:
        """A held certificate, checked (valid now, naming its JID), or ``None``."""
        return self._validated_certificate(record, self._clock())

    def _validated_certificate(self, record: PeerRecord, now: datetime) -> PeerCertificate | None:
        return self._checked.device(record, now)

    def observe_now(
        self,
        certificate: PeerCertificate,
        *,
        source: str,
        trust: TrustState | None = None,
        jid: str | None = None,
    ) -> tuple[list[CertificateSighting], list[PeerRecord]]:
        """In memory only: record a sighting; return it and the records to persist.

        Without ``trust``: the first certificate for a JID is pinned (``tofu``);
        a different one later is held as ``untrusted`` until decided. An
        explicit ``trust`` (the user added it by hand) is taken as given. With
        ``jid``, the certificate is bound to that JID only (it must name it).
        """
        now = self._clock()
        sightings = []
        records = []
        if jid is not None and self._require_bare(jid) not in certificate.jids:
            raise CertificateError(f"certificate does not name {jid}")
        targets = [self._require_bare(jid)] if jid is not None else sorted(certificate.jids)
        for jid in targets:
            held = self._peers.setdefault(jid, {})
            observation = classify_certificate(
                {fp: r.trust.value for fp, r in held.items()}, certificate.fingerprint
            )
            previous = tuple(fp for fp in held if fp != certificate.fingerprint)
            existing = held.get(certificate.fingerprint)
            encryption = certificate.encryption.pem() if certificate.encryption else None
            if existing is not None:
                newer = newer_encryption(existing.encryption_pem, certificate)
                earlier = existing.previous_encryption_pem
                if newer != existing.encryption_pem:
                    earlier = previous_after(existing.encryption_pem, earlier, now)
                record = PeerRecord(
                    jid,
                    certificate.fingerprint,
                    existing.cert_pem,
                    trust or existing.trust,
                    existing.first_seen,
                    now,
                    existing.source,
                    newer,
                    earlier,
                )
            else:
                default = (
                    TrustState.TOFU if observation is Observation.FIRST else TrustState.UNTRUSTED
                )
                record = PeerRecord(
                    jid,
                    certificate.fingerprint,
                    certificate.pem(),
                    trust or default,
                    now,
                    now,
                    source,
                    encryption,
                )
            held[certificate.fingerprint] = record
            if encryption == record.encryption_pem:
                self._checked.remember(certificate, encryption)
            records.append(record)
            sightings.append(
                CertificateSighting(
                    jid, certificate.fingerprint, observation, record.trust, previous
                )
            )
        return sightings, records

    async def observe(
        self,
        certificate: PeerCertificate,
        *,
        source: str,
        trust: TrustState | None = None,
        jid: str | None = None,
    ) -> list[CertificateSighting]:
        """:meth:`observe_now`, then write the records through."""
        sightings, records = self.observe_now(certificate, source=source, trust=trust, jid=jid)
        for record in records:
            await self.storage.save_peer(record)
        return sightings

    async def set_trust(self, jid: str, fingerprint: str, trust: TrustState) -> PeerRecord:
        """Change the trust state of a held certificate; ``KeyError`` if not held."""
        record = self.set_trust_now(jid, fingerprint, trust)
        await self.storage.save_peer(record)
        return record

    def set_trust_now(self, jid: str, fingerprint: str, trust: TrustState) -> PeerRecord:
        """In memory only: see :meth:`set_trust`; returns the record to persist."""
        bare = self.bare(jid)
        if bare is None:
            raise KeyError(f"{jid!r} is not a valid JID")
        record = self._peers[bare][fingerprint].with_trust(TrustState(trust))
        self._peers[bare][fingerprint] = record
        return record

    async def forget(self, jid: str, fingerprint: str) -> None:
        """Drop a held certificate altogether (stickiness stays if others remain)."""
        record = self.forget_now(jid, fingerprint)
        if record is not None:
            await self.storage.delete_peer(record.jid, fingerprint)

    def forget_now(self, jid: str, fingerprint: str) -> PeerRecord | None:
        """In memory only: see :meth:`forget`; returns the record dropped, if any."""
        bare = self.bare(jid)
        if bare is None:
            return None
        record = self._peers.get(bare, {}).pop(fingerprint, None)
        if bare in self._peers and not self._peers[bare]:
            del self._peers[bare]
        return record

    async def require_encryption(self, jid: str, required: bool = True) -> None:
        """Refuse plaintext to ``jid`` even before any certificate is known."""
        key, value = self.require_now(jid, required)
        await self.storage.set_setting(key, value)

    def require_now(self, jid: str, required: bool = True) -> tuple[str, str | None]:
        """In memory only: see :meth:`require_encryption`; returns the setting to store."""
        bare = self.bare(jid) or normalize_bare_jid(jid)
        if required:
            self._required.add(bare)
        else:
            self._required.discard(bare)
        return _REQUIRE_PREFIX + bare, "1" if required else None


@functools.lru_cache(maxsize=4096)
def is_identity(cert_pem: bytes) -> bool:
    """Whether a held certificate is an identity (Ed25519), not RSA."""
    try:
        return isinstance(load_certificate(cert_pem).public_key(), Ed25519PublicKey)
    except (CertificateError, ValueError):
        return False


def _refused_senders(record: PeerRecord, own: PeerCertificate | None) -> tuple[TrustState, ...]:
    """Trust states whose devices do not open a stanza: for a device of our own
    account (``own``: our identity, naming our JID), held ones too."""
    if own is not None and record.jid in own.jids:
        return (TrustState.REVOKED, TrustState.UNTRUSTED)
    return (TrustState.REVOKED,)
