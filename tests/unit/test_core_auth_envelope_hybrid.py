"""core.auth_envelope with the post-quantum hybrid wrap (core.hybrid) on the
wire: round trips with real keys (1 and 4 recipient devices, with and without
a passphrase), the sender's refusals, the receiver's policy (``second``,
``require_hybrid``), strict parsing of the hybrid ``<key/>``, downgrades on
the wire, and the envelope size of 64 hybrid recipients."""

from __future__ import annotations

import base64
import hashlib
import os
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.mlkem import MLKEM768PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from slixmpp_objenc.core import EncryptionError, InvalidEnvelope
from slixmpp_objenc.core import auth_envelope as wire
from slixmpp_objenc.core.auth_envelope import (
    HYBRID_CIPHER_ALGO,
    MAX_WRAPS,
    WRAP_ALGO,
    AuthRecipient,
    AuthSender,
    addressed_to,
    open_authenticated,
    seal_authenticated,
    wrap_kind,
)
from slixmpp_objenc.core.authenticated import open_wrap
from slixmpp_objenc.core.certificates import certificate_fingerprint
from slixmpp_objenc.core.constants import DEFAULT_MAX_ENVELOPE_SIZE, NS_OBJENC
from slixmpp_objenc.core.envelope import envelope_size
from slixmpp_objenc.core.hybrid import KEM_CIPHERTEXT_SIZE, issue_kem_certificate
from slixmpp_objenc.core.hybrid import stretch_passphrase as stretch
from slixmpp_objenc.core.identities import DeviceKeys, generate_device_keys
from slixmpp_objenc.core.timestamps import utcnow

STANZA = (
    b"<message xmlns='jabber:client' from='alice@example.org/a' to='bob@example.org'"
    b" type='chat'><body>hi</body></message>"
)
ALICE = "alice@example.org"
BOB = "bob@example.org"
KEY = f"{{{NS_OBJENC}}}key"
DATA = f"{{{NS_OBJENC}}}data"
E2E = f"{{{NS_OBJENC}}}e2e"
Resolver = Callable[[str, bytes, bytes], X25519PublicKey | None]


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

    def me(self, *, kem: bool = True) -> AuthSender:
        if not kem:
            return AuthSender(self.keys.encryption_key, *self.ids)
        return AuthSender(self.keys.encryption_key, *self.ids, self.kem_key, self.kem_id)

    def to(self, *, kem: bool = True) -> AuthRecipient:
        public = self.keys.encryption_key.public_key()
        if not kem:
            return AuthRecipient(*self.ids, public)
        return AuthRecipient(*self.ids, public, self.kem_id, self.kem_key.public_key())


def device(jid: str) -> Device:
    keys = generate_device_keys(jid)
    kem_key = MLKEM768PrivateKey.generate()
    certificate = issue_kem_certificate(
        keys.identity_key, keys.identity_certificate, kem_key.public_key()
    )
    return Device(jid, keys, kem_key, bytes.fromhex(certificate_fingerprint(certificate)))


@pytest.fixture(scope="module")
def devices() -> dict[str, Device]:
    names = {"alice": ALICE, "bob1": BOB, "bob2": BOB, "bob3": BOB, "bob4": BOB}
    return {name: device(jid) for name, jid in names.items()}


@pytest.fixture(scope="module")
def second() -> bytes:
    """The module's one real scrypt run (about 0.35 s)."""
    return stretch("correct horse battery staple", ALICE, BOB)


def resolver(*known: Device) -> Resolver:
    table = {(d.jid, *d.ids): d.keys.encryption_key.public_key() for d in known}
    return lambda jid, identity, encryption: table.get((jid, identity, encryption))


def on_wire(e2e: ET.Element) -> ET.Element:
    return ET.fromstring(ET.tostring(e2e))


def sealed(
    sender: Device, recipients: list[Device], *, second: bytes = b"", hybrid: bool = True
) -> ET.Element:
    return on_wire(
        seal_authenticated(
            STANZA,
            sender.me(),
            [r.to() for r in recipients],
            timestamp=utcnow(),
            hybrid=hybrid,
            second=second,
        )
    )


