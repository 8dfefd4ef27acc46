"""Revocation of a lost device (authenticated profile): a statement signed by
another device of the same account, published on the account's node, that
makes contacts stop encrypting to the lost device at once and for good.

**Bytes.** ``message = REVOKE_LABEL || 0x00 || revoked id (32) || revoker id
(32) || issued_at (8, big-endian milliseconds since the epoch, UTC)``, where
``REVOKE_LABEL`` is ``PROFILE_ID + " revoke"`` and an id is the SHA-256 of an
identity certificate's DER; Ed25519 (RFC 8032, pure) by the revoker's
identity key. The message starts with ``u``, never with a DER SEQUENCE
(``0x30``), so it cannot be taken for a certificate the same key signs.

**XML**, the payload of item ``revoke-{revoked id}`` on the node of section 9::

    <revocation xmlns='urn:ietf:params:xml:ns:xmpp-objenc:0'
                revoked-sha256='{hex}' revoker-sha256='{hex}'
                issued='2024-05-01T12:00:00.000Z'>{base64 of 64 bytes}</revocation>

**Rules** (:func:`decide_revocations`, for the node of ``bare_jid``). A
revocation is accepted when:

1. its revoker is an identity held for ``bare_jid`` (it names that JID) in a
   trusted state, ``verified`` or ``tofu`` (not ``untrusted``,
   ``unpublished`` nor ``revoked``): an unknown identity, one held for
   another JID (even a verified contact) or one awaiting a decision revokes
   nothing;
2. the revoked identity is not the revoker (a device does not revoke itself);
3. the revoked identity, when held, names ``bare_jid`` too;
4. ``issued_at`` is at most :data:`MAX_FUTURE` (5 minutes) ahead of now (a
   far-future one is ignored; it is read again at the next fetch);
5. the signature verifies under the revoker's key over exactly the message;
6. its revoker is not revoked: ``X -> Y`` is void when an accepted ``Z -> X``
   exists with ``Z != Y``. A device the user revoked revokes nothing (rule
   1); a device revoked by a revocation can still revoke the one device
   that did it, while no other did (a *counter-revocation*), so two devices
   that revoke each other are both revoked whichever was read first (fail
   closed: the user re-verifies), and its revocation of a third is void.
   Revocations that void each other in a cycle are all accepted (fail
   closed).

Accepted revocations are **permanent**: the caller remembers them (with the
state the revoked identity had before) and passes them back as
``remembered``; an item that disappears later changes nothing (the server
may withhold it; it cannot forge one). A revocation of an identity not held
is remembered too (``pre_revoked``): if that identity is published later, it
is revoked at once, never pinned. That is safe because the revoker is
trusted for that account: it could revoke the identity once held anyway.

**Limits.** A thief holding the lost device holds a trusted key as well. It
may revoke the good devices first; each good device's revocation of it then
revokes it too (a counter-revocation), and the user re-verifies the good
devices. Without counter-revocations, a contact that read the thief's
revocation first would keep only the thief. Symmetrically, a thief revoked
by one device alone may revoke that device in return; revoked by two, it
revokes nothing more. A server (or whoever holds the account's password)
can withhold, retract or reorder revocation items for contacts that have
not read them yet; it cannot forge one. Timestamps are signed but decide
nothing but rule 4 (the thief chooses its own).
"""

from __future__ import annotations

import logging
import re
import xml.etree.ElementTree as ET
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final, NamedTuple

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from .authenticated import PROFILE_ID
from .certificates import certificate_fingerprint
from .constants import NS_OBJENC, qname
from .errors import EncryptionError
from .timestamps import format_timestamp, parse_timestamp, to_ms, utcnow
from .xmlsafe import b64decode_strict, b64encode

