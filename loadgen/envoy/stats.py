"""Parse Envoy admin stats (text, JSON, Prometheus) into uniform snapshots; deltas and series.

What it is: three parsers (``/stats`` text, ``/stats?format=json``, ``/stats/prometheus`` via
``prometheus_client``'s parser) that all produce a :class:`Snapshot`: wall-clock and monotonic
time, ``clusters`` (``{cluster: {stat: value}}``), ``http`` (``{hcm stat_prefix: {stat: value}}``,
fault filter stats included as ``fault.*``) and ``other`` (everything else, by full name). Then
:func:`delta` (counters: after − before, missing = 0; gauges: the value after) and :func:`series`.

Cluster names are the names of the clusters, as configured: the Istio ≥ 1.23 stat form
``cluster.outbound|8000||httpbin.default.svc.cluster.local;.upstream_rq_total`` (``alt_stat_name``
ending in ``;``) gives the cluster ``outbound|8000||httpbin.default.svc.cluster.local``, the same
key as the older form without ``;`` and as the Prometheus ``cluster_name`` label. Since cluster
names contain dots, ``cluster.<name>.<stat>`` is split by (1) the ``;.`` delimiter when present,
else (2) the longest cluster name known from an anchor stat every cluster has
(``membership_total`` …), else (3) the leftmost split whose suffix is a known Envoy cluster stat
(:data:`loadgen.envoy.catalogue.CLUSTER_STATS`), else (4) the first dot.

What it is not: no network (see :mod:`loadgen.envoy.admin`), no verdicts (see
:mod:`loadgen.envoy.reconcile`). Histograms and text readouts are skipped.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from loadgen.envoy import catalogue
from loadgen.errors import RunError

Stats = dict[str, dict[str, int]]

#: Stats every cluster has (whatever the stats matcher keeps, one of them usually survives);
#: ``cluster.<name>.<anchor>`` tells the exact cluster name even when it contains dots.
CLUSTER_ANCHORS = (
    "membership_total",
    "upstream_cx_total",
    "upstream_rq_total",
    "upstream_rq_pending_overflow",
    "circuit_breakers.default.cx_open",
    "lb_healthy_panic",
    "version",
)
HTTP_ANCHORS = ("downstream_rq_total", "downstream_cx_total", "rq_total", "no_route", "fault.aborts_injected")


class StatsParseError(RunError):
    """The admin answered something that is not the stats format asked for."""


@dataclass
class Snapshot:
    """One reading of Envoy's stats. Values are integers (counters and gauges)."""

    wall: float
    mono: float
    clusters: Stats = field(default_factory=dict)
    http: Stats = field(default_factory=dict)
    other: dict[str, int] = field(default_factory=dict)
    source: str = ""

    def get(self, cluster: str, stat: str) -> int:
        """A cluster stat, 0 when absent (lazily created counters)."""
        return catalogue.value(self.clusters.get(cluster, {}), stat)

    def get_http(self, prefix: str, stat: str) -> int:
        return catalogue.value(self.http.get(prefix, {}), stat)

    def matching(self, cluster_regex: str = "") -> list[str]:
        """Cluster names matching ``cluster_regex`` (``re.search``; empty: all), sorted."""
        rx = compile_regex(cluster_regex)
        return sorted(c for c in self.clusters if rx is None or rx.search(c))


def compile_regex(pattern: str) -> re.Pattern[str] | None:
    """``None`` for an empty pattern; a :class:`~loadgen.errors.UsageError` for an invalid one."""
    if not pattern:
        return None
    try:
        return re.compile(pattern)
    except re.error as e:
        from loadgen.errors import UsageError

        raise UsageError(f"invalid cluster regex {pattern!r}: {e}") from None


# --- flat name → scope splitting ---------------------------------------------------------------


def _known_names(rests: Iterable[str], anchors: tuple[str, ...]) -> list[str]:
    names: set[str] = set()
    for rest in rests:
        if ";." in rest:
            continue
        for a in anchors:
            if rest.endswith("." + a) and len(rest) > len(a) + 1:
                names.add(rest[: -len(a) - 1])
    return sorted(names, key=len, reverse=True)


