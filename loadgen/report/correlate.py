"""Correlate what the client saw with what Envoy counted: verdicts, counters, shedding onset, trip points.

What it is
    * :func:`verdicts` — per run with Envoy data: the client's 503s split by ``x-envoy-overloaded``,
      the overflow counters, and the reconciliation status and sentence. It calls
      :func:`loadgen.envoy.reconcile.reconcile` on the loaded tables (codes + Envoy deltas + the
      run's ``abandoned`` count as requests in flight at the last snapshot); it does not
      re-implement it. A run whose final scrape failed is at best ``within_tolerance``, as in
      :class:`loadgen.envoy.observer.EnvoyObserver`.
    * :func:`cluster_counters` — run × cluster: pending/active overflow, retry/cx overflow, 503s.
    * :func:`aligned` — one run's per-second client timeline next to the increase of Envoy's
      overflow counters in the same wall-clock second (scrape times and ``StartUnix`` share
      ``time.time()``).
    * :func:`shedding_onset` — per run: the first second with overloaded responses on the client
      side, the first scrape whose overflow counters rose on Envoy's side, and the lag between them.
      Resolution: one second on the client side (the timeline's bucket start), the scrape
      interval on Envoy's side (the increase happened between the previous scrape and this one).
    * :func:`trip_points` — per variant at increasing load: the smallest load at which overflow
      503s appear, and the smallest at which their rate passes ``rate``.

What it is not: no I/O and no rendering.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import pandas as pd  # type: ignore[import-untyped]

from loadgen.envoy.reconcile import ClientView, reconcile
from loadgen.errors import UsageError
from loadgen.report.frames import Frames

OVERFLOW_STATS = ("upstream_rq_pending_overflow", "upstream_rq_active_overflow")
COUNTER_STATS = {
    "pending_overflow": "upstream_rq_pending_overflow",
    "active_overflow": "upstream_rq_active_overflow",
    "retry_overflow": "upstream_rq_retry_overflow",
    "cx_overflow": "upstream_cx_overflow",
    "upstream_rq_503": "upstream_rq_503",
}
VERDICT_COLUMNS = (
    "run",
    "variant",
    "client_503",
    "client_503_overloaded",
    "client_503_plain",
    "pending_overflow",
    "active_overflow",
    "rejections",
    "retry_overflow",
    "cx_overflow",
    "upstream_rq_503",
    "unexplained_503",
    "status",
    "reason",
    "sentence",
)


def _deltas(frames: Frames, run: str) -> tuple[dict[str, dict[str, int]], dict[str, dict[str, int]]]:
    if "deltas" not in frames.cache:
        allr: dict[str, dict[str, dict[str, dict[str, int]]]] = {}
        e = frames.envoy
        for r, scope, cluster, stat, delta in zip(
            e["run"], e["scope"], e["cluster"], e["stat"], e["delta"], strict=False
        ):
            d = allr.setdefault(str(r), {"cluster": {}, "http": {}})
            d[str(scope)].setdefault(str(cluster), {})[str(stat)] = int(delta)
        frames.cache["deltas"] = allr
    out = frames.cache["deltas"].get(run, {"cluster": {}, "http": {}})
    return out["cluster"], out["http"]


def _final_scrape_failed(frames: Frames, run: str) -> str:
    s = frames.envoy_series[frames.envoy_series["run"] == run]
    if s.empty:
        return ""
    last_wall = s["wall"].max()
    last = s[s["wall"] == last_wall]
    if bool(last["missing"].any()):
        return "the final snapshot failed; deltas end at the last good snapshot"
    return ""


def verdicts(frames: Frames) -> pd.DataFrame:
    """One row per run that has Envoy data (see the module docstring); columns :data:`VERDICT_COLUMNS`."""
    rows: list[dict[str, Any]] = []
    runs = frames.runs[frames.runs["has_envoy"]]
    for run, variant, abandoned, source in zip(
        runs["run"], runs["variant"], runs["abandoned"], runs["source"], strict=False
    ):
        c = frames.codes[frames.codes["run"] == run]
        view = ClientView(
            codes={int(k): int(v) for k, v in zip(c["code"], c["count"], strict=False)},
            overloaded={int(k): int(v) for k, v in zip(c["code"], c["overloaded"], strict=False) if v},
            in_flight_at_end=int(abandoned),
            overloaded_known=source != "fortio",
        )
        cl, http = _deltas(frames, run)
        v = reconcile(view, cl, http)
        gap = _final_scrape_failed(frames, run)
        if gap:
            if v.status == "exact":
                v.status = "within_tolerance"
            v.reason = "; ".join(x for x in (v.reason, gap) if x)
            v.sentence += f" ({gap})"
        rows.append(
            {
                "run": run,
                "variant": variant,
                "client_503": v.client_503,
                "client_503_overloaded": v.client_503_overloaded,
                "client_503_plain": v.client_503 - v.client_503_overloaded,
                "pending_overflow": v.pending_overflow,
                "active_overflow": v.active_overflow,
                "rejections": v.rejections,
                "retry_overflow": v.retry_overflow,
                "cx_overflow": v.cx_overflow,
                "upstream_rq_503": v.upstream_rq_503,
                "unexplained_503": v.unexplained_503,
                "status": v.status,
                "reason": v.reason,
                "sentence": v.sentence,
            }
        )
    return pd.DataFrame(rows, columns=list(VERDICT_COLUMNS))


def cluster_counters(frames: Frames) -> pd.DataFrame:
    """run × cluster: the overflow counters' deltas (0 when Envoy never created the counter)."""
    env = frames.envoy[(frames.envoy["scope"] == "cluster")]
    cols = ["run", "cluster", *COUNTER_STATS, "overflow"]
    if env.empty:
        return pd.DataFrame(columns=cols)
    wide = env.pivot_table(index=["run", "cluster"], columns="stat", values="delta", aggfunc="sum")
    out = pd.DataFrame(index=wide.index)
    for col, stat in COUNTER_STATS.items():
        out[col] = wide[stat].fillna(0).astype("int64") if stat in wide.columns else 0
    out["overflow"] = out["pending_overflow"] + out["active_overflow"]
    return out.reset_index()[cols]


