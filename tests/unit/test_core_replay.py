"""Replay state an attacker cannot poison (issue 9, kind 5), at the core.

The receiver's timestamp and replay state (``ReplayGuard`` over a
``ReplayLedger``) must: never let one stanza move state ahead of our own
clock; have no floor that one sender moves for others; stay bounded under a
flood of strangers; and, bounded, never reopen a replay. Tests marked "old
code" failed on the guard before this change (one global floor, one
unbounded ``last`` entry per full JID, the last timestamp taken as sent).
"""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from slixmpp_objenc.core import ReplayGuard, StaleStanza
from slixmpp_objenc.core.replay import ReplayLedger, ReplayPolicy, bare_of
from slixmpp_objenc.core.timestamps import PRUNE_EVERY, ReplayGuardState, to_ms

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
MS = timedelta(milliseconds=1)
SEC = timedelta(seconds=1)
MIN = timedelta(minutes=1)
ALICE = "alice@example.org/phone"
ALICE_LAPTOP = "alice@example.org/laptop"
MALLORY = "mallory@evil.example/den"


def d(n: int, tag: str = "") -> bytes:
    return tag.encode() + n.to_bytes(32, "big")


def stranger(n: int) -> str:
    return f"stranger{n}@evil.example/r"


def reason(guard: ReplayGuard, *args: object, **kwargs: object) -> str | None:
    try:
        guard.check(*args, **kwargs)  # type: ignore[arg-type]
    except StaleStanza as exc:
        return exc.reason
    return None


def replay_reason(guard: ReplayGuard, sender: str, ts: datetime, digest: bytes, now: datetime):
    """How a server replaying an admitted stanza fares at its best: it adds an
    own-server <delay/> stamp making the stanza fresh, if any stamp can."""
    delay = min(max(ts, now - timedelta(days=30)), now + 5 * MIN)
    return reason(guard, sender, ts, digest, now=now, delay=delay)


def restarted(guard: ReplayGuard, **kwargs: object) -> ReplayGuard:
    fresh = ReplayGuard(**kwargs)  # type: ignore[arg-type]
    fresh.restore(guard.state())
    return fresh


# -- one stanza never moves state ahead of our clock -------------------------------------


def test_future_dated_stanza_does_not_block_the_next_genuine_one() -> None:
    """The issue's example: 5 minutes past a server <delay/> itself 5 minutes ahead
    (old code: every genuine stanza 'decreasing' for ~8 minutes, across restarts)."""
    guard = ReplayGuard()
    guard.admit(ALICE, NOW + 10 * MIN, d(1), now=NOW, delay=NOW + 5 * MIN)
    for later in (NOW + MS, NOW + SEC, NOW + 4 * MIN):
        assert reason(guard, ALICE, later, d(2), now=later) is None
        assert reason(restarted(guard), ALICE, later, d(2), now=later) is None
    # the stanza itself is still a replay, and an older genuine one still decreasing
    assert reason(guard, ALICE, NOW + 10 * MIN, d(1), now=NOW + SEC) == "replay"
    guard.admit(ALICE, NOW + SEC, d(2), now=NOW + SEC)
    assert reason(guard, ALICE, NOW + SEC, d(3), now=NOW + 2 * SEC) == "decreasing"


def test_rule_3_bar_is_the_receipt_time_at_most() -> None:
    guard = ReplayGuard()
    guard.admit(ALICE, NOW + 4 * MIN, d(1), now=NOW)
    assert guard.state().last_accepted[ALICE] == (to_ms(NOW), to_ms(NOW))
    # a stanza dated before its receipt keeps its own timestamp
    guard.admit(ALICE_LAPTOP, NOW - MIN, d(2), now=NOW)
    assert guard.state().last_accepted[ALICE_LAPTOP] == (to_ms(NOW - MIN), to_ms(NOW))


