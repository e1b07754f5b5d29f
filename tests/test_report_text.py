"""The text report against fortio's published output (Istio circuit-breaker task, fortio 1.73 README)."""

from __future__ import annotations

import datetime as dt
import io
import os
import re
from pathlib import Path

import pytest

from loadgen import report_text
from loadgen.engine_api import EngineResult
from loadgen.errors import UsageError
from loadgen.options import LoadOptions
from loadgen.results import RunResult
from loadgen.version import __version__

GOLDEN = Path(__file__).parent / "golden"
START = dt.datetime(2019, 5, 4, 20, 32, 30, tzinfo=dt.timezone.utc)


def istio_cb_result() -> RunResult:
    """The Istio CB task: fortio load -c 3 -qps 0 -n 30, 11×200 and 19×503 through Envoy."""
    er = EngineResult()
    ms = [0.4298, 0.5, 0.6, 0.7, 0.8] + [1.5] * 6 + [2.5] * 4 + [5.8] * 13 + [6.6321, 15.943]
    codes = [200] * 11 + [503] * 19
    heads = [231] * 10 + [221] + [0] * 19
    sizes = [817] + [816] * 10 + [241] * 19
    for v, code, hs, sz in zip(ms, codes, heads, sizes, strict=True):
        ns = round(v * 1e6)
        er.service.record(ns)
        er.latency.record(ns)
        if code != 200:
            er.error_service.record(ns)
            er.overloaded[503] = er.overloaded.get(503, 0) + 1
        er.codes[code] = er.codes.get(code, 0) + 1
        er.header_size.record(hs)
        er.total_size.record(sz)
    er.sockets = [7, 7, 6]
    er.calls_done = [10, 10, 10]
    for _ in range(20):
        er.connect_time.record(120_000)
    er.elapsed_ns = 51_994_600
    er.start_wall = START.timestamp()
    opts = LoadOptions(url="http://httpbin:8000/get", connections=3, qps=0, exactly=30, loglevel="Warning")
    rr = RunResult.build(
        er,
        opts,
        start_time=START,
        engine="py",
        url="http://httpbin:8000/get",
        resolved="10.0.0.7:8000",
        num_threads=3,
        warmup=0,
        labels="istio cb",
    )
    rr.procs = 6
    return rr


# Lines of the Istio docs output (fortio 1.3.1, -loglevel Warning) we must print identically.
ISTIO_LINES = [
    "running at 0 queries per second, 6->6 procs, for 30 calls: http://httpbin:8000/get",
    "Starting at max qps with 3 thread(s) [gomax 6] for exactly 30 calls (10 per thread + 0)",
    "Ended after 51.9946ms : 30 calls. qps=576.98",
    ">= 0.0004298 <= 0.001 , 0.0007149 , 16.67, 5",
    "> 0.001 <= 0.002 , 0.0015 , 36.67, 6",
    "# target 50% 0.003",
    "# target 99.9% 0.0158847",
    "Sockets used: 20 (for perfect keepalive, would be 3)",
    "Code 200 : 11 (36.7 %)",
    "Code 503 : 19 (63.3 %)",
    "Response Header Sizes : count 30 avg 84.366667 +/- 110.9 min 0 max 231 sum 2531",
    "Response Body/Total Sizes : count 30 avg 451.86667 +/- 277.1 min 241 max 817 sum 13556",
    "All done 30 calls (plus 0 warmup) 4.000 ms avg, 577.0 qps",
]


def _render(rr: RunResult, level: str = "Info", header: bool = True) -> list[str]:
    buf = io.StringIO()
    report_text.render(rr, buf, level, header=header)
    return buf.getvalue().splitlines()


def _in_order(needles: list[str], lines: list[str]) -> None:
    pos = 0
    for n in needles:
        for i in range(pos, len(lines)):
            if n in lines[i]:
                pos = i + 1
                break
        else:
            raise AssertionError(f"{n!r} not found (in order) in:\n" + "\n".join(lines))


def test_istio_circuit_breaker_output_matches_fortio() -> None:
    lines = _render(istio_cb_result(), "Warning")
    assert lines[0] == f"Loadgen {__version__} " + ISTIO_LINES[0]
    _in_order(ISTIO_LINES, lines)
    assert lines[3].startswith("Aggregated Function Time : count 30 avg 0.0040001633 +/- ")
    assert lines[3].endswith(" min 0.0004298 max 0.015943 sum 0.1200049")
    # what fortio lacks, after "All done"
    tail = lines[lines.index("All done 30 calls (plus 0 warmup) 4.000 ms avg, 577.0 qps") + 1 :]
    assert tail == ["Errors: none", "Overloaded (x-envoy-overloaded): 19 (code 503: 19)"]


