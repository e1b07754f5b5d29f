"""What a lab's Istio YAML declares for a given request: the route Istio would pick, the split
over destination clusters, the fault that applies, the concurrency a DestinationRule admits.

Pure functions over :class:`~loadgen.lab.model.LabSpec`; the scenario runner compares these
declarations with what Envoy and the client observed. No I/O here.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl

from loadgen.lab.model import HttpRoute, LabSpec, RouteMatch, StringMatch

UNLIMITED = 2**32 - 1


def _service(spec: LabSpec, short: str) -> Any:
    for s in spec.services:
        if short in (s.short, s.host):
            return s
    raise KeyError(short)


def str_match(m: StringMatch, value: str | None) -> bool:
    """Istio ``StringMatch`` semantics (regex is a full match, as Envoy's safe_regex)."""
    if m.kind == "present":
        return value is not None
    if value is None:
        return False
    if m.kind == "exact":
        return value == m.value
    if m.kind == "prefix":
        return value.startswith(m.value)
    if m.kind == "regex":
        return re.fullmatch(m.value, value) is not None
    return False


def route_matches(match: RouteMatch, method: str, path: str, headers: dict[str, str]) -> bool:
    """One ``match`` entry: every condition in it must hold."""
    p, _, query = path.partition("?")
    if match.uri is not None:
        uri = match.uri
        if match.ignore_uri_case:  # Envoy's case_sensitive: false compares both sides folded
            p, uri = p.lower(), StringMatch(uri.kind, uri.value.lower())
        if not str_match(uri, p):
            return False
    if match.query_params:
        params = dict(parse_qsl(query, keep_blank_values=True))
        if not all(str_match(sm, params.get(name)) for name, sm in match.query_params):
            return False
    hdrs = {k.lower(): v for k, v in headers.items()}
    hdrs[":method"] = method
    return all(str_match(h.match, hdrs.get(h.name)) != h.invert for h in match.headers)


def declared_route(
    spec: LabSpec, short: str, path: str, headers: dict[str, str], method: str = "GET"
) -> HttpRoute | bool | None:
    """The route Istio would pick: an ``HttpRoute``; ``None`` when the service has no
    VirtualService (Istio's default route); ``False`` when no route matches (Envoy: 404)."""
    vs = spec.virtual_service(_service(spec, short).host)
    if vs is None:
        return None
    for route in vs.http:
        if not route.matches or any(route_matches(m, method, path, headers) for m in route.matches):
            return route
    return False


def expected_split(spec: LabSpec, short: str, path: str, headers: dict[str, str]) -> dict[str, float]:
    """Declared share of requests per destination cluster (empty: no route matches)."""
    route = declared_route(spec, short, path, headers)
    if route is None:
        return {str(spec.cluster_name(_service(spec, short).host)): 1.0}
    if route is False or not isinstance(route, HttpRoute) or not route.destinations:
        return {}
    dests = route.destinations
    total = sum(d.weight for d in dests) if len(dests) > 1 else 0
    out: dict[str, float] = {}
    for d in dests:
        if total and d.weight == 0:
            continue  # Istio drops weight-0 destinations of a split
        name = str(spec.cluster_name(d.host, d.subset))
        share = (d.weight / total) if total else 1.0
        out[name] = out.get(name, 0.0) + share
    return out


def envoy_answer(route: HttpRoute | bool | None) -> tuple[str, int] | None:
    """``(what, status)`` when the route is answered by Envoy itself (a redirect or a direct
    response), else ``None``."""
    if not isinstance(route, HttpRoute):
        return None
    if route.redirect is not None:
        return f"redirect {route.redirect.code}", route.redirect.code
    if route.direct_response is not None:
        return f"direct response {route.direct_response.status}", route.direct_response.status
    return None


def probes(spec: LabSpec, short: str) -> list[dict[str, str]]:
    """Request shapes worth sending: no special header, plus one per exact header value matched on."""
    vs = spec.virtual_service(_service(spec, short).host)
    seen: list[dict[str, str]] = [{}]
    for route in vs.http if vs is not None else ():
        for m in route.matches:
            for h in m.headers:
                if h.match.kind == "exact" and not h.name.startswith(":") and not h.invert:
                    probe = {h.name: h.match.value}
                    if probe not in seen:
                        seen.append(probe)
    return seen


def probe_label(probe: dict[str, str]) -> str:
    return ", ".join(f"{k}: {v}" for k, v in probe.items()) or "no special header"


def concurrency_limit(spec: LabSpec, short: str) -> int | None:
    """Requests the DestinationRule admits at once: min(maxConnections, http2MaxRequests) +
    http1MaxPendingRequests (HTTP/1.1 upstreams: one request per connection). None: unlimited."""
    dr = spec.destination_rule(_service(spec, short).host)
    cp = dr.policy.connection_pool if dr is not None and dr.policy is not None else None
    if cp is None:
        return None
    active = min(x for x in (cp.max_connections, cp.http2_max_requests, UNLIMITED) if x)
    pending = cp.http1_max_pending_requests or UNLIMITED
    total = active + pending
    return None if total >= UNLIMITED else total


def subset_of(cluster: str) -> str:
    """``outbound|9080|v2|reviews...`` → ``v2`` (the service's short name when there is no subset)."""
    parts = cluster.split("|")
    if len(parts) != 4:
        return cluster
    return parts[2] or parts[3].split(".")[0]
