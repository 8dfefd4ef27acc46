"""Trust on first use, as a pure decision over what is already held for a JID."""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum

__all__ = ["Observation", "classify_certificate", "classify_publication"]


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
