"""SQLite-only behaviour: persistence, file modes, migrations, crash safety."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
import tempfile
import textwrap
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from hashlib import sha256
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from slixmpp_objenc.core import EncryptionError, ReplayGuard, StaleStanza
from slixmpp_objenc.core.certificates import certificate_fingerprint
from slixmpp_objenc.core.replay import ReplayPolicy, SenderState
from slixmpp_objenc.core.timestamps import ReplayGuardState
from slixmpp_objenc.store import (
    MemoryStorage,
    OwnEncryptionKeyRecord,
    OwnIdentityRecord,
    PeerRecord,
    TrustState,
)
from slixmpp_objenc.store import sqlite as sqlite_store
from slixmpp_objenc.store.sqlite import (
    APPLICATION_ID,
    MIGRATIONS,
    SQLiteStorage,
    account_store_path,
    default_data_dir,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2024, 3, 1, 12, 0, 0, 123_000, tzinfo=UTC)
posix_only = pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "romeo%40montague.net.sqlite3"


@pytest.fixture
async def store(db_path: Path) -> AsyncIterator[SQLiteStorage]:
    s = SQLiteStorage(db_path)
    await s.open()
    try:
        yield s
    finally:
        await s.close()


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def raw(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path, isolation_level=None)


def pragma(path: Path, name: str) -> int:
    conn = raw(path)
    try:
        return int(conn.execute(f"PRAGMA {name}").fetchone()[0])
    finally:
        conn.close()


def integrity(path: Path) -> list[str]:
    conn = raw(path)
    try:
        return [row[0] for row in conn.execute("PRAGMA integrity_check").fetchall()]
    finally:
        conn.close()


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def peer(n: int, trust: TrustState = TrustState.TOFU) -> PeerRecord:
    return PeerRecord(
        jid=f"peer{n}@example.net",
        fingerprint=f"{n:064x}",
        cert_pem=b"cert %d " % n * 20,
        trust=trust,
        first_seen=T0 + timedelta(milliseconds=n),
        last_seen=T0 + timedelta(milliseconds=2 * n),
        source="pep",
    )


async def fill(s: SQLiteStorage) -> None:
    await s.save_identity(
        OwnIdentityRecord("ab" * 32, b"private key \x00", b"certificate", T0, active=True)
    )
    for n, trust in enumerate(TrustState):
        await s.save_peer(peer(n, trust))
    await s.record_admitted("juliet@capulet.net/balcony", 1000, 1001, b"\x01" * 32)
    await s.record_admitted("juliet@capulet.net/balcony", 2000, 2001, b"\x02" * 32)
    await s.set_setting("last_sent", "2024-03-01T12:00:00.123Z")
    await s.set_setting("policy:a%b", "always")


async def snapshot(s: SQLiteStorage) -> tuple[object, ...]:
    return (
        await s.load_identities(),
        await s.load_peers(),
        await s.load_replay_state(),
        await s.settings_with_prefix(""),
    )


# -- persistence ---------------------------------------------------------------------


async def test_everything_survives_close_and_reopen(db_path: Path) -> None:
    first = SQLiteStorage(db_path)
    await first.open()
    await fill(first)
    before = await snapshot(first)
    await first.close()

    second = SQLiteStorage(db_path)
    await second.open()
    try:
        assert await snapshot(second) == before
        _, peers, _, settings_ = before
        assert len(peers) == len(TrustState)  # type: ignore[arg-type]
        assert settings_ == {"last_sent": "2024-03-01T12:00:00.123Z", "policy:a%b": "always"}
    finally:
        await second.close()


async def test_two_instances_see_each_other(db_path: Path) -> None:
    a, b = SQLiteStorage(db_path), SQLiteStorage(db_path)
    await a.open()
    await b.open()
    try:
        await a.set_setting("k", "from a")
        assert await b.get_setting("k") == "from a"
        await b.save_peer(peer(1))
        assert await a.load_peers() == [peer(1)]
    finally:
        await a.close()
        await b.close()


async def test_committed_without_close(db_path: Path) -> None:
    """No close(): what a returned call wrote is already in the file."""
    s = SQLiteStorage(db_path)
    await s.open()
    await s.save_peer(peer(7))
    await s.set_setting("k", "v")
    other = SQLiteStorage(db_path)
    await other.open()
    try:
        assert await other.load_peers() == [peer(7)]
        assert await other.get_setting("k") == "v"
    finally:
        await other.close()
        await s.close()


async def test_wal_and_settings_are_in_effect(store: SQLiteStorage) -> None:
    conn = store._conn
    assert conn is not None
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == sqlite_store.BUSY_TIMEOUT_MS
    assert conn.execute("PRAGMA secure_delete").fetchone()[0] == 1
    assert not conn.in_transaction


async def test_a_failing_call_writes_nothing(db_path: Path, store: SQLiteStorage) -> None:
    """record_admitted is one transaction: if its second write fails, the first is undone."""
    await store.record_admitted("a@x/r", 1000, 1000, b"first")
    conn = raw(db_path)
    conn.execute(
        "CREATE TRIGGER no_more BEFORE INSERT ON replay_seen BEGIN SELECT RAISE(ABORT, 'no'); END"
    )
    conn.close()
    with pytest.raises(sqlite3.IntegrityError):
        await store.record_admitted("a@x/r", 2000, 2000, b"second")
    state = await store.load_replay_state()
    assert state.last_accepted == {"a@x/r": (1000, 1000)}
    assert state.seen == [(b"first", 1000)]
    assert store._conn is not None and not store._conn.in_transaction
    await store.set_setting("still", "usable")


async def test_use_outside_open_is_an_error(db_path: Path) -> None:
    s = SQLiteStorage(db_path)
    with pytest.raises(RuntimeError):
        await s.load_peers()
    await s.open()
    await s.open()  # idempotent
    await s.close()
    await s.close()
    with pytest.raises(RuntimeError):
        await s.get_setting("k")


# -- values --------------------------------------------------------------------------


async def test_datetimes_come_back_aware_utc_and_truncated_to_ms(store: SQLiteStorage) -> None:
    fine = datetime(2024, 3, 1, 12, 0, 0, 123_999, tzinfo=UTC)
    record = PeerRecord("a@x", "f", b"c", TrustState.VERIFIED, fine, fine)
    await store.save_peer(record)
    [loaded] = await store.load_peers()
    assert loaded.first_seen == datetime(2024, 3, 1, 12, 0, 0, 123_000, tzinfo=UTC)
    assert loaded.first_seen.tzinfo is UTC
    before_epoch = datetime(1969, 12, 31, 23, 59, 59, 999_500, tzinfo=UTC)
    await store.save_peer(PeerRecord("b@x", "f", b"c", TrustState.TOFU, before_epoch, T0))
    loaded_b = next(p for p in await store.load_peers() if p.jid == "b@x")
    assert loaded_b.first_seen == datetime(1969, 12, 31, 23, 59, 59, 999_000, tzinfo=UTC)


async def test_naive_datetimes_are_refused(store: SQLiteStorage) -> None:
    naive = datetime(2024, 3, 1, 12, 0)
    with pytest.raises(ValueError, match="naive"):
        await store.save_peer(PeerRecord("a@x", "f", b"c", TrustState.TOFU, naive, naive))
    with pytest.raises(ValueError, match="naive"):
        await store.save_identity(OwnIdentityRecord("f", b"k", b"c", naive))
    assert await store.load_peers() == []


async def test_unknown_trust_text_is_refused(store: SQLiteStorage) -> None:
    bogus = PeerRecord("a@x", "f", b"c", "bogus", T0, T0)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        await store.save_peer(bogus)
    # A plain string naming a real state is accepted and comes back as the enum.
    await store.save_peer(PeerRecord("a@x", "f", b"c", "revoked", T0, T0))  # type: ignore[arg-type]
    [loaded] = await store.load_peers()
    assert loaded.trust is TrustState.REVOKED


async def test_trust_is_stored_as_text(db_path: Path, store: SQLiteStorage) -> None:
    for n, trust in enumerate(TrustState):
        await store.save_peer(peer(n, trust))
    conn = raw(db_path)
    rows = conn.execute("SELECT trust, typeof(first_seen) FROM peers ORDER BY jid").fetchall()
    conn.close()
    assert rows == [(t.value, "integer") for t in TrustState]


async def test_replay_digests_come_back_by_timestamp(store: SQLiteStorage) -> None:
    """Out-of-order arrivals (offline messages) are still loaded and pruned oldest first."""
    for ts, digest in [(3000, b"c"), (1000, b"a"), (4000, b"d"), (2000, b"b")]:
        await store.record_admitted("s@x/r", ts, 5000, digest)
    state = await store.load_replay_state()
    assert state.seen == [(b"a", 1000), (b"b", 2000), (b"c", 3000), (b"d", 4000)]
    assert state.senders["s@x"].digests == [b"a", b"b", b"c", b"d"]
    await store.prune_replay_state(ReplayPolicy(max_entries=2), 5000)
    state = await store.load_replay_state()
    assert state.seen == [(b"c", 3000), (b"d", 4000)]
    assert state.senders["s@x"].floor_ms == 2000  # what was dropped stays refused


async def test_prune_uses_the_timestamp_index(db_path: Path, store: SQLiteStorage) -> None:
    conn = raw(db_path)
    plan = conn.execute(
        "EXPLAIN QUERY PLAN SELECT id FROM replay_seen WHERE timestamp_ms < 5"
    ).fetchall()
    conn.close()
    assert any("replay_seen_by_timestamp" in str(row) for row in plan)


@settings(max_examples=60, deadline=None)
@given(
    keys=st.lists(st.text(st.characters(exclude_categories=("Cs",)), max_size=6), max_size=12),
    prefix=st.text(st.characters(exclude_categories=("Cs",)), max_size=3),
)
def test_prefix_query_matches_startswith(keys: list[str], prefix: str) -> None:
    async def run(path: Path) -> dict[str, str]:
        s = SQLiteStorage(path)
        await s.open()
        try:
            for key in keys:
                await s.set_setting(key, key)
            return await s.settings_with_prefix(prefix)
        finally:
            await s.close()

    with tempfile.TemporaryDirectory() as tmp:
        got = asyncio.run(run(Path(tmp) / "s.sqlite3"))
    assert got == {k: k for k in keys if k.startswith(prefix)}


@pytest.mark.parametrize(
    ("prefix", "bound"),
    [
        ("", None),
        ("a", "b"),
        ("a%", "a&"),
        ("\U0010ffff", None),
        ("a\U0010ffff\U0010ffff", "b"),
        ("\ud7ff", "\ue000"),
    ],
)
def test_prefix_upper_bound(prefix: str, bound: str | None) -> None:
    assert sqlite_store._prefix_upper_bound(prefix) == bound


# -- file modes ------------------------------------------------------------------------


@posix_only
async def test_new_file_is_0600_in_a_0700_directory(tmp_path: Path, umask_022: None) -> None:
    path = tmp_path / "a" / "b" / "store.sqlite3"
    s = SQLiteStorage(path)
    await s.open()
    await s.save_peer(peer(1))  # the WAL and shared-memory files exist now
    try:
        assert mode(path) == 0o600
        assert mode(path.parent) == 0o700
        for suffix in ("-wal", "-shm"):
            side = path.with_name(path.name + suffix)
            assert side.exists()
            assert mode(side) & 0o077 == 0, suffix
    finally:
        await s.close()


@posix_only
async def test_modes_do_not_depend_on_the_umask(tmp_path: Path) -> None:
    path = tmp_path / "d" / "store.sqlite3"
    old = os.umask(0)
    try:
        s = SQLiteStorage(path)
        await s.open()
        await s.close()
    finally:
        os.umask(old)
    assert mode(path) == 0o600
    assert mode(path.parent) == 0o700


@posix_only
async def test_existing_directory_is_left_alone(tmp_path: Path) -> None:
    tmp_path.chmod(0o755)
    s = SQLiteStorage(tmp_path / "store.sqlite3")
    await s.open()
    await s.close()
    assert mode(tmp_path) == 0o755
    assert mode(tmp_path / "store.sqlite3") == 0o600


@posix_only
@pytest.mark.parametrize("bad_mode", [0o644, 0o604, 0o602, 0o666])
async def test_file_open_to_others_is_refused(db_path: Path, bad_mode: int) -> None:
    s = SQLiteStorage(db_path)
    await s.open()
    await fill(s)
    await s.close()
    db_path.chmod(bad_mode)
    before = db_path.read_bytes()
    with pytest.raises(EncryptionError, match="private keys"):
        await SQLiteStorage(db_path).open()
    assert db_path.read_bytes() == before
    db_path.chmod(0o600)
    again = SQLiteStorage(db_path)
    await again.open()
    assert len(await again.load_peers()) == len(TrustState)
    await again.close()


@posix_only
async def test_group_readable_file_is_accepted(db_path: Path) -> None:
    s = SQLiteStorage(db_path)
    await s.open()
    await s.close()
    db_path.chmod(0o640)
    s = SQLiteStorage(db_path)
    await s.open()
    await s.close()


async def test_existing_empty_file_is_initialised(tmp_path: Path) -> None:
    path = tmp_path / "pre.sqlite3"
    path.touch(mode=0o600)
    s = SQLiteStorage(path)
    await s.open()
    await s.close()
    assert pragma(path, "user_version") == len(MIGRATIONS)


async def test_a_directory_in_place_of_the_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "dir.sqlite3").mkdir()
    with pytest.raises(EncryptionError, match="not a regular file"):
        await SQLiteStorage(tmp_path / "dir.sqlite3").open()


async def test_garbage_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "garbage.sqlite3"
    path.write_bytes(b"this is not a database, just some bytes " * 100)
    path.chmod(0o600)
    with pytest.raises(EncryptionError, match="cannot open"):
        await SQLiteStorage(path).open()
    assert path.read_bytes() == b"this is not a database, just some bytes " * 100


async def test_someone_elses_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.sqlite3"
    conn = raw(path)
    conn.execute("CREATE TABLE mine (x)")
    conn.close()
    path.chmod(0o600)
    with pytest.raises(EncryptionError, match="not a slixmpp-objenc store"):
        await SQLiteStorage(path).open()
    conn = raw(path)
    conn.execute("PRAGMA user_version = 1")
    conn.close()
    with pytest.raises(EncryptionError, match="not a slixmpp-objenc store"):
        await SQLiteStorage(path).open()


# -- migrations --------------------------------------------------------------------------


async def test_fresh_file_is_at_the_latest_version(store: SQLiteStorage, db_path: Path) -> None:
    assert len(MIGRATIONS) == 6
    assert pragma(db_path, "user_version") == len(MIGRATIONS)
    assert pragma(db_path, "application_id") == APPLICATION_ID
    conn = raw(db_path)
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    conn.close()
    assert tables == {
        "encryption_keys",
        "identities",
        "peers",
        "replay_last",
        "replay_seen",
        "replay_senders",
        "replay_meta",
        "settings",
    }
    assert {"replay_seen_by_timestamp", "replay_seen_by_sender"} <= indexes


async def test_newer_version_is_refused_untouched(db_path: Path) -> None:
    s = SQLiteStorage(db_path)
    await s.open()
    await fill(s)
    await s.close()
    conn = raw(db_path)
    conn.execute("PRAGMA journal_mode = DELETE")  # no WAL files: the whole state is one file
    conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    conn.close()
    before = db_path.read_bytes()
    mtime = os.stat(db_path).st_mtime_ns
    with pytest.raises(EncryptionError, match="newer"):
        await SQLiteStorage(db_path).open()
    assert db_path.read_bytes() == before
    assert os.stat(db_path).st_mtime_ns == mtime
    assert not db_path.with_name(db_path.name + "-wal").exists()
    assert pragma(db_path, "user_version") == len(MIGRATIONS) + 1


async def test_newer_version_in_wal_mode_is_refused_untouched(db_path: Path) -> None:
    """A newer file whose last writer died with commits still in the WAL: closing a
    read-write connection would checkpoint them into the file and delete the WAL;
    the refusal must leave both as they were."""
    s = SQLiteStorage(db_path)
    await s.open()
    await fill(s)
    await s.close()
    newer_writer = textwrap.dedent(
        f"""
        import os, sqlite3, sys
        conn = sqlite3.connect(sys.argv[1], isolation_level=None)
        conn.execute("PRAGMA wal_autocheckpoint = 0")
        conn.execute("PRAGMA user_version = {len(MIGRATIONS) + 1}")
        conn.execute("INSERT INTO settings VALUES ('in', 'the wal')")
        os._exit(0)
        """
    )
    subprocess.run([sys.executable, "-c", newer_writer, str(db_path)], check=True)
    wal = db_path.with_name(db_path.name + "-wal")
    files = {p: p.read_bytes() for p in (db_path, wal)}
    assert files[wal]
    with pytest.raises(EncryptionError, match="newer"):
        await SQLiteStorage(db_path).open()
    assert {p: p.read_bytes() for p in files} == files
    assert pragma(db_path, "user_version") == len(MIGRATIONS) + 1


async def test_a_new_migration_runs_once_and_keeps_the_data(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = SQLiteStorage(db_path)
    await s.open()
    await fill(s)
    before = await snapshot(s)
    await s.close()
    latest = len(MIGRATIONS)
    assert pragma(db_path, "user_version") == latest

    runs: list[int] = []

    def v_next(conn: sqlite3.Connection) -> None:
        runs.append(1)
        assert conn.in_transaction
        conn.execute("ALTER TABLE peers ADD COLUMN label TEXT")
        conn.execute("UPDATE peers SET label = 'from the next version'")

    monkeypatch.setattr(sqlite_store, "MIGRATIONS", [*MIGRATIONS, v_next])
    s = SQLiteStorage(db_path)
    await s.open()
    assert runs == [1]
    assert await snapshot(s) == before
    await s.save_peer(peer(99))  # today's code path still works on the next table
    after = await snapshot(s)
    await s.close()
    s = SQLiteStorage(db_path)
    await s.open()  # already at the next version: nothing runs
    assert await snapshot(s) == after
    await s.close()
    assert runs == [1]
    assert pragma(db_path, "user_version") == latest + 1
    conn = raw(db_path)
    labels = conn.execute("SELECT jid, label FROM peers ORDER BY jid").fetchall()
    conn.close()
    assert ("peer0@example.net", "from the next version") in labels
    assert ("peer99@example.net", None) in labels

    monkeypatch.setattr(sqlite_store, "MIGRATIONS", MIGRATIONS)  # today's code meets a newer file
    with pytest.raises(EncryptionError, match="newer"):
        await SQLiteStorage(db_path).open()


async def test_a_failing_migration_is_rolled_back(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = SQLiteStorage(db_path)
    await s.open()
    await fill(s)
    before = await snapshot(s)
    await s.close()

    def broken_v2(conn: sqlite3.Connection) -> None:
        conn.execute("CREATE TABLE half_done (x)")
        conn.execute("DELETE FROM peers")
        raise RuntimeError("disk says no")

    monkeypatch.setattr(sqlite_store, "MIGRATIONS", [*MIGRATIONS, broken_v2])
    with pytest.raises(EncryptionError, match=f"version {len(MIGRATIONS) + 1} failed"):
        await SQLiteStorage(db_path).open()
    assert pragma(db_path, "user_version") == len(MIGRATIONS)
    monkeypatch.setattr(sqlite_store, "MIGRATIONS", MIGRATIONS)
    s = SQLiteStorage(db_path)
    await s.open()
    assert await snapshot(s) == before
    await s.close()
    conn = raw(db_path)
    assert conn.execute("SELECT name FROM sqlite_master WHERE name = 'half_done'").fetchall() == []
    conn.close()


async def test_migrations_run_in_order_from_zero(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[tuple[int, int]] = []

    def step(n: int) -> sqlite_store.Migration:
        def migrate(conn: sqlite3.Connection) -> None:
            seen.append((n, int(conn.execute("PRAGMA user_version").fetchone()[0])))

        return migrate

    base = len(MIGRATIONS)
    monkeypatch.setattr(sqlite_store, "MIGRATIONS", [*MIGRATIONS, step(1), step(2)])
    s = SQLiteStorage(tmp_path / "s.sqlite3")
    await s.open()
    await s.close()
    assert seen == [(1, base), (2, base + 1)]
    assert pragma(tmp_path / "s.sqlite3", "user_version") == base + 2


# -- paths ------------------------------------------------------------------------------------


def test_default_data_dir_linux(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    assert default_data_dir() == tmp_path / ".local" / "share" / "slixmpp-objenc"
    monkeypatch.setenv("XDG_DATA_HOME", "/srv/xdg")
    assert default_data_dir() == Path("/srv/xdg/slixmpp-objenc")
    monkeypatch.setenv("XDG_DATA_HOME", "relative/is/ignored")
    assert default_data_dir() == tmp_path / ".local" / "share" / "slixmpp-objenc"
    monkeypatch.setattr(sys, "platform", "freebsd14")
    monkeypatch.setenv("XDG_DATA_HOME", "/srv/xdg")
    assert default_data_dir() == Path("/srv/xdg/slixmpp-objenc")


def test_default_data_dir_macos_and_windows(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_DATA_HOME", "/srv/xdg")
    monkeypatch.setattr(sys, "platform", "darwin")
    assert default_data_dir() == tmp_path / "Library" / "Application Support" / "slixmpp-objenc"
    monkeypatch.setattr(sys, "platform", "win32")
    monkeypatch.setenv("APPDATA", str(tmp_path / "Roaming"))
    assert default_data_dir() == tmp_path / "Roaming" / "slixmpp-objenc"


@pytest.mark.parametrize(
    ("jid", "name"),
    [
        ("romeo@montague.net", "romeo%40montague.net.sqlite3"),
        ("Romeo@Montague.NET", "romeo%40montague.net.sqlite3"),
        ("romeo@montague.net/orchard", "romeo%40montague.net.sqlite3"),
        ("juliet_c-1@capulet.net", "juliet_c-1%40capulet.net.sqlite3"),
        ("a%b@x", "a%25b%40x.sqlite3"),
        ("..\\..\\etc@x", "..%5C..%5Cetc%40x.sqlite3"),
        ("../../etc@x", "...sqlite3"),  # everything after the first '/' is a resource
        ("Émile@例え.jp", "%C3%A9mile%40%E4%BE%8B%E3%81%88.jp.sqlite3"),
        ("con", "con.sqlite3"),
    ],
)
def test_account_store_path(tmp_path: Path, jid: str, name: str) -> None:
    path = account_store_path(tmp_path, jid)
    assert path == tmp_path / name
    assert path.parent == tmp_path


def test_account_store_path_is_safe_and_injective(tmp_path: Path) -> None:
    jids = ["a@x", "a%40x", "a@x.", "A@X", "a@x ", "a b@x", "a%2540x", "a@y", "é@x", "e@x"]
    names = {jid: account_store_path(tmp_path, jid).name for jid in jids}
    assert names["a@x"] == names["A@X"] == names["a@x "]  # the same account
    distinct = {names[j] for j in jids if j not in ("A@X", "a@x ")}
    assert len(distinct) == len(jids) - 2
    for name in names.values():
        assert re.fullmatch(r"[a-z0-9._%A-F-]+\.sqlite3", name)


def test_account_store_path_long_jid(tmp_path: Path) -> None:
    a = account_store_path(tmp_path, "x" * 1000 + "@example.net")
    b = account_store_path(tmp_path, "x" * 999 + "y@example.net")
    assert a != b
    assert len(a.name) < 255 and len(b.name) < 255
    assert "~" in a.name


def test_account_store_path_empty(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        account_store_path(tmp_path, " /resource")


# -- crash safety ------------------------------------------------------------------------------

CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from datetime import UTC, datetime, timedelta
    from slixmpp_objenc.store import PeerRecord, TrustState
    from slixmpp_objenc.store.sqlite import SQLiteStorage

    T0 = datetime(2024, 3, 1, 12, 0, 0, 123_000, tzinfo=UTC)
    STATES = list(TrustState)

    async def main(path):
        store = SQLiteStorage(path)
        await store.open()
        out = sys.stdout
        out.write("ready\\n")
        out.flush()
        for n in range(1_000_000):
            await store.save_peer(PeerRecord(
                jid=f"peer{n}@example.net",
                fingerprint=f"{n:064x}",
                cert_pem=b"cert %d " % n * 20,
                trust=STATES[n % 4],
                first_seen=T0 + timedelta(milliseconds=n),
                last_seen=T0 + timedelta(milliseconds=2 * n),
                source="pep",
            ))
            out.write(f"committed peer {n}\\n")
            out.flush()
            await store.record_admitted(
                f"peer{n}@example.net/r", 1_000_000 + n, 2_000_000 + n, n.to_bytes(32, "big")
            )
            out.write(f"committed replay {n}\\n")
            out.flush()
        out.write("finished\\n")

    asyncio.run(main(sys.argv[1]))
    """
)
COMMITTED = re.compile(r"committed (peer|replay) (\d+)")


