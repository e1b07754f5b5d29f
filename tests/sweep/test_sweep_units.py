"""Unit tests of the sweep's inputs (load lists, SLO grammar and evaluation) and of the fast
``Recorder.recorded_buckets`` the sweep's per-step overhead depends on. No servers."""

from __future__ import annotations

import datetime as dt
import random

import pytest

from loadgen.engine_api import EngineResult
from loadgen.errors import UsageError
from loadgen.options import LoadOptions
from loadgen.recorder import Recorder
from loadgen.results import RunResult
from loadgen.sweep.spec import fmt_qps, parse_c_list, parse_qps_list, parse_slo


def test_lists_sorted_unique() -> None:
    assert parse_c_list("5, 1,2,2") == [1, 2, 5]
    assert parse_qps_list("200,100,max,0,-1") == [0.0, 100.0, 200.0]
    assert fmt_qps(0.0) == "max" and fmt_qps(12.5) == "12.5"


@pytest.mark.parametrize("text", ["", ",", "1,,2", "1,x", "0", "-2", "1.5"])
def test_bad_c_lists(text: str) -> None:
    with pytest.raises(UsageError, match="invalid -c"):
        parse_c_list(text)


@pytest.mark.parametrize("text", ["", "100,", "abc", "nan"])
def test_bad_qps_lists(text: str) -> None:
    with pytest.raises(UsageError, match="invalid -qps"):
        parse_qps_list(text)


def test_slo_parses_units() -> None:
    slo = parse_slo("p99<50ms, p99.9<=1s,max<900us, errors<1%, overflow<0.5%, qps>=100")
    got = [(c.metric, c.op, c.value) for c in slo.conditions]
    assert got == [
        ("p99", "<", 0.05),
        ("p99.9", "<=", 1.0),
        ("max", "<", 0.0009),
        ("errors", "<", 0.01),
        ("overflow", "<", 0.005),
        ("qps", ">=", 100.0),
    ]


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("", "expected conditions"),
        ("p99<50ms,", "empty condition"),
        ("p98<50ms", "unknown metric 'p98'"),
        ("p99>50ms", "ceiling"),
        ("qps<100", "floor"),
        ("p99<50", "needs a unit"),
        ("p99<50kg", "needs a unit"),
        ("errors<1", "percentage"),
        ("errors<101%", "above 100"),
        ("p99 50ms", "expected metric<value"),
        ("p99<-5ms", "not a non-negative number"),
    ],
)
def test_bad_slos_are_one_line(text: str, needle: str) -> None:
    with pytest.raises(UsageError) as ei:
        parse_slo(text)
    msg = str(ei.value)
    assert needle in msg and "\n" not in msg and msg.startswith("invalid -slo")


def _result(latencies_ms: list[float], codes: dict[int, int], overloaded: int, secs: float) -> RunResult:
    er = EngineResult()
    for ms in latencies_ms:
        er.latency.record(int(ms * 1e6))
        er.service.record(int(ms * 1e6))
    er.codes = dict(codes)
    er.overloaded = {503: overloaded} if overloaded else {}
    er.elapsed_ns = int(secs * 1e9)
    opts = LoadOptions(url="http://127.0.0.1:1/")
    return RunResult.build(er, opts, start_time=dt.datetime.now(dt.timezone.utc))


def test_slo_check_measures_each_metric() -> None:
    r = _result([10.0] * 98 + [80.0, 90.0], {200: 95, 503: 5}, overloaded=4, secs=1.0)
    ok, why = parse_slo("p50<20ms,p99<100ms,qps>=99").check(r)
    assert ok, why
    ok, why = parse_slo("p99<50ms,errors<1%,overflow<10%").check(r)
    assert not ok
    assert "p99<50ms (got " in why and "errors<1% (got 5%)" in why and "overflow" not in why
    ok, why = parse_slo("overflow<3%").check(r)
    assert not ok and "got 4%" in why
    ok, _ = parse_slo("qps>=101").check(r)
    assert not ok


def test_recorded_buckets_matches_hdrh_iterator() -> None:
    r = Recorder()
    rnd = random.Random(7)
    for _ in range(5000):
        r.record(int(rnd.lognormvariate(14, 2.5)))
    r.record(0)
    slow = []
    for item in r.hdr.get_recorded_iterator():
        v = int(r.hdr._hdr_median_equiv_value(item.value_iterated_to)) * r.hdr_divisor
        slow.append((min(max(v, r.min), r.max), int(item.count_at_value_iterated_to)))
    assert r.recorded_buckets() == slow
    assert sum(n for _, n in slow) == 5001
    assert Recorder().recorded_buckets() == []
