"""An in-memory backend: for tests and for applications that persist nothing."""

from __future__ import annotations

from collections import OrderedDict

from ..core.timestamps import ReplayGuardState
from .base import OwnIdentityRecord, PeerRecord, Storage

__all__ = ["MemoryStorage"]


class MemoryStorage(Storage):
    """Everything in dictionaries; lost when the process ends."""

    def __init__(self) -> None:
        self.identities: dict[str, OwnIdentityRecord] = {}
        self.peers: dict[tuple[str, str], PeerRecord] = {}
        self.last_accepted: dict[str, tuple[int, int]] = {}
        self.seen: OrderedDict[bytes, int] = OrderedDict()
        self.settings: dict[str, str] = {}

    async def load_identities(self) -> list[OwnIdentityRecord]:
        return sorted(self.identities.values(), key=lambda r: r.created_at)

    async def save_identity(self, record: OwnIdentityRecord) -> None:
        self.identities[record.fingerprint] = record

    async def load_peers(self) -> list[PeerRecord]:
        return list(self.peers.values())

    async def save_peer(self, record: PeerRecord) -> None:
        self.peers[(record.jid, record.fingerprint)] = record

    async def delete_peer(self, jid: str, fingerprint: str) -> None:
        self.peers.pop((jid, fingerprint), None)

    async def load_replay_state(self) -> ReplayGuardState:
        oldest_first = sorted(self.seen.items(), key=lambda item: item[1])
        return ReplayGuardState(dict(self.last_accepted), oldest_first)

    async def record_admitted(
        self, sender: str, timestamp_ms: int, received_ms: int, digest: bytes
    ) -> None:
        self.last_accepted[sender] = (timestamp_ms, received_ms)
        self.seen[digest] = timestamp_ms

    async def prune_replay(self, older_than_ms: int, max_entries: int) -> None:
        for digest in [d for d, ts in self.seen.items() if ts < older_than_ms]:
            del self.seen[digest]
        if len(self.seen) > max_entries:
            ordered = sorted(self.seen.items(), key=lambda item: item[1])
            self.seen = OrderedDict(ordered[len(ordered) - max_entries :])

    async def get_setting(self, key: str) -> str | None:
        return self.settings.get(key)

    async def set_setting(self, key: str, value: str | None) -> None:
        if value is None:
            self.settings.pop(key, None)
        else:
            self.settings[key] = value

    async def settings_with_prefix(self, prefix: str) -> dict[str, str]:
        return {k: v for k, v in self.settings.items() if k.startswith(prefix)}
