"""A :class:`~loadgen.lab.model.LabSpec` → one Envoy bootstrap playing the client's Istio sidecar.

What it is: pure functions that build the bootstrap as a dict (and YAML), following what istiod
generates (``cluster_traffic_policy.go``, ``route/route.go``, ``route/retry/retry.go``):

* Admin on ``127.0.0.1:ports.admin``; a layered runtime with an admin layer (so
  ``POST /runtime_modify`` works) and Istio's ``overload.global_downstream_max_connections``.
* Per service a listener on ``127.0.0.1:ports.listeners[fqdn]`` with an HTTP connection manager
  (``stat_prefix`` ``outbound_0.0.0.0_<port>;`` as Istio's outbound listener; services sharing a
  port share HCM and fault stats, as they share one listener in Istio), the empty
  ``envoy.filters.http.fault`` filter and the router. Its route config holds a virtual host per
  service (domains: short, ``short.ns``, ``short.ns.svc``, FQDN, each with and without
  ``:port``), plus ``*`` on the listener's own service, so ``http://127.0.0.1:PORT/`` works.
* Clusters ``outbound|port||fqdn`` (all endpoints) and ``outbound|port|subset|fqdn`` per subset,
  STATIC endpoints from :class:`Ports`, Istio's thresholds (2^32-1 unless the DestinationRule sets
  a value > 0) with ``track_remaining: true`` (Istio ≥ 1.29 turns it off by default; the lab keeps
  the ``remaining_*`` gauges for its users), ``connect_timeout`` (default 10s, Istio's mesh
  default), HTTP/1.1 upstreams with ``max_requests_per_connection`` / ``idle_timeout`` in
  ``HttpProtocolOptions``, outlier detection as Istio maps it, ``lb_policy`` (LEAST_REQUEST by
  default). Subset policies replace the top-level policy component by component
  (connectionPool, outlierDetection, loadBalancer), and a matching ``portLevelSettings`` entry
  replaces all of them, exactly as Istio's ``MergeTrafficPolicy``.
* Routes: one Envoy route per ``match`` entry (one catch-all when there is none), in order;
  ``timeout`` 0s when unset (Istio's default, not Envoy's 15 s); Istio's default retry policy when
  ``retries`` is unset; mirrors with ``disable_shadow_host_suffix_append: true`` (Istio ≥ 1.28).
  A service without a VirtualService gets Istio's default route to its ``outbound|port||fqdn``.

Stat names (``istio_stat_names``): ``"modern"`` (default, Istio ≥ 1.23) gives every cluster
``alt_stat_name = name + ";"`` so stats read ``cluster.outbound|8000||h;.upstream_rq_total``, and
the HCM prefix ends in ``;``; ``"legacy"`` (Istio < 1.23, and the istio.io docs) has neither, so
stats read ``cluster.outbound|8000||h.upstream_rq_total``. Both use Istio's stats tags for the
Prometheus names.

What it is not: no I/O, no processes, no port picking (the caller passes :class:`Ports`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import yaml  # type: ignore[import-untyped]

from loadgen.lab import render_http as rh
from loadgen.lab.model import (
    DEFAULT_PORT,
    DEFAULT_RETRY_ATTEMPTS,
    DEFAULT_RETRY_ON,
    MAX_DIRECT_BODY,
    ConnectionPool,
    ConsistentHash,
    Destination,
    DestinationRule,
    Fault,
    Fraction,
    HeaderMatch,
    HttpRoute,
    LabSpec,
    OutlierDetection,
    PortTrafficPolicy,
    Retries,
    RouteMatch,
    Service,
    StringMatch,
    Subset,
    TrafficPolicy,
    cluster_name,
)
from loadgen.lab.render_http import fmt_duration

MAX_U32 = 2**32 - 1
DEFAULT_CONNECT_TIMEOUT_NS = 10 * 10**9  # Istio meshConfig.connectTimeout default
ACCESS_LOG_FILE = "envoy-access.log"
ISTIO_ACCESS_LOG_FORMAT = (
    '[%START_TIME%] "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%" %RESPONSE_CODE% '
    "%RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS% %CONNECTION_TERMINATION_DETAILS% "
    '"%UPSTREAM_TRANSPORT_FAILURE_REASON%" %BYTES_RECEIVED% %BYTES_SENT% %DURATION% '
    '%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% "%REQ(X-FORWARDED-FOR)%" "%REQ(USER-AGENT)%" '
    '"%REQ(X-REQUEST-ID)%" "%REQ(:AUTHORITY)%" "%UPSTREAM_HOST%" %UPSTREAM_CLUSTER_RAW% '
    "%UPSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_REMOTE_ADDRESS% "
    "%REQUESTED_SERVER_NAME% %ROUTE_NAME%\n"
)
"""Istio's default text access-log format (meshConfig.accessLogFormat unset)."""

