"""The sans-I/O core: wire format, algorithms, timestamps and certificates.

No slixmpp, no sockets, no event loop: pure functions over bytes and XML
elements, with the clock and randomness injectable so tests pin vectors.
"""

from __future__ import annotations

from .algorithms import AES_128_CBC, AES_256_CBC, BLOCK_CIPHERS, DEFAULT_BLOCK_CIPHER, BlockCipher
from .certificates import (
    Identity,
    PeerCertificate,
    certificate_fingerprint,
    format_fingerprint,
    generate_identity,
    load_certificate,
    load_private_key,
    normalize_bare_jid,
    validate_peer_certificate,
    xmpp_addresses,
)
from .constants import NS_E2E_ERRORS, NS_OBJENC
from .envelope import KEY_ID_ATTRIBUTE, OpenedEnvelope, Recipient, open_envelope, seal
from .errors import CertificateError, EncryptionError, InvalidEnvelope, ObjEncError, StaleStanza
from .timestamps import ReplayGuard, TimestampSource, format_timestamp, parse_timestamp

__all__ = [
    "AES_128_CBC",
    "AES_256_CBC",
    "BLOCK_CIPHERS",
    "DEFAULT_BLOCK_CIPHER",
    "KEY_ID_ATTRIBUTE",
    "NS_E2E_ERRORS",
    "NS_OBJENC",
    "BlockCipher",
    "CertificateError",
    "EncryptionError",
    "Identity",
    "InvalidEnvelope",
    "ObjEncError",
    "OpenedEnvelope",
    "PeerCertificate",
    "Recipient",
    "ReplayGuard",
    "StaleStanza",
    "TimestampSource",
    "certificate_fingerprint",
    "format_fingerprint",
    "format_timestamp",
    "generate_identity",
    "load_certificate",
    "load_private_key",
    "normalize_bare_jid",
    "open_envelope",
    "parse_timestamp",
    "seal",
    "validate_peer_certificate",
    "xmpp_addresses",
]
