"""core.authenticated: the authenticated profile's per-stanza cryptography, and
the attacks it exists to stop (sender forgery, co-recipient rewrite)."""

from __future__ import annotations

import hashlib
import os

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.serialization import Encoding

from slixmpp_objenc.core import InvalidEnvelope
from slixmpp_objenc.core.authenticated import (
    Wrap,
    content_aad,
    open_content,
    open_wrap,
    seal_content,
    seal_wraps,
    wrap_info,
)
from slixmpp_objenc.core.identities import DeviceKeys, generate_device_keys


def ids(device: DeviceKeys) -> tuple[bytes, bytes]:
    return (
        hashlib.sha256(device.identity_certificate.public_bytes(Encoding.DER)).digest(),
        hashlib.sha256(device.encryption_certificate.public_bytes(Encoding.DER)).digest(),
    )


@pytest.fixture(scope="module")
def devices() -> dict[str, DeviceKeys]:
    return {
        "alice": generate_device_keys("alice@example.org"),
        "bob1": generate_device_keys("bob@example.org"),
        "bob2": generate_device_keys("bob@example.org"),
        "mallory": generate_device_keys("mallory@example.org"),
    }


def send(sender: DeviceKeys, to: list[DeviceKeys], envelope: bytes) -> tuple[bytes, list[Wrap]]:
    key, sealed = seal_content(envelope, *ids(sender))
    recipients = [(*ids(d), d.encryption_key.public_key()) for d in to]
    return sealed, seal_wraps(key, sealed, sender.encryption_key, *ids(sender), recipients)


def receive(me: DeviceKeys, sender: DeviceKeys, sealed: bytes, wrap: Wrap) -> bytes:
    public = sender.encryption_key.public_key()
    key = open_wrap(wrap, sealed, me.encryption_key, public, *ids(sender))
    return open_content(key, sealed, *ids(sender))


def test_every_recipient_device_opens_it(devices: dict[str, DeviceKeys]) -> None:
    alice, bob1, bob2 = devices["alice"], devices["bob1"], devices["bob2"]
    sealed, wraps = send(alice, [bob1, bob2], b"<message>hi</message>")
    assert [w.recipient_identity for w in wraps] == [ids(bob1)[0], ids(bob2)[0]]
    assert receive(bob1, alice, sealed, wraps[0]) == b"<message>hi</message>"
    assert receive(bob2, alice, sealed, wraps[1]) == b"<message>hi</message>"
    assert all(len(w.enc) == 32 and len(w.ct) == 32 + 16 for w in wraps)


def test_a_stanza_built_from_public_certificates_only_is_refused(
    devices: dict[str, DeviceKeys],
) -> None:
    """The server (or anyone) knows alice's and bob's certificates, not alice's
    key: it seals with a key of its own and names alice's certificates."""
    alice, bob1 = devices["alice"], devices["bob1"]
    key, sealed = seal_content(b"<message>forged</message>", *ids(alice))
    forger = X25519PrivateKey.generate()
    [wrap] = seal_wraps(
        key, sealed, forger, *ids(alice), [(*ids(bob1), bob1.encryption_key.public_key())]
    )
    with pytest.raises(InvalidEnvelope):
        receive(bob1, alice, sealed, wrap)


def test_a_co_recipient_cannot_rewrite_the_content_for_another_device(
    devices: dict[str, DeviceKeys],
) -> None:
    """bob1 got a copy, so it knows R; it writes other content under the same
    R and forwards bob2's wrap with it: refused (the wrap binds SHA-256(T))."""
    alice, bob1, bob2 = devices["alice"], devices["bob1"], devices["bob2"]
    sealed, wraps = send(alice, [bob1, bob2], b"<message>pay 10</message>")
    key = open_wrap(
        wraps[0], sealed, bob1.encryption_key, alice.encryption_key.public_key(), *ids(alice)
    )
    nonce = os.urandom(12)
    rewritten = nonce + AESGCM(key).encrypt(
        nonce, b"<message>pay 1000</message>", content_aad(*ids(alice))
    )
    assert open_content(key, rewritten, *ids(alice)) == b"<message>pay 1000</message>"  # R works...
    with pytest.raises(InvalidEnvelope):  # ...but not with bob2's wrap
        receive(bob2, alice, rewritten, wraps[1])


def test_a_wrap_is_for_one_device_and_one_sender(devices: dict[str, DeviceKeys]) -> None:
    alice, bob1, bob2, mallory = (devices[k] for k in ("alice", "bob1", "bob2", "mallory"))
    sealed, wraps = send(alice, [bob1], b"x")
    with pytest.raises(InvalidEnvelope):  # bob1's wrap at bob2
        receive(bob2, alice, sealed, wraps[0])
    with pytest.raises(InvalidEnvelope):  # claimed to come from mallory's certificates
        receive(bob1, mallory, sealed, wraps[0])
    with pytest.raises(InvalidEnvelope):  # recipient ids changed in transit
        receive(bob1, alice, sealed, Wrap(ids(bob2)[0], ids(bob2)[1], wraps[0].enc, wraps[0].ct))
    with pytest.raises(InvalidEnvelope):  # ids of the wrong length
        receive(bob1, alice, sealed, Wrap(b"short", ids(bob1)[1], wraps[0].enc, wraps[0].ct))


def test_content_is_bound_to_the_profile_and_the_sender(devices: dict[str, DeviceKeys]) -> None:
    alice, mallory = devices["alice"], devices["mallory"]
    key, sealed = seal_content(b"x", *ids(alice))
    assert open_content(key, sealed, *ids(alice)) == b"x"
    for bad in (sealed[:-1], sealed[:5], bytes([sealed[0] ^ 1]) + sealed[1:]):
        with pytest.raises(InvalidEnvelope):
            open_content(key, bad, *ids(alice))
    with pytest.raises(InvalidEnvelope):
        open_content(key, sealed, *ids(mallory))


def test_layouts_are_fixed_length() -> None:
    a, b, c, d = (bytes([n]) * 32 for n in range(4))
    info = wrap_info(a, b, c, d)
    assert info.endswith(a + b + c + d) and info.split(b"\x00", 1)[0].startswith(b"urn:")
    with pytest.raises(ValueError, match="32 bytes"):
        wrap_info(a, b, c, d[:31])
    assert content_aad(a, b).endswith(b"\x00" + a + b)
