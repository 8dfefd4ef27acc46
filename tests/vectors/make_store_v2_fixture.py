"""Writes tests/vectors/store-v2.sqlite (+ .json) with the schema-2 SQLiteStorage."""

from __future__ import annotations

import asyncio
import hashlib
import json
import sqlite3
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from slixmpp_objenc.core import generate_identity
from slixmpp_objenc.store import OwnIdentityRecord, PeerRecord, TrustState
from slixmpp_objenc.store.sqlite import MIGRATIONS, SQLiteStorage

NOW = datetime(2026, 3, 1, 12, 0, 0, 123_000, tzinfo=UTC)


def sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def ms(d: datetime) -> int:
    return int(d.timestamp() * 1000)


async def main(out_dir: Path) -> None:
    version = len(MIGRATIONS)
    out = out_dir / f"store-v{version}.sqlite"
    work = Path("/tmp/storefix/work.sqlite")
    for p in (work, work.with_name(work.name + "-wal"), work.with_name(work.name + "-shm")):
        p.unlink(missing_ok=True)
    own = generate_identity("juliet@capulet.lit", key_size=2048, now=NOW)
    romeo = generate_identity("romeo@montague.lit", key_size=2048, now=NOW)
    nurse = generate_identity("nurse@capulet.lit", key_size=2048, now=NOW)
    identity = OwnIdentityRecord(
        own.fingerprint, own.private_key_pem(), own.certificate_pem(), NOW, active=True
    )
    peers = [
        PeerRecord(
            "romeo@montague.lit",
            romeo.fingerprint,
            romeo.certificate_pem(),
            TrustState.VERIFIED,
            NOW + timedelta(seconds=1),
            NOW + timedelta(seconds=2),
            "pep",
        ),
        PeerRecord(
            "nurse@capulet.lit",
            nurse.fingerprint,
            nurse.certificate_pem(),
            TrustState.TOFU,
            NOW + timedelta(seconds=3),
            NOW + timedelta(seconds=4),
            "pep",
        ),
    ]
    settings = {"last_sent": "2026-03-01T12:00:00.123Z", "policy:romeo@montague.lit": "always"}
    admitted = ("romeo@montague.lit/orchard", ms(NOW) - 500, ms(NOW), bytes(range(32)))

    s = SQLiteStorage(work)
    await s.open()
    await s.save_identity(identity)
    for p in peers:
        await s.save_peer(p)
    for k, v in settings.items():
        await s.set_setting(k, v)
    await s.record_admitted(*admitted)
    state = await s.load_replay_state()
    await s.close()

    conn = sqlite3.connect(work, isolation_level=None)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    assert conn.execute("PRAGMA journal_mode = DELETE").fetchone()[0] == "delete"
    conn.execute("VACUUM")
    assert conn.execute("PRAGMA user_version").fetchone()[0] == version
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()
    for suffix in ("-wal", "-shm"):
        assert not work.with_name(work.name + suffix).exists(), suffix
    out.write_bytes(work.read_bytes())

    described = {
        "description": (
            f"A store written by SQLiteStorage at schema version {version} (journal_mode "
            "switched to DELETE so the file is self-contained); the migration tests open "
            "a copy. Times are ms since the epoch; *_sha256 are SHA-256 of the PEM blobs."
        ),
        "user_version": version,
        "identities": [
            {
                "fingerprint": identity.fingerprint,
                "jid": "juliet@capulet.lit",
                "key_pem_sha256": sha(identity.key_pem),
                "cert_pem_sha256": sha(identity.cert_pem),
                "created_at_ms": ms(identity.created_at),
                "active": identity.active,
            }
        ],
        "peers": [
            {
                "jid": p.jid,
                "fingerprint": p.fingerprint,
                "cert_pem_sha256": sha(p.cert_pem),
                "trust": p.trust.value,
                "first_seen_ms": ms(p.first_seen),
                "last_seen_ms": ms(p.last_seen),
                "source": p.source,
            }
            for p in peers
        ],
        "settings": settings,
        "replay": {
            "admitted": [
                {
                    "sender": admitted[0],
                    "timestamp_ms": admitted[1],
                    "received_ms": admitted[2],
                    "digest": admitted[3].hex(),
                }
            ],
            "last_accepted": {k: list(v) for k, v in state.last_accepted.items()},
            "seen": [[d.hex(), t] for d, t in state.seen],
            "senders": {
                k: {
                    "floor_ms": v.floor_ms,
                    "active_ms": v.active_ms,
                    "digests": [d.hex() for d in v.digests],
                }
                for k, v in state.senders.items()
            },
            "forgotten_floor_ms": state.forgotten_floor_ms,
        },
    }
    (out_dir / f"store-v{version}.json").write_text(json.dumps(described, indent=1) + "\n")
    print(out, out.stat().st_size)


asyncio.run(main(Path(sys.argv[1])))
