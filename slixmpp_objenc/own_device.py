"""Our keys of the authenticated profile: an Ed25519 identity and the X25519
encryption key it certifies (docs/PROTOCOL.md 13), kept in the store's
identities beside the draft profile's RSA identity. No slixmpp here.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final, cast

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.mlkem import MLKEM768PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from .core import CertificateError, PeerCertificate, load_certificate
from .core.auth_envelope import AuthSender
from .core.certificates import Normalizer, clean_label, encryption_label
from .core.devices import validate_device
from .core.hybrid import with_kem_key
from .core.identities import (
    BACKDATE,
    DeviceKeys,
    generate_device_keys,
    issue_encryption_certificate,
)
from .core.rotation import HeldEncryptionKey, RotationPolicy, plan_rotation
from .core.timestamps import format_timestamp
from .store import OwnEncryptionKeyRecord, OwnIdentityRecord, Storage

__all__ = ["DESTROYED_PREFIX", "LABEL_SETTING", "OwnDevice", "RotationOutcome"]

log = logging.getLogger(__name__)

LABEL_SETTING: Final = "device-label"
"""This device's label as last set with ``set_device_label`` (it wins over the
``device_label`` configuration, which is the default until then)."""
DESTROYED_PREFIX: Final = "destroyed-key:"
"""Setting per destroyed encryption key (its certificate fingerprint; the value is
when): stanzas sealed to it are reported as such, not as undecryptable."""


@dataclass(frozen=True, slots=True)
class RotationOutcome:
    """What one run of :meth:`OwnDevice.rotate_now` did."""

    rotated: str | None
    """The new encryption certificate's fingerprint, if one was issued."""
    retired: tuple[str, ...]
    """Fingerprints replaced now (their private keys are kept for the retention)."""
    destroyed: tuple[str, ...]
    """Fingerprints whose private keys were destroyed now."""
    next_check: datetime
    """When to run again at the latest."""


@dataclass(frozen=True, slots=True)
class _Retired:
    """A replaced encryption key, kept for the retention period."""

    key: X25519PrivateKey
    certificate: x509.Certificate
    fingerprint: str
    issued_at: datetime
    retired_at: datetime
    kem_key: MLKEM768PrivateKey | None = None
    kem_certificate: x509.Certificate | None = None


