"""core.hybrid: the post-quantum hybrid wrap (HPKE AuthPSK, PSK from ML-KEM-768
and an optional passphrase) and its ML-KEM-768 certificates: the fixed
vectors (tests/vectors/hybrid-profile-v1.json) byte for byte, round trips,
every way a wrap must fail to open, and the guard that keeps AuthPSK from
silently becoming Auth mode."""

from __future__ import annotations

import hashlib
import json
import os
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.mlkem import (
    MLKEM768PrivateKey,
    MLKEM768PublicKey,
    MLKEM1024PrivateKey,
)
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding

from slixmpp_objenc.core import CertificateError, EncryptionError, InvalidEnvelope, hybrid
from slixmpp_objenc.core.authenticated import (
    WRAP_SUITE,
    open_content,
    open_wrap,
    seal_content,
    seal_wraps,
)
from slixmpp_objenc.core.certificates import certificate_fingerprint
from slixmpp_objenc.core.hpke import AES_128_GCM, open_auth, seal_auth
from slixmpp_objenc.core.hybrid import (
    HYBRID_LABEL,
    KEM_CIPHERTEXT_SIZE,
    SCRYPT_N,
    SCRYPT_P,
    SCRYPT_R,
    HybridWrap,
    hybrid_info,
    hybrid_psk,
    issue_kem_certificate,
    open_hybrid_wrap,
    passphrase_salt,
    seal_hybrid_wraps,
    stretch_passphrase,
    validate_kem_certificate,
)
from slixmpp_objenc.core.identities import (
    _builder,
    _name,
    generate_device_keys,
    validate_encryption_certificate,
    validate_identity_certificate,
)
from slixmpp_objenc.core.timestamps import utcnow

VECTORS = Path(__file__).parents[1] / "vectors"
V: dict[str, Any] = json.loads((VECTORS / "hybrid-profile-v1.json").read_text())
JULIET = "juliet@capulet.example"
ROMEO = "romeo@montague.example"


def h(name: str, where: dict[str, Any] = V) -> bytes:
    return bytes.fromhex(where[name])


# -- the vectors ------------------------------------------------------------------


@pytest.fixture(scope="module")
def vector_second() -> bytes:
    """The one real-cost scrypt run of the suite (N = 2^17)."""
    p = V["passphrase"]
    return stretch_passphrase(p["text"], *p["jids"])


def sender_ids() -> tuple[bytes, bytes]:
    return h("identity_id", V["sender"]), h("encryption_id", V["sender"])


def test_the_passphrase_values_follow_from_the_inputs(vector_second: bytes) -> None:
    p = V["passphrase"]
    assert h("label") == HYBRID_LABEL
    assert (p["scrypt"]["N"], p["scrypt"]["r"], p["scrypt"]["p"]) == (SCRYPT_N, SCRYPT_R, SCRYPT_P)
    assert unicodedata.normalize("NFC", p["text"]) != p["text"]  # the vector exercises NFC
    assert unicodedata.normalize("NFC", p["text"]).encode() == h("nfc_utf8", p)
    salt = HYBRID_LABEL + b" passphrase\x00" + JULIET.encode() + b"\x00" + ROMEO.encode()
    assert passphrase_salt(*p["jids"]) == salt == h("salt", p)
    assert vector_second == h("second", p)
    independent = hashlib.scrypt(  # the standard library's scrypt, not cryptography's
        h("nfc_utf8", p), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, maxmem=2**28, dklen=32
    )
    assert independent == h("second", p)


