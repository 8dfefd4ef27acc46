"""core.objects and core.armor: objects outside XMPP (files and text sealed for
XMPP devices, docs/PROTOCOL.md "Objects"). The fixed vectors
(tests/vectors/object-v1.json) byte for byte and recomputed from
``cryptography``; round trips in the three profiles (one device, many, the
64 maximum), empty input and chunk-size multiples; every single-byte change
and every truncation refused; chunks reordered, duplicated, dropped and
spliced; a co-recipient rewriting the content; the labels that keep stanza
and object wraps apart; the armor; memory and speed of a 20 MiB stream.

:func:`measure_round_trip` is for the bench (a 1 GiB row): ``python -c "from
tests.unit.test_core_objects import measure_round_trip as m; print(m(2**30))"``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import struct
import time
import tracemalloc
import xml.etree.ElementTree as ET
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, hmac, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.mlkem import MLKEM768PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from slixmpp_objenc.core import EncryptionError, Identity, InvalidEnvelope
from slixmpp_objenc.core.armor import ARMOR_BEGIN, ARMOR_END, armor, dearmor
from slixmpp_objenc.core.auth_envelope import (
    AuthRecipient,
    AuthSender,
    open_authenticated,
    seal_authenticated,
)
from slixmpp_objenc.core.authenticated import WRAP_SUITE, Wrap, open_wrap, wrap_info
from slixmpp_objenc.core.certificates import certificate_fingerprint
from slixmpp_objenc.core.constants import NS_OBJENC
from slixmpp_objenc.core.envelope import Recipient
from slixmpp_objenc.core.hpke import open_auth, seal_auth
from slixmpp_objenc.core.hybrid import hybrid_psk, issue_kem_certificate
from slixmpp_objenc.core.identities import (
    DeviceKeys,
    generate_device_keys,
    validate_encryption_certificate,
    validate_identity_certificate,
)
from slixmpp_objenc.core.objects import (
    DEFAULT_CHUNK_SIZE,
    MAX_CHUNK_SIZE,
    MIN_CHUNK_SIZE,
    OBJECT_LABEL,
    ObjectHeader,
    open_object_stream,
    seal_object_stream,
)

VECTORS = Path(__file__).parents[1] / "vectors"
V: dict[str, Any] = json.loads((VECTORS / "object-v1.json").read_text())
CREATED = datetime(2026, 5, 1, 12, 0, 0, 123000, tzinfo=UTC)
ALICE = "alice@example.org"
BOB = "bob@example.org"
CS = MIN_CHUNK_SIZE
TEXT = bytes(range(256)) * 2  # 512 bytes: 8 full chunks of 64, then an empty final one
PREFIX_1 = 8 + 4 + 1 + 6 + 8 + 4 + 32 + 2 * 32 + 2 + 2 + 2
"""Bytes before the wraps of an auth-1 object without an introduction (133)."""
HEADER_1 = PREFIX_1 + 176
"""The header of such an object for one device (309)."""


def h(value: str) -> bytes:
    return bytes.fromhex(value)


# -- devices ------------------------------------------------------------------------


@dataclass(frozen=True)
class Device:
    """A device with its three keys and certificate ids (SHA-256 of DER)."""

    jid: str
    keys: DeviceKeys
    kem_key: MLKEM768PrivateKey
    kem_id: bytes

    @property
    def ids(self) -> tuple[bytes, bytes]:
        return bytes.fromhex(self.keys.fingerprint), bytes.fromhex(self.keys.encryption_fingerprint)

    @property
    def public(self) -> X25519PublicKey:
        return self.keys.encryption_key.public_key()

    def me(self, *, kem: bool = True) -> AuthSender:
        if not kem:
            return AuthSender(self.keys.encryption_key, *self.ids)
        return AuthSender(self.keys.encryption_key, *self.ids, self.kem_key, self.kem_id)

    def to(self, *, kem: bool = True) -> AuthRecipient:
        if not kem:
            return AuthRecipient(*self.ids, self.public)
        return AuthRecipient(*self.ids, self.public, self.kem_id, self.kem_key.public_key())

    @property
    def introduction(self) -> tuple[bytes, bytes]:
        der = serialization.Encoding.DER
        return (
            self.keys.identity_certificate.public_bytes(der),
            self.keys.encryption_certificate.public_bytes(der),
        )


def device(jid: str) -> Device:
    keys = generate_device_keys(jid)
    kem_key = MLKEM768PrivateKey.generate()
    certificate = issue_kem_certificate(
        keys.identity_key, keys.identity_certificate, kem_key.public_key()
    )
    return Device(jid, keys, kem_key, bytes.fromhex(certificate_fingerprint(certificate)))


@pytest.fixture(scope="module")
def devices() -> dict[str, Device]:
    names = {"alice": ALICE, "bob1": BOB, "bob2": BOB, "bob3": BOB, "mallory": "m@evil.example"}
    return {name: device(jid) for name, jid in names.items()}


Resolver = Callable[[ObjectHeader], X25519PublicKey | None]


def resolver(*known: Device) -> Resolver:
    table = {d.ids: d.public for d in known}
    return lambda header: table.get((header.sender_identity_id, header.sender_encryption_id))


def seal(data: bytes, sender: Device | None, recipients: list[Any], **kw: Any) -> bytes:
    me = sender.me() if sender is not None else None
    kw.setdefault("chunk_size", CS)
    return b"".join(seal_object_stream([data], recipients, sender=me, **kw))


def opened(
    sealed: bytes | Iterable[bytes],
    me: Device | None = None,
    sender: Device | None = None,
    *,
    resolve: Resolver | None = None,
    rsa_identities: list[Identity] | None = None,
) -> tuple[ObjectHeader, bytes]:
    pieces = [sealed] if isinstance(sealed, bytes) else sealed
    own = [me.me()] if me is not None else []
    if resolve is None and sender is not None:
        resolve = resolver(sender)
    header, plaintext = open_object_stream(
        pieces, own=own, rsa_identities=rsa_identities or [], resolve_sender=resolve
    )
    return header, b"".join(plaintext)


def refused(sealed: bytes | Iterable[bytes], *args: Any, **kwargs: Any) -> None:
    with pytest.raises(InvalidEnvelope):
        opened(sealed, *args, **kwargs)


# -- the vectors --------------------------------------------------------------------


def _vector_case(name: str) -> dict[str, Any]:
    [case] = [c for c in V["cases"] if c["name"].startswith(name)]
    return case


def _draws(*values: bytes) -> Callable[[int], bytes]:
    queue = list(values)
    return lambda size: queue.pop(0)


@pytest.mark.parametrize("name", ["auth-1", "auth-pq-1"])
def test_the_vectors_are_reproduced_byte_for_byte(name: str) -> None:
    case = _vector_case(name)
    hybrid = case["profile"] == "auth-pq-1"
    sender = case["sender"]
    own = AuthSender(
        X25519PrivateKey.from_private_bytes(h(sender["x25519_private"])),
        h(sender["identity_id"]),
        h(sender["encryption_id"]),
    )
    recipients, table = [], {}
    for r, w in zip(case["recipients"], case["wraps"], strict=True):
        key = X25519PrivateKey.from_private_bytes(h(r["x25519_private"]))
        kem = MLKEM768PrivateKey.from_seed_bytes(h(r["mlkem768_seed"])) if hybrid else None
        kem_id = h(r["kem_id"]) if hybrid else None
        recipients.append(
            AuthRecipient(
                h(r["identity_id"]),
                h(r["encryption_id"]),
                key.public_key(),
                kem_id,
                kem.public_key() if kem else None,
            )
        )
        if kem is not None:
            table[kem.public_key().public_bytes_raw()] = (h(w["ss"]), h(w["kem_ct"]))
    intro = None
    if sender["identity_der"]:
        intro = (h(sender["identity_der"]), h(sender["encryption_der"]))
    plaintext = h(V["plaintext"])
    stream = seal_object_stream(
        [plaintext[:1], plaintext[1:77], plaintext[77:]],
        recipients,
        sender=own,
        hybrid=hybrid,
        introduce=intro,
        chunk_size=case["chunk_size"],
        created=CREATED,
        random_bytes=_draws(
            h(case["object_id"]), h(case["R"]), *[h(w["M"]) for w in case["wraps"]]
        ),
        ephemeral_ikm=[h(w["ikmE"]) for w in case["wraps"]],
        encapsulate=(lambda pk: table[pk.public_bytes_raw()]) if hybrid else None,
    )
    sealed = b"".join(stream)
    assert sealed.hex() == case["object"]
    assert "".join(armor([sealed])) == case["armored"]


@pytest.mark.parametrize("name", ["auth-1", "auth-pq-1", "draft-rsa"])
def test_the_vectors_intermediate_values_from_cryptography_alone(name: str) -> None:
    case = _vector_case(name)
    header, sealed = h(case["header"]), h(case["object"])
    assert header.startswith(h(case["prefix"])) and sealed.startswith(header)
    assert header[:8] == b"OBJENC\x00\x01"
    assert struct.unpack(">I", header[8:12])[0] == len(header)
    digest = hashlib.sha256(header).digest()
    assert digest.hex() == case["H"]
    info = OBJECT_LABEL + b" payload\x00" + digest
    okm = HKDF(hashes.SHA256(), 39, salt=h(case["object_id"]), info=info).derive(h(case["R"]))
    assert (okm[:32].hex(), okm[32:].hex()) == (case["K"], case["nonce_prefix"])
    body = b""
    for index, chunk in enumerate(case["chunks"]):
        last = index == len(case["chunks"]) - 1
        nonce = okm[32:] + struct.pack(">I", index) + bytes([last])
        assert nonce.hex() == chunk["nonce"]
        ct = AESGCM(okm[:32]).encrypt(nonce, h(chunk["plaintext"]), digest)
        assert ct.hex() == chunk["ciphertext"]
        body += ct
    assert b"".join(h(c["plaintext"]) for c in case["chunks"]) == h(V["plaintext"])
    tags = b""
    for w in case["wraps"] if case["profile"] != "draft-rsa" else []:
        mac = hmac.HMAC(h(w["M"]), hashes.SHA256())
        mac.update(hashlib.sha256(header + body).digest())
        tags += mac.finalize()
    assert header + body + tags == sealed


@pytest.mark.parametrize("name", ["auth-1", "auth-pq-1"])
def test_the_vectors_wraps_from_the_hpke_layer(name: str) -> None:
    case = _vector_case(name)
    hybrid = case["profile"] == "auth-pq-1"
    sender = case["sender"]
    aad = hashlib.sha256(h(case["prefix"])).digest()
    assert aad.hex() == case["wrap_aad"]
    sender_key = X25519PrivateKey.from_private_bytes(h(sender["x25519_private"]))
    for r, w in zip(case["recipients"], case["wraps"], strict=True):
        ids = h(sender["identity_id"]) + h(sender["encryption_id"])
        ids += h(r["identity_id"]) + h(r["encryption_id"])
        psk = psk_id = b""
        if hybrid:
            ids += h(r["kem_id"])
            psk, psk_id = hybrid_psk(h(w["ss"]), h(w["kem_ct"]), h(r["kem_id"]))
            assert (psk.hex(), psk_id.hex()) == (w["psk"], w["psk_id"])
            kem = MLKEM768PrivateKey.from_seed_bytes(h(r["mlkem768_seed"]))
            assert kem.decapsulate(h(w["kem_ct"])) == h(w["ss"])
        info = OBJECT_LABEL + b"\x00" + case["profile"].encode() + b"\x00" + ids
        assert info.hex() == w["info"]
        recipient = X25519PrivateKey.from_private_bytes(h(r["x25519_private"]))
        enc, ct = seal_auth(
            WRAP_SUITE,
            recipient.public_key(),
            sender_key,
            info=info,
            aad=aad,
            pt=h(case["R"]) + h(w["M"]),
            psk=psk,
            psk_id=psk_id,
            ikm_e=h(w["ikmE"]),
        )
        assert (enc.hex(), ct.hex()) == (w["enc"], w["ct"])


@pytest.mark.parametrize("name", ["auth-1", "auth-pq-1", "draft-rsa"])
def test_the_vectors_open(name: str) -> None:
    case = _vector_case(name)
    sealed = h(case["object"])
    if case["profile"] == "draft-rsa":
        private = serialization.load_pem_private_key(case["rsa_private_pem"].encode(), None)
        assert isinstance(private, rsa.RSAPrivateKey)
        identity = Identity(private, x509.load_der_x509_certificate(h(case["certificate_der"])))
        header, plaintext = opened(sealed, rsa_identities=[identity])
        assert header.sender_identity_id is None and not header.authenticated
    else:
        sender_public = X25519PublicKey.from_public_bytes(h(case["sender"]["x25519_public"]))
        for r in case["recipients"]:
            kem = None
            if case["profile"] == "auth-pq-1":
                kem = MLKEM768PrivateKey.from_seed_bytes(h(r["mlkem768_seed"]))
            own = AuthSender(
                X25519PrivateKey.from_private_bytes(h(r["x25519_private"])),
                h(r["identity_id"]),
                h(r["encryption_id"]),
                kem,
                h(r["kem_id"]) if kem else None,
            )
            stream = open_object_stream([sealed], own=[own], resolve_sender=lambda _: sender_public)
            header, pieces = stream
            plaintext = b"".join(pieces)
            assert header.sender_identity_id == h(case["sender"]["identity_id"])
    assert plaintext == h(V["plaintext"])
    assert header.created == CREATED and header.chunk_size == case["chunk_size"]
    assert b"".join(dearmor(case["armored"].splitlines())) == sealed


def test_the_vector_introduction_is_a_real_chain() -> None:
    case = _vector_case("auth-1")
    identity = validate_identity_certificate(h(case["sender"]["identity_der"]), now=CREATED)
    key = validate_encryption_certificate(
        h(case["sender"]["encryption_der"]), identity, now=CREATED
    )
    assert key.public_bytes_raw() == h(case["sender"]["x25519_public"])
    assert identity.jids == {case["sender"]["jid"]}


# -- round trips --------------------------------------------------------------------


def test_round_trip_one_device(devices: dict[str, Device]) -> None:
    alice, bob = devices["alice"], devices["bob1"]
    sealed = seal(TEXT, alice, [bob.to(kem=False)])
    header, plaintext = opened(sealed, bob, alice)
    assert plaintext == TEXT
    assert header.profile == "auth-1" and header.authenticated and not header.hybrid
    assert (header.sender_identity_id, header.sender_encryption_id) == alice.ids
    assert header.wrap_count == 1 and header.introduction is None
    assert (
        len(header.object_id) == 32 and header.digest == hashlib.sha256(sealed[:HEADER_1]).digest()
    )


def test_round_trip_many_devices_each_opens(devices: dict[str, Device]) -> None:
    alice = devices["alice"]
    bobs = [devices[n] for n in ("bob1", "bob2", "bob3", "alice")]
    sealed = seal(TEXT, alice, [b.to(kem=False) for b in bobs])
    for bob in bobs:
        assert opened(sealed, bob, alice)[1] == TEXT
    refused(sealed, devices["mallory"], alice)  # sealed for others only


def test_64_devices_fit_and_65_are_refused(devices: dict[str, Device]) -> None:
    alice = devices["alice"]
    keys = [X25519PrivateKey.generate() for _ in range(64)]
    ids = [(os.urandom(32), os.urandom(32)) for _ in keys]
    targets = [AuthRecipient(*i, k.public_key()) for i, k in zip(ids, keys, strict=True)]
    sealed = seal(TEXT, alice, targets)
    for index in (0, 31, 63):
        own = AuthSender(keys[index], *ids[index])
        header, pieces = open_object_stream([sealed], own=[own], resolve_sender=resolver(alice))
        assert b"".join(pieces) == TEXT and header.wrap_count == 64
    with pytest.raises(EncryptionError):
        seal(TEXT, alice, [*targets, devices["bob1"].to(kem=False)])


def test_a_header_naming_65_wraps_is_refused_before_any_cryptography(
    devices: dict[str, Device],
) -> None:
    alice, bob = devices["alice"], devices["bob1"]
    sealed = bytearray(seal(b"x", alice, [bob.to(kem=False)]))
    count_at = PREFIX_1 - 2
    assert sealed[count_at : count_at + 2] == b"\x00\x01"
    sealed[count_at : count_at + 2] = struct.pack(">H", 65)
    asked: list[ObjectHeader] = []

    def spy(header: ObjectHeader) -> X25519PublicKey:
        asked.append(header)
        return alice.public

    refused(bytes(sealed), bob, resolve=spy)
    assert not asked


def test_hybrid_round_trip(devices: dict[str, Device]) -> None:
    alice, bob1, bob2 = devices["alice"], devices["bob1"], devices["bob2"]
    sealed = seal(TEXT, alice, [bob1.to(), bob2.to()], hybrid=True)
    for bob in (bob1, bob2):
        header, plaintext = opened(sealed, bob, alice)
        assert plaintext == TEXT and header.profile == "auth-pq-1" and header.hybrid
    # without our ML-KEM key there is no wrap for us
    header_only = AuthSender(bob1.keys.encryption_key, *bob1.ids)
    with pytest.raises(InvalidEnvelope):
        open_object_stream([sealed], own=[header_only], resolve_sender=resolver(alice))
    with pytest.raises(EncryptionError):
        seal(TEXT, alice, [bob1.to(), bob2.to(kem=False)], hybrid=True)


def test_draft_rsa_round_trip(identities_2048: list[Identity]) -> None:
    romeo, mercutio, benvolio, _ = identities_2048
    recipients = [Recipient(i.certificate.public_key(), i.fingerprint) for i in (romeo, mercutio)]
    sealed = seal(TEXT, None, recipients)
    for identity in (romeo, mercutio):
        header, plaintext = opened(sealed, rsa_identities=[identity])
        assert plaintext == TEXT and header.profile == "draft-rsa"
        assert header.sender_identity_id is header.sender_encryption_id is None
    refused(sealed, rsa_identities=[benvolio])


def test_draft_rsa_refuses_what_it_cannot_name_or_use(
    identities_2048: list[Identity], devices: dict[str, Device]
) -> None:
    romeo = identities_2048[0]
    key = romeo.certificate.public_key()
    assert isinstance(key, rsa.RSAPublicKey)
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key()
    for recipients in (
        [Recipient(key)],  # not named: the opener finds its wrap by certificate id
        [Recipient(key, "AB" * 32)],  # not lowercase hex
        [Recipient(small, romeo.fingerprint)],
        [devices["bob1"].to(kem=False)],  # an authenticated device without a sender
    ):
        with pytest.raises(EncryptionError):
            seal(TEXT, None, recipients)
    with pytest.raises(EncryptionError):
        seal(TEXT, None, [Recipient(key, romeo.fingerprint)], hybrid=True)
    with pytest.raises(EncryptionError):  # an RSA certificate with a sender
        seal(TEXT, devices["alice"], [Recipient(key, romeo.fingerprint)])


def test_an_authenticated_object_does_not_open_with_rsa_keys_and_back(
    identities_2048: list[Identity], devices: dict[str, Device]
) -> None:
    alice, bob = devices["alice"], devices["bob1"]
    romeo = identities_2048[0]
    auth = seal(TEXT, alice, [bob.to(kem=False)])
    draft = seal(TEXT, None, [Recipient(romeo.certificate.public_key(), romeo.fingerprint)])
    refused(auth, rsa_identities=[romeo])
    refused(draft, bob, alice)


@pytest.mark.parametrize("size", [0, 1, CS - 1, CS, CS + 1, 2 * CS, 3 * CS, 3 * CS + 5])
def test_sizes_around_chunk_multiples(devices: dict[str, Device], size: int) -> None:
    alice, bob = devices["alice"], devices["bob1"]
    data = os.urandom(size)
    sealed = seal(data, alice, [bob.to(kem=False)])
    _, plaintext = opened(sealed, bob, alice)
    assert plaintext == data
    assert len(sealed) == HEADER_1 + (size // CS) * (CS + 16) + (size % CS + 16) + 32


def test_empty_input_is_one_empty_final_chunk(devices: dict[str, Device]) -> None:
    alice, bob = devices["alice"], devices["bob1"]
    sealed = seal(b"", alice, [bob.to(kem=False)])
    _, plaintext = open_object_stream([sealed], own=[bob.me()], resolve_sender=resolver(alice))
    assert list(plaintext) == []  # the iterator ends without error: complete, and empty
    assert len(sealed) == HEADER_1 + 16 + 32
    sealed_from_nothing = b"".join(
        seal_object_stream([], [bob.to(kem=False)], sender=alice.me(), chunk_size=CS)
    )
    assert opened(sealed_from_nothing, bob, alice)[1] == b""


def test_any_split_of_input_and_of_the_object_gives_the_same(devices: dict[str, Device]) -> None:
    alice, bob = devices["alice"], devices["bob1"]
    fixed = [b"\x01" * 32, b"\x02" * 32, b"\x03" * 32]

    def sealed_from(pieces: list[bytes]) -> bytes:
        stream = seal_object_stream(
            pieces,
            [bob.to(kem=False)],
            sender=alice.me(),
            chunk_size=CS,
            created=CREATED,
            random_bytes=_draws(*fixed),
            ephemeral_ikm=[b"\x04" * 32],
        )
        return b"".join(stream)

    whole = sealed_from([TEXT])
    assert sealed_from([TEXT[i : i + 1] for i in range(len(TEXT))]) == whole
    assert sealed_from([TEXT[:100], b"", TEXT[100:300], TEXT[300:]]) == whole
    for step in (1, 7, 63, 64, 65, 1000):
        pieces = [whole[i : i + step] for i in range(0, len(whole), step)]
        assert opened(pieces, bob, alice)[1] == TEXT


def test_several_own_keys_a_retained_one_opens(devices: dict[str, Device]) -> None:
    alice, bob = devices["alice"], devices["bob1"]
    old = X25519PrivateKey.generate()
    old_ids = (bob.ids[0], os.urandom(32))
    sealed = seal(TEXT, alice, [AuthRecipient(*old_ids, old.public_key())])
    _, plaintext = open_object_stream(
        [sealed], own=[bob.me(), AuthSender(old, *old_ids)], resolve_sender=resolver(alice)
    )
    assert b"".join(plaintext) == TEXT


def test_two_wraps_for_us_are_refused_not_chosen_from(devices: dict[str, Device]) -> None:
    alice, bob = devices["alice"], devices["bob1"]
    sealed = seal(TEXT, alice, [bob.to(kem=False), bob.to(kem=False)])
    refused(sealed, bob, alice)


# -- the sender ---------------------------------------------------------------------


def test_sender_authentication(devices: dict[str, Device]) -> None:
    alice, bob, mallory = devices["alice"], devices["bob1"], devices["mallory"]
    sealed = seal(TEXT, alice, [bob.to(kem=False)])
    refused(sealed, bob, resolve=lambda header: mallory.public)  # another device's key
    refused(sealed, bob, resolve=lambda header: None)  # a sender we do not hold
    refused(sealed, bob, resolve=resolver(mallory))

    def broken(header: ObjectHeader) -> X25519PublicKey:
        raise RuntimeError("store unavailable")

    refused(sealed, bob, resolve=broken)
    with pytest.raises(InvalidEnvelope) as failure:
        opened(sealed, bob, resolve=broken)
    assert failure.value.__context__ is None and failure.value.__cause__ is None  # nothing travels


def test_the_resolver_sees_the_claimed_header_and_introduction(devices: dict[str, Device]) -> None:
    alice, bob = devices["alice"], devices["bob1"]
    sealed = seal(TEXT, alice, [bob.to(kem=False)], introduce=alice.introduction, created=CREATED)
    seen: list[ObjectHeader] = []

    def resolve(header: ObjectHeader) -> X25519PublicKey | None:
        seen.append(header)
        assert header.introduction is not None
        identity = validate_identity_certificate(header.introduction[0])
        return validate_encryption_certificate(header.introduction[1], identity)

    header, plaintext = opened(sealed, bob, resolve=resolve)
    assert plaintext == TEXT and seen == [header]
    assert header.introduction == alice.introduction and header.created == CREATED
    with pytest.raises(EncryptionError):  # someone else's certificates
        seal(TEXT, alice, [bob.to(kem=False)], introduce=bob.introduction)


def test_a_co_recipient_cannot_rewrite_the_content(devices: dict[str, Device]) -> None:
    """Mallory receives the object too, so she knows R and can write valid
    chunks under the same header and wraps; the trailer tag for Bob, keyed
    with M_bob that only Alice and Bob know, refuses them."""
    alice, bob, mallory = devices["alice"], devices["bob1"], devices["mallory"]
    sealed = seal(TEXT, alice, [bob.to(kem=False), mallory.to(kem=False)])
    prefix_size = PREFIX_1
    header_size = prefix_size + 2 * 176
    prefix, header = sealed[:prefix_size], sealed[:header_size]
    wrap = sealed[prefix_size + 176 : header_size]  # Mallory's
    info = OBJECT_LABEL + b"\x00auth-1\x00" + b"".join([*alice.ids, *mallory.ids])
    secret = open_auth(
        WRAP_SUITE,
        wrap[64:96],
        mallory.keys.encryption_key,
        alice.public,
        info=info,
        aad=hashlib.sha256(prefix).digest(),
        ct=wrap[96:],
    )
    key, mallory_tag_key = secret[:32], secret[32:]
    object_id = sealed[31:63]
    digest = hashlib.sha256(header).digest()
    okm = HKDF(
        hashes.SHA256(), 39, salt=object_id, info=OBJECT_LABEL + b" payload\x00" + digest
    ).derive(key)
    forged_text = b"pay mallory" * 3
    nonce = okm[32:] + struct.pack(">I", 0) + b"\x01"
    chunk = AESGCM(okm[:32]).encrypt(nonce, forged_text, digest)
    transcript = hashlib.sha256(header + chunk).digest()
    mac = hmac.HMAC(mallory_tag_key, hashes.SHA256())
    mac.update(transcript)
    original_tags = sealed[-64:]
    forged = header + chunk + original_tags[:32] + mac.finalize()
    assert opened(forged, mallory, alice)[1] == forged_text  # her own copy: she wrote it
    refused(forged, bob, alice)  # Bob's: the trailer says it is not Alice's


# -- tampering ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def small(devices: dict[str, Device], identities_2048: list[Identity]) -> dict[str, bytes]:
    """One small 3-chunk object per profile, for one recipient."""
    alice, bob = devices["alice"], devices["bob1"]
    romeo = identities_2048[0]
    data = TEXT[: 2 * CS + 10]
    return {
        "auth-1": seal(data, alice, [bob.to(kem=False)], introduce=alice.introduction),
        "auth-pq-1": seal(data, alice, [bob.to()], hybrid=True),
        "draft-rsa": seal(
            data, None, [Recipient(romeo.certificate.public_key(), romeo.fingerprint)]
        ),
    }


def _opener(
    profile: str, devices: dict[str, Device], identities_2048: list[Identity]
) -> Callable[[bytes], bytes]:
    alice, bob = devices["alice"], devices["bob1"]
    if profile == "draft-rsa":
        return lambda sealed: opened(sealed, rsa_identities=[identities_2048[0]])[1]
    return lambda sealed: opened(sealed, bob, alice)[1]


@pytest.mark.parametrize("profile", ["auth-1", "auth-pq-1", "draft-rsa"])
def test_every_single_byte_change_is_refused(
    profile: str,
    small: dict[str, bytes],
    devices: dict[str, Device],
    identities_2048: list[Identity],
) -> None:
    sealed = small[profile]
    open_ = _opener(profile, devices, identities_2048)
    assert open_(sealed) == TEXT[: 2 * CS + 10]
    for position in range(len(sealed)):
        for mask in (0x01, 0x80) if position < 64 or profile != "draft-rsa" else (0x01,):
            changed = bytearray(sealed)
            changed[position] ^= mask
            with pytest.raises(InvalidEnvelope):
                open_(bytes(changed))


@pytest.mark.parametrize("profile", ["auth-1", "auth-pq-1", "draft-rsa"])
def test_every_truncation_and_any_extra_byte_is_refused(
    profile: str,
    small: dict[str, bytes],
    devices: dict[str, Device],
    identities_2048: list[Identity],
) -> None:
    sealed = small[profile]
    open_ = _opener(profile, devices, identities_2048)
    for length in range(len(sealed)):
        with pytest.raises(InvalidEnvelope):
            open_(sealed[:length])
    for extra in (b"\x00", b"\x01" * 16, sealed[-48:]):
        with pytest.raises(InvalidEnvelope):
            open_(sealed + extra)


def test_only_another_recipients_trailer_tag_is_not_ours_to_check(
    devices: dict[str, Device],
) -> None:
    """With two recipients every byte but the other one's 32-byte tag is
    checked by each (the header, wraps included, is bound by H)."""
    alice, bob1, bob2 = devices["alice"], devices["bob1"], devices["bob2"]
    sealed = seal(TEXT[:100], alice, [bob1.to(kem=False), bob2.to(kem=False)])
    bob2_tag = range(len(sealed) - 32, len(sealed))
    for position in range(len(sealed)):
        changed = bytearray(sealed)
        changed[position] ^= 0x01
        if position in bob2_tag:
            assert opened(bytes(changed), bob1, alice)[1] == TEXT[:100]
            refused(bytes(changed), bob2, alice)
        else:
            refused(bytes(changed), bob1, alice)


def _chunks(sealed: bytes, header_size: int, trailer: int) -> tuple[bytes, list[bytes], bytes]:
    body = sealed[header_size : len(sealed) - trailer]
    return (
        sealed[:header_size],
        [body[i : i + CS + 16] for i in range(0, len(body), CS + 16)],
        (sealed[len(sealed) - trailer :]),
    )


def test_chunks_reordered_duplicated_dropped_or_spliced_are_refused(
    devices: dict[str, Device],
) -> None:
    alice, bob = devices["alice"], devices["bob1"]
    header_size = HEADER_1
    a = seal(TEXT[: 3 * CS + 10], alice, [bob.to(kem=False)])
    b = seal(TEXT[: 3 * CS + 10], alice, [bob.to(kem=False)])
    ha, ca, ta = _chunks(a, header_size, 32)
    hb, cb, tb = _chunks(b, header_size, 32)
    assert len(ca) == 4 and b"".join([ha, *ca, ta]) == a
    for forged in (
        [ha, ca[1], ca[0], ca[2], ca[3], ta],  # reordered
        [ha, ca[0], ca[0], ca[1], ca[2], ca[3], ta],  # duplicated
        [ha, ca[0], ca[2], ca[3], ta],  # dropped
        [ha, ca[0], ca[1], ca[2], ta],  # final chunk dropped
        [ha, ca[0], ca[1], ca[3], ta],  # final chunk moved up
        [ha, cb[0], ca[1], ca[2], ca[3], ta],  # a chunk of another object
        [hb, *ca, ta],  # another header
        [ha, *ca, tb],  # another trailer
        [ha, *cb, tb],
    ):
        refused(b"".join(forged), bob, alice)


def test_plaintext_comes_out_only_after_its_chunk_and_the_last_after_everything(
    devices: dict[str, Device],
) -> None:
    alice, bob = devices["alice"], devices["bob1"]
    data = TEXT[: 3 * CS + 10]
    sealed = seal(data, alice, [bob.to(kem=False)])
    for position, released in ((len(sealed) - 1, 3 * CS), (len(sealed) - 40, 3 * CS), (400, CS)):
        changed = bytearray(sealed)
        changed[position] ^= 0x01
        got: list[bytes] = []
        pieces_in = [bytes(changed[i : i + 50]) for i in range(0, len(changed), 50)]
        _, pieces = open_object_stream(pieces_in, own=[bob.me()], resolve_sender=resolver(alice))
        with pytest.raises(InvalidEnvelope):
            got.extend(pieces)
        assert b"".join(got) == data[:released]  # the last piece never came out


def test_not_an_object_is_refused_at_once_and_io_errors_pass(devices: dict[str, Device]) -> None:
    alice, bob = devices["alice"], devices["bob1"]

    def source(first: bytes) -> Iterator[bytes]:
        yield first
        raise AssertionError("read past a refusal")

    for junk in (b"hello", b"OBJENC\x00\x02", b"OBJENC\x00\x01\xff\xff\xff\xff"):
        with pytest.raises(InvalidEnvelope):
            open_object_stream(source(junk), own=[bob.me()], resolve_sender=resolver(alice))

    def failing() -> Iterator[bytes]:
        yield b"OBJENC"
        raise OSError("disk")

    with pytest.raises(OSError, match="disk"):
        open_object_stream(failing(), own=[bob.me()], resolve_sender=resolver(alice))
    refused(b"", bob, alice)


def test_misuse_is_a_local_error(devices: dict[str, Device]) -> None:
    alice, bob = devices["alice"], devices["bob1"]
    target = [bob.to(kem=False)]
    for kwargs in (
        {"chunk_size": MIN_CHUNK_SIZE - 1},
        {"chunk_size": MAX_CHUNK_SIZE + 1},
        {"created": datetime(2026, 1, 1)},  # naive
        {"created": datetime(1969, 1, 1, tzinfo=UTC)},
        {"random_bytes": lambda n: b"\x00" * (n - 1)},
    ):
        with pytest.raises(EncryptionError):
            seal_object_stream([TEXT], target, sender=alice.me(), **kwargs)
    with pytest.raises(EncryptionError):
        seal_object_stream([TEXT], [], sender=alice.me())
    with pytest.raises(EncryptionError):
        open_object_stream([b""])  # no key
    with pytest.raises(EncryptionError):
        open_object_stream([b""], own=[bob.me()])  # no resolver
    assert DEFAULT_CHUNK_SIZE == 64 * 1024


# -- labels: stanza and object wraps never open as each other -----------------------


def test_a_stanza_wrap_does_not_open_as_an_object_wrap_and_back(
    devices: dict[str, Device],
) -> None:
    alice, bob = devices["alice"], devices["bob1"]
    stanza = b"<message xmlns='jabber:client' from='alice@example.org/a' to='bob@example.org'/>"
    e2e = seal_authenticated(
        stanza, alice.me(kem=False), [bob.to(kem=False)], timestamp=datetime.now(UTC)
    )
    key_element = e2e.find(f"{{{NS_OBJENC}}}key")
    data = e2e.find(f"{{{NS_OBJENC}}}data")
    assert key_element is not None and data is not None and data.text and key_element.text
    enc = base64.b64decode(key_element.get("enc", ""))
    ct = base64.b64decode(key_element.text)
    t_digest = hashlib.sha256(base64.b64decode(data.text)).digest()
    ids = b"".join([*alice.ids, *bob.ids])
    stanza_info = wrap_info(*alice.ids, *bob.ids)
    object_info = OBJECT_LABEL + b"\x00auth-1\x00" + ids
    # the stanza wrap opens with its own info, never with an object's (same aad)
    stanza_key = open_auth(
        WRAP_SUITE,
        enc,
        bob.keys.encryption_key,
        alice.public,
        info=stanza_info,
        aad=t_digest,
        ct=ct,
    )
    assert len(stanza_key) == 32
    with pytest.raises(InvalidEnvelope):
        open_auth(
            WRAP_SUITE,
            enc,
            bob.keys.encryption_key,
            alice.public,
            info=object_info,
            aad=t_digest,
            ct=ct,
        )
    # an object wrap, given to the stanza profile with its own aad, does not open
    sealed = seal(TEXT, alice, [bob.to(kem=False)])
    prefix, wrap = sealed[:PREFIX_1], sealed[PREFIX_1:HEADER_1]
    with pytest.raises(InvalidEnvelope):
        open_wrap(
            Wrap(*bob.ids, wrap[64:96], wrap[96:]),
            prefix,  # aad = SHA-256(prefix): the object's own
            bob.keys.encryption_key,
            alice.public,
            *alice.ids,
        )
    # and a whole stanza carrying the object's wrap is refused
    key_element.set("enc", base64.b64encode(wrap[64:96]).decode())
    key_element.text = base64.b64encode(wrap[96:]).decode()
    with pytest.raises(InvalidEnvelope):
        open_authenticated(
            ET.fromstring(ET.tostring(e2e)),
            bob.me(kem=False),
            lambda jid, identity, encryption: alice.public,
            ALICE,
        )


# -- armor --------------------------------------------------------------------------


def test_armor_round_trip_and_its_shape(devices: dict[str, Device]) -> None:
    alice, bob = devices["alice"], devices["bob1"]
    sealed = seal(TEXT, alice, [bob.to(kem=False)], hybrid=False)
    text = "".join(armor(seal_object_stream([TEXT], [bob.to(kem=False)], sender=alice.me())))
    lines = text.splitlines()
    assert lines[0] == ARMOR_BEGIN and lines[-1] == ARMOR_END
    assert lines[1] == "Format: objenc-object-1; Profile: auth-1"
    assert all(len(line) == 64 for line in lines[2:-3]) and 4 <= len(lines[-3]) <= 64
    assert lines[-2].startswith("=") and len(lines[-2]) == 9
    assert opened(dearmor(text.splitlines(keepends=True)), bob, alice)[1] == TEXT
    text = "".join(armor([sealed]))
    assert b"".join(dearmor(text.splitlines())) == sealed
    # email and chat: CRLF, trailing spaces, text around it
    mangled = ["Hi Bob, here it is:\r\n", "\r\n"]
    mangled += [line + " \t\r\n" for line in text.splitlines()]
    mangled += ["-- \r\n", "Alice\r\n"]
    assert b"".join(dearmor(mangled)) == sealed
    # lines rewrapped to 76 characters still read
    body = "".join(text.splitlines()[2:-2])
    rewrapped = [body[i : i + 76] for i in range(0, len(body), 76)]
    lines = text.splitlines()
    assert b"".join(dearmor([*lines[:2], *rewrapped, *lines[-2:]])) == sealed


def test_armor_of_every_profile_names_it(
    small: dict[str, bytes], devices: dict[str, Device]
) -> None:
    for profile, sealed in small.items():
        text = "".join(armor([sealed[:5], sealed[5:20], sealed[20:]]))
        assert text.splitlines()[1] == f"Format: objenc-object-1; Profile: {profile}"
        assert b"".join(dearmor(text.splitlines())) == sealed
    with pytest.raises(EncryptionError):
        list(armor([b"not an object at all"]))


def test_damaged_armor_is_refused(small: dict[str, bytes]) -> None:
    sealed = small["auth-1"]
    lines = "".join(armor([sealed])).splitlines()
    first, last, checksum = 2, len(lines) - 3, len(lines) - 2

    def damaged(index: int, new: str | None) -> list[str]:
        out = list(lines)
        if new is None:
            del out[index]
        else:
            out[index] = new
        return out

    flipped = lines[first][:10] + ("A" if lines[first][10] != "A" else "B") + lines[first][11:]
    cases = [
        damaged(first, lines[first][:10] + "*" + lines[first][11:]),  # not base64
        damaged(first, flipped),  # one character: the checksum catches it
        damaged(checksum, "=AAAAAA=="),  # wrong checksum
        damaged(checksum, None),  # no checksum
        damaged(len(lines) - 1, None),  # no END
        damaged(len(lines) - 1, "-----END PGP MESSAGE-----"),
        damaged(1, None),  # no header line
        damaged(1, "Format: objenc-object-2; Profile: auth-1"),
        damaged(0, None),  # no BEGIN
        damaged(first, lines[first][:-4] + "AA=="),  # padding inside
        damaged(first, lines[first] + "AAAA" * 4),  # 80 characters
        damaged(first, lines[first][:-1]),  # not a multiple of 4
        damaged(first, ""),  # a blank line inside
        damaged(first, " " + lines[first]),
        damaged(last, lines[last] + "AA=="),  # data after the padding
        lines[:-3],  # truncated text
        [],
    ]
    for case in cases:
        with pytest.raises(InvalidEnvelope):
            b"".join(dearmor(case))
    # the Profile is informative: the binary says what counts
    relabelled = damaged(1, "Format: objenc-object-1; Profile: draft-rsa")
    assert b"".join(dearmor(relabelled)) == sealed
    assert b"".join(dearmor(damaged(1, "Format: objenc-object-1"))) == sealed


# -- memory and speed ---------------------------------------------------------------


def _pattern(total: int, piece: int = 64 * 1024) -> Iterator[bytes]:
    """``total`` deterministic bytes in pieces, never more than one in memory."""
    block = hashlib.sha256(b"pattern").digest() * (piece // 32 + 1)
    sent = 0
    while sent < total:
        size = min(piece, total - sent)
        yield block[:size]
        sent += size


@dataclass(frozen=True)
class RoundTrip:
    size: int
    seconds: float
    peak_bytes: int
    """tracemalloc's peak over seal + open (0 when not traced)."""

    @property
    def mb_per_s(self) -> float:
        return self.size / self.seconds / 1e6