def test_reorder_tolerance_counts_from_the_clamped_bar() -> None:
    guard = ReplayGuard(reorder=2 * MIN)
    guard.admit(ALICE, NOW + 5 * MIN, d(1), now=NOW)
    assert reason(guard, ALICE, NOW - MIN, d(2), now=NOW) is None  # within 2 min of now
    assert reason(guard, ALICE, NOW - 2 * MIN, d(2), now=NOW) == "decreasing"


# -- no floor that one sender moves for others ------------------------------------------


def test_filling_the_cache_does_not_make_others_old() -> None:
    """Old code: evicting beyond max_entries raised one global floor to the evicted
    timestamps; a flood dated 4 minutes ahead refused every contact as 'old'."""
    guard = ReplayGuard(max_entries=100)
    guard.admit(ALICE, NOW - SEC, d(0, "a"), now=NOW)
    for n in range(300):
        guard.admit(MALLORY, NOW + 4 * MIN + n * MS, d(n), now=NOW)
    assert reason(guard, ALICE, NOW, d(1, "a"), now=NOW) is None
    assert reason(guard, "nurse@example.org/kitchen", NOW, d(2, "a"), now=NOW) is None
    assert reason(restarted(guard), ALICE, NOW, d(1, "a"), now=NOW) is None


def test_flood_from_many_strangers_does_not_make_a_contact_old() -> None:
    guard = ReplayGuard(max_entries=1000, max_senders=500)
    guard.admit(ALICE, NOW - SEC, d(0, "a"), now=NOW)
    refused = 0
    for n in range(2000):
        try:
            guard.admit(stranger(n), NOW + 4 * MIN, d(n), now=NOW)
        except StaleStanza as exc:
            assert exc.reason == "old"
            refused += 1
    assert refused == 2000 - 499  # the table holds Alice and 499 strangers
    assert reason(guard, ALICE, NOW, d(1, "a"), now=NOW) is None
    assert reason(guard, ALICE_LAPTOP, NOW, d(1, "a"), now=NOW) is None
    assert reason(restarted(guard, max_senders=500), ALICE, NOW, d(1, "a"), now=NOW) is None


def test_a_sender_evicting_its_own_digests_raises_only_its_own_floor() -> None:
    guard = ReplayGuard(max_per_sender=10)
    guard.admit(ALICE, NOW - 2 * SEC, d(0, "a"), now=NOW)
    for n in range(30):
        guard.admit(MALLORY, NOW + n * MS, d(n), now=NOW)
    state = guard.state()
    assert len(state.senders["mallory@evil.example"].digests) == 10
    assert state.senders["mallory@evil.example"].floor_ms == to_ms(NOW + 19 * MS)
    assert state.senders["alice@example.org"].floor_ms == 0
    assert state.forgotten_floor_ms == 0
    assert reason(guard, ALICE, NOW - SEC, d(1, "a"), now=NOW) is None


def test_the_forgotten_floor_never_reaches_a_fresh_stanza() -> None:
    guard = ReplayGuard(max_senders=10)
    for n in range(10):  # dated as far ahead as allowed
        guard.admit(stranger(n), NOW + 10 * MIN, d(n), now=NOW, delay=NOW + 5 * MIN)
    later = NOW + 21 * MIN  # they are all quiet now
    for n in range(10, 15):
        guard.admit(stranger(n), later, d(n), now=later)  # each folds one
    floor = guard.state().forgotten_floor_ms
    assert floor == to_ms(NOW + 10 * MIN) < to_ms(later - 5 * MIN)
    # a new sender, and one that was folded, are admitted at the oldest fresh timestamp
    assert reason(guard, ALICE, later - 5 * MIN, d(1, "a"), now=later) is None
    assert reason(guard, stranger(0), later - 5 * MIN, d(2, "a"), now=later) is None
    guard.admit(stranger(0), later - 5 * MIN, d(2, "a"), now=later)


# -- bounded ----------------------------------------------------------------------------


