"""Has the client sidecar got this VirtualService yet? Route signatures from the YAML and from the
sidecar's route config dump, compared.

What it is: Istio tags every Envoy route it generates from a VirtualService with
``metadata.filter_metadata.istio.config = /apis/networking.istio.io/VERSION/namespaces/NS/
virtual-service/NAME``. :func:`expected_signatures` reduces each ``http`` route of the YAML to
what a policy sweep varies — its action (the destinations by subset and host with their weights,
a redirect code or a direct-response status), its fault (delay and abort, with percentages) and
its timeout; :func:`dump_signatures` reduces the tagged routes of the dump the same way; the
VirtualService has arrived when the dump has tagged routes and every one of them matches a
signature of the YAML (the previous version's routes would not).

What it is not: a full comparison — headers, retries, mirrors and match conditions are not part
of the signature (a variant that changes only those is applied without a propagation wait
showing it), and ports are left out (the YAML may not name them).
"""

from __future__ import annotations

from typing import Any

from loadgen.durations import parse_ns

Signature = tuple[Any, ...]

_REDIRECT_CODES = {
    "MOVED_PERMANENTLY": 301,
    "FOUND": 302,
    "SEE_OTHER": 303,
    "TEMPORARY_REDIRECT": 307,
    "PERMANENT_REDIRECT": 308,
}
_DENOMINATORS = {"HUNDRED": 100, "TEN_THOUSAND": 10_000, "MILLION": 1_000_000}
FAULT_FILTER = "envoy.filters.http.fault"


def _short(host: str) -> str:
    return host.split(".", 1)[0].lower()


def _ns(text: object) -> int:
    try:
        return parse_ns(str(text), allow_days=False)
    except ValueError:
        return -1


def _pct(value: float) -> float:
    return round(float(value), 4)


# --------------------------------------------------------------------------- from the YAML


def _yaml_percent(obj: dict[str, Any], legacy: str = "percent") -> float:
    pct = obj.get("percentage")
    if isinstance(pct, dict):
        return _pct(pct.get("value", 0))
    return _pct(obj.get(legacy, 0) or 0)


def _yaml_fault(fault: dict[str, Any] | None) -> Signature:
    if not fault:
        return ()
    delay, abort = fault.get("delay") or {}, fault.get("abort") or {}
    d = (_ns(delay.get("fixedDelay", "0s")), _yaml_percent(delay)) if delay else None
    a = (int(abort.get("httpStatus", 0)), _yaml_percent(abort)) if abort else None
    return (d, a)


def _yaml_action(r: dict[str, Any]) -> Signature:
    if r.get("redirect") is not None:
        return ("redirect", int((r.get("redirect") or {}).get("redirectCode") or 301))
    if r.get("directResponse") is not None:
        return ("direct", int((r.get("directResponse") or {}).get("status", 0)))
    dests = r.get("route") or []
    if len(dests) == 1:
        d = dests[0].get("destination") or {}
        return ("cluster", str(d.get("subset", "")), _short(str(d.get("host", ""))))
    weighted = sorted(
        (
            str((x.get("destination") or {}).get("subset", "")),
            _short(str((x.get("destination") or {}).get("host", ""))),
            int(x.get("weight", 0)),
        )
        for x in dests
        if int(x.get("weight", 0)) > 0
    )
    return ("weighted", tuple(weighted))


def expected_signatures(vs: dict[str, Any]) -> set[Signature]:
    """The signatures of a VirtualService's ``http`` routes, as the sidecar should show them."""
    out: set[Signature] = set()
    for r in (vs.get("spec") or {}).get("http") or []:
        if not isinstance(r, dict):
            continue
        forwards = r.get("redirect") is None and r.get("directResponse") is None
        timeout = _ns(r.get("timeout", "0s")) if forwards else None
        out.add((_yaml_action(r), _yaml_fault(r.get("fault")), timeout))
    return out


# --------------------------------------------------------------------------- from the dump


def _dump_percent(p: dict[str, Any] | None) -> float:
    p = p or {}
    scale = _DENOMINATORS.get(str(p.get("denominator", "HUNDRED")), 100)
    return _pct(100.0 * float(p.get("numerator", 0)) / scale)


def _cluster_key(name: str) -> tuple[str, str]:
    parts = name.split("|")  # outbound|PORT|SUBSET|FQDN
    if len(parts) == 4:
        return parts[2], _short(parts[3])
    return "", _short(name)


def _dump_action(route: dict[str, Any]) -> Signature:
    if "redirect" in route:
        return ("redirect", _REDIRECT_CODES.get(str(route["redirect"].get("response_code", "")), 301))
    if "direct_response" in route:
        return ("direct", int(route["direct_response"].get("status", 0)))
    action = route.get("route") or {}
    if "cluster" in action:
        return ("cluster", *_cluster_key(str(action["cluster"])))
    clusters = (action.get("weighted_clusters") or {}).get("clusters") or []
    return (
        "weighted",
        tuple(sorted((*_cluster_key(str(c.get("name", ""))), int(c.get("weight", 0))) for c in clusters)),
    )


def _dump_fault(route: dict[str, Any]) -> Signature:
    fault = (route.get("typed_per_filter_config") or {}).get(FAULT_FILTER)
    if not fault:
        return ()
    delay, abort = fault.get("delay"), fault.get("abort")
    d = (_ns(delay.get("fixed_delay", "0s")), _dump_percent(delay.get("percentage"))) if delay else None
    a = (int(abort.get("http_status", 0)), _dump_percent(abort.get("percentage"))) if abort else None
    return (d, a)


def _route_configs(dump: dict[str, Any]) -> list[dict[str, Any]]:
    """Route configs of a config dump, whole (``dynamic_route_configs`` inside a RoutesConfigDump)
    or filtered with ``?resource=dynamic_route_configs`` (each config a DynamicRouteConfig)."""
    out: list[dict[str, Any]] = []
    for cfg in dump.get("configs") or []:
        if not isinstance(cfg, dict):
            continue
        if isinstance(cfg.get("route_config"), dict):
            out.append(cfg["route_config"])
        for key in ("dynamic_route_configs", "static_route_configs"):
            for rc in cfg.get(key) or []:
                if isinstance(rc, dict) and isinstance(rc.get("route_config"), dict):
                    out.append(rc["route_config"])
    return out


def dump_signatures(dump: dict[str, Any], namespace: str, name: str) -> list[Signature]:
    """Signatures of the routes Istio generated from VirtualService ``namespace/name``."""
    tag = f"/namespaces/{namespace}/virtual-service/{name}"
    out: list[Signature] = []
    for rc in _route_configs(dump):
        for vh in rc.get("virtual_hosts") or []:
            for route in vh.get("routes") or []:
                meta = ((route.get("metadata") or {}).get("filter_metadata") or {}).get("istio") or {}
                if not str(meta.get("config", "")).endswith(tag):
                    continue
                action = _dump_action(route)
                timeout = (
                    None
                    if action[0] in ("redirect", "direct")
                    else _ns((route.get("route") or {}).get("timeout", "0s"))
                )
                out.append((action, _dump_fault(route), timeout))
    return out


def arrived(dump: dict[str, Any], namespace: str, vs: dict[str, Any]) -> bool:
    """The sidecar shows this VirtualService: it has routes from it, all of them as declared."""
    name = str((vs.get("metadata") or {}).get("name", ""))
    got = dump_signatures(dump, namespace, name)
    want = expected_signatures(vs)
    return bool(got) and all(sig in want for sig in got)
