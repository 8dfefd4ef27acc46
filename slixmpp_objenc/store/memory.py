"""An in-memory backend: for tests and for applications that persist nothing."""

from __future__ import annotations

from collections.abc import Collection

from ..core.replay import ReplayGuardState, ReplayLedger, ReplayPolicy
from .base import OwnEncryptionKeyRecord, OwnIdentityRecord, PeerRecord, Storage

__all__ = ["MemoryStorage"]


class MemoryStorage(Storage):
    """Everything in dictionaries; lost when the process ends."""

    def __init__(self) -> None:
        self.identities: dict[str, OwnIdentityRecord] = {}
        self.encryption_keys: dict[str, OwnEncryptionKeyRecord] = {}
        self.peers: dict[tuple[str, str], PeerRecord] = {}
        self.replay = ReplayLedger()
        """The replay state, bounded by the same code as the guard's."""
        self.settings: dict[str, str] = {}

    async def load_identities(self) -> list[OwnIdentityRecord]:
        return sorted(self.identities.values(), key=lambda r: r.created_at)

    async def save_identity(self, record: OwnIdentityRecord) -> None:
        self.identities[record.fingerprint] = record

    async def load_encryption_keys(self) -> list[OwnEncryptionKeyRecord]:
        return sorted(self.encryption_keys.values(), key=lambda r: r.issued_at)

    async def save_encryption_key(self, record: OwnEncryptionKeyRecord) -> None:
        self.encryption_keys[record.fingerprint] = record

    async def destroy_encryption_key(self, fingerprint: str) -> None:
        self.encryption_keys.pop(fingerprint, None)

    async def load_peers(self) -> list[PeerRecord]:
        return list(self.peers.values())

    async def save_peer(self, record: PeerRecord) -> None:
        self.peers[(record.jid, record.fingerprint)] = record

    async def delete_peer(self, jid: str, fingerprint: str) -> None:
        self.peers.pop((jid, fingerprint), None)

    async def load_replay_state(self) -> ReplayGuardState:
        return self.replay.state()

    async def record_admitted(
        self, sender: str, timestamp_ms: int, received_ms: int, digest: bytes
    ) -> None:
        self.replay.remember(sender, timestamp_ms, received_ms, digest)

    async def prune_replay_state(
        self, policy: ReplayPolicy, now_ms: int, keep: Collection[str] = ()
    ) -> None:
        self.replay.policy = policy
        self.replay.protect = frozenset(keep).__contains__
        self.replay.prune(now_ms)

    async def get_setting(self, key: str) -> str | None:
        return self.settings.get(key)

    async def set_setting(self, key: str, value: str | None) -> None:
        if value is None:
            self.settings.pop(key, None)
        else:
            self.settings[key] = value

    async def settings_with_prefix(self, prefix: str) -> dict[str, str]:
        return {k: v for k, v in self.settings.items() if k.startswith(prefix)}
