"""fortio's histogram, counters and number formatting, reproduced exactly (``stats/stats.go``).

What this is
    * :class:`Counter` and :class:`Histogram`: fortio's fixed 57-bucket semi-log table (56 edge
      values scaled by ``divider`` = ``-r`` and shifted by ``offset``), intervals ``(prev, cur]``
      with fortio's 1e-12 epsilon rule, bucket 0 for scaled values <= 0, one overflow bucket for
      scaled values > 100000.
    * :class:`HistogramData`: fortio's exported form (``Count, Min, Max, Sum, Avg, StdDev,
      Data[{Start, End, Percent, Count}], Percentiles[{Percentile, Value}]``) with fortio's
      percentile rule and its text rendering (``# range, mid point, percentile, count``).
    * :func:`from_recorder`: the bridge from a :class:`loadgen.recorder.Recorder` to fortio's
      export, and :func:`from_histogram_data`: the way back from a fortio JSON histogram.
    * Go number formatting used by fortio's report: :func:`go_g` (``%g``/``%v`` of a float64),
      :func:`go_duration` (``time.Duration.String()``) and :func:`parse_go_duration`.

Quantisation when exporting a Recorder
    ``Count``, ``Min``, ``Max``, ``Sum``, ``Avg`` and ``StdDev`` come from the recorder's exact
    statistics. ``Data`` (and so ``Percentiles``) come from re-binning the recorder's HDR buckets
    (3 significant digits, about 0.1 %; time recorders keep µs) into fortio's table: each HDR
    bucket lands whole in the fortio bucket of its representative value. A value within one HDR
    bucket width (for example ±4 µs around 11 ms, ±0.5 µs below 2 ms) of a fortio bucket edge
    may therefore be counted in the neighbouring bucket. fortio itself buckets exact float
    seconds; on values away from edges both give identical tables and percentiles.

What this is not
    Not the recorder (see :mod:`loadgen.recorder`) and not the report (see
    :mod:`loadgen.report_text`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from loadgen.durations import parse_seconds
from loadgen.errors import UsageError
from loadgen.recorder import Recorder

BUCKET_VALUES: tuple[int, ...] = (
    0,
    1,
    2,
    3,
    4,
    5,
    6,
    7,
    8,
    9,
    10,
    11,
    12,
    14,
    16,
    18,
    20,
    25,
    30,
    35,
    40,
    45,
    50,
    60,
    70,
    80,
    90,
    100,
    120,
    140,
    160,
    180,
    200,
    250,
    300,
    350,
    400,
    450,
    500,
    600,
    700,
    800,
    900,
    1000,
    2000,
    3000,
    4000,
    5000,
    7500,
    10000,
    20000,
    30000,
    40000,
    50000,
    75000,
    100000,
)
NUM_VALUES = len(BUCKET_VALUES)  # 56
NUM_BUCKETS = NUM_VALUES + 1  # 57: bucket 0 is <= 0, the last one is > 100000
_FIRST = float(BUCKET_VALUES[0])
_LAST = float(BUCKET_VALUES[-1])
_EPSILON = 1e-12

# fortio's O(1) lookup table below 1000: _VAL2BUCKET[i] = index of the first edge > i.
_VAL2BUCKET: list[int] = []
_idx = 0
for _i in range(1000):
    if _i >= BUCKET_VALUES[_idx]:
        _idx += 1
    _VAL2BUCKET.append(_idx)
_IDX_1000 = BUCKET_VALUES.index(1000)

# Histogram parameters fortio uses for the non-latency histograms.
SIZE_DIVIDER = 100.0  # Response Body/Total Sizes
HEADER_SIZE_DIVIDER = 5.0  # Response Header Sizes
SLEEP_OFFSET = -0.001  # sleep histogram: bucket 0 holds sleeps <= -1 ms ("falling behind")
SLEEP_DIVIDER = 0.001


def bucket_index(scaled: float) -> int:
    """Bucket of an already scaled value ``(v - offset) / divider``, exactly as fortio computes it."""
    if scaled <= _FIRST:
        return 0
    if scaled > _LAST:
        return NUM_BUCKETS - 1
    sv = int(scaled)
    if scaled - sv < _EPSILON:  # exactly on an edge (within 1e-12): belongs to the lower bucket
        sv -= 1
    sv = max(sv, 0)  # fortio would index -1 for 0 < scaled < 1e-12; that value is in (0, 1]
    if sv < 1000:
        return _VAL2BUCKET[sv]
    for i in range(_IDX_1000, NUM_VALUES):
        if BUCKET_VALUES[i] > sv:
            return i
    return NUM_BUCKETS - 1  # not reached: sv < 100000 here


# --- Go formatting ----------------------------------------------------------------------


def go_g(v: float) -> str:
    """Go's ``%g`` / ``%v`` of a float64: shortest round-trip digits, exponent form when exp < -4 or >= 6
    (``1e+06``, ``1.5e-05``, ``100000``, ``0.0001``)."""
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    if v == 0:
        return "-0" if math.copysign(1.0, v) < 0 else "0"
    sign = "-" if v < 0 else ""
    tup = Decimal(repr(abs(v))).normalize().as_tuple()
    digits = "".join(str(d) for d in tup.digits)
    assert isinstance(tup.exponent, int)
    nd = len(digits)
    dp = nd + tup.exponent  # position of the decimal point relative to the digits
    exp = dp - 1
    if exp < -4 or exp >= 6:
        mant = digits[0] + ("." + digits[1:] if nd > 1 else "")
        return f"{sign}{mant}e{'-' if exp < 0 else '+'}{abs(exp):02d}"
    if dp <= 0:
        return f"{sign}0.{'0' * -dp}{digits}"
    if dp >= nd:
        return f"{sign}{digits}{'0' * (dp - nd)}"
    return f"{sign}{digits[:dp]}.{digits[dp:]}"


def _fmt_frac(v: int, prec: int) -> tuple[str, int]:
    """Go's fmtFrac: the fraction of v / 10**prec without trailing zeros, and the integer part."""
    frac = v % (10**prec)
    whole = v // (10**prec)
    if frac == 0:
        return "", whole
    s = f"{frac:0{prec}d}".rstrip("0")
    return "." + s, whole


