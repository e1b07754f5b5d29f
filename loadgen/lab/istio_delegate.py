"""Delegate VirtualServices, merged into their roots as istiod does before it renders routes.

A *delegate* is a VirtualService without ``hosts``; a *root* has ``hosts`` and at least one
``http`` route with ``delegate: {name, namespace}``. istiod (``mergeVirtualServicesIfNeeded`` in
``pilot/pkg/model/virtualservice.go``) replaces each delegating route by the delegate's routes:

* every match of a delegate route must fit inside some match of the root route (a ``uri``
  prefix or exact path under the root's prefix, the same exact value, no regex on both sides,
  equal ``ignoreUriCase``, no contradicting port, source namespace or labels); the merged match
  takes the delegate's fields and fills the rest from the root (headers, withoutHeaders,
  queryParams and sourceLabels are unions, the delegate's value winning a key);
* a delegate route none of whose matches fits is dropped; one without matches takes the root's;
* the merged route inherits the root's ``name`` (as a prefix), ``rewrite``, ``timeout``,
  ``retries``, ``fault``, ``mirror`` (and its percentage), ``corsPolicy`` and ``headers`` where
  the delegate route leaves them out;
* a delegate that is missing, or not exported to the root's namespace, drops only that route.

Everything here works on the YAML as parsed (plain dicts), before the typed readers of
:mod:`loadgen.lab.istio_vs` see it; the delegates themselves then go away.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

Doc = dict[str, Any]

INHERITED = (
    "rewrite",
    "timeout",
    "retries",
    "fault",
    "mirror",
    "mirrorPercent",
    "mirror_percent",
    "mirrorPercentage",
    "corsPolicy",
    "headers",
)
_STRING_MATCHES = ("uri", "scheme", "method", "authority")
_MAP_MATCHES = ("headers", "withoutHeaders", "queryParams", "sourceLabels")


@dataclass(frozen=True)
class Note:
    """Why (part of) a delegating route was dropped: ``doc`` indexes the input documents,
    ``route`` the root's ``http`` list."""

    doc: int
    route: int
    delegate: str  # namespace/name
    reason: str

    def __str__(self) -> str:
        return f"http[{self.route}].delegate {self.delegate}: {self.reason}"


@dataclass
class Merged:
    """The documents with delegates merged (delegate documents removed), where each came from,
    what was dropped, the
    delegates merged into each kept document (by index into ``docs``) and the delegates no root
    asked for."""

    docs: list[Doc]
    sources: list[int] = field(default_factory=list)  # each kept document's index in the input
    notes: list[Note] = field(default_factory=list)
    used: dict[int, list[str]] = field(default_factory=dict)
    unused: list[int] = field(default_factory=list)


def _spec(doc: Doc) -> dict[str, Any]:
    spec = doc.get("spec")
    return spec if isinstance(spec, dict) else {}


def _meta(doc: Doc, namespace: str) -> tuple[str, str]:
    m = doc.get("metadata") if isinstance(doc.get("metadata"), dict) else {}
    assert isinstance(m, dict)
    return str(m.get("name", "")), str(m.get("namespace") or namespace)


def is_delegate(doc: Doc) -> bool:
    """A VirtualService with no ``hosts``: only reachable through a root's ``delegate``."""
    return doc.get("kind") == "VirtualService" and not _spec(doc).get("hosts")


def is_root(doc: Doc) -> bool:
    routes = _spec(doc).get("http")
    return (
        doc.get("kind") == "VirtualService"
        and bool(_spec(doc).get("hosts"))
        and isinstance(routes, list)
        and any(isinstance(r, dict) and r.get("delegate") is not None for r in routes)
    )


def _exported_to(doc: Doc, own_ns: str, ns: str) -> bool:
    export = _spec(doc).get("exportTo") or []
    if not export:
        return True  # the mesh default: everywhere
    return any(e == "*" or e == ns or (e == "." and ns == own_ns) for e in export)


def _kind(m: object) -> tuple[str, str] | None:
    if not isinstance(m, dict):
        return None
    for k in ("exact", "prefix", "regex"):
        if isinstance(m.get(k), str) and m[k] != "":
            return k, m[k]
    return None


def string_match_conflict(root: object, leaf: object) -> bool:
    """Istio's ``stringMatchConflict``: the leaf does not narrow the root's match."""
    if root is None or leaf is None:
        return False
    r, lf = _kind(root), _kind(leaf)
    if (r is not None and r[0] == "regex") or (lf is not None and lf[0] == "regex"):
        return True  # a regex on either side cannot be shown to narrow the other
    if r is not None and r[0] == "exact":
        return lf is None or lf != r
    if r is not None and r[0] == "prefix":
        return lf is None or not lf[1].startswith(r[1])
    return True