__all__ = [
    "ITEM_PREFIX",
    "MAX_FUTURE",
    "MAX_VERIFIED",
    "REVOKE_LABEL",
    "SIGNATURE_SIZE",
    "TRUSTED_STATES",
    "HeldIdentity",
    "Revocation",
    "RevocationDecision",
    "check_revocation",
    "decide_revocations",
    "parse_revocation",
    "read_revocation",
    "revocation_element",
    "revocation_item_id",
    "revocation_message",
    "sign_revocation",
    "verify_revocation",
]

log = logging.getLogger(__name__)

REVOKE_LABEL: Final = PROFILE_ID + b" revoke"
"""The message starts ``REVOKE_LABEL || 0x00``."""
ITEM_PREFIX: Final = "revoke-"
"""A revocation's item id is ``revoke-{revoked id}``: one item per revoked
device (a device's own item id is its bare fingerprint)."""
SIGNATURE_SIZE: Final = 64
MAX_FUTURE: Final = timedelta(minutes=5)
"""How far ahead of our clock ``issued_at`` may be (clock skew)."""
MAX_VERIFIED: Final = 64
"""Signatures checked per :func:`decide_revocations` call, at most."""
TRUSTED_STATES: Final = frozenset({"verified", "tofu"})
"""Trust states (:class:`~.trust.TrustState` values) whose identity may revoke."""

_TAG: Final = qname(NS_OBJENC, "revocation")
_ATTRIBUTES: Final = frozenset({"revoked-sha256", "revoker-sha256", "issued"})
_HEX_ID: Final = re.compile("[0-9a-f]{64}")
_MAX_TEXT: Final = 256
"""Characters of signature text read at most (88 expected, whitespace allowed)."""
_MAX_ISSUED: Final = 64
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Revocation:
    """A signed statement: ``revoker`` revokes ``revoked`` (identity ids, 64
    lowercase hex), issued at ``issued_at`` (aware UTC, whole milliseconds)."""

    revoked: str
    revoker: str
    issued_at: datetime
    signature: bytes
    """Ed25519, 64 bytes, over :func:`revocation_message`."""

    @property
    def item_id(self) -> str:
        """The id of the node item that carries it."""
        return revocation_item_id(self.revoked, self.revoker)


def revocation_item_id(revoked: str, revoker: str) -> str:
    """``revoke-{revoked id}-{revoker id}``: the item publishing ``revoker``'s
    revocation of ``revoked`` (one per pair: two devices revoking one thief
    publish two items, and contacts read both)."""
    return f"{ITEM_PREFIX}{revoked}-{revoker}"


def revocation_message(revoked: str, revoker: str, issued_at: datetime) -> bytes:
    """The signed bytes: :data:`REVOKE_LABEL`, ``0x00``, both 32-byte ids, and
    ``issued_at`` as 8 big-endian bytes of milliseconds since the epoch.
    ``ValueError`` for an id that is not 64 lowercase hex, a naive or pre-1970
    ``issued_at``."""
    ms = to_ms(issued_at)  # ValueError when naive
    if ms < 0:
        raise ValueError("issued before 1970")
    return REVOKE_LABEL + b"\x00" + _id(revoked) + _id(revoker) + ms.to_bytes(8, "big")


def _id(text: str) -> bytes:
    if not isinstance(text, str) or _HEX_ID.fullmatch(text) is None:
        raise ValueError("an identity id is 64 lowercase hex digits")
    return bytes.fromhex(text)


