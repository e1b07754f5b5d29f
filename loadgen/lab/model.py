"""The lab's typed model of Istio traffic management: what :mod:`loadgen.lab.istio` parses into.

What it is: frozen dataclasses for the parts of ``DestinationRule`` and ``VirtualService`` the lab
honours (connection pool, outlier detection, load balancer, subsets; HTTP routes with matches,
weighted destinations, faults, mirrors, timeout, retries), the services the resources talk about
(:class:`Service`), and :class:`LabSpec`, the whole validated input. Durations are integer
nanoseconds (``*_ns``), percentages are already in Envoy's ``FractionalPercent`` form
(:class:`Fraction`), hosts are FQDNs (``httpbin.default.svc.cluster.local``).

Conventions (documented once, relied on by :mod:`loadgen.lab.render`):

* ``None`` means "not set in the YAML": the renderer then applies Istio's default, never Envoy's.
* A service's port is its ``destination.port.number``, else the ``-topology`` port, else
  :data:`DEFAULT_PORT` (8000, the port of Istio's httpbin sample).
* Cluster names are Istio's ``BuildSubsetKey``: ``outbound|<port>|<subset>|<fqdn>``.

What it is not: no parsing, no validation, no Envoy specifics beyond names and units.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from loadgen.errors import UsageError

DEFAULT_PORT = 8000
MAX_DIRECT_BODY = 1024 * 1024  # Istio's DefaultMaxDirectResponseBodySizeBytes (route config)
"""Service port when neither a destination nor the topology gives one (Istio's httpbin sample)."""

CLUSTER_DOMAIN = "cluster.local"

DEFAULT_RETRY_ON = "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes"
"""Istio's default ``retry_on`` (≥ 1.24: no retriable status codes, so 503s are not retried)."""
DEFAULT_RETRY_ATTEMPTS = 2


def fqdn(short: str, namespace: str) -> str:
    """``httpbin``, ``default`` → ``httpbin.default.svc.cluster.local``."""
    return f"{short}.{namespace}.svc.{CLUSTER_DOMAIN}"


def cluster_name(host: str, port: int, subset: str = "") -> str:
    """Istio's cluster name for an outbound service (and subset): ``outbound|8000|v1|<fqdn>``."""
    return f"outbound|{port}|{subset}|{host}"


@dataclass(frozen=True)
class Fraction:
    """A percentage the way Envoy's ``FractionalPercent`` holds it."""

    numerator: int
    denominator: str = "HUNDRED"  # "HUNDRED" or "MILLION"

    @property
    def percent(self) -> float:
        """The value as a percentage (0..100)."""
        scale = 1 if self.denominator == "HUNDRED" else 10_000
        return self.numerator / scale


# --------------------------------------------------------------------------- DestinationRule


@dataclass(frozen=True)
class ConnectionPool:
    """``trafficPolicy.connectionPool``; every field ``None`` when unset (0 counts as unset for limits)."""

    max_connections: int | None = None  # tcp.maxConnections
    connect_timeout_ns: int | None = None  # tcp.connectTimeout
    max_connection_duration_ns: int | None = None  # tcp.maxConnectionDuration
    tcp_idle_timeout_ns: int | None = None  # tcp.idleTimeout (used when http.idleTimeout is unset)
    tcp_keepalive: tuple[int | None, int | None, int | None] | None = None  # probes, time_ns, interval_ns
    http1_max_pending_requests: int | None = None
    http2_max_requests: int | None = None
    max_requests_per_connection: int | None = None
    max_retries: int | None = None
    idle_timeout_ns: int | None = None  # http.idleTimeout


@dataclass(frozen=True)
class OutlierDetection:
    """``trafficPolicy.outlierDetection`` (legacy ``consecutiveErrors`` is ignored, as by Istio ≥ 1.7)."""

    consecutive_5xx_errors: int | None = None
    consecutive_gateway_errors: int | None = None
    interval_ns: int | None = None
    base_ejection_time_ns: int | None = None
    max_ejection_percent: int = 0  # 0 = unset (Envoy's 10 %)
    min_health_percent: int = 0  # → healthy_panic_threshold (Istio: 0 ⇒ panic mode off)
    split_external_local_origin_errors: bool = False
    consecutive_local_origin_failures: int | None = None


@dataclass(frozen=True)
class ConsistentHash:
    """``loadBalancer.consistentHash``: what to hash (``key``: header | cookie | source_ip |
    query_parameter, with ``name``) and the ring (``algorithm`` ring_hash | maglev, ``size`` the
    minimum ring size or the Maglev table size; 0 = Envoy's default)."""

    key: str
    name: str = ""
    cookie_path: str = ""
    cookie_ttl_ns: int | None = None
    algorithm: str = "ring_hash"
    size: int = 0


@dataclass(frozen=True)
class PortTrafficPolicy:
    """One ``portLevelSettings`` entry: replaces (does not inherit) the policy for that port."""

    port: int
    connection_pool: ConnectionPool | None = None
    outlier_detection: OutlierDetection | None = None
    load_balancer: str | None = None
    consistent_hash: ConsistentHash | None = None


@dataclass(frozen=True)
class TrafficPolicy:
    """``trafficPolicy`` of a DestinationRule or of one of its subsets."""

    connection_pool: ConnectionPool | None = None
    outlier_detection: OutlierDetection | None = None
    load_balancer: str | None = None  # LEAST_REQUEST | ROUND_ROBIN | RANDOM; None = Istio default
    port_level: tuple[PortTrafficPolicy, ...] = ()
    consistent_hash: ConsistentHash | None = None  # excludes load_balancer (one LoadBalancerSettings)


@dataclass(frozen=True)
class Subset:
    """One DestinationRule subset: its name, pod labels and optional own policy."""

    name: str
    labels: dict[str, str]
    policy: TrafficPolicy | None = None


@dataclass(frozen=True)
class DestinationRule:
    name: str
    namespace: str
    host: str  # FQDN
    policy: TrafficPolicy | None
    subsets: tuple[Subset, ...]
    source: str = "<string>"
    document: int = 0  # 1-based index in its file

    def subset(self, name: str) -> Subset | None:
        return next((s for s in self.subsets if s.name == name), None)


# --------------------------------------------------------------------------- VirtualService


@dataclass(frozen=True)
class StringMatch:
    """Istio ``StringMatch``: ``kind`` is exact | prefix | regex | present."""

    kind: str
    value: str = ""


@dataclass(frozen=True)
class HeaderMatch:
    name: str  # lower-case header name (":method", ":authority" and ":scheme" included)
    match: StringMatch
    invert: bool = False  # from withoutHeaders


@dataclass(frozen=True)
class RouteMatch:
    """One entry of ``http[].match`` (the entries of the list are OR-ed)."""

    uri: StringMatch | None = None
    headers: tuple[HeaderMatch, ...] = ()
    query_params: tuple[tuple[str, StringMatch], ...] = ()
    ignore_uri_case: bool = False
    stat_prefix: str = ""


@dataclass(frozen=True)
class HeaderOps:
    """``headers`` of an http route or of one of its destinations (Istio's
    ``TranslateHeadersOperations``): ``set`` overwrites, ``add`` appends; ``host``/``:authority``
    given to ``set``/``add`` is not an operation but ``authority`` (a host rewrite)."""

    request_set: tuple[tuple[str, str], ...] = ()
    request_add: tuple[tuple[str, str], ...] = ()
    request_remove: tuple[str, ...] = ()
    response_set: tuple[tuple[str, str], ...] = ()
    response_add: tuple[tuple[str, str], ...] = ()
    response_remove: tuple[str, ...] = ()
    authority: str = ""


@dataclass(frozen=True)
class Destination:
    host: str  # FQDN
    subset: str = ""
    port: int = DEFAULT_PORT
    weight: int = 0  # 0 = unset
    headers: HeaderOps | None = None
    port_given: bool = False  # destination.port.number was written (port-level hashes need it)


@dataclass(frozen=True)
class FaultDelay:
    fixed_delay_ns: int
    percentage: Fraction


@dataclass(frozen=True)
class FaultAbort:
    http_status: int
    percentage: Fraction | None  # None: Istio leaves it unset, which Envoy reads as 0 %


@dataclass(frozen=True)
class Fault:
    delay: FaultDelay | None = None
    abort: FaultAbort | None = None


@dataclass(frozen=True)
class Mirror:
    destination: Destination
    percentage: Fraction


@dataclass(frozen=True)
class Retries:
    """``http[].retries``; ``attempts == 0`` disables retries (no ``retry_policy`` at all)."""

    attempts: int
    per_try_timeout_ns: int | None = None
    retry_on: str | None = None  # None = Istio's default list
    ignore_previous_hosts: bool | None = None  # None = Istio's default (true: previous_hosts predicate)
    backoff_ns: int | None = None  # retry_back_off.base_interval


@dataclass(frozen=True)
class Rewrite:
    """``http[].rewrite``: ``uri`` (a prefix rewrite), or ``regex`` (match, substitution); ``authority``."""

    uri: str = ""
    regex: tuple[str, str] | None = None
    authority: str = ""


@dataclass(frozen=True)
class Redirect:
    """``http[].redirect``: answered by Envoy itself with ``code`` and a ``location``."""

    uri: str = ""
    authority: str = ""
    scheme: str = ""
    port: int | None = None
    derive_port: str = ""  # FROM_PROTOCOL_DEFAULT | FROM_REQUEST_PORT | ""
    code: int = 301


@dataclass(frozen=True)
class DirectResponse:
    """``http[].directResponse``: answered by Envoy itself."""

    status: int
    body: bytes | None = None
    as_text: bool = True  # given as ``body.string`` (else ``body.bytes``)


@dataclass(frozen=True)
class HttpRoute:
    """One ``http`` route. It forwards to ``destinations`` unless it is a ``redirect`` or a
    ``direct_response`` (then ``destinations`` is empty)."""

    name: str
    matches: tuple[RouteMatch, ...]  # empty: matches everything (prefix "/")
    destinations: tuple[Destination, ...]
    fault: Fault | None = None
    mirrors: tuple[Mirror, ...] = ()
    timeout_ns: int | None = None  # None = Istio default 0s (disabled)
    retries: Retries | None = None  # None = Istio's default policy
    headers: HeaderOps | None = None
    rewrite: Rewrite | None = None
    redirect: Redirect | None = None
    direct_response: DirectResponse | None = None


@dataclass(frozen=True)
class VirtualService:
    name: str
    namespace: str
    hosts: tuple[str, ...]  # FQDNs
    http: tuple[HttpRoute, ...]
    source: str = "<string>"
    document: int = 0


# --------------------------------------------------------------------------- services and spec


@dataclass(frozen=True)
class Service:
    """A service the lab runs: one upstream group per version, ``replicas`` processes each."""

    host: str  # FQDN, e.g. "httpbin.default.svc.cluster.local"
    short: str  # "httpbin"
    namespace: str  # "default"
    port: int = DEFAULT_PORT
    subsets: tuple[Subset, ...] = ()  # from the DestinationRule
    replicas: int = 1  # processes per version (topology)
    extra_versions: tuple[str, ...] = ()  # topology versions no subset names (still in the "" cluster)

    def versions(self) -> tuple[str, ...]:
        """Subset names (then topology-only versions), or ``("",)`` when there are none."""
        names = tuple(s.name for s in self.subsets) + self.extra_versions
        return names or ("",)

    def domains(self) -> tuple[str, ...]:
        """The names a client may use for it, as Istio's virtual host domains (with and without port)."""
        bases = (
            self.short,
            f"{self.short}.{self.namespace}",
            f"{self.short}.{self.namespace}.svc",
            self.host,
        )
        return tuple(d for b in bases for d in (b, f"{b}:{self.port}"))


@dataclass(frozen=True)
class LabSpec:
    """Everything the lab was given, validated: services, the resources, warnings, source files."""

    services: tuple[Service, ...]
    destination_rules: tuple[DestinationRule, ...] = ()
    virtual_services: tuple[VirtualService, ...] = ()
    warnings: tuple[str, ...] = ()
    sources: tuple[str, ...] = field(default_factory=tuple)

    def service(self, host: str) -> Service:
        """The service by FQDN, or by a short / ``short.ns`` name when that is unambiguous."""
        for s in self.services:
            if host == s.host:
                return s
        found = [s for s in self.services if host in (s.short, f"{s.short}.{s.namespace}")]
        if len(found) == 1:
            return found[0]
        known = ", ".join(s.host for s in self.services) or "none"
        what = "ambiguous" if found else "unknown"
        raise UsageError(f"{what} service {host!r} (services: {known})")

    def cluster_name(self, host: str, subset: str = "") -> str:
        """``outbound|8000|v1|httpbin.default.svc.cluster.local`` for ``("httpbin...", "v1")``."""
        svc = self.service(host)
        if subset and subset not in {s.name for s in svc.subsets}:
            defined = ", ".join(s.name for s in svc.subsets) or "none"
            raise UsageError(f"service {svc.host} has no subset {subset!r} (defined: {defined})")
        return cluster_name(svc.host, svc.port, subset)

    def destination_rule(self, host: str) -> DestinationRule | None:
        return next((d for d in self.destination_rules if d.host == host), None)

    def virtual_service(self, host: str) -> VirtualService | None:
        return next((v for v in self.virtual_services if host in v.hosts), None)
