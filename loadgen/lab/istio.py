"""Istio ``DestinationRule`` / ``VirtualService`` YAML → a validated :class:`~loadgen.lab.model.LabSpec`.

What it is: a strict reader of multi-document YAML (``networking.istio.io`` v1, v1beta1, v1alpha3)
that keeps what the lab can reproduce on one Envoy, with Istio's semantics, and reports the rest:

* Errors (:class:`~loadgen.errors.UsageError`) name the file, the 1-based document, its kind and
  name, and the field path: ``lab.yaml: document 2 (VirtualService reviews): http[0].route[1]
  .destination.subset: subset 'v3' is not defined in DestinationRule reviews (defined: v1, v2)``.
  Invalid YAML gives the line; unknown fields and unknown ``apiVersion`` groups are errors.
* Warnings (``LabSpec.warnings``) name what is ignored: mesh-only fields (``tls``, ``exportTo``,
  ``sourceLabels``…), Istio kinds the lab does not model (``Gateway``, ``ServiceEntry``…),
  Kubernetes objects (``Deployment``, ``Service``), the legacy ``consecutiveErrors`` (ignored since
  Istio 1.7, as Istio does), and a later document replacing an earlier one of the same kind,
  namespace and name (as ``kubectl apply`` would).

Services are the hosts of DestinationRules, VirtualServices, route and mirror destinations, and the
optional topology (a ``-topology`` file, or a ``lab.loadgen.io/v1alpha1 Topology`` document:
``services: [{name, namespace, port, versions: [v1, v2], replicas}]``). Short names resolve in the
resource's namespace, ``NAME.NS.svc.cluster.local`` is taken as is; like Istio, names with a dot are
not expanded, so ``reviews.default`` is an error here rather than a silent non-match. Ports come
from ``destination.port.number``, else the topology, else 8000; one port per service.

What it is not: no Envoy config (that is :mod:`loadgen.lab.render`), no processes, no I/O except
reading the given files.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any

import yaml  # type: ignore[import-untyped]

from loadgen.errors import UsageError
from loadgen.lab import istio_fields as fr
from loadgen.lab import istio_http as ih
from loadgen.lab.istio_fields import Ctx, join, parse_duration
from loadgen.lab.model import (
    DEFAULT_PORT,
    ConnectionPool,
    ConsistentHash,
    Destination,
    DestinationRule,
    Fault,
    FaultAbort,
    FaultDelay,
    Fraction,
    HeaderMatch,
    HttpRoute,
    LabSpec,
    Mirror,
    OutlierDetection,
    PortTrafficPolicy,
    Retries,
    RouteMatch,
    Service,
    StringMatch,
    Subset,
    TrafficPolicy,
    VirtualService,
    fqdn,
)

ISTIO_GROUP = "networking.istio.io"
ISTIO_VERSIONS = ("v1", "v1beta1", "v1alpha3")
LAB_API = "lab.loadgen.io/v1alpha1"
_SKIPPED_ISTIO_KINDS = {
    "Gateway",
    "ServiceEntry",
    "Sidecar",
    "EnvoyFilter",
    "WorkloadEntry",
    "WorkloadGroup",
    "ProxyConfig",
}
_OTHER_ISTIO_GROUPS = {"security.istio.io", "telemetry.istio.io", "extensions.istio.io"}
_KUBERNETES_GROUPS = {
    "",
    "apps",
    "batch",
    "networking.k8s.io",
    "policy",
    "autoscaling",
    "gateway.networking.k8s.io",
}
_LB_POLICIES = {
    "LEAST_REQUEST": "LEAST_REQUEST",
    "LEAST_CONN": "LEAST_REQUEST",
    "ROUND_ROBIN": "ROUND_ROBIN",
    "RANDOM": "RANDOM",
    "UNSPECIFIED": None,
}
_LABEL_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_MAX_U32 = 2**32 - 1


# --------------------------------------------------------------------------- context and helpers


def _resolve_host(ctx: Ctx, v: object, path: str) -> str:
    if v is None or v == "":
        raise ctx.error(path, "missing host")
    host = fr.read_str(ctx, v, path).strip().lower()
    if host == "*" or host.startswith("*."):
        raise ctx.error(path, f"wildcard host {host!r} is not supported by the lab (name a service)")
    parts = host.split(".")
    if len(parts) == 1:
        short, ns = host, ctx.namespace
    elif len(parts) == 5 and parts[2:] == ["svc", "cluster", "local"]:
        short, ns = parts[0], parts[1]
    else:
        raise ctx.error(
            path,
            f"host {host!r} is neither a short name nor NAME.NAMESPACE.svc.cluster.local "
            "(Istio does not expand names that contain a dot)",
        )
    for label in (short, ns):
        if not _LABEL_RE.match(label):
            raise ctx.error(path, f"host {host!r}: {label!r} is not a valid DNS label")
    return fqdn(short, ns)


# --------------------------------------------------------------------------- DestinationRule


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
            kw[attr] = fr.read_int(ctx, m[key], join(path, key), 0, _MAX_U32)
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


def _destination_rule(ctx: Ctx, spec: dict[str, Any]) -> DestinationRule:
    fr.check_fields(
        ctx,
        spec,
        "",
        {"host", "trafficPolicy", "subsets"},
        {"exportTo": "the lab has one namespace view", "workloadSelector": "the lab has one client"},
    )
    host = _resolve_host(ctx, spec.get("host"), "host")
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


# --------------------------------------------------------------------------- VirtualService


@dataclass
class _Ref:
    """A destination to check once every document is read: its subset must exist, its port agree."""

    ctx: Ctx
    path: str
    host: str
    subset: str
    port: int  # 0 = not given


def _string_match(ctx: Ctx, v: object, path: str, *, allow_present: bool) -> StringMatch:
    m = fr.read_mapping(ctx, v if v is not None else {}, path)
    fr.check_fields(ctx, m, path, {"exact", "prefix", "regex"})
    if len(m) > 1:
        raise ctx.error(path, f"give one of exact, prefix or regex, not {' and '.join(m)}")
    if not m:
        if allow_present:
            return StringMatch("present")
        raise ctx.error(path, "give one of exact, prefix or regex")
    kind, value = next(iter(m.items()))
    value = fr.read_str(ctx, value, join(path, kind), required=False)
    if kind == "regex":
        if allow_present and value in ("*", ""):
            return StringMatch("present")  # Istio: regex "*" → present_match
        try:
            re.compile(value)
        except re.error as exc:
            raise ctx.error(join(path, kind), f"invalid regex {value!r}: {exc}") from None
    return StringMatch(kind, value)


def _match(ctx: Ctx, v: object, path: str) -> RouteMatch:
    m = fr.read_mapping(ctx, v, path)
    fr.check_fields(
        ctx,
        m,
        path,
        {
            "name",
            "uri",
            "scheme",
            "method",
            "authority",
            "headers",
            "withoutHeaders",
            "queryParams",
            "ignoreUriCase",
            "statPrefix",
        },
        {
            "port": "the lab has one listener per service",
            "sourceLabels": "the lab's client has no labels; the condition is treated as matching",
            "sourceNamespace": "the lab's client has no namespace; the condition is treated as matching",
            "gateways": "the lab has no gateways; the condition is treated as matching",
        },
    )
    uri = (
        _string_match(ctx, m["uri"], join(path, "uri"), allow_present=False)
        if m.get("uri") is not None
        else None
    )
    headers: list[HeaderMatch] = []
    for key, hname in (("method", ":method"), ("authority", ":authority"), ("scheme", ":scheme")):
        if m.get(key) is not None:
            headers.append(
                HeaderMatch(hname, _string_match(ctx, m[key], join(path, key), allow_present=True))
            )
    for key, invert in (("headers", False), ("withoutHeaders", True)):
        if m.get(key) is not None:
            hp = join(path, key)
            for name, sm in fr.read_mapping(ctx, m[key], hp).items():
                headers.append(
                    HeaderMatch(
                        name.lower(), _string_match(ctx, sm, join(hp, name), allow_present=True), invert
                    )
                )
    params: list[tuple[str, StringMatch]] = []
    if m.get("queryParams") is not None:
        qp = join(path, "queryParams")
        for name, sm in sorted(fr.read_mapping(ctx, m["queryParams"], qp).items()):
            params.append((name, _string_match(ctx, sm, join(qp, name), allow_present=True)))
    ignore_case = (
        fr.read_bool(ctx, m["ignoreUriCase"], join(path, "ignoreUriCase")) if "ignoreUriCase" in m else False
    )
    stat_prefix = fr.read_str(ctx, m["statPrefix"], join(path, "statPrefix")) if m.get("statPrefix") else ""
    return RouteMatch(uri, tuple(headers), tuple(params), ignore_case, stat_prefix)


def _destination(ctx: Ctx, v: object, path: str, refs: list[_Ref]) -> Destination:
    m = fr.read_mapping(ctx, v, path)
    fr.check_fields(ctx, m, path, {"host", "subset", "port"})
    host = _resolve_host(ctx, m.get("host"), join(path, "host"))
    subset = fr.read_str(ctx, m.get("subset"), join(path, "subset"), required=False)
    port = 0
    if m.get("port") is not None:
        pp = join(path, "port")
        pm = fr.read_mapping(ctx, m["port"], pp)
        fr.check_fields(ctx, pm, pp, {"number"})
        port = fr.read_int(ctx, pm.get("number"), join(pp, "number"), 1, 65535)
    refs.append(_Ref(ctx, join(path, "subset") if subset else path, host, subset, port))
    return Destination(host, subset, port, port_given=port != 0)


def _fault(ctx: Ctx, v: object, path: str) -> Fault:
    m = fr.read_mapping(ctx, v, path)
    fr.check_fields(ctx, m, path, {"delay", "abort"})
    delay = abort = None
    if m.get("delay") is not None:
        dp = join(path, "delay")
        d = fr.read_mapping(ctx, m["delay"], dp)
        fr.check_fields(ctx, d, dp, {"fixedDelay", "percentage", "percent", "exponentialDelay"})
        if "exponentialDelay" in d:
            raise ctx.error(join(dp, "exponentialDelay"), "not supported (Istio does not support it either)")
        if "fixedDelay" not in d:
            raise ctx.error(join(dp, "fixedDelay"), "required")
        fixed = fr.read_duration(ctx, d["fixedDelay"], join(dp, "fixedDelay"), fr.MS)
        if d.get("percentage") is not None:
            pct = fr.read_percent(ctx, d["percentage"], join(dp, "percentage"))
        elif "percent" in d:  # deprecated integer percent → {n, HUNDRED}, as Istio renders it
            pct = Fraction(fr.read_int(ctx, d["percent"], join(dp, "percent"), 0, 100), "HUNDRED")
        else:
            pct = Fraction(0, "HUNDRED")
            ctx.warn(
                dp, "no percentage: as in Istio, no request is delayed (set percentage.value: 100 for all)"
            )
        delay = FaultDelay(fixed, pct)
    if m.get("abort") is not None:
        ap = join(path, "abort")
        a = fr.read_mapping(ctx, m["abort"], ap)
        fr.check_fields(ctx, a, ap, {"httpStatus", "percentage", "percent", "grpcStatus", "http2Error"})
        for k in ("grpcStatus", "http2Error"):
            if k in a:
                raise ctx.error(join(ap, k), "not supported by the lab (use httpStatus)")
        if "httpStatus" not in a:
            raise ctx.error(join(ap, "httpStatus"), "required")
        status = fr.read_int(ctx, a["httpStatus"], join(ap, "httpStatus"), 200, 599)
        apct: Fraction | None
        if a.get("percentage") is not None:
            apct = fr.read_percent(ctx, a["percentage"], join(ap, "percentage"))
        elif "percent" in a:
            apct = Fraction(fr.read_int(ctx, a["percent"], join(ap, "percent"), 0, 100), "HUNDRED")
            ctx.warn(
                join(ap, "percent"),
                "removed from Istio's API (current Istio rejects it); read as "
                "percentage.value, as Istio 1.0-1.1 did",
            )
        else:
            apct = None
            ctx.warn(
                ap, "no percentage: as in Istio, no request is aborted (set percentage.value: 100 for all)"
            )
        abort = FaultAbort(status, apct)
    if delay is None and abort is None:
        raise ctx.error(path, "give delay or abort (or both)")
    return Fault(delay, abort)


def _retries(ctx: Ctx, v: object, path: str) -> Retries:
    m = fr.read_mapping(ctx, v, path)
    fr.check_fields(
        ctx,
        m,
        path,
        {"attempts", "perTryTimeout", "retryOn", "retryIgnorePreviousHosts", "backoff"},
        {"retryRemoteLocalities": "the lab has one locality"},
    )
    attempts = fr.read_int(ctx, m.get("attempts", 0), join(path, "attempts"))
    per_try = (
        fr.read_duration(ctx, m["perTryTimeout"], join(path, "perTryTimeout"), fr.MS)
        if "perTryTimeout" in m
        else None
    )
    retry_on = None
    if m.get("retryOn"):
        retry_on = fr.read_str(ctx, m["retryOn"], join(path, "retryOn"))
    if "retryIgnorePreviousHosts" in m:
        fr.read_bool(ctx, m["retryIgnorePreviousHosts"], join(path, "retryIgnorePreviousHosts"))
    ignore_prev = m.get("retryIgnorePreviousHosts")
    backoff = fr.read_duration(ctx, m["backoff"], join(path, "backoff"), fr.MS) if "backoff" in m else None
    return Retries(attempts, per_try, retry_on, ignore_prev, backoff)


def _mirror_percent(ctx: Ctx, r: dict[str, Any], path: str) -> Fraction | None:
    """Istio's MirrorPercent: mirrorPercentage, else mirror_percent, else 100 %; explicit 0: no mirror."""
    if r.get("mirrorPercentage") is not None:
        f = fr.read_percent(ctx, r["mirrorPercentage"], join(path, "mirrorPercentage"))
        return f if f.numerator > 0 else None
    for key in ("mirror_percent", "mirrorPercent"):
        if r.get(key) is not None:
            raw = r[key]
            if isinstance(raw, dict):  # UInt32Value written as {value: n}
                raw = raw.get("value", 0)
            n = fr.read_int(ctx, raw, join(path, key), 0, 100)
            return Fraction(n, "HUNDRED") if n > 0 else None
    return Fraction(100, "HUNDRED")


