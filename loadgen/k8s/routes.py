"""Has the client sidecar got this VirtualService yet? Route signatures from the YAML and from the
sidecar's route config dump, compared.

What it is: Istio tags every Envoy route it generates from a VirtualService with
``metadata.filter_metadata.istio.config = /apis/networking.istio.io/VERSION/namespaces/NS/
virtual-service/NAME``, and emits them in the VirtualService's order: one per ``match`` entry (one
for a route without matches), none after the first catch-all. :func:`expected` reduces each of
them to what a policy sweep varies — its action (destination clusters by subset and FQDN with
their weights, a redirect code, a direct-response status), its fault (delay and abort, the
percentage in parts per million exactly as Istio truncates it), its timeout, its retries
(``attempts`` and ``perTryTimeout``; ``attempts: 0`` is no retry policy; retries left out of the
YAML match whatever the sidecar has, since the mesh's default retry policy is configurable) and
its mirrors (``mirror``/``mirrorPercentage``, legacy ``mirrorPercent``, ``mirrors[]``) — and
:func:`dump_sequences` reduces the tagged routes of every virtual host in the dump the same way.
The VirtualService has arrived when every virtual host that has its routes shows exactly the
expected sequence (so added routes, removed routes and destinations swapped between matches are
all seen).

When the sequence cannot be predicted — a match that Istio keeps or drops depending on the client
(``port``, ``sourceLabels``, ``gateways``) — the rule is looser: every tagged route matches an
expected signature and every signature that must appear does. A VirtualService that gives the
mesh's sidecars no HTTP routes at all (TCP/TLS only, gateways only, a delegate without ``hosts``)
has nothing to wait for; nor has a root whose delegate is not among the applied files (the caller
merges the delegates it has, as istiod does: :mod:`loadgen.lab.istio_delegate`).

What it is not: a full comparison — headers, ``retryOn``, gRPC abort codes and the match
conditions themselves are not part of the signature (a variant that changes only those shows no
difference to wait for), and ports are left out (the YAML may not name them). An ExternalName
service's clusters are named after the external name; they do not compare.
"""

from __future__ import annotations

from typing import Any

from loadgen.durations import parse_ns
from loadgen.lab.render_http import REDIRECT_CODE_NAMES

Signature = tuple[Any, ...]

_REDIRECT_CODES = {name: code for code, name in REDIRECT_CODE_NAMES.items()}
_DENOMINATORS = {"HUNDRED": 100, "TEN_THOUSAND": 10_000, "MILLION": 1_000_000}
FAULT_FILTER = "envoy.filters.http.fault"
_NO_ACTION: Signature = ("none",)
_NO_RETRIES: Signature = ("none",)


def _ns(text: object) -> int:
    try:
        return parse_ns(str(text), allow_days=False)
    except ValueError:
        return -1


def fqdn(host: str, namespace: str) -> str:
    """Istio's resolution of a destination host written in a VirtualService of ``namespace``."""
    h = host.strip().lower()
    parts = h.split(".")
    if len(parts) == 1:
        return f"{h}.{namespace}.svc.cluster.local"
    if len(parts) == 2:
        return f"{h}.svc.cluster.local"
    return h


# --------------------------------------------------------------------------- from the YAML


def _ppm_percentage(obj: dict[str, Any], legacy: bool) -> int:
    """Parts per million as Istio computes them: ``uint32(value * 10000)`` over MILLION, or the
    legacy integer ``percent`` over HUNDRED (delays only; aborts never had it in v1)."""
    pct = obj.get("percentage")
    if isinstance(pct, dict):
        return int(float(pct.get("value", 0) or 0) * 10000)
    if legacy:
        return int(obj.get("percent", 0) or 0) * 10_000
    return 0


def _yaml_fault(fault: dict[str, Any] | None) -> Signature:
    if not fault:
        return ()
    delay, abort = fault.get("delay") or {}, fault.get("abort") or {}
    d = (
        (_ns(delay.get("fixedDelay", "0s")), _ppm_percentage(delay, True))
        if delay.get("fixedDelay")
        else None
    )
    a = (int(abort.get("httpStatus", 0) or 0), _ppm_percentage(abort, False)) if abort else None
    return (d, a) if (d or a) else ()


def _yaml_action(r: dict[str, Any], namespace: str) -> Signature:
    if r.get("redirect") is not None:
        code = int((r.get("redirect") or {}).get("redirectCode") or 301)
        return ("redirect", code) if code in _REDIRECT_CODES.values() else _NO_ACTION
    if r.get("directResponse") is not None:
        return ("direct", int((r.get("directResponse") or {}).get("status", 0)))
    dests = [x for x in r.get("route") or [] if isinstance(x, dict)]

    def key(x: dict[str, Any]) -> tuple[str, str]:
        d = x.get("destination") or {}
        return str(d.get("subset", "")), fqdn(str(d.get("host", "")), namespace)

    if len(dests) == 1:
        return ("cluster", *key(dests[0]))
    weighted = sorted(
        (*key(x), int(x.get("weight", 0) or 0)) for x in dests if int(x.get("weight", 0) or 0) > 0
    )
    return ("weighted", tuple(weighted))


