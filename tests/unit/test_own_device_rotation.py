"""Issue 13, rotation as the device runs it: our encryption key is replaced on
schedule, a replaced one still opens for the retention period, then it is
destroyed, from memory and from every byte of the store (SQLite file and WAL),
the identity row included. An injected clock: no real waiting."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.mlkem import MLKEM768PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
)

from slixmpp_objenc.core.rotation import RotationPolicy
from slixmpp_objenc.keyring import Keyring
from slixmpp_objenc.own_device import DESTROYED_PREFIX
from slixmpp_objenc.store import MemoryStorage, SQLiteStorage, Storage
from slixmpp_objenc.store.base import OwnEncryptionKeyRecord, OwnIdentityRecord

ME = "romeo@montague.net"
T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
DAY = timedelta(days=1)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def secrets_of(key: X25519PrivateKey) -> list[bytes]:
    """The byte strings that would betray a key: PEM body, raw value, PKCS#8 DER."""
    pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    body = b"".join(pem.strip().splitlines()[1:-1])
    raw = key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    der = key.private_bytes(Encoding.DER, PrivateFormat.PKCS8, NoEncryption())
    return [body, raw, der]


def kem_secrets_of(key: MLKEM768PrivateKey) -> list[bytes]:
    """An ML-KEM key's seed (64 bytes, what PKCS#8 holds) and its PEM body."""
    pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    return [b"".join(pem.strip().splitlines()[1:-1]), key.private_bytes_raw()]


def found(path: Path, secrets: list[bytes]) -> list[str]:
    files = [path] + [path.with_name(path.name + s) for s in ("-wal", "-shm", "-journal")]
    return [f.name for f in files if f.exists() for s in secrets if s in f.read_bytes()]


async def started(storage: Storage, clock: Callable[[], datetime]) -> Keyring:
    await storage.open()
    keyring = Keyring(storage, clock)
    await keyring.load()
    await keyring.device.ensure(ME)
    return keyring


async def test_the_key_is_replaced_kept_then_destroyed(tmp_path: Path) -> None:
    clock = Clock()
    path = tmp_path / "store.sqlite3"
    keyring = await started(SQLiteStorage(path), clock)
    device = keyring.device
    first = device.keys
    assert first is not None
    assert first.encryption_certificate.not_valid_after_utc - T0 < 38 * DAY  # 7 + 30 days
    assert await device.rotate_now() is not None  # nothing due yet
    assert device.keys is first

    clock.now = T0 + 7 * DAY
    outcome = await device.rotate_now()
    assert outcome is not None and outcome.rotated is not None
    assert outcome.retired == (first.encryption_fingerprint,) and outcome.destroyed == ()
    second = device.keys
    assert second is not None and second.encryption_fingerprint == outcome.rotated
    assert second.fingerprint == first.fingerprint  # the identity stays
    assert [s.encryption_id.hex() for s in device.senders()] == [
        second.encryption_fingerprint,
        first.encryption_fingerprint,
    ]
    assert outcome.next_check == T0 + 14 * DAY
    assert first.kem_key is not None and second.kem_key is not None  # the hybrid's key too
    assert second.kem_fingerprint != first.kem_fingerprint
    assert [s.kem_id for s in device.senders()] == [
        bytes.fromhex(second.kem_fingerprint or ""),
        bytes.fromhex(first.kem_fingerprint or ""),
    ]
    old_secrets = secrets_of(first.encryption_key) + kem_secrets_of(first.kem_key)
    assert found(path, old_secrets)  # the control: the search finds it (file or WAL)

    # a restart keeps both
    await keyring.storage.close()
    keyring = await started(SQLiteStorage(path), clock)
    device = keyring.device
    assert device.keys is not None
    assert device.keys.encryption_fingerprint == second.encryption_fingerprint
    assert len(device.senders()) == 2

    clock.now = T0 + 37 * DAY  # retired 30 days ago, and rotated again meanwhile
    outcome = await device.rotate_now()
    assert outcome is not None
    assert first.encryption_fingerprint in outcome.destroyed
    assert first.encryption_fingerprint in device.destroyed
    assert first.encryption_fingerprint not in [s.encryption_id.hex() for s in device.senders()]
    assert found(path, old_secrets) == []  # gone, with the store still open
    await keyring.storage.close()
    assert found(path, old_secrets) == []
    assert found(path, secrets_of(second.encryption_key))  # retired, still kept

    keyring = await started(SQLiteStorage(path), clock)
    assert first.encryption_fingerprint in keyring.device.destroyed  # remembered
    settings = await keyring.storage.settings_with_prefix(DESTROYED_PREFIX)
    assert list(settings) == [DESTROYED_PREFIX + first.encryption_fingerprint]
    await keyring.storage.close()


async def test_a_store_from_before_the_history_starts_it_with_its_key() -> None:
    clock = Clock()
    storage = MemoryStorage()
    keyring = await started(storage, clock)
    keys = keyring.device.keys
    assert keys is not None
    storage.encryption_keys.clear()  # as a store of schema 3 had it
    keyring = Keyring(storage, clock)
    await keyring.load()
    assert keyring.device.keys is not None
    assert keyring.device.keys.encryption_fingerprint == keys.encryption_fingerprint
    assert list(storage.encryption_keys) == [keys.encryption_fingerprint]


