"""Persistent state: the storage interface and its two backends."""

from __future__ import annotations

from .base import OwnEncryptionKeyRecord, OwnIdentityRecord, PeerRecord, Storage, TrustState
from .memory import MemoryStorage
from .sqlite import SQLiteStorage, account_store_path, default_data_dir

__all__ = [
    "MemoryStorage",
    "OwnEncryptionKeyRecord",
    "OwnIdentityRecord",
    "PeerRecord",
    "SQLiteStorage",
    "Storage",
    "TrustState",
    "account_store_path",
    "default_data_dir",
]
