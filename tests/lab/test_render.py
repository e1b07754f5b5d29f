"""LabSpec → Envoy bootstrap: each translated field checked in the dict; real Envoy validates, routes it."""

from __future__ import annotations

import http.server
import itertools
import os
import shutil
import subprocess
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml
from istio_yaml import destination_rule

from loadgen.lab.istio import load, loads
from loadgen.lab.model import LabSpec
from loadgen.lab.render import MAX_U32, PREVIOUS_HOSTS, Ports, render, render_yaml

DATA = Path(__file__).parent / "data"
SCENARIOS = Path(__file__).resolve().parents[2] / "loadgen" / "lab" / "scenarios"
H = "httpbin.default.svc.cluster.local"
DEFAULT_RETRY = {
    "retry_on": "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes",
    "num_retries": 2,
    "retry_host_predicate": [PREVIOUS_HOSTS],
    "host_selection_retry_max_attempts": 5,
}


def ports_for(spec: LabSpec, base: int = 20000) -> Ports:
    """Fake but distinct ports: every service a listener, every (host, subset) one endpoint."""
    counter = itertools.count(base)
    listeners = {s.host: next(counter) for s in spec.services}
    upstreams: dict[tuple[str, str], tuple[tuple[str, int], ...]] = {}
    for s in spec.services:
        eps = []
        for v in s.versions():
            ep = ("127.0.0.1", next(counter))
            eps.append(ep)
            if v and v in {x.name for x in s.subsets}:
                upstreams[(s.host, v)] = (ep,)
        upstreams[(s.host, "")] = tuple(eps)
    return Ports(admin=base - 1, listeners=listeners, upstreams=upstreams)


def boot(text: str, **kw: Any) -> dict[str, Any]:
    spec = loads(text)
    return render(spec, ports_for(spec), **kw)


def clusters(b: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in b["static_resources"]["clusters"]}


def vhost(b: dict[str, Any], host: str = H, listener: int = 0) -> dict[str, Any]:
    hcm = b["static_resources"]["listeners"][listener]["filter_chains"][0]["filters"][0]["typed_config"]
    return next(v for v in hcm["route_config"]["virtual_hosts"] if v["name"].startswith(host + ":"))


def routes(b: dict[str, Any], host: str = H) -> list[dict[str, Any]]:
    return list(vhost(b, host)["routes"])


DR = destination_rule("httpbin", "v1", "v2")


def with_vs(http: str) -> str:
    return (
        DR + "---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: httpbin}\n"
        "spec:\n  hosts: [httpbin]\n  http:\n" + http
    )


# --------------------------------------------------------------------------- bootstrap shape


def test_listener_admin_hcm_filters_domains_and_access_log(tmp_path: Path) -> None:
    spec = loads(DR)
    ports = ports_for(spec)
    b = render(spec, ports, access_log_dir=str(tmp_path))
    assert b["admin"]["address"]["socket_address"] == {"address": "127.0.0.1", "port_value": ports.admin}
    (lst,) = b["static_resources"]["listeners"]
    assert lst["address"]["socket_address"] == {"address": "127.0.0.1", "port_value": ports.listeners[H]}
    hcm = lst["filter_chains"][0]["filters"][0]["typed_config"]
    assert hcm["stat_prefix"] == "outbound_0.0.0.0_8000;"
    assert [f["name"] for f in hcm["http_filters"]] == [
        "envoy.filters.http.fault",
        "envoy.filters.http.router",
    ]
    assert set(hcm["http_filters"][0]["typed_config"]) == {"@type"}  # empty: config per route
    assert hcm["access_log"][0]["typed_config"]["path"] == str(tmp_path / "envoy-access.log")
    domains = vhost(b)["domains"]
    assert domains == [
        "httpbin",
        "httpbin:8000",
        "httpbin.default",
        "httpbin.default:8000",
        "httpbin.default.svc",
        "httpbin.default.svc:8000",
        H,
        f"{H}:8000",
        "*",
    ]
    assert (
        "access_log"
        not in render(spec, ports)["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0][
            "typed_config"
        ]
    )