def _yaml_retries(r: dict[str, Any]) -> Signature | None:
    """``(attempts, per-try timeout ns)``, ``("none",)`` for ``attempts`` 0 (Istio's
    ``ConvertPolicy`` then emits no policy), ``None`` when the YAML leaves retries to the mesh."""
    retries = r.get("retries")
    if not isinstance(retries, dict):
        return None
    attempts = int(retries.get("attempts", 0) or 0)
    if attempts <= 0:
        return _NO_RETRIES
    return (attempts, _ns(retries.get("perTryTimeout", "0s")))


def _mirror_ppm(m: dict[str, Any], key: str, legacy: str | None) -> int:
    pct = m.get(key)
    if isinstance(pct, dict):
        return int(float(pct.get("value", 0) or 0) * 10000)
    if legacy is not None and m.get(legacy) is not None:
        return int(m.get(legacy) or 0) * 10_000
    return 1_000_000  # unset: every request is mirrored


def _yaml_mirrors(r: dict[str, Any], namespace: str) -> Signature:
    out: list[tuple[str, str, int]] = []
    found: list[tuple[Any, int]] = []
    if isinstance(r.get("mirror"), dict):
        legacy = "mirrorPercent" if "mirrorPercent" in r else "mirror_percent"
        found.append((r["mirror"], _mirror_ppm(r, "mirrorPercentage", legacy)))
    for m in r.get("mirrors") or []:
        if isinstance(m, dict) and isinstance(m.get("destination"), dict):
            found.append((m["destination"], _mirror_ppm(m, "percentage", None)))
    for d, ppm in found:
        if ppm > 0:  # an explicit 0: Istio emits no mirror policy
            out.append((str(d.get("subset", "")), fqdn(str(d.get("host", "")), namespace), ppm))
    return tuple(sorted(out))


def _signature(r: dict[str, Any], namespace: str) -> Signature:
    action = _yaml_action(r, namespace)
    if action[0] not in ("cluster", "weighted"):  # Envoy answers itself: no timeout, retries, mirrors
        return (action, _yaml_fault(r.get("fault")), None, _NO_RETRIES, ())
    timeout = _ns(r.get("timeout", "0s"))
    return (action, _yaml_fault(r.get("fault")), timeout, _yaml_retries(r), _yaml_mirrors(r, namespace))


def same(want: Signature, got: Signature) -> bool:
    """A sidecar route (``got``) is the declared one (``want``): equal, except that retries the
    YAML left out (``None``) match any."""
    return want[:3] == got[:3] and want[4:] == got[4:] and (want[3] is None or want[3] == got[3])


def _client_dependent(m: dict[str, Any]) -> bool:
    """Istio keeps or drops this match depending on the client proxy (its port, labels, gateway)."""
    gateways = m.get("gateways") or []
    return bool(
        m.get("port")
        or m.get("sourceLabels")
        or m.get("sourceNamespace")
        or (gateways and "mesh" not in gateways)
    )


def _catch_all(m: dict[str, Any] | None) -> bool:
    """Istio's ``IsCatchAllRoute`` for the route a match entry becomes."""
    if m is None:
        return True
    uri = m.get("uri") or {}
    path_all = not uri or uri.get("prefix") == "/" or uri.get("regex") == ".*"
    conditions = ("headers", "withoutHeaders", "queryParams", "method", "authority", "scheme")
    return path_all and not any(m.get(k) for k in conditions)


class Expected:
    """What the sidecar should show for one VirtualService: the exact sequence of route
    signatures (``sequence``; ``None`` when it depends on the client), the signatures that must
    appear (``required``) and those that may (``allowed``)."""

    def __init__(self, sequence: list[Signature] | None, required: set[Signature], allowed: set[Signature]):
        self.sequence = sequence
        self.required = required
        self.allowed = allowed

    @property
    def nothing(self) -> bool:
        """No route is sure to reach the sidecar: nothing to wait for."""
        return not self.required


def expected(vs: dict[str, Any], namespace: str) -> Expected:
    """The routes a sidecar in the mesh gets from VirtualService ``vs`` (see the module docstring)."""
    spec = vs.get("spec") or {}
    gateways = spec.get("gateways") or []
    if not spec.get("hosts") or (gateways and "mesh" not in gateways):
        return Expected([], set(), set())  # a delegate, or gateways only: nothing in the sidecar
    if any(isinstance(r, dict) and r.get("delegate") is not None for r in spec.get("http") or []):
        return Expected([], set(), set())  # a root whose delegate is not at hand: unpredictable
    sequence: list[Signature] | None = []
    required: set[Signature] = set()
    allowed: set[Signature] = set()
    done = False
    for r in spec.get("http") or []:
        if not isinstance(r, dict) or done:
            continue
        sig = _signature(r, namespace)
        matches: list[dict[str, Any] | None] = [m for m in r.get("match") or [] if isinstance(m, dict)]
        if not matches:
            matches = [None]
        for m in matches:
            if m is not None and _client_dependent(m):
                sequence = None
                allowed.add(sig)
                continue
            allowed.add(sig)
            required.add(sig)
            if sequence is not None:
                sequence.append(sig)
            if _catch_all(m):
                done = True  # Istio emits nothing after a catch-all
                break
    return Expected(sequence, required, allowed)


