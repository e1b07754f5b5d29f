"""Against a real Envoy 1.40 in front of httpbin (gunicorn), all on 127.0.0.1, bounded loads."""

from __future__ import annotations

import io
import json
import os
import socket
import statistics
import time
from collections.abc import Callable
from types import SimpleNamespace

import pytest
from envoy_fixtures import EnvoyProcess, Httpbin, drive, render

from loadgen.envoy.admin import AdminClient, parse_admin_url
from loadgen.envoy.cli import stats_main
from loadgen.envoy.observer import EnvoyObserver
from loadgen.errors import EnvoyAdminError, UsageError

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
V1 = "outbound|8000|v1|httpbin.default.svc.cluster.local"

Factory = Callable[..., EnvoyProcess]


def _after(ob: EnvoyObserver, codes: dict[int, int], overloaded: dict[int, int]) -> None:
    """What the runner does after the engine returned: a RunResult with .engine_result.codes/.overloaded."""
    ob.after(SimpleNamespace(engine_result=SimpleNamespace(codes=codes, overloaded=overloaded)))


def _cfg(name: str, hb: Httpbin) -> str:
    with open(os.path.join(DATA, f"{name}.yaml.tmpl")) as fh:
        return render(fh.read(), UPSTREAM_PORT=hb.port)


@pytest.fixture
def cb_envoy(envoy_factory: Factory, httpbin: Httpbin) -> EnvoyProcess:
    return envoy_factory(_cfg("cb", httpbin), name="cb")


def test_lab_circuit_breaker_reconciles_exactly_three_times(cb_envoy: EnvoyProcess) -> None:
    url = f"http://127.0.0.1:{cb_envoy.port('ingress')}/get"
    seen = []
    for _ in range(3):
        ob = EnvoyObserver(cb_envoy.admin_url, cluster_regex="^httpbin$", interval_s=0.05)
        ob.before()
        d = drive(url, 30, 3)
        ob.tick()
        # what the runner passes: a RunResult with .engine_result.codes/.overloaded
        ob.after(SimpleNamespace(engine_result=SimpleNamespace(codes=d.codes, overloaded=d.overloaded)))
        v = ob.verdict
        assert v is not None
        assert sum(d.codes.values()) == 30 and -1 not in d.codes, d.errors
        assert set(d.codes) <= {200, 503}
        assert d.overloaded.get(503, 0) == d.codes.get(503, 0)  # every overflow 503 carries the header
        assert v.client_503_overloaded == v.pending_overflow + v.active_overflow
        assert ob.deltas["httpbin"]["upstream_rq_pending_overflow"] == v.pending_overflow
        assert ob.deltas["httpbin"].get("upstream_rq_total", 0) == d.codes.get(200, 0)
        assert v.status == "exact", v.sentence
        seen.append(v.client_503)
        j = ob.to_json()
        assert set(j) >= {"Admin", "Deltas", "Series", "Verdict"}
        assert [e["Phase"] for e in j["Series"]] == ["before", "tick", "after"]
        assert j["Verdict"]["Status"] == "exact"
        json.dumps(j)
    print(f"\n503s per repetition (n=30, c=3): {seen}")
    assert sum(seen) > 0  # c=3 against max_pending 1 must overflow at least once in 90 requests


def test_fault_aborts_and_upstream_503s_are_told_apart(cb_envoy: EnvoyProcess) -> None:
    port = cb_envoy.port("ingress")
    ob = EnvoyObserver(cb_envoy.admin_url, cluster_regex="httpbin")
    ob.before()
    # fault filter: 503, no header, never reaches the cluster
    a = drive(f"http://127.0.0.1:{port}/abort/get", 3, 1)
    b = drive(f"http://127.0.0.1:{port}/status/503", 2, 1)  # httpbin's own 503
    codes = {503: a.codes.get(503, 0) + b.codes.get(503, 0)}
    _after(ob, codes, {})
    v = ob.verdict
    assert v is not None
    assert codes[503] == 5 and not a.overloaded and not b.overloaded
    assert v.aborts_injected == 3 and v.rejections == 0 and v.router_503_not_overflow == 2
    assert v.status == "exact", v.sentence
    assert "fault abort (fault.aborts_injected +3)" in v.sentence and "upstream returned 503" in v.sentence
    out = io.StringIO()
    ob.render_text(out)
    text = out.getvalue()
    assert text.startswith("Circuit breaker (Envoy admin http://127.0.0.1:")
    assert "httpbin: " in text and "upstream_rq_503 +2" in text
    assert "http ingress_http: fault.aborts_injected +3" in text
    assert "Verdict (exact)" in text


