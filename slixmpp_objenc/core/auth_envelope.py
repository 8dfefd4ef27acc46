"""The authenticated profile on the wire: the same ``<e2e/>`` element as the
draft's profile, told apart by its algorithm names (docs/PROTOCOL.md
section 13), sealed and opened with :mod:`.authenticated`.

::

    <e2e xmlns='urn:ietf:params:xml:ns:xmpp-objenc:0'>
      <key cipher-algo='HPKE-AUTH-X25519-SHA256-AES128GCM'
           identity-sha256='hex' cert-sha256='hex' enc='base64'>base64(ct)</key>
      <key cipher-algo='HPKE-AUTHPSK-X25519-MLKEM768-SHA256-AES128GCM'
           identity-sha256='hex' cert-sha256='hex' kem-sha256='hex'
           enc='base64' kem-ct='base64'>base64(ct)</key>
      ...one per recipient device, all of one kind...
      <data cipher-algo='AES-256-GCM' identity-sha256='hex' cert-sha256='hex'>base64(T)</data>
    </e2e>

``<data/>`` names the sender's identity and encryption certificates; each
``<key/>`` a recipient device's. E' is the draft's ``<plain/>`` (timestamp
and base64 of the stanza-string, padded to a size class). There is no
``mac-algo``: the AEAD and the wrap's associated data do its work. The
replay digest is SHA-256(T).

The second ``<key/>`` is the post-quantum hybrid wrap (:mod:`.hybrid`,
docs/_hybrid_draft.md): HPKE AuthPSK with a PSK from ML-KEM-768 and an
optional passphrase. A stanza sealed with ``hybrid`` carries only hybrid
wraps: an Auth-mode wrap of the same ``R`` would undo the post-quantum
protection.
"""

from __future__ import annotations

import hashlib
import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from cryptography.hazmat.primitives.asymmetric.mlkem import MLKEM768PrivateKey, MLKEM768PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from .authenticated import Wrap, open_content, open_wrap, seal_content, seal_wraps
from .constants import DEFAULT_MAX_ENVELOPE_SIZE, NS_OBJENC, qname
from .envelope import build_plain, envelope_size, read_plain
from .errors import EncryptionError, InvalidEnvelope
from .hybrid import (
    CT_SIZE,
    ENC_SIZE,
    HYBRID_CIPHER_ALGO,
    KEM_CIPHERTEXT_SIZE,
    SECOND_SIZE,
    HybridWrap,
    open_hybrid_wrap,
    seal_hybrid_wraps,
)
from .xmlsafe import b64decode_strict, b64encode

__all__ = [
    "CONTENT_ALGO",
    "HYBRID_CIPHER_ALGO",
    "WRAP_ALGO",
    "AuthRecipient",
    "AuthSender",
    "OpenedAuthEnvelope",
    "SenderResolver",
    "addressed_to",
    "introduction",
    "is_authenticated",
    "open_authenticated",
    "seal_authenticated",
    "sender_ids",
    "wrap_kind",
]

WRAP_ALGO: Final = "HPKE-AUTH-X25519-SHA256-AES128GCM"
"""``<key cipher-algo/>``: RFC 9180 mode_auth, DHKEM(X25519, HKDF-SHA256),
HKDF-SHA256, AES-128-GCM."""
CONTENT_ALGO: Final = "AES-256-GCM"
MAX_WRAPS: Final = 64
"""Recipient devices per stanza, at most: a sender refuses more, a receiver
refuses an envelope with more ``<key/>`` elements before any cryptography."""

_E2E: Final = qname(NS_OBJENC, "e2e")
_KEY: Final = qname(NS_OBJENC, "key")
_DATA: Final = qname(NS_OBJENC, "data")
_DEVICE: Final = qname(NS_OBJENC, "device")
MAX_INTRODUCED: Final = 16 * 1024
"""Largest certificate an introduction may carry, in DER bytes."""
_ID_SIZE: Final = 32


