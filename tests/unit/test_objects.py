"""slixmpp_objenc.objects: files and text sealed for XMPP identities on real
stores (SQLite under ``tmp_path``) that hold each other's devices, as the
plugin or ``objenc import`` leaves them. Round trips in the three profiles,
for many JIDs and devices, our own other devices and this one; who may be
sealed for (unknown, awaiting a decision, not verified, RSA-only, no ML-KEM
key); who may have written one (a stranger, a revoked device, a device of
ours not accepted, a replaced key after its time, an introduced newer key);
tampered and truncated objects refused with nothing left; bounded memory.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import tracemalloc
import zlib
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from slixmpp_objenc.core import EncryptionError, InvalidEnvelope, validate_peer_certificate
from slixmpp_objenc.core.armor import ARMOR_BEGIN, ARMOR_END
from slixmpp_objenc.core.devices import load_device
from slixmpp_objenc.core.objects import seal_object_stream
from slixmpp_objenc.glue.directory import normalize_jid
from slixmpp_objenc.keyring import Keyring
from slixmpp_objenc.objects import (
    OpenedObject,
    atomic_output,
    open_object,
    open_object_to_path,
    plan_object,
    seal_object,
)
from slixmpp_objenc.store import SQLiteStorage, TrustState

JULIET = "juliet@capulet.lit"
ROMEO = "romeo@montague.lit"
MERCUTIO = "mercutio@verona.lit"
BENVOLIO = "benvolio@montague.lit"
TEXT = "Parting is such sweet sorrow. ✉\n" * 100
MIB = 1024 * 1024


class Store:
    """One device's store: its keyring, open for the test."""

    def __init__(self, jid: str, storage: SQLiteStorage, keyring: Keyring) -> None:
        self.jid, self.storage, self.keyring = jid, storage, keyring

    def device_pem(self, *, kem: bool = True) -> bytes:
        pem = self.keyring.device.bundle_pem()
        assert pem is not None
        end = b"-----END CERTIFICATE-----\n"
        certificates = [part + end for part in pem.split(end) if part.strip()]
        assert len(certificates) == 3  # identity, encryption, ML-KEM
        return b"".join(certificates[: 3 if kem else 2])

    async def hold(
        self,
        other: Store,
        trust: TrustState = TrustState.TOFU,
        *,
        rsa: bool = False,
        kem: bool = True,
    ) -> None:
        """Hold ``other``'s device (or its RSA certificate) as ``objenc import`` does."""
        if rsa:
            identity = other.keyring.identity
            assert identity is not None
            peer = validate_peer_certificate(identity.certificate, normalize=normalize_jid)
        else:
            peer = load_device(other.device_pem(kem=kem), normalize=normalize_jid)
        await self.keyring.observe(peer, source="manual", trust=trust, jid=other.jid)

    async def seal(self, data: bytes | str, to: list[str], **options: object) -> bytes:
        out = io.BytesIO()
        await seal_object(self.keyring, data, to, sender_jid=self.jid, out=out, **options)  # type: ignore[arg-type]
        return out.getvalue()

    async def open(self, sealed: bytes | str, **options: bool) -> tuple[bytes, OpenedObject]:
        out = io.BytesIO()
        opened = await open_object(self.keyring, sealed, out=out, **options)
        return out.getvalue(), opened


class Stores:
    """Makes stores under a directory and closes them at the end."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.open: list[Store] = []

    async def __call__(self, jid: str, *, rsa: bool = False, device: bool = True) -> Store:
        storage = SQLiteStorage(self.root / f"{len(self.open)}-{jid}.sqlite3")
        await storage.open()
        keyring = Keyring(storage, normalize=normalize_jid)
        await keyring.load()
        if rsa:
            await keyring.ensure_identity(jid, key_size=2048)
        if device:
            await keyring.device.ensure(jid)
        store = Store(jid, storage, keyring)
        self.open.append(store)
        return store


@pytest.fixture
async def stores(tmp_path: Path) -> AsyncIterator[Stores]:
    made = Stores(tmp_path)
    yield made
    for store in made.open:
        await store.storage.close()


async def pair(stores: Stores) -> tuple[Store, Store]:
    """Juliet and Romeo, each holding the other's device (tofu)."""
    juliet, romeo = await stores(JULIET), await stores(ROMEO)
    await juliet.hold(romeo)
    await romeo.hold(juliet)
    return juliet, romeo