def test_snapshot_cost(cb_envoy: EnvoyProcess) -> None:
    with AdminClient(cb_envoy.admin_url) as c:
        c.snapshot()  # warm the connection
        ms = []
        for _ in range(30):
            t = time.perf_counter()
            s = c.snapshot()
            ms.append((time.perf_counter() - t) * 1000)
        full = []
        for _ in range(10):
            t = time.perf_counter()
            c.snapshot(filter=None)
            full.append((time.perf_counter() - t) * 1000)
    med = statistics.median(ms)
    print(
        f"\nsnapshot (filtered json): median {med:.2f} ms, max {max(ms):.2f} ms; "
        f"unfiltered: median {statistics.median(full):.2f} ms"
    )
    assert "httpbin" in s.clusters and "upstream_rq_pending_overflow" in s.clusters["httpbin"]
    assert med < 500  # target is < 20 ms; generous bound for a noisy shared machine


def test_observer_survives_the_admin_going_away(envoy_factory: Factory, httpbin: Httpbin) -> None:
    e = envoy_factory(_cfg("cb", httpbin), name="gone")
    url = f"http://127.0.0.1:{e.port('ingress')}/get"
    ob = EnvoyObserver(e.admin_url, interval_s=0.01, timeout_s=0.5)
    ob.before()
    d = drive(url, 10, 3)
    time.sleep(0.02)
    ob.tick()
    e.stop()  # Envoy (and its admin) gone mid-run
    time.sleep(0.02)
    ob.tick()  # must not raise
    ob.after(SimpleNamespace(engine_result=SimpleNamespace(codes=d.codes, overloaded=d.overloaded)))
    series = ob.series
    assert [x.get("Missing", False) for x in series] == [False, False, True, True]
    assert e.admin_url.split("//")[1] in series[2]["Error"]  # the error names the admin URL
    v = ob.verdict
    assert v is not None and v.status != "exact" and "final snapshot failed" in v.reason
    # the deltas still cover before → last good snapshot, which was after the load
    assert v.client_503_overloaded == v.rejections
    out = io.StringIO()
    ob.render_text(out)
    assert "2 of 4 snapshots failed" in out.getvalue()


def test_observer_before_fails_clearly_when_admin_is_down() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: connection refused
        ob = EnvoyObserver(f"http://127.0.0.1:{port}", timeout_s=0.5)
        with pytest.raises(EnvoyAdminError) as info:
            ob.before()
        assert str(info.value) == (
            f"cannot read Envoy stats before the run: cannot reach Envoy admin http://127.0.0.1:{port} "
            "(/stats): connection refused"
        )


def test_admin_client_endpoints_and_errors(cb_envoy: EnvoyProcess) -> None:
    with AdminClient(cb_envoy.admin_url) as c:
        assert c.ready()
        assert c.version().startswith("1.4")
        assert c.server_info()["state"] == "LIVE"
        assert "configs" in c.config_dump()
        text = c.get_stats_text(filter=r"^cluster\.httpbin\.upstream_rq_pending_overflow$")
        assert text.startswith("cluster.httpbin.upstream_rq_pending_overflow: ")
        assert "envoy_cluster_upstream_rq_pending_overflow" in c.get_prometheus(filter="pending_overflow")
        assert any(x.get("name") == "cluster.httpbin.membership_total" for x in c.get_stats_json()["stats"])
        with pytest.raises(EnvoyAdminError, match=r"/nope.*HTTP 404"):
            c.get("/nope")
    for bad in ("http://10.0.0.1:15000", "ftp://127.0.0.1:1", "127.0.0.1", "http://127.0.0.1:x"):
        with pytest.raises(UsageError):
            parse_admin_url(bad)
    assert parse_admin_url("localhost:15000")[2] == "http://localhost:15000"


def test_istio_names_live_and_stats_cli(envoy_factory: Factory, httpbin: Httpbin) -> None:
    e = envoy_factory(_cfg("istio", httpbin), name="istio")
    port = e.port("0.0.0.0_8000")
    ob = EnvoyObserver(e.admin_url, cluster_regex=r"\|v1\|")
    ob.before()
    d = drive(f"http://127.0.0.1:{port}/v1/get", 30, 3)
    _after(ob, d.codes, d.overloaded)
    v = ob.verdict
    assert v is not None
    assert list(ob.deltas) == [V1]
    assert v.status == "exact", v.sentence
    assert v.pending_overflow == d.overloaded.get(503, 0)
    out, err = io.StringIO(), io.StringIO()
    assert stats_main([e.admin_url, "-cluster", r"\|v1\|"], out, err) == 0, err.getvalue()
    lines = out.getvalue().splitlines()
    assert lines[0] == f"cluster {V1}"
    row = next(x for x in lines if x.split()[:1] == ["upstream_rq_pending_overflow"])
    assert int(row.split()[1]) >= v.pending_overflow
    out = io.StringIO()
    assert stats_main([e.admin_url, "-format", "json"], out, err) == 0
    j = json.loads(out.getvalue())
    assert sorted(j["Clusters"]) == sorted([V1, V1.replace("v1", "v2"), V1.replace("|v1|", "||")])
    assert "fault.aborts_injected" in j["Http"]["outbound_0.0.0.0_8000"]
    assert stats_main([e.admin_url, "-format", "xml"], io.StringIO(), err) == 2
    assert stats_main([e.admin_url, "-cluster", "("], io.StringIO(), err) == 2