@pytest.mark.parametrize("case", V["cases"], ids=lambda c: c["name"])
def test_every_value_follows_from_the_inputs(case: dict[str, Any], vector_second: bytes) -> None:
    second = h("second", case)
    assert second == (vector_second if case["name"] == "passphrase" else b"")
    key, sealed = h("content_key"), h("T")
    randomness = iter([key, h("nonce")])
    assert seal_content(h("envelope"), *sender_ids(), random_bytes=lambda n: next(randomness)) == (
        key,
        sealed,
    )
    sender = X25519PrivateKey.from_private_bytes(h("x25519_private", V["sender"]))
    assert sender.public_key().public_bytes_raw() == h("x25519_public", V["sender"])
    devices = {d["name"]: d for d in V["recipients"]}
    table: dict[bytes, tuple[bytes, bytes]] = {}
    targets = []
    for w in case["wraps"]:
        d = devices[w["recipient"]]
        kem_private = MLKEM768PrivateKey.from_seed_bytes(h("mlkem768_seed", d))
        kem_public = kem_private.public_key()
        assert kem_public.public_bytes_raw() == h("mlkem768_public", d)
        x_public = X25519PrivateKey.from_private_bytes(h("x25519_private", d)).public_key()
        assert x_public.public_bytes_raw() == h("x25519_public", d)
        ss, kem_ct = h("ss", w), h("kem_ct", w)
        assert len(kem_ct) == KEM_CIPHERTEXT_SIZE
        assert kem_private.decapsulate(kem_ct) == ss  # a real encapsulation to this key
        assert hashlib.sha256(kem_ct).digest() == h("sha256_kem_ct", w)
        ids = h("identity_id", d), h("encryption_id", d), h("kem_id", d)
        # the documented construction, spelled out with cryptography directly
        psk_id = HYBRID_LABEL + b"\x00" + hashlib.sha256(kem_ct).digest() + ids[2]
        psk = HKDF(hashes.SHA256(), 32, salt=psk_id, info=HYBRID_LABEL + b" psk").derive(
            ss + second
        )
        assert (
            (psk, psk_id) == (h("psk", w), h("psk_id", w)) == hybrid_psk(ss, kem_ct, ids[2], second)
        )
        info = HYBRID_LABEL + b"\x00" + b"".join(sender_ids()) + b"".join(ids)
        assert info == h("info", w) == hybrid_info(*sender_ids(), *ids)
        # the HPKE layer alone, with the vector's psk: RFC 9180 AuthPSK
        enc, ct = seal_auth(
            AES_128_GCM,
            x_public,
            sender,
            info=info,
            aad=h("sha256_T"),
            pt=key,
            psk=psk,
            psk_id=psk_id,
            ikm_e=h("ikmE", w),
        )
        assert (enc, ct) == (h("enc", w), h("ct", w))
        table[kem_public.public_bytes_raw()] = (ss, kem_ct)
        targets.append((*ids, x_public, kem_public))

    def injected(pk: MLKEM768PublicKey) -> tuple[bytes, bytes]:
        return table[pk.public_bytes_raw()]

    wraps = seal_hybrid_wraps(
        key,
        sealed,
        sender,
        *sender_ids(),
        targets,
        second=second,
        ephemeral_ikm=[h("ikmE", w) for w in case["wraps"]],
        encapsulate=injected,
    )
    assert [(x.enc, x.ct, x.kem_ct) for x in wraps] == [
        (h("enc", w), h("ct", w), h("kem_ct", w)) for w in case["wraps"]
    ]


@pytest.mark.parametrize("case", V["cases"], ids=lambda c: c["name"])
def test_each_recipient_opens_the_vector(case: dict[str, Any]) -> None:
    devices = {d["name"]: d for d in V["recipients"]}
    sender_public = X25519PrivateKey.from_private_bytes(
        h("x25519_private", V["sender"])
    ).public_key()
    for w in case["wraps"]:
        d = devices[w["recipient"]]
        wrap = HybridWrap(
            h("identity_id", d),
            h("encryption_id", d),
            h("kem_id", d),
            h("enc", w),
            h("ct", w),
            h("kem_ct", w),
        )
        own = X25519PrivateKey.from_private_bytes(h("x25519_private", d))
        own_kem = MLKEM768PrivateKey.from_seed_bytes(h("mlkem768_seed", d))
        key = open_hybrid_wrap(
            wrap, h("T"), own, own_kem, sender_public, *sender_ids(), second=h("second", case)
        )
        assert key == h("content_key")
        assert open_content(key, h("T"), *sender_ids()) == h("envelope")


# -- round trips and failures ---------------------------------------------------------


@dataclass(frozen=True)
class Device:
    x25519: X25519PrivateKey
    kem: MLKEM768PrivateKey
    identity: bytes
    encryption: bytes
    kem_id: bytes

    def target(self) -> tuple[bytes, bytes, bytes, Any, MLKEM768PublicKey]:
        return (
            self.identity,
            self.encryption,
            self.kem_id,
            self.x25519.public_key(),
            self.kem.public_key(),
        )


def new_device() -> Device:
    return Device(
        X25519PrivateKey.generate(),
        MLKEM768PrivateKey.generate(),
        os.urandom(32),
        os.urandom(32),
        os.urandom(32),
    )