def refused(
    e2e: ET.Element,
    own: AuthSender,
    resolve: Resolver,
    *,
    second: bytes = b"",
    require_hybrid: bool = False,
    max_size: int = DEFAULT_MAX_ENVELOPE_SIZE,
) -> None:
    with pytest.raises(InvalidEnvelope) as raised:
        open_authenticated(
            e2e,
            own,
            resolve,
            ALICE,
            max_size=max_size,
            second=second,
            require_hybrid=require_hybrid,
        )
    assert raised.value.__context__ is None  # raised outside any handler


def our_key(e2e: ET.Element, index: int = 0) -> ET.Element:
    return e2e.findall(KEY)[index]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# -- round trips ----------------------------------------------------------------------


@pytest.mark.parametrize("count", [1, 4])
@pytest.mark.parametrize("with_passphrase", [False, True])
def test_round_trip_for_every_device(
    devices: dict[str, Device], second: bytes, count: int, with_passphrase: bool
) -> None:
    alice = devices["alice"]
    bobs = [devices[f"bob{i}"] for i in range(1, count + 1)]
    passphrase = second if with_passphrase else b""
    now = utcnow()
    e2e = on_wire(
        seal_authenticated(
            STANZA,
            alice.me(),
            [b.to() for b in bobs],
            timestamp=now,
            pad_to=64,
            hybrid=True,
            second=passphrase,
        )
    )
    keys = e2e.findall(KEY)
    assert len(keys) == count
    for key, bob in zip(keys, bobs, strict=True):
        assert list(key.keys()) == [
            "cipher-algo",
            "identity-sha256",
            "cert-sha256",
            "kem-sha256",
            "enc",
            "kem-ct",
        ]
        assert key.get("cipher-algo") == HYBRID_CIPHER_ALGO
        assert key.get("kem-sha256") == bob.kem_id.hex()
        assert len(base64.b64decode(key.get("kem-ct", ""), validate=True)) == KEM_CIPHERTEXT_SIZE
        assert len(base64.b64decode(key.get("enc", ""), validate=True)) == 32
        assert len(base64.b64decode(key.text or "", validate=True)) == 48
    for bob in bobs:
        assert addressed_to(e2e, [bob.me()]) == bob.me()
        assert wrap_kind(e2e, bob.me()) == HYBRID_CIPHER_ALGO
        opened = open_authenticated(e2e, bob.me(), resolver(alice), ALICE, second=passphrase)
        assert opened.hybrid
        assert opened.stanza_bytes == STANZA
        assert abs((opened.timestamp - now).total_seconds()) < 1
        assert (opened.sender_identity_id, opened.sender_encryption_id) == alice.ids
        t = base64.b64decode(e2e.find(DATA).text or "")  # type: ignore[union-attr]
        assert opened.digest == hashlib.sha256(t).digest()
        again = open_authenticated(
            e2e, bob.me(), resolver(alice), ALICE, second=passphrase, require_hybrid=True
        )
        assert again.hybrid


def test_the_wrong_the_missing_and_an_extra_passphrase_are_refused(
    devices: dict[str, Device], second: bytes
) -> None:
    alice, bob = devices["alice"], devices["bob1"]
    with_it = sealed(alice, [bob], second=second)
    without = sealed(alice, [bob])
    other = hashlib.sha256(b"another passphrase").digest()
    refused(with_it, bob.me(), resolver(alice), second=other)  # wrong
    refused(with_it, bob.me(), resolver(alice))  # missing
    refused(without, bob.me(), resolver(alice), second=second)  # extra
    assert open_authenticated(with_it, bob.me(), resolver(alice), ALICE, second=second).hybrid


def test_a_local_second_of_the_wrong_size_is_a_programming_error(
    devices: dict[str, Device],
) -> None:
    alice, bob = devices["alice"], devices["bob1"]
    with pytest.raises(ValueError, match="second"):
        open_authenticated(sealed(alice, [bob]), bob.me(), resolver(alice), ALICE, second=b"x")
    with pytest.raises(ValueError, match="second"):
        seal_authenticated(
            STANZA, alice.me(), [bob.to()], timestamp=utcnow(), hybrid=True, second=b"x" * 31
        )


# -- the sender's refusals ---------------------------------------------------------------


