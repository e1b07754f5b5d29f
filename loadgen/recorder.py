"""Recorders: HDR histograms plus exact running statistics, and the per-second timeline buckets.

This module is the one place that knows the histogram layout. Engines fill the same layout
(the C engine writes raw counts arrays laid out exactly like the ``hdrhistogram`` package; the
pure-Python engine calls :meth:`Recorder.record`), and everything above works on
:class:`Recorder` objects: merge, percentiles, encode/decode. It is not a report renderer.

Units
-----
* Time recorders keep their HDR histogram in **microseconds** (``hdr_divisor = 1000``) and their
  exact statistics (count/min/max/sum/sum of squares) in **nanoseconds**.
* Size recorders keep both in **bytes** (``hdr_divisor = 1``).

The HDR layout is the same for every recorder of every run: lowest 1, highest
:data:`HDR_HIGHEST` (one hour in µs, so latency measured from the intended send time still fits
when a run falls far behind its schedule), 3 significant figures. A constant layout makes merging
runs (threads, processes, pods) a plain array addition.
"""

from __future__ import annotations

import ctypes
import math
import re
from dataclasses import dataclass, field
from typing import Any

from hdrh.histogram import HdrHistogram

HDR_LOWEST = 1
HDR_HIGHEST = 3_600_000_000  # 1 h in µs; also plenty for byte sizes up to 3.6 GB
HDR_SIGFIGS = 3


def new_hdr() -> HdrHistogram:
    """An empty histogram with the project-wide layout."""
    return HdrHistogram(HDR_LOWEST, HDR_HIGHEST, HDR_SIGFIGS)


def hdr_counts_len() -> int:
    """Length of the counts array of :func:`new_hdr` (what the C engine must allocate)."""
    return int(new_hdr().counts_len)


def hdr_layout() -> tuple[int, int, int, int]:
    """(counts_len, unit_magnitude, sub_bucket_half_count_magnitude, sub_bucket_mask) for C code."""
    h = new_hdr()
    return (
        int(h.counts_len),
        int(h.unit_magnitude),
        int(h.sub_bucket_half_count_magnitude),
        int(h.sub_bucket_mask),
    )


_NONZERO = re.compile(rb"[^\x00]+")