def test_twenty_thousand_strangers_at_once_stay_bounded() -> None:
    """Old code: one 'last' entry per full JID, kept until the window passed: 20,000."""
    guard = ReplayGuard()
    guard.admit(ALICE, NOW - SEC, d(0, "a"), now=NOW)
    refused = 0
    for n in range(20_000):
        try:
            guard.admit(stranger(n), NOW, d(n), now=NOW)
        except StaleStanza as exc:
            assert exc.reason == "old"
            refused += 1
    senders, digests = guard.sizes
    state = guard.state()
    assert senders == len(state.senders) == 10_000
    assert digests == len(state.seen) == 10_000
    assert len(state.last_accepted) == 10_000
    assert refused == 10_001
    assert reason(guard, ALICE, NOW + SEC, d(1, "a"), now=NOW + SEC) is None


def test_twenty_thousand_strangers_over_time_stay_bounded_and_are_all_admitted() -> None:
    guard = ReplayGuard()
    for n in range(20_000):
        now = NOW + n * 100 * MS  # 10 per second, for 33 minutes
        guard.admit(stranger(n), now, d(n), now=now)
        assert guard.sizes[0] <= 10_000
    end = NOW + 20_000 * 100 * MS
    guard.prune(end)
    assert guard.sizes[0] <= 10_000
    assert len(guard.state().last_accepted) <= 10 * 60 * 10 + 1  # only the last window's
    # every one of them stays refused, folded or not
    for n in (0, 1, 9_999, 10_000, 19_999):
        ts = NOW + n * 100 * MS
        assert replay_reason(guard, stranger(n), ts, d(n), end) in ("replay", "old")


def test_resources_of_one_sender_stay_bounded() -> None:
    """Rule-3 entries (one per full JID) are capped too: a server inventing a new
    resource per stanza keeps at most max_entries of them."""
    guard = ReplayGuard(max_entries=100)
    for n in range(1000):
        guard.admit(f"mallory@evil.example/{n}", NOW + n * MS, d(n), now=NOW + n * MS)
    state = guard.state()
    assert len(state.last_accepted) == 100 and len(state.seen) == 100
    assert "mallory@evil.example/999" in state.last_accepted


def test_digests_expire_once_no_delay_can_make_them_fresh() -> None:
    guard = ReplayGuard(max_delay=timedelta(days=7))
    guard.admit(ALICE, NOW, d(1), now=NOW)
    last_chance = NOW + timedelta(days=7) + 5 * MIN
    assert replay_reason(guard, ALICE, NOW, d(1), last_chance) == "replay"
    guard.admit(MALLORY, last_chance + MS, d(2), now=last_chance + MS)  # expires on admission
    assert guard.sizes[1] == 1
    assert reason(guard, ALICE, NOW, d(1), now=last_chance + MS, delay=NOW + MS) == "old"


def test_empty_senders_are_dropped_and_last_entries_expire() -> None:
    guard = ReplayGuard(max_delay=timedelta(hours=1))
    for n in range(50):
        guard.admit(stranger(n), NOW, d(n), now=NOW)
    guard.prune(NOW + 2 * timedelta(hours=1))
    assert guard.sizes == (0, 0)
    assert guard.state() == ReplayGuardState({}, [])


def test_guard_prunes_everything_now_and_then() -> None:
    guard = ReplayGuard(max_delay=timedelta(hours=1))
    for n in range(50):
        guard.admit(stranger(n), NOW, d(n), now=NOW)
    later = NOW + 2 * timedelta(hours=1)
    for n in range(PRUNE_EVERY - 50):
        guard.admit(ALICE, later + n * MS, d(n, "a"), now=later + n * MS)
    assert guard.sizes[0] == 1


# -- bounded never reopens a replay -----------------------------------------------------