def test_golden_reports() -> None:
    """Whole reports at three log levels, byte for byte (set LOADGEN_UPDATE_GOLDEN=1 to rewrite)."""
    rr = istio_cb_result()
    for level in ("Info", "Warning", "Error"):
        text = "\n".join(_render(rr, level)).replace(__version__, "X.Y.Z") + "\n"
        path = GOLDEN / f"istio_cb_{level.lower()}.txt"
        if os.environ.get("LOADGEN_UPDATE_GOLDEN"):
            path.write_text(text)
        assert text == path.read_text(), f"{path.name} differs"


def test_log_levels() -> None:
    rr = istio_cb_result()
    info = _render(rr, "Info")
    warn = _render(rr, "Warning")
    err = _render(rr, "Error")
    verbose = _render(rr, "Verbose")
    assert "# Socket and IP used for each connection:" in info
    assert "[0]   7 socket used, resolved to 10.0.0.7:8000" in info
    assert any(ln.startswith("Connection time histogram (s) : count 20") for ln in info)
    assert "# Socket and IP used for each connection:" not in warn
    assert any(ln.startswith("Connection time (s) : count 20 avg 0.00012 ") for ln in warn)
    assert not any(ln.startswith(("Starting", "Ended", "Connection time")) for ln in err)
    assert err[0].startswith("Loadgen ")  # the first line is always printed
    i = next(i for i, ln in enumerate(err) if ln.startswith("Aggregated Function Time"))
    assert err[i + 1] == "# target 50% 0.003" and "# range, mid point, percentile, count" not in err
    assert err[i + 6].startswith("Error cases : count 19 ")
    assert not any(ln.startswith("Response Header Sizes") for ln in err)
    assert any(ln.startswith("Response Header Sizes Histogram : count 30") for ln in verbose)
    with pytest.raises(UsageError):
        _render(rr, "Loud")


