"""The report's charts as inline SVG text (matplotlib, Agg/SVG backends, no pyplot global state).

What it is: :func:`percentile_chart` (latency against percentile on a "nines" axis, one line per
run or variant, from HDR histograms), :func:`rates_chart` (success / 503 / overloaded rate against
concurrency or qps per variant, trip points marked), :func:`timeline_chart` (requests/s and status
codes per second with Envoy's overflow counter increases overlaid on the same wall clock). Each
returns an ``<svg …>`` element ready to inline in HTML: fonts stay text (``svg.fonttype = none``,
small), no XML prolog, no DOCTYPE, no metadata (so nothing refers to an external URL), mathtext off
(labels are shown literally). matplotlib escapes the text it writes into the SVG.

What it is not: no layout of the page (:mod:`loadgen.report.html`).
"""

from __future__ import annotations

import hashlib
import io
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any, cast

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd  # type: ignore[import-untyped]
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, NullFormatter

from loadgen.report import correlate
from loadgen.report.frames import Frames
from loadgen.report.hist import merge_hists, nines_axis, percentiles

RC = {
    "svg.fonttype": "none",
    "text.parse_math": False,
    "svg.hashsalt": "loadgen",
    "font.size": 9,
    "axes.grid": True,
    "grid.alpha": 0.3,
}
_PROLOG = re.compile(r"^.*?(?=<svg\b)", re.S)
_META = re.compile(r"<metadata>.*?</metadata>\s*", re.S)
_IDS = re.compile(r'(id="|url\(#|href="#)([A-Za-z][\w-]*)')
MAX_LINES = 12


def _rc() -> Any:
    return matplotlib.rc_context(cast(Any, RC))


def _short(s: str, n: int = 40) -> str:
    return s if len(s) <= n else s[: n - 1] + "…"


def to_svg(fig: Figure) -> str:
    """The figure as an inline ``<svg>`` element (prolog, DOCTYPE and metadata removed)."""
    buf = io.StringIO()
    with _rc():
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None})
    text = _META.sub("", _PROLOG.sub("", buf.getvalue(), count=1)).strip()
    # several SVGs share one HTML document: make matplotlib's ids (hashes of content) unique per chart
    tag = "c" + hashlib.sha1(text.encode()).hexdigest()[:6]
    return _IDS.sub(lambda m: m.group(1) + tag + m.group(2), text)


def _fig(w: float = 7.5, h: float = 3.6) -> Figure:
    with _rc():
        return Figure(figsize=(w, h), layout="constrained")


def percentile_chart(
    frames: Frames, groups: Mapping[str, Sequence[str]], kind: str = "latency", title: str = ""
) -> str:
    """Latency (ms) against percentile; ``groups`` maps a line label to the runs merged into it."""
    with _rc():
        fig = _fig()
        ax = fig.add_subplot()
        x, p = nines_axis()
        drawn = 0
        for label, keys in list(groups.items())[:MAX_LINES]:
            h = merge_hists(frames.hists[k][kind] for k in keys)
            if not h.counts.size:
                continue
            ax.plot(x, percentiles(h, p) / 1e6, label=_short(label), linewidth=1.3)
            drawn += 1
        ax.set_xticks([0, 1, 2, 3, 4], ["0", "90", "99", "99.9", "99.99"])
        ax.set_xlim(0, x[-1])
        ax.set_xlabel("percentile")
        ax.set_ylabel("latency ms" + (" (from intended send)" if kind == "latency" else " (service time)"))
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
        ax.yaxis.set_minor_formatter(NullFormatter())
        ax.set_title(title or ("latency percentiles" + ("" if drawn else " (no data)")))
        if drawn:
            ax.legend(fontsize=7, loc="upper left")
        return to_svg(fig)


def rates_chart(runs_df: pd.DataFrame, trips: pd.DataFrame, by: str) -> str:
    """Success / 503 / overloaded-503 rate per variant against ``by``, trip points marked."""
    with _rc():
        fig = _fig(7.5, 3.8)
        ax = fig.add_subplot()
        colours = matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]
        df = runs_df[runs_df[by].notna()]
        multi = df.groupby("variant")[by].nunique()
        df = df[df["variant"].isin(multi[multi > 1].index)]
        for i, (variant, g) in enumerate(df.groupby("variant", sort=True)):
            if i >= MAX_LINES:
                break
            col = colours[i % len(colours)]
            per = (
                g.groupby(by)
                .agg(
                    count=("count", "sum"),
                    ok=("ok", "sum"),
                    n503=("n503", "sum"),
                    ov=("overloaded_503", "sum"),
                )
                .sort_index()
            )
            tot = per["count"].where(per["count"] > 0)
            name = _short(str(variant), 24)
            ax.plot(per.index, per["ok"] / tot * 100, "-o", color=col, ms=3, label=f"{name} success")
            ax.plot(per.index, per["n503"] / tot * 100, "--s", color=col, ms=3, label=f"{name} 503")
            ax.plot(per.index, per["ov"] / tot * 100, ":^", color=col, ms=3, label=f"{name} overloaded")
            t = trips[trips["variant"] == variant]
            if not t.empty:
                for field, marker in (("first_overflow", "v"), ("rate_load", "X")):
                    v = float(t[field].iloc[0])
                    if not math.isnan(v):
                        ax.axvline(v, color=col, alpha=0.35, linewidth=1)
                        ax.plot([v], [102], marker=marker, color=col, ms=7, clip_on=False)
        ax.set_ylim(-2, 105)
        ax.set_xlabel("concurrency" if by == "concurrency" else "requested qps")
        ax.set_ylabel("% of requests")
        ax.set_title("success / 503 / x-envoy-overloaded rate (▼ first overflow, ✕ above threshold)")
        if len(df):
            ax.legend(fontsize=6, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.18))
        return to_svg(fig)


def timeline_chart(frames: Frames, run: str) -> str:
    """Requests/s and status codes per second, Envoy's overflow counter increases overlaid."""
    al = correlate.aligned(frames, run)
    with _rc():
        fig = _fig(7.5, 3.4)
        ax = fig.add_subplot()
        t = al["t"].to_numpy()
        codes = [c for c in al.columns if c.startswith("code_")]
        bottom = np.zeros(len(al))
        for c in codes:  # stacked steps: one path per status, however long the run
            v = al[c].to_numpy(dtype=float)
            ax.fill_between(
                t,
                bottom,
                bottom + v,
                step="mid",
                alpha=0.45,
                linewidth=0,
                label=c[5:] if c != "code_-1" else "error",
            )
            bottom += v
        mk = len(t) <= 30
        ax.plot(t, al["requests"], "k-", drawstyle="steps-mid", linewidth=1, label="requests/s")
        ax.plot(
            t,
            al["overloaded"],
            "r-",
            marker="o" if mk else None,
            ms=3,
            linewidth=1.2,
            label="x-envoy-overloaded/s",
        )
        if frames.runs.loc[frames.runs["run"] == run, "has_envoy"].any():
            ax.plot(
                t,
                al["envoy_overflow"],
                "b--",
                marker="D" if mk else None,
                ms=3,
                linewidth=1.2,
                label="Envoy pending+active overflow /s",
            )
        ax.set_xlabel("second of the run (wall clock aligned with Envoy scrapes)")
        ax.set_ylabel("per second")
        ax.set_title(_short(f"timeline: {run}", 80))
        ax.legend(fontsize=6, ncol=3, loc="upper right")
        return to_svg(fig)