def _split(rest: str, known: list[str], is_stat: Any) -> tuple[str, str]:
    if ";." in rest:
        name, _, stat = rest.rpartition(";.")
        return name, stat
    for k in known:
        if rest.startswith(k + ".") and len(rest) > len(k) + 1:
            return k, rest[len(k) + 1 :]
    i = rest.find(".")
    while i != -1:
        if is_stat(rest[i + 1 :]):
            return rest[:i], rest[i + 1 :]
        i = rest.find(".", i + 1)
    name, _, stat = rest.partition(".")
    return name, stat


def _is_http_stat(stat: str) -> bool:
    first = stat.split(".", 1)[0]
    return first.startswith(("downstream_", "rq_", "rs_", "no_", "passthrough_")) or first in (
        "fault",
        "tracing",
    )


def split_flat(flat: Mapping[str, int]) -> tuple[Stats, Stats, dict[str, int]]:
    """Split ``{full stat name: value}`` into (clusters, http, other); see the module docstring."""
    crests = [n[8:] for n in flat if n.startswith("cluster.")]
    hrests = [n[5:] for n in flat if n.startswith("http.")]
    cknown = _known_names(crests, CLUSTER_ANCHORS)
    hknown = _known_names(hrests, HTTP_ANCHORS)
    clusters: Stats = {}
    http: Stats = {}
    other: dict[str, int] = {}
    for name, v in flat.items():
        if name.startswith("cluster.") and "." in name[8:]:
            c, s = _split(name[8:], cknown, catalogue.is_cluster_stat)
            clusters.setdefault(c, {})[s] = v
        elif name.startswith("http.") and "." in name[5:]:
            p, s = _split(name[5:], hknown, _is_http_stat)
            http.setdefault(p, {})[s] = v
        else:
            other[name] = v
    return clusters, http, other


# --- the three formats ---------------------------------------------------------------------------


def parse_text(text: str) -> dict[str, int]:
    """``/stats`` text (``name: value`` per line) → ``{name: value}``; histograms/readouts skipped."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        name, sep, val = line.rpartition(": ")
        if not sep or not name:
            continue
        try:
            out[name] = int(val)
        except ValueError:
            continue  # histogram summary ("P0(...)", "No recorded values") or a text readout
    if text.strip() and not out:
        raise StatsParseError(f"no 'name: value' stats in /stats text (starts {text[:80]!r})")
    return out


def parse_json(doc: str | Mapping[str, Any]) -> dict[str, int]:
    """``/stats?format=json`` → ``{name: value}``.

    The document is ``{"stats": [{"name": …, "value": …}, …, {"histograms": …}]}``.
    """
    try:
        data = json.loads(doc) if isinstance(doc, str) else doc
        entries = data["stats"]
    except (ValueError, KeyError, TypeError) as exc:
        raise StatsParseError(f"not Envoy /stats?format=json output: {exc}") from None
    out: dict[str, int] = {}
    for ent in entries:
        v = ent.get("value") if isinstance(ent, dict) else None
        if isinstance(v, int) and not isinstance(v, bool):
            out[str(ent["name"])] = v
    return out


_DYN_PROM = re.compile(r"(?:^|_)((?:external_|internal_|canary_)?upstream_rq_(?:\d{3}|\dxx))$")
_PROM_CLUSTER_STATS = sorted(
    ((s.replace(".", "_"), s) for s in catalogue.CLUSTER_STATS), key=lambda t: len(t[0]), reverse=True
)
_CLUSTER_LABELS = ("envoy_cluster_name", "cluster_name")
_HCM_LABELS = ("envoy_http_conn_manager_prefix", "http_conn_manager_prefix")


def _untag(rest: str, labels: Mapping[str, str]) -> str:
    """Put Envoy's extracted response-code tags back into the stat name."""
    code = labels.get("envoy_response_code") or labels.get("response_code")
    if code:
        return f"{rest}_{code}"
    cls = labels.get("envoy_response_code_class")
    if cls and rest.endswith("_xx"):
        return f"{rest[:-3]}_{cls}xx"
    cls = labels.get("response_code_class")  # Istio's tag: "5xx", metric name without "_xx"
    if cls:
        return f"{rest}_{cls}"
    return rest


