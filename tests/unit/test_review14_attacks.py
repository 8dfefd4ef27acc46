"""Review of issue 14 (objects outside XMPP): attacks tried that FAIL today,
through the real code paths (store-level API and ``objenc`` in-process), as
(1) a carrier, (2) a co-recipient, (3) a malicious contact, (4) someone who can
write to the recipient's output directory. Each passes while the defence holds.
"""

from __future__ import annotations

import hashlib
import io
import os
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from test_cli_objects import JULIET, MERCUTIO, REFUSED, ROMEO, Cli, cli, short  # noqa: F401
from test_objects import Store, Stores, pair, stores  # noqa: F401 - the fixture

from slixmpp_objenc.core import CertificateError, EncryptionError, InvalidEnvelope
from slixmpp_objenc.core.armor import ARMOR_BEGIN, ARMOR_END, armor
from slixmpp_objenc.core.devices import load_device
from slixmpp_objenc.core.objects import (
    OBJECT_MAGIC,
    _Opening,
    _parse_header,
    _Payload,
    seal_object_stream,
)
from slixmpp_objenc.glue.directory import normalize_jid
from slixmpp_objenc.objects import open_object, open_object_to_path, plan_object
from slixmpp_objenc.store import TrustState

FORGED = b"pay Mercutio 1000 ducats\n"


def _header_size(sealed: bytes) -> int:
    return int.from_bytes(sealed[8:12], "big")


def _trailer(sealed: bytes) -> int:
    header, _, _ = _parse_header(sealed[: _header_size(sealed)])
    return header.wrap_count * 32


async def _refused(store: Store, data: bytes | str) -> None:
    out = io.BytesIO()
    with pytest.raises(InvalidEnvelope):
        await open_object(store.keyring, data, out=out)


async def three(stores: Stores) -> tuple[Store, Store, Store]:  # noqa: F811
    """Juliet, Romeo and Mercutio, each holding the others (tofu)."""
    juliet, romeo = await pair(stores)
    mercutio = await stores(MERCUTIO)
    for a, b in ((juliet, mercutio), (mercutio, juliet), (romeo, mercutio), (mercutio, romeo)):
        await a.hold(b)
    return juliet, romeo, mercutio


def _co_recipient_secret(mercutio: Store, juliet: Store, header_bytes: bytes) -> bytes:
    """What Mercutio, a co-recipient, learns from his own wrap: R || M_mercutio."""
    header, prefix, wraps = _parse_header(header_bytes)
    opening = _Opening([mercutio.keyring.device.senders()[0]], ())
    opening.resolve = lambda _: juliet.keyring.device.senders()[0].encryption_key.public_key()
    return opening._open_auth(header, prefix, wraps)


def _forge(header_bytes: bytes, key: bytes, plaintext: bytes, chunk_size: int) -> list[bytes]:
    """Chunks of ``plaintext`` under ``header_bytes`` with content key R, as sealed."""
    header, _, _ = _parse_header(header_bytes)
    payload = _Payload(key, header_bytes, header.object_id, True)
    full = len(plaintext) // chunk_size * chunk_size
    chunks = [
        payload.seal(memoryview(plaintext[i : i + chunk_size]), False)
        for i in range(0, full, chunk_size)
    ]
    chunks.append(payload.seal(memoryview(plaintext[full:]), True))
    return chunks


# -- (2) a co-recipient ---------------------------------------------------------------


