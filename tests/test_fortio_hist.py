"""fortio's histogram, percentiles and Go formatting, checked against fortio's rules and published numbers."""

from __future__ import annotations

import random

import pytest

from loadgen import fortio_hist as fh
from loadgen.errors import UsageError
from loadgen.recorder import Recorder

# --- bucket table and edges -----------------------------------------------------------------


def test_table_shape() -> None:
    assert fh.NUM_VALUES == 56
    assert fh.NUM_BUCKETS == 57
    assert fh.BUCKET_VALUES[:13] == (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12)
    assert fh.BUCKET_VALUES[-6:] == (20000, 30000, 40000, 50000, 75000, 100000)
    assert list(fh.BUCKET_VALUES) == sorted(set(fh.BUCKET_VALUES))


@pytest.mark.parametrize(
    ("scaled", "edge"),
    [
        (0.5, 1),
        (1.0, 1),
        (1.0 + 1e-13, 1),
        (1.001, 2),
        (10.999999999999998, 11),
        (11.0, 11),
        (11.5, 12),
        (12.0, 12),
        (12.5, 14),
        (99.9, 100),
        (100.0, 100),
        (100.00000000000001, 100),
        (100.5, 120),
        (999.5, 1000),
        (1000.0, 1000),
        (1000.5, 2000),
        (7500.0, 7500),
        (7500.1, 10000),
        (100000.0, 100000),
        (1e-13, 1),
    ],
)
def test_bucket_edges_are_open_left_closed_right(scaled: float, edge: int) -> None:
    assert fh.BUCKET_VALUES[fh.bucket_index(scaled)] == edge


def test_special_buckets() -> None:
    assert fh.bucket_index(0.0) == 0
    assert fh.bucket_index(-3.0) == 0
    assert fh.bucket_index(100000.5) == fh.NUM_BUCKETS - 1
    assert fh.bucket_index(1e9) == fh.NUM_BUCKETS - 1


@pytest.mark.parametrize(("seconds", "end"), [(0.001, 0.001), (0.011, 0.011), (0.1, 0.1)])
def test_values_exactly_on_ms_boundaries_go_to_lower_bucket(seconds: float, end: float) -> None:
    h = fh.Histogram(divider=0.001)
    h.record(0.0005)  # so that the boundary value is not the first bucket (whose Start is Min)
    h.record(seconds)
    d = h.export()
    assert d.data[-1].end == pytest.approx(end)  # last End is Max == the value itself
    # the boundary value's bucket starts at the previous edge, not at the value
    prev_edge = fh.BUCKET_VALUES[fh.BUCKET_VALUES.index(round(end * 1000)) - 1] * 0.001
    if len(d.data) == 2:
        assert d.data[1].start == pytest.approx(prev_edge)
    else:  # 1 ms: both values share (0, 1]
        assert d.data[0].count == 2


def test_export_first_start_is_min_last_end_is_max_percent_cumulative() -> None:
    h = fh.Histogram(divider=0.001)
    for v in (0.0004298, 0.0009, 0.0015, 0.0019, 0.0025, 0.015943):
        h.record(v)
    d = h.export()
    assert [(b.start, b.end, b.count) for b in d.data] == [
        (0.0004298, 0.001, 2),
        (0.001, 0.002, 2),
        (0.002, 0.003, 1),
        (0.014, 0.015943, 1),
    ]
    assert [round(b.percent, 4) for b in d.data] == [33.3333, 66.6667, 83.3333, 100.0]


def test_resolution_and_offset_scale_the_table() -> None:
    h = fh.Histogram(divider=0.0001)  # -r 0.0001: 100 µs buckets to 1.1 ms
    h.record(0.00001)
    h.record(0.00015)
    d = h.export()
    assert (d.data[1].start, d.data[1].end) == (pytest.approx(0.0001), 0.00015)
    h2 = fh.Histogram(offset=0.01, divider=0.001)
    h2.record(0.005)  # below the offset: bucket 0
    h2.record(0.0115)
    h2.record(0.0135)
    d2 = h2.export()
    assert d2.data[0].count == 1 and d2.data[0].end == pytest.approx(0.01)
    assert (d2.data[1].start, d2.data[1].end) == (pytest.approx(0.011), pytest.approx(0.012))


def test_overflow_bucket_starts_at_ceiling_and_ends_at_max() -> None:
    h = fh.Histogram(divider=0.001)
    h.record(150.0)  # > 100000 * r
    d = h.export()
    assert len(d.data) == 1
    assert (d.data[0].start, d.data[0].end, d.data[0].count) == (100.0, 150.0, 1)


def test_zero_divider_rejected() -> None:
    with pytest.raises(UsageError):
        fh.Histogram(divider=0.0)


# --- percentiles ---------------------------------------------------------------------------