class OwnDevice:
    """This device's identity and encryption keys, made once, rotated on a schedule
    (PROTOCOL.md 13.10) and stored."""

    def __init__(
        self,
        storage: Storage,
        clock: Callable[[], datetime],
        normalize: Normalizer,
        policy: RotationPolicy | None = None,
    ) -> None:
        self._storage = storage
        self._clock = clock
        self._normalize = normalize
        self.policy = policy or RotationPolicy()
        """How often the encryption key is replaced and how long a replaced one is kept."""
        self.keys: DeviceKeys | None = None
        """Ours, once made or loaded: the identity and the *current* encryption key."""
        self._issued_at: datetime | None = None
        self._retired: tuple[_Retired, ...] = ()
        self._destroyed: frozenset[str] = frozenset()
        self._history = True
        """Whether the store keeps a history of encryption keys (rotation needs it)."""
        self._certificate: PeerCertificate | None = None
        self._senders: tuple[DeviceKeys, tuple[_Retired, ...], list[AuthSender]] | None = None
        self._lock = asyncio.Lock()
        self.label: str | None = None
        """This device's label ("laptop"), written in each new encryption certificate
        (configuration ``device_label``); a change takes effect at the next rotation,
        or at once with :meth:`rotate_now` (``relabel``)."""
        self.enabled = True
        """Off (``authenticated: False``): a device of the draft's profile only,
        even if the store holds device keys (they are kept, unused)."""

    def load(self, records: Sequence[OwnIdentityRecord]) -> None:
        """Take ours from the store's identities (those with an encryption key);
        :class:`CertificateError` if they do not fit together."""
        devices = [r for r in records if r.encryption_key_pem is not None]
        if devices and self.enabled:
            self.keys = _device_keys(devices[-1])  # the newest
            self._issued_at = None
            self._certificate = None

    async def load_history(self) -> None:
        """Read the history of our encryption keys (after :meth:`load`): the newest
        current one becomes ours, replaced ones are kept for opening, destroyed ones
        are remembered by fingerprint. A store from before the history gets the key
        of its identity row as its first entry."""
        stored_label = await self._storage.get_setting(LABEL_SETTING)
        if stored_label is not None:
            self.label = stored_label or None
        tombstones = await self._storage.settings_with_prefix(DESTROYED_PREFIX)
        self._destroyed = frozenset(k[len(DESTROYED_PREFIX) :] for k in tombstones)
        keys = self.keys
        if keys is None:
            return
        try:
            history = await self._storage.load_encryption_keys()
        except NotImplementedError:
            history = []
        mine = [r for r in history if r.identity_fingerprint == keys.fingerprint]
        if not any(r.fingerprint == keys.encryption_fingerprint for r in mine):
            record = _history_record(keys, _issued(keys.encryption_certificate))
            if not await self._save_history(record):
                return
            mine.append(record)
        current = [r for r in mine if r.retired_at is None]
        newest = max(current, key=lambda r: (r.issued_at, r.fingerprint), default=None)
        if newest is not None and newest.fingerprint != keys.encryption_fingerprint:
            # a rotation stopped after storing its new key: take it up
            key, certificate = _encryption_pair(newest.key_pem, newest.cert_pem, keys)
            self.keys = keys = DeviceKeys(
                keys.identity_key, keys.identity_certificate, key, certificate
            )
            await self._storage.save_identity(_identity_record(keys, self._clock()))
        if newest is not None:
            kem = _kem_pair(newest, keys)
            if kem is None:  # made before the hybrid: one is issued for this rotation
                keys = await asyncio.to_thread(with_kem_key, keys)
                await self._storage.save_encryption_key(_history_record(keys, newest.issued_at))
            else:
                keys = DeviceKeys(
                    keys.identity_key,
                    keys.identity_certificate,
                    keys.encryption_key,
                    keys.encryption_certificate,
                    *kem,
                )
            self.keys = keys
        self._issued_at = newest.issued_at if newest is not None else None
        retired = []
        for record in mine:
            if record.fingerprint == keys.encryption_fingerprint:
                continue
            key, certificate = _encryption_pair(record.key_pem, record.cert_pem, keys)
            held = _Retired(
                key,
                certificate,
                record.fingerprint,
                record.issued_at,
                record.retired_at or self._clock(),
                *(_kem_pair(record, keys) or (None, None)),
            )
            if record.retired_at is None:  # current but older: retired from now on
                await self._storage.save_encryption_key(_retired_record(held, keys))
            retired.append(held)
        self._retired = tuple(sorted(retired, key=lambda r: r.issued_at, reverse=True))
        self._certificate = None

    async def _save_history(self, record: OwnEncryptionKeyRecord) -> bool:
        try:
            await self._storage.save_encryption_key(record)
        except NotImplementedError:
            if self._history:
                log.warning(
                    "objenc: %s keeps no history of encryption keys: they are not rotated",
                    type(self._storage).__name__,
                )
            self._history = False
            return False
        return True

    async def ensure(self, jid: str) -> DeviceKeys:
        """Ours; on first start, a new identity and encryption key for ``jid``."""
        if self.keys is not None:
            return self.keys
        now = self._clock()
        keys = await asyncio.to_thread(
            generate_device_keys,
            jid,
            now=now,
            normalize=self._normalize,
            encryption_validity=self.policy.validity,
            label=self.label,
        )
        if self.keys is not None:  # two starts at once: the first one made counts
            return self.keys
        keys = await asyncio.to_thread(with_kem_key, keys)
        if self.keys is not None:
            return self.keys
        await self._save_history(_history_record(keys, now))
        await self._storage.save_identity(_identity_record(keys, now))
        self.keys = keys
        self._issued_at = now
        return keys

    # -- rotation (PROTOCOL.md 13.10) ------------------------------------------

    def held(self) -> list[HeldEncryptionKey]:
        """Our encryption keys as :func:`~slixmpp_objenc.core.rotation.plan_rotation`
        reads them: the current one, then the replaced ones still kept."""
        keys = self.keys
        if keys is None:
            return []
        issued = self._issued_at or _issued(keys.encryption_certificate)
        return [HeldEncryptionKey(keys.encryption_fingerprint, issued)] + [
            HeldEncryptionKey(r.fingerprint, r.issued_at, r.retired_at) for r in self._retired
        ]

    @property
    def destroyed(self) -> frozenset[str]:
        """Fingerprints of our encryption certificates whose private keys are destroyed."""
        return self._destroyed

    async def set_label(self, label: str | None) -> None:
        """Keep ``label`` as this device's (cleaned; it takes effect at the next
        rotation: :meth:`rotate_now` makes one when the label changed)."""
        self.label = clean_label(label)
        await self._storage.set_setting(LABEL_SETTING, self.label or "")

    def relabelled(self) -> bool:
        """Whether our current certificate names another label than :attr:`label`."""
        keys = self.keys
        return keys is not None and encryption_label(keys.encryption_certificate) != clean_label(
            self.label
        )

    async def rotate_now(self, *, force: bool = False) -> RotationOutcome | None:
        """Run the rotation decision once and carry it out: issue a new encryption key
        if it is due (the caller publishes it), mark the old one replaced, destroy
        keys replaced longer than the retention. ``None`` when there is nothing to
        rotate (no keys, or a store without a key history)."""
        async with self._lock:
            keys = self.keys
            if keys is None or not self._history or not self.enabled:
                return None
            now = self._clock()
            replace_now = force or self.relabelled()
            plan = plan_rotation(self.held(), now, self.policy, replace_now=replace_now)
            rotated = None
            retired = {r.fingerprint: r for r in self._retired}
            if plan.rotate:
                key = X25519PrivateKey.generate()
                certificate = await asyncio.to_thread(
                    issue_encryption_certificate,
                    keys.identity_key,
                    keys.identity_certificate,
                    key.public_key(),
                    now=_after(keys.encryption_certificate, now),
                    valid_for=self.policy.validity,
                    label=self.label,
                )
                new = await asyncio.to_thread(
                    with_kem_key,
                    DeviceKeys(keys.identity_key, keys.identity_certificate, key, certificate),
                )
                # the new key first: a crash before the rest leaves two current keys,
                # and the next run retires the older
                await self._storage.save_encryption_key(_history_record(new, now))
                await self._storage.save_identity(_identity_record(new, now))
                old_issued = self._issued_at or _issued(keys.encryption_certificate)
                retired[keys.encryption_fingerprint] = _Retired(
                    keys.encryption_key,
                    keys.encryption_certificate,
                    keys.encryption_fingerprint,
                    old_issued,
                    now,
                    keys.kem_key,
                    keys.kem_certificate,
                )
                self.keys, self._issued_at = new, now
                rotated = new.encryption_fingerprint
            for fingerprint in plan.retire:
                held = retired.get(fingerprint)
                if held is not None:
                    await self._storage.save_encryption_key(_retired_record(held, keys))
            for fingerprint in plan.destroy:
                retired.pop(fingerprint, None)
                await self._storage.destroy_encryption_key(fingerprint)
                await self._storage.set_setting(
                    DESTROYED_PREFIX + fingerprint, format_timestamp(now)
                )
                self._destroyed |= {fingerprint}
            self._retired = tuple(sorted(retired.values(), key=lambda r: r.issued_at, reverse=True))
            self._certificate = None
            self._senders = None  # it may hold a destroyed key
            return RotationOutcome(rotated, plan.retire, plan.destroy, plan.next_check)

    # -- what the rest of the plugin reads ---------------------------------------

    def senders(self) -> list[AuthSender]:
        """Our encryption keys with their certificate ids, the current one first
        (it seals; every one still kept opens)."""
        keys = self.keys
        if keys is None:
            return []
        cached = self._senders
        if cached is None or cached[0] is not keys or cached[1] is not self._retired:
            identity = bytes.fromhex(keys.fingerprint)
            senders = [
                _sender(
                    identity,
                    keys.encryption_key,
                    keys.encryption_certificate,
                    keys.kem_key,
                    keys.kem_certificate,
                )
            ]
            senders.extend(
                _sender(identity, r.key, r.certificate, r.kem_key, r.kem_certificate)
                for r in self._retired
            )
            cached = self._senders = (keys, self._retired, senders)
        return cached[2]

    def bundle_pem(self) -> bytes | None:
        """Our identity certificate, our encryption certificate and its ML-KEM one,
        as PEM: the device to hand over by hand (``add_peer_certificate``,
        ``objenc import``)."""
        keys = self.keys
        if keys is None:
            return None
        kem = b"" if keys.kem_certificate is None else _certificate_pem(keys.kem_certificate)
        return (
            _certificate_pem(keys.identity_certificate)
            + _certificate_pem(keys.encryption_certificate)
            + kem
        )

    def public_key(self, bare: str | None, encryption: str) -> X25519PublicKey | None:
        """Our X25519 key with the certificate id ``encryption`` (the current one or
        one still kept), if ``bare`` is a JID our identity names (our own stanzas,
        as a sender)."""
        own = self.certificate()
        if own is None or bare not in own.jids or self.keys is None:
            return None
        if own.encryption is not None and own.encryption.fingerprint == encryption:
            return own.encryption.public_key
        for retired in self._retired:
            if retired.fingerprint == encryption:
                return retired.key.public_key()
        return None

    def retired_at(self, encryption: str) -> datetime | None:
        """When our encryption key ``encryption`` was replaced; ``None`` if it is not
        one we retired (the current one, or unknown)."""
        for retired in self._retired:
            if retired.fingerprint == encryption:
                return retired.retired_at
        return None

    def certificate(self) -> PeerCertificate | None:
        """Our identity with its encryption certificate, as a recipient of our own
        stanzas (sent messages stay readable from the archive)."""
        keys = self.keys
        if keys is None:
            return None
        cached = self._certificate
        if (
            cached is None
            or cached.fingerprint != keys.fingerprint
            or cached.encryption is None
            or cached.encryption.fingerprint != keys.encryption_fingerprint
            or (cached.encryption.kem is None) != (keys.kem_certificate is None)
        ):
            cached = self._certificate = validate_device(
                keys.identity_certificate,
                encryption=keys.encryption_certificate,
                kem=keys.kem_certificate,
                now=max(self._clock(), _issued(keys.encryption_certificate)),
                normalize=self._normalize,
            )
        return cached