async def test_a_co_recipient_cannot_rewrite_romeos_copy(stores: Stores) -> None:  # noqa: F811
    juliet, romeo, mercutio = await three(stores)
    sealed = await juliet.seal(b"meet me at the chapel\n" * 5000, [ROMEO, MERCUTIO], armored=False)
    size = _header_size(sealed)
    header_bytes, trailer = sealed[:size], _trailer(sealed)
    secret = _co_recipient_secret(mercutio, juliet, header_bytes)
    key, own_tag_key = secret[:32], secret[32:]
    chunks = _forge(header_bytes, key, FORGED, 65536)
    transcript = hashlib.sha256(header_bytes + b"".join(chunks)).digest()
    import hmac as _hmac

    mine = _hmac.new(own_tag_key, transcript, "sha256").digest()
    header, _, wraps = _parse_header(header_bytes)
    tags = [sealed[len(sealed) - trailer + 32 * i :][:32] for i in range(header.wrap_count)]
    merc_id = bytes.fromhex(mercutio.keyring.device.keys.fingerprint)  # type: ignore[union-attr]
    tags = [
        mine if w.recipient_identity == merc_id else t for w, t in zip(wraps, tags, strict=True)
    ]  # type: ignore[union-attr]
    forged = header_bytes + b"".join(chunks) + b"".join(tags)
    plaintext, _ = await mercutio.open(forged)
    assert plaintext == FORGED  # his own copy: he could have written it himself
    await _refused(romeo, forged)  # Romeo's: the trailer says it is not Juliet's
    await _refused(juliet, forged)  # nor Juliet's own copy
    # a co-recipient reordering or dropping wraps: Romeo's wrap or tag no longer match
    header, prefix, wraps = _parse_header(header_bytes)
    wrap_bytes = header_bytes[len(prefix) :]
    one = len(wrap_bytes) // header.wrap_count
    parts = [wrap_bytes[i : i + one] for i in range(0, len(wrap_bytes), one)]
    reordered = prefix + b"".join(reversed(parts))
    key_chunks = _forge(reordered, key, FORGED, 65536)
    await _refused(romeo, reordered + b"".join(key_chunks) + b"\x00" * trailer)


async def test_wraps_chunks_and_trailers_do_not_splice_between_objects(stores: Stores) -> None:  # noqa: F811
    juliet, romeo = await pair(stores)
    a = await juliet.seal(b"A" * 70_000, [ROMEO], armored=False)
    b = await juliet.seal(b"B" * 70_000, [ROMEO], armored=False)
    ha, hb = _header_size(a), _header_size(b)
    trailer = _trailer(a)
    await _refused(romeo, a[:ha] + b[hb:])  # A's header, B's chunks and trailer
    await _refused(romeo, a[:-trailer] + b[-trailer:])  # A with B's trailer
    # Romeo's wrap of A in B's header (same sizes: same devices)
    _header_a, prefix_a, _ = _parse_header(a[:ha])
    _header_b, prefix_b, _ = _parse_header(b[:hb])
    assert len(prefix_a) == len(prefix_b)
    await _refused(romeo, prefix_b + a[len(prefix_a) : ha] + b[hb:])


async def test_created_and_profile_are_bound(stores: Stores) -> None:  # noqa: F811
    juliet, romeo = await pair(stores)
    sealed = await juliet.seal(b"x" * 1000, [ROMEO], armored=False, hybrid=True)
    at = 12 + 1 + len("auth-pq-1")  # created: u64 after the profile
    earlier = struct.pack(">Q", struct.unpack(">Q", sealed[at : at + 8])[0] - 86_400_000)
    await _refused(romeo, sealed[:at] + earlier + sealed[at + 8 :])
    # strip the post-quantum part: re-encode every auth-pq-1 wrap as an auth-1 one
    size = _header_size(sealed)
    _header, prefix, wraps = _parse_header(sealed[:size])
    body = prefix[12:].replace(b"\x09auth-pq-1", b"\x06auth-1", 1)
    auth_wraps = b"".join(
        w.recipient_identity + w.recipient_encryption + w.enc + w.ct for w in wraps
    )  # type: ignore[union-attr]
    new_header = (
        OBJECT_MAGIC + struct.pack(">I", 12 + len(body) + len(auth_wraps)) + body + auth_wraps
    )
    await _refused(romeo, new_header + sealed[size:])


# -- (1) a carrier: the armor and resource exhaustion ------------------------------------


