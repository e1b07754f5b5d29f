"""VirtualService variants on a cluster: the propagation wait reads the client sidecar's route
config dump (routes tagged by Istio with the VirtualService they came from)."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]
from istio_yaml import destination_rule
from labrender import lab_bootstrap

from loadgen.errors import RunError
from loadgen.k8s import routes
from loadgen.k8s.policy import K8sPolicyTarget

VS = """apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - match: [{headers: {end-user: {exact: jason}}}]
    fault:
      abort: {httpStatus: 500, percentage: {value: %s}}
    route: [{destination: {host: reviews, subset: v2}}]
  - match: [{uri: {prefix: /old}}]
    redirect: {uri: /new, redirectCode: 302}
  - route:
    - {destination: {host: reviews, subset: v1}, weight: %d}
    - {destination: {host: reviews, subset: v3}, weight: %d}
    timeout: 3s
"""
TAG = {
    "filter_metadata": {
        "istio": {"config": "/apis/networking.istio.io/v1/namespaces/default/virtual-service/reviews"}
    }
}


def sidecar_dump(abort_pct: float, w1: int, w3: int) -> dict[str, Any]:
    """A route config dump shaped like an Istio sidecar's (``?resource=dynamic_route_configs``)."""
    fqdn = "reviews.default.svc.cluster.local"
    fault = {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault",
        "abort": {
            "http_status": 500,
            "percentage": {"numerator": int(abort_pct * 10000), "denominator": "MILLION"},
        },
    }
    routes_ = [
        {
            "name": "jason",
            "match": {"prefix": "/", "headers": [{"name": "end-user", "string_match": {"exact": "jason"}}]},
            "route": {"cluster": f"outbound|9080|v2|{fqdn}", "timeout": "0s"},
            "metadata": TAG,
            "typed_per_filter_config": {"envoy.filters.http.fault": fault},
        },
        {
            "match": {"prefix": "/old"},
            "redirect": {"path_redirect": "/new", "response_code": "FOUND"},
            "metadata": TAG,
        },
        {
            "match": {"prefix": "/"},
            "route": {
                "weighted_clusters": {
                    "clusters": [
                        {"name": f"outbound|9080|v1|{fqdn}", "weight": w1},
                        {"name": f"outbound|9080|v3|{fqdn}", "weight": w3},
                    ]
                },
                "timeout": "3s",
            },
            "metadata": TAG,
        },
    ]
    other = {
        "match": {"prefix": "/"},
        "route": {"cluster": "outbound|9080||ratings.default.svc.cluster.local"},
    }
    vh = [
        {"name": "reviews.default.svc.cluster.local:9080", "routes": routes_},
        {"name": "ratings.default.svc.cluster.local:9080", "routes": [other]},
    ]
    rc = {"name": "9080", "virtual_hosts": vh}
    return {
        "configs": [
            {
                "@type": "type.googleapis.com/envoy.admin.v3.RoutesConfigDump.DynamicRouteConfig",
                "version_info": "2026-11-26T20:00:00Z/42",
                "route_config": rc,
            }
        ]
    }


def test_signatures_match_only_the_declared_version() -> None:
    vs = yaml.safe_load(VS % (10, 80, 20))
    assert routes.arrived(sidecar_dump(10, 80, 20), "default", vs)
    assert not routes.arrived(sidecar_dump(10, 50, 50), "default", vs)  # the previous weights
    assert not routes.arrived(sidecar_dump(25, 80, 20), "default", vs)  # the previous abort rate
    assert not routes.arrived({"configs": []}, "default", vs)  # nothing from it yet
    assert not routes.arrived(sidecar_dump(10, 80, 20), "other-ns", vs)  # the tag names the namespace
    (seq,) = routes.dump_sequences(sidecar_dump(10, 80, 20), "default", "reviews")
    assert [s[0][0] for s in seq] == ["cluster", "redirect", "weighted"] and seq[1][0] == ("redirect", 302)