def expected_peer(n: int) -> PeerRecord:
    return PeerRecord(
        jid=f"peer{n}@example.net",
        fingerprint=f"{n:064x}",
        cert_pem=b"cert %d " % n * 20,
        trust=list(TrustState)[n % 4],
        first_seen=T0 + timedelta(milliseconds=n),
        last_seen=T0 + timedelta(milliseconds=2 * n),
        source="pep",
    )


def run_and_kill(path: Path, kill_after: int) -> tuple[set[int], set[int], int]:
    """Start the writer, SIGKILL it after ``kill_after`` commit lines; return what it committed."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
    )
    watchdog = threading.Timer(30, proc.kill)
    watchdog.start()
    committed: dict[str, set[int]] = {"peer": set(), "replay": set()}
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "ready\n", proc.stderr.read() if proc.stderr else ""
        read = 0
        while read < kill_after:
            line = proc.stdout.readline()
            assert line, f"writer died early: {proc.stderr.read() if proc.stderr else ''}"
            m = COMMITTED.fullmatch(line.strip())
            assert m, line
            committed[m.group(1)].add(int(m.group(2)))
            read += 1
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        # Lines already in the pipe were also printed after their commit returned.
        for line in proc.stdout.read().splitlines():
            m = COMMITTED.fullmatch(line.strip())
            if m:
                committed[m.group(1)].add(int(m.group(2)))
            else:
                assert line != "finished", "the burst ended before the kill"
    finally:
        watchdog.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
    assert proc.returncode == -signal.SIGKILL
    return committed["peer"], committed["replay"], read


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
@pytest.mark.parametrize("kill_after", [300, 1500, 4000])
async def test_sigkill_mid_burst_loses_nothing_committed(
    tmp_path: Path,
    kill_after: int,
    capsys: pytest.CaptureFixture[str],
    record_property: Callable[[str, object], None],
) -> None:
    path = tmp_path / "crash" / "store.sqlite3"
    peers_committed, replays_committed, read = run_and_kill(path, kill_after)
    n_peers, n_replays = len(peers_committed), len(replays_committed)
    assert peers_committed == set(range(n_peers))
    assert replays_committed == set(range(n_replays))
    assert n_peers + n_replays >= kill_after

    # The file is consistent before our code touches it (SQLite recovers the WAL).
    assert integrity(path) == ["ok"]
    assert mode(path) & 0o077 == 0

    s = SQLiteStorage(path)
    await s.open()
    try:
        peers = await s.load_peers()
        state = await s.load_replay_state()
    finally:
        await s.close()
    assert integrity(path) == ["ok"]

    # Every committed entry is there, intact; at most the one in flight is extra.
    present_peers = {int(p.jid.removeprefix("peer").split("@")[0]) for p in peers}
    assert set(range(n_peers)) <= present_peers <= set(range(n_peers + 1))
    for record in peers:
        n = int(record.jid.removeprefix("peer").split("@")[0])
        assert record == expected_peer(n)
    present_digests = {int.from_bytes(d, "big") for d, _ in state.seen}
    assert set(range(n_replays)) <= present_digests <= set(range(n_replays + 1))
    assert state.seen == [(n.to_bytes(32, "big"), 1_000_000 + n) for n in sorted(present_digests)]
    for n in range(n_replays):
        assert state.last_accepted[f"peer{n}@example.net/r"] == (1_000_000 + n, 2_000_000 + n)
    assert len(state.last_accepted) == len(present_digests)

    record_property("committed", f"{n_peers} peers + {n_replays} replay entries")
    record_property("present", f"{len(present_peers)} peers, {len(present_digests)} digests")
    if os.environ.get("STORE_CRASH_REPORT"):
        with capsys.disabled():
            print(
                f"\n[kill after {read} lines] committed: {n_peers} peers + {n_replays} replay"
                f" entries; present: {len(present_peers)} peers, {len(present_digests)} digests"
            )


# -- the replay state: schema 2 ----------------------------------------------------------------

NOW_MS = 1_772_366_400_000  # 2026-03-01T12:00:00Z


async def test_migration_from_version_1_keeps_the_replay_state(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Schema 1 kept digests without their sender: they come over as digests of no
    known sender, refused from everyone until they expire; rule 3 entries stay; each
    sender bare JID gets a row (no floor) whose activity is its latest receipt."""
    monkeypatch.setattr(sqlite_store, "MIGRATIONS", MIGRATIONS[:1])
    s = SQLiteStorage(db_path)
    await s.open()
    await s.close()
    assert pragma(db_path, "user_version") == 1
    last = {
        "juliet@capulet.net/balcony": (NOW_MS - 3000, NOW_MS - 2990),
        "juliet@capulet.net/orchard": (NOW_MS - 5000, NOW_MS - 4000),
        "romeo@montague.net/orchard": (NOW_MS - 4000, NOW_MS - 3985),
    }
    seen = [(bytes([n]) * 32, NOW_MS - 5000 + n * 1000) for n in range(3)]
    conn = raw(db_path)
    conn.executemany("INSERT INTO replay_last VALUES (?, ?, ?)", [(k, *v) for k, v in last.items()])
    conn.executemany("INSERT INTO replay_seen (digest, timestamp_ms) VALUES (?, ?)", seen)
    conn.execute("INSERT INTO settings VALUES ('replay-floor-ms', '99999999999999')")
    conn.close()

    monkeypatch.setattr(sqlite_store, "MIGRATIONS", MIGRATIONS)
    s = SQLiteStorage(db_path)
    await s.open()
    try:
        assert pragma(db_path, "user_version") == len(MIGRATIONS)
        state = await s.load_replay_state()
        assert state.last_accepted == last
        assert state.seen == seen
        assert state.senders == {
            "juliet@capulet.net": SenderState(0, NOW_MS - 2990),
            "romeo@montague.net": SenderState(0, NOW_MS - 3985),
        }
        assert state.forgotten_floor_ms == 0
        # (the retired global floor is persistence's to drop, at load)
        assert await s.get_setting("replay-floor-ms") == "99999999999999"

        now = datetime.fromtimestamp(NOW_MS / 1000, UTC)
        guard = ReplayGuard()
        guard.restore(state)
        for sender in ("juliet@capulet.net/balcony", "mallory@evil.example/den"):
            with pytest.raises(StaleStanza, match="replay"):
                guard.check(sender, now - timedelta(seconds=5), seen[0][0], now=now)
        with pytest.raises(StaleStanza, match="decreasing"):
            guard.check("juliet@capulet.net/balcony", now - timedelta(seconds=4), b"n", now=now)
        guard.check("juliet@capulet.net/balcony", now, b"new", now=now)

        # new admissions are attributed; the old digests are not capped, only expired
        await s.record_admitted("juliet@capulet.net/balcony", NOW_MS, NOW_MS, b"new")
        await s.prune_replay_state(ReplayPolicy(max_entries=1, max_per_sender=1), NOW_MS)
        state = await s.load_replay_state()
        assert state.seen == [*seen, (b"new", NOW_MS)]
        assert state.senders["juliet@capulet.net"].digests == [b"new"]
        month = NOW_MS + 30 * 86_400_000 + 5 * 60_000
        await s.prune_replay_state(ReplayPolicy(), month)
        assert (await s.load_replay_state()).seen == [(b"new", NOW_MS)]
    finally:
        await s.close()


