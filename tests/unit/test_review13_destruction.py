"""Review 13 (hostile): key destruction (PROTOCOL.md 13.10) against what stays
referenced in memory after ``objenc_key_destroyed``.

A test marked ``xfail(strict=True)`` is an attack that currently SUCCEEDS (its
reason names the finding); a plain test is an attack that was tried and held.
"""

from __future__ import annotations

import gc
from pathlib import Path

from test_own_device_rotation import DAY, ME, T0, Clock

from slixmpp_objenc.keyring import Keyring
from slixmpp_objenc.store import SQLiteStorage


def reachable(root: object, target: object) -> list[str]:
    """Paths (types) from ``root`` to ``target`` through gc referents."""
    seen = {id(root)}
    stack: list[tuple[object, tuple[str, ...]]] = [(root, (type(root).__name__,))]
    found = []
    while stack:
        obj, path = stack.pop()
        for ref in gc.get_referents(obj):
            if ref is target:
                found.append(" -> ".join((*path, type(ref).__name__)))
                continue
            if id(ref) in seen or isinstance(ref, type) or type(ref).__name__ == "module":
                continue
            seen.add(id(ref))
            stack.append((ref, (*path, type(ref).__name__)))
    return found


async def rotated_twice(tmp_path: Path) -> tuple[Keyring, object, object]:
    clock = Clock()
    storage = SQLiteStorage(tmp_path / "store.sqlite3")
    await storage.open()
    keyring = Keyring(storage, clock)
    await keyring.load()
    await keyring.device.ensure(ME)
    device = keyring.device
    first = device.keys
    assert first is not None
    clock.now = T0 + 7 * DAY
    await device.rotate_now()
    device.senders()  # a stanza arrives: both keys open
    clock.now = T0 + 37 * DAY
    outcome = await device.rotate_now()
    assert outcome is not None and first.encryption_fingerprint in outcome.destroyed
    return keyring, first.encryption_key, first.kem_key


async def test_a_destroyed_key_is_not_referenced_by_the_keyring(tmp_path: Path) -> None:
    keyring, x25519, kem = await rotated_twice(tmp_path)
    try:
        paths = reachable(keyring, x25519) + reachable(keyring, kem)
        assert paths == [], paths
    finally:
        await keyring.storage.close()


async def test_after_the_next_stanza_the_destroyed_key_is_unreferenced(tmp_path: Path) -> None:
    """Control: once senders() is called again, nothing of the key ring holds it."""
    keyring, x25519, kem = await rotated_twice(tmp_path)
    try:
        keyring.device.senders()
        assert reachable(keyring, x25519) + reachable(keyring, kem) == []
    finally:
        await keyring.storage.close()
