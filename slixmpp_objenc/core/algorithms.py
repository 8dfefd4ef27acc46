"""The algorithm table: wire names to ``cryptography`` primitives.

Only what the draft names, interpreted as ``docs/PROTOCOL.md`` fixes it.
PKCS#1 v1.5 key transport is deliberately absent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.asymmetric import padding as asym_padding
from cryptography.hazmat.primitives.asymmetric import rsa

__all__ = [
    "AES_128_CBC",
    "AES_256_CBC",
    "BLOCK_CIPHERS",
    "DEFAULT_BLOCK_CIPHER",
    "HMAC_SHA256",
    "KEY_TRANSPORT_NAMES",
    "MIN_RSA_BITS",
    "RSA_OAEP_SHA256",
    "RSA_OAEP_SHA256_INPUT_ALIASES",
    "BlockCipher",
    "hmac_sha256",
    "oaep_padding",
]

MIN_RSA_BITS: Final = 2048

RSA_OAEP_SHA256: Final = "RSAES-OAEP-SHA-256-MFG1"
"""Key transport name as the draft spells it (and as we emit it)."""

RSA_OAEP_SHA256_INPUT_ALIASES: Final = frozenset({RSA_OAEP_SHA256, "RSAES-OAEP-SHA-256-MGF1"})
KEY_TRANSPORT_NAMES: Final = RSA_OAEP_SHA256_INPUT_ALIASES

HMAC_SHA256: Final = "HMACSHA256"
MAC_LENGTH: Final = 32
IV_LENGTH: Final = 16


@dataclass(frozen=True, slots=True)
class BlockCipher:
    """A CBC block cipher with a random IV prepended to the ciphertext."""

    name: str
    key_length: int


AES_128_CBC: Final = BlockCipher("AES-128-CBC-PKCS5-WITH-IV", 16)
AES_256_CBC: Final = BlockCipher("AES-256-CBC-PKCS5-WITH-IV", 32)
DEFAULT_BLOCK_CIPHER: Final = AES_128_CBC
BLOCK_CIPHERS: Final[dict[str, BlockCipher]] = {c.name: c for c in (AES_128_CBC, AES_256_CBC)}

_OAEP: Final = asym_padding.OAEP(
    mgf=asym_padding.MGF1(algorithm=hashes.SHA256()),
    algorithm=hashes.SHA256(),
    label=None,
)


def oaep_padding() -> asym_padding.OAEP:
    """RSA-OAEP with SHA-256 and MGF1-SHA-256, empty label."""
    return _OAEP


def hmac_sha256(key: bytes, message: bytes) -> bytes:
    """HMAC-SHA256 through ``cryptography``."""
    h = hmac.HMAC(key, hashes.SHA256())
    h.update(message)
    return h.finalize()


def check_rsa_key_size(key: rsa.RSAPublicKey | rsa.RSAPrivateKey) -> None:
    """Raise ``ValueError`` for RSA keys too short to be trusted."""
    if key.key_size < MIN_RSA_BITS:
        raise ValueError(f"RSA key of {key.key_size} bits is under {MIN_RSA_BITS}")
