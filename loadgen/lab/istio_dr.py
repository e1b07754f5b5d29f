"""A ``DestinationRule`` read as Istio reads it: ``host``, ``subsets`` (their labels and their own
policies) and the ``trafficPolicy`` parts the lab reproduces on one Envoy: ``connectionPool`` (TCP
and HTTP limits, timeouts, keepalive), ``outlierDetection``, ``loadBalancer`` (``simple``, or
``consistentHash`` through :mod:`loadgen.lab.istio_http`) and ``portLevelSettings``. Mesh-only
fields (``tls``, ``exportTo``, ``workloadSelector``…) are ignored with a warning. Used by
:mod:`loadgen.lab.istio`, which checks what spans documents (one rule per host, the subsets that
routes name)."""

from __future__ import annotations

from typing import Any

from loadgen.lab import istio_fields as fr
from loadgen.lab import istio_http as ih
from loadgen.lab.istio_fields import MAX_U32, Ctx, join, resolve_host
from loadgen.lab.model import (
    ConnectionPool,
    ConsistentHash,
    DestinationRule,
    OutlierDetection,
    PortTrafficPolicy,
    Subset,
    TrafficPolicy,
)

_LB_POLICIES = {
    "LEAST_REQUEST": "LEAST_REQUEST",
    "LEAST_CONN": "LEAST_REQUEST",
    "ROUND_ROBIN": "ROUND_ROBIN",
    "RANDOM": "RANDOM",
    "UNSPECIFIED": None,
}
_TLS_WHY = "mesh-only: the lab's upstreams speak plain HTTP, no mTLS"


def _connection_pool(ctx: Ctx, v: object, path: str) -> ConnectionPool:
    m = fr.read_mapping(ctx, v, path)
    fr.check_fields(ctx, m, path, {"tcp", "http"})
    kw: dict[str, Any] = {}
    if m.get("tcp") is not None:
        tp = join(path, "tcp")
        t = fr.read_mapping(ctx, m["tcp"], tp)
        fr.check_fields(
            ctx,
            t,
            tp,
            {"maxConnections", "connectTimeout", "tcpKeepalive", "maxConnectionDuration", "idleTimeout"},
        )
        if "maxConnections" in t:
            kw["max_connections"] = fr.read_int(ctx, t["maxConnections"], join(tp, "maxConnections")) or None
        if "connectTimeout" in t:
            kw["connect_timeout_ns"] = fr.read_duration(
                ctx, t["connectTimeout"], join(tp, "connectTimeout"), fr.MS
            )
        if "maxConnectionDuration" in t:
            kw["max_connection_duration_ns"] = fr.read_duration(
                ctx, t["maxConnectionDuration"], join(tp, "maxConnectionDuration"), fr.MS
            )
        if "idleTimeout" in t:
            kw["tcp_idle_timeout_ns"] = fr.read_duration(ctx, t["idleTimeout"], join(tp, "idleTimeout"))
        if t.get("tcpKeepalive") is not None:
            kp = join(tp, "tcpKeepalive")
            k = fr.read_mapping(ctx, t["tcpKeepalive"], kp)
            fr.check_fields(ctx, k, kp, {"probes", "time", "interval"})
            kw["tcp_keepalive"] = (
                fr.read_int(ctx, k["probes"], join(kp, "probes")) if "probes" in k else None,
                fr.read_duration(ctx, k["time"], join(kp, "time"), 10**9) if "time" in k else None,
                fr.read_duration(ctx, k["interval"], join(kp, "interval"), 10**9)
                if "interval" in k
                else None,
            )
    if m.get("http") is not None:
        hp = join(path, "http")
        h = fr.read_mapping(ctx, m["http"], hp)
        fr.check_fields(
            ctx,
            h,
            hp,
            {
                "http1MaxPendingRequests",
                "http2MaxRequests",
                "maxRequestsPerConnection",
                "maxRetries",
                "idleTimeout",
            },
            {
                "h2UpgradePolicy": "the lab's upstreams speak HTTP/1.1",
                "useClientProtocol": "the lab's upstreams speak HTTP/1.1",
                "maxConcurrentStreams": "HTTP/2 only; the lab's upstreams speak HTTP/1.1",
                "http2KeepAlive": "HTTP/2 only; the lab's upstreams speak HTTP/1.1",
            },
        )
        for key, attr in (
            ("http1MaxPendingRequests", "http1_max_pending_requests"),
            ("http2MaxRequests", "http2_max_requests"),
            ("maxRequestsPerConnection", "max_requests_per_connection"),
            ("maxRetries", "max_retries"),
        ):
            if key in h:
                kw[attr] = fr.read_int(ctx, h[key], join(hp, key)) or None
        if "idleTimeout" in h:
            kw["idle_timeout_ns"] = fr.read_duration(ctx, h["idleTimeout"], join(hp, "idleTimeout"))
    return ConnectionPool(**kw)


