"""The authenticated profile's fixed vectors (tests/vectors/auth-profile-v1.json):
every intermediate value recomputed from the inputs, and each wrap opened."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from slixmpp_objenc.core.authenticated import (
    PROFILE_ID,
    Wrap,
    content_aad,
    open_content,
    open_wrap,
    seal_content,
    seal_wraps,
    wrap_info,
)

V: dict[str, Any] = json.loads(
    (Path(__file__).parents[1] / "vectors" / "auth-profile-v1.json").read_text()
)


def h(name: str, where: dict[str, Any] = V) -> bytes:
    return bytes.fromhex(where[name])


def test_every_value_follows_from_the_inputs() -> None:
    sender = V["sender"]
    ids = h("identity_id", sender), h("encryption_id", sender)
    assert h("profile_id") == PROFILE_ID
    assert content_aad(*ids) == h("content_aad")
    randomness = iter([h("content_key"), h("nonce")])
    key, sealed = seal_content(h("envelope"), *ids, random_bytes=lambda n: next(randomness))
    assert key == h("content_key") and sealed == h("T")
    assert hashlib.sha256(sealed).digest() == h("sha256_T")
    sender_key = X25519PrivateKey.from_private_bytes(h("x25519_private", sender))
    assert sender_key.public_key().public_bytes_raw() == h("x25519_public", sender)
    targets = []
    for w in V["wraps"]:
        public = X25519PrivateKey.from_private_bytes(h("x25519_private", w)).public_key()
        assert public.public_bytes_raw() == h("x25519_public", w)
        targets.append((h("identity_id", w), h("encryption_id", w), public))
        assert wrap_info(*ids, h("identity_id", w), h("encryption_id", w)) == h("info", w)
    wraps = seal_wraps(
        key, sealed, sender_key, *ids, targets, ephemeral_ikm=[h("ikmE", w) for w in V["wraps"]]
    )
    assert [(x.enc, x.ct) for x in wraps] == [(h("enc", w), h("ct", w)) for w in V["wraps"]]


def test_each_recipient_opens_the_vector() -> None:
    sender = V["sender"]
    ids = h("identity_id", sender), h("encryption_id", sender)
    sender_public = X25519PrivateKey.from_private_bytes(h("x25519_private", sender)).public_key()
    for w in V["wraps"]:
        own = X25519PrivateKey.from_private_bytes(h("x25519_private", w))
        wrap = Wrap(h("identity_id", w), h("encryption_id", w), h("enc", w), h("ct", w))
        key = open_wrap(wrap, h("T"), own, sender_public, *ids)
        assert key == h("content_key")
        assert open_content(key, h("T"), *ids) == h("envelope")