# -- round trips ----------------------------------------------------------------------


@pytest.mark.parametrize("armored", [True, False])
@pytest.mark.parametrize("size", [0, 1, 65536, 200_000])
async def test_round_trip_authenticated(stores: Stores, armored: bool, size: int) -> None:
    juliet, romeo = await pair(stores)
    data = os.urandom(size)
    sealed = await juliet.seal(data, [ROMEO], armored=armored)
    assert sealed.startswith(ARMOR_BEGIN.encode()) == armored
    plaintext, opened = await romeo.open(sealed)
    assert plaintext == data
    assert opened.authenticated and not opened.hybrid and opened.profile == "auth-1"
    assert opened.sender_jid == JULIET and opened.trust is TrustState.TOFU
    assert opened.sender_fingerprint == juliet.keyring.device.keys.fingerprint  # type: ignore[union-attr]
    assert not opened.this_device and opened.size == size
    # our own copy: this device opens what it sealed
    plaintext, mine = await juliet.open(sealed)
    assert plaintext == data and mine.this_device and mine.sender_jid == JULIET
    assert mine.trust is None


async def test_text_in_text_out_and_in_memory(stores: Stores) -> None:
    juliet, romeo = await pair(stores)
    text_out = io.StringIO()
    sealed = await seal_object(juliet.keyring, TEXT, [ROMEO], sender_jid=JULIET, out=text_out)
    assert sealed.data is None and sealed.size == len(text_out.getvalue())
    armored = text_out.getvalue()
    assert armored.startswith(ARMOR_BEGIN) and armored.endswith(ARMOR_END + "\n")
    long_line = "<p>" + "é" * 10_000 + "</p>\n"  # read in pieces, skipped
    email = "From: juliet\nSubject: tonight\n\n" + long_line + armored + "\n-- \nJ.\n"
    plaintext, _ = await romeo.open(email)  # text around the armor is skipped
    assert plaintext.decode() == TEXT
    kept = await seal_object(juliet.keyring, TEXT.encode(), [ROMEO], sender_jid=JULIET)
    assert isinstance(kept.data, str) and kept.data.startswith(ARMOR_BEGIN)
    binary = await seal_object(
        juliet.keyring, [b"a", b"bc"], [ROMEO], sender_jid=JULIET, armored=False
    )
    assert isinstance(binary.data, bytes)
    assert (await romeo.open(binary.data))[0] == b"abc"
    with pytest.raises(EncryptionError, match="binary stream"):
        await seal_object(
            juliet.keyring, b"x", [ROMEO], sender_jid=JULIET, out=io.StringIO(), armored=False
        )


async def test_many_recipients_every_device_opens(stores: Stores) -> None:
    juliet = await stores(JULIET)
    romeos = [await stores(ROMEO) for _ in range(2)]
    mercutio = await stores(MERCUTIO)
    benvolios = [await stores(BENVOLIO) for _ in range(3)]
    everyone = [*romeos, mercutio, *benvolios]
    for other in everyone:
        await juliet.hold(other)
        await other.hold(juliet)
    data = os.urandom(150_000)
    out = io.BytesIO()
    sealed = await seal_object(
        juliet.keyring, data, ["Romeo@Montague.lit", MERCUTIO, BENVOLIO], sender_jid=JULIET, out=out
    )
    assert len(sealed.devices) == 7 and sealed.left_out == ()
    assert [d.jid for d in sealed.devices if d.own] == [JULIET]
    for other in everyone:
        plaintext, opened = await other.open(out.getvalue())
        assert plaintext == data and opened.sender_jid == JULIET


async def test_hybrid_round_trip_and_its_requirements(stores: Stores) -> None:
    juliet, romeo = await pair(stores)
    sealed = await juliet.seal(b"post-quantum", [ROMEO], hybrid=True)
    plaintext, opened = await romeo.open(sealed)
    assert plaintext == b"post-quantum" and opened.hybrid and opened.profile == "auth-pq-1"
    # a device held without its ML-KEM certificate cannot receive the hybrid
    mercutio = await stores(MERCUTIO)
    await juliet.hold(mercutio, kem=False)
    await mercutio.hold(juliet)
    with pytest.raises(EncryptionError, match="has no ML-KEM key"):
        await juliet.seal(b"x", [ROMEO, MERCUTIO], hybrid=True)
    assert (await mercutio.open(await juliet.seal(b"x", [MERCUTIO])))[0] == b"x"