def test_replay_after_a_flooding_sender_evicted_its_own_digests() -> None:
    guard = ReplayGuard(max_per_sender=100)
    for n in range(150):
        guard.admit(MALLORY, NOW + n * MS, d(n), now=NOW + n * MS)
    later = NOW + MIN
    for n in (0, 49, 50, 149):
        expected = "old" if n < 50 else "replay"
        assert replay_reason(guard, MALLORY, NOW + n * MS, d(n), later) == expected
        assert replay_reason(restarted(guard), MALLORY, NOW + n * MS, d(n), later) == expected


def test_replay_after_the_total_cap_evicted_a_contact_digest() -> None:
    guard = ReplayGuard(max_entries=50)
    guard.admit(ALICE, NOW, d(0, "a"), now=NOW)
    for n in range(100):
        guard.admit(stranger(n % 7), NOW + (n + 1) * MS, d(n), now=NOW + (n + 1) * MS)
    later = NOW + MIN
    assert d(0, "a") not in dict(guard.state().seen)
    for sender in (ALICE, ALICE_LAPTOP):
        assert replay_reason(guard, sender, NOW, d(0, "a"), later) == "old"
        assert replay_reason(restarted(guard), sender, NOW, d(0, "a"), later) == "old"
    assert reason(guard, ALICE, later, d(1, "a"), now=later) is None


def test_replay_after_a_sender_was_folded() -> None:
    guard = ReplayGuard(max_senders=3)
    guard.admit(MALLORY, NOW, d(1), now=NOW)
    later = NOW + 11 * MIN
    for n in range(3):  # the third folds mallory, quiet for 11 minutes
        guard.admit(stranger(n), later, d(n, "s"), now=later)
    assert "mallory@evil.example" not in guard.state().senders
    for sender in (MALLORY, "mallory@evil.example/other"):
        assert replay_reason(guard, sender, NOW, d(1), later) == "old"
        assert replay_reason(restarted(guard, max_senders=3), sender, NOW, d(1), later) == "old"
    # back with a new stanza once there is room, its old one stays refused
    back = later + 11 * MIN
    guard.admit(MALLORY, back, d(2), now=back)
    assert replay_reason(guard, MALLORY, NOW, d(1), back) == "old"
    assert replay_reason(guard, MALLORY, NOW + MS, d(3), back) == "old"  # so is all it sent then


def test_a_new_sender_is_refused_only_while_the_table_is_full_of_live_senders() -> None:
    guard = ReplayGuard(max_senders=3)
    for n in range(3):
        guard.admit(stranger(n), NOW, d(n), now=NOW)
    assert reason(guard, ALICE, NOW, d(0, "a"), now=NOW) == "old"
    with pytest.raises(StaleStanza):
        guard.record(ALICE, NOW, d(0, "a"), now=NOW)  # record alone says the same
    quiet = NOW + 10 * MIN + MS
    assert reason(guard, ALICE, quiet, d(0, "a"), now=quiet) is None
    guard.admit(ALICE, quiet, d(0, "a"), now=quiet)
    assert guard.sizes[0] == 3


def test_protected_senders_are_never_refused_nor_folded() -> None:
    contacts = {"alice@example.org"}
    guard = ReplayGuard(max_senders=3, protect=contacts.__contains__)
    guard.admit(ALICE, NOW, d(0, "a"), now=NOW)
    t = NOW
    for n in range(100):  # strangers keep the table full of live senders
        t = NOW + n * MIN
        with contextlib.suppress(StaleStanza):
            guard.admit(stranger(n), t, d(n), now=t)
    assert "alice@example.org" in guard.state().senders
    assert replay_reason(guard, ALICE, NOW, d(0, "a"), t) == "replay"
    assert reason(guard, ALICE, t, d(1, "a"), now=t) is None
    assert reason(guard, "nurse@example.org/r", t, d(1, "n"), now=t) == "old"  # a stranger


def test_a_protected_newcomer_is_admitted_when_the_table_is_full() -> None:
    guard = ReplayGuard(max_senders=2, protect=lambda bare: bare == "alice@example.org")
    for n in range(2):
        guard.admit(stranger(n), NOW, d(n), now=NOW)
    guard.admit(ALICE, NOW, d(0, "a"), now=NOW)
    assert guard.sizes[0] == 3