def _prom_cluster_stat(rest: str) -> tuple[str, str]:
    """(leftover of the cluster name, stat) for a sanitized ``envoy_cluster_`` remainder."""
    m = _DYN_PROM.search(rest)  # leftmost match: keeps an "external_" prefix in the stat
    if m:
        stat = m.group(1)
        for p in ("external", "internal", "canary"):
            if stat.startswith(p + "_"):
                stat = p + "." + stat[len(p) + 1 :]
        return rest[: m.start()], stat
    for san, stat in _PROM_CLUSTER_STATS:
        if rest == san:
            return "", stat
        if rest.endswith("_" + san):
            return rest[: -len(san) - 1], stat
    return "", rest


def parse_prometheus(text: str) -> tuple[Stats, Stats, dict[str, int]]:
    """``/stats/prometheus`` → (clusters, http, other), with ``prometheus_client``'s parser.

    Cluster and HCM names come from the ``envoy_cluster_name``/``cluster_name`` and
    ``envoy_http_conn_manager_prefix``/``http_conn_manager_prefix`` labels; stat names are mapped
    back to Envoy's dotted names through the catalogue. When Envoy's default tag regex cut a
    dotted cluster name at its first dot (``envoy_cluster_default_svc_cluster_local_upstream_rq_total
    {envoy_cluster_name="outbound|8000|v1|httpbin"}``), the rest of the name is rebuilt from the
    metric name with ``_`` → ``.`` (exact for Istio names, best effort for names with ``_``).
    """
    from prometheus_client.parser import text_string_to_metric_families

    clusters: Stats = {}
    http: Stats = {}
    other: dict[str, int] = {}
    # prometheus_client renames the samples of a counter ``X`` to ``X_total`` (OpenMetrics style) and
    # parses a counter ``X_total`` into the same family; Envoy prints both ``envoy_cluster_upstream_rq``
    # (tagged by code) and ``envoy_cluster_upstream_rq_total``. Each ``# TYPE`` line yields one family, in
    # order, so the TYPE lines tell which name Envoy printed.
    declared = [
        ln.split()[2] for ln in text.splitlines() if ln.startswith("# TYPE ") and len(ln.split()) >= 4
    ]
    try:
        families = list(text_string_to_metric_families(text))
    except ValueError as e:
        raise StatsParseError(f"not Prometheus text: {e}") from None
    typed = [f for f in families if f.type != "untyped"]
    paired = len(typed) == len(declared)
    originals = {id(f): d for f, d in zip(typed, declared, strict=True)} if paired else {}
    for fam in families:
        if fam.type in ("histogram", "summary", "info", "stateset"):
            continue
        original = originals.get(id(fam), "")
        for smp in fam.samples:
            name, labels, v = smp.name, smp.labels, smp.value
            if fam.type == "counter" and name.endswith("_total"):
                if original and original in (name[:-6], name):
                    name = original
                elif not paired and name[:-6] == fam.name:
                    name = name[:-6]  # no TYPE pairing: assume Envoy printed the family's own name
            if v != v or v in (float("inf"), float("-inf")):
                continue
            iv = int(v)
            clabel = next((labels[k] for k in _CLUSTER_LABELS if k in labels), None)
            hlabel = next((labels[k] for k in _HCM_LABELS if k in labels), None)
            if name.startswith("envoy_cluster_") and clabel is not None:
                left, stat = _prom_cluster_stat(_untag(name[len("envoy_cluster_") :], labels))
                cname = f"{clabel}.{left.replace('_', '.')}" if left else clabel
                clusters.setdefault(cname, {})[stat] = iv
            elif (
                name.startswith("envoy_http_")
                and hlabel is not None
                and "envoy_listener_address" not in labels
            ):
                rest = _untag(name[len("envoy_http_") :], labels)
                for p in ("fault", "tracing"):
                    if rest.startswith(p + "_"):
                        rest = p + "." + rest[len(p) + 1 :]
                http.setdefault(hlabel, {})[rest] = iv
            else:
                tags = ",".join(f'{k}="{labels[k]}"' for k in sorted(labels))
                key = f"{name}{{{tags}}}" if labels else name
                other[key] = iv
    if text.strip() and not families:
        raise StatsParseError("no metrics in /stats/prometheus output")
    return clusters, http, other


