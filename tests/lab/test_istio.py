"""Istio YAML → LabSpec: services, ports, subsets, semantics of unset fields, and every error message."""

from __future__ import annotations

from pathlib import Path

import pytest
from istio_yaml import destination_rule

from loadgen.errors import UsageError
from loadgen.lab.istio import load, loads, parse_duration
from loadgen.lab.model import Fraction

DATA = Path(__file__).parent / "data"
SCENARIOS = Path(__file__).resolve().parents[2] / "loadgen" / "lab" / "scenarios"
H = "httpbin.default.svc.cluster.local"

DR = destination_rule("reviews", "v1", "v2")


def vs(http: str, name: str = "reviews", hosts: str = "[reviews]") -> str:
    return (
        f"apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: {name}}}\n"
        f"spec:\n  hosts: {hosts}\n  http:\n{http}"
    )


def err(text: str, source: str = "lab.yaml") -> str:
    with pytest.raises(UsageError) as info:
        loads(text, source)
    return str(info.value)


# --------------------------------------------------------------------------- happy paths


def test_lab_circuit_breaker_dr_and_its_warnings() -> None:
    spec = load([str(DATA / "lab_circuit_breaker.yaml")])
    (svc,) = spec.services
    assert (svc.host, svc.short, svc.namespace, svc.port, svc.versions(), svc.replicas) == (
        H,
        "httpbin",
        "default",
        8000,
        ("",),
        1,
    )
    cp = spec.destination_rules[0].policy.connection_pool  # type: ignore[union-attr]
    assert cp is not None
    assert (cp.max_connections, cp.http1_max_pending_requests, cp.max_requests_per_connection) == (1, 1, 1)
    od = spec.destination_rules[0].policy.outlier_detection  # type: ignore[union-attr]
    assert od is not None and od.consecutive_5xx_errors is None  # legacy consecutiveErrors ignored
    assert od.base_ejection_time_ns == 180 * 10**9 and od.max_ejection_percent == 100
    src = str(DATA / "lab_circuit_breaker.yaml")
    assert spec.warnings == (
        f"{src}: document 1 (DestinationRule httpbin): trafficPolicy.tls: ignored (mesh-only: "
        "the lab's upstreams "
        "speak plain HTTP, no mTLS)",
        f"{src}: document 1 (DestinationRule httpbin): "
        "trafficPolicy.outlierDetection.consecutiveErrors: ignored, "
        "as Istio >= 1.7 ignores it (deprecated); use consecutive5xxErrors; with consecutive5xxErrors unset "
        "Envoy's default applies (eject after 5 consecutive 5xx)",
    )
    assert spec.cluster_name("httpbin") == f"outbound|8000||{H}"


def test_lab_mirror_with_legacy_mirror_percent_and_replacement_by_later_file() -> None:
    spec = load([str(DATA / "lab_mirror_default.yaml"), str(DATA / "lab_mirror.yaml")])
    (svc,) = spec.services
    assert svc.versions() == ("v1", "v2")
    assert spec.cluster_name(H, "v2") == f"outbound|8000|v2|{H}"
    (v,) = spec.virtual_services
    (route,) = v.http
    assert route.mirrors[0].destination.subset == "v2"
    assert route.mirrors[0].percentage == Fraction(100, "HUNDRED")
    assert any("replaces the VirtualService httpbin of" in w for w in spec.warnings)


def test_bookinfo_files_together_and_kubernetes_objects_skipped() -> None:
    files = [
        "bookinfo_destination_rule_all.yaml",
        "bookinfo_virtual_service_all_v1.yaml",
        "lab_reviews_test_v2.yaml",
        "bookinfo_ratings_test_delay.yaml",
        "lab_kubernetes.yaml",
    ]
    spec = load([str(DATA / f) for f in files])
    assert [s.short for s in spec.services] == [
        "productpage",
        "reviews",
        "ratings",
        "details",
    ]  # k8s: skipped
    reviews = spec.virtual_service("reviews.default.svc.cluster.local")
    assert reviews is not None and reviews.name == "reviews" and len(reviews.http) == 2
    assert reviews.http[0].matches[0].headers[0].name == "end-user"
    ratings = spec.virtual_service("ratings.default.svc.cluster.local")
    assert ratings is not None and ratings.http[0].fault is not None
    delay = ratings.http[0].fault.delay
    assert (
        delay is not None
        and delay.fixed_delay_ns == 7 * 10**9
        and delay.percentage == Fraction(100, "HUNDRED")
    )
    skipped = [w for w in spec.warnings if "skipped: Kubernetes objects" in w]
    assert len(skipped) == 2 and "document 2 (Service httpbin)" in skipped[1]