def _http_route(ctx: Ctx, v: object, path: str, refs: list[_Ref]) -> HttpRoute | None:
    r = fr.read_mapping(ctx, v, path)
    unsupported = {
        "corsPolicy": "not modelled by the lab",
        "delegate": "not modelled by the lab",
    }
    fr.check_fields(
        ctx,
        r,
        path,
        {
            "name",
            "match",
            "route",
            "timeout",
            "retries",
            "fault",
            "mirror",
            "mirrors",
            "mirrorPercentage",
            "mirror_percent",
            "mirrorPercent",
            "headers",
            "rewrite",
            "redirect",
            "directResponse",
        },
        unsupported,
    )
    name = fr.read_str(ctx, r.get("name"), join(path, "name"), required=False)
    matches = tuple(
        _match(ctx, item, join(join(path, "match"), i))
        for i, item in enumerate(
            fr.read_list(ctx, r["match"], join(path, "match")) if r.get("match") is not None else []
        )
    )
    fault = _fault(ctx, r["fault"], join(path, "fault")) if r.get("fault") is not None else None
    actions = [k for k in ("route", "redirect", "directResponse") if r.get(k) is not None]
    if len(actions) > 1:
        raise ctx.error(path, f"give one of route, redirect or directResponse, not {' and '.join(actions)}")
    if r.get("redirect") is not None or r.get("directResponse") is not None:
        what = "redirect" if r.get("redirect") is not None else "directResponse"
        for k in ("fault", "rewrite"):  # Istio rejects these next to a redirect or a direct response
            if r.get(k) is not None:
                raise ctx.error(join(path, k), f"an HTTP route cannot contain both {k} and {what}")
        for k in ("mirror", "mirrors", "timeout", "retries"):
            if r.get(k) is not None:
                ctx.warn(join(path, k), "ignored (the route answers by itself: no upstream request)")
        headers = (
            ih.header_ops(ctx, r["headers"], join(path, "headers")) if r.get("headers") is not None else None
        )
        redirect = ih.redirect(ctx, r["redirect"], join(path, "redirect")) if what == "redirect" else None
        direct = (
            ih.direct_response(ctx, r["directResponse"], join(path, "directResponse"))
            if what == "directResponse"
            else None
        )
        return HttpRoute(name, matches, (), None, headers=headers, redirect=redirect, direct_response=direct)
    if not r.get("route"):
        if "delegate" in r:
            ctx.warn(path, "route skipped: it has no route destinations")
            return None
        raise ctx.error(
            join(path, "route"), "required (a list of destinations, or a redirect or directResponse)"
        )
    rewrite = ih.rewrite(ctx, r["rewrite"], join(path, "rewrite")) if r.get("rewrite") is not None else None
    headers = (
        ih.header_ops(
            ctx, r["headers"], join(path, "headers"), rewrite_authority=rewrite.authority if rewrite else ""
        )
        if r.get("headers") is not None
        else None
    )
    rp = join(path, "route")
    dests: list[Destination] = []
    for i, item in enumerate(fr.read_list(ctx, r["route"], rp)):
        ip = join(rp, i)
        dm = fr.read_mapping(ctx, item, ip)
        fr.check_fields(
            ctx,
            dm,
            ip,
            {"destination", "weight", "headers"},
        )
        if dm.get("destination") is None:
            raise ctx.error(join(ip, "destination"), "required")
        d = _destination(ctx, dm["destination"], join(ip, "destination"), refs)
        weight = (
            fr.read_int(ctx, dm["weight"], join(ip, "weight"), 0, 2**31 - 1)
            if dm.get("weight") is not None
            else 0
        )
        dh = ih.header_ops(ctx, dm["headers"], join(ip, "headers")) if dm.get("headers") is not None else None
        dests.append(replace(d, weight=weight, headers=dh))
    if len(dests) > 1:
        # weights are relative (Istio >= 1.15 no longer asks for a sum of 100), but something
        # must get the traffic, and Envoy sums them in 32 bits
        total = sum(d.weight for d in dests)
        if not 0 < total <= _MAX_U32:
            parts = " + ".join(str(d.weight) for d in dests)
            raise ctx.error(
                rp,
                f"weights sum to {total} ({parts}): no destination would get traffic"
                if total == 0
                else f"weights sum to {total} ({parts}), above {_MAX_U32}",
            )
    mirrors: list[Mirror] = []
    if r.get("mirror") is not None and r.get("mirrors") is not None:
        raise ctx.error(join(path, "mirrors"), "give mirror or mirrors, not both")
    if r.get("mirror") is not None:
        dest = _destination(ctx, r["mirror"], join(path, "mirror"), refs)
        pct = _mirror_percent(ctx, r, path)
        if pct is not None:
            mirrors.append(Mirror(dest, pct))
    elif any(r.get(k) is not None for k in ("mirrorPercentage", "mirror_percent", "mirrorPercent")):
        ctx.warn(path, "mirror percentage without mirror: ignored")
    if r.get("mirrors") is not None:
        mp = join(path, "mirrors")
        for i, item in enumerate(fr.read_list(ctx, r["mirrors"], mp)):
            ip = join(mp, i)
            mm = fr.read_mapping(ctx, item, ip)
            fr.check_fields(ctx, mm, ip, {"destination", "percentage"})
            if mm.get("destination") is None:
                raise ctx.error(join(ip, "destination"), "required")
            dest = _destination(ctx, mm["destination"], join(ip, "destination"), refs)
            f = (
                fr.read_percent(ctx, mm["percentage"], join(ip, "percentage"))
                if mm.get("percentage") is not None
                else Fraction(100, "HUNDRED")
            )
            if f.numerator > 0:
                mirrors.append(Mirror(dest, f))
    timeout = (
        fr.read_duration(ctx, r["timeout"], join(path, "timeout")) if r.get("timeout") is not None else None
    )
    retries = _retries(ctx, r["retries"], join(path, "retries")) if r.get("retries") is not None else None
    return HttpRoute(
        name, matches, tuple(dests), fault, tuple(mirrors), timeout, retries, headers=headers, rewrite=rewrite
    )


