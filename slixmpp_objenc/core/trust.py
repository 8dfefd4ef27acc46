"""Trust on first use, as a pure decision over what is already held for a JID."""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum

__all__ = ["Observation", "classify_certificate"]


class Observation(StrEnum):
    """What seeing a certificate for a JID means."""

    FIRST = "first"
    """No certificate was ever held for the JID: pin it (trust on first use)."""
    KNOWN = "known"
    """Already held: nothing changes but the last-seen time."""
    CHANGED = "changed"
    """A different certificate for a JID we already hold one for: never trusted
    silently; the application decides."""


def classify_certificate(held: Mapping[str, str], fingerprint: str) -> Observation:
    """Classify ``fingerprint`` against ``held`` (fingerprint -> trust state name)."""
    if fingerprint in held:
        return Observation.KNOWN
    if not held:
        return Observation.FIRST
    return Observation.CHANGED