def _both_or_neither(kem_id: bytes | None, kem_key: object) -> None:
    if (kem_id is None) != (kem_key is None):
        raise ValueError("an ML-KEM key and its certificate id go together")


@dataclass(frozen=True, slots=True)
class AuthSender:
    """Our side: the encryption key and the two certificate ids (SHA-256 of DER);
    with ``kem_key`` and ``kem_id`` (both or neither, else ``ValueError``), our
    ML-KEM-768 key and its certificate id, to open hybrid wraps."""

    encryption_key: X25519PrivateKey
    identity_id: bytes
    encryption_id: bytes
    kem_key: MLKEM768PrivateKey | None = None
    kem_id: bytes | None = None

    def __post_init__(self) -> None:
        _both_or_neither(self.kem_id, self.kem_key)


@dataclass(frozen=True, slots=True)
class AuthRecipient:
    """A recipient device: its two certificate ids and its X25519 key, taken
    from an encryption certificate that chains to its identity."""

    identity_id: bytes
    encryption_id: bytes
    public_key: X25519PublicKey
    kem_id: bytes | None = None
    """Its ML-KEM-768 certificate's id, with ``kem_key`` (both or neither, else
    ``ValueError``): needed for a hybrid wrap."""
    kem_key: MLKEM768PublicKey | None = None

    def __post_init__(self) -> None:
        _both_or_neither(self.kem_id, self.kem_key)


SenderResolver = Callable[[str, bytes, bytes], X25519PublicKey | None]
"""``(sender bare JID, identity id, encryption id) -> X25519 key`` of a device
we hold **for that JID** (its identity fetched from that JID's node, the
encryption certificate checked against it), or ``None``. The JID is the
stanza's outer sender: a device of another JID (a contact, a co-recipient)
must not be found, or it could speak as anyone."""


@dataclass(frozen=True, slots=True)
class OpenedAuthEnvelope:
    """What :func:`open_authenticated` recovered, and whom it proved it from."""

    stanza: ET.Element
    stanza_bytes: bytes
    timestamp: datetime
    digest: bytes
    """SHA-256(T): the replay digest."""
    sender: str
    """The bare JID a device of which proved it wrote this."""
    sender_identity_id: bytes
    """The sender device's identity certificate id: proven, not claimed."""
    sender_encryption_id: bytes
    hybrid: bool = False
    """Whether our wrap was the hybrid one (ML-KEM-768, and ``second`` if given)."""


def is_authenticated(e2e: ET.Element) -> bool:
    """Whether an ``<e2e/>`` is in this profile (its ``<data/>`` says so)."""
    data = e2e.find(_DATA)
    return data is not None and data.get("cipher-algo") == CONTENT_ALGO


def _is_ours(key: ET.Element, own: AuthSender) -> bool:
    """An Auth-mode ``<key/>`` naming our two ids, or a hybrid one naming our
    three (none without an ML-KEM key of ours)."""
    if (key.get("identity-sha256"), key.get("cert-sha256")) != (
        own.identity_id.hex(),
        own.encryption_id.hex(),
    ):
        return False
    algo = key.get("cipher-algo")
    if algo == HYBRID_CIPHER_ALGO:
        return own.kem_id is not None and key.get("kem-sha256") == own.kem_id.hex()
    return algo == WRAP_ALGO


def addressed_to(e2e: ET.Element, keys: Sequence[AuthSender]) -> AuthSender | None:
    """Which of our keys (``keys``) a ``<key/>`` of this copy names, if any: an
    Auth-mode one by our identity and encryption ids, a hybrid one by those
    and our ML-KEM id."""
    named = e2e.findall(_KEY)[: MAX_WRAPS + 1]
    for own in keys:
        if any(_is_ours(key, own) for key in named):
            return own
    return None


