"""The ``<e2e/>`` wire format: the draft's 11 sending steps (:func:`seal`) and
their inverse (:func:`open_envelope`), as pure functions.

Interpretations where the draft is ambiguous are fixed in docs/PROTOCOL.md.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives import padding as sym_padding
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from . import algorithms as algo
from .constants import DEFAULT_MAX_ENVELOPE_SIZE, NS_CLIENT, NS_OBJENC, STANZA_KINDS, qname
from .errors import EncryptionError, InvalidEnvelope
from .timestamps import format_timestamp, parse_timestamp
from .xmlsafe import b64decode_strict, b64encode, parse_untrusted

__all__ = [
    "DEFAULT_PAD_TO",
    "KEY_ID_ATTRIBUTE",
    "OpenedEnvelope",
    "Recipient",
    "build_plain",
    "open_envelope",
    "read_plain",
    "seal",
]

RandomBytes = Callable[[int], bytes]

KEY_ID_ATTRIBUTE: Final = "cert-sha256"
"""Optional ``<key/>`` attribute: lowercase hex SHA-256 of the recipient certificate (DER)."""

MAX_KEYS_TRIED: Final = 4
"""At most this many ``<key/>`` elements are tried with RSA, bounding the cost of one stanza."""

_E2E: Final = qname(NS_OBJENC, "e2e")
_KEY: Final = qname(NS_OBJENC, "key")
_DATA: Final = qname(NS_OBJENC, "data")
_PLAIN: Final = qname(NS_OBJENC, "plain")
_STANZA_TAGS: Final = frozenset(qname(NS_CLIENT, kind) for kind in STANZA_KINDS)


@dataclass(frozen=True, slots=True)
class Recipient:
    """One recipient certificate's public key, optionally named on the wire."""

    public_key: rsa.RSAPublicKey
    key_id: str | None = None
    """Emitted as the ``cert-sha256`` attribute; ``None`` gives the draft's bare ``<key/>``."""


@dataclass(frozen=True, slots=True)
class OpenedEnvelope:
    """What :func:`open_envelope` recovered from an ``<e2e/>``."""

    stanza: ET.Element
    """The inner stanza, parsed safely; tag is ``{jabber:client}message|iq|presence``."""
    stanza_bytes: bytes
    """S', the stanza-string exactly as the sender encrypted it."""
    timestamp: datetime
    """N, from ``<plain timestamp=.../>``: not yet checked for freshness."""
    digest: bytes
    """M, the verified MAC: a per-envelope identifier for replay detection."""
    cipher: str
    """The block cipher's wire name."""


DEFAULT_PAD_TO: Final = 64
"""Length padding: the ciphertext after the IV is a multiple of this many bytes."""