async def test_the_draft_profile_only_when_allowed(stores: Stores) -> None:
    juliet = await stores(JULIET, rsa=True)
    romeo = await stores(ROMEO, rsa=True)
    await juliet.hold(romeo, rsa=True)  # Romeo's old client: RSA only
    with pytest.raises(EncryptionError, match="draft's profile"):
        await juliet.seal(b"x", [ROMEO])
    with pytest.raises(EncryptionError, match="hybrid"):
        await juliet.seal(b"x", [ROMEO], hybrid=True, allow_legacy=True)
    out = io.BytesIO()
    sealed = await seal_object(
        juliet.keyring, b"old ways", [ROMEO], sender_jid=JULIET, out=out, allow_legacy=True
    )
    assert sealed.profile == "draft-rsa"
    with pytest.raises(InvalidEnvelope):  # it proves no one: opened only when asked for
        await romeo.open(out.getvalue())
    plaintext, opened = await romeo.open(out.getvalue(), allow_legacy=True)
    assert plaintext == b"old ways"
    assert not opened.authenticated and opened.sender_jid is None and opened.trust is None
    assert (await juliet.open(out.getvalue(), allow_legacy=True))[0] == b"old ways"  # our RSA copy
    # a recipient with an identity only cannot be reached by the draft's profile
    mercutio = await stores(MERCUTIO)
    await juliet.hold(mercutio)
    with pytest.raises(EncryptionError, match=f"{MERCUTIO}: no device opens"):
        await juliet.seal(b"x", [ROMEO, MERCUTIO], allow_legacy=True)


async def test_a_device_of_ours_opens_and_one_not_accepted_does_not_speak(stores: Stores) -> None:
    laptop, phone = await stores(JULIET), await stores(JULIET)
    romeo = await stores(ROMEO)
    await laptop.hold(phone)
    await phone.hold(laptop)  # accepted, as the plugin would after a decision
    await laptop.hold(romeo)
    sealed = await laptop.seal(b"to Romeo, readable on my phone", [ROMEO])
    plaintext, opened = await phone.open(sealed)
    assert plaintext == b"to Romeo, readable on my phone"
    assert opened.sender_jid == JULIET and opened.trust is TrustState.TOFU
    assert not opened.this_device
    # held for a decision: our own device does not speak as us
    await phone.keyring.set_trust(
        JULIET, laptop.keyring.device.keys.fingerprint, TrustState.UNTRUSTED
    )  # type: ignore[union-attr]
    with pytest.raises(InvalidEnvelope):
        await phone.open(sealed)
    # without own copies, not even this device opens it
    alone = await laptop.seal(b"x", [ROMEO], own_copies=False)
    with pytest.raises(InvalidEnvelope):
        await laptop.open(alone)
    # sealed for ourselves only: our devices
    mine = await laptop.seal(b"note to self", [JULIET])
    await phone.keyring.set_trust(JULIET, laptop.keyring.device.keys.fingerprint, TrustState.TOFU)  # type: ignore[union-attr]
    assert (await phone.open(mine))[0] == b"note to self"
    assert (await laptop.open(mine))[0] == b"note to self"


# -- who may be sealed for ------------------------------------------------------------