async def test_armor_games(stores: Stores) -> None:  # noqa: F811
    juliet, romeo = await pair(stores)
    text = "".join(armor([await juliet.seal(b"hello", [ROMEO], armored=False)]))
    assert (await romeo.open(text.replace("\n", "\r\n")))[0] == b"hello"  # CRLF: fine
    lines = text.splitlines()
    body = "".join(lines[2:-2])
    rewrapped = [body[i : i + 76] for i in range(0, len(body), 76)]
    assert (await romeo.open("\n".join([*lines[:2], *rewrapped, *lines[-2:]])))[0] == b"hello"
    too_long = [body[i : i + 80] for i in range(0, len(body), 80)]
    await _refused(romeo, "\n".join([*lines[:2], *too_long, *lines[-2:]]))
    await _refused(romeo, "\n".join([*lines[:3], "", *lines[3:]]))  # a blank line
    await _refused(romeo, "\n".join([*lines[:3], " " + lines[3], *lines[4:]]))  # leading space
    await _refused(romeo, text.replace(ARMOR_END, ARMOR_END.replace("END", "FIN")))
    await _refused(romeo, text.replace(ARMOR_BEGIN, "> " + ARMOR_BEGIN))  # quoted: not ours


async def test_what_follows_end_is_not_read(stores: Stores) -> None:  # noqa: F811
    """Informational: a second block (or anything) after END is never read, and
    the first of several blocks wins, without a warning: a carrier can put a
    replayed older object of the same sender before the new one (replay is
    documented as not prevented, PROTOCOL 14.6)."""
    juliet, romeo = await pair(stores)
    old = await juliet.seal(b"yes, I will marry you", [ROMEO])
    new = await juliet.seal(b"no, never", [ROMEO])
    plaintext, _ = await romeo.open(old + b"\n" + new)
    assert plaintext == b"yes, I will marry you"
    # BEGIN is only recognised on a line of its own... except after 4096 characters
    long_prefix = b"x" * 4096 + old
    assert (await romeo.open(long_prefix))[0] == b"yes, I will marry you"


def _counting(data: bytes, piece: int = 4) -> tuple[list[int], Iterator[bytes]]:
    read = [0]

    def gen() -> Iterator[bytes]:
        for i in range(0, len(data), piece):
            read[0] += piece
            yield data[i : i + piece]

    return read, gen()


@pytest.mark.parametrize(
    "header",
    [
        OBJECT_MAGIC + b"\xff\xff\xff\xff",  # header_length 4 GiB
        OBJECT_MAGIC + struct.pack(">I", 256 * 1024 + 1),
        OBJECT_MAGIC + b"\x00\x00\x00\x0c",  # no room for anything
    ],
)
async def test_a_huge_or_silly_header_length_is_refused_before_reading_on(
    stores: Stores,  # noqa: F811
    header: bytes,
) -> None:
    _juliet, romeo = await pair(stores)
    read, pieces = _counting(header + b"\x00" * (1 << 20))
    await _refused(romeo, pieces)
    assert read[0] <= 16


async def test_not_binary_is_read_as_armor_to_the_end_in_bounded_memory(stores: Stores) -> None:  # noqa: F811
    """Informational: anything not starting with the magic (another version
    included) is scanned for an armor BEGIN to its very end (no early refusal,
    no size limit: a never-ending source is read forever), in bounded memory."""
    _juliet, romeo = await pair(stores)
    read, pieces = _counting(b"OBJENC\x00\x02" + b"\x00" * (1 << 20), piece=4096)
    await _refused(romeo, pieces)
    assert read[0] >= 1 << 20


async def test_wrap_count_and_chunk_size_out_of_range(stores: Stores) -> None:  # noqa: F811
    juliet, romeo = await pair(stores)
    sealed = await juliet.seal(b"x", [ROMEO], armored=False)
    at_chunk = 12 + 1 + 6 + 8
    for chunk_size in (0, 63, 4 * 1024 * 1024 + 1, 2**32 - 1):
        await _refused(
            romeo, sealed[:at_chunk] + struct.pack(">I", chunk_size) + sealed[at_chunk + 4 :]
        )
    _header, prefix, _ = _parse_header(sealed[: _header_size(sealed)])
    at_count = len(prefix) - 2
    for count in (0, 65, 0xFFFF):
        await _refused(romeo, sealed[:at_count] + struct.pack(">H", count) + sealed[at_count + 2 :])


