"""Data carried by the plugin's events, and what ``encryption_info`` returns."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .core.trust import TrustState

__all__ = [
    "ArchivedMessage",
    "BadTimestampEvent",
    "DecryptionFailedEvent",
    "DeviceRevokedEvent",
    "DirectoryLimitEvent",
    "EncryptionFailedEvent",
    "EncryptionInfo",
    "ForeignEncryptionEvent",
    "KeyChangedEvent",
    "KeyDestroyedEvent",
    "KeyRotatedEvent",
    "KeyUnpublishedEvent",
    "PeerRejectedEvent",
    "PublishFailedEvent",
    "SasEvent",
    "SasFailedEvent",
    "UnsupportedEvent",
]


@dataclass(frozen=True, slots=True)
class EncryptionInfo:
    """How a delivered stanza arrived: answer of ``plugin.encryption_info(stanza)``."""

    timestamp: datetime
    """The sender's timestamp from ``<plain/>``, checked for freshness."""
    cipher: str
    """Block cipher wire name."""
    recipient_fingerprint: str
    """SHA-256 of our certificate the envelope was opened for: our identity
    (authenticated profile; its encryption key did the work) or our RSA one."""
    sender_fingerprint: str | None
    """SHA-256 of the sender device's identity certificate, when the stanza
    proved it (:attr:`authenticated`); ``None`` otherwise: the draft's profile
    has no sender authentication, so anyone holding our certificate could
    have written it.
    """
    delay: datetime | None = None
    """The server's XEP-0203 stamp when the stanza was an offline message."""
    sender_trust: TrustState | None = None
    """Trust state of :attr:`sender_fingerprint` (``verified``, ``tofu``,
    ``untrusted`` for a device awaiting a decision...); ``None`` when not
    authenticated, and for this device's own stanzas."""
    idempotency_key: str = ""
    """Lowercase hex of the replay digest (PROTOCOL.md 6.1): the same for every copy
    of one stanza (direct, carbon, offline, archive, either profile's envelope, or
    delivered again after a crash), so an
    application that must act once per message deduplicates on it (delivery is
    at least once; README "Crashes")."""
    authenticated: bool = False
    """Whether a device of the sender proved it wrote this (the authenticated
    profile, PROTOCOL.md 13): ``False`` for the draft's profile."""
    hybrid: bool = False
    """Whether our copy was sealed with the post-quantum hybrid (ML-KEM-768 with
    X25519, PROTOCOL.md 13.11): its content stays secret unless both are broken."""


@dataclass(frozen=True, slots=True)
class DecryptionFailedEvent:
    """``objenc_decryption_failed``: case 4; the stanza is not delivered."""

    stanza: Any
    """The outer stanza as received (its ``<e2e/>`` still inside)."""
    reason: str
    """``undecryptable`` (any failure to open, a stanza not written by a device we
    hold for its sender included: deliberately not more precise), ``forged``
    (inner stanza disagrees with the outer addressing), ``downgrade`` (the
    draft's unauthenticated profile from a contact with an identity, PROTOCOL.md
    13.7; see ``allow_legacy_devices``), ``key-destroyed`` (sealed to one of our
    encryption keys that rotation destroyed after its retention: forward secrecy,
    PROTOCOL.md 13.10; it never opens again) or ``passphrase`` (it did not open and
    a passphrase is set for this contact: theirs may differ, PROTOCOL.md 13.12).
    The reply to the sender is the same for all of these."""


@dataclass(frozen=True, slots=True)
class BadTimestampEvent:
    """``objenc_bad_timestamp``: case 3; the stanza is not delivered to handlers."""

    stanza: Any
    """The decrypted stanza, for display marked as stale."""
    reason: str
    """``old``, ``future``, ``decreasing`` or ``replay``."""
    timestamp: datetime


@dataclass(frozen=True, slots=True)
class UnsupportedEvent:
    """``objenc_unsupported``: a peer answered our encrypted stanza with
    ``<service-unavailable/>`` (case 1 seen from the sender)."""

    stanza: Any
    """The error stanza, its id mapped back to the inner stanza's id."""
    jid: str


@dataclass(frozen=True, slots=True)
class PeerRejectedEvent:
    """``objenc_rejected``: a peer could not open our stanza (``decryption-failed``)
    or refused its timestamp (``bad-timestamp``)."""

    stanza: Any
    jid: str
    condition: str


@dataclass(frozen=True, slots=True)
class EncryptionFailedEvent:
    """``objenc_encryption_failed``: a stanza that had to be encrypted was not sent."""

    stanza: Any
    error: Exception


@dataclass(frozen=True, slots=True)
class KeyChangedEvent:
    """``objenc_key_changed``: a contact presents a certificate other than the one(s)
    pinned. Stanzas to the contact are held until ``accept_key_change`` or
    ``reject_key_change``.

    Also the data of ``objenc_device_added`` (a contact's new device trusted at
    once, with ``trust_new_devices``), ``objenc_own_device_held`` (a certificate
    appeared on our own account's node: not used until a device of ours accepts
    it with ``accept_key_change(own_bare_jid, fingerprint)``; ``jid`` is our
    bare JID) and ``objenc_own_device_added`` (the same, trusted at once with
    ``trust_own_new_devices``)."""

    jid: str
    old_fingerprints: tuple[str, ...]
    new_fingerprint: str
    label: str | None = None
    """The new device's label ("phone"), as its identity signed it, if it has one:
    its owner chose it, so it names a device, it does not prove one."""


