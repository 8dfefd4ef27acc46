"""Timestamps (draft section 6): RFC 3339 formatting/parsing, the strictly
increasing TimestampSource, and the receiver's ReplayGuard rules."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from slixmpp_objenc.core import (
    ReplayGuard,
    StaleStanza,
    TimestampSource,
    format_timestamp,
    parse_timestamp,
)
from slixmpp_objenc.core.timestamps import ReplayGuardState

MS = timedelta(milliseconds=1)
T0 = datetime(2024, 1, 1, 12, 0, 0, tzinfo=UTC)
STRICT = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z", re.ASCII)

# --------------------------------------------------------------------------- format / parse


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (datetime(2010, 6, 29, 2, 15, 21, 12_000, tzinfo=UTC), "2010-06-29T02:15:21.012Z"),
        (datetime(2010, 6, 29, 2, 15, 21, tzinfo=UTC), "2010-06-29T02:15:21.000Z"),
        (datetime(2010, 6, 29, 2, 15, 21, 999_999, tzinfo=UTC), "2010-06-29T02:15:21.999Z"),
        (datetime(2010, 6, 29, 2, 15, 21, 1_999, tzinfo=UTC), "2010-06-29T02:15:21.001Z"),
        (datetime(1970, 1, 1, tzinfo=UTC), "1970-01-01T00:00:00.000Z"),
        (datetime(1969, 12, 31, 23, 59, 59, 999_500, tzinfo=UTC), "1969-12-31T23:59:59.999Z"),
        (datetime(9999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC), "9999-12-31T23:59:59.999Z"),
        (datetime(2024, 2, 29, 0, 0, tzinfo=UTC), "2024-02-29T00:00:00.000Z"),
        (
            datetime(2010, 6, 29, 4, 15, 21, 12_000, tzinfo=timezone(timedelta(hours=2))),
            "2010-06-29T02:15:21.012Z",
        ),
        (
            datetime(2010, 6, 28, 21, 15, 21, 12_000, tzinfo=timezone(timedelta(hours=-5))),
            "2010-06-29T02:15:21.012Z",
        ),
    ],
)
def test_format_timestamp(value, text):
    assert format_timestamp(value) == text
    assert STRICT.fullmatch(format_timestamp(value))


def test_format_refuses_naive_datetime():
    with pytest.raises(ValueError):
        format_timestamp(datetime(2010, 6, 29))


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("2010-06-29T02:15:21.012Z", datetime(2010, 6, 29, 2, 15, 21, 12_000, tzinfo=UTC)),
        ("2010-06-29T02:15:21Z", datetime(2010, 6, 29, 2, 15, 21, tzinfo=UTC)),
        ("2010-06-29T02:15:21.1Z", datetime(2010, 6, 29, 2, 15, 21, 100_000, tzinfo=UTC)),
        ("2010-06-29T02:15:21.0129Z", datetime(2010, 6, 29, 2, 15, 21, 12_000, tzinfo=UTC)),
        ("2010-06-29T02:15:21.999999999Z", datetime(2010, 6, 29, 2, 15, 21, 999_000, tzinfo=UTC)),
        ("2010-06-29t02:15:21.012z", datetime(2010, 6, 29, 2, 15, 21, 12_000, tzinfo=UTC)),
        ("1999-12-31T23:59:59.9995Z", datetime(1999, 12, 31, 23, 59, 59, 999_000, tzinfo=UTC)),
    ],
)
def test_parse_timestamp(text, value):
    parsed = parse_timestamp(text)
    assert parsed == value
    assert parsed.utcoffset() == timedelta(0)
    assert parsed.microsecond % 1000 == 0  # truncated to milliseconds


@pytest.mark.parametrize(
    "text",
    [
        "2010-06-29T02:15:21.012+00:00",
        "2010-06-29T02:15:21.012-00:00",
        "2010-06-29T04:15:21.012+02:00",
        "2010-06-28T21:15:21.012-05:00",
    ],
)
def test_parse_refuses_offsets_when_utc_only(text):
    with pytest.raises(ValueError):
        parse_timestamp(text)
    with pytest.raises(ValueError):
        parse_timestamp(text, utc_only=True)


@pytest.mark.parametrize(
    ("text", "utc"),
    [
        ("2010-06-29T04:15:21.012+02:00", "2010-06-29T02:15:21.012Z"),
        ("2010-06-28T21:15:21.012-05:00", "2010-06-29T02:15:21.012Z"),
        ("2010-06-29T02:15:21.012+00:00", "2010-06-29T02:15:21.012Z"),
        ("2010-06-29T00:45:21.012-01:30", "2010-06-29T02:15:21.012Z"),
        ("2010-06-29T00:15:21.0129+00:00", "2010-06-29T00:15:21.012Z"),
    ],
)
def test_parse_offsets_when_allowed(text, utc):
    assert format_timestamp(parse_timestamp(text, utc_only=False)) == utc


@pytest.mark.parametrize(
    "text",
    [
        "",
        "2010-06-29",
        "2010-06-29T02:15Z",
        "2010-06-29 02:15:21.012Z",
        "2010-06-29T02:15:21.012",
        "2010-06-29T02:15:21.Z",
        "2010-06-29T02:15:21.0123456789Z",
        "2010-6-29T02:15:21.012Z",
        "10-06-29T02:15:21.012Z",
        "+2010-06-29T02:15:21.012Z",
        "2010-06-29T02:15:21,012Z",
        "2010-13-01T00:00:00Z",
        "2010-02-30T00:00:00Z",
        "2010-06-29T24:00:00Z",
        "2010-06-29T02:60:00Z",
        "2010-06-29T02:15:21.012ZZ",
        "2010-06-29T02:15:21.012 UTC",
        "2010-06-29T02:15:21.012GMT",
        "20100629T021521Z",
        "1277777721",
    ],
)
def test_parse_refuses_garbage(text):
    with pytest.raises(ValueError):
        parse_timestamp(text)


@settings(max_examples=200, deadline=None, database=None)
@given(
    st.datetimes(
        min_value=datetime(1000, 1, 1), max_value=datetime(9999, 12, 31), timezones=st.just(UTC)
    )
)
def test_format_parse_round_trip(value):
    text = format_timestamp(value)
    assert STRICT.fullmatch(text)
    parsed = parse_timestamp(text)
    assert parsed == value.replace(microsecond=value.microsecond // 1000 * 1000)
    assert format_timestamp(parsed) == text
    assert parse_timestamp(text, utc_only=False) == parsed


@settings(max_examples=100, deadline=None, database=None)
@given(
    st.datetimes(
        min_value=datetime(1001, 1, 2), max_value=datetime(9998, 12, 30), timezones=st.just(UTC)
    ),
    st.integers(min_value=-23 * 60 - 59, max_value=23 * 60 + 59),
)
def test_offsets_round_trip(value, offset_minutes):
    local = value.astimezone(timezone(timedelta(minutes=offset_minutes)))
    text = local.isoformat(timespec="milliseconds")
    assert parse_timestamp(text, utc_only=False) == parse_timestamp(format_timestamp(value))
    if offset_minutes:
        with pytest.raises(ValueError):
            parse_timestamp(text)


def test_format_parse_round_trip_small_year():
    value = datetime(999, 1, 1, tzinfo=UTC)
    text = format_timestamp(value)
    assert text == "0999-01-01T00:00:00.000Z"
    assert parse_timestamp(text) == value


@pytest.mark.parametrize(
    "text",
    [
        "\u0662\u0660\u0661\u0660-06-29T02:15:21.012Z",  # Arabic-Indic year
        "2010-06-29T02:15:21.\uff10\uff11\uff12Z",  # fullwidth fraction
    ],
)
def test_parse_refuses_non_ascii_digits(text):
    with pytest.raises(ValueError):
        parse_timestamp(text)


# --------------------------------------------------------------------------- TimestampSource


class FakeClock:
    def __init__(self, *values: datetime) -> None:
        self.values = list(values)

    def __call__(self) -> datetime:
        return self.values.pop(0) if len(self.values) > 1 else self.values[0]


def test_source_frozen_clock_is_strictly_increasing():
    source = TimestampSource(FakeClock(T0))
    issued = [source.next() for _ in range(5)]
    assert issued == [T0 + i * MS for i in range(5)]
    assert source.last == T0 + 4 * MS


def test_source_backwards_clock():
    clock = FakeClock(
        T0,
        T0 - timedelta(seconds=10),
        T0 - timedelta(hours=1),
        T0 + 2 * MS,
        T0 + timedelta(seconds=1),
    )
    source = TimestampSource(clock)
    issued = [source.next() for _ in range(5)]
    assert issued == [T0, T0 + MS, T0 + 2 * MS, T0 + 3 * MS, T0 + timedelta(seconds=1)]
    assert all(a < b for a, b in pairwise(issued))


def test_source_truncates_to_milliseconds_and_bumps():
    clock = FakeClock(
        T0 + timedelta(microseconds=100),
        T0 + timedelta(microseconds=900),
        T0 + timedelta(microseconds=1_500),
    )
    source = TimestampSource(clock)
    issued = [source.next() for _ in range(3)]
    assert issued == [T0, T0 + MS, T0 + 2 * MS]
    assert [format_timestamp(t) for t in issued] == [
        "2024-01-01T12:00:00.000Z",
        "2024-01-01T12:00:00.001Z",
        "2024-01-01T12:00:00.002Z",
    ]


def test_source_follows_a_moving_clock():
    clock = FakeClock(T0, T0 + timedelta(seconds=1), T0 + timedelta(minutes=3))
    source = TimestampSource(clock)
    assert [source.next() for _ in range(3)] == [
        T0,
        T0 + timedelta(seconds=1),
        T0 + timedelta(minutes=3),
    ]


def test_source_resumes_after_restart():
    first = TimestampSource(FakeClock(T0))
    for _ in range(3):
        first.next()
    second = TimestampSource(FakeClock(T0 - timedelta(minutes=1)), last=first.last)
    assert second.next() == T0 + 3 * MS
    assert TimestampSource(FakeClock(T0)).last is None


def test_source_non_utc_clock():
    plus2 = timezone(timedelta(hours=2))
    source = TimestampSource(FakeClock(T0.astimezone(plus2)))
    value = source.next()
    assert value == T0
    assert value.utcoffset() == timedelta(0)


def test_source_default_clock_is_utc_now():
    before = datetime.now(UTC) - MS
    value = TimestampSource().next()
    after = datetime.now(UTC) + MS
    assert before <= value <= after
    assert value.utcoffset() == timedelta(0)


@settings(max_examples=50, deadline=None, database=None)
@given(st.lists(st.integers(min_value=-10_000, max_value=10_000), min_size=1, max_size=50))
def test_source_monotonic_for_any_clock(offsets_ms):
    source = TimestampSource(FakeClock(*[T0 + n * MS for n in offsets_ms]))
    issued = [source.next() for _ in offsets_ms]
    assert all(b - a >= MS for a, b in pairwise(issued))
    assert all(t.microsecond % 1000 == 0 for t in issued)


# --------------------------------------------------------------------------- ReplayGuard

JULIET = "juliet@capulet.net/balcony"
JULIET2 = "juliet@capulet.net/orchard"
NURSE = "nurse@capulet.net/kitchen"


def digest(n: int) -> bytes:
    return n.to_bytes(32, "big")


def reason(guard: ReplayGuard, *args, **kwargs) -> str | None:
    try:
        guard.check(*args, **kwargs)
    except StaleStanza as exc:
        assert str(exc) == f"stale stanza: {exc.reason} timestamp"
        return exc.reason
    return None


@pytest.mark.parametrize(
    ("offset", "expected"),
    [
        (timedelta(0), None),
        (timedelta(minutes=5), None),
        (-timedelta(minutes=5), None),
        (timedelta(minutes=4, seconds=59), None),
        (-timedelta(minutes=5) - MS, "old"),
        (timedelta(minutes=5) + MS, "future"),
        (-timedelta(hours=2), "old"),
        (timedelta(days=1), "future"),
    ],
)
def test_guard_freshness(offset, expected):
    guard = ReplayGuard()
    assert reason(guard, JULIET, T0 + offset, digest(1), now=T0) == expected


def test_guard_check_records_nothing():
    guard = ReplayGuard()
    for _ in range(3):
        guard.check(JULIET, T0, digest(1), now=T0)
    assert guard.state().seen == []
    assert guard.state().last_accepted == {}


def test_guard_admit_raises_and_records_nothing_on_refusal():
    guard = ReplayGuard()
    with pytest.raises(StaleStanza) as info:
        guard.admit(JULIET, T0 - timedelta(hours=1), digest(1), now=T0)
    assert info.value.reason == "old"
    assert guard.state().seen == []
    guard.admit(JULIET, T0, digest(1), now=T0)  # the same digest, fresh: still admitted


def test_guard_decreasing_and_equal_same_full_jid():
    guard = ReplayGuard()
    guard.admit(JULIET, T0, digest(1), now=T0)
    later = T0 + timedelta(seconds=1)
    assert reason(guard, JULIET, T0 - MS, digest(2), now=later) == "decreasing"
    assert reason(guard, JULIET, T0, digest(3), now=later) == "decreasing"
    assert reason(guard, JULIET, T0 + MS, digest(4), now=later) is None
    # another full JID of the same account is tracked separately
    assert reason(guard, JULIET2, T0 - MS, digest(5), now=later) is None
    assert reason(guard, JULIET2, T0, digest(6), now=later) is None
    assert reason(guard, NURSE, T0 - timedelta(minutes=4), digest(7), now=later) is None


def test_guard_decreasing_uses_latest_admitted():
    guard = ReplayGuard()
    guard.admit(JULIET, T0, digest(1), now=T0)
    guard.admit(JULIET, T0 + timedelta(seconds=2), digest(2), now=T0 + timedelta(seconds=2))
    now = T0 + timedelta(seconds=3)
    assert reason(guard, JULIET, T0 + timedelta(seconds=1), digest(3), now=now) == "decreasing"
    assert reason(guard, JULIET, T0 + timedelta(seconds=3), digest(3), now=now) is None


def test_guard_decreasing_window_expires():
    """After the 10-minute window, an earlier timestamp from the same full JID is
    accepted again, provided it is itself fresh: here an offline message whose
    <delay/> stamp makes it so."""
    guard = ReplayGuard()
    guard.admit(JULIET, T0, digest(1), now=T0)
    ts = T0 - MS
    # inside the window (inclusive), refused as decreasing ...
    for now in (T0 + timedelta(minutes=5), T0 + timedelta(minutes=10)):
        assert reason(guard, JULIET, ts, digest(2), now=now, delay=T0) == "decreasing"
    # ... and 1 ms after it, accepted
    now = T0 + timedelta(minutes=10) + MS
    assert reason(guard, JULIET, ts, digest(2), now=now, delay=T0) is None
    guard.admit(JULIET, ts, digest(2), now=now, delay=T0)
    # and a regular online stanza right after it must now beat the new timestamp only
    assert reason(guard, JULIET, now, digest(3), now=now) is None


def test_guard_window_measured_from_receipt_not_timestamp():
    guard = ReplayGuard()
    # admitted with a timestamp 4 minutes in the past (allowed skew)
    guard.admit(JULIET, T0 - timedelta(minutes=4), digest(1), now=T0)
    # 7 minutes later the window counted from the timestamp (11 min) has passed,
    # the one counted from receipt (7 min) has not: an older stanza is decreasing
    now = T0 + timedelta(minutes=7)
    older = T0 - timedelta(minutes=4) - MS
    assert reason(guard, JULIET, older, digest(2), now=now, delay=T0) == "decreasing"


def test_guard_bar_never_passes_the_receipt_time():
    """A stanza dated ahead (within the skew) is admitted, but the bar for the next
    one is when it was received: one stanza never makes genuine ones 'decreasing'
    (the rule this test pinned before, decreasing against the timestamp as sent,
    was issue 9's kind 5; see test_core_replay.py)."""
    guard = ReplayGuard()
    guard.admit(JULIET, T0 + timedelta(minutes=4), digest(1), now=T0)
    now = T0 + timedelta(minutes=6)
    assert reason(guard, JULIET, T0 + timedelta(minutes=3), digest(2), now=now) is None
    assert reason(guard, JULIET, T0, digest(2), now=now, delay=T0) == "decreasing"


def test_guard_exact_replay_even_from_another_sender():
    guard = ReplayGuard()
    guard.admit(JULIET, T0, digest(42), now=T0)
    for sender in (JULIET, JULIET2, NURSE):
        assert (
            reason(
                guard, sender, T0 + timedelta(seconds=1), digest(42), now=T0 + timedelta(seconds=1)
            )
            == "replay"
        )
    # replay is checked before freshness
    assert reason(guard, NURSE, T0 - timedelta(days=2), digest(42), now=T0) == "replay"
    # and still caught long after the decreasing window, through a <delay/>
    later = T0 + timedelta(days=3)
    assert reason(guard, NURSE, T0, digest(42), now=later, delay=T0) == "replay"
    assert reason(guard, NURSE, T0, digest(43), now=later, delay=T0) is None


def test_guard_offline_message_checked_against_delay():
    guard = ReplayGuard()
    now = T0
    stored = T0 - timedelta(hours=2)
    ts = stored - timedelta(seconds=3)
    # without the <delay/>, it is old
    assert reason(guard, JULIET, ts, digest(1), now=now) == "old"
    # with a matching <delay/>, accepted
    assert reason(guard, JULIET, ts, digest(1), now=now, delay=stored) is None
    # within 5 minutes of the delay stamp either side
    assert (
        reason(guard, JULIET, stored - timedelta(minutes=5), digest(1), now=now, delay=stored)
        is None
    )
    assert (
        reason(guard, JULIET, stored + timedelta(minutes=5), digest(1), now=now, delay=stored)
        is None
    )
    # more than 5 minutes from it: refused
    assert (
        reason(guard, JULIET, stored - timedelta(minutes=5) - MS, digest(1), now=now, delay=stored)
        == "old"
    )
    assert (
        reason(guard, JULIET, stored + timedelta(minutes=5) + MS, digest(1), now=now, delay=stored)
        == "future"
    )
    # a timestamp fresh relative to now, but far from the delay stamp: refused
    assert reason(guard, JULIET, now, digest(1), now=now, delay=stored) == "future"


def test_guard_delay_in_future_refused():
    guard = ReplayGuard()
    for delay in (T0 + timedelta(hours=1), T0 + timedelta(minutes=5) + MS):
        assert reason(guard, JULIET, delay, digest(1), now=T0, delay=delay) == "future"
    # a server clock a little ahead (within the skew) is tolerated
    delay = T0 + timedelta(minutes=1)
    assert reason(guard, JULIET, delay, digest(1), now=T0, delay=delay) is None


def test_guard_delay_beyond_retention_refused():
    guard = ReplayGuard(retention=timedelta(days=30))
    delay = T0 - timedelta(days=31)
    assert reason(guard, JULIET, delay, digest(1), now=T0, delay=delay) == "old"
    delay = T0 - timedelta(days=29)
    assert reason(guard, JULIET, delay, digest(1), now=T0, delay=delay) is None


def test_guard_state_restore_keeps_replay_protection():
    guard = ReplayGuard()
    guard.admit(JULIET, T0, digest(1), now=T0)
    guard.admit(NURSE, T0 + MS, digest(2), now=T0 + MS)
    state = guard.state()
    assert isinstance(state, ReplayGuardState)

    fresh = ReplayGuard()  # a "restart" without restoring forgets everything
    assert (
        reason(fresh, JULIET2, T0 + timedelta(seconds=1), digest(1), now=T0 + timedelta(seconds=1))
        is None
    )

    restarted = ReplayGuard()
    restarted.restore(state)
    now = T0 + timedelta(seconds=1)
    assert reason(restarted, JULIET2, now, digest(1), now=now) == "replay"
    assert reason(restarted, JULIET2, now, digest(2), now=now) == "replay"
    assert reason(restarted, JULIET, T0 - MS, digest(3), now=now) == "decreasing"
    assert reason(restarted, JULIET, now, digest(3), now=now) is None


def test_guard_state_is_a_snapshot():
    guard = ReplayGuard()
    guard.admit(JULIET, T0, digest(1), now=T0)
    state = guard.state()
    guard.admit(JULIET, T0 + MS, digest(2), now=T0 + MS)
    assert [d for d, _ in state.seen] == [digest(1)]
    assert set(state.last_accepted) == {JULIET}
    # plain data, so the application can persist it
    rebuilt = ReplayGuardState(
        {k: tuple(v) for k, v in state.last_accepted.items()},
        [(bytes(d), int(t)) for d, t in state.seen],
    )
    other = ReplayGuard()
    other.restore(rebuilt)
    assert reason(other, NURSE, T0, digest(1), now=T0) == "replay"


def test_guard_max_entries_bound():
    guard = ReplayGuard(max_entries=3)
    for i in range(6):
        now = T0 + i * timedelta(seconds=1)
        guard.admit(f"user{i}@example.net/r", now, digest(i), now=now)
        assert len(guard.state().seen) <= 3
    assert [d for d, _ in guard.state().seen] == [digest(3), digest(4), digest(5)]
    now = T0 + timedelta(seconds=10)
    for i in (3, 4, 5):
        assert reason(guard, NURSE, now, digest(i), now=now) == "replay"
    for i in (0, 1, 2):  # the oldest were dropped
        assert reason(guard, NURSE, now, digest(i), now=now) is None


def test_guard_retention_expires_digests():
    guard = ReplayGuard(retention=timedelta(hours=1))
    guard.admit(JULIET, T0, digest(1), now=T0)
    later = T0 + timedelta(hours=2)
    guard.admit(NURSE, later, digest(2), now=later)
    assert [d for d, _ in guard.state().seen] == [digest(2)]


def test_guard_custom_skew_and_window():
    guard = ReplayGuard(skew=timedelta(seconds=30), window=timedelta(seconds=60))
    assert reason(guard, JULIET, T0 - timedelta(seconds=31), digest(1), now=T0) == "old"
    assert reason(guard, JULIET, T0 + timedelta(seconds=31), digest(1), now=T0) == "future"
    guard.admit(JULIET, T0, digest(1), now=T0)
    now = T0 + timedelta(seconds=61)
    assert (
        reason(guard, JULIET, T0 - MS, digest(2), now=now, delay=T0) is None
    )  # window (60 s) passed


def test_stale_stanza_reason_attribute():
    exc = StaleStanza("old")
    assert exc.reason == "old"
    assert str(exc) == "stale stanza: old timestamp"


def test_restore_keeps_the_newer_knowledge():
    now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    old_snapshot = ReplayGuard()
    old_snapshot.record("a@x/r", now - timedelta(minutes=2), b"d1", now=now - timedelta(minutes=2))
    guard = ReplayGuard()
    guard.record("a@x/r", now, b"d2", now=now)
    guard.restore(old_snapshot.state())
    with pytest.raises(StaleStanza) as info:
        guard.check("a@x/r", now - timedelta(seconds=1), b"d3", now=now)
    assert info.value.reason == "decreasing"
    with pytest.raises(StaleStanza):
        guard.check("b@x/r", now, b"d1", now=now)


def test_flooding_the_cache_cannot_reopen_a_replay():
    now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    guard = ReplayGuard(max_entries=10)
    guard.admit("alice@x/r", now - timedelta(seconds=30), b"victim", now=now)
    for n in range(20):  # an attacker's own valid envelopes push the victim out
        guard.admit(f"mallory@x/{n}", now - timedelta(seconds=29 - n), bytes([n]) * 4, now=now)
    assert b"victim" not in dict(guard.state().seen)
    with pytest.raises(StaleStanza) as info:
        guard.check("alice@x/other", now - timedelta(seconds=30), b"victim", now=now)
    assert info.value.reason == "old"
    restored = ReplayGuard()
    restored.restore(guard.state())
    with pytest.raises(StaleStanza):
        restored.check("alice@x/r2", now - timedelta(seconds=30), b"victim", now=now)


def test_reorder_tolerance_accepts_a_late_resend_but_not_a_copy():
    now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    guard = ReplayGuard(reorder=timedelta(minutes=2))
    guard.admit("a@x/r", now - timedelta(seconds=10), b"late", now=now - timedelta(seconds=10))
    guard.admit("a@x/r", now, b"new", now=now)
    guard.admit("a@x/r", now - timedelta(seconds=5), b"resent", now=now)  # out of order: fine
    with pytest.raises(StaleStanza) as info:
        guard.check("a@x/r", now - timedelta(seconds=5), b"resent", now=now)
    assert info.value.reason == "replay"
    with pytest.raises(StaleStanza) as info:
        guard.check("a@x/r", now - timedelta(minutes=3), b"older", now=now)
    assert info.value.reason == "decreasing"