def test_unattributed_digests_are_refused_from_everyone_until_they_expire() -> None:
    """Digests of a schema-1 store (no sender known) are refused from every sender,
    never evicted by a cap, and dropped once no <delay/> can make them fresh."""
    guard = ReplayGuard(max_entries=2, max_delay=timedelta(days=1))
    guard.restore(ReplayGuardState({ALICE: (to_ms(NOW), to_ms(NOW))}, [(d(1), to_ms(NOW))]))
    for n in range(5):
        guard.admit(MALLORY, NOW + n * MS, d(n, "m"), now=NOW + n * MS)
    for sender in (ALICE, MALLORY, stranger(1)):
        assert reason(guard, sender, NOW, d(1), now=NOW + SEC) == "replay"
    assert reason(guard, ALICE, NOW, d(2), now=NOW + SEC) == "decreasing"  # its last, kept
    gone = NOW + timedelta(days=1) + 5 * MIN + MS
    guard.prune(gone)
    assert d(1) not in dict(guard.state().seen)


def test_state_restore_round_trip() -> None:
    guard = ReplayGuard(max_per_sender=2, max_senders=2)
    guard.admit(ALICE, NOW, d(1), now=NOW)
    for n in range(4):
        guard.admit(MALLORY, NOW + n * MS, d(n, "m"), now=NOW + n * MS)
    later = NOW + 11 * MIN
    guard.admit(stranger(1), later, d(1, "s"), now=later)
    state = guard.state()
    again = ReplayGuard(max_per_sender=2, max_senders=2)
    again.restore(state)
    assert again.state() == state
    again.restore(state)  # idempotent
    assert again.state() == state


def test_restore_keeps_both_sides_forgotten_floors() -> None:
    """Merging: a sender kept on one side only takes the other side's forgotten floor
    (that side may have folded what this one never saw)."""
    policy_guard = {"max_senders": 1}
    a = ReplayGuard(**policy_guard)  # type: ignore[arg-type]
    a.admit(MALLORY, NOW, d(1), now=NOW)
    a.admit(ALICE, NOW + 11 * MIN, d(2), now=NOW + 11 * MIN)  # folds mallory
    b = ReplayGuard(**policy_guard)  # type: ignore[arg-type]
    b.admit("mallory@evil.example/new", NOW + 11 * MIN, d(3), now=NOW + 11 * MIN)
    b.restore(a.state())
    later = NOW + 12 * MIN
    assert replay_reason(b, MALLORY, NOW, d(1), later) == "old"


# -- server-delayed stanzas have a maximum age ------------------------------------------


@pytest.mark.parametrize("max_delay", [timedelta(days=30), timedelta(days=2)])
def test_a_delayed_stanza_older_than_the_maximum_age_is_old(max_delay: timedelta) -> None:
    guard = ReplayGuard(max_delay=max_delay)
    stamp = NOW - max_delay - MS
    assert reason(guard, ALICE, stamp, d(1), now=NOW, delay=stamp) == "old"
    stamp = NOW - max_delay
    assert reason(guard, ALICE, stamp, d(1), now=NOW, delay=stamp) is None


def test_retention_is_the_former_name_of_max_delay() -> None:
    guard = ReplayGuard(retention=timedelta(days=2))
    assert guard.policy.max_delay_ms == 2 * 86_400_000
    assert ReplayGuard().policy == ReplayPolicy()


def test_caps_must_be_positive() -> None:
    for kwargs in ({"max_entries": 0}, {"max_per_sender": 0}, {"max_senders": 0}):
        with pytest.raises(ValueError):
            ReplayGuard(**kwargs)  # type: ignore[arg-type]


def test_bare_of() -> None:
    assert bare_of("a@b/c/d") == "a@b"
    assert bare_of("a@b") == "a@b"
    assert bare_of("b/c") == "b"


