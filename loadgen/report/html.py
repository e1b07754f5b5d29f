"""The HTML report: one self-contained file that works offline (inline CSS and SVG, no JavaScript).

What it is: :func:`render_html` lays out an :class:`~loadgen.report.correlate.Analysis`: the
verdicts per variant at the top, a comparison table of variants (percentiles from merged
histograms) and runs, the latency percentile curves, the rates against load with the trip points,
the timelines with Envoy's overflow counters, one section per variant with its policy YAML next to
its runs and verdicts, and the detail tables (reconciliation, shedding onset). Every piece of text
that comes from a run (labels, URLs, YAML, cluster names, file names, sentences) goes through
:func:`html.escape`; charts are matplotlib SVG (whose text matplotlib escapes).

What it is not: no data loading (:mod:`loadgen.report.frames`) and no chart drawing
(:mod:`loadgen.report.charts`).
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Sequence
from typing import Any

import pandas as pd  # type: ignore[import-untyped]

from loadgen.report import charts
from loadgen.report.correlate import Analysis
from loadgen.report.frames import combined_percentiles
from loadgen.text import plural
from loadgen.version import __version__

MAX_TIMELINES = 6

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:1.5em auto;max-width:1200px;
color:#222;padding:0 1em}
h1{font-size:1.5em}h2{font-size:1.2em;border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0}
th,td{border:1px solid #ddd;padding:.25em .5em;text-align:right;vertical-align:top}
th{background:#f4f4f4}td.l,th.l{text-align:left}
.exact{color:#17692a;font-weight:600}.within_tolerance{color:#8a6d00;font-weight:600}
.unexplained{color:#b00020;font-weight:700}
.summary li{margin:.3em 0}.note{color:#666;font-size:.85em}
.variant{display:flex;gap:1.5em;flex-wrap:wrap;align-items:flex-start}
pre{background:#f7f7f7;border:1px solid #e3e3e3;padding:.6em;font-size:.8em;max-width:34em;overflow:auto}
.chart svg{max-width:100%;height:auto}
"""


def esc(v: Any) -> str:
    """HTML-escape any value's text (quotes included)."""
    return html.escape(str(v), quote=True)


def _fmt(v: Any, spec: str = ".3g") -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        if math.isnan(v):
            return "–"
        return format(v, spec)
    return str(v)


