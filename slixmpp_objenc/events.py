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
    "EncryptionFailedEvent",
    "EncryptionInfo",
    "ForeignEncryptionEvent",
    "KeyChangedEvent",
    "PeerRejectedEvent",
    "PublishFailedEvent",
    "SasEvent",
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
    """SHA-256 of our certificate whose key opened the envelope."""
    sender_fingerprint: str | None
    """SHA-256 of the certificate we hold for the sender's bare JID, if any.

    The draft has no sender authentication: this says which key we would
    encrypt to, not who produced the envelope.
    """
    delay: datetime | None = None
    """The server's XEP-0203 stamp when the stanza was an offline message."""
    sender_trust: TrustState | None = None
    """Trust state of :attr:`sender_fingerprint` (``verified``, ``tofu``, ...)."""


@dataclass(frozen=True, slots=True)
class DecryptionFailedEvent:
    """``objenc_decryption_failed``: case 4; the stanza is not delivered."""

    stanza: Any
    """The outer stanza as received (its ``<e2e/>`` still inside)."""
    reason: str
    """``undecryptable`` (any failure to open: deliberately not more precise),
    ``forged`` (inner stanza disagrees with the outer addressing) or ``too-large``."""


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
    ``reject_key_change``."""

    jid: str
    old_fingerprints: tuple[str, ...]
    new_fingerprint: str


@dataclass(frozen=True, slots=True)
class PublishFailedEvent:
    """``objenc_publish_failed``: our certificate could not be published to PEP with
    the contacts-only access model (we never fall back to an open node)."""

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
    role: str
    """``initiator`` or ``responder``."""


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
    """Why it could not be opened (``undecryptable``, ``forged``, ``old``, ...)."""