def test_hybrid_with_a_recipient_without_an_ml_kem_key_is_refused(
    devices: dict[str, Device],
) -> None:
    """No Auth-mode wrap of R beside hybrid ones: nothing is sealed at all."""
    alice, bob1, bob2 = devices["alice"], devices["bob1"], devices["bob2"]
    with pytest.raises(EncryptionError, match="ML-KEM"):
        seal_authenticated(
            STANZA,
            alice.me(),
            [bob1.to(), bob2.to(kem=False)],
            timestamp=utcnow(),
            hybrid=True,
        )


def test_a_passphrase_without_the_hybrid_wrap_is_refused(
    devices: dict[str, Device], second: bytes
) -> None:
    alice, bob = devices["alice"], devices["bob1"]
    with pytest.raises(EncryptionError, match="passphrase"):
        seal_authenticated(STANZA, alice.me(), [bob.to()], timestamp=utcnow(), second=second)


def test_an_ml_kem_key_goes_with_its_id() -> None:
    x25519 = X25519PrivateKey.generate()
    kem = MLKEM768PrivateKey.generate()
    ids = os.urandom(32), os.urandom(32)
    with pytest.raises(ValueError, match="ML-KEM"):
        AuthRecipient(*ids, x25519.public_key(), kem_id=os.urandom(32))
    with pytest.raises(ValueError, match="ML-KEM"):
        AuthRecipient(*ids, x25519.public_key(), kem_key=kem.public_key())
    with pytest.raises(ValueError, match="ML-KEM"):
        AuthSender(x25519, *ids, kem_key=kem)
    with pytest.raises(ValueError, match="ML-KEM"):
        AuthSender(x25519, *ids, kem_id=os.urandom(32))


def test_without_hybrid_every_key_is_auth_mode_even_for_ml_kem_recipients(
    devices: dict[str, Device],
) -> None:
    alice, bob = devices["alice"], devices["bob1"]
    e2e = sealed(alice, [bob], hybrid=False)
    assert [k.get("cipher-algo") for k in e2e.findall(KEY)] == [WRAP_ALGO]
    assert our_key(e2e).get("kem-ct") is None


# -- the receiver's policy and mixed keys -----------------------------------------------


def test_require_hybrid_refuses_an_auth_mode_key(devices: dict[str, Device]) -> None:
    alice, bob = devices["alice"], devices["bob1"]
    e2e = sealed(alice, [bob], hybrid=False)
    refused(e2e, bob.me(), resolver(alice), require_hybrid=True)


def test_an_auth_mode_stanza_still_opens_for_a_hybrid_capable_device(
    devices: dict[str, Device],
) -> None:
    alice, bob = devices["alice"], devices["bob1"]
    e2e = sealed(alice, [bob], hybrid=False)
    assert addressed_to(e2e, [bob.me()]) == bob.me()
    assert wrap_kind(e2e, bob.me()) == WRAP_ALGO
    opened = open_authenticated(e2e, bob.me(), resolver(alice), ALICE)
    assert not opened.hybrid
    assert opened.stanza_bytes == STANZA


def test_a_hybrid_key_is_not_ours_without_our_ml_kem_key(devices: dict[str, Device]) -> None:
    alice, bob1, bob2 = devices["alice"], devices["bob1"], devices["bob2"]
    e2e = sealed(alice, [bob1])
    assert addressed_to(e2e, [bob1.me(kem=False)]) is None
    assert wrap_kind(e2e, bob1.me(kem=False)) is None
    refused(e2e, bob1.me(kem=False), resolver(alice))
    # our identity and encryption ids with another device's ML-KEM key and id
    other = replace(bob1, kem_key=bob2.kem_key, kem_id=bob2.kem_id)
    assert addressed_to(e2e, [other.me()]) is None
    refused(e2e, other.me(), resolver(alice))


def test_two_keys_for_us_are_refused_not_chosen_from(devices: dict[str, Device]) -> None:
    """A server that adds an Auth-mode key for us to a hybrid stanza (or two
    hybrid ones) gets it refused: the receiver does not pick the weaker one."""
    alice, bob = devices["alice"], devices["bob1"]
    hybrid = sealed(alice, [bob])
    auth = sealed(alice, [bob], hybrid=False)
    both = on_wire(hybrid)
    both.insert(0, our_key(auth))
    assert wrap_kind(both, bob.me()) is None
    refused(both, bob.me(), resolver(alice))
    twice = on_wire(hybrid)
    twice.insert(0, on_wire(our_key(hybrid)))
    refused(twice, bob.me(), resolver(alice))


