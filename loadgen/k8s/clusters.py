"""Has the client sidecar got this DestinationRule yet? Cluster settings predicted from the YAML
and read from the sidecar's cluster config dump, compared.

What it is: a DestinationRule is translated with the lab's own Istio translation
(:func:`loadgen.lab.istio_dr.destination_rule`, :func:`loadgen.lab.render.effective_policy`,
:func:`loadgen.lab.render.cluster_for`: Istio's ``MergeTrafficPolicy`` for subsets, its defaults of
2^32-1 for unset thresholds) into the clusters a sidecar gets — one per subset, named
``outbound|PORT|SUBSET|FQDN`` — and both sides are reduced by :func:`cluster_fields` to what a
policy sweep varies: the four circuit-breaker thresholds, ``maxRequestsPerConnection`` and the
outlier detection (whether there is one, the consecutive 5xx and gateway-error counts, interval,
base ejection time, max ejection percent). The DestinationRule has arrived when every cluster
ending in ``|SUBSET|FQDN`` shows exactly those values; so a variant that only removes a limit, only
changes outlier detection or only changes one subset's policy is waited for too.

What it is not: ports are not predicted (the YAML may not name them), so a DestinationRule with
``portLevelSettings``, or one the lab's reader refuses, falls back to the explicit top-level
connection-pool thresholds (:func:`explicit_thresholds`).
"""

from __future__ import annotations

from typing import Any

from loadgen.durations import parse_ns
from loadgen.errors import UsageError

Fields = dict[str, object]

CB_KEYS = ("max_connections", "max_pending_requests", "max_requests", "max_retries")
OUTLIER_INTS = ("consecutive_5xx", "consecutive_gateway_failure", "max_ejection_percent")
OUTLIER_DURATIONS = ("interval", "base_ejection_time")
# DestinationRule connectionPool field -> Envoy circuit_breakers threshold (the fallback)
THRESHOLDS = {
    ("tcp", "maxConnections"): "max_connections",
    ("http", "http1MaxPendingRequests"): "max_pending_requests",
    ("http", "http2MaxRequests"): "max_requests",
    ("http", "maxRetries"): "max_retries",
}


def _int(v: object) -> int | None:
    if isinstance(v, dict):  # a wrapper written as {value: n}
        v = v.get("value")
    if isinstance(v, bool) or not isinstance(v, int | str | float):
        return None
    try:
        return int(v)
    except ValueError:
        return None


def _ns(v: object) -> int | None:
    if v is None:
        return None
    try:
        return parse_ns(str(v), allow_days=False)
    except ValueError:
        return None


def cluster_fields(cluster: dict[str, Any]) -> Fields:
    """What the wait compares of one Envoy cluster (as a config dump or the lab renders it)."""
    out: Fields = {}
    th = ((cluster.get("circuit_breakers") or {}).get("thresholds") or [{}])[0]
    for k in CB_KEYS:
        out[k] = _int(th.get(k))
    mrpc = None
    for opts in (cluster.get("typed_extension_protocol_options") or {}).values():
        common = (opts or {}).get("common_http_protocol_options") or {}
        if common.get("max_requests_per_connection") is not None:
            mrpc = _int(common["max_requests_per_connection"])
    out["max_requests_per_connection"] = mrpc
    od = cluster.get("outlier_detection")
    out["outlier"] = isinstance(od, dict)
    od = od if isinstance(od, dict) else {}
    for k in OUTLIER_INTS:
        out[k] = _int(od.get(k))
    for k in OUTLIER_DURATIONS:
        out[k] = _ns(od.get(k))
    return out


def dump_clusters(dump: dict[str, Any]) -> dict[str, Fields]:
    """Every cluster of a config dump (dynamic or static), by name."""
    out: dict[str, Fields] = {}
    for cfg in dump.get("configs") or []:
        for key in ("dynamic_active_clusters", "static_clusters"):
            for c in cfg.get(key) or []:
                cl = c.get("cluster") or {}
                out[str(cl.get("name", ""))] = cluster_fields(cl)
    return out


def _fqdn(host: str, namespace: str) -> str:
    return host if "." in host else f"{host}.{namespace}.svc.cluster.local"


def explicit_thresholds(dr: dict[str, Any], namespace: str) -> dict[str, Fields]:
    """The fallback: ``{'||FQDN': {threshold: value}}`` for the top-level connection pool's
    explicit thresholds only."""
    spec = dr.get("spec") or {}
    pool = ((spec.get("trafficPolicy") or {}).get("connectionPool")) or {}
    want: Fields = {}
    for (section, key), envoy in THRESHOLDS.items():
        if key in (pool.get(section) or {}):
            want[envoy] = int(pool[section][key])
    return {f"||{_fqdn(str(spec.get('host', '')), namespace)}": want} if want else {}


def expected_clusters(dr: dict[str, Any], namespace: str) -> dict[str, Fields]:
    """``{'|SUBSET|FQDN': fields}`` for the default cluster and every subset (see the module
    docstring), or the explicit-threshold fallback."""
    from loadgen.lab import render
    from loadgen.lab.istio_dr import destination_rule
    from loadgen.lab.istio_fields import Ctx

    spec = dr.get("spec")
    name = str((dr.get("metadata") or {}).get("name", ""))
    if not isinstance(spec, dict):
        return {}
    try:
        rule = destination_rule(Ctx("<variant>", [], 1, "DestinationRule", name, namespace), spec)
    except UsageError:
        return explicit_thresholds(dr, namespace)
    policies = [rule.policy] + [s.policy for s in rule.subsets]
    if any(p is not None and p.port_level for p in policies):
        return explicit_thresholds(dr, namespace)
    out: dict[str, Fields] = {}
    for subset in (None, *rule.subsets):
        policy = render.effective_policy(rule, subset, 0)
        out[f"|{subset.name if subset else ''}|{rule.host}"] = cluster_fields(render.cluster_for(policy))
    return out


def arrived(want: dict[str, Fields], seen: dict[str, Fields]) -> bool:
    """Every wanted suffix has clusters, and each of them shows every wanted value."""
    for suffix, fields in want.items():
        mine = [f for name, f in seen.items() if name.endswith(suffix)]
        if not mine or not all(all(f.get(k) == v for k, v in fields.items()) for f in mine):
            return False
    return True


__all__ = ["arrived", "cluster_fields", "dump_clusters", "expected_clusters", "explicit_thresholds"]
