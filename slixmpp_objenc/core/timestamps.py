"""Timestamps (draft section 6): formatting, a monotonic sending clock, and
the receiving side's freshness and replay rules.

Everything takes the current time as an argument or an injectable clock, so
tests pin it; nothing here reads the wall clock behind the caller's back.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from .errors import StaleStanza

__all__ = [
    "ReplayGuard",
    "ReplayGuardState",
    "TimestampSource",
    "check_archived",
    "format_timestamp",
    "parse_timestamp",
    "to_ms",
    "utcnow",
]

Clock = Callable[[], datetime]

_RFC3339: Final = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?([Zz]|[+-]\d{2}:\d{2})$",
    re.ASCII,
)


def utcnow() -> datetime:
    """The default clock: aware UTC now."""
    return datetime.now(UTC)


def to_ms(value: datetime) -> int:
    """Milliseconds since the epoch of an aware datetime (the unit of stored timestamps)."""
    if value.tzinfo is None:
        raise ValueError("naive datetime; use an aware UTC datetime")
    delta = value - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


def _from_ms(ms: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)


def format_timestamp(value: datetime) -> str:
    """RFC 3339 UTC with ``Z`` and exactly three fraction digits."""
    utc = _from_ms(to_ms(value))
    return (
        f"{utc.year:04d}-{utc.month:02d}-{utc.day:02d}T"
        f"{utc.hour:02d}:{utc.minute:02d}:{utc.second:02d}.{utc.microsecond // 1000:03d}Z"
    )


def parse_timestamp(text: str, *, utc_only: bool = True) -> datetime:
    """Parse RFC 3339; with ``utc_only`` (the draft's rule) only ``Z`` is allowed.

    Fractions beyond milliseconds are truncated. Raises ``ValueError``.
    """
    m = _RFC3339.match(text.strip())
    if m is None:
        raise ValueError("not an RFC 3339 timestamp")
    year, month, day, hour, minute, second, frac, zone = m.groups()
    micro = int((frac or "0")[:6].ljust(6, "0"))
    base = datetime(
        int(year), int(month), int(day), int(hour), int(minute), int(second), micro, tzinfo=UTC
    )
    if zone not in ("Z", "z"):
        if utc_only:
            raise ValueError("timestamp must be UTC with Z")
        sign = 1 if zone[0] == "+" else -1
        offset = timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6]))
        base -= sign * offset
    return _from_ms(to_ms(base))


class TimestampSource:
    """Issues strictly increasing millisecond timestamps for one sending client.

    When the clock repeats (or steps back), the next value is the previous one
    plus 1 ms, as section 6 asks.
    """

    def __init__(self, clock: Clock = utcnow, *, last: datetime | None = None) -> None:
        self._clock = clock
        self._last_ms: int | None = to_ms(last) if last is not None else None

    @property
    def last(self) -> datetime | None:
        """The last timestamp issued (persist it to stay monotonic across restarts)."""
        return None if self._last_ms is None else _from_ms(self._last_ms)

    def next(self) -> datetime:
        """The timestamp for the next stanza."""
        now_ms = to_ms(self._clock())
        if self._last_ms is not None and now_ms <= self._last_ms:
            now_ms = self._last_ms + 1
        self._last_ms = now_ms
        return _from_ms(now_ms)


@dataclass(frozen=True, slots=True)
class ReplayGuardState:
    """What a :class:`ReplayGuard` must persist to keep its promises across restarts."""

    last_accepted: dict[str, tuple[int, int]]
    """sender full JID -> (timestamp ms, received-at ms) of the last accepted stanza."""
    seen: list[tuple[bytes, int]]
    """(digest, timestamp ms) of accepted stanzas, oldest first."""
    floor_ms: int = 0
    """Timestamps at or below this are refused: their digests were forgotten."""


class ReplayGuard:
    """The receiver's timestamp rules from section 6, plus exact-replay detection.

    A stanza is admitted when all of these hold, checked in this order:

    1. ``replay``: its digest (the MAC) was not admitted before;
    2. ``future``/``old``: its timestamp is within ``skew`` (5 minutes) of now,
       or, for an offline message, of the server's ``<delay/>`` stamp (which
       itself must not lie in the future, and must be younger than
       ``retention``, the horizon of the replay cache);
    3. ``decreasing``: it is later than the last timestamp admitted from the
       same sender full JID, if that one was received in the last ``window``
       (10 minutes). With ``reorder`` (0 by default, as the draft reads), a
       stanza up to that much older than the newest admitted one passes: exact
       copies are still caught by rule 1, and stream-management resumption
       resends lost stanzas after newer ones.

    Digests are kept for ``retention`` after their timestamp, and at most
    ``max_entries`` of them (oldest dropped first). Forgetting a digest
    raises a floor: any timestamp at or below the newest forgotten one is
    refused as ``old``, so flooding the cache cannot reopen a replay.
    """

    def __init__(
        self,
        *,
        skew: timedelta = timedelta(minutes=5),
        window: timedelta = timedelta(minutes=10),
        retention: timedelta = timedelta(days=30),
        max_entries: int = 100_000,
        reorder: timedelta = timedelta(0),
    ) -> None:
        self.skew_ms = int(skew.total_seconds() * 1000)
        self.window_ms = int(window.total_seconds() * 1000)
        self.retention_ms = int(retention.total_seconds() * 1000)
        self.max_entries = max_entries
        self.reorder_ms = int(reorder.total_seconds() * 1000)
        self._last: dict[str, tuple[int, int]] = {}
        self._seen: OrderedDict[bytes, int] = OrderedDict()
        self.floor_ms = 0
        self._records = 0

    def check(
        self,
        sender: str,
        timestamp: datetime,
        digest: bytes,
        *,
        now: datetime,
        delay: datetime | None = None,
    ) -> None:
        """Raise :class:`StaleStanza` if the stanza must be refused; record nothing."""
        ts = to_ms(timestamp)
        now_ms = to_ms(now)
        if digest in self._seen:
            raise StaleStanza("replay")
        if ts <= self.floor_ms:
            raise StaleStanza("old")
        reference = now_ms
        if delay is not None:
            delay_ms = to_ms(delay)
            if delay_ms > now_ms + self.skew_ms:
                raise StaleStanza("future")
            if delay_ms < now_ms - self.retention_ms:
                raise StaleStanza("old")
            reference = delay_ms
        if ts > reference + self.skew_ms:
            raise StaleStanza("future")
        if ts < reference - self.skew_ms:
            raise StaleStanza("old")
        last = self._last.get(sender)
        if last is not None:
            last_ts, received_at = last
            if now_ms - received_at <= self.window_ms and ts <= last_ts - self.reorder_ms:
                raise StaleStanza("decreasing")

    def record(self, sender: str, timestamp: datetime, digest: bytes, *, now: datetime) -> None:
        """Remember an admitted stanza."""
        ts = to_ms(timestamp)
        now_ms = to_ms(now)
        held = self._last.get(sender)
        self._last[sender] = (max(ts, held[0]) if held else ts, now_ms)
        self._seen[digest] = ts
        self._expire(now_ms)

    def admit(
        self,
        sender: str,
        timestamp: datetime,
        digest: bytes,
        *,
        now: datetime,
        delay: datetime | None = None,
    ) -> None:
        """:meth:`check`, then :meth:`record`."""
        self.check(sender, timestamp, digest, now=now, delay=delay)
        self.record(sender, timestamp, digest, now=now)

    def _expire(self, now_ms: int) -> None:
        horizon = now_ms - self.retention_ms - self.skew_ms
        while self._seen:
            digest, ts = next(iter(self._seen.items()))
            if ts >= horizon and len(self._seen) <= self.max_entries:
                break
            del self._seen[digest]
            self.floor_ms = max(self.floor_ms, ts)
        self._records += 1
        if self._records % 1024 == 0:  # occasional sweep: the window is short
            stale = [s for s, (_, rx) in self._last.items() if now_ms - rx > self.window_ms]
            for sender in stale:
                del self._last[sender]

    def state(self) -> ReplayGuardState:
        """A snapshot to persist."""
        return ReplayGuardState(dict(self._last), list(self._seen.items()), self.floor_ms)

    def restore(self, state: ReplayGuardState) -> None:
        """Load a snapshot taken by :meth:`state`, merging: newer knowledge wins."""
        for sender, (ts, received_at) in state.last_accepted.items():
            held = self._last.get(sender)
            if held is None or held[1] < received_at:
                self._last[sender] = (ts, received_at)
        for digest, ts in state.seen:
            self._seen.setdefault(digest, ts)
        self.floor_ms = max(self.floor_ms, state.floor_ms)


def check_archived(
    timestamp: datetime, stamp: datetime, *, skew: timedelta = timedelta(minutes=5)
) -> None:
    """An archived (MAM) stanza: its timestamp must be within ``skew`` of the
    archive's own delay stamp. No replay check: history is read again on purpose."""
    ts, reference = to_ms(timestamp), to_ms(stamp)
    skew_ms = int(skew.total_seconds() * 1000)
    if ts > reference + skew_ms:
        raise StaleStanza("future")
    if ts < reference - skew_ms:
        raise StaleStanza("old")