@dataclass(frozen=True)
class Stanza:
    sender: Device
    devices: list[Device]
    key: bytes
    sealed: bytes
    wraps: list[HybridWrap]

    def open(self, index: int, wrap: HybridWrap | None = None, **kwargs: Any) -> bytes:
        device = self.devices[index]
        return open_hybrid_wrap(
            self.wraps[index] if wrap is None else wrap,
            kwargs.pop("sealed", self.sealed),
            kwargs.pop("own_key", device.x25519),
            kwargs.pop("own_kem_key", device.kem),
            kwargs.pop("sender_public_key", self.sender.x25519.public_key()),
            self.sender.identity,
            self.sender.encryption,
            **kwargs,
        )


def make_stanza(count: int = 2, second: bytes = b"") -> Stanza:
    sender = new_device()
    devices = [new_device() for _ in range(count)]
    key, sealed = seal_content(b"<plain/>", sender.identity, sender.encryption)
    wraps = seal_hybrid_wraps(
        key,
        sealed,
        sender.x25519,
        sender.identity,
        sender.encryption,
        [d.target() for d in devices],
        second=second,
    )
    return Stanza(sender, devices, key, sealed, wraps)


SECOND = hashlib.sha256(b"a stretched passphrase").digest()
OTHER_SECOND = hashlib.sha256(b"another stretched passphrase").digest()


@pytest.fixture(scope="module")
def stanza() -> Stanza:
    return make_stanza(2)


@pytest.fixture(scope="module")
def stanza_with_passphrase() -> Stanza:
    return make_stanza(2, SECOND)


@pytest.mark.parametrize("count", [1, 4])
@pytest.mark.parametrize("second", [b"", SECOND], ids=["no-passphrase", "passphrase"])
def test_every_recipient_device_opens_its_wrap(count: int, second: bytes) -> None:
    s = make_stanza(count, second)
    assert len(s.wraps) == count
    for i, (device, wrap) in enumerate(zip(s.devices, s.wraps, strict=True)):
        assert (wrap.recipient_identity, wrap.recipient_kem) == (device.identity, device.kem_id)
        assert (len(wrap.enc), len(wrap.ct), len(wrap.kem_ct)) == (32, 48, 1088)
        assert s.open(i, second=second) == s.key
    assert len({w.kem_ct for w in s.wraps}) == count  # one fresh encapsulation each
    assert len({w.enc for w in s.wraps}) == count


def test_a_round_trip_with_real_certificates() -> None:
    """Ids are the certificates' SHA-256; keys come out of validated certificates."""
    juliet, romeo = generate_device_keys(JULIET), generate_device_keys(ROMEO)
    romeo_kem = MLKEM768PrivateKey.generate()
    kem_cert = issue_kem_certificate(
        romeo.identity_key, romeo.identity_certificate, romeo_kem.public_key()
    )
    identity = validate_identity_certificate(romeo.identity_certificate)
    x_public = validate_encryption_certificate(romeo.encryption_certificate, identity)
    kem_public = validate_kem_certificate(kem_cert.public_bytes(Encoding.DER), identity)
    ids = [
        bytes.fromhex(certificate_fingerprint(c))
        for c in (romeo.identity_certificate, romeo.encryption_certificate, kem_cert)
    ]
    sender_ids = bytes.fromhex(juliet.fingerprint), bytes.fromhex(juliet.encryption_fingerprint)
    key, sealed = seal_content(b"<plain/>", *sender_ids)
    [wrap] = seal_hybrid_wraps(
        key, sealed, juliet.encryption_key, *sender_ids, [(*ids, x_public, kem_public)]
    )
    opened = open_hybrid_wrap(
        wrap,
        sealed,
        romeo.encryption_key,
        romeo_kem,
        juliet.encryption_key.public_key(),
        *sender_ids,
    )
    assert opened == key


@pytest.mark.parametrize(
    ("sealed_with", "opened_with"),
    [(SECOND, OTHER_SECOND), (SECOND, b""), (b"", SECOND)],
    ids=["wrong-passphrase", "missing-passphrase", "passphrase-where-none-was-used"],
)
def test_the_passphrase_must_match(sealed_with: bytes, opened_with: bytes) -> None:
    s = make_stanza(1, sealed_with)
    with pytest.raises(InvalidEnvelope):
        s.open(0, second=opened_with)


def flip(data: bytes, at: int = 0) -> bytes:
    return data[:at] + bytes([data[at] ^ 1]) + data[at + 1 :]


