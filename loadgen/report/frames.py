"""Tidy pandas tables from run JSON files (loadgen's and fortio's): runs, codes, timeline, Envoy.

What it is
    :func:`load_frames` reads run files (through :meth:`RunResult.from_json`, so fortio's own
    result files work too) and :func:`frames_from_results` takes :class:`RunResult` objects; both
    return :class:`Frames`, five DataFrames plus the per-run HDR histograms:

    ``runs``          one row per run (columns in :data:`RUN_COLUMNS`): ``run`` (unique key: the
                      file name without ``.json``), file, id, labels, variant, concurrency, qps,
                      requested/actual QPS, duration, count, latency percentiles measured from
                      the *intended* send time (``lat_*_ms``) and service-time percentiles
                      (``svc_*_ms``, from the actual send), both from the HDR histograms;
                      ``ok`` (2xx), ``errors`` (everything else, transport errors included),
                      ``n503``, ``overloaded`` (responses with ``x-envoy-overloaded``),
                      ``overloaded_503`` and the matching rates; engine, ``source``
                      (``loadgen``/``fortio``) and ``source_note`` (what was lost); the policy YAML.
    ``codes``         run × code: ``count`` and ``overloaded`` (of those, with the header).
    ``timeline``      run × second: ``t`` (from the run's start), ``wall`` (``StartUnix + t``, the
                      same clock as the Envoy scrapes), requests, errors, overloaded, one
                      ``code_<n>`` column per status seen, ``p50_ms``/``p99_ms`` (from the
                      per-second log-linear buckets, ~6 % resolution).
    ``envoy``         run × scope × cluster × stat: ``delta`` over the run (``scope`` is
                      ``cluster`` or ``http`` — the HTTP connection manager prefix is then in
                      ``cluster``).
    ``envoy_series``  run × scrape × scope × cluster × stat: ``wall``, ``t``, ``phase``, ``value``;
                      a failed scrape is one row with ``missing`` true and empty cluster/stat.
    Envoy values are float64 (exact up to 2^53; Istio's "unlimited" 2^64-2 gauges become 1.8e19).

    Percentiles of several runs together always come from the merged histograms
    (:func:`combined_percentiles`), never from averaged percentiles.

Conventions for what the tables read from a run
    * **Labels**: comma-separated; each ``key=value`` item becomes a label (keys lower-cased,
      spaces trimmed), e.g. ``-labels 'variant=cb-strict,c=3,qps=200'``. ``variant`` names the
      policy variant; ``c`` (or ``concurrency``/``connections``) the concurrency; ``qps`` the
      requested rate. Other items are kept in ``label_kv`` (JSON text).
    * **Variant**: the ``variant`` label, else ``Loadgen.Extra.Variant``, else ``default``.
    * **Concurrency**: the ``c`` label, else ``NumThreads``. **QPS**: the ``qps`` label, else
      ``RequestedQPS`` (NaN for ``max``).
    * **Policy**: ``Loadgen.Extra.Policy``, a string (the DestinationRule/VirtualService YAML
      under test); ``loadgen sweep`` fills it, the report shows it next to the variant's results.
    * **fortio files** (``source == "fortio"``): fortio keeps no intended-start latency, no
      timeline and no ``x-envoy-overloaded`` counts; service-time percentiles are rebuilt from
      fortio's fixed buckets (``source_note`` states it). ``lat_*`` columns then hold NaN.

What it is not: no correlation (:mod:`loadgen.report.correlate`), no rendering.
"""

from __future__ import annotations

import glob
import json
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd  # type: ignore[import-untyped]

from loadgen.errors import UsageError
from loadgen.recorder import TIMELINE_BUCKETS, timeline_bounds
from loadgen.report.hist import SparseHist, merge_hists, percentiles
from loadgen.results import RunResult

