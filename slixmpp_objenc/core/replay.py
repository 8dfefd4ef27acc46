"""The replay state of the receiving side, and its bounds (PROTOCOL.md 6).

:class:`ReplayLedger` holds what :class:`~slixmpp_objenc.core.timestamps.ReplayGuard`
needs to refuse replays: digests, and floors that stand in for evicted digests,
per sender bare JID (an envelope only opens from the bare JID its inner ``from``
names, PROTOCOL.md 5.3, so a replay comes "from" the same bare JID). Everything
is in integer milliseconds; the ledger never reads a clock.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from heapq import heapify, heappop, heappush
from typing import Final

__all__ = [
    "UNATTRIBUTED",
    "ReplayGuardState",
    "ReplayLedger",
    "ReplayPolicy",
    "SenderState",
    "bare_of",
]

UNATTRIBUTED: Final = ""
"""The owner of digests whose sender is not known (kept by schema 1 of the store, or
by a :class:`~slixmpp_objenc.store.Storage` that records none): they are refused from
every sender, never evicted by a cap, and expire with time like the others."""


def bare_of(sender: str) -> str:
    """The bare JID of a full JID as the receiving side holds it (already normalized)."""
    return sender.partition("/")[0]


@dataclass(frozen=True, slots=True)
class ReplayPolicy:
    """The numbers of section 6: tolerances, and how much state is kept."""

    skew_ms: int = 5 * 60_000
    """A timestamp may be this far from now (or from our server's ``<delay/>``)."""
    window_ms: int = 10 * 60_000
    """Rule 3 (``decreasing``) holds for this long after a sender's last stanza."""
    max_delay_ms: int = 30 * 86_400_000
    """Oldest ``<delay/>`` stamp accepted (offline storage); how long digests live."""
    reorder_ms: int = 0
    """Rule 3 accepts a stanza up to this much older than the newest from its full JID."""
    max_entries: int = 100_000
    """Digests kept in all (those of unknown senders aside), and rule-3 entries."""
    max_per_sender: int = 10_000
    """Digests kept per sender bare JID."""
    max_senders: int = 10_000
    """Sender bare JIDs whose state is kept (protected ones may exceed it)."""

    def horizon(self, now_ms: int) -> int:
        """Timestamps before this can never be admitted again: the oldest ``<delay/>``
        accepted is ``max_delay`` old, and a timestamp may be ``skew`` before it."""
        return now_ms - self.max_delay_ms - self.skew_ms

    def quiet(self, now_ms: int) -> int:
        """A sender last heard from, and whose newest timestamp is, before this is
        quiet: its state may be folded into the forgotten floor."""
        return now_ms - max(self.window_ms, self.skew_ms)


@dataclass(frozen=True, slots=True)
class SenderState:
    """What is kept for one sender bare JID."""

    floor_ms: int
    """Its timestamps at or below this are refused (``old``): digests it sent were evicted."""
    active_ms: int
    """When its last admitted stanza was received (our clock)."""
    digests: list[bytes] = field(default_factory=list)
    """Its digests, oldest first (their timestamps are in :attr:`ReplayGuardState.seen`)."""


@dataclass(frozen=True, slots=True)
class ReplayGuardState:
    """What a replay guard must persist to keep its promises across restarts.

    A state with only the first two fields (what an older store returns) is valid:
    its digests are then of unknown senders (:data:`UNATTRIBUTED`)."""

    last_accepted: dict[str, tuple[int, int]]
    """sender full JID -> (timestamp ms, received-at ms) of the last accepted stanza,
    the timestamp never later than its receipt."""
    seen: list[tuple[bytes, int]]
    """(digest, timestamp ms) of every digest kept, oldest first."""
    senders: dict[str, SenderState] = field(default_factory=dict)
    """sender bare JID -> its floor, activity and digests."""
    forgotten_floor_ms: int = 0
    """The floor of every sender without kept state (some were folded into it)."""


class _Sender:
    __slots__ = ("active", "digests", "floor")

    def __init__(self, floor: int, active: int) -> None:
        self.floor = floor
        self.active = active
        self.digests: list[tuple[int, bytes]] = []  # sorted: oldest first

    def newest(self) -> int:
        return max(self.floor, self.digests[-1][0]) if self.digests else self.floor


def _unprotected(_bare: str) -> bool:
    return False


class ReplayLedger:
    """Digests and floors per sender bare JID, with their bounds.

    Every bound drops state only where a floor then covers it, so a dropped digest
    stays refused (``old``), and only ever raises the floor of the sender whose
    digest it drops, to that digest's own timestamp: what one sender does never
    refuses another sender's fresh stanza.

    * A digest expires once its timestamp is before :meth:`ReplayPolicy.horizon`:
      it could not be admitted again anyway.
    * Beyond ``max_per_sender`` digests, the sender's oldest is evicted; beyond
      ``max_entries`` in all, the oldest of all. Either raises its owner's floor.
    * Rule-3 entries (per full JID) expire ``window`` after their receipt; beyond
      ``max_entries`` of them, the least recently received is dropped (rule 3 is
      then lost for that full JID; rule 1 still refuses any copy).
    * Beyond ``max_senders``, the least recently active sender is *folded*, only
      if it is quiet (:meth:`ReplayPolicy.quiet`) and not protected: its newest
      timestamp raises the forgotten floor, which stands for every sender without
      kept state (new or folded), and stays behind ``now - max(window, skew)``, so
      it never refuses a fresh stanza. When none can be folded, a new unprotected
      sender is refused (:meth:`has_room`), that sender only.

    ``protect`` (bare JID -> bool; say, our contacts) names senders never folded
    and never refused for want of room. :meth:`remember` records with no bound (a
    store records what was admitted); :meth:`maintain` applies the digest caps
    after one admission, :meth:`prune` every rule. The SQLite store does the same
    in SQL.
    """

    def __init__(
        self, policy: ReplayPolicy | None = None, protect: Callable[[str], bool] | None = None
    ) -> None:
        self.policy = policy or ReplayPolicy()
        self.protect: Callable[[str], bool] = protect or _unprotected
        self.forgotten_floor_ms = 0
        self._senders: OrderedDict[str, _Sender] = OrderedDict()  # least recently active first
        self._last: OrderedDict[str, tuple[int, int]] = OrderedDict()  # full JID -> (ts, rx)
        self._index: dict[bytes, tuple[str, int]] = {}  # digest -> (owner, timestamp)
        self._by_age: list[tuple[int, bytes]] = []  # heap of attributed digests, lazily cleaned
        self._unattributed: list[tuple[int, bytes]] = []  # sorted
        self._attributed = 0

    # -- reading

    def __contains__(self, digest: bytes) -> bool:
        return digest in self._index

    def __len__(self) -> int:
        """Digests kept."""
        return len(self._index)

    @property
    def senders(self) -> int:
        """Sender bare JIDs with kept state."""
        return len(self._senders)

    def kept(self) -> frozenset[str]:
        """The sender bare JIDs with kept state."""
        return frozenset(self._senders)

    def floor(self, bare: str) -> int:
        entry = self._senders.get(bare)
        return self.forgotten_floor_ms if entry is None else entry.floor

    def last(self, sender: str) -> tuple[int, int] | None:
        return self._last.get(sender)

    def has_room(self, bare: str, now_ms: int) -> bool:
        """Whether a stanza from ``bare`` can be kept: it has state or protection,
        there is room, or the next sender to fold is quiet."""
        if bare in self._senders or len(self._senders) < self.policy.max_senders:
            return True
        if self.protect(bare):
            return True
        for other, entry in self._senders.items():
            if not self.protect(other):
                return self._quiet(entry, now_ms)
        return False

    # -- writing

    def make_room(self, bare: str, now_ms: int) -> bool:
        """Fold a sender if ``bare`` needs its place; False if there is no room."""
        if bare in self._senders or len(self._senders) < self.policy.max_senders:
            return True
        return self._fold_one(now_ms) or self.protect(bare)

    def remember(self, sender: str, timestamp_ms: int, received_ms: int, digest: bytes) -> None:
        """Record one admitted stanza (no bound applied)."""
        bare = bare_of(sender)
        held = self._index.get(digest)
        if held is not None and held != (bare, timestamp_ms):
            self._drop(digest)
            held = None
        entry = self._senders.get(bare)
        if bare and entry is None:
            entry = self._senders[bare] = _Sender(self.forgotten_floor_ms, received_ms)
        elif entry is not None and received_ms >= entry.active:
            entry.active = received_ms
            self._senders.move_to_end(bare)
        if held is None:
            self._add(bare, timestamp_ms, digest)
        if bare:
            # rule 3 never looks past our own clock: a stanza dated ahead counts as now
            self._set_last(sender, min(timestamp_ms, received_ms), received_ms)

    def maintain(self, bare: str, now_ms: int) -> None:
        """After admitting from ``bare``: expire, and apply the digest caps."""
        self._expire(now_ms)
        entry = self._senders.get(bare)
        if entry is not None:
            self._cap_sender(entry)
        self._cap_total()
        while len(self._last) > self.policy.max_entries:
            self._last.popitem(last=False)

    def prune(self, now_ms: int) -> None:
        """Apply every rule (at load, and now and then)."""
        horizon, stale = self.policy.horizon(now_ms), now_ms - self.policy.window_ms
        self._expire(now_ms)
        for entry in self._senders.values():
            if entry.floor < horizon:
                entry.floor = 0
            self._cap_sender(entry)
        self._cap_total()
        self._last = OrderedDict((s, v) for s, v in self._last.items() if v[1] >= stale)
        while len(self._last) > self.policy.max_entries:
            self._last.popitem(last=False)
        floor = self.forgotten_floor_ms
        for bare, entry in list(self._senders.items()):
            if not entry.digests and entry.active < stale and entry.floor <= floor:
                del self._senders[bare]  # nothing the forgotten floor does not cover
        while len(self._senders) > self.policy.max_senders and self._fold_one(now_ms):
            pass

    # -- snapshots

    def state(self) -> ReplayGuardState:
        seen = sorted(((d, ts) for d, (_, ts) in self._index.items()), key=lambda i: (i[1], i[0]))
        return ReplayGuardState(
            dict(self._last),
            seen,
            {
                bare: SenderState(entry.floor, entry.active, [d for _, d in entry.digests])
                for bare, entry in self._senders.items()
            },
            self.forgotten_floor_ms,
        )

    def restore(self, state: ReplayGuardState) -> None:
        """Merge a snapshot: newer knowledge wins, and every floor covers what either
        side forgot (a sender kept on one side only takes the other's forgotten floor)."""
        ours, theirs = self.forgotten_floor_ms, state.forgotten_floor_ms
        for bare, held in self._senders.items():
            if bare not in state.senders:
                held.floor = max(held.floor, theirs)
        for bare, kept in state.senders.items():
            entry = self._senders.setdefault(bare, _Sender(ours, kept.active_ms))
            entry.floor = max(entry.floor, kept.floor_ms)
            entry.active = max(entry.active, kept.active_ms)
        self.forgotten_floor_ms = max(ours, theirs)
        owners = {d: bare for bare, kept in state.senders.items() for d in kept.digests}
        for digest, ts in state.seen:
            if digest not in self._index:
                self._add(owners.get(digest, UNATTRIBUTED), ts, digest)
        for sender, (ts, received) in state.last_accepted.items():
            last = self._last.get(sender)
            if last is None or last[1] < received:
                self._last[sender] = (min(ts, received), received)
        order = sorted(self._senders.items(), key=lambda item: (item[1].active, item[0]))
        self._senders = OrderedDict(order)
        self._last = OrderedDict(sorted(self._last.items(), key=lambda i: (i[1][1], i[0])))

    # -- internals

    def _add(self, owner: str, ts: int, digest: bytes) -> None:
        self._index[digest] = (owner, ts)
        if owner == UNATTRIBUTED:
            insort(self._unattributed, (ts, digest))
        else:
            insort(self._senders[owner].digests, (ts, digest))
            heappush(self._by_age, (ts, digest))
            self._attributed += 1

    def _set_last(self, sender: str, ts: int, received: int) -> None:
        held = self._last.get(sender)
        if held is None:
            self._last[sender] = (ts, received)
        else:
            self._last[sender] = (max(held[0], ts), max(held[1], received))
            if received >= held[1]:
                self._last.move_to_end(sender)  # least recently received first

    def _quiet(self, entry: _Sender, now_ms: int) -> bool:
        quiet = self.policy.quiet(now_ms)
        return entry.active < quiet and entry.newest() < quiet

    def _fold_one(self, now_ms: int) -> bool:
        """Fold the least recently active unprotected sender, if it is quiet."""
        for bare, entry in self._senders.items():
            if self.protect(bare):
                continue
            if not self._quiet(entry, now_ms):
                return False
            del self._senders[bare]  # (and out of the loop at once)
            self.forgotten_floor_ms = max(self.forgotten_floor_ms, entry.newest())
            for _, digest in entry.digests:
                del self._index[digest]
            self._attributed -= len(entry.digests)
            return True
        return False

    def _drop(self, digest: bytes) -> tuple[str, int]:
        owner, ts = self._index.pop(digest)
        if owner == UNATTRIBUTED:
            listed = self._unattributed
        else:
            listed = self._senders[owner].digests
            self._attributed -= 1
        del listed[bisect_left(listed, (ts, digest))]
        return owner, ts

    def _evict(self, digest: bytes) -> None:
        owner, ts = self._drop(digest)
        entry = self._senders[owner]
        entry.floor = max(entry.floor, ts)

    def _valid(self, ts: int, digest: bytes) -> bool:
        held = self._index.get(digest)
        return held is not None and held[1] == ts and held[0] != UNATTRIBUTED

    def _expire(self, now_ms: int) -> None:
        horizon = self.policy.horizon(now_ms)
        while self._by_age and self._by_age[0][0] < horizon:
            ts, digest = heappop(self._by_age)
            if self._valid(ts, digest):
                self._drop(digest)
        cut = bisect_left(self._unattributed, (horizon, b""))
        for _, digest in self._unattributed[:cut]:
            del self._index[digest]
        del self._unattributed[:cut]
        if self.forgotten_floor_ms < horizon:
            self.forgotten_floor_ms = 0

    def _cap_sender(self, entry: _Sender) -> None:
        while len(entry.digests) > self.policy.max_per_sender:
            self._evict(entry.digests[0][1])

    def _cap_total(self) -> None:
        while self._attributed > self.policy.max_entries:
            ts, digest = heappop(self._by_age)
            if self._valid(ts, digest):
                self._evict(digest)
        if len(self._by_age) > 2 * self._attributed + 1024:  # drop the stale heap entries
            self._by_age = [(ts, d) for d, (o, ts) in self._index.items() if o != UNATTRIBUTED]
            heapify(self._by_age)