def test_every_listener_knows_every_service_but_wildcard_only_its_own() -> None:
    spec = load([str(SCENARIOS / "routing-v1.yaml")])
    b = render(spec, ports_for(spec))
    for i, svc in enumerate(spec.services):
        hcm = b["static_resources"]["listeners"][i]["filter_chains"][0]["filters"][0]["typed_config"]
        vhs = hcm["route_config"]["virtual_hosts"]
        assert len(vhs) == 3
        assert [v["name"] for v in vhs if "*" in v["domains"]] == [f"{svc.host}:8000"]


def test_stat_name_modes() -> None:
    modern = boot(DR)
    legacy = boot(DR, istio_stat_names="legacy")
    assert clusters(modern)[f"outbound|8000|v1|{H}"]["alt_stat_name"] == f"outbound|8000|v1|{H};"
    assert "alt_stat_name" not in clusters(legacy)[f"outbound|8000|v1|{H}"]
    hcm = legacy["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    assert hcm["stat_prefix"] == "outbound_0.0.0.0_8000"
    with pytest.raises(ValueError, match="istio_stat_names"):
        boot(DR, istio_stat_names="new")


def test_missing_ports_entries_are_value_errors() -> None:
    spec = loads(DR)
    with pytest.raises(ValueError, match=r"no entry for \('httpbin.default.svc.cluster.local', 'v2'\)"):
        render(spec, Ports(1, {H: 2}, {(H, ""): (), (H, "v1"): ()}))
    with pytest.raises(ValueError, match=r"Ports\.listeners has no port"):
        render(spec, Ports(1, {}, {}))


# --------------------------------------------------------------------------- clusters


def test_clusters_defaults_as_istio() -> None:
    cs = clusters(boot(DR))
    assert list(cs) == [f"outbound|8000||{H}", f"outbound|8000|v1|{H}", f"outbound|8000|v2|{H}"]
    c = cs[f"outbound|8000||{H}"]
    assert c["type"] == "STATIC" and c["connect_timeout"] == "10s" and c["lb_policy"] == "LEAST_REQUEST"
    assert c["circuit_breakers"]["thresholds"] == [
        {
            "max_connections": MAX_U32,
            "max_pending_requests": MAX_U32,
            "max_requests": MAX_U32,
            "max_retries": MAX_U32,
            "track_remaining": True,
        }
    ]
    opts = c["typed_extension_protocol_options"]["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
    assert "common_http_protocol_options" not in opts
    assert "outlier_detection" not in c and "common_lb_config" not in c
    eps = [
        e["endpoint"]["address"]["socket_address"]["port_value"]
        for e in c["load_assignment"]["endpoints"][0]["lb_endpoints"]
    ]
    assert len(eps) == 2 and eps[0] != eps[1]


def test_circuit_breaker_lab_dr() -> None:
    spec = load([str(DATA / "lab_circuit_breaker.yaml")])
    (c,) = render(spec, ports_for(spec))["static_resources"]["clusters"]
    assert c["circuit_breakers"]["thresholds"][0] == {
        "max_connections": 1,
        "max_pending_requests": 1,
        "max_requests": MAX_U32,
        "max_retries": MAX_U32,
        "track_remaining": True,
    }
    opts = c["typed_extension_protocol_options"]["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
    assert opts["common_http_protocol_options"] == {"max_requests_per_connection": 1}
    assert opts["explicit_http_config"] == {"http_protocol_options": {}}
    # legacy consecutiveErrors: ignored, so no consecutive_5xx (Envoy's default 5 applies), as in Istio >= 1.7
    assert c["outlier_detection"] == {
        "enforcing_success_rate": 0,
        "interval": "1s",
        "base_ejection_time": "180s",
        "max_ejection_percent": 100,
    }
    assert c["common_lb_config"] == {"healthy_panic_threshold": {"value": 0.0}}


def test_connection_pool_fields() -> None:
    text = DR.replace(
        "  subsets:",
        """\
  trafficPolicy:
    connectionPool:
      tcp: {maxConnections: 7, connectTimeout: 250ms, maxConnectionDuration: 1h, idleTimeout: 5m,
            tcpKeepalive: {probes: 3, time: 10s, interval: 2s}}
      http: {http1MaxPendingRequests: 0, http2MaxRequests: 9, maxRequestsPerConnection: 4, maxRetries: 2,
             idleTimeout: 30s}
  subsets:""",
    )
    c = clusters(boot(text))[f"outbound|8000||{H}"]
    assert c["connect_timeout"] == "0.25s"
    assert c["circuit_breakers"]["thresholds"][0] == {
        "max_connections": 7,
        "max_pending_requests": MAX_U32,
        "max_requests": 9,
        "max_retries": 2,
        "track_remaining": True,
    }
    common = c["typed_extension_protocol_options"]["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"][
        "common_http_protocol_options"
    ]
    assert common == {
        "idle_timeout": "30s",
        "max_requests_per_connection": 4,
        "max_connection_duration": "3600s",
    }
    assert c["upstream_connection_options"] == {
        "tcp_keepalive": {"keepalive_probes": 3, "keepalive_time": 10, "keepalive_interval": 2}
    }
    tcp_idle = boot(text.replace("             idleTimeout: 30s}", "             }"))
    common2 = clusters(tcp_idle)[f"outbound|8000||{H}"]["typed_extension_protocol_options"][
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
    ]["common_http_protocol_options"]
    assert common2["idle_timeout"] == "300s"  # tcp.idleTimeout when http.idleTimeout is unset


def test_outlier_detection_mapping() -> None:
    text = DR.replace(
        "  subsets:",
        """\
  trafficPolicy:
    outlierDetection: {consecutive5xxErrors: 0, consecutiveGatewayErrors: 3, interval: 500ms,
                       baseEjectionTime: 30s, maxEjectionPercent: 0, minHealthPercent: 25}
  subsets:""",
    )
    c = clusters(boot(text))[f"outbound|8000||{H}"]
    assert c["outlier_detection"] == {
        "enforcing_success_rate": 0,
        "consecutive_5xx": 0,
        "enforcing_consecutive_5xx": 0,
        "consecutive_gateway_failure": 3,
        "enforcing_consecutive_gateway_failure": 100,
        "interval": "0.5s",
        "base_ejection_time": "30s",
    }
    assert c["common_lb_config"] == {"healthy_panic_threshold": {"value": 25.0}}
    c5 = clusters(boot(text.replace("consecutive5xxErrors: 0", "consecutive5xxErrors: 2")))[
        f"outbound|8000||{H}"
    ]
    assert (
        c5["outlier_detection"]["consecutive_5xx"],
        c5["outlier_detection"]["enforcing_consecutive_5xx"],
    ) == (2, 100)


def test_load_balancer_and_subset_merge_and_port_level() -> None:
    text = """\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: httpbin}
spec:
  host: httpbin
  trafficPolicy:
    loadBalancer: {simple: ROUND_ROBIN}
    connectionPool: {tcp: {maxConnections: 5}}
    outlierDetection: {consecutive5xxErrors: 1}
  subsets:
  - name: v1
    labels: {version: v1}
    trafficPolicy:
      connectionPool: {http: {http1MaxPendingRequests: 2}}
  - name: v2
    labels: {version: v2}
    trafficPolicy:
      loadBalancer: {simple: RANDOM}
      portLevelSettings:
      - port: {number: 8000}
        connectionPool: {tcp: {maxConnections: 9}}
"""
    cs = clusters(boot(text))
    top, v1, v2 = cs[f"outbound|8000||{H}"], cs[f"outbound|8000|v1|{H}"], cs[f"outbound|8000|v2|{H}"]
    assert (
        top["lb_policy"] == "ROUND_ROBIN" and top["circuit_breakers"]["thresholds"][0]["max_connections"] == 5
    )
    # subset connectionPool replaces the whole top-level connectionPool (Istio merges by component)
    assert v1["circuit_breakers"]["thresholds"][0]["max_connections"] == MAX_U32
    assert v1["circuit_breakers"]["thresholds"][0]["max_pending_requests"] == 2
    assert v1["lb_policy"] == "ROUND_ROBIN" and v1["outlier_detection"]["consecutive_5xx"] == 1
    # a matching port-level entry replaces everything, without inheritance
    assert v2["circuit_breakers"]["thresholds"][0]["max_connections"] == 9
    assert v2["lb_policy"] == "LEAST_REQUEST" and "outlier_detection" not in v2


# --------------------------------------------------------------------------- routes


def test_service_without_virtual_service_gets_istio_default_route() -> None:
    (r,) = routes(boot(DR))
    assert r == {
        "name": "default",
        "match": {"prefix": "/"},
        "route": {"cluster": f"outbound|8000||{H}", "timeout": "0s", "retry_policy": DEFAULT_RETRY},
    }


def test_matches_are_ored_in_order_and_translated() -> None:
    b = boot(
        with_vs("""\
  - name: jason
    match:
    - headers: {end-user: {exact: jason}, x-p: {prefix: ab}, x-r: {regex: "a.+"}, x-any: {regex: "*"}}
      uri: {exact: /get}
    - uri: {regex: "/status/5.."}
      method: {exact: POST}
      withoutHeaders: {x-skip: {}}
      queryParams: {debug: {exact: "1"}, trace: {}}
      ignoreUriCase: true
    route: [{destination: {host: httpbin, subset: v2}}]
  - route: [{destination: {host: httpbin, subset: v1}}]
""")
    )
    rs = routes(b)
    assert [r.get("name") for r in rs] == ["jason", "jason", None]
    assert rs[0]["match"] == {
        "path": "/get",
        "headers": [
            {"name": "end-user", "string_match": {"exact": "jason"}},
            {"name": "x-p", "string_match": {"prefix": "ab"}},
            {"name": "x-r", "string_match": {"safe_regex": {"regex": "a.+"}}},
            {"name": "x-any", "present_match": True},
        ],
    }
    assert rs[1]["match"] == {
        "safe_regex": {"regex": "/status/5.."},
        "case_sensitive": False,
        "headers": [
            {"name": ":method", "string_match": {"exact": "POST"}},
            {"name": "x-skip", "present_match": True, "invert_match": True},
        ],
        "query_parameters": [
            {"name": "debug", "string_match": {"exact": "1"}},
            {"name": "trace", "present_match": True},
        ],
    }
    assert rs[2]["match"] == {"prefix": "/"}
    assert (
        rs[0]["route"]["cluster"] == f"outbound|8000|v2|{H}"
        and rs[2]["route"]["cluster"] == f"outbound|8000|v1|{H}"
    )
    # no catch-all is appended after a VirtualService's routes (Istio: unmatched → 404)
    assert len(rs) == 3


def test_weighted_clusters_and_weight_zero_dropped() -> None:
    rs = routes(
        boot(
            with_vs("""\
  - route:
    - {destination: {host: httpbin, subset: v1}, weight: 80}
    - {destination: {host: httpbin, subset: v2}, weight: 20}
""")
        )
    )
    assert rs[0]["route"]["weighted_clusters"] == {
        "clusters": [
            {"name": f"outbound|8000|v1|{H}", "weight": 80},
            {"name": f"outbound|8000|v2|{H}", "weight": 20},
        ]
    }
    rs = routes(
        boot(
            with_vs("""\
  - route:
    - {destination: {host: httpbin, subset: v1}, weight: 100}
    - {destination: {host: httpbin, subset: v2}, weight: 0}
""")
        )
    )
    # Istio decides on the list as written: two entries stay weighted_clusters, weight 0 dropped
    assert rs[0]["route"]["weighted_clusters"] == {
        "clusters": [{"name": f"outbound|8000|v1|{H}", "weight": 100}]
    }
    assert "cluster" not in rs[0]["route"]


def test_fault_per_route() -> None:
    rs = routes(
        boot(
            with_vs("""\
  - fault:
      delay: {fixedDelay: 7s, percentage: {value: 12.5}}
      abort: {httpStatus: 503, percentage: {value: 100}}
    route: [{destination: {host: httpbin}}]
  - fault: {delay: {fixedDelay: 1.5s, percent: 40}, abort: {httpStatus: 500}}
    route: [{destination: {host: httpbin}}]
""")
        )
    )
    f0 = rs[0]["typed_per_filter_config"]["envoy.filters.http.fault"]
    assert f0 == {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault",
        "delay": {"fixed_delay": "7s", "percentage": {"numerator": 125000, "denominator": "MILLION"}},
        "abort": {"http_status": 503, "percentage": {"numerator": 1000000, "denominator": "MILLION"}},
    }
    f1 = rs[1]["typed_per_filter_config"]["envoy.filters.http.fault"]
    assert f1["delay"] == {"fixed_delay": "1.5s", "percentage": {"numerator": 40, "denominator": "HUNDRED"}}
    assert f1["abort"] == {"http_status": 500}  # percentage unset: Envoy reads 0 % (Istio's semantics)


def test_mirror_policies() -> None:
    rs = routes(
        boot(
            with_vs("""\
  - route: [{destination: {host: httpbin, subset: v1}}]
    mirror: {host: httpbin, subset: v2}
    mirrorPercentage: {value: 50}
  - route: [{destination: {host: httpbin, subset: v1}}]
    mirror: {host: httpbin, subset: v2}
  - route: [{destination: {host: httpbin, subset: v1}}]
    mirror: {host: httpbin, subset: v2}
    mirror_percent: 0
""")
        )
    )
    assert rs[0]["route"]["request_mirror_policies"] == [
        {
            "cluster": f"outbound|8000|v2|{H}",
            "runtime_fraction": {"default_value": {"numerator": 500000, "denominator": "MILLION"}},
            "trace_sampled": False,
            "disable_shadow_host_suffix_append": True,
        }
    ]
    assert rs[1]["route"]["request_mirror_policies"][0]["runtime_fraction"] == {
        "default_value": {"numerator": 100, "denominator": "HUNDRED"}
    }
    assert "request_mirror_policies" not in rs[2]["route"]


def test_timeout_and_retries() -> None:
    rs = routes(
        boot(
            with_vs("""\
  - route: [{destination: {host: httpbin}}]
  - route: [{destination: {host: httpbin}}]
    timeout: 3s
    retries: {attempts: 1, perTryTimeout: 500ms}
  - route: [{destination: {host: httpbin}}]
    retries: {attempts: 3, retryOn: "gateway-error,503,504", retryIgnorePreviousHosts: false, backoff: 50ms}
  - route: [{destination: {host: httpbin}}]
    retries: {attempts: 0}
""")
        )
    )
    assert rs[0]["route"]["timeout"] == "0s" and rs[0]["route"]["retry_policy"] == DEFAULT_RETRY
    assert rs[1]["route"]["timeout"] == "3s"
    assert rs[1]["route"]["retry_policy"] == {**DEFAULT_RETRY, "num_retries": 1, "per_try_timeout": "0.5s"}
    assert rs[2]["route"]["retry_policy"] == {
        "retry_on": "gateway-error,retriable-status-codes",
        "num_retries": 3,
        "host_selection_retry_max_attempts": 5,
        "retriable_status_codes": [503, 504],
        "retry_back_off": {"base_interval": "0.05s"},
    }
    assert "retry_policy" not in rs[3]["route"]


def test_render_yaml_round_trips_and_names_sources_and_warnings() -> None:
    spec = load([str(DATA / "lab_circuit_breaker.yaml")])
    text = render_yaml(spec, ports_for(spec))
    assert text.startswith("# Envoy bootstrap rendered by `loadgen lab`")
    assert f"# source: {DATA / 'lab_circuit_breaker.yaml'}" in text
    assert sum(line.startswith("# warning: ") for line in text.splitlines()) == 2
    assert yaml.safe_load(text) == render(spec, ports_for(spec))


# --------------------------------------------------------------------------- real Envoy validates


def _envoy() -> str | None:
    found = shutil.which("envoy")
    if found:
        return found
    venv = Path("/work/venv/bin/envoy")
    return str(venv) if os.access(venv, os.X_OK) else None


VALIDATE_CASES = {
    "lab-circuit-breaker": ["lab_circuit_breaker.yaml"],
    "lab-mirror": ["lab_mirror_default.yaml", "lab_mirror.yaml"],
    "lab-routing-jason": [
        "bookinfo_destination_rule_all.yaml",
        "bookinfo_virtual_service_all_v1.yaml",
        "lab_reviews_test_v2.yaml",
    ],
    "lab-80-20": [
        "bookinfo_destination_rule_all.yaml",
        "bookinfo_virtual_service_all_v1.yaml",
        "bookinfo_reviews_80_20.yaml",
    ],
    "lab-fault-delay": [
        "bookinfo_destination_rule_all.yaml",
        "lab_reviews_test_v2.yaml",
        "bookinfo_ratings_test_delay.yaml",
    ],
    "lab-fault-abort": ["bookinfo_destination_rule_all.yaml", "bookinfo_ratings_test_abort.yaml"],
    **{f"scenario-{p.stem}": [str(p)] for p in sorted(SCENARIOS.glob("*.yaml"))},
}

EVERYTHING = with_vs("""\
  - name: all-features
    match:
    - headers: {end-user: {exact: jason}, x-a: {prefix: p}, x-b: {regex: "b+"}, x-c: {regex: "*"}}
      uri: {prefix: /s}
      method: {exact: GET}
      withoutHeaders: {x-no: {}}
      queryParams: {q: {exact: "1"}, r: {regex: "[0-9]+"}}
      ignoreUriCase: true
      statPrefix: featured
    fault:
      delay: {fixedDelay: 1s, percentage: {value: 0.5}}
      abort: {httpStatus: 418, percentage: {value: 1}}
    route:
    - {destination: {host: httpbin, subset: v1}, weight: 60}
    - {destination: {host: httpbin, subset: v2}, weight: 40}
    mirror: {host: httpbin, subset: v2}
    mirror_percent: 5
    timeout: 2s
    retries: {attempts: 4, perTryTimeout: 300ms, retryOn: "5xx,reset,429", retryIgnorePreviousHosts: false,
              backoff: 25ms}
  - route: [{destination: {host: httpbin, subset: v1}}]
    retries: {attempts: 0}
""").replace(
    "  subsets:",
    """\
  trafficPolicy:
    loadBalancer: {simple: RANDOM}
    connectionPool:
      tcp: {maxConnections: 3, connectTimeout: 2s, maxConnectionDuration: 10m,
            tcpKeepalive: {probes: 2, time: 30s}}
      http: {http1MaxPendingRequests: 2, http2MaxRequests: 8, maxRequestsPerConnection: 1, maxRetries: 1,
             idleTimeout: 15s}
    outlierDetection: {consecutive5xxErrors: 2, consecutiveGatewayErrors: 1, interval: 2s,
                       baseEjectionTime: 1m,
                       maxEjectionPercent: 50, minHealthPercent: 10, splitExternalLocalOriginErrors: true,
                       consecutiveLocalOriginFailures: 3}
  subsets:""",
    1,
)


@pytest.mark.parametrize("mode", ["modern", "legacy"])
@pytest.mark.parametrize("case", [*VALIDATE_CASES, "everything"])
def test_real_envoy_validates(case: str, mode: str, tmp_path: Path) -> None:
    envoy = _envoy()
    if envoy is None:
        pytest.skip("envoy not installed (pip install 'loadgen[lab]')")
    if case == "everything":
        spec = loads(EVERYTHING, "everything.yaml")
    else:
        spec = load([f if os.path.isabs(f) else str(DATA / f) for f in VALIDATE_CASES[case]])
    cfg = tmp_path / "envoy.yaml"
    cfg.write_text(render_yaml(spec, ports_for(spec), access_log_dir=str(tmp_path), istio_stat_names=mode))
    base_id = 40000 + (os.getpid() % 10000) * 10 + (abs(hash((case, mode))) % 10)
    proc = subprocess.run(
        [envoy, "--mode", "validate", "-c", str(cfg), "--base-id", str(base_id), "-l", "warning"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "OK" in proc.stdout + proc.stderr


# --------------------------------------------------------------------------- real Envoy, real traffic


class _Version(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = self.server.version.encode()  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_traffic_follows_the_rendered_routes(tmp_path: Path) -> None:
    """Header match → v2, others → v1, an abort route → its status; through a real Envoy on loopback."""
    if _envoy() is None:
        pytest.skip("envoy not installed (pip install 'loadgen[lab]')")
    from envoy_fixtures import EnvoyProcess

    servers = []
    try:
        for version in ("v1", "v2"):
            srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Version)
            srv.version = version  # type: ignore[attr-defined]
            threading.Thread(target=srv.serve_forever, daemon=True).start()
            servers.append(srv)
        spec = loads(
            with_vs("""\
  - match: [{uri: {prefix: /abort}}]
    fault: {abort: {httpStatus: 418, percentage: {value: 100}}}
    route: [{destination: {host: httpbin, subset: v1}}]
  - match: [{headers: {end-user: {exact: jason}}}]
    route: [{destination: {host: httpbin, subset: v2}}]
  - route: [{destination: {host: httpbin, subset: v1}}]
""")
        )
        eps = {v: ("127.0.0.1", s.server_address[1]) for v, s in zip(("v1", "v2"), servers, strict=True)}
        ports = Ports(
            0, {H: 0}, {(H, ""): tuple(eps.values()), (H, "v1"): (eps["v1"],), (H, "v2"): (eps["v2"],)}
        )
        envoy = EnvoyProcess(render_yaml(spec, ports, access_log_dir=str(tmp_path)), workdir=str(tmp_path))
        envoy.start()
        try:
            url = f"http://127.0.0.1:{envoy.port('outbound_httpbin.default_8000')}"

            def get(path: str, **headers: str) -> tuple[int, str]:
                req = urllib.request.Request(url + path, headers=headers)
                try:
                    with urllib.request.urlopen(req, timeout=5) as r:
                        return r.status, r.read().decode()
                except urllib.error.HTTPError as exc:
                    return exc.code, exc.read().decode()

            assert get("/x", **{"end-user": "jason"}) == (200, "v2")
            assert get("/x", **{"end-user": "bob"}) == (200, "v1")
            assert get("/x", Host="httpbin.default:8000", **{"end-user": "jason"}) == (200, "v2")
            assert get("/abort") == (418, "fault filter abort")
            with urllib.request.urlopen(envoy.admin_url + "/stats?filter=upstream_rq_total", timeout=5) as r:
                stats = r.read().decode()
            assert f"cluster.outbound|8000|v2|{H};.upstream_rq_total: 2" in stats
            assert f"cluster.outbound|8000|v1|{H};.upstream_rq_total: 1" in stats
        finally:
            envoy.stop()
    finally:
        for srv in servers:
            srv.shutdown()
            srv.server_close()
