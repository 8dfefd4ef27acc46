"""The storage interface: what the plugin persists, and the records it uses.

Small and async so that an application can back it with anything (a file, a
database server, a keychain). Every method is one transaction: when it
returns, what it wrote survives a crash of the process.
"""

from __future__ import annotations

import abc
from collections.abc import Collection
from dataclasses import dataclass, replace
from datetime import datetime

from ..core.replay import ReplayGuardState, ReplayPolicy
from ..core.trust import TrustState

__all__ = [
    "OwnEncryptionKeyRecord",
    "OwnIdentityRecord",
    "PeerRecord",
    "Storage",
    "TrustState",
]


@dataclass(frozen=True, slots=True)
class OwnIdentityRecord:
    """One of our own private keys with its certificate."""

    fingerprint: str
    key_pem: bytes
    cert_pem: bytes
    created_at: datetime
    active: bool = True
    """The active identity is the one published and used to decrypt first."""
    encryption_key_pem: bytes | None = None
    """For an Ed25519 identity (the authenticated profile, docs/PROTOCOL.md section 13):
    the current X25519 encryption key (PKCS#8 PEM) and its certificate, issued by this
    identity. ``None`` for an RSA identity (the draft's profile)."""
    encryption_cert_pem: bytes | None = None
    """The certificate of :attr:`encryption_key_pem` (PEM); see there."""


@dataclass(frozen=True, slots=True)
class OwnEncryptionKeyRecord:
    """One of our own X25519 encryption keys (authenticated profile) with its certificate,
    kept in the history of keys that the identity rotates (PROTOCOL.md 13)."""

    fingerprint: str
    """SHA-256 (hex) of the certificate's DER."""
    identity_fingerprint: str
    """The fingerprint of the identity that issued the certificate."""
    key_pem: bytes
    """The private key, PKCS#8 PEM."""
    cert_pem: bytes
    """Its certificate, PEM."""
    issued_at: datetime
    retired_at: datetime | None = None
    """When a newer key replaced it; ``None`` while it is the current one."""
    kem_key_pem: bytes | None = None
    """The ML-KEM-768 key issued with it (PKCS#8 PEM; the hybrid wrap), destroyed
    with it; ``None`` for a key made before the hybrid."""
    kem_cert_pem: bytes | None = None
    """The certificate of :attr:`kem_key_pem` (PEM)."""


@dataclass(frozen=True, slots=True)
class PeerRecord:
    """A peer certificate held for a bare JID, with its trust state."""

    jid: str
    fingerprint: str
    cert_pem: bytes
    trust: TrustState
    first_seen: datetime
    last_seen: datetime
    source: str = "manual"
    """Where it came from: ``manual``, ``pep``, ``import``."""
    encryption_pem: bytes | None = None
    """For an identity certificate (authenticated profile): the latest encryption
    certificate it issued that we checked against it (PEM); ``None`` for an RSA
    certificate or before one is known. Replaced without a trust change (PROTOCOL.md 13)."""
    previous_encryption_pem: bytes | None = None
    """The encryption certificates this identity issued before :attr:`encryption_pem`
    and that are still valid (PEM, concatenated, newest first): stanzas its device
    sealed before it rotated, delivered late (offline storage), still prove their
    sender (PROTOCOL.md 13.10). Never encrypted to."""

    def with_trust(self, trust: TrustState) -> PeerRecord:
        return replace(self, trust=trust)

    def with_encryption(self, pem: bytes | None) -> PeerRecord:
        return replace(self, encryption_pem=pem)


class Storage(abc.ABC):
    """Persistent state of one account.

    Implementations must make every mutating call atomic and durable
    against a crash of the process once it has returned.
    """

    async def open(self) -> None:  # noqa: B027 - optional hook
        """Prepare the backend (create, migrate). Called once before use."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources. The store is not used afterwards."""

    # our identities
    @abc.abstractmethod
    async def load_identities(self) -> list[OwnIdentityRecord]:
        """All our identities, oldest first."""

    @abc.abstractmethod
    async def save_identity(self, record: OwnIdentityRecord) -> None:
        """Insert or replace (by fingerprint)."""

    # our encryption keys (optional: the base store keeps none)
    async def load_encryption_keys(self) -> list[OwnEncryptionKeyRecord]:
        """Every encryption key held, oldest first. The base implementation holds none."""
        return []

    async def save_encryption_key(self, record: OwnEncryptionKeyRecord) -> None:
        """Insert or replace (by fingerprint)."""
        raise NotImplementedError(
            f"{type(self).__name__} does not keep encryption keys (save_encryption_key)"
        )

    async def destroy_encryption_key(self, fingerprint: str) -> None:
        """Delete the private key so that it cannot be recovered from this store's files
        (SQLite: secure_delete, then a WAL checkpoint); no error if absent."""
        raise NotImplementedError(
            f"{type(self).__name__} does not keep encryption keys (destroy_encryption_key)"
        )

    # peers
    @abc.abstractmethod
    async def load_peers(self) -> list[PeerRecord]:
        """Every peer certificate held, any trust state."""

    @abc.abstractmethod
    async def save_peer(self, record: PeerRecord) -> None:
        """Insert or replace (by jid and fingerprint)."""

    @abc.abstractmethod
    async def delete_peer(self, jid: str, fingerprint: str) -> None:
        """Forget one peer certificate (no error if absent)."""

    # replay protection
    @abc.abstractmethod
    async def load_replay_state(self) -> ReplayGuardState:
        """What :class:`~slixmpp_objenc.core.ReplayGuard` needs after a restart:
        every digest kept (oldest first), and per sender bare JID its floor,
        activity and digests. Times are integer milliseconds."""

    @abc.abstractmethod
    async def record_admitted(
        self, sender: str, timestamp_ms: int, received_ms: int, digest: bytes
    ) -> None:
        """Remember one admitted stanza from the full JID ``sender``: its digest, for
        its bare JID (a new bare JID starts at the forgotten floor); the last
        timestamp of the full JID (never later than ``received_ms``, and never
        lowered), and the bare JID's activity."""

    async def prune_replay_state(  # noqa: B027 - optional: without it, nothing is dropped
        self, policy: ReplayPolicy, now_ms: int, keep: Collection[str] = ()
    ) -> None:
        """Drop what ``policy`` says may go, as :class:`~slixmpp_objenc.core.replay.ReplayLedger`
        does: expired digests and dead rule-3 entries; the oldest digests beyond the
        caps (raising their sender's floor); senders with nothing left to say; and,
        beyond ``policy.max_senders``, the least recently active quiet senders not
        in ``keep`` (raising the forgotten floor). Never drops a digest that a floor
        does not then cover. The base implementation keeps everything (safe,
        unbounded)."""

    # small settings: last sent timestamp, encryption policies
    @abc.abstractmethod
    async def get_setting(self, key: str) -> str | None:
        """A small string value, or ``None``."""

    @abc.abstractmethod
    async def set_setting(self, key: str, value: str | None) -> None:
        """Set (or delete, with ``None``) a small string value."""

    @abc.abstractmethod
    async def settings_with_prefix(self, prefix: str) -> dict[str, str]:
        """Every setting whose key starts with ``prefix``."""
