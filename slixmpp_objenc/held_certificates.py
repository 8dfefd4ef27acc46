"""Checked views of the peer certificates the key ring holds, cached: the stanza
path validates a held device once, not per stanza. No slixmpp, no I/O.

A peer's encryption certificates (authenticated profile, PROTOCOL.md 13.10):
the newest one is encrypted to; the ones it replaced, while still valid, only
prove the sender of stanzas sealed before the rotation and delivered late
(offline storage, an archive), and are never encrypted to. A publication
cannot take us back to an older certificate (:func:`newer_encryption`).
"""

from __future__ import annotations

import itertools
from collections import OrderedDict
from datetime import datetime
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

from .core import CertificateError, PeerCertificate, load_certificate
from .core.certificates import Normalizer, canonical_jid, certificate_fingerprint
from .core.devices import validate_device
from .store import PeerRecord

__all__ = [
    "MAX_PREVIOUS",
    "CheckedCertificates",
    "encryption_valid",
    "newer_encryption",
    "previous_after",
]

MAX_PREVIOUS: Final = 4
"""Earlier encryption certificates kept per identity (a rotation a week, valid
37 days: about five are ever valid at once, the current one included)."""
MAX_CACHED_PER_IDENTITY: Final = MAX_PREVIOUS + 2
"""Checked views kept per identity, least recently used dropped: a contact that
rotates without end cannot grow our memory."""


class CheckedCertificates:
    """Held records, validated (valid now, naming their JID), cached by content."""

    def __init__(self, normalize: Normalizer) -> None:
        self._normalize = normalize
        self._cache: dict[str, OrderedDict[bytes | None, PeerCertificate]] = {}

    def remember(self, certificate: PeerCertificate, encryption: bytes | None) -> None:
        """A certificate already checked (just observed), under its encryption PEM."""
        self._put(certificate.fingerprint, encryption, certificate)

    def _put(self, fingerprint: str, encryption: bytes | None, peer: PeerCertificate) -> None:
        held = self._cache.setdefault(fingerprint, OrderedDict())
        held[encryption] = peer
        held.move_to_end(encryption)
        while len(held) > MAX_CACHED_PER_IDENTITY:
            held.popitem(last=False)

    def device(self, record: PeerRecord, now: datetime) -> PeerCertificate | None:
        """The record's certificate with its current encryption certificate, if both
        are valid now and name the record's JID; ``None`` otherwise."""
        return self._checked(record, record.encryption_pem, now)

    def previous_key(
        self, record: PeerRecord, encryption: str, now: datetime
    ) -> X25519PublicKey | None:
        """The key of an earlier encryption certificate of this identity with the id
        ``encryption``, still valid now: the sender of a stanza sealed before it
        rotated. Never one to encrypt to."""
        for pem in split_pem(record.previous_encryption_pem):
            peer = self._checked(record, pem, now)
            if peer is not None and peer.encryption and peer.encryption.fingerprint == encryption:
                return peer.encryption.public_key
        return None

    def superseded_at(self, record: PeerRecord, encryption: str, now: datetime) -> datetime | None:
        """When the earlier encryption certificate ``encryption`` was replaced: the
        ``notBefore`` of the one that followed it. ``None`` for the current one or
        one not held. A stanza it sealed must be dated before (PROTOCOL.md 13.10)."""
        if not record.previous_encryption_pem:
            return None  # nothing replaced: the usual case, no parsing per stanza
        current = self.device(record, now)
        if current and current.encryption and current.encryption.fingerprint == encryption:
            return None  # its current key (cached): not replaced
        chain = split_pem(record.encryption_pem) + split_pem(record.previous_encryption_pem)
        for newer, pem in itertools.pairwise(chain):
            try:
                certificate, successor = load_certificate(pem), load_certificate(newer)
            except CertificateError:
                continue
            if certificate_fingerprint(certificate) == encryption:
                return successor.not_valid_before_utc
        return None

    def _checked(
        self, record: PeerRecord, encryption: bytes | None, now: datetime
    ) -> PeerCertificate | None:
        held = self._cache.get(record.fingerprint)
        cached = held.get(encryption) if held is not None else None
        if cached is None:
            try:
                cached = validate_device(
                    record.cert_pem, encryption=encryption, now=now, normalize=self._normalize
                )
            except CertificateError:
                return None
        self._put(record.fingerprint, encryption, cached)
        try:
            bare = canonical_jid(record.jid, self._normalize)
        except ValueError:
            return None
        if cached.expired(now) or bare not in cached.jids:
            return None
        return cached if encryption_valid(cached, now) else None


def split_pem(bundle: bytes | None) -> list[bytes]:
    """Each certificate of a PEM bundle, as PEM; nothing for ``None`` or garbage."""
    if not bundle:
        return []
    try:
        certificates = x509.load_pem_x509_certificates(bundle)
    except ValueError:
        return []
    return [c.public_bytes(serialization.Encoding.PEM) for c in certificates]


def previous_after(replaced: bytes | None, previous: bytes | None, now: datetime) -> bytes | None:
    """The earlier certificates once ``replaced`` is superseded: it first, then the
    ones kept before, the expired ones dropped, at most :data:`MAX_PREVIOUS`. X25519
    ones only (a bundle's ML-KEM certificate proves nothing about a sender)."""
    kept = []
    for pem in split_pem(replaced) + split_pem(previous):
        try:
            certificate = load_certificate(pem)
            is_x25519 = isinstance(certificate.public_key(), X25519PublicKey)
        except Exception:  # noqa: S112 - CertificateError, or a key cryptography lacks
            continue
        if is_x25519 and now <= certificate.not_valid_after_utc and pem not in kept:
            kept.append(pem)
    return b"".join(kept[:MAX_PREVIOUS]) or None


def newer_encryption(held: bytes | None, published: PeerCertificate) -> bytes | None:
    """The encryption certificate to keep for an identity: the one published if
    it is newer (a later ``notBefore``) than the one held; a server replaying an
    older one cannot take us back to it."""
    if published.encryption is None:
        return held
    if held is not None:
        try:
            before = load_certificate(held).not_valid_before_utc
        except CertificateError:
            before = None
        if before is not None and published.encryption.certificate.not_valid_before_utc <= before:
            # the same certificate, now with its ML-KEM one (checked: issued with it by
            # the identity), when the held copy lacked it (a stripped <kem/>): taken;
            # an ML-KEM certificate held is never replaced
            held_certificates = split_pem(held)
            if (
                len(held_certificates) == 1
                and published.encryption.kem is not None
                and held_certificates[0]
                == published.encryption.certificate.public_bytes(serialization.Encoding.PEM)
            ):
                return published.encryption.pem()
            return held
    return published.encryption.pem()


def encryption_valid(peer: PeerCertificate, now: datetime) -> bool:
    """An expired encryption certificate is neither encrypted to nor opened with."""
    encryption = peer.encryption
    if encryption is None:
        return True
    validity = encryption.certificate
    return validity.not_valid_before_utc <= now <= validity.not_valid_after_utc