def go_duration(ns: int) -> str:
    """Go's ``time.Duration.String()``: ``0s``, ``1.5µs``, ``51.9946ms``, ``1m0.125224875s``, ``2h0m0s``."""
    ns = int(ns)
    if ns == 0:
        return "0s"
    neg = ns < 0
    u = -ns if neg else ns
    sign = "-" if neg else ""
    if u < 1_000_000_000:
        if u < 1_000:
            return f"{sign}{u}ns"
        if u < 1_000_000:
            frac, whole = _fmt_frac(u, 3)
            return f"{sign}{whole}{frac}µs"
        frac, whole = _fmt_frac(u, 6)
        return f"{sign}{whole}{frac}ms"
    frac, secs = _fmt_frac(u, 9)
    out = f"{secs % 60}{frac}s"
    mins = secs // 60
    if mins > 0:
        out = f"{mins % 60}m{out}"
        hours = mins // 60
        if hours > 0:
            out = f"{hours}h{out}"
    return sign + out


def seconds_to_ns(s: float) -> int:
    return round(s * 1e9)


def parse_go_duration(s: str) -> float:
    """Seconds of a Go duration string (``5s``, ``1m0s``, ``1.5ms``, ``-2s``, ``0``; also ``d``)."""
    try:
        return parse_seconds(s)
    except ValueError:
        raise UsageError(f"invalid duration {s!r} (expected e.g. 5s, 1m30s, 250ms)") from None


# --- Counter / Histogram ---------------------------------------------------------------


@dataclass
class Counter:
    """fortio's ``stats.Counter``: count, min, max, sum and sum of squares (population stddev)."""

    count: int = 0
    min: float = 0.0
    max: float = 0.0
    sum: float = 0.0
    sumsq: float = 0.0

    def record(self, v: float, n: int = 1) -> None:
        if n <= 0:
            return
        if self.count == 0:
            self.min = self.max = v
        elif v < self.min:
            self.min = v
        elif v > self.max:
            self.max = v
        self.count += n
        self.sum += v * n
        self.sumsq += v * v * n

    @property
    def avg(self) -> float:
        return self.sum / self.count if self.count else 0.0

    @property
    def stddev(self) -> float:
        if not self.count:
            return 0.0
        sigma = (self.sumsq - self.sum * self.sum / self.count) / self.count
        return math.sqrt(sigma) if sigma > 0 else 0.0

    def transfer(self, src: Counter) -> None:
        """Add ``src`` into this counter (fortio's Transfer, without clearing src)."""
        if src.count == 0:
            return
        if self.count == 0:
            self.count, self.min, self.max, self.sum, self.sumsq = (
                src.count,
                src.min,
                src.max,
                src.sum,
                src.sumsq,
            )
            return
        self.count += src.count
        self.min = min(self.min, src.min)
        self.max = max(self.max, src.max)
        self.sum += src.sum
        self.sumsq += src.sumsq

    def line(self, msg: str) -> str:
        """fortio's ``Counter.Print``: ``msg : count N avg %.8g +/- %.4g min %g max %g sum %.9g``."""
        return counter_line(msg, self.count, self.avg, self.stddev, self.min, self.max, self.sum)


