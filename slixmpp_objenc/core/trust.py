"""Trust on first use, as a pure decision over what is already held for a JID."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

__all__ = [
    "Observation",
    "Sighting",
    "TrustState",
    "classify_certificate",
    "classify_publication",
    "reconcile",
]


class TrustState(StrEnum):
    """How far a peer certificate is trusted."""

    VERIFIED = "verified"
    """Confirmed by the user (short authentication string or fingerprint)."""
    TOFU = "tofu"
    """Pinned on first use: the first certificate seen for the JID."""
    UNTRUSTED = "untrusted"
    """Known but not to be encrypted to (e.g. a changed key awaiting a decision)."""
    REVOKED = "revoked"
    """Rejected for good: never encrypted to again."""

    @property
    def usable(self) -> bool:
        """Whether stanzas may be encrypted to a certificate in this state."""
        return self in (TrustState.VERIFIED, TrustState.TOFU)


class Observation(StrEnum):
    """What seeing a certificate for a JID means."""

    FIRST = "first"
    """No certificate was ever held for the JID: pin it (trust on first use)."""
    KNOWN = "known"
    """Already held: nothing changes but the last-seen time."""
    ADDED = "added"
    """Another device of a contact whose pinned certificates are all still
    published and none verified: trusted like the first (blind trust before
    verification), and reported."""
    CHANGED = "changed"
    """A different certificate for a JID we already hold one for, replacing it
    or joining a verified contact: never trusted silently; the application
    decides."""


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


def reconcile(
    held: Mapping[str, tuple[TrustState, str]],
    published: Sequence[str],
    own: Collection[str],
    *,
    trust_new_devices: bool = False,
    complete: bool = True,
) -> tuple[list[Sighting], list[str]]:
    """Take in the set of certificates a JID publishes (PROTOCOL.md sections 9-10).

    ``held`` maps the fingerprints held before to their (trust state, source);
    ``published`` are the fingerprints now published, ``own`` ours (skipped).
    Returns what to record for each published certificate and, with
    ``complete`` (the whole node was read), the fingerprints learnt from PEP
    that are no longer published, to revoke. A new device next to pinned
    ones is held like a key change unless ``trust_new_devices``.
    """
    states = {fp: state.value for fp, (state, _source) in held.items()}
    published_set = set(published)
    sightings = []
    for fingerprint in published:
        if fingerprint in own:
            continue  # ourselves
        observation = classify_publication(states, published_set, fingerprint)
        if observation is Observation.KNOWN:
            sightings.append(Sighting(fingerprint, observation, None, ()))
            continue
        if observation is Observation.ADDED and not trust_new_devices:
            observation = Observation.CHANGED  # default: a new device is a key change
        trust = TrustState.UNTRUSTED if observation is Observation.CHANGED else TrustState.TOFU
        previous = tuple(fp for fp in states if fp != fingerprint)
        sightings.append(Sighting(fingerprint, observation, trust, previous))
    revoked = []
    if complete:
        for fingerprint, (state, source) in held.items():
            if (
                source == "pep"
                and fingerprint not in published_set
                and state is not TrustState.REVOKED
            ):
                revoked.append(fingerprint)
    return sightings, revoked
