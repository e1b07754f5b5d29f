"""Unit tests of :mod:`loadgen.schedule` against fortio's pacing rules (facts/fortio.md §1.6, §4.2)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from loadgen.schedule import next_slot, period_s, plan, slot_time


# --- plan -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("n", "c", "calls"),
    [
        (10, 3, (4, 3, 3)),
        (23, 7, (5, 3, 3, 3, 3, 3, 3)),
        (9, 3, (3, 3, 3)),
        (5, 7, (5, 0, 0, 0, 0, 0, 0)),
        (1, 1, (1,)),
    ],
)
def test_exactly_remainder_to_connection_0(n: int, c: int, calls: tuple[int, ...]) -> None:
    p = plan(c, 0, 0, n, False)
    assert p.calls == calls
    assert p.total == n and sum(p.calls) == n
    assert not p.stretch and p.end_s == 0
    assert p.connections == c and p.lowered_from == 0


@pytest.mark.parametrize(
    ("n", "c", "newc", "calls"),
    [
        (5, 4, 2, (3, 2)),  # fortio: 2*4 > 5 -> 2 threads, 2 each + 1 left over to thread 0
        (3, 4, 1, (3,)),
        (1, 3, 1, (1,)),  # exactly 1 call stays 1 call (fortio adds the negative leftover back)
        (8, 4, 4, (2, 2, 2, 2)),
    ],
)
def test_exactly_in_qps_mode_lowers_connections(n: int, c: int, newc: int, calls: tuple[int, ...]) -> None:
    p = plan(c, 10, 0, n, False)
    assert p.connections == newc and p.calls == calls and p.total == n
    assert p.lowered_from == (c if newc != c else 0)
    # max speed (-qps 0) never lowers (fortio's runMaxQPSSetup)
    assert plan(c, 0, 0, n, False).connections == c


def test_exactly_ignores_duration() -> None:
    p = plan(2, 10, 30, 7, False)
    assert p.calls == (4, 3) and p.end_s == 0 and not p.stretch


@pytest.mark.parametrize(
    ("c", "qps", "t", "per"),
    [
        (2, 100, 1.0, 50),
        (3, 100, 1.0, 33),  # floor: the remainder (1) is dropped
        (4, 8, 5.0, 10),
        (7, 10, 3.0, 4),  # 30 // 7
    ],
)
def test_duration_floor_per_connection(c: int, qps: float, t: float, per: int) -> None:
    p = plan(c, qps, t, 0, False)
    assert p.calls == (per,) * c
    assert p.total == per * c
    assert p.stretch and p.end_s == t
    assert p.lowered_from == 0


def test_minimum_two_calls_and_one_connection() -> None:
    p = plan(4, 1, 1.0, 0, False)  # qps*t = 1 < 2
    assert p.connections == 1 and p.calls == (2,) and p.total == 2 and p.lowered_from == 4
    p1 = plan(1, 0.5, 1.0, 0, False)
    assert p1.calls == (2,) and p1.lowered_from == 0


@pytest.mark.parametrize(
    ("c", "qps", "t", "newc", "per"),
    [
        (8, 10, 1.0, 5, 2),  # 10 calls, 2*8 > 10 -> 5 connections of 2
        (4, 7, 1.0, 3, 2),  # 7 calls -> 3 connections of 2 (1 dropped)
        (3, 3, 1.0, 1, 3),
    ],
)
def test_lowering_connections(c: int, qps: float, t: float, newc: int, per: int) -> None:
    p = plan(c, qps, t, 0, False)
    assert p.connections == newc and p.lowered_from == c
    assert p.calls == (per,) * newc
    assert len(p.offsets) == newc


def test_unlimited_modes() -> None:
    p = plan(3, 0, 2.0, 0, False)
    assert p.calls == (-1, -1, -1) and p.total == -1 and p.end_s == 2.0 and not p.stretch
    q = plan(2, 50, 0, 0, False)  # qps without duration: until interrupted
    assert q.calls == (-1, -1) and q.end_s == 0


def test_uniform_offsets() -> None:
    p = plan(4, 100, 1.0, 0, True)
    period = period_s(100, 4)
    assert period == pytest.approx(0.04)
    assert p.offsets == pytest.approx((0.0, 0.01, 0.02, 0.03))
    assert all(0 <= o < period for o in p.offsets)
    # not in max mode, and not without -uniform
    assert plan(4, 0, 1.0, 0, True).offsets == (0.0,) * 4
    assert plan(4, 100, 1.0, 0, False).offsets == (0.0,) * 4


def test_period() -> None:
    assert period_s(100, 2) == pytest.approx(0.02)
    assert period_s(0, 2) == math.inf


# --- slot_time --------------------------------------------------------------------------------
def test_stretch_last_slot_lands_on_duration() -> None:
    for c, qps, t in [(2, 100, 1.0), (4, 8, 5.0), (1, 10, 3.0), (3, 30, 2.0)]:
        p = plan(c, qps, t, 0, False)
        per = p.calls[0]
        period = period_s(qps, p.connections)
        assert slot_time(0, period, per, True) == 0
        assert slot_time(per - 1, period, per, True) == pytest.approx(per * period)
        assert per * period == pytest.approx(t)  # divisible cases: the last slot is at t


def test_stretch_with_dropped_remainder() -> None:
    # 100 qps, 1 s, 3 connections: 33 calls each, period 30 ms; the last slot at 33*30 ms = 0.99 s
    p = plan(3, 100, 1.0, 0, False)
    period = period_s(100, 3)
    assert slot_time(32, period, 33, True) == pytest.approx(0.99)
    assert slot_time(32, period, 33, True) <= p.end_s


def test_no_stretch_slots() -> None:
    assert slot_time(5, 0.1, 10, False) == pytest.approx(0.5)
    assert slot_time(5, 0.1, -1, True) == pytest.approx(0.5)  # unlimited: nothing to stretch
    assert slot_time(1, 0.1, 1, True) == pytest.approx(0.1)


@given(st.integers(2, 10_000), st.floats(1e-4, 10))
def test_stretched_slots_increase_evenly(calls: int, period: float) -> None:
    step = period * (1 + 1 / (calls - 1))
    prev = -1.0
    for k in sorted({0, 1, calls // 2, calls - 1}):
        t = slot_time(k, period, calls, True)
        assert t > prev or k == 0
        assert t == pytest.approx(k * step)
        prev = t


# --- next_slot --------------------------------------------------------------------------------
def test_next_slot_catchup_keeps_the_late_slot() -> None:
    assert next_slot(3, 10.0, 0.1, 100, False, True) == (3, pytest.approx(0.3))


def test_next_slot_skips_past_slots() -> None:
    k, t = next_slot(0, 0.35, 0.1, 100, False, False)
    assert k == 4 and t == pytest.approx(0.4)
    # a slot exactly now is not in the past
    assert next_slot(2, 0.2, 0.1, 100, False, False)[0] == 2
    # not late: unchanged
    assert next_slot(5, 0.1, 0.1, 100, False, False) == (5, pytest.approx(0.5))


def test_next_slot_stretched() -> None:
    # 11 calls, period 0.1: slots every 0.11 s
    k, t = next_slot(1, 0.5, 0.1, 11, True, False)
    assert k == 5 and t == pytest.approx(0.55)


@given(st.integers(0, 500), st.floats(0, 100), st.floats(1e-3, 2), st.integers(-1, 1000), st.booleans())
def test_next_slot_is_first_slot_not_in_the_past(
    k: int, now: float, period: float, calls: int, stretch: bool
) -> None:
    k2, t2 = next_slot(k, now, period, calls, stretch, False)
    assert k2 >= k
    assert t2 == slot_time(k2, period, calls, stretch)
    assert t2 >= now
    if k2 > k:
        assert slot_time(k2 - 1, period, calls, stretch) < now