def _private_pem(key: Ed25519PrivateKey | X25519PrivateKey | MLKEM768PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _certificate_pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


def _after(previous: x509.Certificate, now: datetime) -> datetime:
    """The issuance time for the certificate replacing ``previous``: ``now``, but so
    that its ``notBefore`` (whole seconds) is later than ``previous``'s. Contacts
    take a published certificate only if it is newer (PROTOCOL.md 13.10): two
    issued in one second would leave them on the old one."""
    earliest = previous.not_valid_before_utc + timedelta(seconds=1) + BACKDATE
    if earliest - now > timedelta(minutes=1):
        return now  # the previous one is dated ahead (the clock went back): valid now wins
    return max(now, earliest)


def _issued(certificate: x509.Certificate) -> datetime:
    """When a certificate of ours was issued: its ``notBefore`` plus the backdating."""
    return certificate.not_valid_before_utc + BACKDATE


def _sender(
    identity: bytes,
    key: X25519PrivateKey,
    certificate: x509.Certificate,
    kem_key: MLKEM768PrivateKey | None,
    kem_certificate: x509.Certificate | None,
) -> AuthSender:
    kem_id = None if kem_certificate is None else hashlib.sha256(_der(kem_certificate)).digest()
    return AuthSender(
        key,
        identity,
        hashlib.sha256(_der(certificate)).digest(),
        kem_key if kem_id is not None else None,
        kem_id,
    )


def _der(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.DER)


def _kem_pair(
    record: OwnEncryptionKeyRecord, keys: DeviceKeys
) -> tuple[MLKEM768PrivateKey, x509.Certificate] | None:
    """The ML-KEM key stored with an encryption key, checked; ``None`` if none."""
    if record.kem_key_pem is None or record.kem_cert_pem is None:
        return None
    key, certificate = _stored_pair(
        record.kem_key_pem, record.kem_cert_pem, keys, MLKEM768PrivateKey, "ML-KEM"
    )
    return cast(MLKEM768PrivateKey, key), certificate


def _history_record(keys: DeviceKeys, issued_at: datetime) -> OwnEncryptionKeyRecord:
    return _key_record(
        keys.fingerprint,
        keys.encryption_key,
        keys.encryption_certificate,
        keys.kem_key,
        keys.kem_certificate,
        issued_at,
    )


def _retired_record(held: _Retired, keys: DeviceKeys) -> OwnEncryptionKeyRecord:
    return _key_record(
        keys.fingerprint,
        held.key,
        held.certificate,
        held.kem_key,
        held.kem_certificate,
        held.issued_at,
        held.retired_at,
    )


def _key_record(
    identity: str,
    key: X25519PrivateKey,
    certificate: x509.Certificate,
    kem_key: MLKEM768PrivateKey | None,
    kem_certificate: x509.Certificate | None,
    issued_at: datetime,
    retired_at: datetime | None = None,
) -> OwnEncryptionKeyRecord:
    """One of our encryption keys (with its ML-KEM key) as the store keeps it."""
    return OwnEncryptionKeyRecord(
        fingerprint=hashlib.sha256(_der(certificate)).hexdigest(),
        identity_fingerprint=identity,
        key_pem=_private_pem(key),
        cert_pem=_certificate_pem(certificate),
        issued_at=issued_at,
        retired_at=retired_at,
        kem_key_pem=None if kem_key is None else _private_pem(kem_key),
        kem_cert_pem=None if kem_certificate is None else _certificate_pem(kem_certificate),
    )


def _identity_record(keys: DeviceKeys, created_at: datetime) -> OwnIdentityRecord:
    """Our identity row: it carries the current encryption key (the history has
    every one); rewriting it overwrites the replaced key there (``secure_delete``)."""
    return OwnIdentityRecord(
        fingerprint=keys.fingerprint,
        key_pem=_private_pem(keys.identity_key),
        cert_pem=_certificate_pem(keys.identity_certificate),
        created_at=created_at,
        encryption_key_pem=_private_pem(keys.encryption_key),
        encryption_cert_pem=_certificate_pem(keys.encryption_certificate),
    )


def _encryption_pair(
    key_pem: bytes, cert_pem: bytes, keys: DeviceKeys
) -> tuple[X25519PrivateKey, x509.Certificate]:
    """One of our stored encryption keys with its certificate, checked to be a pair
    issued by our identity; :class:`CertificateError` otherwise."""
    key, certificate = _stored_pair(key_pem, cert_pem, keys, X25519PrivateKey, "encryption")
    return cast(X25519PrivateKey, key), certificate


def _stored_pair(
    key_pem: bytes, cert_pem: bytes, keys: DeviceKeys, key_type: type, what: str
) -> tuple[object, x509.Certificate]:
    """A private key of ours (a ``key_type`` instance) with its certificate, checked
    to be a pair issued by our identity; :class:`CertificateError` otherwise."""
    try:
        key = serialization.load_pem_private_key(key_pem, None)
    except (ValueError, TypeError) as exc:
        raise CertificateError(f"cannot load one of our {what} keys: {exc}") from exc
    certificate = load_certificate(cert_pem)
    if not isinstance(key, key_type) or certificate.public_key() != key.public_key():
        raise CertificateError(f"one of our {what} keys does not match its certificate")
    try:
        certificate.verify_directly_issued_by(keys.identity_certificate)
    except Exception as exc:
        raise CertificateError(f"one of our {what} keys is not our identity's") from exc
    return key, certificate


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