_T = "type.googleapis.com/envoy.extensions."
HCM_TYPE = _T + "filters.network.http_connection_manager.v3.HttpConnectionManager"
FAULT_TYPE = _T + "filters.http.fault.v3.HTTPFault"
ROUTER_TYPE = _T + "filters.http.router.v3.Router"
FILE_LOG_TYPE = _T + "access_loggers.file.v3.FileAccessLog"
HTTP_OPTIONS_KEY = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
HTTP_OPTIONS_TYPE = _T + "upstreams.http.v3.HttpProtocolOptions"
PREVIOUS_HOSTS = {
    "name": "envoy.retry_host_predicates.previous_hosts",
    "typed_config": {"@type": _T + "retry.host.previous_hosts.v3.PreviousHostsPredicate"},
}
STAT_NAME_MODES = ("modern", "legacy")

# Istio's bootstrap stats tags (tools/packaging/common/envoy_bootstrap.json); the cluster regex
# differs before and after the ';' delimiter (Istio 1.23, PR #51861).
_CLUSTER_TAG = {
    "modern": r"^cluster(\.(.+);)",
    "legacy": r"^cluster\.((.+?(\..+?\.svc\.cluster\.local)?)\.)",
}
_HCM_TAG = {
    "modern": r"^http\.(((?:[_.[:digit:]\w]*|[_\[\]aAbBcCdDeEfF[:digit:]\w\:]*));\.)",
    "legacy": r"^http\.(((?:[_.[:digit:]]*|[_\[\]aAbBcCdDeEfF[:digit:]]*)_\d+)\.)",
}


@dataclass(frozen=True)
class Ports:
    """Where things listen: admin, one listener per service FQDN, endpoints per (FQDN, subset).

    ``upstreams[(fqdn, "")]`` holds the endpoints of *all* versions (the ``outbound|port||fqdn``
    cluster); ``upstreams[(fqdn, subset)]`` those of one subset.
    """

    admin: int
    listeners: dict[str, int]
    upstreams: dict[tuple[str, str], tuple[tuple[str, int], ...]]


# --------------------------------------------------------------------------- small helpers


def _fraction(f: Fraction) -> dict[str, Any]:
    return {"numerator": f.numerator, "denominator": f.denominator}


def _string_match(m: StringMatch) -> dict[str, Any]:
    if m.kind == "regex":
        return {"safe_regex": {"regex": m.value}}
    return {m.kind: m.value}  # exact / prefix


# --------------------------------------------------------------------------- clusters


def _port_level(policy: TrafficPolicy, port: int) -> TrafficPolicy:
    """A matching portLevelSettings entry replaces every component (no inheritance), as in Istio."""
    src: TrafficPolicy | PortTrafficPolicy = next((pl for pl in policy.port_level if pl.port == port), policy)
    return TrafficPolicy(
        src.connection_pool, src.outlier_detection, src.load_balancer, consistent_hash=src.consistent_hash
    )


def effective_policy(dr: DestinationRule | None, subset: Subset | None, port: int) -> TrafficPolicy | None:
    """Istio's ``MergeTrafficPolicy``: top level (port-merged), then the subset's components over it
    (the load balancer settings, ``simple`` or ``consistentHash``, as one component)."""
    top = _port_level(dr.policy, port) if dr is not None and dr.policy is not None else None
    if subset is None or subset.policy is None:
        return top
    sub = subset.policy
    lb_from = sub if (sub.load_balancer is not None or sub.consistent_hash is not None) else top
    merged = TrafficPolicy(
        sub.connection_pool if sub.connection_pool is not None else (top.connection_pool if top else None),
        sub.outlier_detection
        if sub.outlier_detection is not None
        else (top.outlier_detection if top else None),
        lb_from.load_balancer if lb_from else None,
        sub.port_level,
        consistent_hash=lb_from.consistent_hash if lb_from else None,
    )
    return _port_level(merged, port) if sub.port_level else merged