def _virtual_service(ctx: Ctx, spec: dict[str, Any], refs: list[_Ref]) -> VirtualService:
    fr.check_fields(
        ctx,
        spec,
        "",
        {"hosts", "http", "gateways"},
        {
            "tcp": "the lab routes HTTP only",
            "tls": "the lab routes HTTP only",
            "exportTo": "the lab has one namespace view",
        },
    )
    if not spec.get("hosts"):
        raise ctx.error("hosts", "missing host (a list of service names)")
    hosts = tuple(
        dict.fromkeys(
            _resolve_host(ctx, h, join("hosts", i))
            for i, h in enumerate(fr.read_list(ctx, spec["hosts"], "hosts"))
        )
    )
    if spec.get("gateways") is not None:
        gws = [
            fr.read_str(ctx, g, join("gateways", i))
            for i, g in enumerate(fr.read_list(ctx, spec["gateways"], "gateways"))
        ]
        if "mesh" not in gws:
            ctx.warn(
                "gateways",
                f"{gws} does not include 'mesh': in Istio these routes would not apply to "
                "sidecars; the lab applies them anyway",
            )
    routes: list[HttpRoute] = []
    if spec.get("http") is not None:
        for i, item in enumerate(fr.read_list(ctx, spec["http"], "http")):
            route = _http_route(ctx, item, join("http", i), refs)
            if route is not None:
                routes.append(route)
    else:
        ctx.warn("http", "no http routes: requests to these hosts get 404 (NR), as in Istio")
    return VirtualService(ctx.name, ctx.namespace, hosts, tuple(routes), ctx.source, ctx.document)