TAMPERINGS: dict[str, Callable[[HybridWrap], HybridWrap]] = {
    "kem_ct-first-byte": lambda w: replace(w, kem_ct=flip(w.kem_ct)),
    "kem_ct-last-byte": lambda w: replace(w, kem_ct=flip(w.kem_ct, -1)),
    "kem_ct-garbage": lambda w: replace(w, kem_ct=os.urandom(1088)),
    "kem_ct-zeros": lambda w: replace(w, kem_ct=bytes(1088)),
    "kem_ct-short": lambda w: replace(w, kem_ct=w.kem_ct[:-1]),
    "kem_ct-long": lambda w: replace(w, kem_ct=w.kem_ct + b"\x00"),
    "kem_ct-empty": lambda w: replace(w, kem_ct=b""),
    "enc": lambda w: replace(w, enc=flip(w.enc)),
    "enc-short": lambda w: replace(w, enc=w.enc[:31]),
    "enc-zeros": lambda w: replace(w, enc=bytes(32)),
    "ct": lambda w: replace(w, ct=flip(w.ct)),
    "ct-tag": lambda w: replace(w, ct=flip(w.ct, -1)),
    "ct-short": lambda w: replace(w, ct=w.ct[:-1]),
    "ct-empty": lambda w: replace(w, ct=b""),
    "kem-id": lambda w: replace(w, recipient_kem=flip(w.recipient_kem)),
    "kem-id-short": lambda w: replace(w, recipient_kem=w.recipient_kem[:31]),
    "identity-id": lambda w: replace(w, recipient_identity=flip(w.recipient_identity)),
    "encryption-id": lambda w: replace(w, recipient_encryption=flip(w.recipient_encryption)),
}


@pytest.mark.parametrize("second", [b"", SECOND], ids=["no-passphrase", "passphrase"])
@pytest.mark.parametrize("tamper", list(TAMPERINGS.values()), ids=list(TAMPERINGS))
def test_a_tampered_wrap_does_not_open(
    tamper: Callable[[HybridWrap], HybridWrap],
    second: bytes,
    stanza: Stanza,
    stanza_with_passphrase: Stanza,
) -> None:
    s = stanza_with_passphrase if second else stanza
    assert s.open(0, second=second) == s.key
    with pytest.raises(InvalidEnvelope):
        s.open(0, tamper(s.wraps[0]), second=second)


def test_another_valid_encapsulation_does_not_open(stanza: Stanza) -> None:
    """A fresh kem_ct to the same key decapsulates fine, to another secret."""
    _, other = stanza.devices[0].kem.public_key().encapsulate()
    with pytest.raises(InvalidEnvelope):
        stanza.open(0, replace(stanza.wraps[0], kem_ct=other))


def test_swapped_pieces_between_two_devices_do_not_open(stanza: Stanza) -> None:
    first, second = stanza.wraps
    ids = {
        "recipient_identity": second.recipient_identity,
        "recipient_encryption": second.recipient_encryption,
        "recipient_kem": second.recipient_kem,
    }
    swaps = [
        replace(first, recipient_kem=second.recipient_kem),  # swapped kem ids
        replace(first, kem_ct=second.kem_ct),
        replace(second, kem_ct=first.kem_ct),
        replace(first, **ids),  # the other wrap, relabelled as ours
        replace(second, enc=first.enc, ct=first.ct),
    ]
    for wrap in swaps:
        for index in (0, 1):
            with pytest.raises(InvalidEnvelope):
                stanza.open(index, wrap)
    with pytest.raises(InvalidEnvelope):  # another recipient's wrap, as it is
        stanza.open(1, first)


def test_the_wrong_sender_key_or_content_does_not_open(stanza: Stanza) -> None:
    with pytest.raises(InvalidEnvelope):
        stanza.open(0, sender_public_key=X25519PrivateKey.generate().public_key())
    with pytest.raises(InvalidEnvelope):
        stanza.open(0, sealed=stanza.sealed + b"\x00")
    with pytest.raises(InvalidEnvelope):  # another device's ML-KEM key
        stanza.open(0, own_kem_key=stanza.devices[1].kem)
    with pytest.raises(InvalidEnvelope):
        open_hybrid_wrap(
            stanza.wraps[0],
            stanza.sealed,
            stanza.devices[0].x25519,
            stanza.devices[0].kem,
            stanza.sender.x25519.public_key(),
            stanza.sender.identity,
            flip(stanza.sender.encryption),
        )