def test_percentiles_match_fortio_readme_sample() -> None:
    """fortio README JSON: 4 calls, Min 0.00027292, Max 0.000930407, p50/p99.9 as printed there."""
    h = fh.Histogram(divider=0.001)
    for v in (0.00027292, 0.0004, 0.0007, 0.000930407):
        h.record(v)
    d = h.export().calc_percentiles([50, 99.9])
    assert d.percentiles[0] == (50, pytest.approx(0.0004920823333333334, rel=1e-12))
    assert d.percentiles[1] == (99.9, pytest.approx(0.0009295303506666667, rel=1e-12))
    # the same through a Recorder (exact min/max, one bucket): identical
    r = Recorder()
    for ns in (272920, 400000, 700000, 930407):
        r.record(ns)
    d2 = fh.from_recorder(r, divider=0.001, percentiles=[50, 99.9])
    assert d2.percentiles[0][1] == pytest.approx(0.0004920823333333334, rel=1e-12)
    assert d2.percentiles[1][1] == pytest.approx(0.0009295303506666667, rel=1e-12)


def test_percentile_rules() -> None:
    h = fh.Histogram(divider=1.0)
    for v in (10.0, 20.0, 30.0):
        h.record(v)
    d = h.export()
    assert d.calc_percentile(100) == 30.0
    assert d.calc_percentile(150) == 30.0
    assert d.calc_percentile(100 / 3) == 10.0  # p <= 100/Count → Min
    assert d.calc_percentile(10) == 10.0
    # (18, 20] holds 20: interpolate from 33.33 % to 66.67 %
    assert d.calc_percentile(50) == pytest.approx(19.0)
    # (25, 30] holds 30
    assert d.calc_percentile(99) == pytest.approx(25 + (99 - 200 / 3) / (100 / 3) * 5)
    assert fh.HistogramData().calc_percentile(50) == 0.0


def test_istio_cb_targets() -> None:
    """Buckets shaped like the Istio circuit-breaker task output give its printed p50 and p99.9."""
    h = fh.Histogram(divider=0.001)
    vals = [0.0004298, 0.0005, 0.0006, 0.0007, 0.0008] + [0.0015] * 6 + [0.0025] * 4 + [0.0058] * 13
    vals += [0.0066321, 0.015943]
    for v in vals:
        h.record(v)
    d = h.export().calc_percentiles([50, 99.9])
    assert [ln for ln in d.print_lines("x") if ln.startswith("# target")] == [
        "# target 50% 0.003",
        "# target 99.9% 0.0158847",
    ]
    assert d.print_lines("x")[2] == ">= 0.0004298 <= 0.001 , 0.0007149 , 16.67, 5"
    assert d.print_lines("x")[3] == "> 0.001 <= 0.002 , 0.0015 , 36.67, 6"


# --- Counter ---------------------------------------------------------------------------------


def test_counter_population_stddev_and_line() -> None:
    c = fh.Counter()
    for v in [456.0] * 400 + [457.0] * 4452:
        c.record(v)
    assert c.line("Response Header Sizes") == (
        "Response Header Sizes : count 4852 avg 456.91756 +/- 0.275 min 456 max 457 sum 2216964"
    )
    e = fh.Counter()
    assert e.line("Error cases") == "Error cases : count 0 avg 0 +/- 0 min 0 max 0 sum 0"
    a, b = fh.Counter(), fh.Counter()
    a.record(1.0)
    b.record(3.0)
    a.transfer(b)
    assert (a.count, a.min, a.max, a.avg, a.stddev) == (2, 1.0, 3.0, 2.0, 1.0)


def test_empty_histogram_prints_no_data_and_json_null() -> None:
    d = fh.Histogram(divider=0.001).export()
    assert d.print_lines("Error cases") == ["Error cases : no data"]
    j = d.calc_percentiles([50]).to_json()
    assert j["Data"] is None and "Percentiles" not in j
    assert list(j) == ["Count", "Min", "Max", "Sum", "Avg", "StdDev", "Data"]


def test_transfer_same_and_different_scale() -> None:
    a, b = fh.Histogram(divider=0.001), fh.Histogram(divider=0.001)
    a.record(0.0015)
    b.record(0.0025)
    a.transfer(b)
    assert [x.count for x in a.export().data] == [1, 1]
    c = fh.Histogram(divider=0.01)
    c.transfer(a)  # re-records midpoints: both in (0, 10 ms]
    assert [x.count for x in c.export().data] == [2]


# --- Recorder bridge ----------------------------------------------------------------------------


def _near_edge(v_s: float, r: float) -> bool:
    scaled = v_s / r
    return any(abs(scaled - e) < 0.02 * max(1.0, e / 100) for e in fh.BUCKET_VALUES)


