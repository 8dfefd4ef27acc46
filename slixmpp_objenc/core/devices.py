"""What a certificate node publishes: one item per device (PROTOCOL.md 9, 13.6).

A device of the draft's profile publishes its RSA certificate
(``<certificate/>``); a device of the authenticated profile publishes its
identity and current encryption certificates in one ``<device/>``, and
while it migrates also its RSA certificate, with a *vouch*: the RSA key's
signature over the identity certificate, which lets contacts that pinned
or verified the RSA certificate carry that trust over once, without a
prompt. The ML-KEM-768 certificate of the hybrid wrap (``core.hybrid``),
issued and rotated with the encryption certificate, travels beside it
(``<kem/>``) and hangs off it (:attr:`~.certificates.EncryptionKey.kem`).
:func:`read_publication` checks every item; one bad item never spoils the
others.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from .authenticated import PROFILE_ID
from .certificates import (
    MAX_CERTIFICATE_SIZE,
    MAX_CERTIFICATES_PER_JID,
    EncryptionKey,
    Identity,
    KemKey,
    Normalizer,
    PeerCertificate,
    certificate_fingerprint,
    load_certificate,
    normalize_bare_jid,
    validate_peer_certificate,
)
from .errors import CertificateError
from .hybrid import validate_kem_certificate
from .identities import (
    PeerIdentity,
    validate_encryption_certificate,
    validate_identity_certificate,
)
from .timestamps import utcnow

__all__ = [
    "MAX_ITEMS_EXAMINED",
    "VOUCH_LABEL",
    "DevicePayload",
    "Limit",
    "Publication",
    "PublishedItem",
    "check_vouch",
    "load_device",
    "read_publication",
    "validate_device",
    "vouch_for",
]

MAX_ITEMS_EXAMINED: Final = 64
"""New certificates parsed and checked per fetch, at most (the work a node
full of junk can make us do)."""
VOUCH_LABEL: Final = PROFILE_ID + b" vouch"
"""The vouch signs ``VOUCH_LABEL || 0x00 || SHA-256(identity certificate DER)``."""
_MAX_SIGNATURE: Final = 2048  # RSA-16384: 2048 bytes
_SAME_ISSUANCE: Final = timedelta(seconds=1)
"""How far the ``notBefore`` of an ML-KEM certificate may be from that of the
encryption certificate it was issued with (X.509 times are whole seconds)."""


def validate_device(
    certificate: x509.Certificate | bytes,
    *,
    encryption: x509.Certificate | bytes | None = None,
    kem: x509.Certificate | bytes | None = None,
    now: datetime | None = None,
    normalize: Normalizer = normalize_bare_jid,
) -> PeerCertificate:
    """A device certificate checked for use: an RSA certificate
    (:func:`~.certificates.validate_peer_certificate`), or an Ed25519 identity
    certificate (:func:`~.identities.validate_identity_certificate`) with,
    when given, its ``encryption`` certificate checked against it.

    ``encryption`` is a certificate, DER, or PEM holding the X25519
    certificate alone or followed by its ML-KEM-768 certificate (what
    :meth:`~.certificates.EncryptionKey.pem` gives); ``kem`` is that ML-KEM
    certificate given apart (DER or PEM), never both. The ML-KEM certificate
    must chain to the identity (:func:`~.hybrid.validate_kem_certificate`) and
    be of the encryption certificate's issuance (the same ``notBefore``,
    within a second). :class:`CertificateError` with the reason for anything
    else."""
    now = now or utcnow()
    loaded = _loaded(certificate)
    try:
        is_identity = isinstance(loaded.public_key(), Ed25519PublicKey)
    except Exception as exc:  # an unknown key algorithm
        raise CertificateError(f"unusable certificate: {type(exc).__name__}") from exc
    if not is_identity:
        if encryption is not None or kem is not None:
            raise CertificateError("an RSA certificate has no encryption certificate")
        return validate_peer_certificate(loaded, now=now, normalize=normalize)
    identity = validate_identity_certificate(loaded, now=now, normalize=normalize)
    key = None
    if encryption is not None:
        key = _encryption_key(identity, encryption, kem, now, normalize)
    elif kem is not None:
        raise CertificateError("an ML-KEM certificate comes with its encryption certificate")
    return PeerCertificate(
        identity.certificate, identity.public_key, identity.jids, identity.fingerprint, key
    )


def _encryption_key(
    identity: PeerIdentity,
    encryption: x509.Certificate | bytes,
    kem: x509.Certificate | bytes | None,
    now: datetime,
    normalize: Normalizer,
) -> EncryptionKey:
    issued, *bundled = _certificates(
        encryption, 2, "an encryption certificate and at most its ML-KEM one"
    )
    if bundled and kem is not None:
        raise CertificateError("two ML-KEM certificates for one encryption certificate")
    public_key = validate_encryption_certificate(issued, identity, now=now, normalize=normalize)
    if kem is not None:
        bundled = _certificates(kem, 1, "one ML-KEM certificate")
    if not bundled:
        return EncryptionKey(issued, public_key, certificate_fingerprint(issued))
    [kem_certificate] = bundled
    kem_public = validate_kem_certificate(kem_certificate, identity, now=now, normalize=normalize)
    drift = kem_certificate.not_valid_before_utc - issued.not_valid_before_utc
    if abs(drift) > _SAME_ISSUANCE:
        raise CertificateError("ML-KEM certificate was not issued with the encryption certificate")
    kem_key = KemKey(kem_certificate, kem_public, certificate_fingerprint(kem_certificate))
    return EncryptionKey(issued, public_key, certificate_fingerprint(issued), kem_key)


def _certificates(given: x509.Certificate | bytes, most: int, what: str) -> list[x509.Certificate]:
    """A certificate, DER (one), or PEM holding one to ``most`` certificates, in
    order; :class:`CertificateError` otherwise (``what`` says what is expected)."""
    if isinstance(given, x509.Certificate):
        return [given]
    pem = bytes(given) if isinstance(given, bytes | bytearray | memoryview) else b""
    if not pem.lstrip().startswith(b"-----"):
        return [load_certificate(given)]  # DER, or the reason it is not
    if len(pem) > 2 * most * MAX_CERTIFICATE_SIZE:
        raise CertificateError(f"{len(pem)} bytes of certificates is over the size limit")
    try:
        certificates = x509.load_pem_x509_certificates(pem)
    except Exception as exc:  # any parsing failure of cryptography
        raise CertificateError(f"cannot load certificates: {exc}") from exc
    if not 1 <= len(certificates) <= most:
        raise CertificateError(f"{len(certificates)} certificates, expected {what}")
    return certificates


def load_device(
    pem: bytes, *, now: datetime | None = None, normalize: Normalizer = normalize_bare_jid
) -> PeerCertificate:
    """A device handed over by hand (PEM): one RSA certificate, or an identity
    certificate followed by its encryption certificate and, optionally, its
    ML-KEM certificate (what ``objenc export`` and ``ObjEnc.certificate_pem()``
    give). :class:`CertificateError` for anything else, an identity alone
    included."""
    if isinstance(pem, str):
        pem = pem.encode("utf-8", "replace")
    if not isinstance(pem, bytes | bytearray | memoryview):
        raise CertificateError(f"cannot load certificates from {type(pem).__name__}")
    if len(pem) > 6 * MAX_CERTIFICATE_SIZE:
        raise CertificateError(f"{len(pem)} bytes is over the size limit")
    try:
        certificates = x509.load_pem_x509_certificates(bytes(pem))
    except Exception:
        certificates = [load_certificate(bytes(pem))]  # DER, or its reason
    if len(certificates) > 3:
        raise CertificateError(f"{len(certificates)} certificates: one device is one to three")
    encryption = certificates[1] if len(certificates) >= 2 else None
    kem = certificates[2] if len(certificates) == 3 else None
    peer = validate_device(
        certificates[0], encryption=encryption, kem=kem, now=now, normalize=normalize
    )
    if peer.authenticated and peer.encryption is None:
        raise CertificateError("an identity certificate needs its encryption certificate")
    return peer


def _loaded(certificate: x509.Certificate | bytes) -> x509.Certificate:
    if isinstance(certificate, x509.Certificate):
        return certificate
    return load_certificate(certificate)


def _vouched_message(identity_certificate: x509.Certificate) -> bytes:
    der = identity_certificate.public_bytes(serialization.Encoding.DER)
    return VOUCH_LABEL + b"\x00" + hashlib.sha256(der).digest()


def _pss() -> padding.PSS:
    return padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)


def vouch_for(rsa_identity: Identity, identity_certificate: x509.Certificate) -> bytes:
    """Our RSA key's vouch for our new identity certificate: RSASSA-PSS
    (SHA-256, MGF1-SHA-256, 32-byte salt, RFC 8017 section 8.1) over
    :data:`VOUCH_LABEL`, a zero byte and SHA-256 of the identity's DER."""
    return rsa_identity.private_key.sign(
        _vouched_message(identity_certificate), _pss(), hashes.SHA256()
    )


