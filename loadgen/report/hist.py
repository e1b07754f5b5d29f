"""Vectorised HDR percentiles: sparse counts arrays of the project-wide layout, merged with numpy.

What it is: :class:`SparseHist` keeps the non-zero buckets of one :class:`~loadgen.recorder.Recorder`
(indices, counts, exact min/max and the HDR divisor). :func:`merge_hists` adds several of them
(the same layout for every run makes that an array addition), and :func:`percentiles` computes any
number of percentiles with one cumulative sum and one ``searchsorted`` — the same rule as
``hdrh``'s ``get_value_at_percentile`` (target count ``int(p * total / 100 + 0.5)``, at least 1; the
highest value equivalent to the bucket found) and the same clamping to the exact min/max as
:meth:`Recorder.percentile`, without hdrh's pure-Python per-percentile loops.

What it is not: no decoding of the base64 form (``Recorder.from_json`` does that) and no recording.
"""

from __future__ import annotations

import ctypes
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import numpy.typing as npt

from loadgen.recorder import Recorder, new_hdr

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@lru_cache(maxsize=1)
def _highest_equivalent() -> IntArray:
    """For every index of the layout, the highest value of that bucket (HDR units), vectorised."""
    h = new_hdr()
    idx = np.arange(int(h.counts_len), dtype=np.int64)
    half_mag = int(h.sub_bucket_half_count_magnitude)
    half = 1 << half_mag
    unit = int(h.unit_magnitude)
    bucket = (idx >> half_mag) - 1
    sub = (idx & (half - 1)) + half
    low = bucket < 0
    sub = np.where(low, sub - half, sub)
    bucket = np.where(low, 0, bucket)
    lowest = sub << (bucket + unit)
    # get_highest_equivalent_value: a sub-bucket index >= sub_bucket_count belongs to the next bucket
    size_bucket = np.where(sub >= int(h.sub_bucket_count), bucket + 1, bucket)
    return np.asarray(lowest + (np.int64(1) << (size_bucket + unit)) - 1, dtype=np.int64)


@dataclass
class SparseHist:
    """The non-empty buckets of one recorder, plus its exact min/max (recorded unit) and divisor."""

    idx: IntArray
    counts: IntArray
    vmin: int = 0
    vmax: int = 0
    divisor: int = 1000

    @property
    def total(self) -> int:
        return int(self.counts.sum())

    @classmethod
    def empty(cls, divisor: int = 1000) -> SparseHist:
        return cls(np.zeros(0, np.int64), np.zeros(0, np.int64), 0, 0, divisor)

    @classmethod
    def from_recorder(cls, rec: Recorder) -> SparseHist:
        h = rec.hdr
        if not h.get_total_count():
            return cls.empty(rec.hdr_divisor)
        n = int(h.counts_len)
        dense = np.ctypeslib.as_array((ctypes.c_int64 * n).from_address(ctypes.addressof(h.counts)))
        nz = np.flatnonzero(dense)
        return cls(
            nz.astype(np.int64), dense[nz].astype(np.int64), int(rec.min), int(rec.max), rec.hdr_divisor
        )


def merge_hists(hists: Iterable[SparseHist]) -> SparseHist:
    """One histogram holding every value of ``hists`` (bucket counts added, min/max combined)."""
    hs = [h for h in hists if h.counts.size]
    if not hs:
        return SparseHist.empty()
    divs = {h.divisor for h in hs}
    if len(divs) != 1:
        raise ValueError("cannot merge histograms of different units")
    idx = np.concatenate([h.idx for h in hs])
    cnt = np.concatenate([h.counts for h in hs])
    uniq, inv = np.unique(idx, return_inverse=True)
    sums = np.zeros(uniq.size, np.int64)
    np.add.at(sums, inv, cnt)
    return SparseHist(
        uniq.astype(np.int64), sums, min(h.vmin for h in hs), max(h.vmax for h in hs), hs[0].divisor
    )


def percentiles(h: SparseHist, ps: Sequence[float] | FloatArray) -> FloatArray:
    """Values (recorded unit, e.g. ns) at percentiles ``ps`` (0 < p <= 100); NaN when empty.

    Same result as :meth:`Recorder.percentile` for each p (a test checks it)."""
    p = np.asarray(ps, dtype=np.float64)
    if not h.counts.size:
        return np.full(p.shape, np.nan)
    cum = np.cumsum(h.counts)
    total = int(cum[-1])
    target = np.maximum((np.minimum(p, 100.0) * total / 100.0 + 0.5).astype(np.int64), 1)
    pos = np.minimum(np.searchsorted(cum, target, side="left"), cum.size - 1)
    vals = _highest_equivalent()[h.idx[pos]].astype(np.float64) * h.divisor
    return np.clip(vals, float(h.vmin), float(h.vmax))


def nines_axis(max_nines: float = 4.5, points: int = 120) -> tuple[FloatArray, FloatArray]:
    """(x, percentile) pairs for a percentile curve on a "nines" axis: x = -log10(1 - p/100).

    x = 0, 1, 2, 3, 4 are the 0th, 90th, 99th, 99.9th and 99.99th percentiles."""
    x = np.linspace(0.0, max_nines, points)
    p = 100.0 * (1.0 - 10.0 ** (-x))
    p[0] = 1e-9  # the minimum
    return x, p