def test_abort_legacy_percent_is_read_with_a_warning() -> None:
    spec = load(
        [str(DATA / "bookinfo_destination_rule_all.yaml"), str(DATA / "bookinfo_ratings_test_abort.yaml")]
    )
    (v,) = spec.virtual_services
    abort = v.http[0].fault.abort  # type: ignore[union-attr]
    assert abort is not None and abort.http_status == 500 and abort.percentage == Fraction(100, "HUNDRED")
    assert any("fault.abort.percent: removed from Istio's API" in w for w in spec.warnings)


@pytest.mark.parametrize("name", sorted(p.name for p in SCENARIOS.glob("*.yaml")))
def test_every_shipped_scenario_parses_without_warnings(name: str) -> None:
    spec = load([str(SCENARIOS / name)])
    assert spec.services and spec.warnings == ()


def test_shipped_scenarios_are_the_ones_promised() -> None:
    assert {p.stem for p in SCENARIOS.glob("*.yaml")} == {
        "circuit-breaker",
        "routing-v1",
        "routing-jason",
        "routing-80-20",
        "fault-delay",
        "fault-abort",
        "mirror",
        "outlier",
    }
    outlier = load([str(SCENARIOS / "outlier.yaml")])
    assert outlier.services[0].replicas == 2


def test_unset_fault_percentage_means_no_injection_as_in_istio() -> None:
    spec = loads(
        DR
        + "---\n"
        + vs("""\
  - fault: {delay: {fixedDelay: 1s}, abort: {httpStatus: 503}}
    route: [{destination: {host: reviews, subset: v1}}]
""")
    )
    fault = spec.virtual_services[0].http[0].fault
    assert fault is not None and fault.delay is not None and fault.abort is not None
    assert fault.delay.percentage == Fraction(0, "HUNDRED")
    assert fault.abort.percentage is None
    assert sum("no percentage: as in Istio" in w for w in spec.warnings) == 2


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ("", Fraction(100, "HUNDRED")),
        ("    mirrorPercentage: {value: 12.5}\n", Fraction(125_000, "MILLION")),
        ("    mirror_percent: 30\n", Fraction(30, "HUNDRED")),
        ("    mirrorPercentage: {value: 0}\n", None),
        ("    mirror_percent: 0\n", None),
    ],
)
def test_mirror_percentages(extra: str, expected: Fraction | None) -> None:
    spec = loads(
        DR
        + "---\n"
        + vs(
            "  - route: [{destination: {host: reviews, subset: v1}}]\n"
            "    mirror: {host: reviews, subset: v2}\n" + extra
        )
    )
    mirrors = spec.virtual_services[0].http[0].mirrors
    assert (mirrors[0].percentage if mirrors else None) == expected


def test_ports_namespaces_and_topology(tmp_path: Path) -> None:
    topo = tmp_path / "topo.yaml"
    topo.write_text(
        "services:\n- {name: reviews, port: 9080, versions: [v1, v2, v3], replicas: 2}\n"
        "- {name: extra, namespace: shop}\n"
    )
    res = tmp_path / "res.yaml"
    res.write_text(
        DR
        + "---\n"
        + vs(
            "  - route: [{destination: {host: reviews, subset: v1}}]\n"
            "    mirror: {host: mirror.other.svc.cluster.local, port: {number: 7000}}\n"
        )
    )
    spec = load([str(res)], topology=str(topo))
    by = {s.short: s for s in spec.services}
    assert by["reviews"].port == 9080 and by["reviews"].replicas == 2
    assert by["reviews"].versions() == ("v1", "v2", "v3")  # v3: topology only, in the "" cluster
    assert by["extra"].host == "extra.shop.svc.cluster.local" and by["extra"].versions() == ("",)
    assert by["mirror"].namespace == "other" and by["mirror"].port == 7000
    route = spec.virtual_services[0].http[0]
    assert route.destinations[0].port == 9080 and route.mirrors[0].destination.port == 7000
    assert spec.cluster_name("reviews", "v1") == "outbound|9080|v1|reviews.default.svc.cluster.local"
    assert spec.sources == (str(topo), str(res))


def test_namespace_of_the_resource_resolves_short_names() -> None:
    spec = loads(DR.replace("metadata: {name: reviews}", "metadata: {name: reviews, namespace: shop}"))
    assert spec.services[0].host == "reviews.shop.svc.cluster.local"


@pytest.mark.parametrize(
    ("text", "ns"),
    [
        ("1s", 10**9),
        ("500ms", 5 * 10**8),
        ("1.5s", 15 * 10**8),
        ("1m", 60 * 10**9),
        ("1h30m", 5400 * 10**9),
        ("0", 0),
        ("250us", 250_000),
    ],
)
def test_parse_duration(text: str, ns: int) -> None:
    assert parse_duration(text) == ns