def check_vouch(rsa: PeerCertificate, identity: PeerCertificate, signature: bytes) -> bool:
    """Whether ``signature`` is ``rsa``'s vouch for ``identity``, and both name
    the same JIDs (a vouch never carries trust to another account)."""
    if not isinstance(rsa.public_key, _RSA) or not identity.authenticated:
        return False
    if rsa.jids != identity.jids or len(signature) > _MAX_SIGNATURE:
        return False
    try:
        rsa.public_key.verify(
            signature, _vouched_message(identity.certificate), _pss(), hashes.SHA256()
        )
    except (InvalidSignature, ValueError):
        return False
    return True


_RSA: Final = rsa.RSAPublicKey


@dataclass(frozen=True, slots=True)
class DevicePayload:
    """A ``<device/>`` item payload as read off the wire (counts not yet checked)."""

    identity: tuple[str, ...]
    """The character data of each ``<identity/>`` child (one is expected)."""
    encryption: tuple[str, ...]
    """Of each ``<encryption/>`` child (one is expected)."""
    vouches: tuple[tuple[str, str], ...] = ()
    """``(cert-sha256, base64 signature)`` of each ``<vouch/>`` (at most one)."""
    kem: tuple[str, ...] = ()
    """Of each ``<kem/>`` child: the ML-KEM certificate (at most one)."""