def counter_line(
    msg: str, count: int, avg: float, stddev: float, vmin: float, vmax: float, vsum: float
) -> str:
    return (
        f"{msg} : count {count} avg {avg:.8g} +/- {stddev:.4g} min {go_g(vmin)} max {go_g(vmax)} "
        f"sum {vsum:.9g}"
    )


@dataclass
class Bucket:
    """One exported interval ``(start, end]`` (the first one includes Min), its cumulative % and count."""

    start: float
    end: float
    percent: float
    count: int


@dataclass
class HistogramData:
    """fortio's exported histogram (``stats.HistogramData``)."""

    count: int = 0
    min: float = 0.0
    max: float = 0.0
    sum: float = 0.0
    avg: float = 0.0
    stddev: float = 0.0
    data: list[Bucket] = field(default_factory=list)
    percentiles: list[tuple[float, float]] = field(default_factory=list)

    def calc_percentile(self, p: float) -> float:
        """fortio's rule: p >= 100 → Max; p <= 100/Count → Min; else interpolate in the first bucket
        whose cumulative % reaches p, from the previous cumulative % (100/Count for the first)."""
        if not self.data:
            return 0.0
        if p >= 100:
            return self.max
        pp = 100.0 / self.count
        if p <= pp:
            return self.min
        for b in self.data:
            if p <= b.percent:
                return b.start + (p - pp) / (b.percent - pp) * (b.end - b.start)
            pp = b.percent
        return self.max

    def calc_percentiles(self, ps: tuple[float, ...] | list[float]) -> HistogramData:
        if self.count == 0:
            return self
        self.percentiles = [(p, self.calc_percentile(p)) for p in ps]
        return self

    def counter_line(self, msg: str) -> str:
        return counter_line(msg, self.count, self.avg, self.stddev, self.min, self.max, self.sum)

    def print_lines(self, msg: str) -> list[str]:
        """fortio's ``HistogramData.Print``: counter line, ranges, ``# target`` lines (or ``no data``)."""
        if not self.data:
            return [f"{msg} : no data"]
        lines = [self.counter_line(msg), "# range, mid point, percentile, count"]
        for i, b in enumerate(self.data):
            sep = ">=" if i == 0 else ">"
            lines.append(
                f"{sep} {b.start:.6g} <= {b.end:.6g} , {(b.start + b.end) / 2.0:.6g} , "
                f"{b.percent:.2f}, {b.count}"
            )
        lines.extend(target_line(p, v) for p, v in self.percentiles)
        return lines

    def to_json(self) -> dict[str, Any]:
        """fortio's JSON: ``Data`` is null when empty; ``Percentiles`` omitted when empty (omitempty)."""
        d: dict[str, Any] = {
            "Count": self.count,
            "Min": self.min,
            "Max": self.max,
            "Sum": self.sum,
            "Avg": self.avg,
            "StdDev": self.stddev,
            "Data": [
                {"Start": b.start, "End": b.end, "Percent": b.percent, "Count": b.count} for b in self.data
            ]
            or None,
        }
        if self.percentiles:
            d["Percentiles"] = [{"Percentile": p, "Value": v} for p, v in self.percentiles]
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any] | None) -> HistogramData:
        if not d:
            return cls()
        try:
            data = [
                Bucket(float(b["Start"]), float(b["End"]), float(b["Percent"]), int(b["Count"]))
                for b in (d.get("Data") or [])
            ]
            pct = [(float(p["Percentile"]), float(p["Value"])) for p in (d.get("Percentiles") or [])]
            return cls(
                count=int(d.get("Count", 0)),
                min=float(d.get("Min", 0.0)),
                max=float(d.get("Max", 0.0)),
                sum=float(d.get("Sum", 0.0)),
                avg=float(d.get("Avg", 0.0)),
                stddev=float(d.get("StdDev", 0.0)),
                data=data,
                percentiles=pct,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise UsageError(f"not a fortio histogram: {exc}") from exc


def target_line(p: float, v: float) -> str:
    return f"# target {go_g(p)}% {v:.6g}"


@dataclass
class Histogram:
    """fortio's ``stats.Histogram``: a Counter plus 57 bucket counts for ``(v - offset) / divider``."""

    offset: float = 0.0
    divider: float = 0.001
    counter: Counter = field(default_factory=Counter)
    hdata: list[int] = field(default_factory=lambda: [0] * NUM_BUCKETS)

    def __post_init__(self) -> None:
        if self.divider == 0 or not math.isfinite(self.divider):
            raise UsageError(f"histogram resolution must be a non-zero number, got {self.divider!r}")

    def record(self, v: float, n: int = 1) -> None:
        self.counter.record(v, n)
        self.record_bucket(v, n)

    def record_bucket(self, v: float, n: int = 1) -> None:
        """Count ``v`` in its bucket without touching the counter (re-binning)."""
        self.hdata[bucket_index((v - self.offset) / self.divider)] += n

    def transfer(self, src: Histogram) -> None:
        """Add ``src`` (same scale: bucket counts added; else src re-recorded at its midpoints, lossy)."""
        if src.counter.count == 0:
            return
        if src.divider == self.divider and src.offset == self.offset:
            self.hdata = [a + b for a, b in zip(self.hdata, src.hdata, strict=True)]
        else:
            for b in src.export().data:
                self.record_bucket((b.start + b.end) / 2.0, b.count)
        self.counter.transfer(src.counter)

    def export(self) -> HistogramData:
        """fortio's ``Export``: empty buckets skipped, first Start = Min, last End = Max, cumulative %."""
        c = self.counter
        res = HistogramData(count=c.count, min=c.min, max=c.max, sum=c.sum, avg=c.avg, stddev=c.stddev)
        last = -1
        for i in range(NUM_BUCKETS - 1, -1, -1):
            if self.hdata[i] > 0:
                last = i
                break
        if last < 0:
            return res
        total = 0
        prev = BUCKET_VALUES[0]
        ctr_total = float(sum(self.hdata)) if c.count == 0 else float(c.count)
        for i in range(last + 1):
            n = self.hdata[i]
            if n == 0:
                if i < NUM_VALUES:
                    prev = BUCKET_VALUES[i]
                continue
            total += n
            start = c.min if not res.data else self.divider * prev + self.offset
            if i < NUM_VALUES:
                cur = BUCKET_VALUES[i]
                end = self.divider * cur + self.offset
                prev = cur
            else:
                start = self.divider * prev + self.offset
                end = c.max
            res.data.append(Bucket(start, end, 100.0 * total / ctr_total, n))
        res.data[-1].end = c.max
        return res


def from_recorder(
    rec: Recorder,
    *,
    divider: float,
    offset: float = 0.0,
    scale: float = 1e9,
    percentiles: tuple[float, ...] | list[float] = (),
) -> HistogramData:
    """fortio's export of a Recorder, values divided by ``scale`` (1e9: ns → s; 1: bytes).

    Exact Count/Min/Max/Sum/Avg/StdDev from the recorder; Data and Percentiles from its HDR
    buckets re-binned into fortio's table (see the module docstring for the quantisation).
    """
    h = Histogram(offset=offset, divider=divider)
    if rec.count:
        h.counter = Counter(
            count=rec.count,
            min=rec.min / scale,
            max=rec.max / scale,
            sum=rec.sum / scale,
            sumsq=rec.sumsq / (scale * scale),
        )
        for v, n in rec.recorded_buckets():
            h.record_bucket(v / scale, n)
    data = h.export()
    if rec.count:
        # Use the recorder's own (numerically safer) average and deviation.
        data.avg = rec.avg / scale
        data.stddev = rec.stddev / scale
    return data.calc_percentiles(percentiles)


_SPREAD = 16  # points per bucket when rebuilding values from a fortio histogram


def from_histogram_data(
    d: dict[str, Any] | HistogramData | None, *, scale: float = 1e9, hdr_divisor: int = 1000
) -> Recorder:
    """Rebuild an approximate :class:`Recorder` from a fortio JSON histogram (``DurationHistogram`` …).

    What is kept exactly: Count, Min, Max, Sum and (through Avg and StdDev) the sum of squares,
    so counters and averages print as fortio printed them. What is lost: where values lay inside
    each fortio bucket. Each bucket's count is spread evenly over up to 16 points between its
    Start and End, so percentiles computed later are within one fortio bucket of the truth (the
    linear interpolation fortio itself does), never better. Negative values clamp to 0.
    ``scale`` converts the JSON unit to the recorder's (1e9: s → ns; 1: bytes).
    """
    hd = d if isinstance(d, HistogramData) else HistogramData.from_json(d)
    rec = Recorder(hdr_divisor=hdr_divisor)
    if hd.count <= 0:
        return rec
    for b in hd.data:
        if b.count <= 0:
            continue
        k = min(b.count, _SPREAD)
        per, rem = divmod(b.count, k)
        for i in range(k):
            v = b.start + (i + 0.5) / k * (b.end - b.start)
            n = per + (1 if i < rem else 0)
            hv = max(0, round(v * scale / hdr_divisor))
            rec.hdr.record_value(min(hv, 3_600_000_000), n)
    rec.count = hd.count
    rec.min = max(0, round(hd.min * scale))
    rec.max = max(0, round(hd.max * scale))
    rec.sum = hd.sum * scale
    rec.sumsq = hd.count * (hd.stddev * hd.stddev + hd.avg * hd.avg) * scale * scale
    return rec