# --------------------------------------------------------------------------- topology


@dataclass
class _TopoService:
    host: str
    short: str
    namespace: str
    port: int | None
    versions: tuple[str, ...]
    replicas: int
    where: str


def _topology(ctx: Ctx, v: object, path: str) -> list[_TopoService]:
    m = fr.read_mapping(ctx, v, path)
    fr.check_fields(ctx, m, path, {"services"})
    out: list[_TopoService] = []
    sp = join(path, "services")
    for i, item in enumerate(fr.read_list(ctx, m.get("services") or [], sp)):
        ip = join(sp, i)
        s = fr.read_mapping(ctx, item, ip)
        fr.check_fields(
            ctx, s, ip, {"name", "namespace", "port", "versions", "replicas", "kind", "workers"}
        )  # kind, workers: for the CLI
        name = fr.read_str(ctx, s.get("name"), join(ip, "name"))
        ns = fr.read_str(ctx, s.get("namespace"), join(ip, "namespace"), required=False) or ctx.namespace
        sub = replace(ctx, namespace=ns)
        host = _resolve_host(sub, name, join(ip, "name"))
        short, ns = host.split(".")[0], host.split(".")[1]
        port = fr.read_int(ctx, s["port"], join(ip, "port"), 1, 65535) if s.get("port") is not None else None
        versions = tuple(
            fr.read_str(ctx, x, join(join(ip, "versions"), j))
            for j, x in enumerate(fr.read_list(ctx, s.get("versions") or [], join(ip, "versions")))
        )
        replicas = (
            fr.read_int(ctx, s["replicas"], join(ip, "replicas"), 1, 64)
            if s.get("replicas") is not None
            else 1
        )
        out.append(_TopoService(host, short, ns, port, versions, replicas, f"{ctx.where()}: {ip}"))
    return out