def has_conflict(root: Doc, leaf: Doc) -> bool:
    """Istio's ``hasConflict`` between a root match and a delegate match."""
    if any(string_match_conflict(root.get(k), leaf.get(k)) for k in _STRING_MATCHES):
        return True
    for key in ("headers", "withoutHeaders", "queryParams"):
        rm, lm = root.get(key) or {}, leaf.get(key) or {}
        if any(string_match_conflict(rm.get(k), v) for k, v in lm.items()):
            return True
    if bool(root.get("ignoreUriCase")) != bool(leaf.get("ignoreUriCase")):
        return True
    rp, lp = int(root.get("port") or 0), int(leaf.get("port") or 0)
    if rp > 0 and lp > 0 and rp != lp:
        return True
    if root.get("sourceNamespace") and leaf.get("sourceNamespace") != root.get("sourceNamespace"):
        return True
    rl = root.get("sourceLabels") or {}
    if any(k in rl and rl[k] != v for k, v in (leaf.get("sourceLabels") or {}).items()):
        return True
    rg, lg = list(root.get("gateways") or []), list(leaf.get("gateways") or [])
    return bool(rg and lg and (len(rg) < len(lg) or not set(lg) <= set(rg)))


def merge_match(root: Doc, leaf: Doc) -> Doc:
    """Istio's ``mergeHTTPMatchRequest``: the delegate's match, completed from the root's."""
    out = copy.deepcopy(leaf)
    if root.get("name"):
        out["name"] = f"{root['name']}-{out['name']}" if out.get("name") else root["name"]
    for k in (*_STRING_MATCHES, "port", "sourceNamespace"):
        if not out.get(k) and root.get(k):
            out[k] = copy.deepcopy(root[k])
    for k in _MAP_MATCHES:
        if root.get(k) or leaf.get(k):
            out[k] = {**copy.deepcopy(root.get(k) or {}), **copy.deepcopy(leaf.get(k) or {})}
    if not out.get("gateways") and root.get("gateways"):
        out["gateways"] = list(root["gateways"])
    return out


def merge_matches(root: list[Doc], leaf: list[Doc]) -> list[Doc] | None:
    """Istio's ``mergeHTTPMatchRequests``; ``None`` on a conflict (the delegate route is dropped)."""
    if not root:
        return leaf
    if not leaf:
        return root
    out: list[Doc] = []
    for sub in leaf:
        fits = [merge_match(r, sub) for r in root if not has_conflict(r, sub)]
        if not fits:
            return None
        out.extend(fits)
    return out or None


def merge_route(root: Doc, sub: Doc) -> Doc | None:
    """Istio's ``mergeHTTPRoute``: one delegate route under one root route, or ``None``."""
    matches = merge_matches(
        [m for m in root.get("match") or [] if isinstance(m, dict)],
        [m for m in sub.get("match") or [] if isinstance(m, dict)],
    )
    if matches is None:
        return None
    out = copy.deepcopy(sub)
    if matches:
        out["match"] = matches
    if root.get("name"):
        out["name"] = f"{root['name']}-{out['name']}" if out.get("name") else root["name"]
    for k in INHERITED:
        if out.get(k) is None and root.get(k) is not None:
            out[k] = copy.deepcopy(root[k])
    return out


def merge_delegates(docs: list[Doc], namespace: str = "default", keep_unresolved: bool = False) -> Merged:
    """Roots with their delegating routes replaced by the delegates' routes; delegate documents
    removed. ``notes`` says which routes were dropped, and why. ``keep_unresolved`` leaves a
    route whose delegate is not among ``docs`` as it is (it may exist elsewhere, in a cluster)."""
    delegates: dict[tuple[str, str], int] = {}
    for j, d in enumerate(docs):
        if is_delegate(d):
            delegates[_meta(d, namespace)] = j
    res = Merged([])
    asked: set[int] = set()
    for j, d in enumerate(docs):
        if is_delegate(d):
            continue
        if not is_root(d):
            res.docs.append(d)
            res.sources.append(j)
            continue
        ns = _meta(d, namespace)[1]
        merged: list[Any] = []
        used: list[str] = []
        for i, route in enumerate(_spec(d).get("http") or []):
            ref = route.get("delegate") if isinstance(route, dict) else None
            if not isinstance(ref, dict):
                merged.append(route)
                continue
            key = (str(ref.get("name", "")), str(ref.get("namespace") or ns))
            k = delegates.get(key)
            who = f"{key[1]}/{key[0]}"
            if k is None:
                if keep_unresolved:
                    merged.append(route)
                else:
                    res.notes.append(Note(j, i, who, "not among the files: route dropped (as istiod does)"))
                continue
            target = docs[k]
            asked.add(k)
            if not _exported_to(target, key[1], ns):
                reason = f"not exported to namespace {ns}: route dropped (as istiod does)"
                res.notes.append(Note(j, i, who, reason))
                continue
            base = {x: v for x, v in route.items() if x != "delegate"}
            subs = [r for r in _spec(target).get("http") or [] if isinstance(r, dict)]
            kept = [m for m in (merge_route(base, sub) for sub in subs) if m is not None]
            if len(kept) < len(subs):
                reason = (
                    f"{len(subs) - len(kept)} of its {len(subs)} routes match outside this route's match: "
                    "dropped (as istiod does)"
                )
                res.notes.append(Note(j, i, who, reason))
            used.append(who)
            merged.extend(kept)
        root = copy.deepcopy(d)
        root["spec"]["http"] = merged
        if used:
            res.used[len(res.docs)] = used
        res.docs.append(root)
        res.sources.append(j)
    res.unused = [k for k in delegates.values() if k not in asked]
    return res


__all__ = ["Merged", "Note", "has_conflict", "is_delegate", "is_root", "merge_delegates", "merge_route"]