async def test_a_never_ending_line_before_begin_stays_in_bounded_memory(stores: Stores) -> None:  # noqa: F811
    import tracemalloc

    _juliet, romeo = await pair(stores)

    def endless() -> Iterator[bytes]:
        for _ in range(64):  # 16 MiB without a newline
            yield b"A" * (256 * 1024)

    tracemalloc.start()
    try:
        await _refused(romeo, endless())
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 * 1024 * 1024


# -- (1) a carrier: one answer for every refusal ------------------------------------------


def test_every_refusal_is_the_same_exit_message_and_no_output(cli: Cli) -> None:  # noqa: F811
    tybalt = "tybalt@capulet.lit"
    for jid in (MERCUTIO, tybalt):
        cli.ok(jid, "keygen", "--key-size", "2048")
    cli.link(MERCUTIO, ROMEO)
    cli.link(MERCUTIO, JULIET)
    cli.ok(ROMEO, "export", str(cli.root / "romeo.pem"))
    cli.ok(tybalt, "import", str(cli.root / "romeo.pem"))
    data = os.urandom(100_000)
    cases: dict[str, bytes] = {}
    cli.ok(
        JULIET, "seal", "--to", MERCUTIO, "--binary", "-o", str(cli.root / "n"), cli.file("d", data)
    )
    cases["not for us"] = (cli.root / "n").read_bytes()
    cli.ok(
        JULIET, "seal", "--to", ROMEO, "--binary", "-o", str(cli.root / "g"), cli.file("d", data)
    )
    good = (cli.root / "g").read_bytes()
    # Romeo's tag is the first of two (Romeo, then our own copy): the other is not his to check
    cases["bad tag"] = good[:-64] + bytes([good[-64] ^ 1]) + good[-63:]
    cases["last chunk"] = good[:-70] + bytes([good[-70] ^ 1]) + good[-69:]
    cases["truncated"] = good[:-1]
    cases["extended"] = good + b"\x00"
    cli.ok(
        tybalt, "seal", "--to", ROMEO, "--binary", "-o", str(cli.root / "t"), cli.file("d", data)
    )
    cases["unknown sender"] = (cli.root / "t").read_bytes()
    cli.ok(
        MERCUTIO, "seal", "--to", ROMEO, "--binary", "-o", str(cli.root / "m"), cli.file("d", data)
    )
    cases["revoked sender"] = (cli.root / "m").read_bytes()
    cases["bad magic"] = b"OBJENC\x00\x02" + good[8:]
    cases["huge header"] = good[:8] + b"\xff\xff\xff\xff" + good[12:]
    cli.ok(ROMEO, "open", cli.file("m.bin", cases["revoked sender"]))  # opens before distrust
    cli.ok(ROMEO, "distrust", MERCUTIO, short(cli.device(MERCUTIO)))
    out_dir = cli.root / "out"
    out_dir.mkdir()
    for name, damaged in cases.items():
        path = cli.file(f"{name}.bin", damaged)
        assert cli(ROMEO, "open", path) == 1, name
        assert (cli.out, cli.err) == (b"", f"objenc: error: {REFUSED}\n"), name
        armored = "".join(armor([damaged])) if damaged.startswith(OBJECT_MAGIC) else None
        if armored is not None:
            assert cli(ROMEO, "open", cli.file(f"{name}.asc", armored.encode())) == 1, name
            assert (cli.out, cli.err) == (b"", f"objenc: error: {REFUSED}\n"), name
        assert cli(ROMEO, "open", path, "-o", str(out_dir / "x")) == 1, name
        assert list(out_dir.iterdir()) == [], name


# -- (3) a malicious contact: introductions and attribution ---------------------------------


