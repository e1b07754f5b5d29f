"""RunResult: fortio's JSON field names/order/types, round trips, fortio files, redaction, merge, writing."""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import random
import re
from pathlib import Path

import pytest

from loadgen.engine_api import EngineResult
from loadgen.errors import UsageError
from loadgen.options import LoadOptions
from loadgen.recorder import Second, timeline_index
from loadgen.results import (
    RunResult,
    make_id,
    merge,
    read_json,
    requested_duration_str,
    requested_qps_str,
    rfc3339nano,
    write_json_atomic,
)

# fortio's HTTPRunnerResults in Go struct order (periodic.RunnerResults, RetCodes, IPCountMap,
# fhttp.HTTPOptions with TLSOptions first, then the HTTP result fields).
FORTIO_KEYS = [
    "RunType",
    "Labels",
    "StartTime",
    "RequestedQPS",
    "RequestedDuration",
    "ActualQPS",
    "ActualDuration",
    "NumThreads",
    "Version",
    "DurationHistogram",
    "ErrorsDurationHistogram",
    "Exactly",
    "Jitter",
    "Uniform",
    "NoCatchUp",
    "RunID",
    "AccessLoggerInfo",
    "ID",
    "RetCodes",
    "IPCountMap",
    "Insecure",
    "MTLS",
    "CACert",
    "Cert",
    "Key",
    "UnixDomainSocket",
    "URL",
    "NumConnections",
    "Compression",
    "DisableFastClient",
    "HTTP10",
    "H2",
    "DisableKeepAlive",
    "AllowHalfClose",
    "FollowRedirects",
    "Resolve",
    "HTTPReqTimeOut",
    "UserCredentials",
    "ContentType",
    "Payload",
    "MethodOverride",
    "LogErrors",
    "SequentialWarmup",
    "ConnReuseRange",
    "NoResolveEachConn",
    "Offset",
    "Resolution",
    "Sizes",
    "HeaderSizes",
    "Sockets",
    "SocketCount",
    "ConnectionStats",
    "AbortOn",
]
START = dt.datetime(2024, 3, 19, 15, 34, 23, 279389, tzinfo=dt.timezone(dt.timedelta(hours=-7)))