def test_whole_config_dump_is_read_too() -> None:
    rc = sidecar_dump(10, 80, 20)["configs"][0]
    whole = {"configs": [{"@type": "...RoutesConfigDump", "dynamic_route_configs": [rc]}]}
    assert routes.arrived(whole, "default", yaml.safe_load(VS % (10, 80, 20)))


def _vs(http: str, extra: str = "") -> dict[str, Any]:
    doc = yaml.safe_load(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: reviews}\n"
        f"spec:\n  hosts: [reviews]\n{extra}  http:\n{http}"
    )
    assert isinstance(doc, dict)
    return doc


def _route(cluster: str | list[tuple[str, int]], fault: dict[str, Any] | None = None) -> dict[str, Any]:
    fqdn = "reviews.default.svc.cluster.local"
    if isinstance(cluster, str):
        action: dict[str, Any] = {"cluster": f"outbound|9080|{cluster}|{fqdn}", "timeout": "0s"}
    else:
        cs = [{"name": f"outbound|9080|{sub}|{fqdn}", "weight": w} for sub, w in cluster]
        action = {"weighted_clusters": {"clusters": cs}, "timeout": "0s"}
    r: dict[str, Any] = {"match": {"prefix": "/"}, "route": action, "metadata": TAG}
    if fault is not None:
        r["typed_per_filter_config"] = {routes.FAULT_FILTER: fault}
    return r


def _dump(*rs: dict[str, Any]) -> dict[str, Any]:
    vh = {"name": "reviews.default.svc.cluster.local:9080", "routes": list(rs)}
    return {"configs": [{"route_config": {"name": "9080", "virtual_hosts": [vh]}}]}


JASON = (
    "  - match: [{headers: {end-user: {exact: jason}}}]\n"
    "    route: [{destination: {host: reviews, subset: %s}}]\n"
)
REST = "  - route: [{destination: {host: reviews, subset: %s}}]\n"


def test_percentages_compare_as_istio_truncates_them() -> None:
    # Istio: uint32(0.57 * 10000) = 5699 parts per million, not 5700
    one = "    route: [{destination: {host: reviews, subset: v1}}]\n"
    vs = _vs("  - fault: {abort: {httpStatus: 500, percentage: {value: 0.57}}}\n" + one)
    abort = {"abort": {"http_status": 500, "percentage": {"numerator": 5699, "denominator": "MILLION"}}}
    assert routes.arrived(_dump(_route("v1", abort)), "default", vs)
    abort["abort"]["percentage"]["numerator"] = 5700  # type: ignore[index]
    assert not routes.arrived(_dump(_route("v1", abort)), "default", vs)
    # the legacy integer percent of a delay is over HUNDRED
    vs = _vs("  - fault: {delay: {fixedDelay: 0.5s, percent: 7}}\n" + one)
    delay = {"delay": {"fixed_delay": "0.500s", "percentage": {"numerator": 7}}}  # HUNDRED: enum 0, omitted
    assert routes.arrived(_dump(_route("v1", delay)), "default", vs)


def test_added_removed_and_swapped_routes_are_seen() -> None:
    old = _dump(_route("v1"))
    added = _vs(JASON % "v2" + REST % "v1")
    assert not routes.arrived(old, "default", added)  # the old routes are a subset of the new
    assert routes.arrived(_dump(_route("v2"), _route("v1")), "default", added)
    swapped = _vs(JASON % "v1" + REST % "v2")
    assert not routes.arrived(_dump(_route("v2"), _route("v1")), "default", swapped)  # same set, other order
    removed = _vs(REST % "v1")
    assert not routes.arrived(_dump(_route("v2"), _route("v1")), "default", removed)


def test_routes_after_a_catch_all_are_not_expected() -> None:
    vs = _vs(REST % "v1" + JASON % "v2")  # Istio stops after the catch-all
    assert routes.arrived(_dump(_route("v1")), "default", vs)


def test_hosts_resolve_to_fqdns_in_the_vs_namespace() -> None:
    fq = _vs("  - route: [{destination: {host: reviews.default.svc.cluster.local, subset: v1}}]\n")
    dotted = _vs("  - route: [{destination: {host: reviews.default, subset: v1}}]\n")
    other_ns = _vs("  - route: [{destination: {host: reviews.prod, subset: v1}}]\n")
    assert routes.arrived(_dump(_route("v1")), "default", fq)
    assert routes.arrived(_dump(_route("v1")), "default", dotted)
    assert not routes.arrived(_dump(_route("v1")), "default", other_ns)