@dataclass(frozen=True, slots=True)
class DeviceRevokedEvent:
    """``objenc_device_revoked``: a device of ``jid`` was revoked by another device of
    the same account that we trust for it (a lost or stolen device, PROTOCOL.md
    13.13): nothing is encrypted to it any more and nothing from it opens.
    ``jid`` is our own bare JID when one of our devices was revoked (this one
    too, if ``fingerprint`` is ours: then another device of ours says this one is lost)."""

    jid: str
    fingerprint: str
    """The revoked device's identity fingerprint."""
    revoker: str
    """The identity fingerprint of the device that signed the revocation."""
    issued_at: datetime
    label: str | None = None
    """The revoked device's label, if it had one."""


@dataclass(frozen=True, slots=True)
class KeyRotatedEvent:
    """``objenc_key_rotated``: our encryption key was replaced (PROTOCOL.md 13.10);
    the new certificate is being published. Nothing for the user to decide."""

    fingerprint: str
    """SHA-256 of the new encryption certificate."""
    retired: tuple[str, ...]
    """Encryption certificates replaced now: their private keys are kept for the
    retention period (late stanzas still open), then destroyed."""
    next_check: datetime
    """When the next rotation or destruction is due at the latest."""


@dataclass(frozen=True, slots=True)
class KeyDestroyedEvent:
    """``objenc_key_destroyed``: the private key of a replaced encryption certificate
    was destroyed (from memory and the store) once its retention was over; what was
    sealed to it, archives included, never opens again (forward secrecy)."""

    fingerprint: str
    """SHA-256 of the encryption certificate whose private key is gone."""
    destroyed_at: datetime


@dataclass(frozen=True, slots=True)
class KeyUnpublishedEvent:
    """``objenc_key_unpublished``: a JID (a contact, or our own account) no longer
    publishes a certificate we verified. It is kept and still used: a server's
    answer alone never undoes a verification. Revoke it (``set_trust(jid,
    fingerprint, "revoked")``) if the contact confirms the device is gone."""

    jid: str
    fingerprint: str
    trust: TrustState


@dataclass(frozen=True, slots=True)
class DirectoryLimitEvent:
    """``objenc_directory_limit``: a certificate node exceeds a cap; what is over it
    is not used. ``limit``: ``certificates-per-jid`` (16 taken at most),
    ``certificate-size`` (16 KiB of DER), ``certificates-per-item`` (one),
    ``items-examined`` (64 new ones per fetch) or ``certificates-held`` (64
    held per JID, any state)."""

    jid: str
    limit: str
    found: int
    """How many (or how large) there were, as far as they were counted."""
    maximum: int


@dataclass(frozen=True, slots=True)
class PublishFailedEvent:
    """``objenc_publish_failed``: our certificate could not be published to PEP on a
    contacts-only node, by publish-options nor by configuring the node (we never
    publish to a more open one). ``condition``: the server's error condition,
    ``timeout`` or ``node-configuration``; the full state is ``ObjEnc.publication``
    (``objenc_publication``, :class:`~slixmpp_objenc.core.publication.Publication`)."""

    condition: str
    text: str


@dataclass(frozen=True, slots=True)
class SasEvent:
    """``objenc_sas``: a verification exchange finished; show :attr:`sas` to the user
    and call ``confirm_verification(sid, matched)``."""

    jid: str
    sid: str
    sas: str
    """Six characters to read to each other."""
    peer_fingerprint: str
    """The certificate of the peer's device that ran the exchange."""
    role: str
    """``initiator`` or ``responder``."""
    peer_fingerprints: tuple[str, ...] = ()
    """Every certificate we encrypt to for the peer's bare JID: what the string
    covers, and what ``confirm_verification`` marks ``verified``."""
    own_fingerprints: tuple[str, ...] = ()
    """Our own certificate and our other devices' we encrypt to: the peer's
    string covers them as it holds them."""
    labels: tuple[tuple[str, str], ...] = ()
    """``(fingerprint, label)`` for the devices above that have a label, to show
    beside them."""


@dataclass(frozen=True, slots=True)
class SasFailedEvent:
    """``objenc_sas_failed``: a verification exchange we answered broke off before a
    string could be shown: the two sides do not hold the same certificates for
    each other (``reason`` names those that differ), or a message was wrong."""

    jid: str
    sid: str
    reason: str


@dataclass(frozen=True, slots=True)
class ForeignEncryptionEvent:
    """``objenc_foreign_encryption``: a message encrypted with another mechanism
    (XEP-0380 names it) that no loaded plugin handles; its body is only a
    fallback notice, so it is not delivered as if it were the message."""

    stanza: Any
    namespace: str
    name: str


@dataclass(frozen=True, slots=True)
class ArchivedMessage:
    """One message from ``fetch_archive()``."""

    stanza: Any
    """The decrypted message, or the archived one as it was if it could not be opened."""
    info: EncryptionInfo | None
    """How it was encrypted (``delay`` is the archive's stamp); ``None`` if it was
    not encrypted or could not be opened."""
    error: str | None = None
    """Why it could not be opened (``undecryptable``, ``forged``, ``old``, ...);
    ``key-destroyed``: sealed to an encryption key of ours destroyed after its
    retention (PROTOCOL.md 13.10). Archived stanzas older than the retention are
    unreadable by design: keep your own decrypted history."""
