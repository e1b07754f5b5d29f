"""The typed catalogue of the Envoy stats loadgen reads: circuit breakers, overflow, outlier, fault.

What it is: the stat names exactly as Envoy 1.40 prints them (after ``cluster.<name>.`` or
``http.<prefix>.``), each with its kind (counter or gauge) and what it means for someone tripping
a circuit breaker; plus the full list of per-cluster stat names Envoy 1.40 creates (used to split
``cluster.<name>.<stat>`` when the cluster name itself contains dots, and to map Prometheus names
back), and the kind of every gauge (everything else is a counter). Counters that do not exist yet
(``upstream_rq_503`` appears only after the first 503) read as 0: see :func:`value`.

What it is not: no I/O and no parsing; see :mod:`loadgen.envoy.stats` and :mod:`loadgen.envoy.admin`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

Kind = Literal["counter", "gauge"]
Scope = Literal["cluster", "http"]


@dataclass(frozen=True)
class Stat:
    """One catalogue entry: ``name`` relative to its scope (``cluster.<c>.`` or ``http.<prefix>.``)."""

    name: str
    kind: Kind
    scope: Scope
    meaning: str


def _words(text: str) -> list[str]:
    return text.split()


def _c(name: str, kind: Kind, meaning: str) -> Stat:
    return Stat(name, kind, "cluster", meaning)


_CB_GAUGES = {
    "cx_open": "max_connections breaker at its limit now (0/1)",
    "cx_pool_open": "max_connection_pools breaker at its limit now (0/1)",
    "rq_pending_open": "max_pending_requests breaker at its limit now (0/1)",
    "rq_open": "max_requests breaker at its limit now (0/1)",
    "rq_retry_open": "max_retries breaker at its limit now (0/1)",
}
_CB_REMAINING = {
    "remaining_cx": "connections left before max_connections (only with track_remaining)",
    "remaining_pending": "pending requests left before max_pending_requests (only with track_remaining)",
    "remaining_rq": "requests left before max_requests (only with track_remaining)",
    "remaining_retries": "retries left before max_retries (only with track_remaining)",
    "remaining_cx_pools": "connection pools left before max_connection_pools (only with track_remaining)",
}

CATALOGUE: tuple[Stat, ...] = (
    _c(
        "upstream_rq_pending_overflow",
        "counter",
        "requests rejected with a local 503 by max_pending_requests (before Envoy 1.38 also by max_requests)",
    ),
    _c(
        "upstream_rq_active_overflow",
        "counter",
        "requests rejected with a local 503 by max_requests (Envoy >= 1.38)",
    ),
    _c(
        "upstream_cx_overflow",
        "counter",
        "times max_connections stopped a new connection (the request waits as pending; "
        "not a rejection count)",
    ),
    _c("upstream_cx_pool_overflow", "counter", "times max_connection_pools stopped a new pool"),
    _c(
        "upstream_rq_retry_overflow",
        "counter",
        "retries not attempted because of max_retries or the retry budget "
        "(client gets the upstream's response)",
    ),
    _c("upstream_rq_pending_total", "counter", "requests that had to wait for a connection"),
    _c("upstream_rq_pending_active", "gauge", "requests waiting for a connection now"),
    _c("upstream_rq_pending_failure_eject", "counter", "pending requests failed by a connection failure"),
    _c("upstream_rq_active", "gauge", "requests in flight to the upstream now"),
    _c(
        "upstream_rq_total",
        "counter",
        "requests sent on an upstream connection, retries included (not overflows)",
    ),
    _c("upstream_rq_completed", "counter", "requests completed, local overflow 503s included"),
    _c("upstream_rq_503", "counter", "503 responses, local overflow 503s included (created on first use)"),
    _c("upstream_rq_5xx", "counter", "5xx responses, local overflow 503s included (created on first use)"),
    _c("upstream_rq_retry", "counter", "retries attempted"),
    _c("upstream_rq_retry_success", "counter", "retries that succeeded"),
    _c("upstream_rq_retry_limit_exceeded", "counter", "requests whose retries ran out"),
    _c("upstream_rq_timeout", "counter", "requests that hit the route timeout (client gets 504)"),
    _c("upstream_rq_per_try_timeout", "counter", "attempts that hit the per-try timeout"),
    _c("upstream_cx_total", "counter", "upstream connections opened"),
    _c("upstream_cx_active", "gauge", "upstream connections open now"),
    _c("upstream_cx_connect_fail", "counter", "upstream connections that failed to connect"),
    _c("upstream_cx_max_requests", "counter", "connections closed by max_requests_per_connection"),
    _c("upstream_cx_none_healthy", "counter", "requests with no healthy host (503 'no healthy upstream')"),
    *(
        _c(f"circuit_breakers.{p}.{k}", "gauge", f"{p} priority: {m}")
        for p in ("default", "high")
        for k, m in _CB_GAUGES.items()
    ),
    *(_c(f"circuit_breakers.default.{k}", "gauge", m) for k, m in _CB_REMAINING.items()),
    _c("outlier_detection.ejections_active", "gauge", "hosts ejected now"),
    _c("outlier_detection.ejections_total", "counter", "ejections (deprecated total, enforced or not)"),
    _c("outlier_detection.ejections_enforced_total", "counter", "ejections enforced"),
    _c("outlier_detection.ejections_overflow", "counter", "ejections skipped by max_ejection_percent"),
    _c(
        "outlier_detection.ejections_enforced_consecutive_5xx",
        "counter",
        "ejections enforced for consecutive 5xx",
    ),
    _c(
        "outlier_detection.ejections_detected_consecutive_5xx", "counter", "consecutive-5xx outliers detected"
    ),
    _c(
        "outlier_detection.ejections_enforced_consecutive_gateway_failure",
        "counter",
        "ejections enforced for consecutive gateway failures",
    ),
    _c(
        "outlier_detection.ejections_detected_consecutive_gateway_failure",
        "counter",
        "consecutive-gateway-failure outliers detected",
    ),
    Stat("fault.delays_injected", "counter", "http", "requests delayed by the fault filter"),
    Stat("fault.aborts_injected", "counter", "http", "requests aborted by the fault filter (local response)"),
    Stat("fault.active_faults", "gauge", "http", "faults active now"),
    Stat("fault.faults_overflow", "counter", "http", "faults not injected because of max_active_faults"),
    Stat("downstream_rq_total", "counter", "http", "requests received by the connection manager"),
    Stat("downstream_rq_5xx", "counter", "http", "5xx responses sent downstream"),
)

BY_NAME: dict[tuple[Scope, str], Stat] = {(s.scope, s.name): s for s in CATALOGUE}
CLUSTER_CATALOGUE: tuple[Stat, ...] = tuple(s for s in CATALOGUE if s.scope == "cluster")
HTTP_CATALOGUE: tuple[Stat, ...] = tuple(s for s in CATALOGUE if s.scope == "http")

#: Local circuit-breaker rejections (each one a client 503 with ``x-envoy-overloaded``).
REJECTION_STATS = ("upstream_rq_pending_overflow", "upstream_rq_active_overflow")

#: Every per-cluster stat name Envoy 1.40 creates for a static HTTP cluster (captured from a real
#: ``/stats``; ``upstream_rq_<code>``/``<N>xx`` and the ``external.``/``internal.``/``canary.``
#: variants are matched by :data:`DYNAMIC_CLUSTER_STAT`).
CLUSTER_STATS: frozenset[str] = frozenset(
    _words("""