def test_nothing_to_wait_for_when_the_mesh_gets_no_http_routes() -> None:
    empty = {"configs": []}
    tcp_only = yaml.safe_load(
        "kind: VirtualService\nmetadata: {name: reviews}\nspec:\n  hosts: [reviews]\n"
        "  tcp: [{route: [{destination: {host: reviews}}]}]\n"
    )
    gateway_only = _vs(REST % "v1", extra="  gateways: [my-gateway]\n")
    delegate = yaml.safe_load("kind: VirtualService\nmetadata: {name: reviews}\nspec:\n  http: []\n")
    source_labels = _vs(
        "  - match: [{sourceLabels: {app: x}}]\n    route: [{destination: {host: reviews}}]\n"
    )
    for vs in (tcp_only, gateway_only, delegate, source_labels):
        assert routes.arrived(empty, "default", vs)
    # a client-dependent match next to certain ones: the certain ones must be there
    mixed = _vs(
        "  - match: [{sourceLabels: {app: x}}]\n    route: [{destination: {host: reviews, subset: v3}}]\n"
        + REST % "v1"
    )
    assert not routes.arrived(empty, "default", mixed)
    assert routes.arrived(_dump(_route("v1")), "default", mixed)
    assert routes.arrived(_dump(_route("v3"), _route("v1")), "default", mixed)
    assert not routes.arrived(_dump(_route("v2"), _route("v1")), "default", mixed)


@pytest.fixture
def vs_policy(policy: K8sPolicyTarget, kube: Any, tmp_path: Any) -> K8sPolicyTarget:
    dump = tmp_path / "config_dump.json"

    def on_change(plural: str, ns: str, name: str, obj: Any) -> None:  # "istiod" pushes 0.3 s later
        spec = (obj or {}).get("spec") or {}
        http = spec.get("http") or []
        if plural != "virtualservices" or len(http) < 3:
            return
        pct = http[0]["fault"]["abort"]["percentage"]["value"]
        w1, w3 = (d["weight"] for d in http[2]["route"])
        threading.Timer(0.3, lambda: dump.write_text(json.dumps(sidecar_dump(pct, w1, w3)))).start()

    dump.write_text(json.dumps(sidecar_dump(10, 50, 50)))  # what the sidecar has before the sweep
    kube.on_object_change = on_change
    return policy


def test_apply_waits_until_the_sidecar_has_the_virtual_service(
    vs_policy: K8sPolicyTarget, tmp_path: Any
) -> None:
    f = tmp_path / "vs.yaml"
    f.write_text(VS % (10, 80, 20))
    msg = vs_policy.apply([str(f)])
    assert "VirtualService/reviews" in msg
    assert vs_policy.last_propagation_s >= 0.2  # the old routes (50/50) did not count as arrived
    vs_policy.restore()


def test_route_propagation_timeout_names_what_the_sidecar_has(
    vs_policy: K8sPolicyTarget, kube: Any, tmp_path: Any
) -> None:
    kube.on_object_change = None  # nobody pushes
    vs_policy.timeout_s = 0.6
    f = tmp_path / "vs.yaml"
    f.write_text(VS % (10, 80, 20))
    with pytest.raises(
        RunError, match=r"did not show VirtualService reviews within 0.6s \(its routes there: "
    ):
        vs_policy.apply([str(f)])
    vs_policy.restore()


def _with(route: dict[str, Any], **action: Any) -> dict[str, Any]:
    route["route"].update(action)
    return route


ROUTE_V1 = "    route: [{destination: {host: reviews, subset: v1}}]\n"