def nonzero_counts(counts: Any) -> list[tuple[int, int]]:
    """[(index, count)] of the non-zero entries of a native uint64 counts array, ascending.

    Scans the raw bytes with a C-speed regex instead of walking ~23,000 counters in Python.
    """
    data = bytes(memoryview(counts).cast("B"))
    q = memoryview(data).cast("Q")
    out: list[tuple[int, int]] = []
    last = -1
    for m in _NONZERO.finditer(data):
        for i in range(m.start() // 8, (m.end() - 1) // 8 + 1):
            if i != last and q[i]:
                out.append((i, int(q[i])))
                last = i
    return out


@dataclass
class Recorder:
    """An HDR histogram and exact statistics of the same values.

    ``hdr_divisor`` converts a recorded value to HDR units (1000: ns → µs; 1: bytes).
    ``sum``/``sumsq``/``min``/``max`` are exact, in the recorded unit.
    """

    hdr_divisor: int = 1000
    hdr: HdrHistogram = field(default_factory=new_hdr)
    count: int = 0
    min: int = 0
    max: int = 0
    sum: float = 0.0
    sumsq: float = 0.0

    def record(self, value: int) -> None:
        """Record one value (ns for time recorders, bytes for size recorders). Slow path (py engine)."""
        v = max(0, int(value))
        hv = min((v + self.hdr_divisor // 2) // self.hdr_divisor, HDR_HIGHEST)
        self.hdr.record_value(hv)
        if self.count == 0 or v < self.min:
            self.min = v
        if self.count == 0 or v > self.max:
            self.max = v
        self.count += 1
        self.sum += v
        self.sumsq += float(v) * float(v)

    def fill_counts(
        self, counts: bytes | memoryview, count: int, vmin: int, vmax: int, vsum: float, vsumsq: float
    ) -> None:
        """Add a raw counts array (native uint64, :func:`hdr_layout` layout) and its exact stats.

        This is how the C engine hands over a thread's histogram without per-value Python calls.
        """
        src = memoryview(counts).cast("B")
        other = new_hdr()
        if src.nbytes != ctypes.sizeof(other.counts):
            raise ValueError(f"counts array has {src.nbytes} bytes, expected {ctypes.sizeof(other.counts)}")
        ctypes.memmove(ctypes.addressof(other.counts), bytes(src), src.nbytes)
        nz = nonzero_counts(other.counts)
        total = sum(c for _, c in nz)
        other.set_internal_tacking_values(nz[0][0] if nz else -1, nz[-1][0] if nz else -1, total)
        self.hdr.add(other)
        self._merge_stats(count, vmin, vmax, vsum, vsumsq)

    def _merge_stats(self, count: int, vmin: int, vmax: int, vsum: float, vsumsq: float) -> None:
        if count == 0:
            return
        if self.count == 0:
            self.min, self.max = vmin, vmax
        else:
            self.min = min(self.min, vmin)
            self.max = max(self.max, vmax)
        self.count += count
        self.sum += vsum
        self.sumsq += vsumsq

    def merge(self, other: Recorder) -> None:
        """Add another recorder of the same kind (histograms merged, never percentiles averaged)."""
        if other.hdr_divisor != self.hdr_divisor:
            raise ValueError("cannot merge recorders of different units")
        if other.hdr.get_total_count():
            self.hdr.add(other.hdr)
        self._merge_stats(other.count, other.min, other.max, other.sum, other.sumsq)

    # --- derived values, in the recorded unit -------------------------------------------
    @property
    def avg(self) -> float:
        return self.sum / self.count if self.count else 0.0

    @property
    def stddev(self) -> float:
        """Population standard deviation (as fortio prints it)."""
        if not self.count:
            return 0.0
        mean = self.sum / self.count
        return math.sqrt(max(0.0, self.sumsq / self.count - mean * mean))

    def percentile(self, p: float) -> float:
        """Value at percentile ``p`` (0 < p <= 100) in the recorded unit, from the HDR histogram.

        Clamped to the exact min/max so that quantisation never reports a value outside them.
        """
        if not self.count:
            return 0.0
        v = float(self.hdr.get_value_at_percentile(p)) * self.hdr_divisor
        return min(max(v, float(self.min)), float(self.max))

    def encode(self) -> str:
        """Base64 HdrHistogram V2 compressed encoding of the HDR part."""
        return str(
            self.hdr.encode().decode("ascii") if isinstance(self.hdr.encode(), bytes) else self.hdr.encode()
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "Count": self.count,
            "Min": self.min,
            "Max": self.max,
            "Sum": self.sum,
            "SumSq": self.sumsq,
            "Divisor": self.hdr_divisor,
            "Hdr": self.encode(),
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Recorder:
        r = cls(hdr_divisor=int(d.get("Divisor", 1000)))
        enc = d.get("Hdr")
        if enc:
            r.hdr = HdrHistogram.decode(enc)
            if r.hdr.counts_len != new_hdr().counts_len:
                relaid = new_hdr()
                relaid.add(r.hdr)
                r.hdr = relaid
        r.count = int(d.get("Count", 0))
        r.min = int(d.get("Min", 0))
        r.max = int(d.get("Max", 0))
        r.sum = float(d.get("Sum", 0.0))
        r.sumsq = float(d.get("SumSq", 0.0))
        return r

    def recorded_buckets(self) -> list[tuple[int, int]]:
        """[(value in recorded unit, count)] for every non-empty HDR bucket, ascending.

        The value is the bucket's median-equivalent value scaled back to the recorded unit and
        clamped to [min, max]; used to re-bin into fortio's fixed bucket table.
        """
        # The same values as hdrh's get_recorded_iterator() (value_iterated_to is the highest
        # equivalent value of the bucket's lowest value), visiting only the non-zero counts: the
        # iterator walks every sub-bucket in Python (~0.1 s per histogram, several per run).
        out: list[tuple[int, int]] = []
        h = self.hdr
        for i, n in nonzero_counts(h.counts):
            value_iterated_to = h.get_highest_equivalent_value(h.get_value_from_index(i))
            v = int(h._hdr_median_equiv_value(value_iterated_to)) * self.hdr_divisor
            v = min(max(v, self.min), self.max)
            out.append((v, n))
        return out


# --- per-second timeline -----------------------------------------------------------------
# A compact log-linear histogram per second (16 sub-buckets per octave, about 6 % resolution)
# so that per-second p50/p99 cost 1.9 KB per second per thread. Values are µs, clamped to 2^32-1.

TIMELINE_BUCKETS = 464


def timeline_index(v_us: int) -> int:
    """Bucket index of a latency in µs. The C engine implements the same function."""
    v = min(max(int(v_us), 0), 0xFFFFFFFF)
    if v < 32:
        return v
    e = v.bit_length() - 1  # >= 5
    return 32 + (e - 5) * 16 + ((v >> (e - 4)) & 15)


def timeline_bounds(idx: int) -> tuple[int, int]:
    """Inclusive [low, high] µs of a timeline bucket."""
    if idx < 32:
        return idx, idx
    e = (idx - 32) // 16 + 5
    m = (idx - 32) % 16
    return (16 + m) << (e - 4), ((17 + m) << (e - 4)) - 1


def timeline_percentile(buckets: list[int] | tuple[int, ...], p: float) -> float:
    """Percentile (µs, bucket midpoint) of a timeline bucket array; 0.0 if empty."""
    total = sum(buckets)
    if not total:
        return 0.0
    target = max(1, math.ceil(total * p / 100.0))
    run = 0
    for i, c in enumerate(buckets):
        run += c
        if run >= target:
            lo, hi = timeline_bounds(i)
            return (lo + hi) / 2.0
    lo, hi = timeline_bounds(len(buckets) - 1)
    return (lo + hi) / 2.0


@dataclass
class Second:
    """What completed during one second of a run (index ``t`` counted from the run's start)."""

    t: int
    requests: int = 0
    errors: int = 0  # transport errors (code -1)
    overloaded: int = 0
    codes: dict[int, int] = field(default_factory=dict)
    latency: list[int] = field(default_factory=lambda: [0] * TIMELINE_BUCKETS)  # intended-start µs

    def merge(self, other: Second) -> None:
        self.requests += other.requests
        self.errors += other.errors
        self.overloaded += other.overloaded
        for k, v in other.codes.items():
            self.codes[k] = self.codes.get(k, 0) + v
        self.latency = [a + b for a, b in zip(self.latency, other.latency, strict=True)]

    def to_json(self) -> dict[str, Any]:
        return {
            "T": self.t,
            "Requests": self.requests,
            "Errors": self.errors,
            "Overloaded": self.overloaded,
            "Codes": {str(k): v for k, v in sorted(self.codes.items())},
            "P50": timeline_percentile(self.latency, 50) / 1e6,
            "P99": timeline_percentile(self.latency, 99) / 1e6,
            "Buckets": {str(i): c for i, c in enumerate(self.latency) if c},
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Second:
        s = cls(
            t=int(d["T"]),
            requests=int(d.get("Requests", 0)),
            errors=int(d.get("Errors", 0)),
            overloaded=int(d.get("Overloaded", 0)),
            codes={int(k): int(v) for k, v in d.get("Codes", {}).items()},
        )
        for k, v in d.get("Buckets", {}).items():
            s.latency[int(k)] = int(v)
        return s


def merge_timelines(parts: list[list[Second]]) -> list[Second]:
    """Merge per-thread timelines by second index; the result is dense from 0 to the last second."""
    by_t: dict[int, Second] = {}
    for part in parts:
        for s in part:
            cur = by_t.get(s.t)
            if cur is None:
                cur = by_t[s.t] = Second(t=s.t)
            cur.merge(s)
    if not by_t:
        return []
    return [by_t.get(t) or Second(t=t) for t in range(max(by_t) + 1)]
