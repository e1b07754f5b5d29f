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

Here: the documents (kinds, API versions, names, replacements), the topology, and what spans
documents (one DestinationRule and one VirtualService per host, the subsets and ports that routes
name). One resource's fields are read by :mod:`loadgen.lab.istio_dr` (DestinationRule) and
:mod:`loadgen.lab.istio_vs` (VirtualService), with :mod:`loadgen.lab.istio_http` and the typed
readers of :mod:`loadgen.lab.istio_fields`.

What it is not: no Envoy config (that is :mod:`loadgen.lab.render`), no processes, no I/O except
reading the given files.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import yaml  # type: ignore[import-untyped]

from loadgen.errors import UsageError
from loadgen.lab import istio_fields as fr
from loadgen.lab.istio_delegate import merge_delegates
from loadgen.lab.istio_dr import destination_rule
from loadgen.lab.istio_fields import Ctx, join, parse_duration, resolve_host
from loadgen.lab.istio_vs import Ref, virtual_service
from loadgen.lab.model import (
    DEFAULT_PORT,
    Destination,
    DestinationRule,
    LabSpec,
    Service,
    VirtualService,
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
        host = resolve_host(sub, name, join(ip, "name"))
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
    raw_vss: dict[tuple[str, str], tuple[Ctx, dict[str, Any]]] = field(default_factory=dict)
    refs: dict[tuple[str, str, str], list[Ref]] = field(default_factory=dict)
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
        if kind == "VirtualService":  # read once every file is in: delegates may be in another
            prev = acc.raw_vss.get(key)
            if prev is not None:
                ctx.warn(
                    "", f"replaces the {kind} {ctx.name} of {prev[0].source} document {prev[0].document}"
                )
            acc.raw_vss[key] = (ctx, spec)
            continue
        old = acc.drs.get(key)
        acc.drs[key] = destination_rule(ctx, spec)
        if old is not None:
            ctx.warn("", f"replaces the {kind} {ctx.name} of {old.source} document {old.document}")
        acc.refs[(kind, key[0], key[1])] = []


def _read_virtual_services(acc: _Collected) -> None:
    """Delegates merged into their roots (:mod:`loadgen.lab.istio_delegate`), then each
    VirtualService read; an error in a merged route names the delegates merged in."""
    items = list(acc.raw_vss.items())
    docs = [
        {"kind": "VirtualService", "metadata": {"name": c.name, "namespace": c.namespace}, "spec": spec}
        for _, (c, spec) in items
    ]
    merged = merge_delegates(docs)
    for note in merged.notes:
        items[note.doc][1][0].warn(f"http[{note.route}].delegate", f"{note.delegate}: {note.reason}")
    for j in merged.unused:
        ctx, spec = items[j][1]
        fr.check_fields(
            ctx, spec, "", {"http", "exportTo", "hosts", "gateways"}, {"tcp": "the lab routes HTTP only"}
        )
        ctx.warn("", "a delegate (no hosts) that no VirtualService delegates to: ignored, as in Istio")
    for pos, (j, doc) in enumerate(zip(merged.sources, merged.docs, strict=True)):
        key, (ctx, _) = items[j]
        refs: list[Ref] = []
        try:
            acc.vss[key] = virtual_service(ctx, doc["spec"], refs)
        except UsageError as exc:
            if pos not in merged.used:
                raise
            raise UsageError(
                f"{exc} (its http routes include those of {', '.join(merged.used[pos])})"
            ) from None
        acc.refs[("VirtualService", key[0], key[1])] = refs


def _ctx_of(acc: _Collected, source: str, document: int, kind: str, name: str) -> Ctx:
    return Ctx(source, acc.warnings, document, kind, name)


def _build(acc: _Collected) -> LabSpec:
    _read_virtual_services(acc)
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