assignment_stale assignment_timeout_received assignment_use_cached bind_errors default.total_match_count
http1.dropped_headers_with_underscores http1.metadata_not_supported_error
http1.requests_rejected_with_underscores_in_headers http1.response_flood
http2.dropped_headers_with_underscores http2.header_overflow http2.headers_cb_no_stream
http2.inbound_empty_frames_flood http2.inbound_priority_frames_flood
http2.inbound_window_update_frames_flood http2.keepalive_timeout http2.metadata_empty_frames
http2.outbound_control_flood http2.outbound_flood http2.pending_send_bytes
http2.requests_rejected_with_underscores_in_headers http2.rx_messaging_error http2.rx_reset
http2.streams_active http2.stream_refused_errors http2.trailers http2.tx_flush_timeout http2.tx_reset
lb_healthy_panic lb_local_cluster_not_ok lb_recalculate_zone_structures lb_subsets_active
lb_subsets_created lb_subsets_fallback lb_subsets_fallback_panic lb_subsets_removed lb_subsets_selected
lb_zone_cluster_too_small lb_zone_no_capacity_left lb_zone_routing_all_directly
lb_zone_routing_cross_zone lb_zone_routing_sampled max_host_weight membership_change membership_degraded
membership_excluded membership_healthy membership_total original_dst_host_invalid
retry_or_shadow_abandoned update_attempt update_empty update_failure update_no_rebuild update_success
upstream_cx_active upstream_cx_close_notify upstream_cx_connect_attempts_exceeded
upstream_cx_connect_fail upstream_cx_connect_timeout upstream_cx_connect_with_0_rtt upstream_cx_destroy
upstream_cx_destroy_local upstream_cx_destroy_local_with_active_rq upstream_cx_destroy_remote
upstream_cx_destroy_remote_with_active_rq upstream_cx_destroy_with_active_rq upstream_cx_http1_total
upstream_cx_http2_total upstream_cx_http3_total upstream_cx_idle_timeout upstream_cx_max_duration_reached
upstream_cx_max_requests upstream_cx_none_healthy upstream_cx_overflow upstream_cx_pool_overflow
upstream_cx_preconnect_skipped upstream_cx_protocol_error upstream_cx_rx_bytes_buffered
upstream_cx_rx_bytes_total upstream_cx_total upstream_cx_tx_bytes_buffered upstream_cx_tx_bytes_total
upstream_flow_control_backed_up_total upstream_flow_control_drained_total
upstream_flow_control_paused_reading_total upstream_flow_control_resumed_reading_total
upstream_http3_broken upstream_internal_redirect_failed_total upstream_internal_redirect_succeeded_total
upstream_queue_overloaded upstream_rq_0rtt upstream_rq_active upstream_rq_active_overflow
upstream_rq_cancelled upstream_rq_completed upstream_rq_maintenance_mode upstream_rq_max_duration_reached
upstream_rq_pending_active upstream_rq_pending_failure_eject upstream_rq_pending_overflow
upstream_rq_pending_total upstream_rq_per_try_idle_timeout upstream_rq_per_try_timeout upstream_rq_retry
upstream_rq_retry_backoff_exponential upstream_rq_retry_backoff_ratelimited
upstream_rq_retry_limit_exceeded upstream_rq_retry_overflow upstream_rq_retry_success
upstream_rq_rx_reset upstream_rq_rx_reset_no_error upstream_rq_timeout upstream_rq_total
upstream_rq_tx_reset version warming_state external.upstream_rq_completed internal.upstream_rq_completed
outlier_detection.ejections_active outlier_detection.ejections_consecutive_5xx
outlier_detection.ejections_detected_consecutive_5xx
outlier_detection.ejections_detected_consecutive_gateway_failure
outlier_detection.ejections_detected_consecutive_local_origin_failure
outlier_detection.ejections_detected_degradation outlier_detection.ejections_detected_failure_percentage
outlier_detection.ejections_detected_local_origin_failure_percentage
outlier_detection.ejections_detected_local_origin_success_rate
outlier_detection.ejections_detected_success_rate outlier_detection.ejections_enforced_consecutive_5xx
outlier_detection.ejections_enforced_consecutive_gateway_failure
outlier_detection.ejections_enforced_consecutive_local_origin_failure
outlier_detection.ejections_enforced_failure_percentage
outlier_detection.ejections_enforced_local_origin_failure_percentage
outlier_detection.ejections_enforced_local_origin_success_rate
outlier_detection.ejections_enforced_success_rate outlier_detection.ejections_enforced_total
outlier_detection.ejections_overflow outlier_detection.ejections_success_rate
outlier_detection.ejections_total
""")
) | frozenset(s.name for s in CLUSTER_CATALOGUE)

#: ``upstream_rq_503``, ``upstream_rq_5xx``, ``external.upstream_rq_200``, ``internal.upstream_rq_2xx`` ...
DYNAMIC_CLUSTER_STAT = re.compile(r"(?:(?:external|internal|canary)\.)?upstream_rq_(?:\d{3}|\dxx)")

#: Stats (relative to their scope) that are gauges; everything else Envoy prints as a number is a counter.
GAUGES: frozenset[str] = frozenset(
    _words("""
