"""The :class:`Storage` contract, run against every backend.

Datetimes here have millisecond precision (what the SQLite backend keeps) and
replay digests are recorded in timestamp order (the order both backends agree
on); the SQLite-only behaviour beyond that is in ``test_store_sqlite.py``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from slixmpp_objenc.core.replay import ReplayPolicy, SenderState
from slixmpp_objenc.core.timestamps import ReplayGuardState
from slixmpp_objenc.store import (
    MemoryStorage,
    OwnEncryptionKeyRecord,
    OwnIdentityRecord,
    PeerRecord,
    Storage,
    TrustState,
)
from slixmpp_objenc.store.sqlite import SQLiteStorage

T0 = datetime(2024, 3, 1, 12, 0, 0, 123_000, tzinfo=UTC)


@pytest.fixture(params=["memory", "sqlite"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Storage]:
    backend: Storage
    if request.param == "memory":
        backend = MemoryStorage()
    else:
        backend = SQLiteStorage(tmp_path / "store" / "account.sqlite3")
    await backend.open()
    try:
        yield backend
    finally:
        await backend.close()


def identity(n: int, *, created: datetime | None = None, active: bool = True) -> OwnIdentityRecord:
    return OwnIdentityRecord(
        fingerprint=f"{n:064x}",
        key_pem=b"-----BEGIN PRIVATE KEY-----\n%d\x00\xff\n" % n,
        cert_pem=b"-----BEGIN CERTIFICATE-----\n%d\n" % n,
        created_at=created if created is not None else T0 + timedelta(days=n),
        active=active,
    )


def peer(
    jid: str = "juliet@capulet.net",
    n: int = 1,
    trust: TrustState = TrustState.TOFU,
    **changes: Any,
) -> PeerRecord:
    record = PeerRecord(
        jid=jid,
        fingerprint=f"{n:064x}",
        cert_pem=b"-----BEGIN CERTIFICATE-----\n%d\x00\n" % n,
        trust=trust,
        first_seen=T0,
        last_seen=T0 + timedelta(hours=n, milliseconds=7),
        source="pep",
    )
    return replace(record, **changes)


def by_key(peers: list[PeerRecord]) -> list[PeerRecord]:
    return sorted(peers, key=lambda p: (p.jid, p.fingerprint))


# -- identities ------------------------------------------------------------------


async def test_identities_start_empty(store: Storage) -> None:
    assert await store.load_identities() == []


async def test_identity_round_trips(store: Storage) -> None:
    record = identity(1, active=False)
    await store.save_identity(record)
    [loaded] = await store.load_identities()
    assert loaded == record
    assert loaded.key_pem == record.key_pem
    assert loaded.created_at.utcoffset() == timedelta(0)


async def test_identities_are_oldest_first(store: Storage) -> None:
    records = [identity(3), identity(1), identity(2)]
    for record in records:
        await store.save_identity(record)
    loaded = await store.load_identities()
    assert [r.fingerprint for r in loaded] == [identity(n).fingerprint for n in (1, 2, 3)]


async def test_identity_save_replaces_by_fingerprint(store: Storage) -> None:
    await store.save_identity(identity(1))
    await store.save_identity(identity(2))
    retired = identity(1, active=False)
    await store.save_identity(retired)
    loaded = await store.load_identities()
    assert len(loaded) == 2
    assert loaded[0] == retired
    assert loaded[1] == identity(2)


# -- the authenticated profile's keys (PROTOCOL.md 13) ------------------------------

ENC_KEY = b"-----BEGIN PRIVATE KEY-----\nX25519 %d\x00\xff\n"
ENC_CERT = b"-----BEGIN CERTIFICATE-----\nX25519 issued by Ed25519 %d\n"


async def test_identity_without_encryption_keys_reads_none(store: Storage) -> None:
    record = OwnIdentityRecord("ab" * 32, b"rsa key", b"rsa cert", T0, False)  # positional
    assert record.encryption_key_pem is None
    assert record.encryption_cert_pem is None
    await store.save_identity(record)
    [loaded] = await store.load_identities()
    assert loaded == record
    assert loaded.encryption_key_pem is None
    assert loaded.encryption_cert_pem is None


async def test_identity_encryption_keys_round_trip(store: Storage) -> None:
    record = replace(identity(1), encryption_key_pem=ENC_KEY % 1, encryption_cert_pem=ENC_CERT % 1)
    await store.save_identity(record)
    await store.save_identity(identity(2))
    loaded = await store.load_identities()
    assert loaded == [record, identity(2)]
    assert loaded[0].encryption_key_pem == ENC_KEY % 1
    assert loaded[0].encryption_cert_pem == ENC_CERT % 1


async def test_identity_save_replaces_the_encryption_keys(store: Storage) -> None:
    first = replace(identity(1), encryption_key_pem=ENC_KEY % 1, encryption_cert_pem=ENC_CERT % 1)
    await store.save_identity(first)
    await store.save_identity(identity(2))
    rotated = replace(first, encryption_key_pem=ENC_KEY % 2, encryption_cert_pem=ENC_CERT % 2)
    await store.save_identity(rotated)
    assert await store.load_identities() == [rotated, identity(2)]  # keeps its place
    cleared = replace(rotated, encryption_key_pem=None, encryption_cert_pem=None)
    await store.save_identity(cleared)
    assert await store.load_identities() == [cleared, identity(2)]


async def test_peer_without_encryption_certificate_reads_none(store: Storage) -> None:
    record = PeerRecord(
        "juliet@capulet.net", "cd" * 32, b"rsa cert", TrustState.TOFU, T0, T0, "pep"
    )  # positional, as the draft's profile builds it
    assert record.encryption_pem is None
    await store.save_peer(record)
    [loaded] = await store.load_peers()
    assert loaded == record
    assert loaded.encryption_pem is None


async def test_peer_encryption_certificate_round_trips(store: Storage) -> None:
    with_cert = peer(n=1, encryption_pem=ENC_CERT % 1)
    empty = peer(n=2, encryption_pem=b"")  # not the same as none
    without = peer(n=3)
    for record in (with_cert, empty, without):
        await store.save_peer(record)
    loaded = by_key(await store.load_peers())
    assert loaded == by_key([with_cert, empty, without])
    assert [r.encryption_pem for r in loaded] == [ENC_CERT % 1, b"", None]


async def test_previous_encryption_certificates_round_trip(store: Storage) -> None:
    both = peer(n=1, encryption_pem=ENC_CERT % 2)
    both = replace(both, previous_encryption_pem=ENC_CERT % 1 + ENC_CERT % 0)
    await store.save_peer(both)
    await store.save_peer(peer(n=2, encryption_pem=ENC_CERT % 3))
    loaded = by_key(await store.load_peers())
    assert [r.previous_encryption_pem for r in loaded] == [ENC_CERT % 1 + ENC_CERT % 0, None]
    assert loaded[0].with_trust(TrustState.VERIFIED).previous_encryption_pem == (
        ENC_CERT % 1 + ENC_CERT % 0
    )


async def test_with_trust_keeps_the_encryption_certificate(store: Storage) -> None:
    record = peer(encryption_pem=ENC_CERT % 1)
    await store.save_peer(record)
    verified = record.with_trust(TrustState.VERIFIED)
    assert verified.encryption_pem == ENC_CERT % 1
    await store.save_peer(verified)
    [loaded] = await store.load_peers()
    assert loaded.trust is TrustState.VERIFIED
    assert loaded.encryption_pem == ENC_CERT % 1


async def test_a_new_encryption_certificate_replaces_the_old(store: Storage) -> None:
    record = peer(trust=TrustState.VERIFIED, encryption_pem=ENC_CERT % 1)
    other = peer(jid="romeo@montague.net", encryption_pem=ENC_CERT % 9)
    await store.save_peer(record)
    await store.save_peer(other)
    renewed = record.with_encryption(ENC_CERT % 2)
    assert renewed == replace(record, encryption_pem=ENC_CERT % 2)  # nothing else changes
    await store.save_peer(renewed)
    assert by_key(await store.load_peers()) == by_key([renewed, other])
    forgotten = renewed.with_encryption(None)
    await store.save_peer(forgotten)
    assert by_key(await store.load_peers()) == by_key([forgotten, other])
    assert forgotten.trust is TrustState.VERIFIED


# -- the history of our encryption keys (issue 13) ------------------------------------


def enc_key(n: int, *, retired: datetime | None = None) -> OwnEncryptionKeyRecord:
    return OwnEncryptionKeyRecord(
        fingerprint=f"e{n:063x}",
        identity_fingerprint="ed" * 32,
        key_pem=ENC_KEY % n,
        cert_pem=ENC_CERT % n,
        issued_at=T0 + timedelta(days=n, milliseconds=n),
        retired_at=retired,
    )


async def test_encryption_keys_start_empty(store: Storage) -> None:
    assert await store.load_encryption_keys() == []


async def test_encryption_keys_round_trip_oldest_first(store: Storage) -> None:
    retired = enc_key(1, retired=T0 + timedelta(days=2, milliseconds=5))
    current = enc_key(2)
    await store.save_encryption_key(current)
    await store.save_encryption_key(retired)
    loaded = await store.load_encryption_keys()
    assert loaded == [retired, current]
    assert loaded[0].retired_at == T0 + timedelta(days=2, milliseconds=5)
    assert loaded[0].retired_at is not None and loaded[0].retired_at.utcoffset() == timedelta(0)
    assert loaded[0].issued_at.utcoffset() == timedelta(0)
    assert loaded[1].retired_at is None
    assert loaded[0].key_pem == ENC_KEY % 1


async def test_encryption_key_save_replaces_by_fingerprint(store: Storage) -> None:
    await store.save_encryption_key(enc_key(1))
    await store.save_encryption_key(enc_key(2))
    retired = replace(enc_key(1), retired_at=T0 + timedelta(days=2))
    await store.save_encryption_key(retired)
    assert await store.load_encryption_keys() == [retired, enc_key(2)]


async def test_destroy_encryption_key(store: Storage) -> None:
    for n in (1, 2, 3):
        await store.save_encryption_key(enc_key(n))
    await store.destroy_encryption_key(enc_key(2).fingerprint)
    assert await store.load_encryption_keys() == [enc_key(1), enc_key(3)]
    await store.destroy_encryption_key(enc_key(2).fingerprint)  # absent: fine
    await store.destroy_encryption_key("00" * 32)  # never held: fine
    assert await store.load_encryption_keys() == [enc_key(1), enc_key(3)]
    await store.destroy_encryption_key(enc_key(1).fingerprint)
    await store.destroy_encryption_key(enc_key(3).fingerprint)
    assert await store.load_encryption_keys() == []


async def test_encryption_keys_leave_identities_alone(store: Storage) -> None:
    await store.save_identity(identity(1))
    await store.save_encryption_key(enc_key(1))
    await store.destroy_encryption_key(enc_key(1).fingerprint)
    assert await store.load_identities() == [identity(1)]


class _Minimal(MemoryStorage):
    """A third-party store written before the encryption key methods existed."""

    load_encryption_keys = Storage.load_encryption_keys
    save_encryption_key = Storage.save_encryption_key
    destroy_encryption_key = Storage.destroy_encryption_key


async def test_a_store_without_encryption_keys_still_works() -> None:
    store = _Minimal()
    assert await store.load_encryption_keys() == []
    with pytest.raises(NotImplementedError, match="_Minimal does not keep encryption keys"):
        await store.save_encryption_key(enc_key(1))
    with pytest.raises(NotImplementedError, match="_Minimal does not keep encryption keys"):
        await store.destroy_encryption_key(enc_key(1).fingerprint)


# -- peers ---------------------------------------------------------------------------


async def test_peers_start_empty(store: Storage) -> None:
    assert await store.load_peers() == []


@pytest.mark.parametrize("trust", list(TrustState))
async def test_peer_round_trips_in_every_trust_state(store: Storage, trust: TrustState) -> None:
    record = peer(trust=trust)
    await store.save_peer(record)
    [loaded] = await store.load_peers()
    assert loaded == record
    assert loaded.trust is trust
    assert loaded.cert_pem == record.cert_pem


async def test_all_trust_states_side_by_side(store: Storage) -> None:
    records = [peer(n=n, trust=trust) for n, trust in enumerate(TrustState, start=1)]
    for record in records:
        await store.save_peer(record)
    assert by_key(await store.load_peers()) == by_key(records)


async def test_peer_datetimes_round_trip_as_aware_utc(store: Storage) -> None:
    plus_five = timezone(timedelta(hours=5, minutes=30))
    record = peer(
        first_seen=datetime(1999, 12, 31, 23, 59, 59, 999_000, tzinfo=plus_five),
        last_seen=datetime(2038, 1, 19, 3, 14, 8, 1_000, tzinfo=UTC),
    )
    await store.save_peer(record)
    [loaded] = await store.load_peers()
    assert loaded.first_seen == record.first_seen  # the same instant
    assert loaded.last_seen == record.last_seen
    assert loaded.first_seen.utcoffset() is not None
    assert loaded.last_seen.utcoffset() == timedelta(0)


async def test_peer_upsert_replaces_by_jid_and_fingerprint(store: Storage) -> None:
    first = peer(n=1)
    other_key = peer(n=2)
    other_jid = peer(jid="romeo@montague.net", n=1)
    for record in (first, other_key, other_jid):
        await store.save_peer(record)
    verified = replace(
        first.with_trust(TrustState.VERIFIED), last_seen=T0 + timedelta(days=3), source="manual"
    )
    await store.save_peer(verified)
    assert by_key(await store.load_peers()) == by_key([verified, other_key, other_jid])


async def test_delete_peer(store: Storage) -> None:
    keep = peer(n=1)
    drop = peer(n=2)
    same_key_other_jid = peer(jid="nurse@capulet.net", n=2)
    for record in (keep, drop, same_key_other_jid):
        await store.save_peer(record)
    await store.delete_peer(drop.jid, drop.fingerprint)
    assert by_key(await store.load_peers()) == by_key([keep, same_key_other_jid])
    await store.delete_peer(drop.jid, drop.fingerprint)  # absent: no error
    await store.delete_peer("nobody@example.org", "00")
    assert by_key(await store.load_peers()) == by_key([keep, same_key_other_jid])


# -- replay state ----------------------------------------------------------------------


async def test_replay_state_starts_empty(store: Storage) -> None:
    assert await store.load_replay_state() == ReplayGuardState({}, [])


async def test_record_admitted_and_load(store: Storage) -> None:
    await store.record_admitted("juliet@capulet.net/balcony", 1000, 1010, b"\x01" * 32)
    await store.record_admitted("romeo@montague.net/orchard", 2000, 2015, b"\x02" * 32)
    await store.record_admitted("juliet@capulet.net/balcony", 3000, 3001, b"\x03" * 32)
    state = await store.load_replay_state()
    assert state.last_accepted == {
        "juliet@capulet.net/balcony": (3000, 3001),
        "romeo@montague.net/orchard": (2000, 2015),
    }
    assert state.seen == [(b"\x01" * 32, 1000), (b"\x02" * 32, 2000), (b"\x03" * 32, 3000)]
    assert state.senders == {
        "juliet@capulet.net": SenderState(0, 3001, [b"\x01" * 32, b"\x03" * 32]),
        "romeo@montague.net": SenderState(0, 2015, [b"\x02" * 32]),
    }
    assert state.forgotten_floor_ms == 0


async def test_record_admitted_same_digest_is_kept_once(store: Storage) -> None:
    await store.record_admitted("a@x/r", 1000, 1000, b"d")
    await store.record_admitted("a@x/r", 1000, 1000, b"d")
    assert (await store.load_replay_state()).seen == [(b"d", 1000)]


async def test_state_feeds_a_replay_guard(store: Storage) -> None:
    from slixmpp_objenc.core import ReplayGuard, StaleStanza

    sent = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
    await store.record_admitted("a@x/r", 1_709_294_400_000, 1_709_294_400_000, b"mac")
    guard = ReplayGuard()
    guard.restore(await store.load_replay_state())
    with pytest.raises(StaleStanza):
        guard.check("b@y/r", sent, b"mac", now=sent)


async def test_last_timestamp_is_never_later_than_its_receipt(store: Storage) -> None:
    """Issue 9, kind 5: a stanza dated ahead must not raise the bar of rule 3 past
    our clock, across a restart either (old code stored the timestamp as sent)."""
    await store.record_admitted("a@x/r", 600_000, 1000, b"ahead")
    assert (await store.load_replay_state()).last_accepted == {"a@x/r": (1000, 1000)}
    await store.record_admitted("a@x/r", 900, 1100, b"older")  # never lowered
    assert (await store.load_replay_state()).last_accepted == {"a@x/r": (1000, 1100)}
    assert dict((await store.load_replay_state()).seen) == {b"ahead": 600_000, b"older": 900}


# -- bounded replay state ------------------------------------------------------------------
# Policies here use small numbers; ``now`` and timestamps are plain milliseconds.

MIN_MS = 60_000


def policy(**changes: int) -> ReplayPolicy:
    return replace(ReplayPolicy(), max_delay_ms=3_600_000, **changes)  # one hour


async def test_prune_expires_what_can_no_longer_be_admitted(store: Storage) -> None:
    hour = 3_600_000
    for n in range(10):
        await store.record_admitted(f"s{n}@x/r", n * MIN_MS, n * MIN_MS, bytes([n]))
    now = hour + 5 * MIN_MS + 5 * MIN_MS  # horizon: 5 minutes
    await store.prune_replay_state(policy(), now)
    state = await store.load_replay_state()
    assert state.seen == [(bytes([n]), n * MIN_MS) for n in range(5, 10)]  # 5 min itself kept
    assert state.last_accepted == {}  # every rule-3 entry is older than the window
    assert set(state.senders) == {f"s{n}@x" for n in range(5, 10)}  # the others said all
    assert all(s.floor_ms == 0 for s in state.senders.values())  # expiry needs no floor


async def test_prune_keeps_what_is_recent(store: Storage) -> None:
    for n in range(10):
        await store.record_admitted(f"s{n}@x/r", n * 100, n * 100 + 1, bytes([n]))
    before = await store.load_replay_state()
    await store.prune_replay_state(policy(), 1000)
    assert await store.load_replay_state() == before


async def test_prune_caps_a_sender_and_raises_only_its_floor(store: Storage) -> None:
    for n in range(10):
        await store.record_admitted("flood@x/r", n * 100, n * 100, bytes([n]))
    await store.record_admitted("alice@x/r", 50, 50, b"alice")
    await store.prune_replay_state(policy(max_per_sender=3), 1000)
    state = await store.load_replay_state()
    assert state.senders["flood@x"] == SenderState(600, 900, [bytes([7]), bytes([8]), bytes([9])])
    assert state.senders["alice@x"] == SenderState(0, 50, [b"alice"])
    assert state.forgotten_floor_ms == 0
    await store.prune_replay_state(policy(max_per_sender=3), 1000)  # idempotent
    assert await store.load_replay_state() == state


async def test_prune_caps_all_digests_raising_each_owner_floor(store: Storage) -> None:
    for n in range(10):
        await store.record_admitted(f"s{n % 3}@x/r", n * 100, n * 100, bytes([n]))
    await store.prune_replay_state(policy(max_entries=4), 1000)
    state = await store.load_replay_state()
    assert state.seen == [(bytes([n]), n * 100) for n in (6, 7, 8, 9)]
    assert {s: v.floor_ms for s, v in state.senders.items()} == {
        "s0@x": 300,  # 0, 300 dropped (6, 9 kept)
        "s1@x": 400,  # 100, 400 dropped (7 kept)
        "s2@x": 500,  # 200, 500 dropped (8 kept)
    }


async def test_prune_caps_rule_3_entries_keeping_the_latest(store: Storage) -> None:
    for n in range(10):
        await store.record_admitted(f"flood@x/r{n}", n * 100, n * 100, bytes([n]))
    await store.prune_replay_state(policy(max_entries=3), 1000)
    state = await store.load_replay_state()
    assert state.last_accepted == {f"flood@x/r{n}": (n * 100, n * 100) for n in (7, 8, 9)}


async def test_prune_folds_quiet_senders_beyond_the_cap(store: Storage) -> None:
    for n in range(5):
        await store.record_admitted(f"s{n}@x/r", n * MIN_MS, n * MIN_MS, bytes([n]))
    now = 14 * MIN_MS + 30_000  # quiet: before 4.5 min; s0..s4 active at 0..4 min
    await store.prune_replay_state(policy(max_senders=2), now)
    state = await store.load_replay_state()
    assert set(state.senders) == {"s3@x", "s4@x"}
    assert state.forgotten_floor_ms == 2 * MIN_MS  # the newest of those folded
    assert state.seen == [(bytes([3]), 3 * MIN_MS), (bytes([4]), 4 * MIN_MS)]
    # a sender recorded after a fold starts at the forgotten floor
    await store.record_admitted("s0@x/r", now, now, b"back")
    assert (await store.load_replay_state()).senders["s0@x"].floor_ms == 2 * MIN_MS


async def test_prune_never_folds_live_or_kept_senders(store: Storage) -> None:
    for n in range(5):
        await store.record_admitted(f"s{n}@x/r", n * MIN_MS, n * MIN_MS, bytes([n]))
    await store.prune_replay_state(policy(max_senders=2), 12 * MIN_MS, keep={"s0@x"})
    state = await store.load_replay_state()
    # s0 is kept, s1 folded, s2 is not quiet (active 10 minutes ago): folding stops there
    assert set(state.senders) == {"s0@x", "s2@x", "s3@x", "s4@x"}
    assert state.forgotten_floor_ms == MIN_MS


async def test_prune_leaves_unattributed_digests_to_expire(store: Storage) -> None:
    """Digests with no known sender (schema 1) are not capped, only expired."""
    state = ReplayGuardState({}, [(bytes([n]), n * MIN_MS) for n in range(10)])
    if isinstance(store, MemoryStorage):
        store.replay.restore(state)
    else:
        assert isinstance(store, SQLiteStorage) and store._conn is not None
        store._conn.executemany(
            "INSERT INTO replay_seen (digest, timestamp_ms) VALUES (?, ?)", state.seen
        )
    await store.prune_replay_state(policy(max_entries=1, max_per_sender=1), 10 * MIN_MS)
    assert (await store.load_replay_state()).seen == state.seen
    await store.prune_replay_state(policy(), 3_600_000 + 5 * MIN_MS + 5 * MIN_MS)
    assert (await store.load_replay_state()).seen == state.seen[5:]


async def test_store_stays_bounded_under_a_flood_of_strangers(store: Storage) -> None:
    """One stanza from each of 20,000 strangers, one every 2 s (11 hours), pruned every
    1,000 as persistence does: rows stay bounded by the policy. (Faster floods are
    bounded by the guard, which refuses new senders while all of them are live.)"""
    bounds = policy(max_senders=500, max_entries=1000)
    for n in range(20_000):
        now = n * 2000
        await store.record_admitted(f"stranger{n}@evil.example/r", now, now, n.to_bytes(4, "big"))
        if n % 1000 == 999:
            await store.prune_replay_state(bounds, now)
            state = await store.load_replay_state()
            assert len(state.senders) <= 500
            assert len(state.seen) <= 1000
            assert len(state.last_accepted) <= 10 * 60 // 2 + 1  # the window's


# -- settings ----------------------------------------------------------------------------


async def test_settings_set_get_delete(store: Storage) -> None:
    assert await store.get_setting("last_sent") is None
    await store.set_setting("last_sent", "2024-03-01T12:00:00.123Z")
    assert await store.get_setting("last_sent") == "2024-03-01T12:00:00.123Z"
    await store.set_setting("last_sent", "2024-03-01T12:00:00.124Z")
    assert await store.get_setting("last_sent") == "2024-03-01T12:00:00.124Z"
    await store.set_setting("last_sent", None)
    assert await store.get_setting("last_sent") is None
    await store.set_setting("last_sent", None)  # absent: no error
    await store.set_setting("empty", "")
    assert await store.get_setting("empty") == ""


async def test_settings_with_prefix(store: Storage) -> None:
    values = {
        "policy:juliet@capulet.net": "always",
        "policy:romeo@montague.net": "never",
        "policy": "bare",
        "policyx": "sibling",
        "Policy:upper": "case",
        "last_sent": "t",
    }
    for key, value in values.items():
        await store.set_setting(key, value)
    assert await store.settings_with_prefix("policy:") == {
        "policy:juliet@capulet.net": "always",
        "policy:romeo@montague.net": "never",
    }
    assert await store.settings_with_prefix("policy") == {
        k: v for k, v in values.items() if k.startswith("policy")
    }
    assert await store.settings_with_prefix("") == values
    assert await store.settings_with_prefix("nothing") == {}


@pytest.mark.parametrize(
    ("prefix", "expected"),
    [
        ("a%", {"a%", "a%b", "a%%"}),
        ("a_", {"a_", "a_b"}),
        ("a%%", {"a%%"}),
        ("%", {"%x"}),
        ("_", {"_x"}),
        ("a\\", {"a\\_"}),
        ("a[", {"a[b]"}),
        ("a*", {"a*"}),
        ("a", {"a%", "a%b", "a%%", "a_", "a_b", "axb", "aXb", "a\\_", "a[b]", "a*"}),
    ],
)
async def test_settings_prefix_treats_wildcards_literally(
    store: Storage, prefix: str, expected: set[str]
) -> None:
    keys = ["a%", "a%b", "a%%", "a_", "a_b", "axb", "aXb", "Axb", "a\\_", "a[b]", "a*", "%x", "_x"]
    for key in keys:
        await store.set_setting(key, f"value of {key}")
    assert await store.settings_with_prefix(prefix) == {k: f"value of {k}" for k in expected}


async def test_settings_prefix_with_unicode(store: Storage) -> None:
    keys = ["é", "é:1", "éa", "ê", "\U0010ffff", "\U0010ffffz", "\ud7ff", "\ud7ffx", "\ue000"]
    for key in keys:
        await store.set_setting(key, key)
    for prefix in ["é", "\U0010ffff", "\ud7ff", "\ue000", "é:"]:
        expected = {k: k for k in keys if k.startswith(prefix)}
        assert await store.settings_with_prefix(prefix) == expected, prefix