def build_plain(stanza: bytes, timestamp: datetime, pad_to: int = 0) -> bytes:
    """Steps 5 and 6: E' = UTF-8 of ``<plain timestamp='N'>base64(S')</plain>``.

    With ``pad_to`` (a multiple of 16), spaces inside the start tag, which
    every XML parser ignores, bring E' to one byte short of a multiple of
    ``pad_to``, so that with PKCS#7 the ciphertext's length reveals only a
    size class.
    """
    head = f"<plain xmlns='{NS_OBJENC}' timestamp='{format_timestamp(timestamp)}'"
    tail = f">{b64encode(stanza)}</plain>"
    length = len(head) + len(tail)
    if pad_to:
        if pad_to % 16:
            raise EncryptionError("pad_to must be a multiple of the AES block size")
        target = -(-(length + 1) // pad_to) * pad_to - 1
        head += " " * (target - length)
    return (head + tail).encode("ascii")


def seal(
    stanza: bytes,
    recipients: Sequence[Recipient],
    *,
    timestamp: datetime,
    cipher: algo.BlockCipher = algo.DEFAULT_BLOCK_CIPHER,
    random_bytes: RandomBytes = os.urandom,
    pad_to: int = 0,
) -> ET.Element:
    """Encrypt the stanza-string S' for every recipient; return the ``<e2e/>`` element.

    ``timestamp`` must come from a :class:`~.timestamps.TimestampSource` so it
    increases per sending client. ``pad_to`` pads E' to a size class (see
    :func:`build_plain`). Raises :class:`EncryptionError` on misuse.
    """
    if not recipients:
        raise EncryptionError("no recipient certificate")
    if timestamp.tzinfo is None:
        raise EncryptionError("timestamp must be an aware UTC datetime")
    for recipient in recipients:
        if not isinstance(recipient.public_key, rsa.RSAPublicKey):
            raise EncryptionError("recipient key is not RSA")
        if recipient.public_key.key_size < algo.MIN_RSA_BITS:
            raise EncryptionError(f"recipient RSA key under {algo.MIN_RSA_BITS} bits")
    session_key = random_bytes(cipher.key_length)  # step 2: R
    iv = random_bytes(algo.IV_LENGTH)
    if len(session_key) != cipher.key_length or len(iv) != algo.IV_LENGTH:
        raise EncryptionError("random source returned the wrong length")
    plain = build_plain(stanza, timestamp, pad_to)  # steps 3-6: E'
    padder = sym_padding.PKCS7(128).padder()
    padded = padder.update(plain) + padder.finalize()
    encryptor = Cipher(algorithms.AES(session_key), modes.CBC(iv)).encryptor()
    ciphertext = iv + encryptor.update(padded) + encryptor.finalize()  # step 7: T
    mac = algo.hmac_sha256(ciphertext, session_key)  # step 8: M = HMAC(key=T, msg=R)

    e2e = ET.Element(_E2E)  # step 10
    for recipient in recipients:
        wrapped = recipient.public_key.encrypt(session_key, algo.oaep_padding())  # step 9: K
        key = ET.SubElement(e2e, _KEY, {"cipher-algo": algo.RSA_OAEP_SHA256})
        if recipient.key_id is not None:
            key.set(KEY_ID_ATTRIBUTE, recipient.key_id)
        key.text = b64encode(wrapped)
    data = ET.SubElement(
        e2e,
        _DATA,
        {
            "cipher-algo": cipher.name,
            "mac-algo": algo.HMAC_SHA256,
            "mac-hash": b64encode(mac),
        },
    )
    data.text = b64encode(ciphertext)
    return e2e


def envelope_size(e2e: ET.Element, limit: int | None = None) -> int:
    """Characters of element names, text and attributes in an ``<e2e/>``: cheap,
    before any crypto; stops counting once past ``limit``."""
    total = 0
    for element in e2e.iter():
        total += len(element.tag) + len(element.text or "") + len(element.tail or "")
        for name, value in element.items():  # .items() builds no attrib dict
            total += len(name) + len(value)
        if limit is not None and total > limit:
            break
    return total


def open_envelope(
    e2e: ET.Element,
    private_key: rsa.RSAPrivateKey,
    *,
    key_id: str | None = None,
    max_size: int = DEFAULT_MAX_ENVELOPE_SIZE,
) -> OpenedEnvelope:
    """Open an ``<e2e/>`` with our private key; raise :class:`InvalidEnvelope` on any failure.

    ``key_id`` is our certificate's ``cert-sha256``: ``<key/>`` elements naming
    another certificate are skipped; unnamed ones (the draft's form) are tried.
    The MAC is verified, in constant time, before any decryption.
    """
    try:
        return _open(e2e, private_key, key_id, max_size)
    except Exception:  # noqa: S110 - every failure looks the same from outside...
        pass
    # ...raised here, outside the handler, so no context (and no frame holding
    # the session key or the decrypted bytes) travels with it.
    raise InvalidEnvelope()


def _unwrap(e2e: ET.Element, private_key: rsa.RSAPrivateKey, key_id: str | None) -> bytes:
    keys = e2e.findall(_KEY)
    mine = [k for k in keys if key_id is not None and k.get(KEY_ID_ATTRIBUTE) == key_id]
    candidates = mine or [k for k in keys if k.get(KEY_ID_ATTRIBUTE) is None]
    for key in candidates[:MAX_KEYS_TRIED]:
        if key.get("cipher-algo") not in algo.KEY_TRANSPORT_NAMES:
            continue
        try:
            wrapped = b64decode_strict(key.text)
        except ValueError:
            continue  # another recipient's broken key must not lock us out
        if len(wrapped) != (private_key.key_size + 7) // 8:
            continue
        try:
            return private_key.decrypt(wrapped, algo.oaep_padding())
        except ValueError:
            continue
    raise InvalidEnvelope()


def _open(
    e2e: ET.Element, private_key: rsa.RSAPrivateKey, key_id: str | None, max_size: int
) -> OpenedEnvelope:
    if e2e.tag != _E2E or envelope_size(e2e, max_size) > max_size:
        raise InvalidEnvelope()
    data_elements = e2e.findall(_DATA)
    if len(data_elements) != 1:
        raise InvalidEnvelope()
    data = data_elements[0]
    cipher = algo.BLOCK_CIPHERS.get(data.get("cipher-algo", ""))
    if cipher is None or data.get("mac-algo") != algo.HMAC_SHA256:
        raise InvalidEnvelope()
    mac_hash, mac_data = data.get("mac-hash"), data.get("mac-data")
    if mac_hash is not None and mac_data is not None and mac_hash != mac_data:
        raise InvalidEnvelope()
    expected_mac = b64decode_strict(mac_hash if mac_hash is not None else mac_data)
    ciphertext = b64decode_strict(data.text)
    if (
        len(expected_mac) != algo.MAC_LENGTH
        or len(ciphertext) < 2 * algo.IV_LENGTH
        or len(ciphertext) % algo.IV_LENGTH
    ):
        raise InvalidEnvelope()

    session_key = _unwrap(e2e, private_key, key_id)
    if len(session_key) != cipher.key_length:
        raise InvalidEnvelope()

    verifier = hmac.HMAC(ciphertext, hashes.SHA256())
    verifier.update(session_key)
    try:
        verifier.verify(expected_mac)
    except InvalidSignature:
        raise InvalidEnvelope() from None

    iv, body = ciphertext[: algo.IV_LENGTH], ciphertext[algo.IV_LENGTH :]
    decryptor = Cipher(algorithms.AES(session_key), modes.CBC(iv)).decryptor()
    padded = decryptor.update(body) + decryptor.finalize()
    unpadder = sym_padding.PKCS7(128).unpadder()
    plain_bytes = unpadder.update(padded) + unpadder.finalize()

    stanza, stanza_bytes, timestamp = read_plain(plain_bytes)
    return OpenedEnvelope(stanza, stanza_bytes, timestamp, expected_mac, cipher.name)


def read_plain(plain_bytes: bytes) -> tuple[ET.Element, bytes, datetime]:
    """E' read back (both profiles): the inner stanza (parsed safely), S' and N.
    :class:`InvalidEnvelope` unless it is one ``<plain/>`` holding one stanza
    that holds no envelope (never unwrapped recursively)."""
    plain = parse_untrusted(plain_bytes)
    if plain.tag != _PLAIN or len(plain) != 0:
        raise InvalidEnvelope()
    timestamp = parse_timestamp(plain.get("timestamp", ""))
    stanza_bytes = b64decode_strict(plain.text)
    stanza = parse_untrusted(stanza_bytes)
    if stanza.tag not in _STANZA_TAGS:
        raise InvalidEnvelope()
    if any(el.tag == _E2E for el in stanza.iter()):
        raise InvalidEnvelope()
    return stanza, stanza_bytes, timestamp