def test_retry_variants_are_told_apart() -> None:
    """A sweep over retry policies: the wait sees attempts and perTryTimeout change; attempts 0
    is no retry policy; retries the YAML leaves out match the mesh's default, whatever it is."""
    default = {"retry_on": "connect-failure,refused-stream,unavailable,cancelled", "num_retries": 2}
    three = {"retry_on": "5xx", "num_retries": 3, "per_try_timeout": "1s"}
    with_three = _vs("  - retries: {attempts: 3, perTryTimeout: 1s, retryOn: 5xx}\n" + ROUTE_V1)
    assert routes.arrived(_dump(_with(_route("v1"), retry_policy=three)), "default", with_three)
    assert not routes.arrived(_dump(_with(_route("v1"), retry_policy=default)), "default", with_three)
    slower = dict(three, per_try_timeout="2s")
    assert not routes.arrived(_dump(_with(_route("v1"), retry_policy=slower)), "default", with_three)
    off = _vs("  - retries: {attempts: 0}\n" + ROUTE_V1)
    assert routes.arrived(_dump(_route("v1")), "default", off)  # no retry_policy at all
    assert not routes.arrived(_dump(_with(_route("v1"), retry_policy=three)), "default", off)
    unset = _vs(REST % "v1")
    for rp in (default, three, {"num_retries": 5}):
        assert routes.arrived(_dump(_with(_route("v1"), retry_policy=rp)), "default", unset)


def test_mirror_variants_are_told_apart() -> None:
    fqdn = "httpbin.default.svc.cluster.local"

    def mirror(sub: str, ppm: int | None) -> dict[str, Any]:
        m: dict[str, Any] = {"cluster": f"outbound|8000|{sub}|{fqdn}", "trace_sampled": False}
        if ppm is not None:
            m["runtime_fraction"] = {"default_value": {"numerator": ppm, "denominator": "MILLION"}}
        return m

    half = _vs(REST % "v1" + "    mirror: {host: httpbin, subset: v2}\n    mirrorPercentage: {value: 50}\n")
    assert routes.arrived(
        _dump(_with(_route("v1"), request_mirror_policies=[mirror("v2", 500_000)])), "default", half
    )
    for other in ([mirror("v2", 1_000_000)], [mirror("v3", 500_000)], []):
        assert not routes.arrived(_dump(_with(_route("v1"), request_mirror_policies=other)), "default", half)
    # mirrorPercentage unset: all of them; the legacy integer mirrorPercent; the newer mirrors[]
    full = _vs(REST % "v1" + "    mirror: {host: httpbin, subset: v2}\n")
    assert routes.arrived(
        _dump(_with(_route("v1"), request_mirror_policies=[mirror("v2", None)])), "default", full
    )
    legacy = _vs(REST % "v1" + "    mirror: {host: httpbin, subset: v2}\n    mirrorPercent: 25\n")
    assert routes.arrived(
        _dump(_with(_route("v1"), request_mirror_policies=[mirror("v2", 250_000)])), "default", legacy
    )
    many = _vs(
        REST % "v1"
        + "    mirrors:\n"
        + "    - {destination: {host: httpbin, subset: v2}, percentage: {value: 10}}\n"
        + "    - {destination: {host: httpbin, subset: v3}}\n"
    )
    both = [mirror("v3", 1_000_000), mirror("v2", 100_000)]  # the order in the dump does not matter
    assert routes.arrived(_dump(_with(_route("v1"), request_mirror_policies=both)), "default", many)
    assert not routes.arrived(_dump(_with(_route("v1"), request_mirror_policies=both[:1])), "default", many)
    zero = _vs(REST % "v1" + "    mirror: {host: httpbin, subset: v2}\n    mirrorPercentage: {value: 0}\n")
    assert routes.arrived(_dump(_route("v1")), "default", zero)  # an explicit 0: no mirror policy