# --------------------------------------------------------------------------- from the dump


def _dump_ppm(p: dict[str, Any] | None) -> int:
    p = p or {}
    scale = _DENOMINATORS.get(str(p.get("denominator", "HUNDRED")), 100)
    return int(p.get("numerator", 0) or 0) * (1_000_000 // scale)


def _cluster_key(name: str) -> tuple[str, str]:
    parts = name.split("|")  # outbound|PORT|SUBSET|FQDN
    if len(parts) == 4:
        return parts[2], parts[3].lower()
    return "", name.lower()


def _dump_action(route: dict[str, Any]) -> Signature:
    if "redirect" in route:
        return ("redirect", _REDIRECT_CODES.get(str(route["redirect"].get("response_code", "")), 301))
    if "direct_response" in route:
        return ("direct", int(route["direct_response"].get("status", 0)))
    action = route.get("route")
    if not isinstance(action, dict):
        return _NO_ACTION
    if "cluster" in action:
        return ("cluster", *_cluster_key(str(action["cluster"])))
    clusters = (action.get("weighted_clusters") or {}).get("clusters") or []
    return (
        "weighted",
        tuple(
            sorted((*_cluster_key(str(c.get("name", ""))), int(c.get("weight", 0) or 0)) for c in clusters)
        ),
    )


def _dump_fault(route: dict[str, Any]) -> Signature:
    fault = (route.get("typed_per_filter_config") or {}).get(FAULT_FILTER)
    if not fault:
        return ()
    delay, abort = fault.get("delay"), fault.get("abort")
    d = (_ns(delay.get("fixed_delay", "0s")), _dump_ppm(delay.get("percentage"))) if delay else None
    a = (int(abort.get("http_status", 0) or 0), _dump_ppm(abort.get("percentage"))) if abort else None
    return (d, a) if (d or a) else ()


def _dump_signature(route: dict[str, Any]) -> Signature:
    action = _dump_action(route)
    if action[0] not in ("cluster", "weighted"):
        return (action, _dump_fault(route), None, _NO_RETRIES, ())
    ra = route.get("route") or {}
    rp = ra.get("retry_policy")
    retries = (
        (int(rp.get("num_retries", 1) or 0), _ns(rp.get("per_try_timeout", "0s")))
        if isinstance(rp, dict)
        else _NO_RETRIES
    )
    mirrors = tuple(
        sorted(
            (
                *_cluster_key(str(m.get("cluster", ""))),
                _dump_ppm(m["runtime_fraction"].get("default_value"))
                if isinstance(m.get("runtime_fraction"), dict)
                else 1_000_000,
            )
            for m in ra.get("request_mirror_policies") or []
            if isinstance(m, dict)
        )
    )
    return (action, _dump_fault(route), _ns(ra.get("timeout", "0s")), retries, mirrors)


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


def dump_sequences(dump: dict[str, Any], namespace: str, name: str) -> list[list[Signature]]:
    """Per virtual host that has routes from VirtualService ``namespace/name``: their signatures,
    in order."""
    tag = f"/namespaces/{namespace}/virtual-service/{name}"
    out: list[list[Signature]] = []
    for rc in _route_configs(dump):
        for vh in rc.get("virtual_hosts") or []:
            seq: list[Signature] = []
            for route in vh.get("routes") or []:
                meta = ((route.get("metadata") or {}).get("filter_metadata") or {}).get("istio") or {}
                if not str(meta.get("config", "")).endswith(tag):
                    continue
                seq.append(_dump_signature(route))
            if seq:
                out.append(seq)
    return out


def arrived(dump: dict[str, Any], namespace: str, vs: dict[str, Any]) -> bool:
    """The sidecar shows this VirtualService as declared (see the module docstring)."""
    want = expected(vs, namespace)
    if want.nothing:
        return True
    name = str((vs.get("metadata") or {}).get("name", ""))
    seqs = dump_sequences(dump, namespace, name)
    if not seqs:
        return False
    if want.sequence is not None:
        ws = want.sequence
        return all(len(seq) == len(ws) and all(map(same, ws, seq)) for seq in seqs)
    return all(
        all(any(same(w, g) for w in want.allowed) for g in seq)
        and all(any(same(w, g) for g in seq) for w in want.required)
        for seq in seqs
    )