# --------------------------------------------------------------------------- documents → spec


@dataclass
class _Collected:
    warnings: list[str] = field(default_factory=list)
    drs: dict[tuple[str, str], DestinationRule] = field(default_factory=dict)
    vss: dict[tuple[str, str], VirtualService] = field(default_factory=dict)
    refs: dict[tuple[str, str, str], list[_Ref]] = field(default_factory=dict)
    topo: list[_TopoService] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)


def _parse_documents(text: str, source: str) -> list[Any]:
    try:
        return list(yaml.safe_load_all(text))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise UsageError(f"{source}: invalid YAML{where}: {problem}") from None


def _collect(text: str, source: str, namespace: str, acc: _Collected) -> None:
    acc.sources.append(source)
    for index, doc in enumerate(_parse_documents(text, source), start=1):
        if doc is None:
            continue
        ctx = Ctx(source, acc.warnings, index, namespace=namespace)
        if not isinstance(doc, dict):
            raise ctx.error("", f"expected a mapping (a Kubernetes resource), got {fr.typename(doc)}")
        api = doc.get("apiVersion")
        kind = doc.get("kind")
        if not isinstance(api, str) or not api:
            raise ctx.error("apiVersion", "missing")
        if not isinstance(kind, str) or not kind:
            raise ctx.error("kind", "missing")
        ctx.kind = kind
        meta = fr.read_mapping(ctx, doc.get("metadata") or {}, "metadata")
        ctx.name = meta["name"] if isinstance(meta.get("name"), str) else ""
        group, _, version = api.rpartition("/")
        if api == LAB_API and kind == "Topology":
            acc.topo.extend(_topology(ctx, _topology_spec(ctx, doc), "spec"))
            continue
        if group in _KUBERNETES_GROUPS or group.endswith(".k8s.io"):
            ctx.warn(
                "",
                "skipped: Kubernetes objects are not read (declare services, versions and replicas "
                "in a topology)",
            )
            continue
        if group in _OTHER_ISTIO_GROUPS:
            ctx.warn("", f"skipped: {group} resources are not modelled by the lab")
            continue
        if group != ISTIO_GROUP:
            raise ctx.error(
                "apiVersion",
                f"unknown apiVersion {api!r} (the lab reads {ISTIO_GROUP}/v1, v1beta1 and v1alpha3)",
            )
        if version not in ISTIO_VERSIONS:
            raise ctx.error(
                "apiVersion", f"unsupported version {api!r} (use {ISTIO_GROUP}/v1, v1beta1 or v1alpha3)"
            )
        if kind in _SKIPPED_ISTIO_KINDS:
            ctx.warn("", f"skipped: {kind} is not modelled by the lab")
            continue
        if kind not in ("DestinationRule", "VirtualService"):
            raise ctx.error("kind", f"unknown kind {kind!r} in {ISTIO_GROUP}")
        if not ctx.name:
            raise ctx.error("metadata.name", "missing")
        ns = meta.get("namespace")
        if ns is not None:
            ctx.namespace = fr.read_str(ctx, ns, "metadata.namespace")
        spec = fr.read_mapping(ctx, doc.get("spec"), "spec")
        key = (ctx.namespace, ctx.name)
        refs: list[_Ref] = []
        table: dict[tuple[str, str], Any] = acc.drs if kind == "DestinationRule" else acc.vss
        old = table.get(key)
        if kind == "DestinationRule":
            table[key] = _destination_rule(ctx, spec)
        else:
            table[key] = _virtual_service(ctx, spec, refs)
        if old is not None:
            ctx.warn("", f"replaces the {kind} {ctx.name} of {old.source} document {old.document}")
        acc.refs[(kind, key[0], key[1])] = refs