def test_a_failure_carries_nothing(stanza: Stanza) -> None:
    """Raised outside any handler: no cause, no context (no key material)."""
    with pytest.raises(InvalidEnvelope) as caught:
        stanza.open(0, replace(stanza.wraps[0], kem_ct=b"short"))
    assert caught.value.__cause__ is None and caught.value.__context__ is None
    with pytest.raises(InvalidEnvelope) as caught:
        stanza.open(0, second=SECOND)
    assert caught.value.__context__ is None


def test_decapsulation_is_skipped_for_wrong_sizes(
    stanza: Stanza, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Sizes are checked before any cryptography: nothing is decapsulated,
    derived or opened for a wrap of the wrong shape."""
    reached: list[str] = []

    class RecordingKemKey:
        def decapsulate(self, kem_ct: bytes) -> bytes:
            reached.append("decapsulate")
            return bytes(32)

    def record(name: str) -> Callable[..., Any]:
        def called(*args: object, **kwargs: object) -> Any:
            reached.append(name)
            raise AssertionError(name)

        return called

    monkeypatch.setattr(hybrid, "hybrid_psk", record("hybrid_psk"))
    monkeypatch.setattr(hybrid, "open_content_key", record("open_content_key"))
    wrap = stanza.wraps[0]
    for bad in (
        replace(wrap, kem_ct=wrap.kem_ct[:-1]),
        replace(wrap, kem_ct=wrap.kem_ct + b"\x00"),
        replace(wrap, enc=b""),
        replace(wrap, enc=wrap.enc + b"\x00"),
        replace(wrap, ct=wrap.ct + b"\x00"),
        replace(wrap, recipient_kem=wrap.recipient_kem[:31]),
    ):
        with pytest.raises(InvalidEnvelope):
            stanza.open(0, bad, own_kem_key=RecordingKemKey())
    assert reached == []
    with pytest.raises(InvalidEnvelope):  # the right shape does reach them
        stanza.open(0, own_kem_key=RecordingKemKey())
    assert reached == ["decapsulate", "hybrid_psk"]


def test_misuse_on_the_sending_side() -> None:
    device = new_device()
    key, sealed = os.urandom(32), b"T"
    args = (device.x25519, os.urandom(32), os.urandom(32), [device.target()])
    with pytest.raises(ValueError, match="32 bytes"):
        seal_hybrid_wraps(key[:16], sealed, *args)
    with pytest.raises(ValueError, match="second"):
        seal_hybrid_wraps(key, sealed, *args, second=b"passphrase")
    with pytest.raises(ValueError, match="ML-KEM-768"):
        seal_hybrid_wraps(key, sealed, *args, encapsulate=lambda pk: (b"", bytes(1088)))
    with pytest.raises(ValueError, match="ML-KEM-768"):
        seal_hybrid_wraps(key, sealed, *args, encapsulate=lambda pk: (bytes(32), bytes(1087)))
    with pytest.raises(ValueError, match="ephemeral_ikm"):
        seal_hybrid_wraps(key, sealed, *args, ephemeral_ikm=[os.urandom(32)] * 2)
    small_order = X25519PublicKey.from_public_bytes(bytes(32))
    target = (*device.target()[:3], small_order, device.kem.public_key())
    with pytest.raises(EncryptionError, match="cannot seal"):
        seal_hybrid_wraps(key, sealed, device.x25519, os.urandom(32), os.urandom(32), [target])
    with pytest.raises(ValueError, match="second"):
        open_hybrid_wrap(
            HybridWrap(b"", b"", b"", b"", b"", b""),
            sealed,
            device.x25519,
            device.kem,
            device.x25519.public_key(),
            os.urandom(32),
            os.urandom(32),
            second=b"x",
        )


# -- AuthPSK never becomes Auth mode ----------------------------------------------------


def test_hpke_with_an_empty_psk_is_auth_mode() -> None:
    """core.hpke with psk = psk_id = b"" reproduces RFC 9180 A.1.3 (mode_auth,
    0x02): an empty PSK is not an error there, it silently changes the mode."""
    rfc = json.loads((VECTORS / "rfc9180-x25519-auth.json").read_text())["vectors"]
    [v] = [v for v in rfc if v["mode"] == "2" and v["aead_id"] == "1"]
    first = v["encryptions"][0]
    receiver = X25519PrivateKey.from_private_bytes(bytes.fromhex(v["skRm"]))
    enc, ct = seal_auth(
        AES_128_GCM,
        receiver.public_key(),
        X25519PrivateKey.from_private_bytes(bytes.fromhex(v["skSm"])),
        info=bytes.fromhex(v["info"]),
        aad=bytes.fromhex(first["aad"]),
        pt=bytes.fromhex(first["pt"]),
        psk=b"",
        psk_id=b"",
        ikm_e=bytes.fromhex(v["ikmE"]),
    )
    assert (enc.hex(), ct.hex()) == (v["enc"], first["ct"])


def test_a_hybrid_wrap_is_not_auth_mode(stanza: Stanza) -> None:
    """Sealed with a PSK: it does not open in Auth mode, and an Auth-mode wrap
    with the same info does not open as a hybrid one."""
    wrap, device = stanza.wraps[0], stanza.devices[0]
    info = hybrid_info(
        stanza.sender.identity,
        stanza.sender.encryption,
        wrap.recipient_identity,
        wrap.recipient_encryption,
        wrap.recipient_kem,
    )
    aad = hashlib.sha256(stanza.sealed).digest()
    public = stanza.sender.x25519.public_key()
    with pytest.raises(InvalidEnvelope):
        open_auth(WRAP_SUITE, wrap.enc, device.x25519, public, info=info, aad=aad, ct=wrap.ct)
    enc, ct = seal_auth(
        WRAP_SUITE,
        device.x25519.public_key(),
        stanza.sender.x25519,
        info=info,
        aad=aad,
        pt=stanza.key,
    )
    with pytest.raises(InvalidEnvelope):
        stanza.open(0, replace(wrap, enc=enc, ct=ct))


@pytest.mark.parametrize("second", [b"", SECOND], ids=["no-passphrase", "passphrase"])
def test_the_psk_is_always_32_bytes_with_an_id(second: bytes) -> None:
    for _ in range(20):
        ss, kem_ct, kem_id = os.urandom(32), os.urandom(1088), os.urandom(32)
        psk, psk_id = hybrid_psk(ss, kem_ct, kem_id, second)
        assert len(psk) == 32 and len(psk_id) == len(HYBRID_LABEL) + 65 == 111
        assert psk_id.startswith(HYBRID_LABEL + b"\x00") and psk_id.endswith(kem_id)
    for bad in [
        (b"", kem_ct, kem_id),
        (ss, b"", kem_id),
        (ss, kem_ct, b""),
        (ss[:31], kem_ct, kem_id),
    ]:
        with pytest.raises(ValueError):
            hybrid_psk(*bad, second)
    with pytest.raises(ValueError):
        hybrid_psk(ss, kem_ct, kem_id, b"short")


def test_the_psk_always_contains_the_kem_secret() -> None:
    kem_ct, kem_id = os.urandom(1088), os.urandom(32)
    one = hybrid_psk(os.urandom(32), kem_ct, kem_id, SECOND)
    two = hybrid_psk(os.urandom(32), kem_ct, kem_id, SECOND)
    assert one[1] == two[1] and one[0] != two[0]


@pytest.mark.parametrize(
    "derived",
    [(b"", b""), (os.urandom(32), b""), (b"", b"psk_id"), (os.urandom(16), b"psk_id")],
    ids=["both-empty", "empty-id", "empty-psk", "short-psk"],
)
def test_the_guard_refuses_what_would_be_auth_mode(
    derived: tuple[bytes, bytes], stanza: Stanza, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Were the derivation ever to give an empty or short PSK, nothing is
    sealed (rather than an Auth-mode wrap) and nothing opens."""
    monkeypatch.setattr(hybrid, "hybrid_psk", lambda *args: derived)
    device = new_device()
    with pytest.raises(EncryptionError, match="without a PSK"):
        seal_hybrid_wraps(
            os.urandom(32), b"T", device.x25519, os.urandom(32), os.urandom(32), [device.target()]
        )
    with pytest.raises(InvalidEnvelope):
        stanza.open(0)


# -- the passphrase -------------------------------------------------------------------


@pytest.fixture()
def cheap_scrypt(monkeypatch: pytest.MonkeyPatch) -> None:
    """Properties of stretch_passphrase at N = 2^4; the real N is in the vector."""
    monkeypatch.setattr(hybrid, "SCRYPT_N", 2**4)


@pytest.mark.usefixtures("cheap_scrypt")
def test_the_passphrase_is_stretched_per_pair_of_contacts() -> None:
    base = stretch_passphrase("correct horse", JULIET, ROMEO)
    assert len(base) == 32
    assert stretch_passphrase("correct horse", ROMEO, JULIET) == base  # both sides agree
    assert stretch_passphrase("correct horse", "Romeo@Montague.example/balcony", JULIET) == base
    assert stretch_passphrase("correct horse", JULIET, "tybalt@capulet.example") != base
    assert stretch_passphrase("correct horsE", JULIET, ROMEO) != base
    nfc, nfd = "Rom\u00e9o", "Rome\u0301o"
    assert stretch_passphrase(nfd, JULIET, ROMEO) == stretch_passphrase(nfc, JULIET, ROMEO)


@pytest.mark.usefixtures("cheap_scrypt")
def test_an_empty_passphrase_or_jid_is_refused() -> None:
    with pytest.raises(EncryptionError, match="empty passphrase"):
        stretch_passphrase("", JULIET, ROMEO)
    with pytest.raises(EncryptionError, match="JID"):
        stretch_passphrase("x", "", ROMEO)
    with pytest.raises(EncryptionError, match="NUL"):
        stretch_passphrase("x", "a\x00b@example.org", ROMEO)


def test_the_salts_of_two_pairs_differ() -> None:
    """JIDs are joined with 0x00: no two pairs give the same salt."""
    assert passphrase_salt("a@b.example", "c@d.example") != passphrase_salt(
        "a@b.examplec", "@d.example"
    )
    assert passphrase_salt(JULIET, JULIET).endswith(b"\x00" + JULIET.encode())


# -- ML-KEM-768 certificates -------------------------------------------------------------


@pytest.fixture(scope="module")
def romeo() -> Any:
    return generate_device_keys(ROMEO)


def build(
    signer: Ed25519PrivateKey,
    issuer: x509.Name,
    public_key: Any,
    *,
    jid: str = ROMEO,
    ca: bool = False,
    usage: dict[str, bool] | None = None,
    start: datetime | None = None,
    valid_for: timedelta = timedelta(days=30),
    extra_critical: bool = False,
    padding: int = 0,
) -> x509.Certificate:
    """A certificate with any of the properties validate_kem_certificate checks."""
    flags = dict.fromkeys(
        (
            "digital_signature",
            "content_commitment",
            "key_encipherment",
            "data_encipherment",
            "key_agreement",
            "key_cert_sign",
            "crl_sign",
            "encipher_only",
            "decipher_only",
        ),
        False,
    )
    flags.update(usage if usage is not None else {"key_encipherment": True})
    start = start or utcnow() - timedelta(minutes=5)
    builder = (
        _builder(jid, _name(jid), issuer, start, start + valid_for)
        .public_key(public_key)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=0 if ca else None), critical=True)
        .add_extension(x509.KeyUsage(**flags), critical=True)
    )
    if extra_critical:
        builder = builder.add_extension(
            x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.99999.1"), b"\x05\x00"),
            critical=True,
        )
    if padding:
        builder = builder.add_extension(
            x509.UnrecognizedExtension(
                x509.ObjectIdentifier("1.3.6.1.4.1.99999.2"), bytes(padding)
            ),
            critical=False,
        )
    return builder.sign(signer, None)


