"""Trust on first use, as pure decisions over what is already held for a JID
(PROTOCOL.md sections 9-10): a contact's published set, our own account's
(other devices of ours are never trusted without a decision), and what a
verification covers."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final

__all__ = [
    "MAX_HELD_PER_JID",
    "Observation",
    "Reconciliation",
    "Sighting",
    "TrustState",
    "classify_certificate",
    "classify_publication",
    "reconcile",
    "verification_outcome",
]

MAX_HELD_PER_JID: Final = 64
"""Certificates held for one JID, any state: a node that keeps publishing new
keys (each held for a decision, then rejected) cannot grow the key ring
without bound. Beyond it, new certificates are not recorded (and reported)."""


class TrustState(StrEnum):
    """How far a peer certificate is trusted."""

    VERIFIED = "verified"
    """Confirmed by the user (short authentication string or fingerprint)."""
    TOFU = "tofu"
    """Pinned on first use: the first certificate(s) seen for the JID, or accepted."""
    UNTRUSTED = "untrusted"
    """Known but not to be encrypted to: a changed key or new device awaiting a
    decision (stanzas to the JID are held), or a verification that failed."""
    REVOKED = "revoked"
    """Rejected by the user for good: never encrypted to again, never asked again."""
    UNPUBLISHED = "unpublished"
    """Pinned (``tofu``) and no longer published: not encrypted to while the
    node does not list it, restored to ``tofu`` when it is published again (it
    is the key we pinned; the server can hide a key, not make us drop it)."""

    @property
    def usable(self) -> bool:
        """Whether stanzas may be encrypted to a certificate in this state."""
        return self in (TrustState.VERIFIED, TrustState.TOFU)

    @property
    def pending(self) -> bool:
        """Whether the application is asked to decide (accept or reject)."""
        return self is TrustState.UNTRUSTED


class Observation(StrEnum):
    """What seeing a certificate for a JID means."""

    FIRST = "first"
    """No certificate was ever held for the JID: pin it (trust on first use)."""
    KNOWN = "known"
    """Already held: nothing changes but the last-seen time."""
    ADDED = "added"
    """Another device of a contact whose pinned certificates are all still
    published and none verified (with ``trust_new_devices``), or a new device
    of our own account (with ``trust_own_new_devices``): trusted at once
    (blind trust before verification), and reported."""
    CHANGED = "changed"
    """A different certificate for a JID we already hold one for, replacing it
    or joining a verified contact, or a new device of our own account: never
    trusted silently; the application decides."""
    VOUCHED = "vouched"
    """A new identity certificate (authenticated profile) vouched for by the RSA
    certificate of the same device that we hold pinned or verified: it takes
    that trust state without a prompt, once per RSA certificate (PROTOCOL.md
    13.8)."""
    RESTORED = "restored"
    """A pinned certificate that was unpublished is published again: the same
    key, trusted again (held for a decision instead if the contact has been
    verified since, which did not cover it)."""


def classify_certificate(held: Mapping[str, str], fingerprint: str) -> Observation:
    """Classify ``fingerprint`` against ``held`` (fingerprint -> trust state name)."""
    if fingerprint in held:
        return Observation.KNOWN
    if not held:
        return Observation.FIRST
    return Observation.CHANGED


def classify_publication(
    held: Mapping[str, str], published: set[str], fingerprint: str
) -> Observation:
    """Classify one certificate of a contact's published set.

    ``held`` maps the fingerprints held before this publication to their trust
    state names; ``published`` is the whole set now published. All of a first
    publication is ``FIRST``; a new one next to pinned certificates that are
    all still published is ``ADDED`` unless one of them is verified; anything
    else new is ``CHANGED``.
    """
    if fingerprint in held:
        return Observation.KNOWN
    usable = {fp for fp, state in held.items() if state in ("tofu", "verified")}
    if not usable:
        return Observation.FIRST if not held else Observation.CHANGED
    if "verified" in {held[fp] for fp in usable}:
        return Observation.CHANGED
    if usable <= published:
        return Observation.ADDED
    return Observation.CHANGED


@dataclass(frozen=True, slots=True)
class Sighting:
    """One published certificate and what seeing it means."""

    fingerprint: str
    observation: Observation
    trust: TrustState | None
    """The state to record; ``None`` keeps the held one (``KNOWN``)."""
    previous: tuple[str, ...]
    """Fingerprints held before, other than this one (for the event)."""


@dataclass(slots=True)
class Reconciliation:
    """What to record after reading a JID's node (:func:`reconcile`)."""

    sightings: list[Sighting] = field(default_factory=list)
    """Each published certificate (ours excepted) and what to record for it."""
    unpublished: list[str] = field(default_factory=list)
    """Pinned (``tofu``) certificates learnt from PEP and no longer published:
    set ``unpublished`` (not used until published again)."""
    withdrawn_verified: list[str] = field(default_factory=list)
    """``verified`` certificates no longer published: kept and still used (the
    server's word alone never undoes a verification); the application is told."""
    forgotten: list[str] = field(default_factory=list)
    """Certificates awaiting a decision and no longer published: forgotten (they
    were never trusted; published again, they are asked about again)."""
    over_limit: int = 0
    """New certificates not recorded because :data:`MAX_HELD_PER_JID` are held."""


