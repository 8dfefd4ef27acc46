"""Persistent state: the storage interface and its two backends."""

from __future__ import annotations

from .base import OwnIdentityRecord, PeerRecord, Storage, TrustState
from .memory import MemoryStorage

__all__ = ["MemoryStorage", "OwnIdentityRecord", "PeerRecord", "Storage", "TrustState"]