def test_from_recorder_equals_fortio_away_from_edges() -> None:
    rnd = random.Random(7)
    rec = Recorder()
    h = fh.Histogram(divider=0.001)
    n = 0
    while n < 3000:
        ns = int(rnd.lognormvariate(15.0, 1.0))  # ~3 ms median, long tail
        if _near_edge(ns / 1e9, 0.001):
            continue
        rec.record(ns)
        h.record(ns / 1e9)
        n += 1
    pcts = [50, 75, 90, 99, 99.9]
    ours = fh.from_recorder(rec, divider=0.001, percentiles=pcts)
    theirs = h.export().calc_percentiles(pcts)
    assert ours.count == theirs.count
    assert ours.min == theirs.min and ours.max == theirs.max
    assert ours.sum == pytest.approx(theirs.sum, rel=1e-12)
    assert ours.stddev == pytest.approx(theirs.stddev, rel=1e-9)
    assert [b.count for b in ours.data] == [b.count for b in theirs.data]
    assert [x for b in ours.data for x in (b.start, b.end, b.percent)] == pytest.approx(
        [x for b in theirs.data for x in (b.start, b.end, b.percent)]
    )
    assert [v for _, v in ours.percentiles] == pytest.approx([v for _, v in theirs.percentiles], rel=1e-12)


def test_sizes_use_bytes_and_their_divider() -> None:
    rec = Recorder(hdr_divisor=1)
    for v in [241] * 19 + [817] + [816] * 10:
        rec.record(v)
    d = fh.from_recorder(rec, divider=fh.SIZE_DIVIDER, scale=1.0)
    assert d.counter_line("Response Body/Total Sizes") == (
        "Response Body/Total Sizes : count 30 avg 451.86667 +/- 277.1 min 241 max 817 sum 13556"
    )
    assert [(b.start, b.end, b.count) for b in d.data] == [(241, 300, 19), (800, 817, 11)]
    assert d.percentiles == [] and "Percentiles" not in d.to_json()


def test_from_histogram_data_keeps_stats_and_buckets() -> None:
    rnd = random.Random(3)
    h = fh.Histogram(divider=0.001)
    for _ in range(500):
        h.record(rnd.uniform(0.0002, 0.04))
    src = h.export().calc_percentiles([50, 99])
    rec = fh.from_histogram_data(src.to_json())
    assert rec.count == src.count
    assert rec.min / 1e9 == pytest.approx(src.min, abs=1e-9)
    assert rec.max / 1e9 == pytest.approx(src.max, abs=1e-9)
    assert rec.sum / 1e9 == pytest.approx(src.sum, rel=1e-12)
    assert rec.stddev / 1e9 == pytest.approx(src.stddev, rel=1e-6)
    back = fh.from_recorder(rec, divider=0.001, percentiles=[50, 99])
    assert [b.count for b in back.data] == [b.count for b in src.data]
    assert [b.end for b in back.data] == pytest.approx([b.end for b in src.data])
    assert [v for _, v in back.percentiles] == pytest.approx([v for _, v in src.percentiles], rel=1e-9)
    assert fh.from_histogram_data(None).count == 0
    with pytest.raises(UsageError):
        fh.from_histogram_data({"Count": 1, "Data": [{"Start": "x"}]})


# --- Go formatting -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ns", "text"),
    [
        (0, "0s"),
        (1, "1ns"),
        (999, "999ns"),
        (1500, "1.5µs"),
        (1_000_000, "1ms"),
        (51_994_600, "51.9946ms"),
        (5_000_000_000, "5s"),
        (60_125_224_875, "1m0.125224875s"),
        (90_000_000_000, "1m30s"),
        (7_200_000_000_000, "2h0m0s"),
        (-1500, "-1.5µs"),
    ],
)
def test_go_duration(ns: int, text: str) -> None:
    assert fh.go_duration(ns) == text
    assert fh.parse_go_duration(text) == pytest.approx(ns / 1e9)


@pytest.mark.parametrize(
    ("v", "text"),
    [
        (0.0, "0"),
        (8.0, "8"),
        (0.5, "0.5"),
        (99.9, "99.9"),
        (100000.0, "100000"),
        (1e6, "1e+06"),
        (2216964.0, "2.216964e+06"),
        (1e-5, "1e-05"),
        (0.0001, "0.0001"),
        (59.473337468, "59.473337468"),
        (-0.075178291, "-0.075178291"),
        (0.0004298, "0.0004298"),
    ],
)
def test_go_g(v: float, text: str) -> None:
    assert fh.go_g(v) == text


def test_parse_go_duration_rejects_garbage() -> None:
    for bad in ("", "5", "abc", "5x", "1m-3s"):
        with pytest.raises(UsageError):
            fh.parse_go_duration(bad)
    assert fh.parse_go_duration("0") == 0.0
    assert fh.parse_go_duration("1d4h") == 100800.0