# -- the invariants, under any sequence -------------------------------------------------

SENDERS = [ALICE, ALICE_LAPTOP, MALLORY, stranger(1), stranger(2), stranger(3)]
ADMIT = st.tuples(
    st.just("admit"),
    st.sampled_from(SENDERS),
    st.integers(min_value=-5 * 60_000, max_value=5 * 60_000),  # ts - now
    st.booleans(),  # with a <delay/> 5 minutes ahead (then up to 10 min ahead)
)
WAIT = st.tuples(
    st.just("wait"),
    st.one_of(
        st.integers(min_value=1, max_value=60_000),
        st.integers(min_value=9 * 60_000, max_value=20 * 60_000),  # quiet
        st.integers(min_value=60 * 60_000, max_value=200 * 60_000),  # expired
    ),
)
STEP = st.one_of(
    ADMIT,
    ADMIT,
    ADMIT,
    st.tuples(st.just("admit-ahead"), st.sampled_from(SENDERS)),
    WAIT,
    WAIT,
    st.tuples(st.just("restart")),
    st.tuples(st.just("prune")),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(STEP, min_size=20, max_size=80))
def test_bounded_state_never_reopens_a_replay(steps: list[tuple[object, ...]]) -> None:
    caps = {
        "max_entries": 4,
        "max_per_sender": 2,
        "max_senders": 2,
        "max_delay": timedelta(hours=1),
    }
    guard = ReplayGuard(**caps)  # type: ignore[arg-type]
    now = NOW
    admitted: list[tuple[str, datetime, bytes]] = []
    for n, step in enumerate(steps):
        if step[0] in ("admit", "admit-ahead"):
            if step[0] == "admit":
                _, sender, offset, ahead = step
                ts = now + timedelta(milliseconds=int(offset))  # type: ignore[call-overload]
            else:
                _, sender = step
                ts, ahead = now + 10 * MIN, True
            delay = now + 5 * MIN if ahead else None
            try:
                guard.admit(str(sender), ts, d(n), now=now, delay=delay)
            except StaleStanza:
                continue
            admitted.append((str(sender), ts, d(n)))
        elif step[0] == "wait":
            now += timedelta(milliseconds=int(step[1]))  # type: ignore[call-overload]
        elif step[0] == "restart":
            guard = restarted(guard, **caps)
        else:
            guard.prune(now)
        state = guard.state()
        assert len(state.senders) <= 2
        assert len(state.seen) <= 4
        assert all(ts <= rx for ts, rx in state.last_accepted.values())
        assert state.forgotten_floor_ms < to_ms(now - 5 * MIN)
        for sender, ts, digest in admitted:
            for who in (sender, bare_of(sender) + "/elsewhere"):
                assert replay_reason(guard, who, ts, digest, now) is not None


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(min_value=0, max_value=5 * 60_000), min_size=1, max_size=20),
    st.integers(min_value=1, max_value=60_000),
)
def test_one_sender_never_refuses_another_fresh_stanza(offsets: list[int], gap: int) -> None:
    guard = ReplayGuard(max_entries=5, max_per_sender=3, max_senders=2)
    guard.admit(ALICE, NOW, d(0, "a"), now=NOW)
    for n, offset in enumerate(offsets):  # from many resources: rule 3 stops none
        with contextlib.suppress(StaleStanza):
            guard.admit(f"mallory@evil.example/{n}", NOW + offset * MS, d(n), now=NOW)
    later = NOW + gap * MS
    assert reason(guard, ALICE, later, d(1, "a"), now=later) is None


def test_ledger_remember_applies_no_bound() -> None:
    ledger = ReplayLedger(ReplayPolicy(max_entries=1, max_per_sender=1, max_senders=1))
    for n in range(5):
        ledger.remember(stranger(n), n, n, d(n))
    assert (ledger.senders, len(ledger)) == (5, 5)
    ledger.prune(1000)
    assert len(ledger) == 1