def _outlier(ctx: Ctx, v: object, path: str) -> OutlierDetection:
    m = fr.read_mapping(ctx, v, path)
    fr.check_fields(
        ctx,
        m,
        path,
        {
            "consecutive5xxErrors",
            "consecutiveGatewayErrors",
            "consecutiveErrors",
            "interval",
            "baseEjectionTime",
            "maxEjectionPercent",
            "minHealthPercent",
            "splitExternalLocalOriginErrors",
            "consecutiveLocalOriginFailures",
        },
    )
    kw: dict[str, Any] = {}
    if "consecutiveErrors" in m:
        fr.read_int(ctx, m["consecutiveErrors"], join(path, "consecutiveErrors"))
        extra = (
            ""
            if "consecutive5xxErrors" in m
            else ("; with consecutive5xxErrors unset Envoy's default applies (eject after 5 consecutive 5xx)")
        )
        ctx.warn(
            join(path, "consecutiveErrors"),
            f"ignored, as Istio >= 1.7 ignores it (deprecated); use consecutive5xxErrors{extra}",
        )
    for key, attr in (
        ("consecutive5xxErrors", "consecutive_5xx_errors"),
        ("consecutiveGatewayErrors", "consecutive_gateway_errors"),
        ("consecutiveLocalOriginFailures", "consecutive_local_origin_failures"),
    ):
        if key in m:
            kw[attr] = fr.read_int(ctx, m[key], join(path, key), 0, MAX_U32)
    if "interval" in m:
        kw["interval_ns"] = fr.read_duration(ctx, m["interval"], join(path, "interval"), fr.MS)
    if "baseEjectionTime" in m:
        kw["base_ejection_time_ns"] = fr.read_duration(
            ctx, m["baseEjectionTime"], join(path, "baseEjectionTime"), fr.MS
        )
    if "maxEjectionPercent" in m:
        kw["max_ejection_percent"] = fr.read_int(
            ctx, m["maxEjectionPercent"], join(path, "maxEjectionPercent"), 0, 100
        )
    if "minHealthPercent" in m:
        kw["min_health_percent"] = fr.read_int(
            ctx, m["minHealthPercent"], join(path, "minHealthPercent"), 0, 100
        )
    if "splitExternalLocalOriginErrors" in m:
        kw["split_external_local_origin_errors"] = fr.read_bool(
            ctx, m["splitExternalLocalOriginErrors"], join(path, "splitExternalLocalOriginErrors")
        )
    return OutlierDetection(**kw)


def _load_balancer(ctx: Ctx, v: object, path: str) -> tuple[str | None, ConsistentHash | None]:
    """``loadBalancer``: ``simple`` or ``consistentHash`` (one of them, as in Istio's oneof)."""
    m = fr.read_mapping(ctx, v, path)
    fr.check_fields(
        ctx,
        m,
        path,
        {"simple", "consistentHash"},
        {
            "localityLbSetting": "the lab has one locality",
            "warmupDurationSecs": "not modelled by the lab",
            "warmup": "not modelled by the lab",
        },
    )
    if m.get("simple") is not None and m.get("consistentHash") is not None:
        raise ctx.error(path, "give simple or consistentHash, not both")
    if m.get("consistentHash") is not None:
        return None, ih.consistent_hash(ctx, m["consistentHash"], join(path, "consistentHash"))
    if "simple" not in m:
        return None, None
    simple = fr.read_str(ctx, m["simple"], join(path, "simple"))
    if simple == "PASSTHROUGH":
        raise ctx.error(
            join(path, "simple"), "PASSTHROUGH (original destination) is not supported by the lab"
        )
    if simple not in _LB_POLICIES:
        raise ctx.error(
            join(path, "simple"),
            f"unknown load balancer {simple!r} (use LEAST_REQUEST, ROUND_ROBIN or RANDOM)",
        )
    return _LB_POLICIES[simple], None