def _thresholds(cp: ConnectionPool | None) -> dict[str, Any]:
    t = {
        "max_connections": MAX_U32,
        "max_pending_requests": MAX_U32,
        "max_requests": MAX_U32,
        "max_retries": MAX_U32,
        "track_remaining": True,
    }
    if cp is not None:
        for key, value in (
            ("max_connections", cp.max_connections),
            ("max_pending_requests", cp.http1_max_pending_requests),
            ("max_requests", cp.http2_max_requests),
            ("max_retries", cp.max_retries),
        ):
            if value:
                t[key] = value
    return t


def _outlier(od: OutlierDetection) -> dict[str, Any]:
    out: dict[str, Any] = {"enforcing_success_rate": 0}
    if od.consecutive_5xx_errors is not None:
        out["consecutive_5xx"] = od.consecutive_5xx_errors
        out["enforcing_consecutive_5xx"] = 100 if od.consecutive_5xx_errors > 0 else 0
    if od.consecutive_gateway_errors is not None:
        out["consecutive_gateway_failure"] = od.consecutive_gateway_errors
        out["enforcing_consecutive_gateway_failure"] = 100 if od.consecutive_gateway_errors > 0 else 0
    if od.interval_ns is not None:
        out["interval"] = fmt_duration(od.interval_ns)
    if od.base_ejection_time_ns is not None:
        out["base_ejection_time"] = fmt_duration(od.base_ejection_time_ns)
    if od.max_ejection_percent > 0:
        out["max_ejection_percent"] = od.max_ejection_percent
    if od.split_external_local_origin_errors:
        out["split_external_local_origin_errors"] = True
        if od.consecutive_local_origin_failures:
            out["consecutive_local_origin_failure"] = od.consecutive_local_origin_failures
            out["enforcing_consecutive_local_origin_failure"] = 100
        out["enforcing_local_origin_success_rate"] = 0
    return out


def _cluster(
    name: str, endpoints: tuple[tuple[str, int], ...], policy: TrafficPolicy | None, stat_names: str
) -> dict[str, Any]:
    cp = policy.connection_pool if policy else None
    connect = (
        cp.connect_timeout_ns if cp and cp.connect_timeout_ns is not None else DEFAULT_CONNECT_TIMEOUT_NS
    )
    c: dict[str, Any] = {"name": name}
    if stat_names == "modern":
        c["alt_stat_name"] = name + ";"
    c["type"] = "STATIC"
    c["connect_timeout"] = fmt_duration(connect)
    ch = policy.consistent_hash if policy else None
    if ch is not None:
        c.update(rh.hash_lb(ch))
    else:
        c["lb_policy"] = (policy.load_balancer if policy else None) or "LEAST_REQUEST"
    c["circuit_breakers"] = {"thresholds": [_thresholds(cp)]}
    common: dict[str, Any] = {}
    if cp is not None:
        idle = cp.idle_timeout_ns if cp.idle_timeout_ns is not None else cp.tcp_idle_timeout_ns
        if idle is not None:
            common["idle_timeout"] = fmt_duration(idle)
        if cp.max_requests_per_connection:
            common["max_requests_per_connection"] = cp.max_requests_per_connection
        if cp.max_connection_duration_ns is not None:
            common["max_connection_duration"] = fmt_duration(cp.max_connection_duration_ns)
        if cp.tcp_keepalive is not None:
            probes, time_ns, interval_ns = cp.tcp_keepalive
            ka: dict[str, Any] = {}
            if probes is not None:
                ka["keepalive_probes"] = probes
            if time_ns is not None:
                ka["keepalive_time"] = time_ns // 10**9
            if interval_ns is not None:
                ka["keepalive_interval"] = interval_ns // 10**9
            c["upstream_connection_options"] = {"tcp_keepalive": ka}
    options: dict[str, Any] = {"@type": HTTP_OPTIONS_TYPE}
    if common:
        options["common_http_protocol_options"] = common
    options["explicit_http_config"] = {"http_protocol_options": {}}  # a port named "http": HTTP/1.1
    c["typed_extension_protocol_options"] = {HTTP_OPTIONS_KEY: options}
    od = policy.outlier_detection if policy else None
    if od is not None:
        c["outlier_detection"] = _outlier(od)
        c["common_lb_config"] = {"healthy_panic_threshold": {"value": float(od.min_health_percent)}}
    c["load_assignment"] = {
        "cluster_name": name,
        "endpoints": [
            {
                "lb_endpoints": [
                    {"endpoint": {"address": {"socket_address": {"address": h, "port_value": p}}}}
                    for h, p in endpoints
                ]
            }
        ],
    }
    return c