async def test_prune_is_one_transaction(db_path: Path, store: SQLiteStorage) -> None:
    for n in range(5):
        await store.record_admitted(f"s{n}@x/r", n * 60_000, n * 60_000, bytes([n]))
    before = await store.load_replay_state()
    conn = raw(db_path)
    conn.execute(
        "CREATE TRIGGER no_meta BEFORE UPDATE ON replay_meta BEGIN SELECT RAISE(ABORT, 'no'); END"
    )
    conn.close()
    with pytest.raises(sqlite3.IntegrityError):
        await store.prune_replay_state(ReplayPolicy(max_senders=1, max_per_sender=1), 3_600_000)
    assert await store.load_replay_state() == before


def _replay_ops() -> st.SearchStrategy[list[tuple[object, ...]]]:
    record = st.tuples(
        st.just("record"),
        st.integers(min_value=0, max_value=5),  # sender
        st.integers(min_value=-20 * 60_000, max_value=10 * 60_000),  # timestamp - now
        st.integers(min_value=0, max_value=40),  # digest (repeats happen)
        st.one_of(  # time passing before it: from nothing to past the horizon
            st.integers(min_value=1, max_value=60_000),  # (receipts strictly increase)
            st.integers(min_value=9 * 60_000, max_value=70 * 60_000),
        ),
    )
    prune = st.tuples(
        st.just("prune"),
        st.integers(min_value=1, max_value=4),  # caps
        st.integers(min_value=1, max_value=6),
        st.integers(min_value=1, max_value=3),
        st.frozensets(st.integers(min_value=0, max_value=5), max_size=2),  # keep
    )
    return st.lists(st.one_of(record, record, record, prune), max_size=60)


