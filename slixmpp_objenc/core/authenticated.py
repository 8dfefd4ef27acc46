"""The authenticated profile's per-stanza cryptography, as bytes (the XML
around it is the wire profile's; docs/PROTOCOL.md gives both byte for byte).

Per stanza (issue 12's construction):

* a fresh 32-byte content key ``R`` and a random 96-bit ``nonce``;
* ``T = nonce || AES-256-GCM(R, nonce, E', aad=content_aad)``, where ``E'``
  is the envelope (timestamp and stanza) and :func:`content_aad` binds the
  profile and the sender's two certificates;
* per recipient device, ``R`` sealed with HPKE Auth mode (:mod:`.hpke`,
  DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-128-GCM) from the sender's
  encryption key, with ``info`` = :func:`wrap_info` (the profile and all
  four certificate ids) and ``aad = SHA-256(T)``.

What this gives, and what it does not:

* **Sender authentication** per recipient device: only the holder of the
  sender's X25519 key opens the wrap for the sender's certificates in
  ``info``; a stanza built from public certificates alone does not open.
* **Integrity against co-recipients**: a co-recipient knows ``R`` but cannot
  reuse anyone's wrapped key for other content, since the wrap's ``aad`` is
  the digest of ``T``.
* **Deniability**: nothing is signed; the recipient could have computed the
  same wrap (Auth mode's DH is symmetric in its static keys).
* **Limits**: key-compromise impersonation (whoever holds a recipient's
  X25519 key can forge senders to that recipient, RFC 9180 section 9.1.1);
  sender authentication is not post-quantum.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .errors import EncryptionError, InvalidEnvelope
from .hpke import AES_128_GCM, HpkeSuite, open_auth, seal_auth

__all__ = [
    "CONTENT_KEY_SIZE",
    "PROFILE_ID",
    "WRAP_SUITE",
    "Wrap",
    "content_aad",
    "open_content",
    "open_content_key",
    "open_wrap",
    "seal_content",
    "seal_wraps",
    "wrap_info",
]

PROFILE_ID: Final = b"urn:ietf:params:xml:ns:xmpp-objenc:0#auth-1"
"""Names the profile in ``info`` and in the content's associated data."""
WRAP_SUITE: Final[HpkeSuite] = AES_128_GCM
CONTENT_KEY_SIZE: Final = 32
NONCE_SIZE: Final = 12
_FINGERPRINT_SIZE: Final = 32


@dataclass(frozen=True, slots=True)
class Wrap:
    """``R`` sealed for one recipient device: HPKE's ``enc`` (32 bytes) and
    ``ct`` (``R`` plus a 16-byte tag), and the recipient's two certificate ids."""

    recipient_identity: bytes
    recipient_encryption: bytes
    enc: bytes
    ct: bytes


def _ids(*fingerprints: bytes) -> bytes:
    for fingerprint in fingerprints:
        if len(fingerprint) != _FINGERPRINT_SIZE:
            raise ValueError("certificate ids are SHA-256 digests (32 bytes)")
    return b"".join(fingerprints)


def content_aad(sender_identity: bytes, sender_encryption: bytes) -> bytes:
    """``PROFILE_ID || 0x00 || sender identity id || sender encryption id``
    (ids: SHA-256 of the certificate's DER, 32 bytes each)."""
    return PROFILE_ID + b"\x00" + _ids(sender_identity, sender_encryption)


def wrap_info(
    sender_identity: bytes,
    sender_encryption: bytes,
    recipient_identity: bytes,
    recipient_encryption: bytes,
) -> bytes:
    """HPKE ``info``: ``PROFILE_ID || 0x00`` and the four 32-byte ids, sender
    first (fixed lengths: no two inputs give the same bytes)."""
    return (
        PROFILE_ID
        + b"\x00"
        + _ids(sender_identity, sender_encryption, recipient_identity, recipient_encryption)
    )


def seal_content(
    envelope: bytes,
    sender_identity: bytes,
    sender_encryption: bytes,
    *,
    random_bytes: Callable[[int], bytes] = os.urandom,
) -> tuple[bytes, bytes]:
    """A fresh content key ``R`` and ``T = nonce || AES-256-GCM(R, nonce, envelope,
    content_aad)``; returns ``(R, T)``."""
    key = random_bytes(CONTENT_KEY_SIZE)
    nonce = random_bytes(NONCE_SIZE)
    if len(key) != CONTENT_KEY_SIZE or len(nonce) != NONCE_SIZE:
        raise ValueError("random_bytes returned the wrong number of bytes")
    aad = content_aad(sender_identity, sender_encryption)
    return key, nonce + AESGCM(key).encrypt(nonce, envelope, aad)