async def test_unknown_pending_and_unverified_recipients_are_refused(stores: Stores) -> None:
    juliet, romeo = await pair(stores)
    with pytest.raises(EncryptionError, match=f"no usable certificate for {MERCUTIO}"):
        await juliet.seal(b"x", [ROMEO, MERCUTIO])
    with pytest.raises(EncryptionError, match="not a valid JID"):
        await juliet.seal(b"x", ["not a jid@@"])
    with pytest.raises(EncryptionError, match="no recipient"):
        await juliet.seal(b"x", [])
    # a new device of Romeo awaits a decision: nothing is sealed for Romeo
    other = await stores(ROMEO)
    await juliet.hold(other, TrustState.UNTRUSTED)
    with pytest.raises(EncryptionError, match="await your decision"):
        await juliet.seal(b"x", [ROMEO])
    await juliet.keyring.set_trust(ROMEO, other.keyring.device.keys.fingerprint, TrustState.REVOKED)  # type: ignore[union-attr]
    assert (await romeo.open(await juliet.seal(b"x", [ROMEO])))[0] == b"x"
    # require_verified: tofu is not enough
    with pytest.raises(EncryptionError, match="is tofu, not verified"):
        await juliet.seal(b"x", [ROMEO], require_verified=True)
    fingerprint = romeo.keyring.device.keys.fingerprint  # type: ignore[union-attr]
    await juliet.keyring.set_trust(ROMEO, fingerprint, TrustState.VERIFIED)
    _, opened = await romeo.open(await juliet.seal(b"x", [ROMEO], require_verified=True))
    assert opened.sender_jid == JULIET


async def test_require_verified_leaves_our_unverified_devices_out(stores: Stores) -> None:
    juliet, romeo = await pair(stores)
    phone = await stores(JULIET)
    await juliet.hold(phone)
    await phone.hold(juliet)
    romeo_fp = romeo.keyring.device.keys.fingerprint  # type: ignore[union-attr]
    await juliet.keyring.set_trust(ROMEO, romeo_fp, TrustState.VERIFIED)
    plan = plan_object(juliet.keyring, [ROMEO], sender_jid=JULIET, require_verified=True)
    [left] = plan.left_out
    assert left.jid == JULIET and left.own and left.reason == "is not verified"
    assert {d.fingerprint for d in plan.devices} == {
        romeo_fp,
        juliet.keyring.device.keys.fingerprint,  # type: ignore[union-attr]
    }
    assert len(plan_object(juliet.keyring, [ROMEO], sender_jid=JULIET).devices) == 3


async def test_the_sender_jid_must_be_this_stores(stores: Stores) -> None:
    juliet, _ = await pair(stores)
    with pytest.raises(EncryptionError, match="not one of"):
        await seal_object(juliet.keyring, b"x", [ROMEO], sender_jid=ROMEO)


# -- who may have written one -----------------------------------------------------------


async def test_a_stranger_and_a_revoked_sender_are_refused(stores: Stores) -> None:
    juliet, romeo = await pair(stores)
    stranger = await stores(MERCUTIO)
    await stranger.hold(romeo)
    from_stranger = await stranger.seal(b"trust me", [ROMEO])  # introduces itself: not enough
    with pytest.raises(InvalidEnvelope):
        await romeo.open(from_stranger)
    sealed = await juliet.seal(b"x", [ROMEO])
    juliet_fp = juliet.keyring.device.keys.fingerprint  # type: ignore[union-attr]
    await romeo.keyring.set_trust(JULIET, juliet_fp, TrustState.UNTRUSTED)
    # a contact's device held for a decision: refused (as sealing to it is) unless
    # the caller accepts it; nothing released before (review of issue 14, F4)
    out = io.BytesIO()
    with pytest.raises(EncryptionError, match="awaits your decision"):
        await open_object(romeo.keyring, sealed, out=out)
    assert out.getvalue() == b""
    _, opened = await romeo.open(sealed, allow_untrusted=True)
    assert opened.trust is TrustState.UNTRUSTED
    await romeo.keyring.set_trust(JULIET, juliet_fp, TrustState.REVOKED)
    with pytest.raises(InvalidEnvelope):
        await romeo.open(sealed)


async def test_a_newer_key_is_taken_from_the_introduction_only(stores: Stores) -> None:
    juliet, romeo = await pair(stores)
    assert await juliet.keyring.device.rotate_now(force=True) is not None
    introduced = await juliet.seal(b"after rotation", [ROMEO])
    with pytest.raises(InvalidEnvelope):  # without the introduction: a key not held
        await romeo.open(await juliet.seal(b"x", [ROMEO], introduce=False))
    assert (await romeo.open(introduced))[0] == b"after rotation"
    # kept once the object opened (review of issue 14, F6): the key it replaced no
    # longer speaks for what is dated after it, and the next object needs no introduction
    record = romeo.keyring.record(JULIET, juliet.keyring.device.keys.fingerprint)  # type: ignore[union-attr]
    peer = romeo.keyring.validated(record) if record is not None else None
    assert peer is not None and peer.encryption is not None
    assert peer.encryption.fingerprint == juliet.keyring.device.keys.encryption_fingerprint  # type: ignore[union-attr]
    assert (await romeo.open(await juliet.seal(b"y", [ROMEO], introduce=False)))[0] == b"y"


