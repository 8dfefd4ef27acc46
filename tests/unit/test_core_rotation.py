"""The rotation decision (issue 13): plain values in, a plan out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from slixmpp_objenc.core.errors import EncryptionError
from slixmpp_objenc.core.rotation import (
    DEFAULT_RETENTION,
    DEFAULT_ROTATE_EVERY,
    HeldEncryptionKey,
    RotationPolicy,
    plan_rotation,
)

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)
POLICY = RotationPolicy()


def key(
    fp: str, issued_days_ago: float, retired_days_ago: float | None = None
) -> HeldEncryptionKey:
    retired = None if retired_days_ago is None else NOW - retired_days_ago * DAY
    return HeldEncryptionKey(fp, NOW - issued_days_ago * DAY, retired)


def test_defaults_and_validity() -> None:
    assert (POLICY.rotate_every, POLICY.retention) == (DEFAULT_ROTATE_EVERY, DEFAULT_RETENTION)
    assert POLICY.validity == timedelta(days=37)  # notAfter = rotation + retention


def test_no_key_rotates_now() -> None:
    plan = plan_rotation([], NOW, POLICY)
    assert plan.rotate and plan.retire == () and plan.destroy == ()
    assert plan.next_check == NOW + 7 * DAY


def test_a_young_key_is_kept_until_its_week_is_over() -> None:
    plan = plan_rotation([key("a", 2)], NOW, POLICY)
    assert not plan.rotate and plan.retire == () and plan.destroy == ()
    assert plan.next_check == NOW + 5 * DAY


def test_a_week_old_key_is_replaced_and_retired() -> None:
    plan = plan_rotation([key("a", 7)], NOW, POLICY)
    assert plan.rotate and plan.retire == ("a",)
    assert plan.next_check == NOW + 7 * DAY  # the new key's week; retention ends later


def test_a_replaced_key_is_destroyed_after_retention_never_before() -> None:
    keys = [key("new", 1), key("old", 10, retired_days_ago=29.9)]
    plan = plan_rotation(keys, NOW, POLICY)
    assert plan.destroy == () and not plan.rotate
    assert plan.next_check == NOW + 0.1 * DAY  # retention ends before the next rotation
    keys = [key("new", 1), key("old", 40, retired_days_ago=30)]
    assert plan_rotation(keys, NOW, POLICY).destroy == ("old",)


def test_the_key_in_use_is_never_destroyed() -> None:
    keys = [key("current", 100)]  # very old, but current: rotated, then retired
    plan = plan_rotation(keys, NOW, POLICY)
    assert plan.rotate and plan.retire == ("current",) and plan.destroy == ()


def test_several_current_keys_keep_the_newest() -> None:
    keys = [key("a", 3), key("b", 1), key("c", 2)]
    plan = plan_rotation(keys, NOW, POLICY)
    assert not plan.rotate and set(plan.retire) == {"a", "c"}


def test_a_key_dated_in_the_future_is_replaced() -> None:
    """A clock that jumped back must not keep one key for ever."""
    plan = plan_rotation([key("a", -8)], NOW, POLICY)
    assert plan.rotate and plan.retire == ("a",)


def test_zero_retention_destroys_at_once() -> None:
    policy = RotationPolicy(retention=timedelta(0))
    plan = plan_rotation([key("new", 0), key("old", 8, retired_days_ago=0)], NOW, policy)
    assert plan.destroy == ("old",)


@pytest.mark.parametrize(
    "kwargs",
    [{"rotate_every": timedelta(minutes=5)}, {"retention": timedelta(seconds=-1)}],
)
def test_unreasonable_policies_are_refused(kwargs: dict[str, timedelta]) -> None:
    with pytest.raises(EncryptionError):
        RotationPolicy(**kwargs)


def test_next_check_is_never_in_the_past() -> None:
    keys = [key("new", 1), key("old", 50, retired_days_ago=40)]
    plan = plan_rotation(keys, NOW, POLICY)
    assert plan.destroy == ("old",) and plan.next_check >= NOW