SENDERS = [f"s{n % 4}@x/r{n // 4}" for n in range(6)]  # s0 and s1 with two resources


@settings(max_examples=150, deadline=None)
@given(ops=_replay_ops())
def test_sqlite_prunes_exactly_as_the_ledger_does(ops: list[tuple[object, ...]]) -> None:
    """The same records and prunes on both backends give the same state (the memory
    backend is the core's ReplayLedger; SQLite does it in SQL). Receipt times only
    increase, as the plugin's do, so both order senders by activity alike."""

    async def run(path: Path) -> None:
        memory, sqlite = MemoryStorage(), SQLiteStorage(path)
        await sqlite.open()
        try:
            now = NOW_MS
            for op in ops:
                if op[0] == "record":
                    _, who, offset, digest, wait = op
                    now += int(wait)  # type: ignore[call-overload]
                    args = (SENDERS[int(who)], now + int(offset), now, bytes([int(digest)]))  # type: ignore[call-overload]
                    for backend in (memory, sqlite):
                        await backend.record_admitted(*args)
                else:
                    _, per_sender, entries, senders, keep = op
                    policy = ReplayPolicy(
                        max_delay_ms=3_600_000,
                        max_per_sender=int(per_sender),  # type: ignore[call-overload]
                        max_entries=int(entries),  # type: ignore[call-overload]
                        max_senders=int(senders),  # type: ignore[call-overload]
                    )
                    kept = {SENDERS[int(k)].split("/")[0] for k in keep}  # type: ignore[attr-defined]
                    for backend in (memory, sqlite):
                        await backend.prune_replay_state(policy, now, kept)
                assert await sqlite.load_replay_state() == await memory.load_replay_state()
        finally:
            await sqlite.close()

    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(run(Path(tmp) / "s.sqlite3"))