def wrap_kind(e2e: ET.Element, own: AuthSender) -> str | None:
    """The ``cipher-algo`` of the one ``<key/>`` of this copy for ``own``:
    :data:`WRAP_ALGO` (Auth mode) or :data:`HYBRID_CIPHER_ALGO`; ``None`` for
    none or several (which do not open). Says what the stanza claims, before
    opening it: :attr:`OpenedAuthEnvelope.hybrid` says what opened."""
    ours = [key for key in e2e.findall(_KEY)[: MAX_WRAPS + 1] if _is_ours(key, own)]
    return ours[0].get("cipher-algo") if len(ours) == 1 else None


def sender_ids(e2e: ET.Element) -> tuple[bytes, bytes] | None:
    """The sender's (identity id, encryption id) as ``<data/>`` claims them, or
    ``None`` when malformed. A claim: only opening proves it."""
    data = e2e.findall(_DATA)
    if len(data) != 1:
        return None
    try:
        return _id(data[0].get("identity-sha256")), _id(data[0].get("cert-sha256"))
    except InvalidEnvelope:
        return None


def seal_authenticated(
    stanza: bytes,
    sender: AuthSender,
    recipients: Sequence[AuthRecipient],
    *,
    timestamp: datetime,
    pad_to: int = 0,
    random_bytes: Callable[[int], bytes] = os.urandom,
    ephemeral_ikm: list[bytes] | None = None,
    introduce: tuple[bytes, bytes] | None = None,
    hybrid: bool = False,
    second: bytes = b"",
) -> ET.Element:
    """The ``<e2e/>`` for ``stanza`` (S'), one ``<key/>`` per recipient device.
    With ``introduce`` (our identity and encryption certificates, DER), a
    ``<device/>`` carries them too, for a recipient that cannot read our node
    (PROTOCOL.md 13.7).

    With ``hybrid``, every ``<key/>`` is a hybrid wrap (:mod:`.hybrid`, about
    1.9 KB on the wire each), with ``second`` (``stretch_passphrase``'s 32
    bytes, or empty) in every one; T and ``<data/>`` are the same.

    :class:`EncryptionError` without recipients, over :data:`MAX_WRAPS`, with
    a naive timestamp, with ``hybrid`` and a recipient without an ML-KEM key
    (never an Auth-mode wrap beside hybrid ones: it would give ``R`` away to
    whoever breaks X25519), with ``second`` but no ``hybrid``. ``ValueError``
    for a ``second`` that is neither empty nor 32 bytes."""
    if not recipients:
        raise EncryptionError("no recipient device")
    if len(recipients) > MAX_WRAPS:
        raise EncryptionError(f"more than {MAX_WRAPS} recipient devices: no one would read it")
    if timestamp.tzinfo is None:
        raise EncryptionError("timestamp must be an aware UTC datetime")
    if second and not hybrid:
        raise EncryptionError("a passphrase goes only into hybrid wraps")
    if hybrid and any(r.kem_key is None for r in recipients):
        raise EncryptionError("hybrid: a recipient device has no ML-KEM key")
    ids = (sender.identity_id, sender.encryption_id)
    plain = build_plain(stanza, timestamp, pad_to)
    key, sealed = seal_content(plain, *ids, random_bytes=random_bytes)
    wraps: Sequence[Wrap | HybridWrap]
    if hybrid:
        wraps = seal_hybrid_wraps(
            key,
            sealed,
            sender.encryption_key,
            *ids,
            [_hybrid_recipient(r) for r in recipients],
            second=second,
            ephemeral_ikm=ephemeral_ikm,
        )
    else:
        wraps = seal_wraps(
            key,
            sealed,
            sender.encryption_key,
            *ids,
            [(r.identity_id, r.encryption_id, r.public_key) for r in recipients],
            ephemeral_ikm=ephemeral_ikm,
        )
    e2e = ET.Element(_E2E)
    for wrap in wraps:
        _add_key(e2e, wrap)
    data = ET.SubElement(
        e2e,
        _DATA,
        {
            "cipher-algo": CONTENT_ALGO,
            "identity-sha256": sender.identity_id.hex(),
            "cert-sha256": sender.encryption_id.hex(),
        },
    )
    data.text = b64encode(sealed)
    if introduce is not None:
        device = ET.SubElement(e2e, _DEVICE)
        for name, der in zip(("identity", "encryption"), introduce, strict=True):
            ET.SubElement(device, qname(NS_OBJENC, name)).text = b64encode(der)
    return e2e


