"""The three stats parsers on captured real Envoy 1.40 output (tests/envoy/data, see capture.py)."""

from __future__ import annotations

import json
import os

import pytest

from loadgen.envoy import catalogue
from loadgen.envoy import stats as st

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
V1 = "outbound|8000|v1|httpbin.default.svc.cluster.local"
V2 = "outbound|8000|v2|httpbin.default.svc.cluster.local"
BARE = "outbound|8000||httpbin.default.svc.cluster.local"


def _read(name: str) -> str:
    with open(os.path.join(DATA, name)) as fh:
        return fh.read()


def snaps(name: str) -> tuple[st.Snapshot, st.Snapshot, st.Snapshot]:
    return (
        st.snapshot_from_text(_read(f"{name}.stats.txt")),
        st.snapshot_from_json(_read(f"{name}.stats.json")),
        st.snapshot_from_prometheus(_read(f"{name}.prometheus.txt")),
    )


def client(name: str) -> dict[str, dict[str, dict[str, int]]]:
    return json.loads(_read(f"{name}.client.json"))  # type: ignore[no-any-return]


EXPECTED_CLUSTERS = {
    "cb": ["httpbin"],
    "istio": [V1, V2, BARE],
    "dotted": [V1, V2],
}


@pytest.mark.parametrize("name", ["cb", "istio", "dotted"])
def test_three_formats_agree_on_every_cluster_stat(name: str) -> None:
    text, js, prom = snaps(name)
    assert sorted(text.clusters) == sorted(EXPECTED_CLUSTERS[name])
    assert js.clusters == text.clusters
    assert sorted(prom.clusters) == sorted(text.clusters)
    for c in text.clusters:
        # every stat (not only the catalogue), same names and values; Prometheus drops nothing
        assert prom.clusters[c] == text.clusters[c], c
        for s in catalogue.CLUSTER_CATALOGUE:
            assert text.get(c, s.name) == js.get(c, s.name) == prom.get(c, s.name), (c, s.name)
    # the fault stats live under the HCM prefix, in all three formats
    for p in text.http:
        if p == "admin":
            continue  # the admin's own counters moved between the three captures
        for s in catalogue.HTTP_CATALOGUE:
            assert text.get_http(p, s.name) == js.get_http(p, s.name) == prom.get_http(p, s.name), (p, s.name)


def test_cb_capture_matches_what_the_client_saw() -> None:
    text, _, _ = snaps("cb")
    cl = client("cb")
    ov = cl["/get"]["overloaded"].get("503", 0)
    assert ov == cl["/get"]["codes"].get("503", 0)
    rejections = text.get("httpbin", "upstream_rq_pending_overflow") + text.get(
        "httpbin", "upstream_rq_active_overflow"
    )
    assert rejections == ov
    # 503s counted by the cluster: the overflows plus the upstream's /status/503 (fault aborts never reach it)
    assert text.get("httpbin", "upstream_rq_503") == ov + cl["/status/503"]["codes"]["503"]
    assert text.get_http("ingress_http", "fault.aborts_injected") == cl["/abort/get"]["codes"]["503"]
    # track_remaining: true
    assert text.clusters["httpbin"]["circuit_breakers.default.remaining_pending"] == 1


def test_istio_names_split_on_the_semicolon_form() -> None:
    text, _, _ = snaps("istio")
    raw = _read("istio.stats.txt")
    assert f"cluster.{V1};.upstream_rq_pending_overflow: " in raw  # the real Istio >= 1.23 form
    cl = client("istio")
    assert text.get(V1, "upstream_rq_pending_overflow") == cl["/v1/get"]["overloaded"]["503"]
    assert text.get(BARE, "upstream_rq_pending_overflow") == cl["/get"]["overloaded"]["503"]
    assert text.get(V2, "upstream_rq_total") == cl["/v2/get"]["codes"]["200"]
    # stats named like "default.total_match_count" must not eat the ".default.svc" of the name
    assert text.clusters[V1]["default.total_match_count"] == 1
    assert "circuit_breakers.default.rq_pending_open" in text.clusters[V1]
    # the HCM prefix "outbound_0.0.0.0_8000;" (dots and ';') and its fault stats
    assert list(text.http) == ["outbound_0.0.0.0_8000"]
    assert text.get_http("outbound_0.0.0.0_8000", "fault.aborts_injected") == cl["/get"]["codes"]["418"]
    # Istio's matcher keeps no remaining_* (track_remaining false) and no listener stats
    assert not any(k.startswith("circuit_breakers.default.remaining") for k in text.clusters[V1])


def test_dotted_names_without_semicolon() -> None:
    text, _, prom = snaps("dotted")
    raw = _read("dotted.prometheus.txt")
    # Envoy's default tag regex cut the name at the first dot; the parser rebuilt it
    assert 'envoy_cluster_name="outbound|8000|v1|httpbin"' in raw
    cl = client("dotted")
    assert prom.get(V1, "upstream_rq_pending_overflow") == cl["/v1/get"]["overloaded"]["503"]
    assert text.get(V1, "upstream_rq_pending_overflow") == cl["/v1/get"]["overloaded"]["503"]
    assert text.get(V2, "upstream_rq_total") == 6