def make_result(
    seed: int = 1,
    n: int = 200,
    qps: float = 100.0,
    errors: int = 10,
    start_wall: float = 1.7e9,
    opts: LoadOptions | None = None,
    values: list[int] | None = None,
) -> RunResult:
    rnd = random.Random(seed)
    er = EngineResult()
    vals = values if values is not None else [int(rnd.lognormvariate(14.5, 0.8)) for _ in range(n)]
    tl: dict[int, Second] = {}
    for i, v in enumerate(vals):
        code = 503 if i < errors else 200
        er.service.record(v)
        er.latency.record(v + rnd.randint(0, 2_000_000))
        if code != 200:
            er.error_service.record(v)
            er.overloaded[503] = er.overloaded.get(503, 0) + 1
        er.codes[code] = er.codes.get(code, 0) + 1
        er.header_size.record(0 if code != 200 else 231)
        er.total_size.record(241 if code != 200 else 817)
        s = tl.setdefault(i % 3, Second(t=i % 3))
        s.requests += 1
        s.codes[code] = s.codes.get(code, 0) + 1
        s.latency[timeline_index(v // 1000)] += 1
    er.timeline = [tl[k] for k in sorted(tl)]
    er.sockets = [2, 3]
    er.calls_done = [len(vals) // 2, len(vals) - len(vals) // 2]
    for _ in range(5):
        er.connect_time.record(rnd.randint(50_000, 300_000))
    er.errors = {"timeout": 1}
    er.sleep_count, er.sleep_min, er.sleep_max = len(vals), -2_000_000, 9_000_000
    er.sleep_sum, er.sleep_sumsq, er.late = 4.0e8, 3.0e16, 3
    er.elapsed_ns = 2_000_000_000
    er.start_wall = start_wall
    o = opts or LoadOptions(
        url="http://127.0.0.1:8080/echo", connections=2, qps=qps, duration_s=2.0, labels="my run", runid=7
    )
    return RunResult.build(
        er, o, start_time=START, engine="py", resolved="127.0.0.1:8080", num_threads=2, warmup=2
    )


def test_json_field_names_order_and_types() -> None:
    d = make_result().to_json()
    assert list(d)[: len(FORTIO_KEYS)] == FORTIO_KEYS
    assert list(d)[len(FORTIO_KEYS) :] == ["Loadgen"]
    assert d["RunType"] == "HTTP"
    assert d["StartTime"] == "2024-03-19T15:34:23.279389-07:00"
    assert d["RequestedQPS"] == "100" and d["RequestedDuration"] == "2s"
    assert isinstance(d["ActualDuration"], int) and d["ActualDuration"] == 2_000_000_000
    assert d["ActualQPS"] == pytest.approx(100.0)
    assert isinstance(d["HTTPReqTimeOut"], int) and d["HTTPReqTimeOut"] == 3_000_000_000
    assert d["RetCodes"] == {"200": 190, "503": 10}
    assert d["IPCountMap"] == {"127.0.0.1:8080": 5}
    assert d["Sockets"] == [2, 3] and d["SocketCount"] == 5
    assert d["Payload"] is None and d["ConnReuseRange"] == [0, 0]
    assert d["ID"] == "2024-03-19-153423_7_my_run"
    hist_keys = ["Count", "Min", "Max", "Sum", "Avg", "StdDev", "Data", "Percentiles"]
    for k in ("DurationHistogram", "ErrorsDurationHistogram", "ConnectionStats"):
        assert list(d[k]) == hist_keys
        assert [p["Percentile"] for p in d[k]["Percentiles"]] == [50, 75, 90, 99, 99.9]
    for k in ("Sizes", "HeaderSizes"):
        assert list(d[k]) == hist_keys[:-1]  # fortio computes no percentiles for sizes (omitempty)
    dh = d["DurationHistogram"]
    assert dh["Count"] == 200 and dh["Data"][0]["Start"] == dh["Min"] and dh["Data"][-1]["End"] == dh["Max"]
    assert dh["Data"][-1]["Percent"] == 100
    assert sum(b["Count"] for b in dh["Data"]) == 200
    lg = d["Loadgen"]
    for k in (
        "Version",
        "Engine",
        "Hdr",
        "Latency",
        "Errors",
        "Overloaded",
        "Timeline",
        "Retries",
        "Abandoned",
        "Skipped",
        "Late",
        "Sleep",
        "Interrupted",
        "AbortedOn",
        "StartUnix",
        "Recorders",
    ):
        assert k in lg
    assert lg["Overloaded"] == {"503": 10} and lg["Errors"] == {"timeout": 1}
    assert lg["Latency"]["Count"] == 200 and len(lg["Latency"]["Percentiles"]) == 5
    assert lg["Hdr"]["Latency"] and lg["Hdr"]["ServiceTime"]
    json.dumps(d, allow_nan=False)


def test_empty_error_histogram_has_null_data() -> None:
    d = make_result(errors=0).to_json()
    assert d["ErrorsDurationHistogram"] == {
        "Count": 0,
        "Min": 0,
        "Max": 0,
        "Sum": 0,
        "Avg": 0,
        "StdDev": 0,
        "Data": None,
    }


def test_requested_strings() -> None:
    assert requested_qps_str(8) == "8"
    assert requested_qps_str(0) == "max" and requested_qps_str(-1) == "max"
    assert requested_qps_str(1 / 3) == "0.333333333"
    o = LoadOptions(url="http://x/")
    assert requested_duration_str(o, 10, False) == "5s"
    assert requested_duration_str(LoadOptions(url="x", duration_s=60), 1, False) == "1m0s"
    assert requested_duration_str(LoadOptions(url="x", exactly=100), 100, False) == "exactly 100 calls"
    assert requested_duration_str(LoadOptions(url="x", exactly=100), 42, True) == (
        "exactly 100 calls, interrupted after 42"
    )
    assert requested_duration_str(LoadOptions(url="x", duration_s=0), 5, False) == "until stop"
    assert requested_duration_str(o, 7, True) == "5s, interrupted after 7"


def test_id_rules() -> None:
    t = dt.datetime(2018, 3, 1, 4, 5, 6, tzinfo=dt.timezone.utc)
    assert make_id(t, 0, "") == "2018-03-01-040506"
    assert make_id(t, 12, "") == "2018-03-01-040506_12"
    assert make_id(t, 0, "http://a.b:8080/x?y , host-1") == "2018-03-01-040506_http_a_b_8080_x_y_host_1"
    assert make_id(t, 0, "--ok--") == "2018-03-01-040506_ok"
    long = make_id(t, 0, "a" * 200)
    assert len(long) == 96 and long.startswith("2018-03-01-040506_aaa")


def test_rfc3339nano() -> None:
    assert rfc3339nano(dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)) == "2024-01-02T03:04:05Z"
    ist = dt.timezone(dt.timedelta(hours=5, minutes=30))
    assert rfc3339nano(dt.datetime(2024, 1, 2, 3, 4, 5, 120000, tzinfo=ist)) == "2024-01-02T03:04:05.12+05:30"


def test_round_trip_is_lossless() -> None:
    rr = make_result()
    rr.envoy = {"cluster": "httpbin", "upstream_rq_pending_overflow": 21}
    rr.extra = {"note": "x"}
    d = rr.to_json()
    back = RunResult.from_json(json.loads(json.dumps(d)))
    assert back.to_json() == d
    er, er2 = rr.engine_result, back.engine_result
    assert er2.latency.count == er.latency.count and er2.latency.sumsq == er.latency.sumsq
    assert er2.latency.percentile(99) == er.latency.percentile(99)
    assert er2.timeline[1].latency == er.timeline[1].latency
    assert back.options == rr.options and back.id == rr.id and back.envoy == rr.envoy


def test_credentials_are_redacted() -> None:
    opts = LoadOptions(
        url="http://bob:s3cret@127.0.0.1:8080/",
        qps=0,
        exactly=10,
        headers=(
            ("Authorization", "Bearer tok123"),
            ("cookie", "sid=abc987"),
            ("Proxy-Authorization", "Basic zzz"),
            ("X-Trace", "keep-me"),
        ),
        extra={"user": "bob:pw42"},
    )
    d = make_result(opts=opts).to_json()
    text = json.dumps(d)
    for secret in ("tok123", "abc987", "zzz", "s3cret", "pw42"):
        assert secret not in text
    assert d["UserCredentials"] == "REDACTED"
    assert d["URL"] == "http://bob:REDACTED@127.0.0.1:8080/"
    assert d["Labels"].startswith("bob:REDACTED@127.0.0.1:8080/ , ")
    assert d["Loadgen"]["Options"]["extra"] == {"user": "REDACTED"}
    hdrs = dict(tuple(h) for h in d["Loadgen"]["Options"]["headers"])
    assert hdrs == {
        "Authorization": "REDACTED",
        "cookie": "REDACTED",
        "Proxy-Authorization": "REDACTED",
        "X-Trace": "keep-me",
    }


FORTIO_SAMPLE = {
    "RunType": "HTTP",
    "Labels": "",
    "StartTime": "2022-03-19T15:34:23.279389123-07:00",
    "RequestedQPS": "40",
    "RequestedDuration": "100ms",
    "ActualQPS": 38.44836361217263,
    "ActualDuration": 104035637,
    "NumThreads": 2,
    "Version": "X.Y.Z",
    "DurationHistogram": {
        "Count": 4,
        "Min": 0.00027292,
        "Max": 0.000930407,
        "Sum": 0.002332047,
        "Avg": 0.00058301175,
        "StdDev": 0.00028491034912527755,
        "Data": [{"Start": 0.00027292, "End": 0.000930407, "Percent": 100, "Count": 4}],
        "Percentiles": [
            {"Percentile": 50, "Value": 0.0004920823333333334},
            {"Percentile": 99.9, "Value": 0.0009295303506666667},
        ],
    },
    "ErrorsDurationHistogram": {
        "Count": 0,
        "Min": 0,
        "Max": 0,
        "Sum": 0,
        "Avg": 0,
        "StdDev": 0,
        "Data": None,
    },
    "Exactly": 0,
    "Jitter": False,
    "Uniform": False,
    "RunID": 7,
    "AccessLoggerInfo": "",
    "RetCodes": {"200": 4},
    "IPCountMap": {"10.96.108.76:80": 2},
    "URL": "http://localhost:8080",
    "NumConnections": 1,
    "Compression": False,
    "DisableFastClient": False,
    "HTTP10": False,
    "DisableKeepAlive": False,
    "AllowHalfClose": False,
    "Insecure": False,
    "FollowRedirects": False,
    "CACert": "",
    "Cert": "",
    "Key": "",
    "Resolve": "",
    "HTTPReqTimeOut": 3000000000,
    "UserCredentials": "",
    "ContentType": "",
    "Payload": "Zm9v",
    "UnixDomainSocket": "",
    "LogErrors": False,
    "SequentialWarmup": False,
    "Sizes": {
        "Count": 4,
        "Min": 118,
        "Max": 118,
        "Sum": 472,
        "Avg": 118,
        "StdDev": 0,
        "Data": [{"Start": 118, "End": 118, "Percent": 100, "Count": 4}],
        "Percentiles": None,
    },
    "HeaderSizes": {
        "Count": 4,
        "Min": 115,
        "Max": 115,
        "Sum": 460,
        "Avg": 115,
        "StdDev": 0,
        "Data": [{"Start": 115, "End": 115, "Percent": 100, "Count": 4}],
    },
    "Sockets": [1, 1],
    "SocketCount": 2,
    "AbortOn": 0,
}


def test_reads_fortio_json() -> None:
    rr = RunResult.from_json(FORTIO_SAMPLE)
    assert rr.source == "fortio"
    assert rr.engine_result.codes == {200: 4}
    assert rr.options.qps == 40 and rr.options.duration_s == pytest.approx(0.1)
    assert rr.options.payload == b"foo"
    assert rr.options.percentiles == (50.0, 99.9)
    assert rr.run_id == 7 and rr.num_threads == 2 and rr.warmup == 2
    assert rr.start_time.utcoffset() == dt.timedelta(hours=-7)
    d = rr.to_json()
    dh = d["DurationHistogram"]
    assert (dh["Count"], dh["Min"], dh["Max"]) == (4, 0.00027292, 0.000930407)
    assert dh["Sum"] == pytest.approx(0.002332047) and dh["StdDev"] == pytest.approx(0.00028491034912527755)
    assert dh["Percentiles"][0]["Value"] == pytest.approx(0.0004920823333333334, rel=1e-9)
    assert d["Sizes"]["Sum"] == 472 and d["HeaderSizes"]["Max"] == 115
    assert d["IPCountMap"] == {"10.96.108.76:80": 2}
    assert d["Loadgen"]["Source"] == "fortio"
    assert RunResult.from_json(json.loads(json.dumps(d))).to_json() == d


def test_rejects_non_results() -> None:
    with pytest.raises(UsageError):
        RunResult.from_json({"foo": 1})
    with pytest.raises(UsageError):
        RunResult.from_json({**FORTIO_SAMPLE, "RunType": "GRPC Health"})
    with pytest.raises(UsageError):
        RunResult.from_json({**FORTIO_SAMPLE, "StartTime": "yesterday"})


def test_merge_equals_recording_everything_once() -> None:
    rnd = random.Random(11)
    a_vals = [int(rnd.lognormvariate(14.0, 1.0)) for _ in range(300)]
    b_vals = [int(rnd.lognormvariate(15.0, 0.5)) for _ in range(200)]
    a = make_result(seed=1, values=a_vals, errors=5, start_wall=1000.0)
    b = make_result(seed=1, values=b_vals, errors=7, start_wall=1002.2)
    whole = make_result(seed=1, values=a_vals + b_vals, errors=0)
    m = merge([a, b])
    md, wd = m.to_json(), whole.to_json()
    for k in ("Count", "Min", "Max", "Data", "Percentiles"):
        assert md["DurationHistogram"][k] == wd["DurationHistogram"][k]
    assert md["DurationHistogram"]["Sum"] == pytest.approx(wd["DurationHistogram"]["Sum"], rel=1e-12)
    assert md["DurationHistogram"]["StdDev"] == pytest.approx(wd["DurationHistogram"]["StdDev"], rel=1e-9)
    assert md["RetCodes"] == {"200": 488, "503": 12}
    assert md["Sockets"] == [2, 3, 2, 3] and md["NumThreads"] == 4
    assert md["Loadgen"]["Overloaded"] == {"503": 12}
    # timelines aligned by start: b started 2.2 s later → its seconds shift by 2
    tl = m.engine_result.timeline
    assert [s.t for s in tl] == [0, 1, 2, 3, 4]
    assert tl[0].requests == 100 and tl[2].requests == 100 + 67
    assert m.engine_result.elapsed_ns == pytest.approx(4.2e9)
    with pytest.raises(UsageError):
        merge([])


def test_write_json_atomic(tmp_path: Path) -> None:
    d = make_result().to_json()
    p = tmp_path / "r.json"
    n = write_json_atomic(str(p), d)
    assert n == p.stat().st_size
    assert os.listdir(tmp_path) == ["r.json"]
    assert json.loads(p.read_text()) == json.loads(json.dumps(d))
    assert p.read_text().startswith('{\n  "RunType": "HTTP",\n')
    buf = io.StringIO()
    n2 = write_json_atomic("-", d, stdout=buf)
    assert n2 == len(buf.getvalue().encode()) and buf.getvalue().endswith("}\n")
    assert read_json(str(p)).to_json() == d
    with pytest.raises(UsageError):
        write_json_atomic(str(tmp_path / "missing" / "x.json"), d)
    with pytest.raises(UsageError):
        read_json(str(tmp_path / "nope.json"))


def test_default_labels_and_access_log() -> None:
    opts = LoadOptions(url="http://127.0.0.1:9/x", access_log_file="/tmp/a.log")
    rr = RunResult.build(EngineResult(), opts, start_time=START)
    assert re.fullmatch(r"127\.0\.0\.1:9/x , \S+", rr.labels)
    assert rr.to_json()["AccessLoggerInfo"] == "mode json to /tmp/a.log"
    assert rr.to_json()["DurationHistogram"]["Data"] is None