def _hybrid_recipient(
    r: AuthRecipient,
) -> tuple[bytes, bytes, bytes, X25519PublicKey, MLKEM768PublicKey]:
    if r.kem_id is None or r.kem_key is None:
        raise EncryptionError("hybrid: a recipient device has no ML-KEM key")
    return r.identity_id, r.encryption_id, r.kem_id, r.public_key, r.kem_key


def _add_key(e2e: ET.Element, wrap: Wrap | HybridWrap) -> None:
    """One ``<key/>``, attributes in the order of PROTOCOL.md 13 and the draft."""
    hybrid = isinstance(wrap, HybridWrap)
    attributes = {
        "cipher-algo": HYBRID_CIPHER_ALGO if hybrid else WRAP_ALGO,
        "identity-sha256": wrap.recipient_identity.hex(),
        "cert-sha256": wrap.recipient_encryption.hex(),
    }
    if isinstance(wrap, HybridWrap):
        attributes["kem-sha256"] = wrap.recipient_kem.hex()
    attributes["enc"] = b64encode(wrap.enc)
    if isinstance(wrap, HybridWrap):
        attributes["kem-ct"] = b64encode(wrap.kem_ct)
    ET.SubElement(e2e, _KEY, attributes).text = b64encode(wrap.ct)


def introduction(e2e: ET.Element) -> tuple[bytes, bytes] | None:
    """The sender's identity and encryption certificates (DER) a copy carries,
    if it carries exactly one well-formed ``<device/>`` whose certificates have
    the ids ``<data/>`` names; ``None`` otherwise. Not checked as certificates:
    :func:`~.devices.validate_device` does that."""
    devices = e2e.findall(_DEVICE)
    ids = sender_ids(e2e)
    if len(devices) != 1 or ids is None:
        return None
    found = []
    for name in ("identity", "encryption"):
        children = devices[0].findall(qname(NS_OBJENC, name))
        if len(children) != 1:
            return None
        try:
            der = b64decode_strict(children[0].text)
        except ValueError:
            return None
        if not der or len(der) > MAX_INTRODUCED:
            return None
        found.append(der)
    identity, encryption = found
    if (hashlib.sha256(identity).digest(), hashlib.sha256(encryption).digest()) != ids:
        return None
    return identity, encryption


def open_authenticated(
    e2e: ET.Element,
    own: AuthSender,
    resolve_sender: SenderResolver,
    sender: str,
    *,
    max_size: int = DEFAULT_MAX_ENVELOPE_SIZE,
    second: bytes = b"",
    require_hybrid: bool = False,
) -> OpenedAuthEnvelope:
    """Open the copy meant for our device (``own``), proving that a device of
    ``sender`` (the outer stanza's bare JID) wrote it. Our ``<key/>`` opens
    with HPKE Auth or AuthPSK mode (RFC 9180 5.1.3, 5.1.4) as its
    ``cipher-algo`` says; a hybrid one with ``own.kem_key`` and ``second``
    (the passphrase's 32 bytes we hold for ``sender``, or empty).

    One opaque :class:`InvalidEnvelope` for every failure: not this profile,
    over ``max_size``, no ``<key/>`` for our certificates or several, wrong
    sizes (``enc`` 32 bytes, ``ct`` 48, ``kem-ct`` 1088, ids 64 lowercase hex;
    checked before any cryptography), an Auth-mode key while ``second`` or
    ``require_hybrid`` is set (a stanza that skipped the passphrase or the
    hybrid wrap), a sender we do not hold (``resolve_sender`` gives
    ``None``), a wrap that does not open (another passphrase or none), content
    changed, a malformed ``<plain/>`` or stanza. ``ValueError`` (a local
    error) for a ``second`` neither empty nor 32 bytes.
    """
    if len(second) not in (0, SECOND_SIZE):
        raise ValueError("second is empty or stretch_passphrase's 32 bytes")
    try:
        return _open(e2e, own, resolve_sender, sender, max_size, second, require_hybrid)
    except Exception:  # noqa: S110 - every failure looks the same from outside...
        pass
    raise InvalidEnvelope()  # ...raised outside the handler: nothing travels with it