PCTS: tuple[tuple[str, float], ...] = (("p50", 50.0), ("p90", 90.0), ("p99", 99.0), ("p999", 99.9))
FORTIO_NOTE = (
    "fortio result: service-time percentiles approximated from fortio's fixed bucket table (accurate to one "
    "fortio bucket); no intended-start latency, no timeline, no x-envoy-overloaded counts"
)
_C_KEYS = ("c", "concurrency", "connections")

RUN_COLUMNS: tuple[str, ...] = (
    "run",
    "file",
    "id",
    "labels",
    "label_kv",
    "variant",
    "concurrency",
    "qps",
    "requested_qps",
    "actual_qps",
    "duration_s",
    "count",
    "start_unix",
    "url",
    *(f"lat_{n}_ms" for n, _ in PCTS),
    "lat_max_ms",
    *(f"svc_{n}_ms" for n, _ in PCTS),
    "svc_max_ms",
    "ok",
    "errors",
    "error_rate",
    "n503",
    "rate_503",
    "overloaded",
    "overloaded_503",
    "rate_overloaded",
    "abandoned",
    "engine",
    "source",
    "source_note",
    "has_envoy",
    "policy",
)
TABLES: tuple[str, ...] = ("runs", "codes", "timeline", "envoy", "envoy_series")


def parse_labels(labels: str) -> dict[str, str]:
    """``'variant=a, c=3, other'`` → ``{'variant': 'a', 'c': '3'}`` (items without ``=`` are ignored)."""
    out: dict[str, str] = {}
    for item in labels.split(","):
        if "=" not in item:
            continue
        k, v = item.split("=", 1)
        k = k.strip().lower()
        if k:
            out[k] = v.strip()
    return out


def _num(s: str | None) -> float:
    if s is None:
        return math.nan
    try:
        v = float(s)
    except ValueError:
        return math.nan
    return v if math.isfinite(v) else math.nan


@dataclass
class Frames:
    """The tables of a set of runs plus their histograms (``hists[run]['latency'|'service']``)."""

    runs: pd.DataFrame
    codes: pd.DataFrame
    timeline: pd.DataFrame
    envoy: pd.DataFrame
    envoy_series: pd.DataFrame
    hists: dict[str, dict[str, SparseHist]] = field(default_factory=dict)
    verdicts: dict[str, dict[str, Any]] = field(default_factory=dict)  # stored Loadgen.Envoy.Verdict
    cache: dict[str, Any] = field(default_factory=dict, repr=False)  # derived tables (correlate)

    def table(self, name: str) -> pd.DataFrame:
        if name not in TABLES:
            raise UsageError(f"unknown table {name!r}; tables: {', '.join(TABLES)}")
        df: pd.DataFrame = getattr(self, name)
        return df


# --- loading ---------------------------------------------------------------------------------


def expand_paths(args: Sequence[str]) -> list[str]:
    """Files, directories (every ``*.json`` inside, sorted) and globs → file paths (in order, no dups)."""
    out: list[str] = []
    for a in args:
        if os.path.isdir(a):
            found = sorted(glob.glob(os.path.join(a, "*.json")))
        elif os.path.exists(a):
            found = [a]
        else:
            found = sorted(glob.glob(a))
            if not found and not any(ch in a for ch in "*?["):
                raise UsageError(f"{a}: no such file or directory")
        for f in found:
            if f not in out:
                out.append(f)
    return out