def cluster_for(policy: TrafficPolicy | None) -> dict[str, Any]:
    """The cluster Istio gives a sidecar for this (effective) policy, without name or endpoints."""
    return _cluster("", (), policy, "modern")


def _endpoints(ports: Ports, host: str, subset: str) -> tuple[tuple[str, int], ...]:
    try:
        return ports.upstreams[(host, subset)]
    except KeyError:
        raise ValueError(f"Ports.upstreams has no entry for ({host!r}, {subset!r})") from None


def clusters(spec: LabSpec, ports: Ports, stat_names: str = "modern") -> list[dict[str, Any]]:
    """Every service's ``outbound|port||fqdn`` cluster and one per subset, in service order."""
    out: list[dict[str, Any]] = []
    for svc in spec.services:
        dr = spec.destination_rule(svc.host)
        out.append(
            _cluster(
                cluster_name(svc.host, svc.port),
                _endpoints(ports, svc.host, ""),
                effective_policy(dr, None, svc.port),
                stat_names,
            )
        )
        for sub in svc.subsets:
            out.append(
                _cluster(
                    cluster_name(svc.host, svc.port, sub.name),
                    _endpoints(ports, svc.host, sub.name),
                    effective_policy(dr, sub, svc.port),
                    stat_names,
                )
            )
    return out


# --------------------------------------------------------------------------- routes


def retry_policy(r: Retries | None, consistent_hash: bool = False) -> dict[str, Any] | None:
    """Istio's ``retry.ConvertPolicy``: default when unset, ``None`` when ``attempts`` is 0. With
    consistent hashing the default has no ``previous_hosts`` predicate (retries stay on the
    hashed host) unless ``retryIgnorePreviousHosts: true`` asks for it."""
    policy: dict[str, Any] = {
        "retry_on": DEFAULT_RETRY_ON,
        "num_retries": DEFAULT_RETRY_ATTEMPTS,
        "retry_host_predicate": [PREVIOUS_HOSTS],
        "host_selection_retry_max_attempts": 5,
    }
    if consistent_hash:
        del policy["retry_host_predicate"]
    if r is None:
        return policy
    if r.attempts <= 0:
        return None
    policy["num_retries"] = r.attempts
    if r.retry_on:
        words: list[str] = []
        codes: list[int] = []
        for part in (p.strip() for p in r.retry_on.split(",")):
            if not part:
                continue
            if part.isdigit() and int(part) in HTTPStatus._value2member_map_:
                codes.append(int(part))
            else:
                words.append(part)
        if codes and "retriable-status-codes" not in words:
            words.append("retriable-status-codes")
        policy["retry_on"] = ",".join(words)
        if codes:
            policy["retriable_status_codes"] = codes
    if r.per_try_timeout_ns is not None:
        policy["per_try_timeout"] = fmt_duration(r.per_try_timeout_ns)
    if r.ignore_previous_hosts is False:
        policy.pop("retry_host_predicate", None)
    elif r.ignore_previous_hosts is True:
        policy["retry_host_predicate"] = [PREVIOUS_HOSTS]
    if r.backoff_ns is not None:
        policy["retry_back_off"] = {"base_interval": fmt_duration(r.backoff_ns)}
    return policy


def _header(h: HeaderMatch) -> dict[str, Any]:
    out: dict[str, Any] = {"name": h.name}
    if h.match.kind == "present":
        out["present_match"] = True
    else:
        out["string_match"] = _string_match(h.match)
    if h.invert:
        out["invert_match"] = True
    return out


