"""The storage interface: what the plugin persists, and the records it uses.

Small and async so that an application can back it with anything (a file, a
database server, a keychain). Every method is one transaction: when it
returns, what it wrote survives a crash of the process.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, replace
from datetime import datetime

from ..core.timestamps import ReplayGuardState
from ..core.trust import TrustState

__all__ = [
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

    def with_trust(self, trust: TrustState) -> PeerRecord:
        return replace(self, trust=trust)


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
        """What :class:`~slixmpp_objenc.core.ReplayGuard` needs after a restart;
        digests oldest first by timestamp. Datetimes are kept to the millisecond."""

    @abc.abstractmethod
    async def record_admitted(
        self, sender: str, timestamp_ms: int, received_ms: int, digest: bytes
    ) -> None:
        """Remember one admitted stanza (last timestamp per sender, and its digest)."""

    @abc.abstractmethod
    async def prune_replay(self, older_than_ms: int, max_entries: int) -> None:
        """Drop digests with a timestamp before ``older_than_ms``, keep at most ``max_entries``."""

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