def read_run(path: str) -> RunResult:
    """One run file → :class:`RunResult`; any problem is a :class:`UsageError` naming the file."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except OSError as exc:
        raise UsageError(f"{path}: cannot read: {exc.strerror}") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: not JSON ({exc})") from exc
    try:
        return RunResult.from_json(data)
    except UsageError as exc:
        raise UsageError(f"{path}: not a loadgen/fortio HTTP result: {exc}") from exc
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise UsageError(f"{path}: not a loadgen/fortio HTTP result: {exc!r}") from exc


def load_frames(paths: Sequence[str]) -> Frames:
    """Read run files (see :func:`expand_paths` for what ``paths`` may hold) into :class:`Frames`."""
    files = expand_paths(paths)
    if not files:
        raise UsageError("no run files found in " + " ".join(paths))
    return frames_from_results((read_run(f), f) for f in files)


def _unique_key(name: str, seen: set[str]) -> str:
    key, n = name, 2
    while key in seen:
        key = f"{name}#{n}"
        n += 1
    seen.add(key)
    return key


def frames_from_results(items: Iterable[tuple[RunResult, str]]) -> Frames:
    """Build :class:`Frames` from ``(result, file)`` pairs (``file`` may be empty)."""
    b = _Builder()
    for res, path in items:
        try:
            b.add(res, path)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:  # a hand-edited or corrupt file
            raise UsageError(f"{path or 'run'}: not a loadgen/fortio HTTP result: {exc!r}") from exc
    return b.build()


class _Builder:
    def __init__(self) -> None:
        self.seen: set[str] = set()
        self.runs: list[dict[str, Any]] = []
        self.codes: dict[str, list[Any]] = {"run": [], "code": [], "count": [], "overloaded": []}
        self.tl: list[pd.DataFrame] = []
        self.env: dict[str, list[Any]] = {"run": [], "scope": [], "cluster": [], "stat": [], "delta": []}
        self.ser: dict[str, list[Any]] = {
            "run": [],
            "wall": [],
            "t": [],
            "phase": [],
            "missing": [],
            "scope": [],
            "cluster": [],
            "stat": [],
            "value": [],
        }
        self.hists: dict[str, dict[str, SparseHist]] = {}
        self.verdicts: dict[str, dict[str, Any]] = {}

    def add(self, res: RunResult, path: str) -> None:
        base = os.path.basename(path)
        name = base[:-5] if base.endswith(".json") else (base or res.id or "run")
        key = _unique_key(name, self.seen)
        er = res.engine_result
        lat = SparseHist.from_recorder(er.latency)
        svc = SparseHist.from_recorder(er.service)
        self.hists[key] = {"latency": lat, "service": svc}
        kv = parse_labels(res.labels)
        extra = res.extra if isinstance(res.extra, dict) else {}
        variant = kv.get("variant") or str(extra.get("Variant", "") or "") or "default"
        conc = next((_num(kv[k]) for k in _C_KEYS if k in kv), math.nan)
        if math.isnan(conc):
            conc = float(res.num_threads or res.options.connections)
        qps = _num(kv["qps"]) if "qps" in kv else _num(res.requested_qps)
        count = int(res.count)
        codes = {int(k): int(v) for k, v in er.codes.items()}
        overl = {int(k): int(v) for k, v in er.overloaded.items()}
        total = sum(codes.values()) or count
        ok = sum(v for k, v in codes.items() if 200 <= k < 300)
        n503 = codes.get(503, 0)
        ov = sum(overl.values())
        ov503 = overl.get(503, 0)
        fortio = res.source == "fortio"
        row: dict[str, Any] = {
            "run": key,
            "file": path,
            "id": res.id,
            "labels": res.labels,
            "label_kv": json.dumps({k: v for k, v in kv.items()}, sort_keys=True),
            "variant": variant,
            "concurrency": conc,
            "qps": qps,
            "requested_qps": res.requested_qps,
            "actual_qps": float(res.actual_qps),
            "duration_s": er.elapsed_ns / 1e9,
            "count": count,
            "start_unix": float(er.start_wall),
            "url": res.url,
        }
        for prefix, h in (("lat", lat), ("svc", svc)):
            vals = percentiles(h, [p for _, p in PCTS]) / 1e6
            for (n, _), v in zip(PCTS, vals, strict=False):
                row[f"{prefix}_{n}_ms"] = float(v)
            row[f"{prefix}_max_ms"] = h.vmax / 1e6 if h.counts.size else math.nan
        row.update(
            {
                "ok": ok,
                "errors": total - ok,
                "error_rate": (total - ok) / total if total else 0.0,
                "n503": n503,
                "rate_503": n503 / total if total else 0.0,
                "overloaded": ov,
                "overloaded_503": ov503,
                "rate_overloaded": ov503 / total if total else 0.0,
                "abandoned": int(er.abandoned),
                "engine": res.engine,
                "source": res.source,
                "source_note": FORTIO_NOTE if fortio else "",
                "has_envoy": bool(res.envoy),
                "policy": str(extra.get("Policy", "") or ""),
            }
        )
        self.runs.append(row)
        for c in sorted(codes):
            self.codes["run"].append(key)
            self.codes["code"].append(c)
            self.codes["count"].append(codes[c])
            self.codes["overloaded"].append(overl.get(c, 0))
        if er.timeline:
            self.tl.append(_timeline_frame(key, res))
        if res.envoy:
            self._add_envoy(key, res.envoy)

    def _add_envoy(self, key: str, env: dict[str, Any]) -> None:
        for scope, name in (("cluster", "Deltas"), ("http", "HttpDeltas")):
            for cluster, stats in (env.get(name) or {}).items():
                for stat, v in stats.items():
                    self.env["run"].append(key)
                    self.env["scope"].append(scope)
                    self.env["cluster"].append(str(cluster))
                    self.env["stat"].append(str(stat))
                    self.env["delta"].append(float(v))
        s = self.ser
        for e in env.get("Series") or []:
            wall, t, phase = float(e.get("Wall", 0.0)), float(e.get("T", 0.0)), str(e.get("Phase", ""))
            if e.get("Missing"):
                for col, v in (
                    ("run", key),
                    ("wall", wall),
                    ("t", t),
                    ("phase", phase),
                    ("missing", True),
                    ("scope", ""),
                    ("cluster", ""),
                    ("stat", ""),
                    ("value", math.nan),
                ):
                    s[col].append(v)
                continue
            for scope, name in (("cluster", "Clusters"), ("http", "Http")):
                for cluster, stats in (e.get(name) or {}).items():
                    n = len(stats)
                    s["run"].extend([key] * n)
                    s["wall"].extend([wall] * n)
                    s["t"].extend([t] * n)
                    s["phase"].extend([phase] * n)
                    s["missing"].extend([False] * n)
                    s["scope"].extend([scope] * n)
                    s["cluster"].extend([str(cluster)] * n)
                    s["stat"].extend(str(k) for k in stats)
                    s["value"].extend(float(v) for v in stats.values())
        if env.get("Verdict"):
            self.verdicts[key] = dict(env["Verdict"])

    def build(self) -> Frames:
        runs = pd.DataFrame(self.runs, columns=list(RUN_COLUMNS))
        codes = pd.DataFrame(self.codes).astype({"code": "int64", "count": "int64", "overloaded": "int64"})
        if self.tl:
            timeline = pd.concat(self.tl, ignore_index=True)
            cc = [c for c in timeline.columns if c.startswith("code_")]
            timeline[cc] = timeline[cc].fillna(0).astype("int64")
            fixed = ["run", "t", "wall", "requests", "errors", "overloaded", "p50_ms", "p99_ms"]
            timeline = timeline[fixed + sorted(cc, key=lambda c: int(c[5:]))]
        else:
            timeline = pd.DataFrame(
                {
                    "run": pd.Series(dtype=str),
                    "t": pd.Series(dtype="int64"),
                    "wall": pd.Series(dtype=float),
                    "requests": pd.Series(dtype="int64"),
                    "errors": pd.Series(dtype="int64"),
                    "overloaded": pd.Series(dtype="int64"),
                    "p50_ms": pd.Series(dtype=float),
                    "p99_ms": pd.Series(dtype=float),
                }
            )
        envoy = pd.DataFrame(self.env).astype({"delta": "float64"})
        series = pd.DataFrame(self.ser).astype(
            {"wall": "float64", "t": "float64", "value": "float64", "missing": "bool"}
        )
        return Frames(
            runs=runs,
            codes=codes,
            timeline=timeline,
            envoy=envoy,
            envoy_series=series,
            hists=self.hists,
            verdicts=self.verdicts,
        )


_MID = np.array([sum(timeline_bounds(i)) / 2.0 for i in range(TIMELINE_BUCKETS)])


def _timeline_frame(key: str, res: RunResult) -> pd.DataFrame:
    er = res.engine_result
    tl = er.timeline
    n = len(tl)
    lat = np.array([s.latency for s in tl], dtype=np.int64).reshape(n, TIMELINE_BUCKETS)
    d: dict[str, Any] = {
        "run": [key] * n,
        "t": np.array([s.t for s in tl], dtype=np.int64),
        "requests": np.array([s.requests for s in tl], dtype=np.int64),
        "errors": np.array([s.errors for s in tl], dtype=np.int64),
        "overloaded": np.array([s.overloaded for s in tl], dtype=np.int64),
    }
    d["wall"] = float(er.start_wall) + d["t"]
    cum = np.cumsum(lat, axis=1)
    tot = cum[:, -1]
    for name, p in (("p50_ms", 50.0), ("p99_ms", 99.0)):
        # timeline_percentile's rule: first bucket whose cumulative count reaches ceil(total * p / 100)
        target = np.maximum(1, np.ceil(tot * p / 100.0)).astype(np.int64)
        pos = np.minimum((cum < target[:, None]).sum(axis=1), TIMELINE_BUCKETS - 1)
        d[name] = np.where(tot > 0, _MID[pos] / 1000.0, np.nan)
    for code in sorted({c for s in tl for c in s.codes}):
        d[f"code_{code}"] = np.array([s.codes.get(code, 0) for s in tl], dtype=np.int64)
    return pd.DataFrame(d)


# --- combined percentiles -------------------------------------------------------------------


def combined_percentiles(
    frames: Frames,
    runs: Iterable[str] | pd.DataFrame,
    ps: Sequence[float] = (50.0, 90.0, 99.0, 99.9, 100.0),
    kind: str = "latency",
) -> dict[float, float]:
    """Percentiles (ms) of several runs together, from their merged HDR histograms.

    ``runs`` is a list of run keys or a subset of ``frames.runs``; ``kind`` is ``latency``
    (from the intended send time) or ``service``. NaN when no run has values of that kind."""
    if kind not in ("latency", "service"):
        raise UsageError(f"kind must be 'latency' or 'service', got {kind!r}")
    keys = list(runs["run"]) if isinstance(runs, pd.DataFrame) else list(runs)
    unknown = [k for k in keys if k not in frames.hists]
    if unknown:
        raise UsageError(f"unknown runs: {', '.join(unknown)}")
    h = merge_hists(frames.hists[k][kind] for k in keys)
    vals = percentiles(h, list(ps)) / 1e6
    return {float(p): float(v) for p, v in zip(ps, vals, strict=False)}


def merged_hist(frames: Frames, keys: Iterable[str], kind: str = "latency") -> SparseHist:
    return merge_hists(frames.hists[k][kind] for k in keys)


# --- export ------------------------------------------------------------------------------


def export(frames: Frames, directory: str, fmt: str = "csv") -> list[str]:
    """Write every table as ``<directory>/<table>.csv`` or ``.parquet``; returns the paths."""
    if fmt not in ("csv", "parquet"):
        raise UsageError(f"-format must be csv or parquet, got {fmt!r}")
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create {directory!r}: {exc.strerror}") from exc
    out = []
    for name in TABLES:
        df = frames.table(name)
        path = os.path.join(directory, f"{name}.{fmt}")
        if fmt == "csv":
            df.to_csv(path, index=False)
        else:
            try:
                df.to_parquet(path, index=False)
            except ImportError as exc:
                raise UsageError("Parquet export needs pyarrow: pip install 'loadgen[report]'") from exc
        out.append(path)
    return out


def read_table(path: str) -> pd.DataFrame:
    """Read back a table written by :func:`export`."""
    if path.endswith(".parquet"):
        return pd.read_parquet(path)
    return pd.read_csv(path, keep_default_na=True)