def route_match(m: RouteMatch | None) -> dict[str, Any]:
    """Istio's ``TranslateRouteMatch`` for one ``match`` entry (``None``: everything)."""
    out: dict[str, Any] = {}
    if m is None or m.uri is None:
        out["prefix"] = "/"
    elif m.uri.kind == "exact":
        out["path"] = m.uri.value
    elif m.uri.kind == "prefix":
        out["prefix"] = m.uri.value
    else:
        out["safe_regex"] = {"regex": m.uri.value}
    if m is None:
        return out
    if m.ignore_uri_case:
        out["case_sensitive"] = False
    if m.headers:
        out["headers"] = [_header(h) for h in m.headers]
    if m.query_params:
        out["query_parameters"] = [
            {"name": n, "present_match": True}
            if sm.kind == "present"
            else {"name": n, "string_match": _string_match(sm)}
            for n, sm in m.query_params
        ]
    return out


def fault_config(f: Fault) -> dict[str, Any]:
    """Istio's ``TranslateFault``: the per-route ``HTTPFault``."""
    out: dict[str, Any] = {"@type": FAULT_TYPE}
    if f.delay is not None:
        out["delay"] = {
            "fixed_delay": fmt_duration(f.delay.fixed_delay_ns),
            "percentage": _fraction(f.delay.percentage),
        }
    if f.abort is not None:
        abort: dict[str, Any] = {"http_status": f.abort.http_status}
        if f.abort.percentage is not None:
            abort["percentage"] = _fraction(f.abort.percentage)
        out["abort"] = abort
    return out


def _dest_cluster(d: Destination) -> str:
    return cluster_name(d.host, d.port, d.subset)


HashOf = Callable[[Destination], "ConsistentHash | None"]


def _no_hash(d: Destination) -> ConsistentHash | None:
    return None


def _port_hash(policy: TrafficPolicy | None, port: int) -> ConsistentHash | None:
    for pl in policy.port_level if policy is not None else ():
        if pl.port == port:
            return pl.consistent_hash  # the first entry for the port decides, hash or not
    return None


def hash_lookup(spec: LabSpec) -> HashOf:
    """A route destination's consistent hash, in Istio's order (``hashForHTTPDestination``): the
    subset's port-level hash, the subset's, the port-level one, the top-level one. Port-level
    entries count only when the destination names its port."""

    def hash_of(d: Destination) -> ConsistentHash | None:
        dr = spec.destination_rule(d.host)
        if dr is None:
            return None
        sub = dr.subset(d.subset) if d.subset else None
        sub_policy = sub.policy if sub is not None else None
        candidates = (
            _port_hash(sub_policy, d.port) if d.port_given else None,
            sub_policy.consistent_hash if sub_policy is not None else None,
            _port_hash(dr.policy, d.port) if d.port_given else None,
            dr.policy.consistent_hash if dr.policy is not None else None,
        )
        return next((h for h in candidates if h is not None), None)

    return hash_of


def service_hash(spec: LabSpec, svc: Service) -> ConsistentHash | None:
    """The hash of a service's default route (Istio's ``hashForService``): the top level, replaced
    by the service port's entry when that has one."""
    dr = spec.destination_rule(svc.host)
    if dr is None or dr.policy is None:
        return None
    return _port_hash(dr.policy, svc.port) or dr.policy.consistent_hash


