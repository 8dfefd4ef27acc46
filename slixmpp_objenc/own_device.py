"""Our keys of the authenticated profile: an Ed25519 identity and the X25519
encryption key it certifies (docs/PROTOCOL.md 13), kept in the store's
identities beside the draft profile's RSA identity. No slixmpp here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from .core import CertificateError, PeerCertificate, load_certificate
from .core.auth_envelope import AuthSender
from .core.certificates import Normalizer
from .core.devices import validate_device
from .core.identities import DeviceKeys, generate_device_keys
from .store import OwnIdentityRecord, Storage

__all__ = ["OwnDevice"]


class OwnDevice:
    """This device's identity and encryption key, made once and stored."""

    def __init__(
        self, storage: Storage, clock: Callable[[], datetime], normalize: Normalizer
    ) -> None:
        self._storage = storage
        self._clock = clock
        self._normalize = normalize
        self.keys: DeviceKeys | None = None
        """Ours, once made or loaded."""
        self._certificate: PeerCertificate | None = None
        self._senders: tuple[DeviceKeys, list[AuthSender]] | None = None
        self.enabled = True
        """Off (``authenticated: False``): a device of the draft's profile only,
        even if the store holds device keys (they are kept, unused)."""

    def load(self, records: Sequence[OwnIdentityRecord]) -> None:
        """Take ours from the store's identities (those with an encryption key);
        :class:`CertificateError` if they do not fit together."""
        devices = [r for r in records if r.encryption_key_pem is not None]
        if devices and self.enabled:
            self.keys = _device_keys(devices[-1])  # the newest
            self._certificate = None

    async def ensure(self, jid: str) -> DeviceKeys:
        """Ours; on first start, a new identity and encryption key for ``jid``."""
        if self.keys is not None:
            return self.keys
        keys = await asyncio.to_thread(
            generate_device_keys, jid, now=self._clock(), normalize=self._normalize
        )
        await self._storage.save_identity(
            OwnIdentityRecord(
                fingerprint=keys.fingerprint,
                key_pem=_private_pem(keys.identity_key),
                cert_pem=_certificate_pem(keys.identity_certificate),
                created_at=self._clock(),
                encryption_key_pem=_private_pem(keys.encryption_key),
                encryption_cert_pem=_certificate_pem(keys.encryption_certificate),
            )
        )
        if self.keys is None:  # two starts at once: the first one made counts
            self.keys = keys
        return self.keys

    def senders(self) -> list[AuthSender]:
        """Our encryption keys with their certificate ids, the current one first."""
        keys = self.keys
        if keys is None:
            return []
        if self._senders is None or self._senders[0] is not keys:
            sender = AuthSender(
                keys.encryption_key,
                bytes.fromhex(keys.fingerprint),
                bytes.fromhex(keys.encryption_fingerprint),
            )
            self._senders = (keys, [sender])
        return self._senders[1]

    def bundle_pem(self) -> bytes | None:
        """Our identity certificate then our encryption certificate, as PEM: the
        device to hand over by hand (``add_peer_certificate``, ``objenc import``)."""
        keys = self.keys
        if keys is None:
            return None
        return _certificate_pem(keys.identity_certificate) + _certificate_pem(
            keys.encryption_certificate
        )

    def public_key(self, bare: str | None, encryption: str) -> X25519PublicKey | None:
        """Our X25519 key, if ``encryption`` is our encryption certificate's id and
        ``bare`` a JID our identity names (our own stanzas, as a sender)."""
        own = self.certificate()
        mine = own.encryption if own is not None and bare in own.jids else None
        return mine.public_key if mine is not None and mine.fingerprint == encryption else None

    def certificate(self) -> PeerCertificate | None:
        """Our identity with its encryption certificate, as a recipient of our own
        stanzas (sent messages stay readable from the archive)."""
        keys = self.keys
        if keys is None:
            return None
        cached = self._certificate
        if cached is None or cached.fingerprint != keys.fingerprint:
            cached = self._certificate = validate_device(
                keys.identity_certificate,
                encryption=keys.encryption_certificate,
                now=self._clock(),
                normalize=self._normalize,
            )
        return cached


def _private_pem(key: Ed25519PrivateKey | X25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _certificate_pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


def _device_keys(record: OwnIdentityRecord) -> DeviceKeys:
    """Our device keys from their record; :class:`CertificateError` if they do not fit."""
    try:
        identity_key = serialization.load_pem_private_key(record.key_pem, None)
        encryption_key = serialization.load_pem_private_key(record.encryption_key_pem or b"", None)
    except (ValueError, TypeError) as exc:
        raise CertificateError(f"cannot load our device keys: {exc}") from exc
    identity = load_certificate(record.cert_pem)
    encryption = load_certificate(record.encryption_cert_pem or b"")
    if (
        not isinstance(identity_key, Ed25519PrivateKey)
        or not isinstance(encryption_key, X25519PrivateKey)
        or identity.public_key() != identity_key.public_key()
        or encryption.public_key() != encryption_key.public_key()
    ):
        raise CertificateError("our device keys do not match their certificates")
    return DeviceKeys(identity_key, identity, encryption_key, encryption)
