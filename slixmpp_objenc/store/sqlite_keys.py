"""Our encryption keys in SQL (schema 4): what :class:`~slixmpp_objenc.store.sqlite.SQLiteStorage`
runs, inside its own transactions, for the encryption key methods of the storage interface.

Table ``encryption_keys``: the history of our X25519 encryption keys (authenticated
profile, PROTOCOL.md 13), by certificate fingerprint, with the identity that issued
each and when it was issued and retired (integer milliseconds, UTC). Destroying a
key relies on ``secure_delete``, which the store turns on for its connection, and
on :func:`checkpoint` once the deleting transaction has committed.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from datetime import datetime
from typing import Final

from .base import OwnEncryptionKeyRecord

__all__ = ["ADD_KEM", "CREATE_TABLE", "checkpoint", "delete", "load", "save"]

log = logging.getLogger(__name__)

CREATE_TABLE: Final = """
    CREATE TABLE encryption_keys (
        fingerprint          TEXT    PRIMARY KEY,
        identity_fingerprint TEXT    NOT NULL,
        key_pem              BLOB    NOT NULL,
        cert_pem             BLOB    NOT NULL,
        issued_ms            INTEGER NOT NULL,
        retired_ms           INTEGER
    )
    """


ADD_KEM: Final = (
    "ALTER TABLE encryption_keys ADD COLUMN kem_key_pem BLOB",
    "ALTER TABLE encryption_keys ADD COLUMN kem_cert_pem BLOB",
)
"""Schema 5 to 6: the ML-KEM-768 key issued with each encryption key."""


def load(
    conn: sqlite3.Connection, from_ms: Callable[[int], datetime]
) -> list[OwnEncryptionKeyRecord]:
    rows = conn.execute(
        "SELECT fingerprint, identity_fingerprint, key_pem, cert_pem, issued_ms, retired_ms,"
        " kem_key_pem, kem_cert_pem FROM encryption_keys ORDER BY issued_ms, fingerprint"
    ).fetchall()
    return [
        OwnEncryptionKeyRecord(
            fingerprint=fingerprint,
            identity_fingerprint=identity,
            key_pem=bytes(key_pem),
            cert_pem=bytes(cert_pem),
            issued_at=from_ms(issued),
            retired_at=None if retired is None else from_ms(retired),
            kem_key_pem=None if kem_key is None else bytes(kem_key),
            kem_cert_pem=None if kem_cert is None else bytes(kem_cert),
        )
        for fingerprint, identity, key_pem, cert_pem, issued, retired, kem_key, kem_cert in rows
    ]


def save(
    conn: sqlite3.Connection, record: OwnEncryptionKeyRecord, to_ms: Callable[[datetime], int]
) -> None:
    params = (
        record.fingerprint,
        record.identity_fingerprint,
        bytes(record.key_pem),
        bytes(record.cert_pem),
        to_ms(record.issued_at),
        None if record.retired_at is None else to_ms(record.retired_at),
        None if record.kem_key_pem is None else bytes(record.kem_key_pem),
        None if record.kem_cert_pem is None else bytes(record.kem_cert_pem),
    )
    conn.execute(
        "INSERT OR REPLACE INTO encryption_keys (fingerprint, identity_fingerprint,"
        " key_pem, cert_pem, issued_ms, retired_ms, kem_key_pem, kem_cert_pem)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        params,
    )


def delete(conn: sqlite3.Connection, fingerprint: str) -> None:
    """Delete one key; ``secure_delete`` must be on so that its bytes are overwritten."""
    if int(conn.execute("PRAGMA secure_delete").fetchone()[0]) != 1:
        raise RuntimeError("secure_delete is off: refusing to leave a key in free pages")
    conn.execute("DELETE FROM encryption_keys WHERE fingerprint = ?", (fingerprint,))


def checkpoint(conn: sqlite3.Connection, path: object) -> None:
    """Copy the WAL into the database and truncate it, so that it holds no old page.

    Outside a transaction. If another connection keeps the checkpoint from finishing,
    the WAL may still hold the key until a later checkpoint: logged, not raised.
    """
    busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    if busy:
        log.warning("%s: WAL checkpoint blocked; a destroyed key may linger in the WAL", path)