def reconcile(
    held: Mapping[str, tuple[TrustState, str]],
    published: Sequence[str],
    own: Collection[str],
    *,
    trust_new_devices: bool = False,
    complete: bool = True,
    own_account: bool = False,
    first_contact: bool = False,
    max_held: int = MAX_HELD_PER_JID,
    inherited: Mapping[str, TrustState] | None = None,
) -> Reconciliation:
    """Take in the set of certificates a JID publishes (PROTOCOL.md sections 9-10).

    ``held`` maps the fingerprints held before to their (trust state, source);
    ``published`` are the fingerprints now published (already checked and
    capped: :func:`~slixmpp_objenc.core.devices.read_publication`),
    ``own`` ours (skipped).

    A contact (``own_account`` false): its first publication is pinned
    (``FIRST``); a new device next to pinned ones is held like a key change
    unless ``trust_new_devices`` (``ADDED``); a replacement, or anything new
    next to a verified certificate, is held (``CHANGED``).

    Our own account's node (``own_account``): a certificate that is not ours
    is a device of ours only after a decision by a device we trust, so
    anything new is held (``CHANGED``), or trusted at once with
    ``trust_new_devices`` (the ``trust_own_new_devices`` opt-in, ``ADDED``).
    The one exception is ``first_contact``: this device's very first read of
    its own node, on a new device of an account that already publishes
    certificates, pins what it finds (``FIRST``), as for a contact.

    With ``complete`` (the whole node was read), what is no longer published
    is answered in :class:`Reconciliation`: pinned ones ``unpublished``,
    verified ones kept, pending ones forgotten, revoked ones left alone. A
    pinned certificate published again is ``RESTORED``.

    ``inherited`` maps new identity fingerprints to the trust state of the RSA
    certificate that vouched for them (already checked, once per RSA
    certificate): they are ``VOUCHED`` with it, on any node.
    """
    states = {fp: state.value for fp, (state, _source) in held.items()}
    verified = any(state is TrustState.VERIFIED for state, _source in held.values())
    published_set = set(published)
    result = Reconciliation()
    room = max_held - len(held)
    for fingerprint in published:
        if fingerprint in own:
            continue  # ourselves
        previous = tuple(fp for fp in states if fp != fingerprint)
        if fingerprint in held:
            state = held[fingerprint][0]
            if state is TrustState.UNPUBLISHED:
                trust = TrustState.UNTRUSTED if verified else TrustState.TOFU
                result.sightings.append(
                    Sighting(fingerprint, Observation.RESTORED, trust, previous)
                )
            else:
                result.sightings.append(Sighting(fingerprint, Observation.KNOWN, None, ()))
            continue
        if room <= 0:
            result.over_limit += 1
            continue
        room -= 1
        if inherited and fingerprint in inherited:
            result.sightings.append(
                Sighting(fingerprint, Observation.VOUCHED, inherited[fingerprint], previous)
            )
            continue
        if own_account:
            if first_contact:
                observation = Observation.FIRST
            elif trust_new_devices:
                observation = Observation.ADDED
            else:
                observation = Observation.CHANGED
        else:
            observation = classify_publication(states, published_set, fingerprint)
            if observation is Observation.ADDED and not trust_new_devices:
                observation = Observation.CHANGED  # default: a new device is a key change
        trust = TrustState.UNTRUSTED if observation is Observation.CHANGED else TrustState.TOFU
        result.sightings.append(Sighting(fingerprint, observation, trust, previous))
    if complete:
        for fingerprint, (state, source) in held.items():
            if source != "pep" or fingerprint in published_set:
                continue
            if state is TrustState.TOFU:
                result.unpublished.append(fingerprint)
            elif state is TrustState.VERIFIED:
                result.withdrawn_verified.append(fingerprint)
            elif state is TrustState.UNTRUSTED:
                result.forgotten.append(fingerprint)
    return result


def verification_outcome(
    held: Mapping[str, TrustState], covered: Collection[str], *, matched: bool
) -> dict[str, TrustState]:
    """The trust states to record once the users compared a short authentication
    string (PROTOCOL.md section 11) for one JID.

    ``held`` maps that JID's certificates to their states, ``covered`` the
    fingerprints the exchange covered (every certificate we encrypted to for
    it). Matched: each covered one held becomes ``verified``, and every other
    usable one stops being used (``untrusted``: held for a decision, like a
    new device of a verified contact). Not matched: each covered one becomes
    ``untrusted``. A certificate revoked meanwhile stays revoked; others are
    left alone.
    """
    changes: dict[str, TrustState] = {}
    for fingerprint, state in held.items():
        if fingerprint in covered:
            if matched and state is not TrustState.REVOKED:
                changes[fingerprint] = TrustState.VERIFIED
            elif state.usable:
                changes[fingerprint] = TrustState.UNTRUSTED
        elif matched and state.usable:
            changes[fingerprint] = TrustState.UNTRUSTED
    return changes