def _strip_semicolon(d: Stats) -> Stats:
    out: Stats = {}
    for k, v in d.items():
        out.setdefault(k[:-1] if k.endswith(";") else k, {}).update(v)
    return out


def _snapshot(
    clusters: Any, http: Any, other: Any, source: str, wall: float | None, mono: float | None
) -> Snapshot:
    return Snapshot(
        wall=time.time() if wall is None else wall,
        mono=time.monotonic() if mono is None else mono,
        clusters=_strip_semicolon(clusters),
        http=_strip_semicolon(http),
        other=other,
        source=source,
    )


def snapshot_from_flat(
    flat: Mapping[str, int], *, wall: float | None = None, mono: float | None = None, source: str = ""
) -> Snapshot:
    clusters, http, other = split_flat(flat)
    return _snapshot(clusters, http, other, source, wall, mono)


def snapshot_from_text(text: str, **kw: Any) -> Snapshot:
    return snapshot_from_flat(parse_text(text), source="text", **kw)


def snapshot_from_json(doc: str | Mapping[str, Any], **kw: Any) -> Snapshot:
    return snapshot_from_flat(parse_json(doc), source="json", **kw)


def snapshot_from_prometheus(text: str, *, wall: float | None = None, mono: float | None = None) -> Snapshot:
    clusters, http, other = parse_prometheus(text)
    return _snapshot(clusters, http, other, "prometheus", wall, mono)


# --- deltas and series ---------------------------------------------------------------------------


def _delta_scope(before: Stats, after: Stats, keep: re.Pattern[str] | None) -> Stats:
    out: Stats = {}
    for name in sorted(set(before) | set(after)):
        if keep is not None and not keep.search(name):
            continue
        b, a = before.get(name, {}), after.get(name, {})
        d: dict[str, int] = {}
        for stat in sorted(set(b) | set(a)):
            if catalogue.kind_of(stat) == "gauge":
                d[stat] = a.get(stat, 0)
            else:
                d[stat] = a.get(stat, 0) - b.get(stat, 0)
        out[name] = d
    return out


@dataclass
class Delta:
    """Per-cluster and per-HCM changes between two snapshots (gauges: the value after)."""

    clusters: Stats
    http: Stats
    seconds: float

    def get(self, cluster: str, stat: str) -> int:
        return catalogue.value(self.clusters.get(cluster, {}), stat)

    def total(self, stat: str) -> int:
        """Sum of a cluster stat's delta over all clusters in this delta."""
        return sum(catalogue.value(d, stat) for d in self.clusters.values())

    def http_total(self, stat: str) -> int:
        return sum(catalogue.value(d, stat) for d in self.http.values())


def delta(before: Snapshot, after: Snapshot, cluster_regex: str = "") -> Delta:
    """``after − before`` per cluster per stat (counters; missing = 0), gauges as their value after."""
    return Delta(
        clusters=_delta_scope(before.clusters, after.clusters, compile_regex(cluster_regex)),
        http=_delta_scope(before.http, after.http, None),
        seconds=after.mono - before.mono,
    )


def series(snapshots: Iterable[Snapshot], cluster: str, stat: str) -> list[tuple[float, int]]:
    """``[(seconds since the first snapshot, value)]`` of one cluster stat over ``snapshots``."""
    snaps = list(snapshots)
    if not snaps:
        return []
    t0 = snaps[0].mono
    return [(s.mono - t0, s.get(cluster, stat)) for s in snaps]


def catalogue_view(snap: Snapshot, cluster_regex: str = "") -> dict[str, Any]:
    """The catalogue stats of one snapshot, for reports: ``{"Clusters": {c: {stat: v}}, "Http": {...}}``."""
    rx = compile_regex(cluster_regex)
    cl = {
        c: {s.name: snap.get(c, s.name) for s in catalogue.CLUSTER_CATALOGUE}
        for c in sorted(snap.clusters)
        if rx is None or rx.search(c)
    }
    ht = {
        p: {s.name: snap.get_http(p, s.name) for s in catalogue.HTTP_CATALOGUE if s.name in snap.http[p]}
        for p in sorted(snap.http)
    }
    return {"Clusters": cl, "Http": {p: v for p, v in ht.items() if v}}