def measure_round_trip(
    total: int,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    piece: int = 64 * 1024,
    hybrid: bool = False,
    trace: bool = False,
) -> RoundTrip:
    """Seal ``total`` bytes for one device and open them again in one
    streaming pipeline (nothing is held beyond a few chunks), checking the
    plaintext's SHA-256; for the bench's 1 GiB row. With ``trace``,
    tracemalloc measures the peak (slower)."""
    sender, recipient = (
        generate_device_keys("alice@example.org"),
        generate_device_keys("bob@example.org"),
    )
    ids = {
        "s": (bytes.fromhex(sender.fingerprint), bytes.fromhex(sender.encryption_fingerprint)),
        "r": (
            bytes.fromhex(recipient.fingerprint),
            bytes.fromhex(recipient.encryption_fingerprint),
        ),
    }
    kem = MLKEM768PrivateKey.generate() if hybrid else None
    kem_id = os.urandom(32) if hybrid else None
    target = AuthRecipient(
        *ids["r"], recipient.encryption_key.public_key(), kem_id, kem.public_key() if kem else None
    )
    own = AuthSender(recipient.encryption_key, *ids["r"], kem, kem_id)
    expected = hashlib.sha256()
    for block in _pattern(total, piece):
        expected.update(block)
    if trace:
        tracemalloc.start()
    start = time.perf_counter()
    stream = seal_object_stream(
        _pattern(total, piece),
        [target],
        sender=AuthSender(sender.encryption_key, *ids["s"]),
        hybrid=hybrid,
        chunk_size=chunk_size,
    )
    public = sender.encryption_key.public_key()
    _, plaintext = open_object_stream(stream, own=[own], resolve_sender=lambda _: public)
    got = hashlib.sha256()
    for block in plaintext:
        got.update(block)
    seconds = time.perf_counter() - start
    peak = 0
    if trace:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert got.digest() == expected.digest()
    return RoundTrip(total, seconds, peak)