def _open(
    e2e: ET.Element,
    own: AuthSender,
    resolve_sender: SenderResolver,
    sender: str,
    max_size: int,
    second: bytes,
    require_hybrid: bool,
) -> OpenedAuthEnvelope:
    if e2e.tag != _E2E or envelope_size(e2e, max_size) > max_size:
        raise InvalidEnvelope()
    data_elements = e2e.findall(_DATA)
    if len(data_elements) != 1 or data_elements[0].get("cipher-algo") != CONTENT_ALGO:
        raise InvalidEnvelope()
    data = data_elements[0]
    sender_ids = _id(data.get("identity-sha256")), _id(data.get("cert-sha256"))
    sealed = b64decode_strict(data.text)
    wrap = _our_wrap(e2e, own)
    hybrid = isinstance(wrap, HybridWrap)
    if not hybrid and (second or require_hybrid):
        raise InvalidEnvelope()
    sender_key = resolve_sender(sender, *sender_ids)
    if sender_key is None:
        raise InvalidEnvelope()
    if isinstance(wrap, HybridWrap):
        if own.kem_key is None:
            raise InvalidEnvelope()
        key = open_hybrid_wrap(
            wrap, sealed, own.encryption_key, own.kem_key, sender_key, *sender_ids, second=second
        )
    else:
        key = open_wrap(wrap, sealed, own.encryption_key, sender_key, *sender_ids)
    stanza, stanza_bytes, timestamp = read_plain(open_content(key, sealed, *sender_ids))
    digest = hashlib.sha256(sealed).digest()
    return OpenedAuthEnvelope(
        stanza, stanza_bytes, timestamp, digest, sender, *sender_ids, hybrid=hybrid
    )


def _our_wrap(e2e: ET.Element, own: AuthSender) -> Wrap | HybridWrap:
    """The one ``<key/>`` for ``own``, parsed strictly (sizes exact, a hybrid
    one's ``kem-sha256`` ours); several for us are refused, not chosen from."""
    keys = e2e.findall(_KEY)
    if not keys or len(keys) > MAX_WRAPS:
        raise InvalidEnvelope()
    ours = [key for key in keys if _is_ours(key, own)]
    if len(ours) != 1:
        raise InvalidEnvelope()
    [key] = ours
    enc, ct = _b64(key.get("enc"), ENC_SIZE), _b64(key.text, CT_SIZE)
    if key.get("cipher-algo") == WRAP_ALGO:
        if key.get("kem-sha256") is not None or key.get("kem-ct") is not None:
            raise InvalidEnvelope()
        return Wrap(own.identity_id, own.encryption_id, enc, ct)
    kem = _id(key.get("kem-sha256"))
    kem_ct = _b64(key.get("kem-ct"), KEM_CIPHERTEXT_SIZE)
    return HybridWrap(own.identity_id, own.encryption_id, kem, enc, ct, kem_ct)


def _b64(text: str | None, size: int) -> bytes:
    """Strict base64 of exactly ``size`` bytes; a longer text is not decoded."""
    if text is None or len(text) > 2 * size + 64:
        raise InvalidEnvelope()
    value = b64decode_strict(text)
    if len(value) != size:
        raise InvalidEnvelope()
    return value


_HEX_ID: Final = re.compile("[0-9a-f]{64}")


def _id(text: str | None) -> bytes:
    if text is None or _HEX_ID.fullmatch(text) is None:
        raise InvalidEnvelope()
    return bytes.fromhex(text)