@dataclass(frozen=True, slots=True)
class PublishedItem:
    """One item of a certificate node, as read off the wire."""

    item_id: str
    payloads: tuple[str, ...]
    """The character data of each ``<certificate/>`` child (one is expected)."""
    device: DevicePayload | None = None
    """The ``<device/>`` payload, for a device of the authenticated profile."""


@dataclass(frozen=True, slots=True)
class Limit:
    """A cap a publication exceeded: ``name`` is ``certificates-per-jid``,
    ``certificates-per-item``, ``certificate-size`` or ``items-examined``."""

    name: str
    found: int
    maximum: int


@dataclass(frozen=True, slots=True)
class Publication:
    """What :func:`read_publication` took from a node, and what it left out."""

    certificates: dict[str, PeerCertificate]
    """Fingerprint -> certificate: those held before first, then in node order.
    An identity comes with its encryption certificate."""
    item_ids: dict[str, str]
    """Fingerprint -> the id of the item that carried it."""
    skipped: tuple[tuple[str, str], ...]
    limits: tuple[Limit, ...]
    vouches: dict[str, tuple[str, bytes]]
    """Identity fingerprint -> (RSA certificate fingerprint, signature), not yet
    checked (:func:`check_vouch`, against the RSA certificate we hold)."""


@dataclass(frozen=True, slots=True)
class _Candidate:
    item_id: str
    der: bytes
    encryption: bytes | None = None
    vouch: tuple[str, bytes] | None = None
    kem: bytes | None = None