def test_a_20_mib_stream_in_bounded_memory() -> None:
    result = measure_round_trip(20 * 1024 * 1024, trace=True)
    assert result.peak_bytes < 1024 * 1024, result  # a few 64 KiB chunks, not 20 MiB
    untraced = measure_round_trip(20 * 1024 * 1024)
    print(f"objects: seal + open of 20 MiB: {untraced.mb_per_s:.0f} MB/s")
    assert untraced.mb_per_s > 20


def test_the_sealer_reads_its_input_lazily(devices: dict[str, Device]) -> None:
    alice, bob = devices["alice"], devices["bob1"]
    consumed = []

    def source() -> Iterator[bytes]:
        for index in range(1000):
            consumed.append(index)
            yield b"x" * CS

    stream = seal_object_stream(source(), [bob.to(kem=False)], sender=alice.me(), chunk_size=CS)
    assert consumed == []  # checked and built, nothing read yet
    header, plaintext = open_object_stream(stream, own=[bob.me()], resolve_sender=resolver(alice))
    next(plaintext)
    assert len(consumed) <= 3
    assert header.chunk_size == CS


def test_an_old_created_date_is_kept(devices: dict[str, Device]) -> None:
    alice, bob = devices["alice"], devices["bob1"]
    created = datetime(1999, 12, 31, 23, 59, 59, 999000, tzinfo=UTC)
    sealed = seal(b"y2k", alice, [bob.to(kem=False)], created=created)
    assert opened(sealed, bob, alice)[0].created == created


def test_a_non_canonical_last_group_is_refused() -> None:
    """``AB==`` decodes to the same byte as ``AA==`` (and has the same checksum):
    only the canonical one is read, so one object has one text form."""
    crc = "=" + base64.b64encode(zlib.crc32(b"\x00").to_bytes(4, "big")).decode()
    good = [ARMOR_BEGIN, "Format: objenc-object-1", "AA==", crc, ARMOR_END]
    assert b"".join(dearmor(good)) == b"\x00"
    with pytest.raises(InvalidEnvelope):
        b"".join(dearmor([*good[:2], "AB==", *good[3:]]))