def _policy_parts(ctx: Ctx, m: dict[str, Any], path: str) -> dict[str, Any]:
    kw: dict[str, Any] = {}
    if m.get("connectionPool") is not None:
        kw["connection_pool"] = _connection_pool(ctx, m["connectionPool"], join(path, "connectionPool"))
    if m.get("outlierDetection") is not None:
        kw["outlier_detection"] = _outlier(ctx, m["outlierDetection"], join(path, "outlierDetection"))
    if m.get("loadBalancer") is not None:
        lb, ch = _load_balancer(ctx, m["loadBalancer"], join(path, "loadBalancer"))
        kw["load_balancer"], kw["consistent_hash"] = lb, ch
    return kw


def _traffic_policy(ctx: Ctx, v: object, path: str) -> TrafficPolicy:
    m = fr.read_mapping(ctx, v, path)
    fr.check_fields(
        ctx,
        m,
        path,
        {"connectionPool", "outlierDetection", "loadBalancer", "portLevelSettings"},
        {
            "tls": _TLS_WHY,
            "proxyProtocol": "mesh-only",
            "tunnel": "mesh-only",
            "retryBudget": "not modelled by the lab (max_retries applies)",
        },
    )
    kw = _policy_parts(ctx, m, path)
    levels: list[PortTrafficPolicy] = []
    if m.get("portLevelSettings") is not None:
        lp = join(path, "portLevelSettings")
        for i, item in enumerate(fr.read_list(ctx, m["portLevelSettings"], lp)):
            ip = join(lp, i)
            pm = fr.read_mapping(ctx, item, ip)
            fr.check_fields(
                ctx, pm, ip, {"port", "connectionPool", "outlierDetection", "loadBalancer"}, {"tls": _TLS_WHY}
            )
            port_m = fr.read_mapping(ctx, pm.get("port"), join(ip, "port"))
            fr.check_fields(ctx, port_m, join(ip, "port"), {"number"})
            number = fr.read_int(ctx, port_m.get("number"), join(ip, "port.number"), 1, 65535)
            levels.append(PortTrafficPolicy(number, **_policy_parts(ctx, pm, ip)))
    return TrafficPolicy(port_level=tuple(levels), **kw)


def destination_rule(ctx: Ctx, spec: dict[str, Any]) -> DestinationRule:
    fr.check_fields(
        ctx,
        spec,
        "",
        {"host", "trafficPolicy", "subsets"},
        {"exportTo": "the lab has one namespace view", "workloadSelector": "the lab has one client"},
    )
    host = resolve_host(ctx, spec.get("host"), "host")
    policy = (
        _traffic_policy(ctx, spec["trafficPolicy"], "trafficPolicy") if spec.get("trafficPolicy") else None
    )
    subsets: list[Subset] = []
    if spec.get("subsets") is not None:
        for i, item in enumerate(fr.read_list(ctx, spec["subsets"], "subsets")):
            sp = join("subsets", i)
            sm = fr.read_mapping(ctx, item, sp)
            fr.check_fields(ctx, sm, sp, {"name", "labels", "trafficPolicy"})
            name = fr.read_str(ctx, sm.get("name"), join(sp, "name"))
            if any(s.name == name for s in subsets):
                raise ctx.error(join(sp, "name"), f"duplicate subset {name!r}")
            labels_m = fr.read_mapping(ctx, sm.get("labels") or {}, join(sp, "labels"))
            labels = {k: fr.read_str(ctx, lv, join(join(sp, "labels"), k)) for k, lv in labels_m.items()}
            sub_policy = (
                _traffic_policy(ctx, sm["trafficPolicy"], join(sp, "trafficPolicy"))
                if sm.get("trafficPolicy")
                else None
            )
            subsets.append(Subset(name, labels, sub_policy))
    return DestinationRule(ctx.name, ctx.namespace, host, policy, tuple(subsets), ctx.source, ctx.document)