def _pct(v: float) -> str:
    return "–" if v is None or math.isnan(v) else f"{v * 100:.2f}%"


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], left: Sequence[int] = (0,)) -> str:
    """An HTML table; cells are escaped unless given as ``("raw", html)`` tuples."""
    out = ["<table><thead><tr>"]
    out += [f'<th class="{"l" if i in left else ""}">{esc(h)}</th>' for i, h in enumerate(headers)]
    out.append("</tr></thead><tbody>")
    for r in rows:
        out.append("<tr>")
        for i, c in enumerate(r):
            cell = c[1] if isinstance(c, tuple) and len(c) == 2 and c[0] == "raw" else esc(c)
            out.append(f'<td class="{"l" if i in left else ""}">{cell}</td>')
        out.append("</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _status(s: str) -> tuple[str, str]:
    return ("raw", f'<span class="{esc(s)}">{esc(s.replace("_", " "))}</span>') if s else ("raw", "")


def variant_rows(a: Analysis) -> list[list[Any]]:
    rows = []
    runs = a.frames.runs
    for vs in a.variants:
        g = runs[runs["variant"] == vs.variant]
        cp = combined_percentiles(a.frames, g, (50.0, 99.0, 99.9, 100.0))
        total = int(g["count"].sum())
        rows.append(
            [
                vs.variant,
                len(g),
                total,
                _fmt(cp[50.0]),
                _fmt(cp[99.0]),
                _fmt(cp[99.9]),
                _fmt(cp[100.0]),
                _pct(g["errors"].sum() / total if total else math.nan),
                _pct(g["n503"].sum() / total if total else math.nan),
                int(g["overloaded_503"].sum()),
            ]
        )
    return rows


VARIANT_HEADERS = (
    "variant",
    "runs",
    "requests",
    "p50 ms",
    "p99 ms",
    "p99.9 ms",
    "max ms",
    "errors",
    "503",
    "overloaded 503",
)
RUN_HEADERS = (
    "run",
    "variant",
    "c",
    "qps",
    "actual qps",
    "count",
    "p50 ms",
    "p99 ms",
    "p99.9 ms",
    "max ms",
    "svc p99 ms",
    "errors",
    "503",
    "overloaded 503",
    "verdict",
)


def run_rows(a: Analysis, runs: pd.DataFrame) -> list[list[Any]]:
    st = dict(zip(a.verdicts["run"], a.verdicts["status"], strict=False))
    rows = []
    for r in runs.itertuples(index=False):
        lat = "lat" if not math.isnan(r.lat_p50_ms) else "svc"
        rows.append(
            [
                r.run,
                r.variant,
                _fmt(r.concurrency, "g"),
                _fmt(r.qps, "g") if not math.isnan(r.qps) else "max",
                _fmt(r.actual_qps, ".1f"),
                r.count,
                _fmt(getattr(r, f"{lat}_p50_ms")),
                _fmt(getattr(r, f"{lat}_p99_ms")),
                _fmt(getattr(r, f"{lat}_p999_ms")),
                _fmt(getattr(r, f"{lat}_max_ms")),
                _fmt(r.svc_p99_ms),
                _pct(r.error_rate),
                _pct(r.rate_503),
                r.overloaded_503,
                _status(st.get(r.run, "")) if r.run in st else "no Envoy",
            ]
        )
    return rows


def _line_groups(a: Analysis) -> dict[str, list[str]]:
    runs = a.frames.runs
    if len(runs) <= charts.MAX_LINES:
        return {str(r): [str(r)] for r in runs["run"]}
    return {vs.variant: vs.runs for vs in a.variants}


MIN_TIMELINE_SECONDS = 3


def _timeline_runs(a: Analysis) -> list[str]:
    tl = a.frames.timeline
    if tl.empty:
        return []
    n = tl.groupby("run")["t"].count()
    runs = a.frames.runs.set_index("run")
    # a timeline needs a few seconds to say anything; sub-second runs are left to the tables
    cand = [r for r in runs.index if n.get(r, 0) >= MIN_TIMELINE_SECONDS]
    # prefer runs with Envoy data, then the longest, then the highest load
    cand.sort(
        key=lambda r: (
            not bool(runs.at[r, "has_envoy"]),
            -int(n.get(r, 0)),
            -float(runs.at[r, a.by]) if not math.isnan(runs.at[r, a.by]) else 0.0,
        )
    )
    if len(a.variants) > 1:  # one per variant first
        picked: list[str] = []
        for vs in a.variants:
            mine = [r for r in cand if r in vs.runs and r not in picked]
            if mine:
                picked.append(mine[0])
        picked += [r for r in cand if r not in picked]
        cand = picked
    return cand[:MAX_TIMELINES]


def render_html(a: Analysis, title: str = "loadgen report") -> str:
    """The whole report as one HTML document (see the module docstring)."""
    f = a.frames
    runs = f.runs
    out: list[str] = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{esc(title)}</title><style>{CSS}</style></head><body>",
        f"<h1>{esc(title)}</h1>",
    ]
    sc = a.status_counts
    n_env = int(runs["has_envoy"].sum())
    out.append(
        f'<p class="note">{plural(len(runs), "run")}, {plural(len(a.variants), "variant")}, '
        f"{n_env} with Envoy stats"
        + (
            ": "
            + ", ".join(
                f'<span class="{esc(k)}">{v} {esc(k.replace("_", " "))}</span>' for k, v in sorted(sc.items())
            )
            if sc
            else ""
        )
        + f". Generated by loadgen {esc(__version__)}.</p>"
    )
    # --- summary
    out.append('<h2 id="summary">Summary</h2><ul class="summary">')
    for vs in a.variants:
        cls = "unexplained" if vs.statuses.get("unexplained") else ("exact" if vs.envoy_runs else "")
        out.append(f'<li><b>{esc(vs.variant)}</b>: <span class="{cls}">{esc(vs.sentence)}</span>')
        if vs.unexplained:
            out.append(
                "<ul>"
                + "".join(f'<li class="unexplained">{esc(s)}</li>' for s in vs.unexplained[:5])
                + "</ul>"
            )
        out.append("</li>")
    out.append("</ul>")
    fortio = runs[runs["source"] == "fortio"]
    if not fortio.empty:
        out.append(
            f'<p class="note">{len(fortio)} fortio result file(s): {esc(fortio["source_note"].iloc[0])}.</p>'
        )
    # --- comparison
    out.append(
        '<h2 id="variants">Variants</h2><p class="note">Percentiles of each variant come from the '
        "merged HDR histograms of its runs (latency from the intended send time).</p>"
    )
    out.append(table(VARIANT_HEADERS, variant_rows(a)))
    out.append('<h2 id="runs">Runs</h2>')
    out.append(table(RUN_HEADERS, run_rows(a, runs), left=(0, 1)))
    # --- charts
    out.append('<h2 id="percentiles">Latency percentiles</h2><div class="chart">')
    out.append(charts.percentile_chart(f, _line_groups(a)))
    out.append("</div>")
    if any(runs.groupby("variant")[a.by].nunique() > 1):
        out.append(f'<h2 id="rates">Rates against {esc(a.by)}</h2><div class="chart">')
        out.append(charts.rates_chart(runs, a.trips, a.by))
        out.append("</div>")
        trip_rows = [
            [
                t.variant,
                t.loads,
                _fmt(t.first_overflow, "g"),
                _pct(t.first_overflow_rate),
                _fmt(t.rate_load, "g"),
                _pct(t.max_rate),
                t.basis,
            ]
            for t in a.trips.itertuples(index=False)
        ]
        out.append(
            table(
                (
                    "variant",
                    f"{a.by} tested",
                    "first overflow at",
                    "rate there",
                    f"rate > {a.rate:.1%} from",
                    "max rate",
                    "basis",
                ),
                trip_rows,
                left=(0, 1, 6),
            )
        )
    tls = _timeline_runs(a)
    if not tls:
        out.append('<h2 id="timelines">Timelines</h2>')
        out.append(
            f'<p class="note">No run lasted {MIN_TIMELINE_SECONDS} s or more: per-second timelines are '
            "drawn for longer runs only (use -t).</p>"
        )
    if tls:
        out.append('<h2 id="timelines">Timelines</h2>')
        if len(runs) > len(tls):
            out.append(
                f'<p class="note">{len(tls)} of {len(runs)} runs shown (Envoy runs first, then the '
                "longest, one per variant).</p>"
            )
        for r in tls:
            out.append(f'<div class="chart">{charts.timeline_chart(f, r)}</div>')
    # --- per variant, with its policy
    out.append('<h2 id="policies">Variants and policies</h2>')
    for vs in a.variants:
        g = runs[runs["variant"] == vs.variant]
        vv = a.verdicts[a.verdicts["variant"] == vs.variant]
        out.append(f'<h3>{esc(vs.variant)}</h3><div class="variant">')
        out.append(
            "<div>"
            + (
                f"<pre>{esc(vs.policy)}</pre>"
                if vs.policy
                else '<p class="note">no policy recorded (Loadgen.Extra.Policy)</p>'
            )
            + "</div>"
        )
        out.append(
            "<div>"
            + table(
                ("run", "c", "qps", "count", "503", "overloaded 503", "url"),
                [
                    [
                        r.run,
                        _fmt(r.concurrency, "g"),
                        _fmt(r.qps, "g"),
                        r.count,
                        r.n503,
                        r.overloaded_503,
                        r.url,
                    ]
                    for r in g.itertuples(index=False)
                ],
                left=(0, 6),
            )
        )
        if not vv.empty:
            out.append(
                "<ul>"
                + "".join(
                    f'<li><span class="{esc(s)}">{esc(s)}</span> {esc(run)}: {esc(sent)}</li>'
                    for run, s, sent in zip(vv["run"], vv["status"], vv["sentence"], strict=False)
                )
                + "</ul>"
            )
        out.append("</div></div>")
    # --- details
    if not a.verdicts.empty:
        out.append('<h2 id="reconciliation">Reconciliation</h2>')
        cols = (
            "run",
            "client 503",
            "with x-envoy-overloaded",
            "without",
            "pending overflow",
            "active overflow",
            "retry overflow",
            "cx overflow",
            "upstream_rq_503",
            "status",
            "reason",
        )
        out.append(
            table(
                cols,
                [
                    [
                        v.run,
                        v.client_503,
                        v.client_503_overloaded,
                        v.client_503_plain,
                        v.pending_overflow,
                        v.active_overflow,
                        v.retry_overflow,
                        v.cx_overflow,
                        v.upstream_rq_503,
                        _status(v.status),
                        v.reason,
                    ]
                    for v in a.verdicts.itertuples(index=False)
                ],
                left=(0, 10),
            )
        )
        if not a.counters.empty:
            out.append("<h3>Per cluster</h3>")
            out.append(
                table(
                    (
                        "run",
                        "cluster",
                        "pending overflow",
                        "active overflow",
                        "retry overflow",
                        "cx overflow",
                        "upstream_rq_503",
                    ),
                    [
                        [
                            c.run,
                            c.cluster,
                            c.pending_overflow,
                            c.active_overflow,
                            c.retry_overflow,
                            c.cx_overflow,
                            c.upstream_rq_503,
                        ]
                        for c in a.counters.itertuples(index=False)
                    ],
                    left=(0, 1),
                )
            )
    on = a.onset.dropna(subset=["client_onset_t", "envoy_onset_t"], how="all")
    if not on.empty:
        out.append(
            '<h2 id="onset">When shedding started</h2><p class="note">Client: first second with '
            "x-envoy-overloaded responses (1 s resolution). Envoy: first scrape whose pending+active "
            "overflow counters rose (resolution: the scrape interval). Lag = Envoy − client.</p>"
        )
        out.append(
            table(
                ("run", "client onset s", "Envoy onset s", "lag s", "scrape interval s"),
                [
                    [
                        o.run,
                        _fmt(o.client_onset_t, ".3g"),
                        _fmt(o.envoy_onset_t, ".3f"),
                        _fmt(o.lag_s, ".3f"),
                        _fmt(o.envoy_interval_s, ".3f"),
                    ]
                    for o in on.itertuples(index=False)
                ],
            )
        )
    out.append("</body></html>\n")
    return "\n".join(out)
