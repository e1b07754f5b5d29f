"""Pure functions of fortio's pacing model: calls per connection, start offsets, slot times.

No I/O and no clocks here; engines call these (the C engine re-implements :func:`slot_time` in C
with the same formula). See :mod:`loadgen.engine_api` for how engines apply them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Plan:
    """How a run is split over connections."""

    connections: int
    calls: tuple[int, ...]  # per connection, -1 = unlimited
    offsets: tuple[float, ...]  # seconds
    stretch: bool
    end_s: float  # <= 0: no end time
    total: int  # total planned calls, -1 if unlimited
    lowered_from: int = 0  # fortio lowers -c when 2*c > total calls in qps mode


def plan(connections: int, qps: float, duration_s: float, exactly: int, uniform: bool) -> Plan:
    """Split a run as fortio does.

    * ``exactly > 0``: ``exactly // c`` calls each, the remainder to connection 0; no end time
      (in qps mode connections are lowered first when ``2 * c`` exceeds ``exactly``, as fortio does).
    * ``qps > 0`` and ``duration_s > 0``: ``floor(qps * t / c)`` calls each (remainder dropped),
      slots stretched so the last lands at the end, at least 2 calls in total (fortio's minimum),
      connections lowered when ``2 * c`` exceeds the total calls.
    * otherwise: unlimited calls, bounded by ``duration_s`` (if > 0) or an interrupt.
    """
    c = max(1, connections)
    lowered = 0
    if exactly > 0:
        if qps > 0 and 2 * c > exactly:  # fortio's runQPSSetup lowers -c for -n in qps mode too
            lowered, c = c, max(1, exactly // 2)
        per, rem = divmod(exactly, c)
        calls = tuple(per + (rem if j == 0 else 0) for j in range(c))
        stretch = False
        end_s = 0.0
        total = exactly
    elif qps > 0 and duration_s > 0:
        total_calls = int(qps * duration_s)
        if total_calls < 2:
            total_calls = 2
            if c > 1:
                lowered, c = c, 1
        elif 2 * c > total_calls:
            lowered, c = c, max(1, total_calls // 2)
        per = total_calls // c
        calls = tuple(per for _ in range(c))
        stretch = True
        end_s = duration_s
        total = per * c
    else:
        calls = tuple(-1 for _ in range(c))
        stretch = False
        end_s = duration_s if duration_s > 0 else 0.0
        total = -1
    offsets: tuple[float, ...]
    if uniform and qps > 0:
        period = c / qps
        offsets = tuple(period * j / c for j in range(c))
    else:
        offsets = tuple(0.0 for _ in range(c))
    return Plan(
        connections=c,
        calls=calls,
        offsets=offsets,
        stretch=stretch,
        end_s=end_s,
        total=total,
        lowered_from=lowered,
    )


def period_s(qps: float, connections: int) -> float:
    """Seconds between two slots of one connection (inf in max mode)."""
    return connections / qps if qps > 0 else math.inf


def slot_time(k: int, period: float, calls: int, stretch: bool) -> float:
    """Seconds from the connection's start offset to its k-th slot (k from 0)."""
    if stretch and calls > 1:
        return (k + k / (calls - 1)) * period
    return k * period


def next_slot(
    k: int, now_rel: float, period: float, calls: int, stretch: bool, catchup: bool
) -> tuple[int, float]:
    """The slot to use next when the connection is idle at ``now_rel`` (relative to its offset).

    Returns ``(k', t')``: with catch-up, ``k' = k`` (send at once if late); without, the first
    slot ``k' >= k`` whose time is not in the past. ``k' - k`` is the number of skipped slots.
    """
    t = slot_time(k, period, calls, stretch)
    if catchup or t >= now_rel:
        return k, t
    # skip late slots; jump close to the right one in O(1), then adjust
    eff = period * (1 + 1 / (calls - 1)) if stretch and calls > 1 else period
    k2 = max(k, math.ceil(now_rel / eff) - 1)
    while slot_time(k2, period, calls, stretch) < now_rel:
        k2 += 1
    return k2, slot_time(k2, period, calls, stretch)