class _Reader:
    def __init__(self) -> None:
        self.skipped: list[tuple[str, str]] = []
        self.counts: dict[str, list[int]] = {}

    def over(self, name: str, found: int, maximum: int) -> None:
        entry = self.counts.setdefault(name, [0, maximum])
        entry[0] = max(entry[0], found)

    def der(self, item_id: str, text: str) -> bytes | None:
        text = "".join(text.split())
        if len(text) > 2 * MAX_CERTIFICATE_SIZE:
            self.over("certificate-size", len(text) * 3 // 4, MAX_CERTIFICATE_SIZE)
            self.skipped.append((item_id, f"certificate of ~{len(text) * 3 // 4} bytes"))
            return None
        try:
            der = base64.b64decode(text, validate=True)
        except ValueError:
            self.skipped.append((item_id, "not base64"))
            return None
        if len(der) > MAX_CERTIFICATE_SIZE:
            self.over("certificate-size", len(der), MAX_CERTIFICATE_SIZE)
            self.skipped.append((item_id, f"certificate of {len(der)} bytes"))
            return None
        return der

    def candidate(self, item: PublishedItem) -> _Candidate | None:
        device = item.device
        if device is None:
            if len(item.payloads) != 1:
                if len(item.payloads) > 1:
                    self.over("certificates-per-item", len(item.payloads), 1)
                self.skipped.append(
                    (item.item_id, f"{len(item.payloads)} certificates in one item")
                )
                return None
            der = self.der(item.item_id, item.payloads[0])
            return None if der is None else _Candidate(item.item_id, der)
        if item.payloads or len(device.identity) != 1 or len(device.encryption) != 1:
            count = len(device.identity) + len(device.encryption) + len(item.payloads)
            if count > 2:
                self.over("certificates-per-item", count, 2)
            self.skipped.append((item.item_id, "not one identity and one encryption certificate"))
            return None
        if len(device.vouches) > 1:
            self.skipped.append((item.item_id, "more than one vouch"))
            return None
        if len(device.kem) > 1:
            self.skipped.append((item.item_id, "more than one ML-KEM certificate"))
            return None
        identity = self.der(item.item_id, device.identity[0])
        encryption = self.der(item.item_id, device.encryption[0])
        if identity is None or encryption is None:
            return None
        kem = None
        if device.kem:
            kem = self.der(item.item_id, device.kem[0])
            if kem is None:
                return None
        vouch = None
        if device.vouches:
            vouch = _vouch(*device.vouches[0])
            if vouch is None:
                self.skipped.append((item.item_id, "a malformed vouch"))
                return None
        return _Candidate(item.item_id, identity, encryption, vouch, kem)


def _identity_alone(
    found: _Candidate, now: datetime, normalize: Normalizer
) -> PeerCertificate | None:
    """A ``<device/>`` whose identity is fine but whose encryption certificate is
    not: the identity, without it; ``None`` otherwise."""
    if found.encryption is None:
        return None
    try:
        peer = validate_device(found.der, now=now, normalize=normalize)
    except CertificateError:
        return None
    return peer if peer.authenticated else None


def _vouch(fingerprint: str, text: str) -> tuple[str, bytes] | None:
    if len(fingerprint) != 64 or fingerprint.strip("0123456789abcdef"):
        return None
    try:
        signature = base64.b64decode("".join(text.split()), validate=True)
    except ValueError:
        return None
    return (fingerprint, signature) if 0 < len(signature) <= _MAX_SIGNATURE else None


def read_publication(
    jid: str,
    items: Sequence[PublishedItem],
    *,
    held: Collection[str] = (),
    now: datetime | None = None,
    normalize: Normalizer = normalize_bare_jid,
    max_certificates: int = MAX_CERTIFICATES_PER_JID,
    max_examined: int = MAX_ITEMS_EXAMINED,
    pinned: Collection[str] | None = None,
) -> Publication:
    """The usable device certificates a JID's node publishes (PROTOCOL.md 9, 13.6).

    An item carries one RSA ``<certificate/>`` or one ``<device/>`` (one
    identity, one encryption certificate it issued, at most one ML-KEM
    certificate issued with it, at most one vouch). An encryption or ML-KEM
    certificate that does not check out leaves the identity alone (without
    either: the ones held stay), with the reason in ``skipped``.
    An item that is malformed, too large, unusable (any
    :class:`CertificateError` of :func:`validate_device`) or not naming
    ``jid`` is skipped with its reason. Certificates already ``held``
    (fingerprints) are examined first and always taken; new ones are taken
    while fewer than ``max_certificates`` are, and at most ``max_examined``
    new ones are examined (an item's ML-KEM certificate counts as one more).
    Each cap exceeded is reported in ``limits``.

    An RSA certificate that a ``<device/>`` of the same node vouches for is
    that device's face for readers of the draft's profile: it is left out
    (one device, one decision), unless it is ``pinned`` (held and trusted:
    its vouch is what carries that trust to the identity). ``pinned``
    defaults to ``held``.
    """
    now = now or utcnow()
    reader = _Reader()
    candidates: dict[str, _Candidate] = {}
    for item in items:
        found = reader.candidate(item)
        if found is None:
            continue
        fingerprint = hashlib.sha256(found.der).hexdigest()
        if fingerprint in candidates:
            reader.skipped.append((item.item_id, "a certificate published twice"))
            continue
        candidates[fingerprint] = found

    ordered = [fp for fp in candidates if fp in held] + [fp for fp in candidates if fp not in held]
    taken: dict[str, PeerCertificate] = {}
    item_ids: dict[str, str] = {}
    vouches: dict[str, tuple[str, bytes]] = {}
    examined = 0
    for position, fingerprint in enumerate(ordered):
        found = candidates[fingerprint]
        if fingerprint not in held:
            if len(taken) >= max_certificates:
                left = len(ordered) - position
                reader.over("certificates-per-jid", len(taken) + left, max_certificates)
                rest = ordered[position:]
                reader.skipped.extend((candidates[fp].item_id, "over the limit") for fp in rest)
                break
            cost = 1 if found.kem is None else 2  # the ML-KEM certificate: one more parsed
            if examined + cost > max_examined:
                reader.over("items-examined", len(ordered) - position + examined, max_examined)
                rest = ordered[position:]
                reader.skipped.extend((candidates[fp].item_id, "not examined") for fp in rest)
                break
            examined += cost
        try:
            peer = validate_device(
                found.der, encryption=found.encryption, kem=found.kem, now=now, normalize=normalize
            )
        except CertificateError as exc:
            alone = _identity_alone(found, now, normalize)
            if alone is None:
                reader.skipped.append((found.item_id, str(exc)))
                continue
            peer = alone
            # the identity stands; its encryption certificate does not (a server
            # substituted one): the one held before stays in use
            reader.skipped.append((found.item_id, f"encryption certificate: {exc}"))
        if found.encryption is None and peer.authenticated:  # a <certificate/> item
            reader.skipped.append((found.item_id, "an identity certificate alone"))
            continue
        if jid not in peer.jids:
            names = ", ".join(sorted(peer.jids))
            reader.skipped.append((found.item_id, f"names {names}, not {jid}"))
            continue
        taken[fingerprint] = peer
        item_ids[fingerprint] = found.item_id
        if found.vouch is not None:
            vouches[fingerprint] = found.vouch
    for fingerprint, (rsa_fingerprint, signature) in vouches.items():
        # A device's RSA certificate, published beside its <device/> for readers of
        # the draft's profile only, is the same device: not a second one to decide
        # on. One we already hold stays (its vouch carries its trust over, once).
        rsa = taken.get(rsa_fingerprint)
        kept = held if pinned is None else pinned
        if (
            rsa is not None
            and rsa_fingerprint not in kept
            and check_vouch(rsa, taken[fingerprint], signature)
        ):
            del taken[rsa_fingerprint]
            reason = f"the draft-profile certificate of device {fingerprint}"
            reader.skipped.append((item_ids.pop(rsa_fingerprint), reason))
    limits = tuple(Limit(name, n, maximum) for name, (n, maximum) in reader.counts.items())
    return Publication(taken, item_ids, tuple(reader.skipped), limits, vouches)
