"""The Markdown report: summary, variant and run tables, verdicts — sized for a pull-request comment.

What it is: :func:`render_markdown` renders the same :class:`~loadgen.report.correlate.Analysis` as
the HTML report, without images, and keeps the text under :data:`LIMIT` bytes (GitHub's comment
limit is 65 536 characters) by cutting the run table and the verdict list with a note saying how many
rows were left out. Text from runs is made inert: ``|`` and backticks escaped, ``<``/``>``/``&`` as
entities, newlines flattened.

What it is not: no HTML, no charts.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

from loadgen.report.correlate import Analysis
from loadgen.report.html import RUN_HEADERS, VARIANT_HEADERS, run_rows, variant_rows
from loadgen.text import plural

LIMIT = 60_000  # bytes; leaves room under the 65 536 limit


def md(v: Any) -> str:
    """A value as inert Markdown table-cell text."""
    if isinstance(v, tuple) and len(v) == 2 and v[0] == "raw":  # HTML status spans from html.run_rows
        v = "no Envoy" if not v[1] else v[1].split(">", 1)[1].split("<", 1)[0]
    s = str(v)
    if isinstance(v, float) and math.isnan(v):
        s = "–"
    s = s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    s = (
        s.replace("\\", "\\\\")
        .replace("|", "\\|")
        .replace("`", "\\`")
        .replace("*", "\\*")
        .replace("_", "\\_")
    )
    return " ".join(s.split())


def _g(v: float) -> str:
    return "–" if math.isnan(v) else f"{v:g}"


def _table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    out = ["| " + " | ".join(md(h) for h in headers) + " |", "|" + "---|" * len(headers)]
    out += ["| " + " | ".join(md(c) for c in r) + " |" for r in rows]
    return out


def render_markdown(a: Analysis, title: str = "loadgen report", limit: int = LIMIT) -> str:
    """The report as Markdown, at most ``limit`` bytes (UTF-8)."""
    runs = a.frames.runs
    head = [f"## {md(title)}", ""]
    sc = a.status_counts
    head.append(
        f"{plural(len(runs), 'run')}, {plural(len(a.variants), 'variant')}, "
        f"{int(runs['has_envoy'].sum())} with Envoy stats"
        + (" (" + ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in sorted(sc.items())) + ")" if sc else "")
        + "."
    )
    head += ["", "### Verdicts", ""]
    for vs in a.variants:
        mark = "❌" if vs.statuses.get("unexplained") else ("✅" if vs.envoy_runs else "➖")
        head.append(f"- {mark} **{md(vs.variant)}**: {md(vs.sentence)}")
    head += ["", "### Variants", "", *_table(VARIANT_HEADERS, variant_rows(a)), ""]
    tail: list[str] = []
    if not a.trips.empty and any(runs.groupby("variant")[a.by].nunique() > 1):
        tail += ["### Trip points", ""]
        tail += _table(
            ("variant", f"{a.by} tested", "first overflow at", f"rate > {a.rate:.1%} from", "max rate"),
            [
                [
                    t.variant,
                    t.loads,
                    _g(t.first_overflow),
                    _g(t.rate_load),
                    "–" if math.isnan(t.max_rate) else f"{t.max_rate:.1%}",
                ]
                for t in a.trips.itertuples(index=False)
            ],
        )
        tail.append("")
    fixed = "\n".join(head + tail)
    budget = limit - len(fixed.encode()) - 400
    body: list[str] = ["### Runs", ""]
    rows = run_rows(a, runs)
    lines = _table(RUN_HEADERS, rows)
    used = sum(len(x.encode()) + 1 for x in lines[:2])
    kept = 0
    for line in lines[2:]:
        if used + len(line.encode()) + 1 > budget * 0.6:
            break
        used += len(line.encode()) + 1
        kept += 1
    body += lines[: 2 + kept]
    if kept < len(rows):
        body.append(f"\n_{len(rows) - kept} more runs not shown (see the HTML report)._")
    body.append("")
    v = a.verdicts
    if not v.empty:
        body += ["### Reconciliation", ""]
        n = 0
        for run, st, sent in zip(v["run"], v["status"], v["sentence"], strict=False):
            line = f"- **{md(st)}** {md(run)}: {md(sent)}"
            if used + len(line.encode()) + 1 > budget:
                break
            used += len(line.encode()) + 1
            body.append(line)
            n += 1
        if n < len(v):
            body.append(f"\n_{len(v) - n} more verdicts not shown._")
    return "\n".join(head + body + [""] + tail).rstrip() + "\n"