def _qps_result(late: int, count: int = 4852) -> RunResult:
    """The fortio 1.73 README run: -qps 5000 -c 8 -t 1m, every sleep late."""
    er = EngineResult()
    for i in range(count):
        er.service.record(67_214_458 if i == 0 else (2_835_409_666 if i == 1 else 95_000_000))
        er.latency.record(95_000_000 + i * 10_000)
        code = -1 if i >= count - 4 else 200
        er.codes[code] = er.codes.get(code, 0) + 1
        er.header_size.record(456 if i < 400 else 457)
        er.total_size.record(525 if i < 400 else 526)
    er.sleep_count, er.late = count, late
    er.sleep_min, er.sleep_max = -59_473_337_468, -75_178_291
    er.sleep_sum = -146774.745e9
    avg, sd = -146774.745 / count, 17.2
    er.sleep_sumsq = count * (sd * sd + avg * avg) * 1e18
    er.sockets = [1] * 8
    er.calls_done = [count // 8] * 8
    er.elapsed_ns = 60_125_224_875
    er.errors = {"timeout": 1, "connect_refused": 3}
    opts = LoadOptions(url="http://captive.apple.com/", connections=8, qps=5000, duration_s=60)
    rr = RunResult.build(er, opts, start_time=START, resolved="17.253.118.201:80", num_threads=8, warmup=8)
    rr.procs = 10
    return rr


def test_qps_mode_sleep_warning_and_additions() -> None:
    rr = _qps_result(late=4852)
    lines = _render(rr)
    # the intended-time percentiles carry the service time from the same HDR estimator beside them
    p50 = next(ln for ln in lines if ln.startswith("# target 50% 0.119"))
    lat, service = (rec.percentile(50) / 1e9 for rec in (rr.engine_result.latency, rr.engine_result.service))
    assert p50 == f"# target 50% {lat:.6g} (service time {service:.6g})" and service <= lat
    _in_order(
        [
            "Loadgen X running at 5000 queries per second, 10->10 procs, for 1m0s: http://captive.apple.com/".replace(
                "X", __version__
            ),
            "Starting at 5000 qps with 8 thread(s) [gomax 10] for 1m0s : 37500 calls each (total 300000)",
            "Ended after 1m0.125224875s : 4852 calls. qps=80.698",
            "Aggregated Sleep Time : count 4852 avg -30.25036 +/- 17.2 min -59.473337468 max -0.075178291 "
            "sum -146774.745",
            "WARNING 100.00% of sleep were falling behind",
            "Uniform: false, Jitter: false, Catchup allowed: true",
            "IP addresses distribution:",
            "17.253.118.201:80: 8",
            "Code  -1 : 4 (0.1 %)",
            "Code 200 : 4848 (99.9 %)",
            "Response Header Sizes : count 4852 avg 456.91756 +/- 0.275 min 456 max 457 sum 2216964",
            "Response Body/Total Sizes : count 4852 avg 525.91756 +/- 0.275 min 525 max 526 sum 2551752",
            "All done 4852 calls (plus 8 warmup) 95.559 ms avg, 80.7 qps",
            "Latency from intended send time (wrk2-style) : count 4852 avg 0.119255 +/- 0.01401 min 0.095 "
            "max 0.14351",
            "# target 50% 0.119",
            "Errors: connect_refused 3, timeout 1",
            "Overloaded (x-envoy-overloaded): 0",
        ],
        lines,
    )
    assert not any("Sleep times" in ln for ln in lines)


def test_qps_mode_sleep_line_when_on_time() -> None:
    lines = _render(_qps_result(late=10))
    assert any(ln.startswith("Sleep times : count 4852 avg -30.25036 +/- 17.2") for ln in lines)
    assert not any(ln.startswith("WARNING") for ln in lines)
    assert not any("Sleep" in ln for ln in _render(_qps_result(late=10), "Error"))


def test_max_mode_has_no_latency_block_and_stop_reasons() -> None:
    rr = istio_cb_result()
    rr.engine_result.aborted_on = 503
    rr.engine_result.retries = 2
    lines = _render(rr, "Warning")
    assert not any(ln.startswith("Latency from intended") for ln in lines)
    assert "Also: retries 2" in lines
    assert "Stopped early: code 503 seen (-abort-on 503)" in lines


@pytest.mark.parametrize(
    ("opts", "nt", "second"),
    [
        (
            LoadOptions(url="u", qps=8, duration_s=5, connections=4),
            4,
            "Starting at 8 qps with 4 thread(s) [gomax 2] for 5s : 10 calls each (total 40)",
        ),
        (
            LoadOptions(url="u", qps=10, exactly=25, connections=4),
            4,
            "Starting at 10 qps with 4 thread(s) [gomax 2] : exactly 25, 6 calls each (total 24 + 1)",
        ),
        (
            LoadOptions(url="u", qps=10, duration_s=0, connections=2),
            2,
            "Starting at 10 qps with 2 thread(s) [gomax 2] until interrupted",
        ),
        (
            LoadOptions(url="u", qps=0, duration_s=0, connections=2),
            2,
            "Starting at max qps with 2 thread(s) [gomax 2] until interrupted",
        ),
        (
            LoadOptions(url="u", qps=-1, duration_s=90, connections=2, access_log_file="/tmp/x"),
            2,
            "Starting at max qps with 2 thread(s) [gomax 2] for 1m30s with access logger mode json to /tmp/x",
        ),
    ],
)
def test_starting_lines(opts: LoadOptions, nt: int, second: str) -> None:
    lines = report_text.header_lines(opts, "http://u/", nt, 2, report_text.level_of("Info"))
    assert lines[1] == second
    assert re.match(r"Loadgen \S+ running at -?\d+ queries per second, 2->2 procs, ", lines[0])
    quiet = report_text.header_lines(opts, "http://u/", nt, 2, report_text.level_of("Error"))
    assert len(quiet) == (2 if "until interrupted" in second else 1)


def test_wrote_json_line() -> None:
    assert report_text.wrote_json_line(1234, "-") == "Successfully wrote 1234 bytes of Json data to stdout"
    assert report_text.wrote_json_line(5, "/tmp/a.json") == (
        "Successfully wrote 5 bytes of Json data to /tmp/a.json"
    )


def test_fortio_source_reports_socket_errors_without_kinds() -> None:
    hist = {
        "Count": 4,
        "Min": 0.001,
        "Max": 0.004,
        "Sum": 0.01,
        "Avg": 0.0025,
        "StdDev": 0.0011,
        "Data": [{"Start": 0.001, "End": 0.004, "Percent": 100, "Count": 4}],
    }
    d = {
        "RunType": "HTTP",
        "Labels": "",
        "StartTime": "2022-03-19T15:34:23.279389123-07:00",
        "RequestedQPS": "max",
        "RequestedDuration": "exactly 4 calls",
        "ActualDuration": 104035637,
        "NumThreads": 1,
        "Exactly": 4,
        "DurationHistogram": hist,
        "RetCodes": {"200": 3, "-1": 1},
        "URL": "http://localhost:8080/",
        "Sockets": [2],
    }
    lines = _render(RunResult.from_json(d), "Warning")
    assert "Errors: 1 socket errors (kinds not recorded)" in lines
    assert "Code  -1 : 1 (25.0 %)" in lines