# -- tampering and strict parsing -----------------------------------------------------


def _flip(text: str | None) -> str:
    raw = bytearray(base64.b64decode(text or ""))
    raw[len(raw) // 2] ^= 0x01
    return b64(bytes(raw))


def _kem_ct(key: ET.Element) -> bytes:
    return base64.b64decode(key.get("kem-ct", ""))


def _relabel_auth(key: ET.Element) -> None:
    """The hybrid key made to look like an Auth-mode one: only the crypto can tell."""
    key.set("cipher-algo", WRAP_ALGO)
    del key.attrib["kem-ct"], key.attrib["kem-sha256"]


MUTATIONS: dict[str, Callable[[ET.Element, Device], object]] = {
    "kem-ct flipped": lambda k, o: k.set("kem-ct", _flip(k.get("kem-ct"))),
    "kem-ct random": lambda k, o: k.set("kem-ct", b64(os.urandom(KEM_CIPHERTEXT_SIZE))),
    "kem-ct short": lambda k, o: k.set("kem-ct", b64(_kem_ct(k)[:-1])),
    "kem-ct long": lambda k, o: k.set("kem-ct", b64(_kem_ct(k) + b"\x00")),
    "kem-ct empty": lambda k, o: k.set("kem-ct", ""),
    "kem-ct missing": lambda k, o: k.attrib.pop("kem-ct"),
    "kem-ct not base64": lambda k, o: k.set("kem-ct", "!" + (k.get("kem-ct") or "")[1:]),
    "kem-ct url-safe": lambda k, o: k.set(
        "kem-ct", (k.get("kem-ct") or "").replace("+", "-").replace("/", "_") + "-_"
    ),
    "kem-sha256 another": lambda k, o: k.set("kem-sha256", hashlib.sha256(b"x").hexdigest()),
    "kem-sha256 other device": lambda k, o: k.set("kem-sha256", o.kem_id.hex()),
    "kem-sha256 upper": lambda k, o: k.set("kem-sha256", (k.get("kem-sha256") or "").upper()),
    "kem-sha256 missing": lambda k, o: k.attrib.pop("kem-sha256"),
    "enc flipped": lambda k, o: k.set("enc", _flip(k.get("enc"))),
    "enc 31 bytes": lambda k, o: k.set("enc", b64(os.urandom(31))),
    "enc 33 bytes": lambda k, o: k.set("enc", b64(os.urandom(33))),
    "ct flipped": lambda k, o: setattr(k, "text", _flip(k.text)),
    "ct 47 bytes": lambda k, o: setattr(k, "text", b64(base64.b64decode(k.text or "")[:-1])),
    "ct not base64": lambda k, o: setattr(k, "text", "*" + (k.text or "")[1:]),
    "downgrade to auth": lambda k, o: k.set("cipher-algo", WRAP_ALGO),
    "downgrade, kem stripped": lambda k, o: _relabel_auth(k),
    "unknown algo": lambda k, o: k.set("cipher-algo", HYBRID_CIPHER_ALGO + "-2"),
}


@pytest.mark.parametrize("mutation", sorted(MUTATIONS))
def test_a_tampered_hybrid_key_is_refused(
    devices: dict[str, Device], second: bytes, mutation: str
) -> None:
    alice, bob1, bob2 = devices["alice"], devices["bob1"], devices["bob2"]
    for passphrase in (b"", second):
        e2e = sealed(alice, [bob1], second=passphrase)
        MUTATIONS[mutation](our_key(e2e), bob2)
        refused(on_wire(e2e), bob1.me(), resolver(alice), second=passphrase)


def test_a_server_relabelling_the_hybrid_key_as_auth_mode_is_refused(
    devices: dict[str, Device], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Downgrade on the wire: with the ML-KEM attributes kept, the parser
    refuses it; without them, it reaches Auth mode's open, which fails (other
    mode, other ``info``, no PSK): R was never sealed without the PSK."""
    alice, bob = devices["alice"], devices["bob1"]
    kept = sealed(alice, [bob])
    our_key(kept).set("cipher-algo", WRAP_ALGO)
    refused(kept, bob.me(), resolver(alice))
    stripped = sealed(alice, [bob])
    _relabel_auth(our_key(stripped))
    assert wrap_kind(stripped, bob.me()) == WRAP_ALGO
    reached: list[bool] = []
    real = open_wrap

    def counted(*args: Any) -> bytes:
        reached.append(True)
        return real(*args)

    monkeypatch.setattr(wire, "open_wrap", counted)
    refused(stripped, bob.me(), resolver(alice))
    assert reached == [True]
    refused(stripped, bob.me(), resolver(alice), require_hybrid=True)
    assert reached == [True]  # refused by policy before any cryptography


def test_a_wrap_encapsulated_to_another_device_is_refused(devices: dict[str, Device]) -> None:
    """Sealed under bob1's three ids but to bob2's ML-KEM key: bob1's
    decapsulation (implicit rejection) gives another secret."""
    alice, bob1, bob2 = devices["alice"], devices["bob1"], devices["bob2"]
    wrong = replace(bob1.to(), kem_key=bob2.kem_key.public_key())
    e2e = on_wire(seal_authenticated(STANZA, alice.me(), [wrong], timestamp=utcnow(), hybrid=True))
    assert addressed_to(e2e, [bob1.me()]) == bob1.me()
    refused(e2e, bob1.me(), resolver(alice))


def test_a_kem_ct_from_another_stanza_is_refused(devices: dict[str, Device]) -> None:
    alice, bob = devices["alice"], devices["bob1"]
    one, two = sealed(alice, [bob]), sealed(alice, [bob])
    our_key(one).set("kem-ct", our_key(two).get("kem-ct", ""))
    refused(one, bob.me(), resolver(alice))


def test_an_auth_mode_key_with_kem_attributes_is_refused(devices: dict[str, Device]) -> None:
    alice, bob = devices["alice"], devices["bob1"]
    hybrid, auth = sealed(alice, [bob]), sealed(alice, [bob], hybrid=False)
    our_key(auth).set("kem-ct", our_key(hybrid).get("kem-ct", ""))
    refused(auth, bob.me(), resolver(alice))


def test_sizes_are_checked_before_any_cryptography(
    devices: dict[str, Device], monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []

    def spy(*args: object, **kwargs: object) -> bytes:
        calls.append("open")
        raise InvalidEnvelope()

    monkeypatch.setattr(wire, "open_hybrid_wrap", spy)
    monkeypatch.setattr(wire, "open_wrap", spy)
    alice, bob = devices["alice"], devices["bob1"]
    e2e = sealed(alice, [bob])
    our_key(e2e).set("kem-ct", b64(_kem_ct(our_key(e2e))[:-1]))
    refused(e2e, bob.me(), resolver(alice))
    good = sealed(alice, [bob])
    refused(good, bob.me(), resolver(alice), max_size=envelope_size(good) - 1)
    assert calls == []
    refused(good, bob.me(), resolver(alice))  # the spy is reached: the size check passed
    assert calls == ["open"]


# -- sizes --------------------------------------------------------------------------


def test_64_hybrid_recipients_fit_and_65_keys_are_refused(devices: dict[str, Device]) -> None:
    alice, bob = devices["alice"], devices["bob1"]
    others = [
        AuthRecipient(
            os.urandom(32),
            os.urandom(32),
            X25519PrivateKey.generate().public_key(),
            os.urandom(32),
            MLKEM768PrivateKey.generate().public_key(),
        )
        for _ in range(MAX_WRAPS - 1)
    ]
    body = b"x" * 1024
    stanza = STANZA.replace(b"hi", body)
    e2e = on_wire(
        seal_authenticated(stanza, alice.me(), [bob.to(), *others], timestamp=utcnow(), hybrid=True)
    )
    keys = e2e.findall(KEY)
    assert len(keys) == MAX_WRAPS
    per_key = envelope_size(keys[0])
    assert 1800 < per_key < 2000  # about 1.9 KB counted per hybrid <key/>
    assert envelope_size(e2e) < DEFAULT_MAX_ENVELOPE_SIZE // 2
    assert len(ET.tostring(e2e)) < DEFAULT_MAX_ENVELOPE_SIZE // 2
    opened = open_authenticated(e2e, bob.me(), resolver(alice), ALICE)
    assert opened.hybrid and opened.stanza_bytes == stanza
    e2e.insert(0, on_wire(keys[1]))  # a 65th <key/>
    refused(e2e, bob.me(), resolver(alice))