async def test_a_replaced_key_speaks_only_for_objects_dated_before(stores: Stores) -> None:
    juliet, romeo = await pair(stores)
    old = juliet.keyring.device.senders()[0]
    await juliet.keyring.device.rotate_now(force=True)
    await romeo.hold(juliet)  # Romeo reads Juliet's node: the new key, the old one kept
    record = romeo.keyring.record(JULIET, juliet.keyring.device.keys.fingerprint)  # type: ignore[union-attr]
    assert record is not None and record.previous_encryption_pem
    replaced = romeo.keyring.superseded_at(JULIET, old.identity_id, old.encryption_id)
    assert replaced is not None
    plan = plan_object(juliet.keyring, [ROMEO], sender_jid=JULIET, own_copies=False)

    def sealed_at(delta: timedelta) -> bytes:
        stream = seal_object_stream([b"late"], plan.targets, sender=old, created=replaced + delta)
        return b"".join(stream)

    assert (await romeo.open(sealed_at(-timedelta(hours=1))))[0] == b"late"
    with pytest.raises(InvalidEnvelope):
        await romeo.open(sealed_at(timedelta(hours=1)))


async def test_an_introduction_never_takes_a_sender_back_to_an_older_key(stores: Stores) -> None:
    juliet, romeo = await stores(JULIET), await stores(ROMEO)
    await juliet.hold(romeo)
    keys = juliet.keyring.device.keys
    assert keys is not None
    old = juliet.keyring.device.senders()[0]
    der = serialization.Encoding.DER
    old_introduction = (
        keys.identity_certificate.public_bytes(der),
        keys.encryption_certificate.public_bytes(der),
    )
    await juliet.keyring.device.rotate_now(force=True)
    await romeo.hold(juliet)  # Romeo first meets Juliet after her rotation
    plan = plan_object(juliet.keyring, [ROMEO], sender_jid=JULIET, own_copies=False)
    stream = seal_object_stream([b"x"], plan.targets, sender=old, introduce=old_introduction)
    with pytest.raises(InvalidEnvelope):
        await romeo.open(b"".join(stream))
    assert (await romeo.open(await juliet.seal(b"x", [ROMEO])))[0] == b"x"


# -- damaged objects leave nothing ------------------------------------------------------