async def test_a_contact_cannot_speak_as_another_or_be_held_under_its_jid(stores: Stores) -> None:  # noqa: F811
    juliet, romeo, mercutio = await three(stores)
    # an identity certificate names one JID: Mercutio's cannot be held as Juliet's
    with pytest.raises(CertificateError):
        await romeo.keyring.observe(
            load_device(mercutio.device_pem(), normalize=normalize_jid),
            source="pep",
            jid=JULIET,
        )
    # Mercutio names Juliet as the sender and introduces her certificates, sealing with his key
    keys = juliet.keyring.device.keys
    assert keys is not None
    der = serialization.Encoding.DER
    juliet_intro = (
        keys.identity_certificate.public_bytes(der),
        keys.encryption_certificate.public_bytes(der),
    )
    merc = mercutio.keyring.device.senders()[0]
    juliet_ids = juliet.keyring.device.senders()[0]
    posing = type(merc)(merc.encryption_key, juliet_ids.identity_id, juliet_ids.encryption_id)
    plan = plan_object(mercutio.keyring, [ROMEO], sender_jid=MERCUTIO, own_copies=False)
    stream = seal_object_stream([FORGED], plan.targets, sender=posing, introduce=juliet_intro)
    await _refused(romeo, b"".join(stream))
    # Mercutio introduces a "newer" encryption certificate for Juliet's identity he signed
    with pytest.raises(
        EncryptionError
    ):  # the sealer refuses certificates that are not the sender's
        seal_object_stream([FORGED], plan.targets, sender=merc, introduce=juliet_intro)
    # his own objects are reported as his
    _, opened = await romeo.open(await mercutio.seal(FORGED, [ROMEO]))
    assert opened.sender_jid == MERCUTIO


async def test_a_replaced_key_cannot_be_redated_by_a_carrier(stores: Stores) -> None:  # noqa: F811
    from datetime import timedelta

    juliet, romeo = await pair(stores)
    old = juliet.keyring.device.senders()[0]
    await juliet.keyring.device.rotate_now(force=True)
    await romeo.hold(juliet)
    replaced = romeo.keyring.superseded_at(JULIET, old.identity_id, old.encryption_id)
    assert replaced is not None
    plan = plan_object(juliet.keyring, [ROMEO], sender_jid=JULIET, own_copies=False)
    late = b"".join(
        seal_object_stream(
            [b"late"], plan.targets, sender=old, created=replaced + timedelta(hours=1)
        )
    )
    await _refused(romeo, late)
    at = 12 + 1 + 6
    earlier = struct.pack(">Q", struct.unpack(">Q", late[at : at + 8])[0] - 2 * 3_600_000)
    await _refused(romeo, late[:at] + earlier + late[at + 8 :])  # the wrap binds the date


# -- sealing policy -----------------------------------------------------------------------


async def test_legacy_never_downgrades_a_recipient_with_an_identity(stores: Stores) -> None:  # noqa: F811
    juliet = await stores(JULIET, rsa=True)
    romeo = await stores(ROMEO, rsa=True)
    await juliet.hold(romeo)  # Romeo's identity
    await juliet.hold(romeo, rsa=True)  # and his old RSA certificate
    await romeo.hold(juliet)
    plan = plan_object(juliet.keyring, [ROMEO], sender_jid=JULIET, allow_legacy=True)
    assert plan.profile == "auth-1"
    _, opened = await romeo.open(await juliet.seal(b"x", [ROMEO], allow_legacy=True))
    assert opened.authenticated