# --------------------------------------------------------------------------- errors, exact messages


def test_invalid_yaml_names_the_line() -> None:
    assert (
        err("apiVersion: v1\nkind: [unclosed\n")
        == "lab.yaml: invalid YAML at line 3, column 1: expected ',' or ']', but got '<stream end>'"
    )


def test_not_a_mapping() -> None:
    assert (
        err(DR + "---\n- a\n- b\n")
        == "lab.yaml: document 2: expected a mapping (a Kubernetes resource), got a list"
    )


def test_unknown_api_group_is_an_error_and_unsupported_istio_kind_a_warning() -> None:
    assert (
        err("apiVersion: example.com/v1\nkind: Thing\nmetadata: {name: x}\n")
        == "lab.yaml: document 1 (Thing x): apiVersion: unknown apiVersion 'example.com/v1' (the lab reads "
        "networking.istio.io/v1, v1beta1 and v1alpha3)"
    )
    spec = loads(
        "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: gw}\nspec: {}\n---\n" + DR
    )
    assert spec.warnings == (
        "<string>: document 1 (Gateway gw): skipped: Gateway is not modelled by the lab",
    )


def test_unsupported_api_version_and_unknown_kind() -> None:
    assert (
        err(DR.replace("networking.istio.io/v1", "networking.istio.io/v2"))
        == "lab.yaml: document 1 (DestinationRule reviews): apiVersion: unsupported version "
        "'networking.istio.io/v2' (use networking.istio.io/v1, v1beta1 or v1alpha3)"
    )
    assert (
        err(DR.replace("DestinationRule", "DestinationRules"))
        == "lab.yaml: document 1 (DestinationRules reviews): kind: unknown kind 'DestinationRules' "
        "in networking.istio.io"
    )


def test_missing_host() -> None:
    assert (
        err(DR.replace("  host: reviews\n", ""))
        == "lab.yaml: document 1 (DestinationRule reviews): host: missing host"
    )
    assert (
        err(vs("  - route: [{destination: {subset: v1}}]\n"))
        == "lab.yaml: document 1 (VirtualService reviews): http[0].route[0].destination.host: missing host"
    )


def test_route_to_undefined_subset() -> None:
    text = (
        DR
        + "---\n"
        + vs("""\
  - route:
    - {destination: {host: reviews, subset: v1}, weight: 50}
    - {destination: {host: reviews, subset: v3}, weight: 50}
""")
    )
    assert (
        err(text) == "lab.yaml: document 2 (VirtualService reviews): http[0].route[1].destination.subset: "
        "subset 'v3' is not defined in DestinationRule reviews (defined: v1, v2)"
    )
    assert (
        err(vs("  - route: [{destination: {host: reviews, subset: v1}}]\n"))
        == "lab.yaml: document 1 (VirtualService reviews): http[0].route[0].destination.subset: "
        "subset 'v1' is used "
        "but no DestinationRule defines subsets for reviews.default.svc.cluster.local"
    )


def test_weights_must_sum_to_100() -> None:
    text = (
        DR
        + "---\n"
        + vs("""\
  - route:
    - {destination: {host: reviews, subset: v1}, weight: 0}
    - {destination: {host: reviews, subset: v2}, weight: 0}
""")
    )
    assert (
        err(text)
        == "lab.yaml: document 2 (VirtualService reviews): http[0].route: weights sum to 0 (0 + 0): "
        "no destination would get traffic"
    )


@pytest.mark.parametrize(
    ("value", "msg"),
    [
        ("-1s", "negative duration '-1s'"),
        ("1x", "malformed duration '1x' (use e.g. '1s', '500ms', '1.5s', '1m', '1h')"),
        ("5", "malformed duration '5' (use e.g. '1s', '500ms', '1.5s', '1m', '1h')"),
        ("0.5ms", "'0.5ms' is too short (must be at least 1ms)"),
    ],
)
def test_bad_durations(value: str, msg: str) -> None:
    text = DR.replace(
        "  subsets:", f"  trafficPolicy:\n    outlierDetection: {{interval: '{value}'}}\n  subsets:"
    )
    assert (
        err(text)
        == f"lab.yaml: document 1 (DestinationRule reviews): trafficPolicy.outlierDetection.interval: {msg}"
    )


def test_duration_must_be_a_string() -> None:
    text = DR + "---\n" + vs("  - route: [{destination: {host: reviews}}]\n    timeout: 3\n")
    assert (
        err(text)
        == "lab.yaml: document 2 (VirtualService reviews): http[0].timeout: expected a duration string "
        "like '1s' or '500ms', got a number (3)"
    )