def _tamper_armor(armored: bytes) -> bytes:
    """One base64 character of the body changed, the checksum fixed to match
    (the CRC is no security): the object's own checks must catch it."""
    lines = armored.decode().splitlines()
    body = lines[2:-2]
    data = bytearray(base64.b64decode("".join(body)))
    data[len(data) // 2] ^= 0x01
    text = base64.b64encode(bytes(data)).decode()
    crc = zlib.crc32(bytes(data)).to_bytes(4, "big")
    new_body = [text[i : i + 64] for i in range(0, len(text), 64)]
    return (
        "\n".join([*lines[:2], *new_body, "=" + base64.b64encode(crc).decode(), lines[-1]]).encode()
        + b"\n"
    )


def _variants(sealed: bytes, binary: bytes) -> Iterator[tuple[str, bytes]]:
    yield "tampered armor", _tamper_armor(sealed)
    changed = bytearray(sealed)
    changed[sealed.index(b"\n", 100) + 10] ^= 0x02  # one base64 character
    yield "one character", bytes(changed)
    yield "no END", sealed.rsplit(ARMOR_END.encode(), 1)[0]
    yield "binary cut", binary[:-7]
    yield "binary byte", binary[:400] + bytes([binary[400] ^ 1]) + binary[401:]
    yield "not an object", b"hello"
    yield "empty", b""


async def test_damaged_objects_are_refused_and_leave_no_file(
    stores: Stores, tmp_path: Path
) -> None:
    juliet, romeo = await pair(stores)
    data = os.urandom(300_000)
    sealed = await juliet.seal(data, [ROMEO])
    binary = await juliet.seal(data, [ROMEO], armored=False)
    target = tmp_path / "out" / "plain.bin"
    target.parent.mkdir()
    for name, damaged in _variants(sealed, binary):
        with pytest.raises(InvalidEnvelope):
            await open_object_to_path(romeo.keyring, damaged, target)
        assert list(target.parent.iterdir()) == [], name
    # a file already there stays as it was
    target.write_bytes(b"before")
    with pytest.raises(InvalidEnvelope):
        await open_object_to_path(romeo.keyring, binary[:-1], target)
    assert target.read_bytes() == b"before" and len(list(target.parent.iterdir())) == 1
    opened = await open_object_to_path(romeo.keyring, io.BytesIO(sealed), target)
    assert target.read_bytes() == data and opened.size == len(data)
    assert target.stat().st_mode & 0o777 == 0o600 or os.name != "posix"


async def test_a_store_without_keys_is_a_local_error(stores: Stores) -> None:
    juliet, _ = await pair(stores)
    empty = await stores(ROMEO, device=False)
    with pytest.raises(EncryptionError, match="no keys"):
        await open_object(empty.keyring, await juliet.seal(b"x", [ROMEO]), out=io.BytesIO())


def test_atomic_output_removes_its_file_on_error(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), atomic_output(tmp_path / "x") as out:
        out.write(b"partial")
        raise RuntimeError
    assert list(tmp_path.iterdir()) == []
    with atomic_output(tmp_path / "x") as out:
        out.write(b"whole")
    assert (tmp_path / "x").read_bytes() == b"whole"


# -- memory --------------------------------------------------------------------------


class _Pattern(io.RawIOBase):
    """``size`` bytes of a pattern, read as a file, never held whole."""

    def __init__(self, size: int) -> None:
        self.left = size
        self.block = hashlib.sha256(b"pattern").digest() * 2048  # 64 KiB

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        size = min(len(buffer), self.left, len(self.block))
        buffer[:size] = self.block[:size]
        self.left -= size
        return size


class _Digest(io.RawIOBase):
    """A sink that keeps only the SHA-256 of what it is given."""

    def __init__(self) -> None:
        self.hash = hashlib.sha256()

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self.hash.update(data)
        return len(data)


@pytest.mark.slow
async def test_a_50_mib_file_streams_in_bounded_memory(stores: Stores, tmp_path: Path) -> None:
    juliet, romeo = await pair(stores)
    size = 50 * MIB
    expected = hashlib.sha256()
    source = _Pattern(size)
    while block := source.read(MIB):
        expected.update(block)
    sealed_path = tmp_path / "sealed.asc"
    tracemalloc.start()
    try:
        with sealed_path.open("wb") as out:
            await seal_object(juliet.keyring, _Pattern(size), [ROMEO], sender_jid=JULIET, out=out)
        sink = _Digest()
        with sealed_path.open("rb") as sealed:
            opened = await open_object(romeo.keyring, sealed, out=sink)  # type: ignore[arg-type]
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert opened.size == size and sink.hash.digest() == expected.digest()
    assert sealed_path.stat().st_size > size * 4 // 3
    assert peak < 30 * MIB, f"peak {peak / MIB:.1f} MiB"


async def test_a_path_is_a_file_and_a_string_of_jids_is_refused(
    stores: Stores, tmp_path: Path
) -> None:
    """Found by a newcomer: a path (``os.PathLike``) is read as the file it names,
    a ``str`` source is text (not a path), and one JID given as a string instead
    of a list is refused instead of read letter by letter."""
    juliet, romeo = await pair(stores)
    letter = tmp_path / "letter.bin"
    letter.write_bytes(os.urandom(70_000))
    out = io.BytesIO()
    await seal_object(juliet.keyring, letter, [ROMEO], sender_jid=JULIET, out=out)
    sealed = tmp_path / "letter.asc"
    sealed.write_bytes(out.getvalue())
    target = tmp_path / "opened.bin"
    await open_object_to_path(romeo.keyring, sealed, target)
    assert target.read_bytes() == letter.read_bytes()
    with pytest.raises(EncryptionError, match="list of JIDs"):
        await seal_object(juliet.keyring, b"x", ROMEO, sender_jid=JULIET, out=io.BytesIO())
