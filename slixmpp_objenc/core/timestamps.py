"""Timestamps (draft section 6): formatting, a monotonic sending clock, and
the receiving side's freshness and replay rules (:class:`ReplayGuard`; the
bounded state it keeps is :class:`~slixmpp_objenc.core.replay.ReplayLedger`).

Everything takes the current time as an argument or an injectable clock, so
tests pin it; nothing here reads the wall clock behind the caller's back.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Final

from .errors import StaleStanza

if TYPE_CHECKING:  # addressing imports certificates, which imports this module
    from .addressing import Address, AddressParser
from .replay import (
    UNATTRIBUTED,
    ReplayGuardState,
    ReplayLedger,
    ReplayPolicy,
    SenderState,
    bare_of,
)

__all__ = [
    "PRUNE_EVERY",
    "UNATTRIBUTED",
    "ReplayGuard",
    "ReplayGuardState",
    "ReplayLedger",
    "ReplayPolicy",
    "SenderState",
    "TimestampSource",
    "bare_of",
    "check_archived",
    "format_timestamp",
    "from_our_server",
    "own_server_delay",
    "parse_timestamp",
    "to_ms",
    "utcnow",
]

Clock = Callable[[], datetime]

_DELAY_TAG: Final = "{urn:xmpp:delay}delay"
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


PRUNE_EVERY: Final = 1024
"""A :class:`ReplayGuard` applies every rule of :meth:`ReplayLedger.prune` once per
this many admissions (the caps on digests after each one); persistence prunes the
store as often."""


class ReplayGuard:
    """The receiver's timestamp rules from section 6, plus exact-replay detection.

    A stanza is admitted when all of these hold, checked in this order:

    1. ``replay``: its digest (the MAC) is not kept from an earlier admission;
    2. ``old``/``future``: its timestamp is above its sender's floor (the newest
       of its evicted digests; for a sender without kept state, the forgotten
       floor), and within ``skew`` (5 minutes) of now or, for an offline
       message, of the server's ``<delay/>`` stamp, which itself must be at
       most ``skew`` ahead of now and at most ``max_delay`` (30 days) old;
    3. ``decreasing``: it is later than the last timestamp admitted from the
       same sender full JID, if that one was received in the last ``window``
       (10 minutes); a timestamp ahead of our clock counts as the time it was
       received, so one stanza dated ahead blocks nothing. With ``reorder``
       (0 by default, as the draft reads), a stanza up to that much older than
       the newest admitted one passes: exact copies are still caught by rule 1,
       and stream-management resumption resends lost stanzas after newer ones;
    4. ``old``: there is room for its sender's state (see :class:`ReplayLedger`:
       at most ``max_senders`` senders; a quiet one makes room).

    State is kept per sender bare JID (an envelope only opens from the bare JID
    its inner ``from`` names, PROTOCOL.md 5.3), bounded by ``max_per_sender``,
    ``max_entries`` and ``max_senders``, and pruned as :class:`ReplayLedger` says.
    ``protect`` (bare JID -> bool; the plugin passes "a certificate is held")
    names senders never folded nor refused for room. ``retention`` is the
    former name of ``max_delay``.
    """

    def __init__(
        self,
        *,
        skew: timedelta = timedelta(minutes=5),
        window: timedelta = timedelta(minutes=10),
        max_delay: timedelta = timedelta(days=30),
        reorder: timedelta = timedelta(0),
        max_entries: int = 100_000,
        max_per_sender: int = 10_000,
        max_senders: int = 10_000,
        protect: Callable[[str], bool] | None = None,
        retention: timedelta | None = None,
    ) -> None:
        if min(max_entries, max_per_sender, max_senders) < 1:
            raise ValueError("replay caps must be at least 1")
        self.policy = ReplayPolicy(
            skew_ms=_ms(skew),
            window_ms=_ms(window),
            max_delay_ms=_ms(max_delay if retention is None else retention),
            reorder_ms=_ms(reorder),
            max_entries=max_entries,
            max_per_sender=max_per_sender,
            max_senders=max_senders,
        )
        self._ledger = ReplayLedger(self.policy, protect)
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
        policy, ledger = self.policy, self._ledger
        ts, now_ms = to_ms(timestamp), to_ms(now)
        bare = bare_of(sender)
        if digest in ledger:
            raise StaleStanza("replay")
        if ts <= ledger.floor(bare):
            raise StaleStanza("old")
        reference = now_ms
        if delay is not None:
            delay_ms = to_ms(delay)
            if delay_ms > now_ms + policy.skew_ms:
                raise StaleStanza("future")
            if delay_ms < now_ms - policy.max_delay_ms:
                raise StaleStanza("old")
            reference = delay_ms
        if ts > reference + policy.skew_ms:
            raise StaleStanza("future")
        if ts < reference - policy.skew_ms:
            raise StaleStanza("old")
        last = ledger.last(sender)
        if last is not None:
            last_ts, received_at = last
            if now_ms - received_at <= policy.window_ms and ts <= last_ts - policy.reorder_ms:
                raise StaleStanza("decreasing")
        if not ledger.has_room(bare, now_ms):
            raise StaleStanza("old")

    def record(self, sender: str, timestamp: datetime, digest: bytes, *, now: datetime) -> None:
        """Remember an admitted stanza; raises ``StaleStanza("old")`` only when
        there is no room for its sender (as :meth:`check` says)."""
        now_ms = to_ms(now)
        bare = bare_of(sender)
        if not self._ledger.make_room(bare, now_ms):
            raise StaleStanza("old")
        self._ledger.remember(sender, to_ms(timestamp), now_ms, digest)
        self._ledger.maintain(bare, now_ms)
        self._records += 1
        if self._records % PRUNE_EVERY == 0:
            self._ledger.prune(now_ms)

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

    def prune(self, now: datetime) -> None:
        """Apply every bound now (the guard also does it every :data:`PRUNE_EVERY`)."""
        self._ledger.prune(to_ms(now))

    @property
    def sizes(self) -> tuple[int, int]:
        """(sender bare JIDs, digests) kept."""
        return self._ledger.senders, len(self._ledger)

    def kept_senders(self) -> frozenset[str]:
        """The sender bare JIDs whose state is kept (a store keeps at least these)."""
        return self._ledger.kept()

    def state(self) -> ReplayGuardState:
        """A snapshot to persist."""
        return self._ledger.state()

    def restore(self, state: ReplayGuardState) -> None:
        """Load a snapshot taken by :meth:`state`, merging: newer knowledge wins."""
        self._ledger.restore(state)


def _ms(value: timedelta) -> int:
    return int(value.total_seconds() * 1000)


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


def from_our_server(element: ET.Element, own: Address, parse: AddressParser) -> bool:
    """Whether a ``<delay/>`` (its ``from``) or ``<stanza-id/>`` (its ``by``) names
    our own server: our domain (offline storage) or our bare JID (stream
    management, the archive)."""
    by = element.get("from" if element.tag == _DELAY_TAG else "by", "")
    try:
        return parse(by).bare in (own.domain, own.bare)
    except ValueError:
        return False


def own_server_delay(xml: ET.Element, own: Address, parse: AddressParser) -> datetime | None:
    """The XEP-0203 stamp our own server added (offline storage stamps from our
    domain, stream-management hibernation from our bare JID); with several,
    the earliest: when our server first received the stanza."""
    stamps = []
    for delay in xml.findall(_DELAY_TAG):
        if not from_our_server(delay, own, parse):
            continue
        try:
            stamps.append(parse_timestamp(delay.get("stamp", ""), utc_only=False))
        except (ValueError, OverflowError):
            continue  # malformed or out of range: not a usable stamp
    return min(stamps) if stamps else None