def _overflow_by_run(frames: Frames) -> dict[str, pd.DataFrame]:
    if "overflow_by_run" not in frames.cache:
        s = frames.envoy_series
        s = s[(s["scope"] == "cluster") & s["stat"].isin(OVERFLOW_STATS) & ~s["missing"]]
        g = (
            s.groupby(["run", "wall"], sort=True)
            .agg(t=("t", "first"), overflow=("value", "sum"))
            .reset_index()
        )
        frames.cache["overflow_by_run"] = {
            str(k): v.drop(columns="run").reset_index(drop=True) for k, v in g.groupby("run", sort=False)
        }
    out: dict[str, pd.DataFrame] = frames.cache["overflow_by_run"]
    return out


def envoy_overflow_series(frames: Frames, run: str) -> pd.DataFrame:
    """One run's scrapes: ``wall``, ``t``, ``overflow`` (pending + active over clusters, cumulative)."""
    got = _overflow_by_run(frames).get(run)
    if got is None:
        return pd.DataFrame(
            {"wall": pd.Series(dtype=float), "t": pd.Series(dtype=float), "overflow": pd.Series(dtype=float)}
        )
    return got


def aligned(frames: Frames, run: str) -> pd.DataFrame:
    """One run per wall-clock second: the client timeline plus ``envoy_overflow`` (counter increase
    observed by the scrapes taken in that second) and ``envoy_overflow_cum`` (since the first scrape).

    Seconds are the client's buckets ``[StartUnix + t, StartUnix + t + 1)``; scrapes before the
    first bucket count into the first, scrapes after the last into the last."""
    tl = frames.timeline[frames.timeline["run"] == run].sort_values("t").reset_index(drop=True)
    if tl.empty:
        raise UsageError(f"run {run!r} has no timeline")
    out = tl.copy()
    out["envoy_overflow"] = 0.0
    out["envoy_overflow_cum"] = math.nan
    ser = envoy_overflow_series(frames, run)
    if ser.empty:
        return out
    start = float(frames.runs.loc[frames.runs["run"] == run, "start_unix"].iloc[0])
    base = float(ser["overflow"].iloc[0])
    inc = ser["overflow"].diff().fillna(0.0)
    sec = (
        ((ser["wall"] - start) // 1).clip(lower=int(tl["t"].min()), upper=int(tl["t"].max())).astype("int64")
    )
    per = inc.groupby(sec).sum()
    cum = (ser["overflow"] - base).groupby(sec).max()
    out["envoy_overflow"] = out["t"].map(per).fillna(0.0)
    out["envoy_overflow_cum"] = out["t"].map(cum).ffill().fillna(0.0)
    return out


def shedding_onset(frames: Frames) -> pd.DataFrame:
    """Per run: ``client_onset_wall``/``_t`` (first second with overloaded responses),
    ``envoy_onset_wall``/``_t`` (first scrape whose overflow counters rose), ``lag_s`` (Envoy − client;
    positive: the counters showed it later) and ``envoy_interval_s`` (that scrape's distance to the
    previous one, Envoy's resolution). NaN where a side never shed."""
    rows: list[dict[str, Any]] = []
    tl_all = frames.timeline
    first_hit = tl_all[tl_all["overloaded"] > 0].groupby("run")["t"].min()
    has_tl = set(tl_all["run"].unique())
    for run, start in zip(frames.runs["run"], frames.runs["start_unix"], strict=False):
        hit = first_hit.get(run)
        c_t = float(hit) if hit is not None else math.nan
        c_wall = float(start) + c_t
        ser = envoy_overflow_series(frames, run)
        e_wall = e_t = interval = math.nan
        if not ser.empty:
            rose = ser["overflow"] > ser["overflow"].iloc[0]
            if bool(rose.any()):
                i = int(rose.to_numpy().argmax())
                e_wall = float(ser["wall"].iloc[i])
                e_t = e_wall - float(start)
                interval = e_wall - float(ser["wall"].iloc[i - 1]) if i > 0 else math.nan
        if run not in has_tl and ser.empty:
            continue
        rows.append(
            {
                "run": run,
                "client_onset_t": c_t,
                "client_onset_wall": c_wall,
                "envoy_onset_t": e_t,
                "envoy_onset_wall": e_wall,
                "lag_s": e_wall - c_wall,
                "envoy_interval_s": interval,
            }
        )
    return pd.DataFrame(
        rows,
        columns=[
            "run",
            "client_onset_t",
            "client_onset_wall",
            "envoy_onset_t",
            "envoy_onset_wall",
            "lag_s",
            "envoy_interval_s",
        ],
    )


def trip_points(
    runs_df: pd.DataFrame, by: Literal["concurrency", "qps"] = "concurrency", rate: float = 0.01
) -> pd.DataFrame:
    """Per variant: ``first_overflow`` — the smallest load (``by``) at which overflow 503s appear;
    ``rate_load`` — the smallest load at which the overflow 503 rate exceeds ``rate``;
    ``max_rate`` — the highest rate seen. Runs at the same load are combined (counts summed).

    Overflow 503s are 503s with ``x-envoy-overloaded``; for runs without that information (fortio
    files) all 503s are counted and ``basis`` says so. NaN where never reached."""
    if by not in ("concurrency", "qps"):
        raise UsageError(f"by must be 'concurrency' or 'qps', got {by!r}")
    if not 0.0 <= rate < 1.0:
        raise UsageError(f"rate must be in [0, 1), got {rate}")
    cols = [
        "variant",
        "by",
        "loads",
        "first_overflow",
        "first_overflow_rate",
        "rate",
        "rate_load",
        "max_rate",
        "basis",
    ]
    rows: list[dict[str, Any]] = []
    df = runs_df[runs_df[by].notna()].copy()
    fortio = df["source"] == "fortio"
    df["_ov"] = df["overloaded_503"].where(~fortio, df["n503"])
    for variant, g in df.groupby("variant", sort=True):
        per = g.groupby(by).agg(count=("count", "sum"), ov=("_ov", "sum")).sort_index()
        per["r"] = per["ov"] / per["count"].where(per["count"] > 0)
        tripped = per[per["ov"] > 0]
        over = per[per["r"] > rate]
        first = float(tripped.index[0]) if not tripped.empty else math.nan
        rows.append(
            {
                "variant": variant,
                "by": by,
                "loads": ",".join(f"{x:g}" for x in per.index),
                "first_overflow": first,
                "first_overflow_rate": float(tripped["r"].iloc[0]) if not tripped.empty else math.nan,
                "rate": rate,
                "rate_load": float(over.index[0]) if not over.empty else math.nan,
                "max_rate": float(per["r"].max()) if per["r"].notna().any() else math.nan,
                "basis": "503s (fortio: no x-envoy-overloaded data)"
                if bool(fortio[g.index].any())
                else "503s with x-envoy-overloaded",
            }
        )
    return pd.DataFrame(rows, columns=cols)


def load_axis(runs_df: pd.DataFrame) -> Literal["concurrency", "qps"]:
    """The load dimension that varies within variants: ``qps`` if it varies more than concurrency."""

    def spread(col: str) -> int:
        if runs_df.empty:
            return 0
        return int(runs_df.groupby("variant")[col].nunique().max())

    return "qps" if spread("qps") > spread("concurrency") else "concurrency"


def trip_sentence(row: pd.Series) -> str:
    """``cb-strict: overflow 503s first at c=2 (3.3 %); above 1 % from c=2`` for one trip_points row."""
    unit = "c=" if row["by"] == "concurrency" else "qps="
    if math.isnan(row["first_overflow"]):
        return f"no overflow 503s at any tested load ({unit}{row['loads']})"
    s = f"overflow 503s first at {unit}{row['first_overflow']:g} ({row['first_overflow_rate']:.1%})"
    if math.isnan(row["rate_load"]):
        s += f"; never above {row['rate']:.1%} (max {row['max_rate']:.1%})"
    else:
        s += f"; above {row['rate']:.1%} from {unit}{row['rate_load']:g}"
    return s


# --- the whole analysis, shared by the HTML and Markdown reports ------------------------------


@dataclass
class VariantSummary:
    variant: str
    runs: list[str]
    trip: str  # trip_sentence, or "" when the variant was run at one load only
    statuses: dict[str, int]  # verdict status -> runs
    unexplained: list[str]  # sentences of the unexplained runs
    policy: str
    envoy_runs: int

    @property
    def sentence(self) -> str:
        parts = [self.trip] if self.trip else []
        if self.envoy_runs:
            ex = self.statuses.get("exact", 0)
            tol = self.statuses.get("within_tolerance", 0)
            un = self.statuses.get("unexplained", 0)
            if un:
                parts.append(f"{un} of {self.envoy_runs} runs have 503s NOT explained by Envoy's counters")
            else:
                s = f"every 503 is explained by Envoy's counters ({ex} exact"
                parts.append(s + (f", {tol} within tolerance)" if tol else ")"))
        else:
            parts.append("no Envoy stats: 503s not reconciled")
        return "; ".join(parts)


@dataclass
class Analysis:
    frames: Frames
    by: Literal["concurrency", "qps"]
    rate: float
    verdicts: pd.DataFrame
    trips: pd.DataFrame
    onset: pd.DataFrame
    counters: pd.DataFrame
    variants: list[VariantSummary] = field(default_factory=list)

    @property
    def status_counts(self) -> dict[str, int]:
        return {str(k): int(v) for k, v in self.verdicts["status"].value_counts().items()}


def analyse(frames: Frames, rate: float = 0.01, by: Literal["concurrency", "qps"] | None = None) -> Analysis:
    """Everything the reports show, computed once."""
    axis = by or load_axis(frames.runs)
    v = verdicts(frames)
    trips = trip_points(frames.runs, axis, rate)
    a = Analysis(
        frames=frames,
        by=axis,
        rate=rate,
        verdicts=v,
        trips=trips,
        onset=shedding_onset(frames),
        counters=cluster_counters(frames),
    )
    for variant, g in frames.runs.groupby("variant", sort=True):
        vv = v[v["variant"] == variant]
        t = trips[trips["variant"] == variant]
        multi = g[axis].nunique() > 1
        policies = [p for p in g["policy"] if p]
        a.variants.append(
            VariantSummary(
                variant=str(variant),
                runs=list(g["run"]),
                trip=trip_sentence(t.iloc[0]) if multi and not t.empty else "",
                statuses={str(k): int(n) for k, n in vv["status"].value_counts().items()},
                unexplained=list(vv.loc[vv["status"] == "unexplained", "sentence"]),
                policy=policies[0] if policies else "",
                envoy_runs=len(vv),
            )
        )
    return a