def test_an_issued_kem_certificate_checks_out(romeo: Any) -> None:
    kem = MLKEM768PrivateKey.generate()
    certificate = issue_kem_certificate(
        romeo.identity_key, romeo.identity_certificate, kem.public_key()
    )
    identity = validate_identity_certificate(romeo.identity_certificate)
    assert validate_kem_certificate(certificate, identity) == kem.public_key()
    der = certificate.public_bytes(Encoding.DER)
    assert validate_kem_certificate(der, identity) == kem.public_key()
    usage = certificate.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical and usage.value.key_encipherment and not usage.value.key_agreement
    constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and not constraints.value.ca
    assert certificate.issuer == romeo.identity_certificate.subject


def kem_certificate_cases(romeo: Any) -> dict[str, tuple[Any, str]]:
    key = MLKEM768PrivateKey.generate().public_key()
    mine = romeo.identity_key, romeo.identity_certificate.subject
    forged = generate_device_keys(ROMEO)
    later = utcnow() - timedelta(days=60)
    return {
        "wrong-signer": (
            issue_kem_certificate(forged.identity_key, forged.identity_certificate, key),
            "not signed by the identity",
        ),
        "key-agreement": (build(*mine, key, usage={"key_agreement": True}), "encipherment only"),
        "encipherment-and-signature": (
            build(*mine, key, usage={"key_encipherment": True, "digital_signature": True}),
            "encipherment only",
        ),
        "encipherment-and-cert-sign": (
            build(*mine, key, usage={"key_encipherment": True, "key_cert_sign": True}),
            "encipherment only",
        ),
        "no-usage-bit": (build(*mine, key, usage={}), "encipherment only"),
        "ca": (build(*mine, key, ca=True), "encipherment only"),
        "x25519-key": (
            build(*mine, X25519PrivateKey.generate().public_key()),
            "not ML-KEM-768",
        ),
        "ml-kem-1024-key": (
            build(*mine, MLKEM1024PrivateKey.generate().public_key()),
            "not ML-KEM-768",
        ),
        "ed25519-key": (build(*mine, Ed25519PrivateKey.generate().public_key()), "not ML-KEM"),
        "expired": (build(*mine, key, start=later), "expired"),
        "not-yet-valid": (build(*mine, key, start=utcnow() + timedelta(days=1)), "not yet"),
        "jid-not-in-identity": (build(*mine, key, jid="tybalt@capulet.example"), "names a JID"),
        "unknown-critical-extension": (build(*mine, key, extra_critical=True), "critical"),
        "the-encryption-certificate": (romeo.encryption_certificate, "not ML-KEM-768"),
        "the-identity-itself": (romeo.identity_certificate, "not ML-KEM-768"),
        "oversized-well-formed": (build(*mine, key, padding=17_000), "over the limit"),
        "garbage": (b"\x30\x03\x02\x01\x00", "cannot load"),
        "oversized": (b"\x30" + bytes(40_000), "over the size limit"),
    }


