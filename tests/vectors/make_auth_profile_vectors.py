"""Writes auth-profile-v1.json: fixed vectors for the authenticated profile's
per-stanza cryptography (slixmpp_objenc.core.authenticated), every input,
the randomness, every intermediate value and the output, so that another
implementation can check itself. Run from the repository root:

    python tests/vectors/make_auth_profile_vectors.py

The inputs are fixed bytes (not certificates: a certificate id is SHA-256 of
its DER, taken here as given). tests/unit/test_core_authenticated_vectors.py
recomputes every value from the inputs.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from slixmpp_objenc.core.authenticated import (
    PROFILE_ID,
    content_aad,
    seal_content,
    seal_wraps,
    wrap_info,
)


def fixed(label: str, size: int) -> bytes:
    """Deterministic bytes: SHA-256 of a label, repeated to ``size``."""
    out = b""
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(f"{label}/{counter}".encode()).digest()
        counter += 1
    return out[:size]


def main() -> None:
    sender_sk = fixed("sender x25519", 32)
    recipients = [("bob-1", fixed("bob-1 x25519", 32)), ("bob-2", fixed("bob-2 x25519", 32))]
    sender_identity, sender_encryption = (
        fixed("sender identity id", 32),
        fixed("sender encryption id", 32),
    )
    envelope = (
        b"<envelope xmlns='urn:ietf:params:xml:ns:xmpp-objenc:0'><timestamp>"
        b"2026-11-30T18:00:00Z</timestamp><stanza>&lt;message/&gt;</stanza></envelope>"
    )
    randomness = fixed("content key", 32) + fixed("nonce", 12)
    position = 0

    def random_bytes(n: int) -> bytes:
        nonlocal position
        chunk = randomness[position : position + n]
        position += n
        return chunk

    key, sealed = seal_content(
        envelope, sender_identity, sender_encryption, random_bytes=random_bytes
    )
    ikms = [fixed(f"{name} ikmE", 32) for name, _ in recipients]
    sender = X25519PrivateKey.from_private_bytes(sender_sk)
    targets = []
    for name, sk in recipients:
        public = X25519PrivateKey.from_private_bytes(sk).public_key()
        targets.append(
            (fixed(f"{name} identity id", 32), fixed(f"{name} encryption id", 32), public)
        )
    wraps = seal_wraps(
        key, sealed, sender, sender_identity, sender_encryption, targets, ephemeral_ikm=ikms
    )
    vector = {
        "profile_id": PROFILE_ID.hex(),
        "hpke_suite": "DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-128-GCM, mode_auth (RFC 9180)",
        "content_aead": "AES-256-GCM",
        "sender": {
            "x25519_private": sender_sk.hex(),
            "x25519_public": sender.public_key().public_bytes_raw().hex(),
            "identity_id": sender_identity.hex(),
            "encryption_id": sender_encryption.hex(),
        },
        "envelope": envelope.hex(),
        "content_key": key.hex(),
        "nonce": randomness[32:].hex(),
        "content_aad": content_aad(sender_identity, sender_encryption).hex(),
        "T": sealed.hex(),
        "sha256_T": hashlib.sha256(sealed).hexdigest(),
        "wraps": [
            {
                "recipient": name,
                "x25519_private": sk.hex(),
                "x25519_public": public.public_bytes_raw().hex(),
                "identity_id": identity.hex(),
                "encryption_id": encryption.hex(),
                "ikmE": ikm.hex(),
                "info": wrap_info(sender_identity, sender_encryption, identity, encryption).hex(),
                "enc": wrap.enc.hex(),
                "ct": wrap.ct.hex(),
            }
            for (name, sk), (identity, encryption, public), ikm, wrap in zip(
                recipients, targets, ikms, wraps, strict=True
            )
        ],
    }
    path = Path(__file__).with_name("auth-profile-v1.json")
    path.write_text(json.dumps(vector, indent=1) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