def test_split_without_anchor_uses_the_stat_catalogue() -> None:
    flat = {
        f"cluster.{V1}.upstream_rq_pending_overflow": 3,
        f"cluster.{V1}.circuit_breakers.default.rq_open": 1,
        f"cluster.{V1}.external.upstream_rq_503": 2,
        f"cluster.{V2};.upstream_rq_active_overflow": 4,
        "cluster.a.b.c.some_future_stat": 9,
        "http.outbound_0.0.0.0_8000;.fault.delays_injected": 5,
        "cluster_manager.active_clusters": 2,
        "server.uptime": 7,
    }
    s = st.snapshot_from_flat(flat)
    assert s.clusters[V1] == {
        "upstream_rq_pending_overflow": 3,
        "circuit_breakers.default.rq_open": 1,
        "external.upstream_rq_503": 2,
    }
    assert s.clusters[V2] == {"upstream_rq_active_overflow": 4}
    assert s.clusters["a"] == {"b.c.some_future_stat": 9}  # unknown: Envoy's own first-dot rule
    assert s.get_http("outbound_0.0.0.0_8000", "fault.delays_injected") == 5
    assert s.other == {"cluster_manager.active_clusters": 2, "server.uptime": 7}


def test_anchor_beats_catalogue_for_unknown_stats_of_dotted_clusters() -> None:
    flat = {f"cluster.{V1}.membership_total": 1, f"cluster.{V1}.brand_new.stat": 4}
    assert st.snapshot_from_flat(flat).clusters[V1] == {"membership_total": 1, "brand_new.stat": 4}


def test_delta_counters_gauges_and_missing_counters() -> None:
    b = st.snapshot_from_flat(
        {
            "cluster.x.membership_total": 1,
            "cluster.x.upstream_rq_pending_overflow": 2,
            "cluster.x.upstream_cx_active": 5,
            "cluster.y.membership_total": 1,
        },
        wall=1.0,
        mono=10.0,
    )
    a = st.snapshot_from_flat(
        {
            "cluster.x.membership_total": 1,
            "cluster.x.upstream_rq_pending_overflow": 9,
            "cluster.x.upstream_rq_503": 7,  # created during the run
            "cluster.x.upstream_cx_active": 1,
            "cluster.y.membership_total": 1,
        },
        wall=2.5,
        mono=11.5,
    )
    d = st.delta(b, a)
    assert d.get("x", "upstream_rq_pending_overflow") == 7
    assert d.get("x", "upstream_rq_503") == 7
    assert d.get("x", "upstream_cx_active") == 1  # gauge: the value after
    assert d.get("x", "upstream_rq_active_overflow") == 0  # never existed: 0
    assert d.seconds == pytest.approx(1.5)
    assert sorted(st.delta(b, a, "^y$").clusters) == ["y"]
    assert st.series([b, a], "x", "upstream_rq_pending_overflow") == [(0.0, 2), (1.5, 9)]


def test_catalogue_kinds_and_names() -> None:
    assert catalogue.kind_of("upstream_rq_pending_overflow") == "counter"
    assert catalogue.kind_of("circuit_breakers.high.rq_retry_open") == "gauge"
    assert catalogue.kind_of("upstream_rq_pending_active") == "gauge"
    assert catalogue.kind_of("fault.active_faults") == "gauge"
    assert catalogue.BY_NAME[("http", "fault.aborts_injected")].kind == "counter"
    # every catalogue cluster stat exists in real Envoy 1.40 output (cb has track_remaining and a 503)
    text = st.snapshot_from_text(_read("cb.stats.txt"))
    missing = [
        s.name
        for s in catalogue.CLUSTER_CATALOGUE
        if s.name not in text.clusters["httpbin"] and not s.name.startswith("outlier_detection.")
    ]
    assert missing == []
    istio = st.snapshot_from_text(_read("istio.stats.txt"))
    assert [
        s.name
        for s in catalogue.CLUSTER_CATALOGUE
        if s.name.startswith("outlier_detection.") and s.name not in istio.clusters[V1]
    ] == []


def test_bad_input_errors() -> None:
    with pytest.raises(st.StatsParseError, match="format=json"):
        st.parse_json("<html>nope</html>")
    with pytest.raises(st.StatsParseError, match="name: value"):
        st.parse_text("<html>\nnope\n</html>")
    with pytest.raises(st.StatsParseError):
        st.parse_prometheus("this is { not prometheus\n")
    from loadgen.errors import UsageError

    with pytest.raises(UsageError, match="invalid cluster regex"):
        st.compile_regex("outbound|(")