lb_subsets_active max_host_weight membership_degraded membership_excluded membership_healthy
membership_total outlier_detection.ejections_active upstream_cx_active upstream_cx_rx_bytes_buffered
upstream_cx_tx_bytes_buffered upstream_queue_overloaded upstream_rq_active upstream_rq_pending_active
version warming_state http2.streams_active http2.pending_send_bytes downstream_cx_active
downstream_cx_http1_active downstream_cx_http1_soft_drain downstream_cx_http2_active
downstream_cx_http3_active downstream_cx_rx_bytes_buffered downstream_cx_ssl_active
downstream_cx_tx_bytes_buffered downstream_cx_upgrades_active downstream_rq_active fault.active_faults
""")
) | frozenset(s.name for s in CATALOGUE if s.kind == "gauge")

_CB_GAUGE = re.compile(r"circuit_breakers\.[a-z]+\.[a-z_]+")


def kind_of(stat: str) -> Kind:
    """Counter or gauge for a stat name relative to its scope (``circuit_breakers.*`` are all gauges)."""
    if stat in GAUGES or _CB_GAUGE.fullmatch(stat):
        return "gauge"
    return "counter"


def is_cluster_stat(stat: str) -> bool:
    """True when ``stat`` is a per-cluster stat name Envoy 1.40 prints (the splitter's suffix catalogue)."""
    return (
        stat in CLUSTER_STATS or bool(DYNAMIC_CLUSTER_STAT.fullmatch(stat)) or bool(_CB_GAUGE.fullmatch(stat))
    )


def value(stats: Mapping[str, int], name: str) -> int:
    """``stats[name]``, or 0 for a stat that does not exist (yet): counters are created lazily."""
    return int(stats.get(name, 0))
