"""Synthetic but valid runs for the report tests and benchmark: RunResults built from EngineResults
filled through real Recorders and timeline Seconds, with an optional Envoy series in the exact shape
``loadgen.envoy.observer.EnvoyObserver.to_json`` writes."""

from __future__ import annotations

import datetime as dt
import random
from typing import Any

from loadgen.engine_api import EngineResult
from loadgen.options import LoadOptions
from loadgen.recorder import Second, timeline_index
from loadgen.results import RunResult

T0 = 1_700_000_000.0


def make_run(
    *,
    labels: str,
    seconds: int = 10,
    rps: int = 50,
    p503: float = 0.0,
    p_over: float = 1.0,
    shed_from: int = 0,
    envoy_lag_s: float | None = None,
    scrape_every: float = 1.0,
    start: float = T0,
    seed: int = 1,
    policy: str = "",
    url: str = "http://127.0.0.1:9/x",
    connections: int = 4,
    qps: float = 0.0,
) -> RunResult:
    """``seconds`` seconds of ``rps`` requests; from second ``shed_from`` a ``p503`` share are 503s, a
    ``p_over`` share of those with x-envoy-overloaded. With ``envoy_lag_s`` an Envoy series is added whose
    pending-overflow counter starts rising ``envoy_lag_s`` after the client's first overloaded second."""
    rng = random.Random(seed)
    er = EngineResult()
    er.start_wall = start
    er.elapsed_ns = seconds * 1_000_000_000
    ov_by_sec: list[int] = []
    for t in range(seconds):
        s = Second(t=t)
        ov_here = 0
        for _ in range(rps):
            lat_ns = int(rng.lognormvariate(14.0, 0.8))
            svc_ns = max(1000, lat_ns // 2)
            code = 503 if t >= shed_from and rng.random() < p503 else 200
            over = code == 503 and rng.random() < p_over
            er.latency.record(lat_ns)
            er.service.record(svc_ns)
            er.codes[code] = er.codes.get(code, 0) + 1
            if over:
                er.overloaded[503] = er.overloaded.get(503, 0) + 1
                ov_here += 1
            s.requests += 1
            s.overloaded += int(over)
            s.codes[code] = s.codes.get(code, 0) + 1
            s.latency[timeline_index(lat_ns // 1000)] += 1
        er.timeline.append(s)
        ov_by_sec.append(ov_here)
    er.calls_done = [sum(er.codes.values())]
    opts = LoadOptions(url=url, connections=connections, qps=qps, duration_s=float(seconds))
    envoy = None
    if envoy_lag_s is not None:
        envoy = envoy_block(ov_by_sec, start, envoy_lag_s, scrape_every, seconds)
    extra = {"Policy": policy} if policy else {}
    return RunResult.build(
        er,
        opts,
        start_time=dt.datetime.fromtimestamp(start, dt.timezone.utc),
        labels=labels,
        engine="synthetic",
        num_threads=connections,
        envoy=envoy,
        extra=extra,
    )


def envoy_block(ov_by_sec: list[int], start: float, lag: float, every: float, seconds: int) -> dict[str, Any]:
    """Loadgen.Envoy whose overflow counter follows the client's overloaded 503s ``lag`` later."""
    first = next((i for i, v in enumerate(ov_by_sec) if v), None)
    total = sum(ov_by_sec)
    series = []
    n = int(seconds / every) + 2
    for k in range(n):
        wall = start + k * every
        if first is None:
            val = 0
        else:
            # everything the client saw up to (wall - lag), with the first overflow exactly at first + lag
            shifted = wall - lag
            val = sum(v for i, v in enumerate(ov_by_sec) if start + i <= shifted)
        phase = "before" if k == 0 else ("after" if k == n - 1 else "tick")
        if k == n - 1:
            val = total
        series.append(
            {
                "T": round(k * every, 3),
                "Wall": wall,
                "Phase": phase,
                "Ms": 1.0,
                "Clusters": {
                    "svc": {
                        "upstream_rq_pending_overflow": val,
                        "upstream_rq_active_overflow": 0,
                        "upstream_rq_503": val,
                        "upstream_cx_overflow": 0,
                        "upstream_rq_retry_overflow": 0,
                    }
                },
                "Http": {},
            }
        )
    return {
        "Admin": "http://127.0.0.1:1",
        "ClusterRegex": "",
        "Series": series,
        "Deltas": {
            "svc": {
                "upstream_rq_pending_overflow": total,
                "upstream_rq_active_overflow": 0,
                "upstream_rq_503": total,
                "upstream_cx_overflow": 0,
                "upstream_rq_retry_overflow": 0,
            }
        },
        "HttpDeltas": {},
        "Verdict": {},
    }
