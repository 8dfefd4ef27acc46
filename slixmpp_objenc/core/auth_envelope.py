"""The authenticated profile on the wire: the same ``<e2e/>`` element as the
draft's profile, told apart by its algorithm names (docs/PROTOCOL.md
section 13), sealed and opened with :mod:`.authenticated`.

::

    <e2e xmlns='urn:ietf:params:xml:ns:xmpp-objenc:0'>
      <key cipher-algo='HPKE-AUTH-X25519-SHA256-AES128GCM'
           identity-sha256='hex' cert-sha256='hex' enc='base64'>base64(ct)</key>
      ...one per recipient device...
      <data cipher-algo='AES-256-GCM' identity-sha256='hex' cert-sha256='hex'>base64(T)</data>
    </e2e>

``<data/>`` names the sender's identity and encryption certificates; each
``<key/>`` a recipient device's. E' is the draft's ``<plain/>`` (timestamp
and base64 of the stanza-string, padded to a size class). There is no
``mac-algo``: the AEAD and the wrap's associated data do its work. The
replay digest is SHA-256(T).
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

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from .authenticated import Wrap, open_content, open_wrap, seal_content, seal_wraps
from .constants import DEFAULT_MAX_ENVELOPE_SIZE, NS_OBJENC, qname
from .envelope import build_plain, envelope_size, read_plain
from .errors import EncryptionError, InvalidEnvelope
from .xmlsafe import b64decode_strict, b64encode

__all__ = [
    "CONTENT_ALGO",
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


@dataclass(frozen=True, slots=True)
class AuthSender:
    """Our side: the encryption key and the two certificate ids (SHA-256 of DER)."""

    encryption_key: X25519PrivateKey
    identity_id: bytes
    encryption_id: bytes


@dataclass(frozen=True, slots=True)
class AuthRecipient:
    """A recipient device: its two certificate ids and its X25519 key, taken
    from an encryption certificate that chains to its identity."""

    identity_id: bytes
    encryption_id: bytes
    public_key: X25519PublicKey


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


def is_authenticated(e2e: ET.Element) -> bool:
    """Whether an ``<e2e/>`` is in this profile (its ``<data/>`` says so)."""
    data = e2e.find(_DATA)
    return data is not None and data.get("cipher-algo") == CONTENT_ALGO


def addressed_to(e2e: ET.Element, keys: Sequence[AuthSender]) -> AuthSender | None:
    """Which of our keys (``keys``) a ``<key/>`` of this copy names, if any."""
    named = {
        (key.get("identity-sha256"), key.get("cert-sha256"))
        for key in e2e.findall(_KEY)[: MAX_WRAPS + 1]
        if key.get("cipher-algo") == WRAP_ALGO
    }
    for own in keys:
        if (own.identity_id.hex(), own.encryption_id.hex()) in named:
            return own
    return None


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
) -> ET.Element:
    """The ``<e2e/>`` for ``stanza`` (S'), one ``<key/>`` per recipient device.
    With ``introduce`` (our identity and encryption certificates, DER), a
    ``<device/>`` carries them too, for a recipient that cannot read our node
    (PROTOCOL.md 13.7). :class:`EncryptionError` without recipients or with a
    naive timestamp."""
    if not recipients:
        raise EncryptionError("no recipient device")
    if len(recipients) > MAX_WRAPS:
        raise EncryptionError(f"more than {MAX_WRAPS} recipient devices: no one would read it")
    if timestamp.tzinfo is None:
        raise EncryptionError("timestamp must be an aware UTC datetime")
    ids = (sender.identity_id, sender.encryption_id)
    plain = build_plain(stanza, timestamp, pad_to)
    key, sealed = seal_content(plain, *ids, random_bytes=random_bytes)
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
        element = ET.SubElement(
            e2e,
            _KEY,
            {
                "cipher-algo": WRAP_ALGO,
                "identity-sha256": wrap.recipient_identity.hex(),
                "cert-sha256": wrap.recipient_encryption.hex(),
                "enc": b64encode(wrap.enc),
            },
        )
        element.text = b64encode(wrap.ct)
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
) -> OpenedAuthEnvelope:
    """Open the copy meant for our device (``own``), proving that a device of
    ``sender`` (the outer stanza's bare JID) wrote it.

    One opaque :class:`InvalidEnvelope` for every failure: not this profile,
    over ``max_size``, no ``<key/>`` for our certificates, a sender we do not
    hold (``resolve_sender`` gives ``None``), a wrap that does not open with
    the sender's key, content changed, a malformed ``<plain/>`` or stanza.
    """
    try:
        return _open(e2e, own, resolve_sender, sender, max_size)
    except Exception:  # noqa: S110 - every failure looks the same from outside...
        pass
    raise InvalidEnvelope()  # ...raised outside the handler: nothing travels with it


def _open(
    e2e: ET.Element, own: AuthSender, resolve_sender: SenderResolver, sender: str, max_size: int
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
    sender_key = resolve_sender(sender, *sender_ids)
    if sender_key is None:
        raise InvalidEnvelope()
    key = open_wrap(wrap, sealed, own.encryption_key, sender_key, *sender_ids)
    stanza, stanza_bytes, timestamp = read_plain(open_content(key, sealed, *sender_ids))
    digest = hashlib.sha256(sealed).digest()
    return OpenedAuthEnvelope(stanza, stanza_bytes, timestamp, digest, sender, *sender_ids)


def _our_wrap(e2e: ET.Element, own: AuthSender) -> Wrap:
    keys = e2e.findall(_KEY)
    if not keys or len(keys) > MAX_WRAPS:
        raise InvalidEnvelope()
    for key in keys:
        if (
            key.get("cipher-algo") == WRAP_ALGO
            and key.get("identity-sha256") == own.identity_id.hex()
            and key.get("cert-sha256") == own.encryption_id.hex()
        ):
            return Wrap(
                own.identity_id,
                own.encryption_id,
                b64decode_strict(key.get("enc")),
                b64decode_strict(key.text),
            )
    raise InvalidEnvelope()


_HEX_ID: Final = re.compile("[0-9a-f]{64}")


def _id(text: str | None) -> bytes:
    if text is None or _HEX_ID.fullmatch(text) is None:
        raise InvalidEnvelope()
    return bytes.fromhex(text)