def sign_revocation(
    identity_key: Ed25519PrivateKey,
    identity_certificate: x509.Certificate,
    revoked_fingerprint: str,
    now: datetime | None = None,
) -> Revocation:
    """Our identity (key and its certificate) revokes ``revoked_fingerprint``,
    issued ``now`` truncated to the millisecond. :class:`EncryptionError`
    (local misuse) when the key is not the certificate's, the id is not 64
    lowercase hex, it is our own (a device does not revoke itself), or
    ``now`` is naive or before 1970."""
    revoker = certificate_fingerprint(identity_certificate)
    raw = (Encoding.Raw, PublicFormat.Raw)
    certified = identity_certificate.public_key()
    if not isinstance(certified, Ed25519PublicKey) or (
        identity_key.public_key().public_bytes(*raw) != certified.public_bytes(*raw)
    ):
        raise EncryptionError("the identity key is not the identity certificate's")
    if revoked_fingerprint == revoker:
        raise EncryptionError("a device does not revoke itself")
    issued = now or utcnow()
    try:
        issued = _EPOCH + timedelta(milliseconds=to_ms(issued))
        message = revocation_message(revoked_fingerprint, revoker, issued)
    except ValueError as exc:
        raise EncryptionError(f"cannot revoke: {exc}") from exc
    return Revocation(revoked_fingerprint, revoker, issued, identity_key.sign(message))


def verify_revocation(revocation: Revocation, public_key: Ed25519PublicKey) -> bool:
    """Whether ``revocation``'s signature verifies under ``public_key`` over its
    message (false as well for a malformed revocation)."""
    try:
        message = revocation_message(revocation.revoked, revocation.revoker, revocation.issued_at)
        public_key.verify(revocation.signature, message)
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def revocation_element(revocation: Revocation) -> ET.Element:
    """The ``<revocation/>`` payload of its item (``revocation.item_id``)."""
    element = ET.Element(
        _TAG,
        {
            "revoked-sha256": revocation.revoked,
            "revoker-sha256": revocation.revoker,
            "issued": format_timestamp(revocation.issued_at),
        },
    )
    element.text = b64encode(revocation.signature)
    return element


def read_revocation(element: ET.Element) -> Revocation | str:
    """A ``<revocation/>`` item payload, already parsed (slixmpp's parser), read
    strictly: the revocation, or the reason it is malformed (a wrong tag or
    namespace, child elements, missing or extra attributes, xml:lang included,
    an id that is not 64 lowercase hex, ``issued`` not an RFC 3339 / XEP-0082
    UTC time with ``Z`` or before 1970, a signature that is not exactly 64
    bytes of base64, more than 256 characters of text). Nothing is checked
    against keys: :func:`decide_revocations` does."""
    if element.tag != _TAG:
        return f"not a revocation: {str(element.tag)[:80]}"
    if len(element):
        return "child elements in a revocation"
    names = set(element.attrib)
    if names != _ATTRIBUTES:
        missing = ", ".join(sorted(_ATTRIBUTES - names)) or "none"
        extra = ", ".join(sorted(n[:40] for n in names - _ATTRIBUTES)) or "none"
        return f"attributes: missing {missing}; extra {extra}"
    revoked, revoker = element.attrib["revoked-sha256"], element.attrib["revoker-sha256"]
    if _HEX_ID.fullmatch(revoked) is None or _HEX_ID.fullmatch(revoker) is None:
        return "an identity id is not 64 lowercase hex digits"
    issued_text = element.attrib["issued"]
    if len(issued_text) > _MAX_ISSUED or issued_text != issued_text.strip():
        return "issued is not a timestamp"
    try:
        issued = parse_timestamp(issued_text, utc_only=True)
    except ValueError:
        return "issued is not a UTC timestamp"
    if issued < _EPOCH:
        return "issued before 1970"
    text = element.text or ""
    if len(text) > _MAX_TEXT:
        return f"signature text of {len(text)} characters"
    try:
        signature = b64decode_strict(text)  # RFC 4648, validate=True, whitespace ignored
    except ValueError:
        return "signature is not base64"
    if len(signature) != SIGNATURE_SIZE:
        return f"signature of {len(signature)} bytes, not {SIGNATURE_SIZE}"
    return Revocation(revoked, revoker, issued, signature)


def parse_revocation(element: ET.Element) -> Revocation | None:
    """:func:`read_revocation`, with ``None`` for a malformed one (its reason is
    logged at info level)."""
    found = read_revocation(element)
    if isinstance(found, str):
        log.info("objenc: ignoring a malformed revocation: %s", found)
        return None
    return found


