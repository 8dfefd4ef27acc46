"""core.hpke against RFC 9180 Appendix A (Auth and AuthPSK mode, X25519 suites),
and the properties the authenticated profile relies on."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from slixmpp_objenc.core import InvalidEnvelope
from slixmpp_objenc.core.hpke import AES_128_GCM, CHACHA20_POLY1305, HpkeSuite, open_auth, seal_auth

VECTORS = json.loads(
    (Path(__file__).parents[1] / "vectors" / "rfc9180-x25519-auth.json").read_text()
)["vectors"]
SUITES = {1: AES_128_GCM, 3: CHACHA20_POLY1305}


def key(hex_private: str) -> X25519PrivateKey:
    return X25519PrivateKey.from_private_bytes(bytes.fromhex(hex_private))


def vector_id(v: dict[str, Any]) -> str:
    mode = "Auth" if v["mode"] == "2" else "AuthPSK"
    return f"{mode}-{SUITES[int(v['aead_id'])].name.split('/')[-1]}"


@pytest.mark.parametrize("v", VECTORS, ids=vector_id)
def test_rfc9180_appendix_a_first_encryption(v: dict[str, Any]) -> None:
    """Sequence number 0: the one message per context the profile uses."""
    suite = SUITES[int(v["aead_id"])]
    psk = bytes.fromhex(v.get("psk", ""))
    psk_id = bytes.fromhex(v.get("psk_id", ""))
    first = v["encryptions"][0]
    assert first["sequence_number"] == "0"
    sk_r, sk_s = key(v["skRm"]), key(v["skSm"])
    assert sk_r.public_key().public_bytes_raw().hex() == v["pkRm"]
    assert sk_s.public_key().public_bytes_raw().hex() == v["pkSm"]
    enc, ct = seal_auth(
        suite,
        sk_r.public_key(),
        sk_s,
        info=bytes.fromhex(v["info"]),
        aad=bytes.fromhex(first["aad"]),
        pt=bytes.fromhex(first["pt"]),
        psk=psk,
        psk_id=psk_id,
        ikm_e=bytes.fromhex(v["ikmE"]),
    )
    assert enc.hex() == v["enc"]
    assert ct.hex() == first["ct"]
    opened = open_auth(
        suite,
        bytes.fromhex(v["enc"]),
        sk_r,
        sk_s.public_key(),
        info=bytes.fromhex(v["info"]),
        aad=bytes.fromhex(first["aad"]),
        ct=bytes.fromhex(first["ct"]),
        psk=psk,
        psk_id=psk_id,
    )
    assert opened.hex() == first["pt"]


def test_the_vectors_are_the_four_asked_for() -> None:
    assert sorted((v["mode"], v["aead_id"]) for v in VECTORS) == [
        ("2", "1"),
        ("2", "3"),
        ("3", "1"),
        ("3", "3"),
    ]


@pytest.fixture(params=[AES_128_GCM, CHACHA20_POLY1305], ids=lambda s: s.name.split("/")[-1])
def suite(request: pytest.FixtureRequest) -> HpkeSuite:
    return request.param  # type: ignore[no-any-return]


def test_only_the_sender_key_opens_it(suite: HpkeSuite) -> None:
    recipient, sender, forger = (X25519PrivateKey.generate() for _ in range(3))
    args = {"info": b"profile", "aad": b"digest of T"}
    enc, ct = seal_auth(suite, recipient.public_key(), sender, pt=b"R" * 32, **args)
    assert open_auth(suite, enc, recipient, sender.public_key(), ct=ct, **args) == b"R" * 32
    # a stanza built with public certificates only: the forger's own key is not the sender's
    enc2, ct2 = seal_auth(suite, recipient.public_key(), forger, pt=b"X" * 32, **args)
    with pytest.raises(InvalidEnvelope):
        open_auth(suite, enc2, recipient, sender.public_key(), ct=ct2, **args)


def test_every_changed_input_fails_alike(suite: HpkeSuite) -> None:
    recipient, sender = X25519PrivateKey.generate(), X25519PrivateKey.generate()
    good = {"info": b"i", "aad": b"a"}
    enc, ct = seal_auth(suite, recipient.public_key(), sender, pt=b"secret", **good)
    flipped = bytes([ct[0] ^ 1]) + ct[1:]
    cases = [
        (enc, recipient, ct, {"info": b"j", "aad": b"a"}),
        (enc, recipient, ct, {"info": b"i", "aad": b"b"}),  # a co-recipient's other content
        (enc, recipient, flipped, good),
        (bytes(32), recipient, ct, good),  # a low-order point
        (enc[:31], recipient, ct, good),
        (enc, X25519PrivateKey.generate(), ct, good),
    ]
    for enc_x, sk_r, ct_x, args in cases:
        with pytest.raises(InvalidEnvelope) as raised:
            open_auth(suite, enc_x, sk_r, sender.public_key(), ct=ct_x, **args)
        assert raised.value.__context__ is None  # opaque: nothing travels with it


def test_psk_goes_with_its_id(suite: HpkeSuite) -> None:
    recipient, sender = X25519PrivateKey.generate(), X25519PrivateKey.generate()
    with pytest.raises(ValueError, match="together"):
        seal_auth(suite, recipient.public_key(), sender, info=b"", aad=b"", pt=b"", psk=b"k" * 32)
    enc, ct = seal_auth(
        suite,
        recipient.public_key(),
        sender,
        info=b"",
        aad=b"",
        pt=b"pt",
        psk=b"k" * 32,
        psk_id=b"id",
    )
    with pytest.raises(InvalidEnvelope):  # the psk is part of the key schedule
        open_auth(suite, enc, recipient, sender.public_key(), info=b"", aad=b"", ct=ct)
