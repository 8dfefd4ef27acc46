"""When our encryption key is replaced and when a replaced one is destroyed
(issue 13, forward secrecy; PROTOCOL.md 13.10).

A device's X25519 encryption key (authenticated profile) is replaced every
:attr:`RotationPolicy.rotate_every`; the private key of a replaced one is
kept for :attr:`RotationPolicy.retention` (offline messages and archives
sealed to it still open), then destroyed. A new encryption certificate is
valid for ``rotate_every + retention``: past that, no sender may use it, so
a server that withholds the next certificate cannot stretch the window in
which a stolen key reads new stanzas.

:func:`plan_rotation` is the whole decision, pure: the keys we hold in, what
to do now and when to look again out. The glue executes it (issues the
certificate, publishes it, deletes keys) at start and on a timer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from .errors import EncryptionError

__all__ = [
    "DEFAULT_RETENTION",
    "DEFAULT_ROTATE_EVERY",
    "HeldEncryptionKey",
    "RotationPlan",
    "RotationPolicy",
    "plan_rotation",
]

DEFAULT_ROTATE_EVERY: Final = timedelta(days=7)
DEFAULT_RETENTION: Final = timedelta(days=30)
MIN_ROTATE_EVERY: Final = timedelta(hours=1)
"""Shorter schedules would republish our node faster than contacts read it."""


@dataclass(frozen=True, slots=True)
class RotationPolicy:
    """How often our encryption key is replaced, and how long a replaced one is kept."""

    rotate_every: timedelta = DEFAULT_ROTATE_EVERY
    retention: timedelta = DEFAULT_RETENTION

    def __post_init__(self) -> None:
        if self.rotate_every < MIN_ROTATE_EVERY:
            raise EncryptionError(f"rotate_every under {MIN_ROTATE_EVERY} is refused")
        if self.retention < timedelta(0):
            raise EncryptionError("retention cannot be negative")

    @property
    def validity(self) -> timedelta:
        """How long a new encryption certificate is valid: rotation plus retention."""
        return self.rotate_every + self.retention


@dataclass(frozen=True, slots=True)
class HeldEncryptionKey:
    """One of our encryption keys as the store holds it."""

    fingerprint: str
    """SHA-256 of its certificate (its id on the wire)."""
    issued_at: datetime
    """When its certificate was issued (its ``notBefore``, backdating aside)."""
    retired_at: datetime | None = None
    """When a newer key replaced it; ``None`` for the current one."""


@dataclass(frozen=True, slots=True)
class RotationPlan:
    """What :func:`plan_rotation` says to do now."""

    rotate: bool
    """Issue a new encryption key and certificate, publish it, retire the current one."""
    retire: tuple[str, ...]
    """Keys to mark replaced now (every current key but the newest, and it too
    when ``rotate``)."""
    destroy: tuple[str, ...]
    """Keys whose private half must be destroyed now (retired longer than retention)."""
    next_check: datetime
    """When to decide again at the latest."""


def plan_rotation(
    keys: Sequence[HeldEncryptionKey],
    now: datetime,
    policy: RotationPolicy,
    *,
    replace_now: bool = False,
) -> RotationPlan:
    """The rotation decision for the encryption keys we hold (PROTOCOL.md 13.10).

    Rotate when there is no current key, or the newest current one was issued
    ``rotate_every`` ago or more (or claims to be issued in the future: a
    clock that jumped back must not keep one key for ever), or ``replace_now``
    (what the certificate says changed: the device's label). Retire every
    current key but the newest. Destroy every key retired ``retention`` ago
    or more. Never destroys the key in use.
    """
    current = sorted(
        (k for k in keys if k.retired_at is None), key=lambda k: (k.issued_at, k.fingerprint)
    )
    newest = current[-1] if current else None
    age = now - newest.issued_at if newest is not None else None
    rotate = replace_now or age is None or age >= policy.rotate_every or age < -policy.rotate_every
    retire = [k.fingerprint for k in current[:-1]]
    if rotate and newest is not None:
        retire.append(newest.fingerprint)
    destroy = tuple(
        k.fingerprint
        for k in keys
        if k.retired_at is not None and now - k.retired_at >= policy.retention
    )
    if rotate or newest is None:
        deadlines = [now + policy.rotate_every]
    else:
        deadlines = [newest.issued_at + policy.rotate_every]
    deadlines.extend(
        k.retired_at + policy.retention
        for k in keys
        if k.retired_at is not None and k.fingerprint not in destroy
    )
    if retire:
        deadlines.append(now + policy.retention)
    return RotationPlan(rotate, tuple(retire), destroy, max(now, min(deadlines)))
