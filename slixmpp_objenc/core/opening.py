"""Which copy of a stanza we open, and with which key (PROTOCOL.md 13.7).

A stanza carries one ``<e2e/>`` per profile its recipients speak: the
draft's (RSA) and the authenticated one. A device of the authenticated
profile opens only its authenticated copy when there is one for it (the
RSA copy of the same stanza is never a second chance); an RSA copy is
opened only from a sender no identity certificate is held for, or whose
legacy devices the user allowed, and then it is *unauthenticated*: it says
nothing about who wrote it. Everything here is pure: the key directory is
read through callables.
"""

from __future__ import annotations

import hashlib
import xml.etree.ElementTree as ET
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from .auth_envelope import (
    CONTENT_ALGO,
    MAX_WRAPS,
    AuthSender,
    SenderResolver,
    addressed_to,
    is_authenticated,
    open_authenticated,
    sender_ids,
)
from .certificates import Identity
from .constants import NS_OBJENC, qname
from .envelope import open_envelope
from .errors import InvalidEnvelope
from .timestamps import ReplayGuard, format_timestamp

__all__ = [
    "DOWNGRADE",
    "KEY_DESTROYED",
    "MAX_OWN_KEYS_TRIED",
    "PASSPHRASE",
    "UNDECRYPTABLE",
    "UNKNOWN_SENDER",
    "Opened",
    "OpeningContext",
    "OwnKeys",
    "open_copies",
]

MAX_OWN_KEYS_TRIED: Final = 3
"""At most this many of our RSA identities (the active one first) try to open one stanza."""
_KEY: Final = qname(NS_OBJENC, "key")
SUPERSEDED_SLACK: Final = timedelta(minutes=10)
"""A replaced sender key's stanza may be dated this much after its successor's
``notBefore`` (backdated 5 minutes at issuance; clocks differ a little)."""
MAX_COPIES: Final = 2
"""``<e2e/>`` elements in one stanza, at most: one per profile."""

UNDECRYPTABLE: Final = "undecryptable"
DOWNGRADE: Final = "downgrade"
"""An RSA copy from a sender an identity is held for (and no legacy allowed)."""
PASSPHRASE: Final = "passphrase"  # noqa: S105 - a reason, not a secret
"""Our copy did not open and a passphrase is set for this conversation: it may
differ, or the sender did not use it. Local only: the sender's error reply is
case 4's, as for any other failure (no guessing oracle)."""
KEY_DESTROYED: Final = "key-destroyed"
"""An authenticated copy sealed to one of our encryption keys that rotation has
destroyed: it can never be opened again (forward secrecy, PROTOCOL.md 13.10).
Reported locally as such; the sender's error reply is case 4's, as any other."""
UNKNOWN_SENDER: Final = "unknown-sender"
"""An authenticated copy for us from a device we do not hold (yet): fetch its
node first, then decide again."""


@dataclass(frozen=True, slots=True)
class OwnKeys:
    """Our private keys, as the receiving side uses them."""

    rsa: Sequence[Identity] = ()
    """Our RSA identities, the active one first (the draft's profile)."""
    device: Sequence[AuthSender] = ()
    """Our X25519 encryption keys with their certificate ids, the current one first."""
    destroyed: Collection[str] = frozenset()
    """Fingerprints of our encryption certificates whose private keys we destroyed
    (rotation, PROTOCOL.md 13.10): a copy sealed to one is :data:`KEY_DESTROYED`."""


@dataclass(frozen=True, slots=True)
class Opened:
    """One copy opened: what it holds and what it proved."""

    stanza: ET.Element
    stanza_bytes: bytes
    timestamp: datetime
    digest: bytes
    """The replay digest (:func:`replay_digest`): the same for every copy of one
    stanza, whichever profile opened it."""
    cipher: str
    """The content cipher's wire name."""
    recipient_fingerprint: str
    """Our certificate whose key opened it (the identity, authenticated profile)."""
    sender_fingerprint: str | None = None
    """The sender device's identity fingerprint, proven by the wrap; ``None``
    for the draft's profile, which proves nothing about its sender."""
    legacy_digest: bytes | None = None
    """The draft's own replay digest, M: what stores kept before the replay
    digest was the same for both profiles; checked too, so a stanza admitted
    then is still a replay."""
    hybrid: bool = False
    """Whether our wrap was the post-quantum hybrid (ML-KEM-768 + X25519, PROTOCOL.md 13.11)."""

    @property
    def authenticated(self) -> bool:
        """Whether the sender is proven (authenticated profile)."""
        return self.sender_fingerprint is not None


@dataclass(frozen=True, slots=True)
class OpeningContext:
    """What the directory knows about senders, for :func:`open_copies`."""

    resolve_sender: SenderResolver = lambda _jid, _identity, _encryption: None
    """A device we hold for the outer sender's bare JID (see :data:`SenderResolver`)."""
    has_identity: Callable[[str], bool] = lambda _bare: False
    """Whether an identity certificate is held for a bare JID (RSA is then refused)."""
    legacy_allowed: Callable[[str], bool] = lambda _bare: False
    """Whether the user allowed a JID's legacy (RSA-only) devices."""
    second: Callable[[str], bytes] = lambda _peer: b""
    """The stretched passphrase held for a conversation partner (bare JID), or
    ``b""``: with one, only hybrid wraps sealed with it open (PROTOCOL.md 13.12)."""
    superseded_at: Callable[[str, bytes, bytes], datetime | None] = lambda _j, _i, _e: None
    """``(sender bare JID, identity id, encryption id)`` -> when that sender
    encryption certificate was replaced by a newer one, if it was: it speaks only
    for stanzas dated before (plus :data:`SUPERSEDED_SLACK`)."""