CASE_NAMES = [
    "wrong-signer",
    "key-agreement",
    "encipherment-and-signature",
    "encipherment-and-cert-sign",
    "no-usage-bit",
    "ca",
    "x25519-key",
    "ml-kem-1024-key",
    "ed25519-key",
    "expired",
    "not-yet-valid",
    "jid-not-in-identity",
    "unknown-critical-extension",
    "the-encryption-certificate",
    "the-identity-itself",
    "oversized-well-formed",
    "garbage",
    "oversized",
]


@pytest.fixture(scope="module")
def bad_kem_certificates(romeo: Any) -> dict[str, tuple[Any, str]]:
    return kem_certificate_cases(romeo)


@pytest.mark.parametrize("name", CASE_NAMES)
def test_a_bad_kem_certificate_is_refused(
    name: str, romeo: Any, bad_kem_certificates: dict[str, tuple[Any, str]]
) -> None:
    certificate, reason = bad_kem_certificates[name]
    identity = validate_identity_certificate(romeo.identity_certificate)
    with pytest.raises(CertificateError, match=reason):
        validate_kem_certificate(certificate, identity)


def test_the_case_list_is_complete(bad_kem_certificates: dict[str, tuple[Any, str]]) -> None:
    assert sorted(bad_kem_certificates) == sorted(CASE_NAMES)