def test_percent_out_of_range() -> None:
    text = (
        DR
        + "---\n"
        + vs(
            "  - route: [{destination: {host: reviews}}]\n"
            "    fault: {abort: {httpStatus: 500, percentage: {value: 150}}}\n"
        )
    )
    assert (
        err(text) == "lab.yaml: document 2 (VirtualService reviews): http[0].fault.abort.percentage.value: "
        "percentage 150 is out of range (0..100)"
    )
    text = (
        DR
        + "---\n"
        + vs(
            "  - route: [{destination: {host: reviews}}]\n"
            "    fault: {delay: {fixedDelay: 1s, percent: 101}}\n"
        )
    )
    assert (
        err(text) == "lab.yaml: document 2 (VirtualService reviews): http[0].fault.delay.percent: "
        "101 is out of range (0..100)"
    )


def test_duplicate_destination_rule_for_one_host() -> None:
    assert (
        err(DR + "---\n" + DR.replace("name: reviews}", "name: reviews-2}"))
        == "lab.yaml: document 2 (DestinationRule reviews-2): host: duplicate DestinationRule for "
        "reviews.default.svc.cluster.local: reviews (lab.yaml document 1) already has it"
    )


def test_unknown_field_with_a_suggestion_and_passthrough_load_balancer() -> None:
    text = DR.replace(
        "  subsets:", "  trafficPolicy:\n    connectionPool: {tcp: {maxConnection: 1}}\n  subsets:"
    )
    assert (
        err(text) == "lab.yaml: document 1 (DestinationRule reviews): trafficPolicy.connectionPool.tcp."
        "maxConnection: unknown field (did you mean 'maxConnections'?)"
    )
    text = DR.replace("  subsets:", "  trafficPolicy:\n    loadBalancer: {simple: PASSTHROUGH}\n  subsets:")
    assert (
        err(text) == "lab.yaml: document 1 (DestinationRule reviews): trafficPolicy.loadBalancer.simple: "
        "PASSTHROUGH (original destination) is not supported by the lab"
    )


def test_hosts_istio_would_not_expand_and_conflicting_ports() -> None:
    assert (
        err(vs("  - route: [{destination: {host: reviews.default}}]\n"))
        == "lab.yaml: document 1 (VirtualService reviews): http[0].route[0].destination.host: "
        "host 'reviews.default' is neither a short name nor NAME.NAMESPACE.svc.cluster.local "
        "(Istio does not expand names that contain a dot)"
    )
    text = vs(
        "  - route: [{destination: {host: reviews, port: {number: 9080}}}]\n"
        "    mirror: {host: reviews, port: {number: 9081}}\n"
    )
    msg = err(text)
    assert msg.startswith(
        "lab.yaml: document 1 (VirtualService reviews): http[0].mirror.port.number: port 9081 "
        "differs from port 9080 of reviews.default.svc.cluster.local"
    )


def test_missing_route_and_empty_string_match() -> None:
    assert (
        err(vs("  - match: [{uri: {prefix: /}}]\n"))
        == "lab.yaml: document 1 (VirtualService reviews): http[0].route: "
        "required (a list of destinations, or a redirect or directResponse)"
    )
    assert (
        err(vs("  - match: [{uri: {}}]\n    route: [{destination: {host: reviews}}]\n"))
        == "lab.yaml: document 1 (VirtualService reviews): http[0].match[0].uri: "
        "give one of exact, prefix or regex"
    )


def test_header_present_match_forms() -> None:
    spec = loads(
        vs(
            "  - match: [{headers: {a: {regex: '*'}, b: {}}, withoutHeaders: {c: {exact: x}}}]\n"
            "    route: [{destination: {host: reviews}}]\n"
        )
    )
    headers = spec.virtual_services[0].http[0].matches[0].headers
    assert [(h.name, h.match.kind, h.invert) for h in headers] == [
        ("a", "present", False),
        ("b", "present", False),
        ("c", "exact", True),
    ]


def test_topology_document_fields_are_checked() -> None:
    head = "apiVersion: lab.loadgen.io/v1alpha1\nkind: Topology\nmetadata: {name: t}\n"
    assert err(head + "services:\n- {name: httpbin, replicas: 3}\n") == (
        "lab.yaml: document 1 (Topology t): services: belongs under spec: (spec: {services: [...]}) "
        "in a Topology document"
    )
    assert err(head + "spec:\n  services: [{name: httpbin}]\nstatus: {}\n").endswith("status: unknown field")
    assert err(head).endswith("spec: required (spec: {services: [...]})")
    spec = loads(head + "spec:\n  services: [{name: httpbin, replicas: 3}]\n", "lab.yaml")
    assert spec.services[0].replicas == 3
