"""The key ring's part in issue 9: whether this device has read its own account's
node yet is remembered across restarts (kind 1), and certificates are held under
the JID spelling slixmpp uses (kind 8)."""

from __future__ import annotations

from pathlib import Path

import hostile_certificates as hostile
import pytest

from slixmpp_objenc.core import CertificateError, generate_identity, validate_peer_certificate
from slixmpp_objenc.glue.directory import normalize_jid
from slixmpp_objenc.keyring import OWN_DEVICES_SETTING, Keyring
from slixmpp_objenc.store import MemoryStorage, SQLiteStorage, TrustState

ME = "romeo@montague.net"


@pytest.fixture(scope="module")
def identity():  # type: ignore[no-untyped-def]
    return generate_identity(ME, key_size=2048)


async def test_a_fresh_store_is_a_new_device_until_its_first_read(tmp_path: Path, identity) -> None:
    storage = SQLiteStorage(tmp_path / "store.sqlite3")
    await storage.open()
    keyring = Keyring(storage)
    await keyring.load()
    assert keyring.own_first_contact
    assert await storage.get_setting(OWN_DEVICES_SETTING) == "first-contact"
    await keyring.add_identity(identity)
    await storage.close()

    # a restart before the first read of our node: still a new device
    storage = SQLiteStorage(tmp_path / "store.sqlite3")
    await storage.open()
    keyring = Keyring(storage)
    await keyring.load()
    assert keyring.own_first_contact
    await keyring.own_devices_known()
    await storage.close()

    storage = SQLiteStorage(tmp_path / "store.sqlite3")
    await storage.open()
    keyring = Keyring(storage)
    await keyring.load()
    assert not keyring.own_first_contact  # for good
    await storage.close()


async def test_a_store_from_before_the_setting_has_read_its_node_already(identity) -> None:
    storage = MemoryStorage()
    first = Keyring(storage)
    await first.load()
    await first.add_identity(identity)
    await storage.set_setting(OWN_DEVICES_SETTING, None)  # as the old code left it
    keyring = Keyring(storage)
    await keyring.load()
    assert not keyring.own_first_contact
    assert await storage.get_setting(OWN_DEVICES_SETTING) == "known"


async def test_certificates_are_held_under_slixmpp_spelling() -> None:
    keyring = Keyring(MemoryStorage(), normalize=normalize_jid)
    await keyring.load()
    canonical = validate_peer_certificate(
        hostile.der(hostile.certificate(["strasse@example.org"])), normalize=normalize_jid
    )
    [sighting] = await keyring.observe(canonical, source="manual", trust=TrustState.TOFU)
    assert sighting.jid == "strasse@example.org"
    for spelling in ("strasse@example.org", "Straße@Example.org", "STRASSE@example.org/x"):
        assert [p.fingerprint for p in keyring.usable(spelling)] == [canonical.fingerprint]
        assert keyring.sticky(spelling)
    assert keyring.records("not a jid@@") == [] and not keyring.sticky("not a jid@@")
    with pytest.raises(CertificateError):
        await keyring.observe(canonical, source="manual", jid="a@b@c")
    # a certificate in another spelling never gets that far
    with pytest.raises(CertificateError, match="canonical"):
        validate_peer_certificate(
            hostile.der(hostile.certificate(["straße@example.org"])), normalize=normalize_jid
        )


async def test_identities_are_generated_for_the_canonical_jid() -> None:
    keyring = Keyring(MemoryStorage(), normalize=normalize_jid)
    await keyring.load()
    identity = await keyring.ensure_identity("Straße@Example.org/laptop", key_size=2048)
    peer = validate_peer_certificate(identity.certificate, normalize=normalize_jid)
    assert peer.jids == {"strasse@example.org"}


async def test_devices_of_ours_the_old_code_pinned_are_held_again(identity) -> None:
    # before issue 9 a certificate on our own node was pinned (tofu) without a
    # decision; a store from then holds it that way: it is asked about again
    from datetime import UTC, datetime

    from slixmpp_objenc.store import PeerRecord

    storage = MemoryStorage()
    old = Keyring(storage)
    await old.load()
    await old.add_identity(identity)
    await storage.set_setting(OWN_DEVICES_SETTING, None)
    pinned = generate_identity(ME, key_size=2048)
    decided = generate_identity(ME, key_size=2048)
    contact = generate_identity("juliet@capulet.net", key_size=2048)
    now = datetime.now(UTC)
    for who, jid, trust, source in (
        (pinned, ME, TrustState.TOFU, "pep"),
        (decided, ME, TrustState.VERIFIED, "pep"),
        (contact, "juliet@capulet.net", TrustState.TOFU, "pep"),
    ):
        await storage.save_peer(
            PeerRecord(jid, who.fingerprint, who.certificate_pem(), trust, now, now, source)
        )
    keyring = Keyring(storage)
    await keyring.load()
    assert keyring.record(ME, pinned.fingerprint).trust is TrustState.UNTRUSTED
    assert keyring.record(ME, decided.fingerprint).trust is TrustState.VERIFIED
    assert keyring.record("juliet@capulet.net", contact.fingerprint).trust is TrustState.TOFU
    # once: the setting is written, a later load changes nothing
    await keyring.set_trust(ME, pinned.fingerprint, TrustState.TOFU)  # the user accepted it
    again = Keyring(storage)
    await again.load()
    assert again.record(ME, pinned.fingerprint).trust is TrustState.TOFU