def test_an_expired_issued_certificate_is_refused_later(romeo: Any) -> None:
    certificate = issue_kem_certificate(
        romeo.identity_key,
        romeo.identity_certificate,
        MLKEM768PrivateKey.generate().public_key(),
        valid_for=timedelta(days=7),
    )
    identity = validate_identity_certificate(romeo.identity_certificate)
    validate_kem_certificate(certificate, identity)
    with pytest.raises(CertificateError, match="expired"):
        validate_kem_certificate(certificate, identity, now=utcnow() + timedelta(days=8))


# -- the Auth-mode wrap it sits beside ------------------------------------------------------


def test_the_auth_mode_wrap_still_works_beside_it(stanza: Stanza) -> None:
    """Sanity: the non-hybrid wrap of core.authenticated, same keys."""
    device = stanza.devices[0]
    [wrap] = seal_wraps(
        stanza.key,
        stanza.sealed,
        stanza.sender.x25519,
        stanza.sender.identity,
        stanza.sender.encryption,
        [(device.identity, device.encryption, device.x25519.public_key())],
    )
    opened = open_wrap(
        wrap,
        stanza.sealed,
        device.x25519,
        stanza.sender.x25519.public_key(),
        stanza.sender.identity,
        stanza.sender.encryption,
    )
    assert opened == stanza.key
