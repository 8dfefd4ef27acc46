"""Our identities and the peer certificates we hold, with their trust states.

Cached in memory so the stanza path never waits on storage, and written
through to a :class:`~slixmpp_objenc.store.Storage` so nothing is lost. No
slixmpp here: the plugin and the ``objenc`` command line share it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from .core import (
    CertificateError,
    Identity,
    PeerCertificate,
    generate_identity,
    load_certificate,
    load_private_key,
    normalize_bare_jid,
    validate_peer_certificate,
)
from .core.certificates import DEFAULT_KEY_SIZE
from .core.timestamps import utcnow
from .core.trust import Observation, classify_certificate
from .store import OwnIdentityRecord, PeerRecord, Storage, TrustState

__all__ = ["CertificateSighting", "Keyring"]

_REQUIRE_PREFIX = "require-encryption:"


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

    def __init__(self, storage: Storage, clock: Callable[[], datetime] = utcnow) -> None:
        self.storage = storage
        self._clock = clock
        self._identities: list[Identity] = []
        self._peers: dict[str, dict[str, PeerRecord]] = {}
        self._validated: dict[str, PeerCertificate] = {}
        self._required: set[str] = set()

    # -- loading -----------------------------------------------------------

    async def load(self) -> None:
        """Read everything from storage."""
        identities = await self.storage.load_identities()
        active = [r for r in identities if r.active] + [r for r in identities if not r.active]
        loaded = [
            Identity(load_private_key(r.key_pem), load_certificate(r.cert_pem)) for r in active
        ]
        known = {i.fingerprint for i in loaded}
        self._identities = loaded + [i for i in self._identities if i.fingerprint not in known]
        added_before_load = self._peers
        self._peers = {}
        for record in await self.storage.load_peers():
            self._peers.setdefault(record.jid, {})[record.fingerprint] = record
        for jid, held in added_before_load.items():  # their writes are still queued
            self._peers.setdefault(jid, {}).update(held)
        required = await self.storage.settings_with_prefix(_REQUIRE_PREFIX)
        self._required = {k[len(_REQUIRE_PREFIX) :] for k, v in required.items() if v == "1"}

    # -- our identities ----------------------------------------------------

    @property
    def identities(self) -> list[Identity]:
        """Ours, the active one first."""
        return list(self._identities)

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
        identity = await asyncio.to_thread(generate_identity, jid, key_size=key_size)
        await self.add_identity(identity)
        return identity

    # -- peers -------------------------------------------------------------

    def records(self, jid: str) -> list[PeerRecord]:
        """Every certificate held for a bare JID, any trust state."""
        return list(self._peers.get(normalize_bare_jid(jid), {}).values())

    def all_records(self) -> list[PeerRecord]:
        """Every peer certificate held."""
        return [r for held in self._peers.values() for r in held.values()]

    def record(self, jid: str, fingerprint: str) -> PeerRecord | None:
        """One certificate held for a JID."""
        return self._peers.get(normalize_bare_jid(jid), {}).get(fingerprint)

    def usable(self, jid: str, now: datetime | None = None) -> list[PeerCertificate]:
        """Certificates we may encrypt to: trusted, valid now, naming the JID."""
        now = now or self._clock()
        result = []
        for record in self.records(jid):
            if not record.trust.usable:
                continue
            peer = self._validated_certificate(record, now)
            if peer is not None:
                result.append(peer)
        return result

    def pending(self, jid: str) -> list[PeerRecord]:
        """Certificates awaiting the application's decision (state ``untrusted``)."""
        return [r for r in self.records(jid) if r.trust is TrustState.UNTRUSTED]

    def sticky(self, jid: str) -> bool:
        """Whether plaintext to this JID is refused: a certificate was ever held,
        or encryption was required in advance."""
        bare = normalize_bare_jid(jid)
        return bare in self._required or bool(self._peers.get(bare))

    def _validated_certificate(self, record: PeerRecord, now: datetime) -> PeerCertificate | None:
        cached = self._validated.get(record.fingerprint)
        if cached is None:
            try:
                cached = validate_peer_certificate(record.cert_pem, now=now)
            except CertificateError:
                return None
            self._validated[record.fingerprint] = cached
        if cached.expired(now) or normalize_bare_jid(record.jid) not in cached.jids:
            return None
        return cached

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
        if jid is not None and normalize_bare_jid(jid) not in certificate.jids:
            raise CertificateError(f"certificate does not name {jid}")
        targets = [normalize_bare_jid(jid)] if jid is not None else sorted(certificate.jids)
        for jid in targets:
            held = self._peers.setdefault(jid, {})
            observation = classify_certificate(
                {fp: r.trust.value for fp, r in held.items()}, certificate.fingerprint
            )
            previous = tuple(fp for fp in held if fp != certificate.fingerprint)
            existing = held.get(certificate.fingerprint)
            if existing is not None:
                record = PeerRecord(
                    jid,
                    certificate.fingerprint,
                    existing.cert_pem,
                    trust or existing.trust,
                    existing.first_seen,
                    now,
                    existing.source,
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
                )
            held[certificate.fingerprint] = record
            self._validated[certificate.fingerprint] = certificate
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
        bare = normalize_bare_jid(jid)
        record = self._peers[bare][fingerprint].with_trust(trust)
        self._peers[bare][fingerprint] = record
        await self.storage.save_peer(record)
        return record

    async def forget(self, jid: str, fingerprint: str) -> None:
        """Drop a held certificate altogether (stickiness stays if others remain)."""
        self.forget_now(jid, fingerprint)
        await self.storage.delete_peer(normalize_bare_jid(jid), fingerprint)

    def forget_now(self, jid: str, fingerprint: str) -> None:
        """In memory only: see :meth:`forget`."""
        bare = normalize_bare_jid(jid)
        self._peers.get(bare, {}).pop(fingerprint, None)
        if bare in self._peers and not self._peers[bare]:
            del self._peers[bare]

    async def require_encryption(self, jid: str, required: bool = True) -> None:
        """Refuse plaintext to ``jid`` even before any certificate is known."""
        key, value = self.require_now(jid, required)
        await self.storage.set_setting(key, value)

    def require_now(self, jid: str, required: bool = True) -> tuple[str, str | None]:
        """In memory only: see :meth:`require_encryption`; returns the setting to store."""
        bare = normalize_bare_jid(jid)
        if required:
            self._required.add(bare)
        else:
            self._required.discard(bare)
        return _REQUIRE_PREFIX + bare, "1" if required else None