async def test_revoked_and_pending_devices_are_never_sealed_for(stores: Stores) -> None:  # noqa: F811
    juliet, _romeo = await pair(stores)
    phone = await stores(JULIET)
    await juliet.hold(phone, TrustState.UNTRUSTED)  # our own new device, not accepted
    tablet = await stores(ROMEO)
    await juliet.hold(tablet, TrustState.REVOKED)
    plan = plan_object(juliet.keyring, [ROMEO], sender_jid=JULIET)
    phone_fp = phone.keyring.device.keys.fingerprint  # type: ignore[union-attr]
    tablet_fp = tablet.keyring.device.keys.fingerprint  # type: ignore[union-attr]
    assert {phone_fp, tablet_fp}.isdisjoint(d.fingerprint for d in plan.devices)
    sealed = await juliet.seal(b"x", [ROMEO], armored=False)
    await phone.hold(juliet)
    await tablet.hold(juliet)
    await _refused(phone, sealed)
    await _refused(tablet, sealed)


# -- (4) the output directory -----------------------------------------------------------------


async def test_a_symlink_at_the_target_is_replaced_not_followed(
    stores: Stores,  # noqa: F811
    tmp_path: Path,
) -> None:
    juliet, romeo = await pair(stores)
    victim = tmp_path / "bashrc"
    victim.write_bytes(b"original")
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "out.txt").symlink_to(victim)
    sealed = await juliet.seal(b"payload", [ROMEO], armored=False)
    with pytest.raises(InvalidEnvelope):
        await open_object_to_path(romeo.keyring, sealed[:-1], shared / "out.txt")
    assert victim.read_bytes() == b"original" and (shared / "out.txt").is_symlink()
    await open_object_to_path(romeo.keyring, sealed, shared / "out.txt")
    assert victim.read_bytes() == b"original"
    assert not (shared / "out.txt").is_symlink()
    assert (shared / "out.txt").read_bytes() == b"payload"
    assert (shared / "out.txt").stat().st_mode & 0o077 == 0


async def test_control_a_key_replaced_as_read_from_pep_does_not_speak(stores: Stores) -> None:  # noqa: F811
    """The control for F6: once Romeo read E3 from Juliet's node, a stolen E2
    (introduced) is refused for objects dated now."""
    juliet, romeo = await pair(stores)
    await juliet.keyring.device.rotate_now(force=True)  # E2
    await juliet.keyring.device.rotate_now(force=True)  # E3
    await romeo.hold(juliet)  # from PEP: E3 stored
    keys = juliet.keyring.device.keys
    assert keys is not None
    e2_sender = juliet.keyring.device.senders()[1]
    [e2] = [
        r for r in juliet.keyring.device._retired if r.fingerprint == e2_sender.encryption_id.hex()
    ]
    der = serialization.Encoding.DER
    intro = (keys.identity_certificate.public_bytes(der), e2.certificate.public_bytes(der))
    plan = plan_object(juliet.keyring, [ROMEO], sender_jid=JULIET, own_copies=False)
    await _refused(
        romeo,
        b"".join(seal_object_stream([FORGED], plan.targets, sender=e2_sender, introduce=intro)),
    )


# -- metadata (informational) ---------------------------------------------------------------


async def test_what_a_carrier_reads_in_a_default_header(stores: Stores) -> None:  # noqa: F811
    """Informational: with the default introduction (the CLI has no way to turn
    it off) the header shows the sender's JID, its device label, its
    certificates' validity (hence its rotation times) and the exact date in ms;
    every recipient device's identity id (a fingerprint any PEP reader maps
    to a JID); the plaintext length to the byte."""
    juliet, romeo = await pair(stores)
    await juliet.keyring.device.set_label("Juliet secret phone")
    await juliet.keyring.device.rotate_now()
    sealed = await juliet.seal(b"x" * 12345, [ROMEO], armored=False)
    header, _, wraps = _parse_header(sealed[: _header_size(sealed)])
    assert header.introduction is not None
    identity_der, encryption_der = header.introduction
    assert JULIET.encode() in identity_der
    assert b"Juliet secret phone" in encryption_der
    romeo_id = bytes.fromhex(romeo.keyring.device.keys.fingerprint)  # type: ignore[union-attr]
    assert romeo_id in [w.recipient_identity for w in wraps]  # type: ignore[union-attr]
    body = len(sealed) - _header_size(sealed) - _trailer(sealed)
    assert body - 16 * (12345 // 65536 + 1) == 12345