DR = destination_rule("reviews", "v1", "v2", "v3")
VARIANTS = {
    "retries-3": "  - retries: {attempts: 3, perTryTimeout: 1s}\n" + ROUTE_V1,
    "retries-3-slow": "  - retries: {attempts: 3, perTryTimeout: 2s}\n" + ROUTE_V1,
    "retries-off": "  - retries: {attempts: 0}\n" + ROUTE_V1,
    "mirror-50": "  - retries: {attempts: 0}\n"
    + ROUTE_V1
    + "    mirror: {host: reviews, subset: v2}\n    mirrorPercentage: {value: 50}\n",
    "mirrors-2": "  - retries: {attempts: 0}\n"
    + ROUTE_V1
    + "    mirrors:\n    - {destination: {host: reviews, subset: v2}, percentage: {value: 10}}\n"
    + "    - {destination: {host: reviews, subset: v3}}\n",
    "split-fault": "  - retries: {attempts: 1}\n    timeout: 3s\n"
    + "    fault: {abort: {httpStatus: 500, percentage: {value: 0.57}}}\n"
    + "    route:\n    - {destination: {host: reviews, subset: v1}, weight: 80}\n"
    + "    - {destination: {host: reviews, subset: v3}, weight: 20}\n",
    "answers": "  - match: [{uri: {prefix: /old}}]\n    redirect: {uri: /new, redirectCode: 302}\n"
    + "  - match: [{uri: {prefix: /teapot}}]\n    directResponse: {status: 418}\n"
    + "  - retries: {attempts: 0}\n"
    + ROUTE_V1,
}


def _lab_render(tmp_path: Any, name: str) -> dict[str, Any]:
    """The lab's rendering of a variant (its own translation of Istio's route.go), as a sidecar
    dump: the service's routes, tagged the way istiod tags them."""
    f = tmp_path / f"{name}.yaml"
    f.write_text(yaml.safe_dump(_vs(VARIANTS[name])) + "---\n" + DR)
    boot = lab_bootstrap(f)
    found = []
    for lis in boot["static_resources"]["listeners"]:
        for chain in lis.get("filter_chains") or []:
            for flt in chain.get("filters") or []:
                rc = (flt.get("typed_config") or {}).get("route_config") or {}
                for vh in rc.get("virtual_hosts") or []:
                    if vh["name"].startswith("reviews."):
                        found.append(vh)
    assert found, str(boot)[:2000]
    for vh in found:
        for r in vh["routes"]:
            r["metadata"] = TAG
    return {"configs": [{"route_config": {"name": "9080", "virtual_hosts": found}}]}


def test_the_wait_agrees_with_the_labs_own_translation(tmp_path: Any) -> None:
    """Two translations of the same YAML, written apart: the lab renders routes as istiod does,
    the wait predicts their signatures. Each variant is seen in its own rendering and in no
    other variant's."""
    dumps = {name: _lab_render(tmp_path, name) for name in VARIANTS}
    for want in VARIANTS:
        vs = _vs(VARIANTS[want])
        seen = [name for name, dump in dumps.items() if routes.arrived(dump, "default", vs)]
        assert seen == [want], (want, seen, routes.dump_sequences(dumps[want], "default", "reviews"))


def test_delegates_are_merged_before_the_wait() -> None:
    """A root VirtualService and its delegate among the applied files: the sidecar shows the
    merged routes, tagged with the root. A root whose delegate is not at hand is not waited for."""
    from loadgen.lab.istio_delegate import merge_delegates

    root = _vs(
        "  - match: [{uri: {prefix: /api}}]\n    delegate: {name: child}\n" + REST % "v1",
    )
    child = yaml.safe_load(
        "kind: VirtualService\nmetadata: {name: child}\nspec:\n  http:\n"
        "  - match: [{uri: {prefix: /api/v2}}]\n    route: [{destination: {host: reviews, subset: v2}}]\n"
        "  - route: [{destination: {host: reviews, subset: v3}}]\n"
    )
    (merged,) = merge_delegates([root, child], "default", keep_unresolved=True).docs
    good = _dump(_route("v2"), _route("v3"), _route("v1"))
    assert routes.arrived(good, "default", merged)
    assert not routes.arrived(_dump(_route("v1")), "default", merged)  # before the push
    assert not routes.arrived(_dump(_route("v3"), _route("v2"), _route("v1")), "default", merged)
    (alone,) = merge_delegates([root], "default", keep_unresolved=True).docs
    assert "delegate" in alone["spec"]["http"][0]  # kept: it may live in the cluster
    assert routes.expected(alone, "default").nothing