def _ctx_of(acc: _Collected, source: str, document: int, kind: str, name: str) -> Ctx:
    return Ctx(source, acc.warnings, document, kind, name)


def _build(acc: _Collected) -> LabSpec:
    drs = list(acc.drs.values())
    vss = list(acc.vss.values())
    # one DestinationRule and one VirtualService per host
    dr_by_host: dict[str, DestinationRule] = {}
    for dr in drs:
        other = dr_by_host.get(dr.host)
        if other is not None:
            raise _ctx_of(acc, dr.source, dr.document, "DestinationRule", dr.name).error(
                "host",
                f"duplicate DestinationRule for {dr.host}: {other.name} ({other.source} document "
                f"{other.document}) already has it",
            )
        dr_by_host[dr.host] = dr
    vs_by_host: dict[str, VirtualService] = {}
    for vs in vss:
        for i, h in enumerate(vs.hosts):
            other_vs = vs_by_host.get(h)
            if other_vs is not None:
                raise _ctx_of(acc, vs.source, vs.document, "VirtualService", vs.name).error(
                    join("hosts", i),
                    f"{h} already has VirtualService {other_vs.name} ({other_vs.source} "
                    f"document {other_vs.document}); the lab takes one VirtualService per host",
                )
            vs_by_host[h] = vs

    # services, in order of first appearance, and their ports
    order: dict[str, None] = {}
    ports: dict[str, tuple[int, str]] = {}
    topo_by_host: dict[str, _TopoService] = {}
    for t in acc.topo:
        if t.host in topo_by_host:
            raise UsageError(f"{t.where}: service {t.host} is declared twice in the topology")
        topo_by_host[t.host] = t
        order[t.host] = None
        if t.port is not None:
            ports[t.host] = (t.port, t.where)
    for dr in drs:
        order[dr.host] = None
    for vs in vss:
        for h in vs.hosts:
            order[h] = None
    all_refs = [r for refs in acc.refs.values() for r in refs]
    for ref in all_refs:
        order[ref.host] = None
        if ref.port:
            seen = ports.get(ref.host)
            if seen is not None and seen[0] != ref.port:
                raise ref.ctx.error(
                    join(ref.path.removesuffix(".subset"), "port.number"),
                    f"port {ref.port} differs from port {seen[0]} of {ref.host} ({seen[1]}); "
                    "the lab gives each service one port",
                )
            ports.setdefault(ref.host, (ref.port, f"{ref.ctx.where()}: {ref.path}"))

    # every subset referenced must exist
    for ref in all_refs:
        if not ref.subset:
            continue
        dr_for = dr_by_host.get(ref.host)
        if dr_for is None:
            raise ref.ctx.error(
                ref.path,
                f"subset {ref.subset!r} is used but no DestinationRule defines subsets for {ref.host}",
            )
        if dr_for.subset(ref.subset) is None:
            defined = ", ".join(s.name for s in dr_for.subsets) or "none"
            raise ref.ctx.error(
                ref.path,
                f"subset {ref.subset!r} is not defined in DestinationRule {dr_for.name} (defined: {defined})",
            )

    services: list[Service] = []
    for host in order:
        short, ns = host.split(".")[0], host.split(".")[1]
        dr_h = dr_by_host.get(host)
        subsets = dr_h.subsets if dr_h else ()
        topo = topo_by_host.get(host)
        known = {s.name for s in subsets} | {s.labels.get("version", "") for s in subsets}
        extra = tuple(v for v in (topo.versions if topo else ()) if v not in known)
        services.append(
            Service(
                host,
                short,
                ns,
                ports.get(host, (DEFAULT_PORT, ""))[0],
                subsets,
                topo.replicas if topo else 1,
                extra,
            )
        )
    port_of = {s.host: s.port for s in services}

    def fix(d: Destination) -> Destination:
        return replace(d, port=port_of[d.host])

    fixed_vss = tuple(
        replace(
            vs,
            http=tuple(
                replace(
                    r,
                    destinations=tuple(fix(d) for d in r.destinations),
                    mirrors=tuple(replace(m, destination=fix(m.destination)) for m in r.mirrors),
                )
                for r in vs.http
            ),
        )
        for vs in vss
    )
    return LabSpec(tuple(services), tuple(drs), fixed_vss, tuple(acc.warnings), tuple(acc.sources))