def route_action(r: HttpRoute, hash_of: HashOf = _no_hash) -> dict[str, Any]:
    """The ``route`` action of a forwarding http route (Istio's ``applyHTTPRouteDestination``)."""
    action: dict[str, Any] = {}
    single = len(r.destinations) == 1  # Istio decides on the list as written (100/0 stays weighted)
    dests = list(r.destinations) if single else [d for d in r.destinations if d.weight > 0]
    authority = r.headers.authority if r.headers is not None else ""
    if r.rewrite is not None:
        action.update(rh.rewrite_fields(r.rewrite))
        authority = r.rewrite.authority or authority
    if single:
        action["cluster"] = _dest_cluster(dests[0])
        if not authority and dests[0].headers is not None:
            authority = dests[0].headers.authority  # only when the route sets none
    else:
        weighted: list[dict[str, Any]] = []
        for d in dests:
            cw: dict[str, Any] = {"name": _dest_cluster(d), "weight": d.weight}
            if d.headers is not None:
                cw.update(rh.header_fields(d.headers))
                if d.headers.authority:
                    cw["host_rewrite_literal"] = d.headers.authority
            weighted.append(cw)
        action["weighted_clusters"] = {"clusters": weighted}
    if authority:
        action["host_rewrite_literal"] = authority
    action["timeout"] = fmt_duration(r.timeout_ns or 0)
    hashes = [hash_of(d) for d in dests]
    policies = [rh.hash_policy(h) for h in hashes if h is not None]
    if policies:
        action["hash_policy"] = policies
    rp = retry_policy(r.retries, consistent_hash=single and hashes[0] is not None)
    if rp is not None:
        action["retry_policy"] = rp
    if r.mirrors:
        action["request_mirror_policies"] = [
            {
                "cluster": _dest_cluster(m.destination),
                "runtime_fraction": {"default_value": _fraction(m.percentage)},
                "trace_sampled": False,
                "disable_shadow_host_suffix_append": True,
            }
            for m in r.mirrors
        ]
    return action


def http_routes(
    r: HttpRoute, listen_port: int = DEFAULT_PORT, hash_of: HashOf = _no_hash
) -> list[dict[str, Any]]:
    """One Envoy route per match entry of one VirtualService ``http`` route (one when no match);
    ``listen_port`` is the service port (what a redirect's ``derivePort: FROM_REQUEST_PORT`` uses)."""
    what: dict[str, Any]
    if r.redirect is not None:
        what = {"redirect": rh.redirect_action(r.redirect, listen_port)}
    elif r.direct_response is not None:
        what = {"direct_response": rh.direct_response_action(r.direct_response)}
    else:
        what = {"route": route_action(r, hash_of)}
    headers: dict[str, Any] = rh.header_fields(r.headers) if r.headers is not None else {}
    if "route" in what and len(r.destinations) == 1 and r.destinations[0].headers is not None:
        rh.merge_header_fields(headers, rh.header_fields(r.destinations[0].headers))
    out: list[dict[str, Any]] = []
    for m in r.matches or (None,):
        route: dict[str, Any] = {}
        if r.name:
            route["name"] = r.name
        route["match"] = route_match(m)
        route.update(what)
        route.update(headers)
        if m is not None and m.stat_prefix:
            route["stat_prefix"] = m.stat_prefix
        if r.fault is not None:
            route["typed_per_filter_config"] = {"envoy.filters.http.fault": fault_config(r.fault)}
        out.append(route)
    return out


def default_route(svc: Service, h: ConsistentHash | None = None) -> dict[str, Any]:
    """Istio's ``BuildDefaultHTTPOutboundRoute``: to ``outbound|port||fqdn``, default retries, no
    timeout; the service's consistent hash, if its DestinationRule has one."""
    action: dict[str, Any] = {
        "cluster": cluster_name(svc.host, svc.port),
        "timeout": "0s",
        "retry_policy": retry_policy(None),
    }
    if h is not None:
        action["hash_policy"] = [rh.hash_policy(h)]
    return {"name": "default", "match": {"prefix": "/"}, "route": action}


def virtual_host(spec: LabSpec, svc: Service, *, catch_all: bool) -> dict[str, Any]:
    vs = spec.virtual_service(svc.host)
    hash_of = hash_lookup(spec)
    routes = (
        [rt for r in vs.http for rt in http_routes(r, svc.port, hash_of)]
        if vs is not None
        else [default_route(svc, service_hash(spec, svc))]
    )
    domains = list(svc.domains()) + (["*"] if catch_all else [])
    return {"name": f"{svc.host}:{svc.port}", "domains": domains, "routes": routes}


# --------------------------------------------------------------------------- listeners and bootstrap