class HeldIdentity(NamedTuple):
    """What the key ring holds for one identity of the JID whose node is read."""

    public_key: Ed25519PublicKey
    trust: str
    """Its trust state (a :class:`~.trust.TrustState` value). For an identity
    revoked by an accepted revocation, the state it had **before** it (the
    caller keeps it with the revocation): what decides whether it may
    counter-revoke. Passing ``revoked`` there instead is safe (it then revokes
    nothing)."""
    jids: Collection[str]
    """The JIDs its certificate names (exactly one for a valid identity)."""


@dataclass(frozen=True, slots=True)
class RevocationDecision:
    """What :func:`decide_revocations` accepted, and what it ignored."""

    revoked: dict[str, Revocation]
    """Held identity -> the accepted revocation (the earliest issued, when
    several): mark it ``revoked`` now. Only identities not already revoked
    (by the user or by a remembered revocation)."""
    pre_revoked: dict[str, Revocation]
    """An identity not held -> the accepted revocation: remember it, and
    revoke that identity (never pin it) if it is published later."""
    accepted: tuple[Revocation, ...]
    """Every revocation accepted by this call, in input order: remember them
    all (they are permanent) and pass them back as ``remembered``."""
    ignored: tuple[tuple[Revocation, str], ...]
    """Each revocation not accepted, with the reason, in input order."""


def check_revocation(
    revocation: Revocation,
    *,
    bare_jid: str,
    held: Mapping[str, tuple[Ed25519PublicKey, str, Collection[str]]],
    now: datetime | None = None,
) -> str | None:
    """Rules 1-5 of the module for one revocation alone: ``None`` when it
    stands, else the reason it is ignored. ``held`` maps the identity ids
    held for ``bare_jid`` to (key, trust state, JIDs), as :class:`HeldIdentity`.
    Rule 6 needs the other revocations: :func:`decide_revocations`."""
    reason = _static_reason(revocation, bare_jid, held, now or utcnow())
    if reason is not None:
        return reason
    if not verify_revocation(revocation, held[revocation.revoker][0]):
        return "bad signature"
    return None


def _static_reason(
    revocation: Revocation,
    bare_jid: str,
    held: Mapping[str, tuple[Ed25519PublicKey, str, Collection[str]]],
    now: datetime,
) -> str | None:
    """Rules 1-4: everything but the signature (checked last: it costs most)."""
    if revocation.revoked == revocation.revoker:
        return "a device revoking itself"
    if revocation.revoker not in held:
        return "revoker is not an identity held for this JID"
    key, trust, jids = held[revocation.revoker]
    if bare_jid not in jids:
        return f"revoker names {', '.join(sorted(jids))[:200]}, not {bare_jid}"
    if trust not in TRUSTED_STATES:
        return f"revoker is {trust}"
    if not isinstance(key, Ed25519PublicKey):
        return "revoker is not an identity"
    target = held.get(revocation.revoked)
    if target is not None and bare_jid not in target[2]:
        return f"revokes an identity that does not name {bare_jid}"
    if revocation.issued_at.tzinfo is None or revocation.issued_at > now + MAX_FUTURE:
        return "issued in the future"
    return None