async def test_a_pruned_store_never_reopens_a_replay(store: SQLiteStorage) -> None:
    """Whatever the store dropped, a guard restored from it refuses every stanza it
    recorded (a server replaying with a <delay/> stamp of its choosing)."""
    now = datetime.fromtimestamp(NOW_MS / 1000, UTC)
    recorded = []
    for n in range(300):
        sender = f"s{n % 30}@x/r"
        at = now + timedelta(seconds=10 * n)
        await store.record_admitted(
            sender, NOW_MS + 10_000 * n, NOW_MS + 10_000 * n, bytes([n % 256, n // 256])
        )
        recorded.append((sender, at, bytes([n % 256, n // 256])))
        if n % 50 == 49:
            policy = ReplayPolicy(max_entries=40, max_per_sender=5, max_senders=8)
            await store.prune_replay_state(policy, NOW_MS + 10_000 * n)
    end = now + timedelta(seconds=3000)
    guard = ReplayGuard()
    guard.restore(await store.load_replay_state())
    assert len(guard.state().seen) <= 40 + 50
    for sender, at, digest in recorded:
        with pytest.raises(StaleStanza):
            guard.check(sender, at, digest, now=end, delay=at)
    assert isinstance(await store.load_replay_state(), ReplayGuardState)


# -- schema 3: the authenticated profile's keys (PROTOCOL.md 13) -------------------------------

VECTORS = REPO_ROOT / "tests" / "vectors"
V2_STORE = VECTORS / "store-v2.sqlite"
"""A store as schema 2 wrote it (store-v2.json says what it holds)."""


def v2_store_copy(tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    """A private copy (0600, as the store demands) of the version 2 store, and its description."""
    directory = tmp_path / "data"
    directory.mkdir(mode=0o700)
    path = directory / "juliet%40capulet.lit.sqlite3"
    shutil.copyfile(V2_STORE, path)
    os.chmod(path, 0o600)
    described: dict[str, Any] = json.loads((VECTORS / "store-v2.json").read_text())
    return path, described


def columns(path: Path, table: str) -> list[str]:
    conn = raw(path)
    try:
        return [row[1] for row in conn.execute(f"PRAGMA table_info({table})")]
    finally:
        conn.close()


def ms(value: datetime) -> int:
    return round(value.timestamp() * 1000)


async def test_a_version_2_store_migrates_and_keeps_everything(tmp_path: Path) -> None:
    path, described = v2_store_copy(tmp_path)
    assert pragma(path, "user_version") == described["user_version"] == 2
    assert "encryption_pem" not in columns(path, "peers")
    s = SQLiteStorage(path)
    await s.open()
    try:
        assert pragma(path, "user_version") == len(MIGRATIONS) == 6
        identities = await s.load_identities()
        peers = await s.load_peers()
        state = await s.load_replay_state()
        settings = await s.settings_with_prefix("")
    finally:
        await s.close()
    assert integrity(path) == ["ok"]
    assert columns(path, "identities")[-2:] == ["encryption_key_pem", "encryption_cert_pem"]
    assert columns(path, "peers")[-2:] == ["encryption_pem", "previous_encryption_pem"]

    assert len(identities) == len(described["identities"]) == 1
    for own, want in zip(identities, described["identities"], strict=True):
        assert own.fingerprint == want["fingerprint"]
        assert sha256(own.key_pem).hexdigest() == want["key_pem_sha256"]
        assert sha256(own.cert_pem).hexdigest() == want["cert_pem_sha256"]
        cert = x509.load_pem_x509_certificate(own.cert_pem)
        assert certificate_fingerprint(cert) == own.fingerprint
        assert ms(own.created_at) == want["created_at_ms"]
        assert own.active is want["active"]
        assert own.encryption_key_pem is None
        assert own.encryption_cert_pem is None

    want_peers = {(p["jid"], p["fingerprint"]): p for p in described["peers"]}
    assert {(p.jid, p.fingerprint) for p in peers} == set(want_peers)
    assert {p.trust for p in peers} == {TrustState.VERIFIED, TrustState.TOFU}
    for held in peers:
        want = want_peers[(held.jid, held.fingerprint)]
        assert held.trust is TrustState(want["trust"])
        assert held.source == want["source"] == "pep"
        assert sha256(held.cert_pem).hexdigest() == want["cert_pem_sha256"]
        cert = x509.load_pem_x509_certificate(held.cert_pem)
        assert certificate_fingerprint(cert) == held.fingerprint
        assert ms(held.first_seen) == want["first_seen_ms"]
        assert ms(held.last_seen) == want["last_seen_ms"]
        assert held.encryption_pem is None

    assert settings == described["settings"]
    replay = described["replay"]
    assert state == ReplayGuardState(
        last_accepted={k: (v[0], v[1]) for k, v in replay["last_accepted"].items()},
        seen=[(bytes.fromhex(d), t) for d, t in replay["seen"]],
        senders={
            k: SenderState(v["floor_ms"], v["active_ms"], [bytes.fromhex(d) for d in v["digests"]])
            for k, v in replay["senders"].items()
        },
        forgotten_floor_ms=replay["forgotten_floor_ms"],
    )
    [admitted] = replay["admitted"]
    guard = ReplayGuard()
    guard.restore(state)
    now = datetime.fromtimestamp(admitted["received_ms"] / 1000, UTC)
    with pytest.raises(StaleStanza, match="replay"):
        guard.check(
            admitted["sender"],
            datetime.fromtimestamp(admitted["timestamp_ms"] / 1000, UTC),
            bytes.fromhex(admitted["digest"]),
            now=now,
        )


async def test_the_new_fields_persist_in_a_migrated_store(tmp_path: Path) -> None:
    path, _ = v2_store_copy(tmp_path)
    s = SQLiteStorage(path)
    await s.open()
    try:
        [rsa_identity] = await s.load_identities()
        ed25519 = OwnIdentityRecord(
            "ed" * 32,
            b"-----BEGIN PRIVATE KEY-----\nEd25519\n",
            b"-----BEGIN CERTIFICATE-----\nEd25519\n",
            rsa_identity.created_at + timedelta(days=1),
            encryption_key_pem=b"-----BEGIN PRIVATE KEY-----\nX25519\n",
            encryption_cert_pem=b"-----BEGIN CERTIFICATE-----\nX25519\n",
        )
        await s.save_identity(replace(rsa_identity, active=False))
        await s.save_identity(ed25519)
        verified, tofu = sorted(
            await s.load_peers(), key=lambda p: p.trust is not TrustState.VERIFIED
        )
        assert (verified.trust, tofu.trust) == (TrustState.VERIFIED, TrustState.TOFU)
        renewed = verified.with_encryption(b"-----BEGIN CERTIFICATE-----\nX25519 of romeo\n")
        await s.save_peer(renewed)
        newcomer = replace(peer(7), encryption_pem=b"-----BEGIN CERTIFICATE-----\nX25519 7\n")
        await s.save_peer(newcomer)
        before = await snapshot(s)
    finally:
        await s.close()

    s = SQLiteStorage(path)
    await s.open()
    try:
        assert await snapshot(s) == before
        identities = await s.load_identities()
        peers = {p.fingerprint: p for p in await s.load_peers()}
    finally:
        await s.close()
    assert identities == [replace(rsa_identity, active=False), ed25519]
    assert identities[0].encryption_key_pem is None
    assert identities[1].encryption_key_pem == ed25519.encryption_key_pem
    assert identities[1].encryption_cert_pem == ed25519.encryption_cert_pem
    assert peers[renewed.fingerprint] == renewed
    assert peers[renewed.fingerprint].trust is TrustState.VERIFIED  # no trust change
    assert peers[newcomer.fingerprint] == newcomer
    assert peers[tofu.fingerprint] == tofu
    assert peers[tofu.fingerprint].encryption_pem is None


async def test_a_migrated_store_is_not_migrated_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, _ = v2_store_copy(tmp_path)
    s = SQLiteStorage(path)
    await s.open()
    before = await snapshot(s)
    await s.close()
    assert pragma(path, "user_version") == len(MIGRATIONS)

    def must_not_run(conn: sqlite3.Connection) -> None:
        raise AssertionError("a migration ran again")

    monkeypatch.setattr(sqlite_store, "MIGRATIONS", [must_not_run] * len(MIGRATIONS))
    s = SQLiteStorage(path)
    await s.open()
    try:
        assert await snapshot(s) == before
    finally:
        await s.close()
    assert pragma(path, "user_version") == len(MIGRATIONS)
    # and the step itself could not run twice (the columns exist)
    conn = raw(path)
    try:
        with pytest.raises(sqlite3.OperationalError, match="duplicate column"):
            MIGRATIONS[2](conn)
        with pytest.raises(sqlite3.OperationalError, match="already exists"):
            MIGRATIONS[3](conn)
    finally:
        conn.close()


def test_the_version_2_fixture_is_self_contained() -> None:
    """One file, at version 2, in rollback-journal mode: nothing lives in a WAL beside it."""
    conn = sqlite3.connect(V2_STORE.resolve().as_uri() + "?mode=ro", uri=True)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 2
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    finally:
        conn.close()
    header = V2_STORE.read_bytes()[:20]
    assert header.startswith(b"SQLite format 3\x00")
    assert header[18:20] == b"\x01\x01"  # legacy (not WAL) read and write versions
    for suffix in ("-wal", "-shm", "-journal"):
        assert not V2_STORE.with_name(V2_STORE.name + suffix).exists()


# -- schema 4: the history of our encryption keys (issue 13) -------------------------------


def x25519_record(n: int = 1) -> tuple[OwnEncryptionKeyRecord, list[bytes]]:
    """A record holding a real X25519 private key, and the byte strings that would
    betray it: the PEM's base64 body, the raw private value, the PKCS#8 DER."""
    key = X25519PrivateKey.generate()
    pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    raw32 = key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    der = key.private_bytes(Encoding.DER, PrivateFormat.PKCS8, NoEncryption())
    lines = pem.strip().splitlines()
    assert lines[0] == b"-----BEGIN PRIVATE KEY-----" and lines[-1] == b"-----END PRIVATE KEY-----"
    body = b"".join(lines[1:-1])
    assert len(raw32) == 32 and raw32 in der
    record = OwnEncryptionKeyRecord(
        fingerprint=sha256(b"cert %d" % n).hexdigest(),
        identity_fingerprint="ed" * 32,
        key_pem=pem,
        cert_pem=b"-----BEGIN CERTIFICATE-----\nX25519 %d\n" % n,
        issued_at=T0 + timedelta(days=n),
    )
    return record, [body, raw32, der]


def store_files(path: Path) -> dict[str, bytes]:
    """The database and whatever journal, WAL or shared memory file lies beside it."""
    found = {path.name: path.read_bytes()}
    for suffix in ("-wal", "-shm", "-journal"):
        extra = path.with_name(path.name + suffix)
        if extra.exists():
            found[extra.name] = extra.read_bytes()
    return found


def leaks(path: Path, secrets: list[bytes]) -> list[tuple[str, int]]:
    """(file, secret index) for every secret found in the store's files."""
    return [
        (name, i)
        for name, content in store_files(path).items()
        for i, secret in enumerate(secrets)
        if secret in content
    ]


async def test_a_destroyed_key_is_gone_from_the_files(db_path: Path) -> None:
    record, secrets = x25519_record()
    kept, kept_secrets = x25519_record(2)
    s = SQLiteStorage(db_path)
    await s.open()
    try:
        await s.save_encryption_key(record)
        await s.save_encryption_key(replace(record, retired_at=T0 + timedelta(days=2)))
        await s.save_encryption_key(kept)
        await fill(s)
    finally:
        await s.close()
    # the control: the search finds the key while it is held
    assert (db_path.name, 0) in leaks(db_path, secrets)
    assert (db_path.name, 0) in leaks(db_path, kept_secrets)

    s = SQLiteStorage(db_path)
    await s.open()
    try:
        before = await snapshot(s)
        await s.destroy_encryption_key(record.fingerprint)
        assert leaks(db_path, secrets) == []  # already, with the store still open
        assert await s.load_encryption_keys() == [kept]
        assert await snapshot(s) == before
    finally:
        await s.close()
    assert leaks(db_path, secrets) == []
    assert (db_path.name, 0) in leaks(db_path, kept_secrets)
    assert integrity(db_path) == ["ok"]


async def test_a_destroyed_key_is_gone_from_an_uncheckpointed_wal(db_path: Path) -> None:
    """Saved and destroyed in the same session: the key only ever reached the WAL."""
    record, secrets = x25519_record()
    s = SQLiteStorage(db_path)
    await s.open()
    try:
        await s.save_encryption_key(record)
        assert leaks(db_path, secrets[:1]) == [(db_path.name + "-wal", 0)]  # the control
        await s.destroy_encryption_key(record.fingerprint)
        assert leaks(db_path, secrets) == []
    finally:
        await s.close()
    assert leaks(db_path, secrets) == []


async def test_destroy_refuses_without_secure_delete(store: SQLiteStorage) -> None:
    record, _ = x25519_record()
    await store.save_encryption_key(record)
    assert store._conn is not None
    store._conn.execute("PRAGMA secure_delete = OFF")
    with pytest.raises(RuntimeError, match="secure_delete"):
        await store.destroy_encryption_key(record.fingerprint)
    assert await store.load_encryption_keys() == [record]  # rolled back


async def test_migration_from_version_3_adds_the_key_table(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_store, "MIGRATIONS", MIGRATIONS[:3])
    s = SQLiteStorage(db_path)
    await s.open()
    try:
        await s.save_identity(
            OwnIdentityRecord(
                "ed" * 32,
                b"ed25519 key",
                b"ed25519 cert",
                T0 + timedelta(days=1),
                encryption_key_pem=b"x25519 key",
                encryption_cert_pem=b"x25519 cert",
            )
        )
        await s.set_setting("policy:a%b", "always")
        identities, settings = await s.load_identities(), await s.settings_with_prefix("")
    finally:
        await s.close()
    assert pragma(db_path, "user_version") == 3
    conn = raw(db_path)
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    conn.execute(  # a peer as version 3 wrote it (no column for earlier certificates)
        "INSERT INTO peers (jid, fingerprint, cert_pem, trust, first_seen, last_seen, source,"
        " encryption_pem) VALUES ('a@b.example', ?, x'00', 'tofu', 1, 2, 'pep', x'01')",
        ("09" * 32,),
    )
    conn.commit()
    conn.close()
    assert "encryption_keys" not in tables

    monkeypatch.setattr(sqlite_store, "MIGRATIONS", MIGRATIONS)
    record, _ = x25519_record()
    s = SQLiteStorage(db_path)
    await s.open()
    try:
        assert pragma(db_path, "user_version") == len(MIGRATIONS)
        assert await s.load_identities() == identities
        assert await s.settings_with_prefix("") == settings
        [held] = await s.load_peers()
        assert (held.encryption_pem, held.previous_encryption_pem) == (b"\x01", None)
        assert await s.load_encryption_keys() == []
        await s.save_encryption_key(record)
        before = await snapshot(s)
    finally:
        await s.close()
    assert columns(db_path, "encryption_keys") == [
        "fingerprint",
        "identity_fingerprint",
        "key_pem",
        "cert_pem",
        "issued_ms",
        "retired_ms",
        "kem_key_pem",
        "kem_cert_pem",
    ]
    assert integrity(db_path) == ["ok"]
    s = SQLiteStorage(db_path)
    await s.open()
    try:
        assert await snapshot(s) == before
        assert await s.load_encryption_keys() == [record]
    finally:
        await s.close()
