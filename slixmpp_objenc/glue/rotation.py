"""Rotation of our encryption key, run by the plugin (PROTOCOL.md 13.10): at
start, before the session's first publication, and then on a timer. The
decision and the key work are the device's (:meth:`OwnDevice.rotate_now`,
which runs :func:`~slixmpp_objenc.core.rotation.plan_rotation`); this module
only runs it, publishes a new certificate, and says what happened.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any, Final

from ..core.errors import EncryptionError
from ..core.rotation import RotationPolicy
from ..events import KeyDestroyedEvent, KeyRotatedEvent
from ..own_device import OwnDevice, RotationOutcome
from .common import Tasks
from .persistence import Persistence

__all__ = ["KeyRotation", "policy_from_config"]

log = logging.getLogger(__name__)

MIN_WAIT: Final = 60.0
"""Seconds between two runs at least (a clock that jumps must not spin)."""
MAX_WAIT: Final = 6 * 3600.0
"""Seconds between two runs at most: a suspended machine's timer may be late,
and the injected clock may move faster than the event loop's."""


def policy_from_config(config: dict[str, Any]) -> RotationPolicy:
    """``rotate_every`` and ``retention`` (a timedelta, or seconds) as a policy;
    :class:`~slixmpp_objenc.core.EncryptionError` for values the policy refuses."""
    default = RotationPolicy()
    return RotationPolicy(
        rotate_every=_duration(config.get("rotate_every"), default.rotate_every),
        retention=_duration(config.get("retention"), default.retention),
    )


def _duration(value: object, default: timedelta) -> timedelta:
    if value is None:
        return default
    if isinstance(value, timedelta):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return timedelta(seconds=value)
    raise EncryptionError(
        f"a duration is a timedelta or a number of seconds, not {type(value).__name__} {value!r}"
    )


class KeyRotation:
    """Runs the rotation at start and on a timer; publishes; emits events."""

    def __init__(
        self,
        xmpp: Any,
        device: OwnDevice,
        publish: Callable[[], Awaitable[bool]],
        tasks: Tasks,
        clock: Callable[[], datetime],
    ) -> None:
        self.xmpp = xmpp
        self._device = device
        self._publish = publish
        self._tasks = tasks
        self._clock = clock
        self._timer: asyncio.TimerHandle | None = None
        self.online = False
        """Whether a session is up (a new certificate is published at once; else at
        the next session start, which publishes anyway)."""

    async def before_session(self, persistence: Persistence) -> None:
        """At session start, before our certificate is published: the process may
        have slept past a rotation (the timer counts no suspend), so run it now and
        never publish an overdue or expired key. Never raises (``run`` logs)."""
        await persistence.loaded.wait()
        if persistence.load_error is None:
            with contextlib.suppress(Exception):
                await self.run(publish=False)

    async def run(self, *, publish: bool = True, force: bool = False) -> RotationOutcome | None:
        """Decide and carry out the rotation now (``force``: a new key, due or not);
        publish a new certificate if one was issued and a session is up; emit
        ``objenc_key_rotated`` and ``objenc_key_destroyed``; schedule the next run.
        ``None`` if there is nothing to rotate (no keys of the authenticated profile)."""
        try:
            outcome = await self._device.rotate_now(force=force)
        except Exception:
            log.exception("objenc: rotating our encryption key failed; trying again later")
            self._schedule_in(MAX_WAIT)
            raise
        if outcome is None:
            return None
        self.report(outcome)
        if outcome.rotated is not None and self.online and publish:
            await self._publish()
        return outcome

    def report(self, outcome: RotationOutcome) -> None:
        """The events of one run, and the timer for the next."""
        now = self._clock()
        if outcome.rotated is not None:
            log.info("objenc: new encryption key %s", outcome.rotated[:16])
            event = KeyRotatedEvent(outcome.rotated, outcome.retired, outcome.next_check)
            self.xmpp.event("objenc_key_rotated", event)
        for fingerprint in outcome.destroyed:
            log.info("objenc: destroyed the replaced encryption key %s", fingerprint[:16])
            self.xmpp.event("objenc_key_destroyed", KeyDestroyedEvent(fingerprint, now))
        self._schedule_in((outcome.next_check - now).total_seconds())

    def _schedule_in(self, seconds: float) -> None:
        self.stop()
        wait = min(max(seconds, MIN_WAIT), MAX_WAIT)
        self._timer = self._tasks.loop.call_later(wait, self._due)

    def _due(self) -> None:
        self._timer = None
        task = self._tasks.spawn(self.run())
        task.add_done_callback(_consume)

    def on_session_start(self, _event: Any) -> None:
        self.online = True

    def on_session_end(self, _event: Any) -> None:
        self.online = False

    def stop(self) -> None:
        """Cancel the timer (``plugin_end``)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


def _consume(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()  # logged in run(): not "never retrieved"