REPLAY_LABEL: Final = b"urn:ietf:params:xml:ns:xmpp-objenc:0 replay"


def replay_digest(timestamp: datetime, stanza: bytes) -> bytes:
    """SHA-256(label || 0x00 || N || 0x00 || S'): what the replay state keeps and
    ``idempotency_key`` shows. Both copies of one stanza (one per profile) seal the
    same N and S', so a copy replayed in the other profile is the same stanza
    (PROTOCOL.md 6, 13.7); only its sender can make another S' with this N."""
    return hashlib.sha256(
        REPLAY_LABEL + b"\x00" + format_timestamp(timestamp).encode("ascii") + b"\x00" + stanza
    ).digest()


def admit(
    guard: ReplayGuard, sender: str, opened: Opened, *, now: datetime, delay: datetime | None
) -> None:
    """Admit an opened copy into the replay state (:class:`StaleStanza` if not):
    its replay digest, and for the draft's profile its M as well."""
    guard.check(sender, opened.timestamp, opened.digest, now=now, delay=delay)
    if opened.legacy_digest is not None:
        guard.check(sender, opened.timestamp, opened.legacy_digest, now=now, delay=delay)
    guard.record(sender, opened.timestamp, opened.digest, now=now)


def open_copies(
    copies: Sequence[ET.Element],
    keys: OwnKeys,
    sender: str,
    ctx: OpeningContext,
    *,
    max_size: int,
    peer: str | None = None,
) -> Opened | str:
    """Open the copy meant for us among the ``<e2e/>`` elements of one stanza
    from the bare JID ``sender``; or say why not: :data:`UNDECRYPTABLE`
    (deliberately no finer), :data:`DOWNGRADE`, :data:`UNKNOWN_SENDER`,
    :data:`KEY_DESTROYED` or :data:`PASSPHRASE`. ``peer``: the other party of the
    conversation (whose passphrase applies), when not ``sender`` (our own
    stanzas, from carbons and archives)."""
    if not copies or len(copies) > MAX_COPIES:
        return UNDECRYPTABLE
    authenticated = [c for c in copies if is_authenticated(c)]
    draft = [c for c in copies if not is_authenticated(c)]
    if len(authenticated) > 1 or len(draft) > 1:
        return UNDECRYPTABLE
    second = ctx.second(peer or sender)
    if authenticated and keys.device:
        own = addressed_to(authenticated[0], keys.device)
        if own is not None:
            return _open_authenticated(authenticated[0], own, sender, ctx, max_size, second)
        if keys.destroyed and _to_destroyed(authenticated[0], keys):
            return KEY_DESTROYED
    if draft and second:
        return PASSPHRASE  # the draft's profile cannot carry it (PROTOCOL.md 13.12)
    if not draft or not keys.rsa:
        return UNDECRYPTABLE
    if ctx.has_identity(sender) and not ctx.legacy_allowed(sender):
        return DOWNGRADE
    return _open_draft(draft[0], keys.rsa, max_size)


def _to_destroyed(e2e: ET.Element, keys: OwnKeys) -> bool:
    """Whether a ``<key/>`` of this copy (any wrap kind) names our identity with an
    encryption certificate whose private key we destroyed."""
    identities = {own.identity_id.hex() for own in keys.device}
    return any(
        key.get("identity-sha256") in identities and key.get("cert-sha256") in keys.destroyed
        for key in e2e.findall(_KEY)[: MAX_WRAPS + 1]
    )


def _open_authenticated(
    e2e: ET.Element,
    own: AuthSender,
    sender: str,
    ctx: OpeningContext,
    max_size: int,
    second: bytes,
) -> Opened | str:
    ids = sender_ids(e2e)
    if ids is None:
        return UNDECRYPTABLE
    if ctx.resolve_sender(sender, *ids) is None:
        return UNKNOWN_SENDER
    try:
        opened = open_authenticated(
            e2e, own, ctx.resolve_sender, sender, max_size=max_size, second=second
        )
    except InvalidEnvelope:
        return PASSPHRASE if second else UNDECRYPTABLE
    replaced = ctx.superseded_at(sender, *ids)
    if replaced is not None and opened.timestamp > replaced + SUPERSEDED_SLACK:
        return UNDECRYPTABLE  # a replaced key does not speak for stanzas after its time
    return Opened(
        opened.stanza,
        opened.stanza_bytes,
        opened.timestamp,
        replay_digest(opened.timestamp, opened.stanza_bytes),
        CONTENT_ALGO,
        own.identity_id.hex(),
        opened.sender_identity_id.hex(),
        hybrid=opened.hybrid,
    )


def _open_draft(e2e: ET.Element, identities: Sequence[Identity], max_size: int) -> Opened | str:
    for identity in identities[:MAX_OWN_KEYS_TRIED]:
        try:
            opened = open_envelope(
                e2e, identity.private_key, key_id=identity.fingerprint, max_size=max_size
            )
        except InvalidEnvelope:
            continue
        return Opened(
            opened.stanza,
            opened.stanza_bytes,
            opened.timestamp,
            replay_digest(opened.timestamp, opened.stanza_bytes),
            opened.cipher,
            identity.fingerprint,
            legacy_digest=opened.digest,
        )
    return UNDECRYPTABLE