def open_content(
    key: bytes, sealed: bytes, sender_identity: bytes, sender_encryption: bytes
) -> bytes:
    """The envelope from ``T``; :class:`InvalidEnvelope` for any failure."""
    try:
        nonce, body = sealed[:NONCE_SIZE], sealed[NONCE_SIZE:]
        aad = content_aad(sender_identity, sender_encryption)
        return AESGCM(key).decrypt(nonce, body, aad)
    except Exception:  # noqa: S110 - every failure looks the same from outside...
        pass
    raise InvalidEnvelope()  # ...raised outside the handler: nothing travels with it


def seal_wraps(
    key: bytes,
    sealed: bytes,
    sender_key: X25519PrivateKey,
    sender_identity: bytes,
    sender_encryption: bytes,
    recipients: list[tuple[bytes, bytes, X25519PublicKey]],
    *,
    ephemeral_ikm: list[bytes] | None = None,
) -> list[Wrap]:
    """``R`` sealed for each recipient device ``(identity id, encryption id,
    X25519 key)``: HPKE SealAuth, ``info`` = :func:`wrap_info`, ``aad`` =
    SHA-256(``T``). ``ephemeral_ikm``: one ``ikmE`` per recipient, for test
    vectors only (by default each wrap has a fresh ephemeral key; reusing one
    reuses HPKE's key and nonce). :class:`EncryptionError` for a recipient key
    that gives no shared secret."""
    digest = hashlib.sha256(sealed).digest()
    ikms: list[bytes | None] = list(ephemeral_ikm) if ephemeral_ikm else [None] * len(recipients)
    if len(ikms) != len(recipients):
        raise ValueError("one ephemeral_ikm per recipient")
    wraps = []
    for (identity, encryption, public_key), ikm in zip(recipients, ikms, strict=True):
        info = wrap_info(sender_identity, sender_encryption, identity, encryption)
        try:
            enc, ct = seal_auth(
                WRAP_SUITE, public_key, sender_key, info=info, aad=digest, pt=key, ikm_e=ikm
            )
        except ValueError as exc:  # a small-order recipient key: no shared secret
            raise EncryptionError(f"cannot seal for device {encryption.hex()}: {exc}") from None
        wraps.append(Wrap(identity, encryption, enc, ct))
    return wraps


def open_wrap(
    wrap: Wrap,
    sealed: bytes,
    own_key: X25519PrivateKey,
    sender_public_key: X25519PublicKey,
    sender_identity: bytes,
    sender_encryption: bytes,
) -> bytes:
    """``R`` from our wrap, proving the sender held ``sender_public_key``'s
    private key and sealed it for this very ``T``; :class:`InvalidEnvelope`
    otherwise (one error for every failure)."""
    try:
        info = wrap_info(
            sender_identity, sender_encryption, wrap.recipient_identity, wrap.recipient_encryption
        )
    except ValueError:
        raise InvalidEnvelope() from None
    return open_content_key(wrap.enc, wrap.ct, sealed, own_key, sender_public_key, info)


def open_content_key(
    enc: bytes,
    ct: bytes,
    sealed: bytes,
    own_key: X25519PrivateKey,
    sender_public_key: X25519PublicKey,
    info: bytes,
    *,
    psk: bytes = b"",
    psk_id: bytes = b"",
) -> bytes:
    """``R`` (:data:`CONTENT_KEY_SIZE` bytes) from one wrap of ``T`` = ``sealed``:
    HPKE OpenAuth (OpenAuthPSK with ``psk``, the hybrid), ``aad`` = SHA-256(``T``);
    :class:`InvalidEnvelope` for any failure, a wrong size included."""
    key = open_auth(
        WRAP_SUITE,
        enc,
        own_key,
        sender_public_key,
        info=info,
        aad=hashlib.sha256(sealed).digest(),
        ct=ct,
        psk=psk,
        psk_id=psk_id,
    )
    if len(key) != CONTENT_KEY_SIZE:
        raise InvalidEnvelope()
    return key