async def test_a_rotation_cut_short_is_taken_up_at_the_next_start() -> None:
    """The new key was stored, the identity row not yet: the newest current key wins,
    the older current one is retired from then on, not kept for ever."""
    clock = Clock()
    storage = MemoryStorage()
    keyring = await started(storage, clock)
    device = keyring.device
    clock.now = T0 + 8 * DAY
    old_row = dict(storage.identities)
    await device.rotate_now()
    new = device.keys
    assert new is not None
    storage.identities = old_row  # the crash: the row still names the old key
    for fingerprint, record in list(storage.encryption_keys.items()):
        if fingerprint != new.encryption_fingerprint:
            storage.encryption_keys[fingerprint] = OwnEncryptionKeyRecord(
                record.fingerprint,
                record.identity_fingerprint,
                record.key_pem,
                record.cert_pem,
                record.issued_at,
            )  # and the old key is not marked retired
    clock.now = T0 + 9 * DAY
    keyring = Keyring(storage, clock)
    await keyring.load()
    assert keyring.device.keys is not None
    assert keyring.device.keys.encryption_fingerprint == new.encryption_fingerprint
    [row] = storage.identities.values()
    assert row.encryption_cert_pem is not None and row.encryption_key_pem is not None
    retired = [r for r in storage.encryption_keys.values() if r.retired_at is not None]
    assert [r.retired_at for r in retired] == [T0 + 9 * DAY]
    clock.now = T0 + 39 * DAY
    outcome = await keyring.device.rotate_now()
    assert outcome is not None and retired[0].fingerprint in outcome.destroyed


async def test_the_policy_sets_the_certificate_validity() -> None:
    clock = Clock()
    storage = MemoryStorage()
    await storage.open()
    keyring = Keyring(storage, clock)
    keyring.device.policy = RotationPolicy(rotate_every=DAY, retention=2 * DAY)
    await keyring.load()
    keys = await keyring.device.ensure(ME)
    validity = keys.encryption_certificate.not_valid_after_utc - T0
    assert 3 * DAY - timedelta(minutes=6) < validity <= 3 * DAY
    clock.now = T0 + DAY
    outcome = await keyring.device.rotate_now()
    assert outcome is not None and outcome.rotated is not None
    assert keyring.device.keys is not None
    certificate = keyring.device.keys.encryption_certificate
    assert certificate.not_valid_after_utc - clock.now <= 3 * DAY


class NoHistory(MemoryStorage):
    """A store written before encryption keys had a history (the base interface)."""

    async def load_encryption_keys(self) -> list[OwnEncryptionKeyRecord]:
        return await Storage.load_encryption_keys(self)

    async def save_encryption_key(self, record: OwnEncryptionKeyRecord) -> None:
        await Storage.save_encryption_key(self, record)

    async def save_identity(self, record: OwnIdentityRecord) -> None:
        await super().save_identity(record)


async def test_a_store_without_history_does_not_rotate(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    keyring = await started(NoHistory(), clock)
    keys = keyring.device.keys
    clock.now = T0 + 30 * DAY
    assert await keyring.device.rotate_now() is None
    assert keyring.device.keys is keys
    assert "not rotated" in caplog.text


async def test_two_rotations_in_one_second_give_a_newer_certificate() -> None:
    """A contact takes a published certificate only if its notBefore is later
    (rollback protection): two rotations within one second (a label changed twice,
    a forced rotation) must still give each a later notBefore, or the contact
    stays on a key we no longer seal with (found by a newcomer: 5 runs in 11)."""
    from slixmpp_objenc.core.devices import validate_device
    from slixmpp_objenc.held_certificates import newer_encryption

    clock = Clock()
    keyring = await started(MemoryStorage(), clock)
    device = keyring.device
    seen = [device.keys]
    for _ in range(3):
        outcome = await device.rotate_now(force=True)  # the clock does not move
        assert outcome is not None and outcome.rotated is not None
        seen.append(device.keys)
    before = [k.encryption_certificate.not_valid_before_utc for k in seen if k is not None]
    assert before == sorted(before) and len(set(before)) == len(before)
    held = seen[0].encryption_certificate.public_bytes(Encoding.PEM) if seen[0] else None
    for keys in seen[1:]:
        assert keys is not None
        published = validate_device(
            keys.identity_certificate,
            encryption=keys.encryption_certificate,
            now=clock.now + timedelta(seconds=5),
        )
        held = newer_encryption(held, published)
        assert published.encryption is not None and held == published.encryption.pem()


async def test_a_label_set_by_the_application_survives_a_restart() -> None:
    clock = Clock()
    storage = MemoryStorage()
    keyring = await started(storage, clock)
    await keyring.device.set_label("phone")
    outcome = await keyring.device.rotate_now()
    assert outcome is not None and outcome.rotated is not None
    restarted = Keyring(storage, clock)
    restarted.device.label = "from the configuration"
    await restarted.load()
    assert restarted.device.label == "phone"  # the application's choice wins
    outcome = await restarted.device.rotate_now()
    assert outcome is not None and outcome.rotated is None  # no rotation at each start