def decide_revocations(
    bare_jid: str,
    held: Mapping[str, tuple[Ed25519PublicKey, str, Collection[str]]],
    revocations: Sequence[Revocation],
    *,
    remembered: Iterable[Revocation] = (),
    now: datetime | None = None,
    max_verified: int = MAX_VERIFIED,
) -> RevocationDecision:
    """Which of ``revocations`` (read from ``bare_jid``'s node) to accept, by the
    rules of this module.

    ``held`` maps each identity id held for ``bare_jid`` to (Ed25519 key, trust
    state, JIDs) (:class:`HeldIdentity`); for our own account's node, our own
    identity belongs there (``verified``), so that a revocation of this device
    is reported in ``revoked``. ``remembered`` are the revocations accepted
    before for ``bare_jid``: accepted for good, not checked again (a pair
    already remembered is ignored as such). At most ``max_verified``
    signatures are checked, those revoking a held identity first; the rest are
    ignored ("not examined") and read again at the next fetch.
    """
    now = now or utcnow()
    fixed = list(remembered)
    known = {(r.revoked, r.revoker) for r in fixed}
    ignored: list[tuple[int, Revocation, str]] = []
    valid: list[tuple[int, Revocation]] = []
    order = sorted(range(len(revocations)), key=lambda i: revocations[i].revoked not in held)
    verified = 0
    for index in order:
        revocation = revocations[index]
        pair = (revocation.revoked, revocation.revoker)
        if pair in known:
            ignored.append((index, revocation, "already taken"))
            continue
        reason = _static_reason(revocation, bare_jid, held, now)
        if reason is None and verified >= max_verified:
            reason = "not examined (over the limit)"
        elif reason is None:
            verified += 1
            if not verify_revocation(revocation, held[revocation.revoker][0]):
                reason = "bad signature"
        if reason is not None:
            ignored.append((index, revocation, reason))
            continue
        known.add(pair)
        valid.append((index, revocation))
    valid.sort()
    accepted, defeated = _settle(fixed, [r for _index, r in valid])
    for (index, revocation), by in zip(valid, defeated, strict=True):
        if by is not None:
            ignored.append((index, revocation, f"its revoker is revoked (by {by})"))
    ignored.sort(key=lambda entry: entry[0])
    already = {r.revoked for r in fixed} | {
        fp for fp, (_key, trust, _jids) in held.items() if trust == "revoked"
    }
    revoked: dict[str, Revocation] = {}
    pre_revoked: dict[str, Revocation] = {}
    for revocation in sorted(accepted, key=lambda r: (r.issued_at, r.revoker)):
        if revocation.revoked in already:
            continue
        chosen = revoked if revocation.revoked in held else pre_revoked
        chosen.setdefault(revocation.revoked, revocation)
    return RevocationDecision(
        revoked,
        pre_revoked,
        tuple(accepted),
        tuple((revocation, reason) for _index, revocation, reason in ignored),
    )


def _settle(
    fixed: Sequence[Revocation], new: Sequence[Revocation]
) -> tuple[list[Revocation], list[str | None]]:
    """Rule 6 over ``fixed`` (accepted for good) and ``new`` (rules 1-5 passed):
    ``X -> Y`` is defeated by an accepted ``Z -> X`` with ``Z != Y``. Grounded:
    accept what nothing accepted-or-undecided defeats, drop what an accepted
    one defeats, until nothing changes; whatever is left (a cycle) is
    accepted (fail closed). Returns the new accepted ones, in order, and per
    new one the revoker that defeated it (``None``: accepted)."""
    everything = [*fixed, *new]
    status: list[bool | None] = [True] * len(fixed) + [None] * len(new)
    by_revoked: dict[str, list[int]] = {}
    for j, s in enumerate(everything):
        by_revoked.setdefault(s.revoked, []).append(j)
    attackers = [  # indexed: linear, not quadratic, in what is kept
        [j for j in by_revoked.get(r.revoker, ()) if everything[j].revoker != r.revoked]
        for r in everything
    ]
    changed = True
    while changed:
        changed = False
        for i in range(len(fixed), len(everything)):
            if status[i] is not None:
                continue
            if any(status[j] is True for j in attackers[i]):
                status[i] = False
                changed = True
            elif all(status[j] is False for j in attackers[i]):
                status[i] = True
                changed = True
    accepted: list[Revocation] = []
    defeated: list[str | None] = []
    for i in range(len(fixed), len(everything)):
        if status[i] is False:
            by = next(everything[j].revoker for j in attackers[i] if status[j] is True)
            defeated.append(by)
        else:  # accepted, or undecided in a cycle: fail closed
            accepted.append(everything[i])
            defeated.append(None)
    return accepted, defeated