def _listener(
    spec: LabSpec, svc: Service, port: int, stat_names: str, access_log_dir: str | None
) -> dict[str, Any]:
    suffix = ";" if stat_names == "modern" else ""
    own = [virtual_host(spec, svc, catch_all=True)]
    others = [virtual_host(spec, s, catch_all=False) for s in spec.services if s.host != svc.host]
    hcm: dict[str, Any] = {
        "@type": HCM_TYPE,
        "stat_prefix": f"outbound_0.0.0.0_{svc.port}{suffix}",
        "route_config": {
            "name": str(svc.port),
            "virtual_hosts": own + others,
            "max_direct_response_body_size_bytes": MAX_DIRECT_BODY,  # Istio's sidecar route config
        },
        "http_filters": [
            {"name": "envoy.filters.http.fault", "typed_config": {"@type": FAULT_TYPE}},
            {"name": "envoy.filters.http.router", "typed_config": {"@type": ROUTER_TYPE}},
        ],
    }
    if access_log_dir is not None:
        hcm["access_log"] = [
            {
                "name": "envoy.access_loggers.file",
                "typed_config": {
                    "@type": FILE_LOG_TYPE,
                    "path": os.path.join(access_log_dir, ACCESS_LOG_FILE),
                    "log_format": {"text_format_source": {"inline_string": ISTIO_ACCESS_LOG_FORMAT}},
                },
            }
        ]
    return {
        "name": f"outbound_{svc.short}.{svc.namespace}_{svc.port}",
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
        "traffic_direction": "OUTBOUND",
        "filter_chains": [
            {"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}]}
        ],
    }


def _stats_config(stat_names: str) -> dict[str, Any]:
    return {
        "use_all_default_tags": False,
        "stats_tags": [
            {"tag_name": "cluster_name", "regex": _CLUSTER_TAG[stat_names]},
            {"tag_name": "http_conn_manager_prefix", "regex": _HCM_TAG[stat_names]},
            {"tag_name": "response_code", "regex": r"_rq(_(\d{3}))$"},
            {"tag_name": "response_code_class", "regex": r"_rq(_(\dxx))$"},
            {
                "tag_name": "http_conn_manager_listener_prefix",
                "regex": r"^listener(?=\.).*?\.http\.(((?:[_.[:digit:]]*|[_\[\]aAbBcCdDeEfF[:digit:]]*))\.)",
            },
            {
                "tag_name": "listener_address",
                "regex": r"^listener\.(((?:[_.[:digit:]]*|[_\[\]aAbBcCdDeEfF[:digit:]]*))\.)",
            },
        ],
    }


def render(
    spec: LabSpec, ports: Ports, *, access_log_dir: str | None = None, istio_stat_names: str = "modern"
) -> dict[str, Any]:
    """The Envoy bootstrap (v3) as a dict; raises ``ValueError`` when ``ports`` lacks an entry."""
    if istio_stat_names not in STAT_NAME_MODES:
        raise ValueError(f"istio_stat_names must be one of {STAT_NAME_MODES}, not {istio_stat_names!r}")
    listeners = []
    for svc in spec.services:
        if svc.host not in ports.listeners:
            raise ValueError(f"Ports.listeners has no port for {svc.host!r}")
        listeners.append(_listener(spec, svc, ports.listeners[svc.host], istio_stat_names, access_log_dir))
    return {
        "node": {
            "id": "sidecar~127.0.0.1~loadgen-lab.default~default.svc.cluster.local",
            "cluster": "loadgen-lab",
        },
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": ports.admin}}},
        "stats_config": _stats_config(istio_stat_names),
        "layered_runtime": {
            "layers": [
                {
                    "name": "global config",
                    "static_layer": {"overload.global_downstream_max_connections": 2147483647},
                },
                {"name": "admin", "admin_layer": {}},
            ]
        },
        "static_resources": {"listeners": listeners, "clusters": clusters(spec, ports, istio_stat_names)},
    }


def render_yaml(spec: LabSpec, ports: Ports, **kw: Any) -> str:
    """:func:`render` as YAML, headed by comments naming the sources and the warnings."""
    head = [
        "# Envoy bootstrap rendered by `loadgen lab` (an Istio client sidecar, shaped as istiod renders it)"
    ]
    head += [f"# source: {s}" for s in spec.sources]
    head += [f"# warning: {w}" for w in spec.warnings]
    body = yaml.safe_dump(render(spec, ports, **kw), sort_keys=False, default_flow_style=False, width=120)
    return "\n".join(head) + "\n" + str(body)