def loads(text: str, source: str = "<string>", namespace: str = "default") -> LabSpec:
    """Parse one multi-document YAML text (for tests and for ``lab show``)."""
    acc = _Collected()
    _collect(text, source, namespace, acc)
    return _build(acc)


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read()
    except OSError as exc:
        raise UsageError(f"{path}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise UsageError(f"{path}: not UTF-8 text") from None


def _topology_spec(ctx: Ctx, doc: dict[str, Any]) -> object:
    """A Topology document's ``spec`` (its own fields are checked: ``services`` belongs in ``spec``)."""
    if "services" in doc:
        raise ctx.error("services", "belongs under spec: (spec: {services: [...]}) in a Topology document")
    fr.check_fields(ctx, doc, "", {"apiVersion", "kind", "metadata", "spec"})
    if doc.get("spec") is None:
        raise ctx.error("spec", "required (spec: {services: [...]})")
    return doc["spec"]


def _load_topology(path: str, acc: _Collected, namespace: str = "default") -> None:
    """Read a ``-topology`` file: ``services: [...]`` at the top, or a ``Topology`` document."""
    docs = [d for d in _parse_documents(_read(path), path) if d is not None]
    ctx = Ctx(path, acc.warnings, 0, namespace=namespace)
    acc.sources.append(path)
    if len(docs) == 1 and isinstance(docs[0], dict) and docs[0].get("apiVersion") == LAB_API:
        ctx = replace(
            ctx, document=1, kind="Topology", name=str((docs[0].get("metadata") or {}).get("name", ""))
        )
        acc.topo.extend(_topology(ctx, _topology_spec(ctx, docs[0]), "spec"))
        return
    if len(docs) != 1:
        raise ctx.error("", f"expected one YAML document with 'services:', got {len(docs)}")
    acc.topo.extend(_topology(ctx, docs[0], ""))


def load(paths: list[str], topology: str | None = None, namespace: str = "default") -> LabSpec:
    """Read Istio resource files (later documents replace same-named earlier ones) and the topology."""
    if not paths and topology is None:
        raise UsageError("no resource files given (use -f FILE)")
    acc = _Collected()
    if topology is not None:
        _load_topology(topology, acc, namespace)
    for p in paths:
        _collect(_read(p), p, namespace, acc)
    return _build(acc)


__all__ = ["load", "loads", "parse_duration"]
