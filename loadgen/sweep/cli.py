"""``loadgen sweep``: flags → a :class:`~loadgen.sweep.run.Sweep`, then the summary and the reports.

Parses every ``loadgen load`` flag (:data:`loadgen.options.LOAD_FLAGS`) plus the sweep's own in
one :class:`~loadgen.cli.flags.FlagSet` (the sweep's ``-c``/``-qps`` take lists, its ``-report``
is the sweep's report), checks everything that can be checked before the first run (lists, SLO,
variant files and their translation, the lab, output paths: bad input is one line, exit 2),
runs the sweep and prints: a summary table (variant × load → p50/p99 from the intended send,
503 share, overloaded, verdict), the trip point per variant
(:func:`loadgen.report.correlate.trip_points` on the grid runs), the SLO results and the
per-step overhead. ``-report``/``-md`` are built by :mod:`loadgen.report` from the saved files.

Exit codes: 0 done; 130 interrupted (partial results saved, policy restored); 1 a run failed;
2 bad input. What it is not: the sweep loop itself (:mod:`loadgen.sweep.run`).
"""

from __future__ import annotations

import datetime as dt
import io
import math
import os
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TextIO

from loadgen.cli.flags import FlagSet, to_options
from loadgen.errors import LoadgenError, UsageError
from loadgen.options import LOAD_FLAGS, Flag, LoadOptions
from loadgen.policy import LabPolicyTarget, PolicyTarget
from loadgen.sweep.run import Outcome, Sweep, Variant, summary_rows
from loadgen.sweep.spec import SLO, fmt_qps, parse_c_list, parse_qps_list, parse_slo
from loadgen.text import plural

SWEEP_FLAGS: tuple[Flag, ...] = (
    Flag("c", "c", "str", "4", "Concurrency: a list like 1,2,3,5,10 (one value: fixed)"),
    Flag(
        "qps",
        "qps",
        "str",
        "0",
        "QPS: a list like 100,200,400 (one value: fixed); 0 or max = full speed "
        "(the sweep's default is 0, not fortio's 8)",
    ),
    Flag(
        "variant",
        "variant",
        "repeat",
        "",
        "Policy variant: a DestinationRule/VirtualService YAML file (repeatable; name = file stem); "
        "applied before its runs. None: one variant 'current'",
    ),
    Flag(
        "lab", "lab", "bool", "false", "Target the local lab: its Envoy admin; URL may be lab://SERVICE/PATH"
    ),
    Flag("state-dir", "state_dir", "str", "", "The lab's state directory (with -lab)"),
    Flag(
        "k8s-namespace",
        "k8s_namespace",
        "str",
        "",
        "Apply the variants in this Kubernetes namespace (server-side apply; restored afterwards)",
    ),
    Flag(
        "k8s-client",
        "k8s_client",
        "str",
        "deploy/fortio",
        "With -k8s-namespace: the client pod whose sidecar must show a variant before its runs",
    ),
    Flag("slo", "slo", "str", "", "SLO, e.g. 'p99<50ms,errors<1%': find the highest qps meeting it"),
    Flag("slo-steps", "slo_steps", "int", "8", "Most probes of the SLO bisection per variant"),
    Flag("trip-rate", "trip_rate", "float", "0.01", "Overflow 503 share that counts as tripped (0.01 = 1%)"),
    Flag("o", "out_dir", "str", "", "Directory for every run's JSON (default ./sweep-<timestamp>)"),
    Flag("report", "report", "str", "", "Write the sweep's HTML report (loadgen report) to this file"),
    Flag("md", "md", "str", "", "Write the sweep's Markdown report to this file"),
)
_OWN = {f.name for f in SWEEP_FLAGS}
_FLAGS = FlagSet(LOAD_FLAGS + SWEEP_FLAGS)  # later names win: the sweep's -c/-qps/-report
_PER_RUN = ("json", "a", "hdr-out", "access-log-file")

HELP_TAIL = """\
Every run is saved as <-o DIR>/NNN-VARIANT-cC-qpsQ.json with labels variant=NAME,c=C,qps=Q and
Loadgen.Extra.Policy (the variant's YAML) / Loadgen.Extra.Variant; build a report later with
'loadgen report DIR -o report.html'. -allow-initial-errors is implied: warm-up 503s are what a
sweep is looking for. The original policy is always restored at the end (also on errors and on
Ctrl-C: the first interrupt finishes the current run, stops the sweep, restores and reports).
SLO metrics: p50 p75 p90 p99 p99.9 max (latency from the intended send; units us/ms/s),
errors (non-2xx %), overflow (x-envoy-overloaded 503 %), qps>=N (achieved). The SLO search
bisects over qps at the largest -c, from the grid's bracket or [1, highest qps seen]; it stops
when the bracket is under 5 % wide or after -slo-steps probes, each a run of -t (or -n calls).
"""


def sweep_help() -> str:
    lines = [
        "usage: loadgen sweep [load flags] [-c LIST] [-qps LIST] [-variant FILE ...] [-lab [-state-dir DIR]]",
        "                     [-slo 'p99<50ms,errors<1%'] [-trip-rate 0.01] [-o DIR] [-report F.html]",
        "                     [-md F.md] URL",
        "",
        "sweep flags:",
    ]
    for f in SWEEP_FLAGS:
        default = f" (default {f.default})" if f.default not in ("", "false") else ""
        lines.append(f"  -{f.name:<22} {f.help}{default}")
    lines.append("")
    lines.append(
        "load flags (as 'loadgen load'; -json, -a, -hdr-out, -access-log-file are per run: not here):"
    )
    for f in LOAD_FLAGS:
        if f.name in _OWN or f.name in _PER_RUN:
            continue
        default = f" (default {f.default})" if f.default not in ("", "false") else ""
        lines.append(f"  -{f.name:<22} {f.help}{default}")
    return "\n".join(lines) + "\n\n" + HELP_TAIL


@dataclass
class Plan:
    """Everything a sweep needs, checked."""

    base: LoadOptions
    cs: list[int]
    qpss: list[float]
    variants: list[Variant]
    target: PolicyTarget | None
    slo: SLO | None
    slo_steps: int
    trip_rate: float
    out_dir: str
    report: str
    md: str


def make_target(
    lab: bool,
    state_dir: str,
    k8s_namespace: str = "",
    k8s_client: str = "deploy/fortio",
    kubeconfig: str = "",
    context: str = "",
) -> PolicyTarget | None:
    """The :class:`~loadgen.policy.PolicyTarget` the flags ask for (``None``: run where the URL points)."""
    if lab and k8s_namespace:
        raise UsageError("sweep: choose one of -lab and -k8s-namespace")
    if lab:
        return LabPolicyTarget(state_dir or None)
    if state_dir:
        raise UsageError("sweep: -state-dir needs -lab")
    if k8s_namespace:
        from loadgen.k8s.policy import K8sPolicyTarget

        return K8sPolicyTarget(k8s_namespace, client_pod=k8s_client, kubeconfig=kubeconfig, context=context)
    return None


def resolve_lab_url(url: str, target: PolicyTarget | None) -> str:
    """``lab://SERVICE/PATH`` → the lab listener's URL for SERVICE (short name or FQDN)."""
    if not url.startswith("lab://"):
        return url
    if not isinstance(target, LabPolicyTarget):
        raise UsageError(f"sweep: {url}: lab:// URLs need -lab")
    rest = url[len("lab://") :]
    svc, _, path = rest.partition("/")
    services = target.services()
    for fqdn, base in services.items():
        if svc in (fqdn, fqdn.split(".", 1)[0]):
            return base.rstrip("/") + "/" + path
    known = ", ".join(sorted(h.split(".", 1)[0] for h in services)) or "none"
    raise UsageError(f"sweep: {url}: the lab has no service {svc!r} (services: {known})")


def _float(text: object, flag: str) -> float:
    try:
        return float(str(text))
    except ValueError:
        raise UsageError(f"invalid value {text!r} for -{flag}: expected a number") from None


def _check_out_file(path: str, flag: str) -> None:
    if not path:
        return
    d = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(d):
        raise UsageError(f"sweep: cannot write -{flag} {path!r}: directory {d!r} does not exist")
    if os.path.isdir(path):
        raise UsageError(f"sweep: cannot write -{flag} {path!r}: it is a directory")


def _variants(files: list[str], target: PolicyTarget | None) -> list[Variant]:
    if not files:
        current = getattr(target, "current_policy", None)
        return [Variant("current", (), current() if callable(current) else "")]
    out: list[Variant] = []
    for f in files:
        try:
            text = Path(f).read_text()
        except FileNotFoundError:
            raise UsageError(f"sweep: -variant {f}: no such file") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"sweep: -variant {f}: cannot read ({exc})") from None
        name = Path(f).stem.replace(",", "_").replace("=", "_")
        if any(v.name == name for v in out):
            raise UsageError(
                f"sweep: two -variant files are named {name!r}; variant names come from file stems"
            )
        out.append(Variant(name, (f,), text))
    if target is None:
        raise UsageError("sweep: -variant needs a place to apply it: -lab")
    check = getattr(target, "check", None)
    if callable(check):
        for v in out:
            check(list(v.files))  # a translation error names the file, document and field
    return out


def parse(argv: list[str]) -> Plan:
    """argv → :class:`Plan`; every problem is one :class:`UsageError` line (exit 2)."""
    try:
        values, positional = _FLAGS.parse(argv)
    except UsageError as exc:
        raise UsageError(str(exc).replace("'loadgen help load'", "'loadgen sweep -h'")) from None
    for name in _PER_RUN:
        if name in values:
            raise UsageError(f"sweep: -{name} is per run; a sweep saves every run's JSON in -o DIR")
    if not positional:
        raise UsageError("sweep: no target URL given (usage: loadgen sweep [flags] URL)")
    if len(positional) > 1:
        raise UsageError(f"sweep: expected one URL, got {len(positional)}: {' '.join(positional)}")
    own = {k: values.pop(k) for k in list(values) if k in _OWN}
    cs = parse_c_list(str(own.get("c", "4")))
    qpss = parse_qps_list(str(own.get("qps", "0")))
    slo = parse_slo(str(own["slo"])) if "slo" in own else None
    slo_steps = 8
    if "slo-steps" in own:
        try:
            slo_steps = int(str(own["slo-steps"]))
        except ValueError:
            raise UsageError(
                f"invalid value {own['slo-steps']!r} for -slo-steps: expected a whole number"
            ) from None
        if slo_steps < 1:
            raise UsageError("invalid -slo-steps: need at least 1 probe")
    trip_rate = _float(own.get("trip-rate", "0.01"), "trip-rate")
    if not 0.0 <= trip_rate < 1.0:
        raise UsageError(f"invalid -trip-rate {trip_rate:g}: a fraction in [0, 1), e.g. 0.01 for 1%")
    report, md = str(own.get("report", "")), str(own.get("md", ""))
    _check_out_file(report, "report")
    _check_out_file(md, "md")
    out_dir = str(own.get("o", "")) or dt.datetime.now().strftime("sweep-%Y%m%d-%H%M%S")
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise UsageError(f"sweep: -o {out_dir}: exists and is not a directory")
    url = positional[0]
    # validate the load flags with a plain URL first (no lab needed for that)
    base = to_options(values, url if not url.startswith("lab://") else "http://127.0.0.1/")
    target = make_target(
        bool(own.get("lab", False)),
        str(own.get("state-dir", "")),
        str(own.get("k8s-namespace", "")),
        str(own.get("k8s-client", "deploy/fortio")),
        base.kubeconfig,
        base.context,
    )
    variants = _variants([str(x) for x in own.get("variant", [])], target)  # type: ignore[attr-defined]
    base = replace(base, url=resolve_lab_url(url, target))
    if target is not None and not base.envoy_admin:
        base = replace(base, envoy_admin=target.admin_url())
    from loadgen.runner import prepare

    if not base.via:  # -via runs the load elsewhere: the URL is the one its pods see
        prepare(replace(base, allow_initial_errors=True))  # the URL, engine and options, before any change
    return Plan(base, cs, qpss, variants, target, slo, slo_steps, trip_rate, out_dir, report, md)


# ------------------------------------------------------------------------------ output


def _g(v: float, spec: str = ".3g") -> str:
    return "-" if isinstance(v, float) and math.isnan(v) else format(v, spec)


def render_table(outcome: Outcome) -> str:
    rows = summary_rows(outcome)
    head = ("variant", "load", "calls", "qps", "p50 ms", "p99 ms", "503 %", "overloaded", "verdict")
    body = [
        (
            r["variant"],
            r["load"],
            str(r["calls"]),
            f"{r['qps']:.1f}",
            _g(r["p50_ms"]),
            _g(r["p99_ms"]),
            f"{100 * r['rate_503']:.1f}",
            str(r["overloaded"]),
            r["verdict"],
        )
        for r in rows
    ]
    widths = [max(len(x[i]) for x in [head, *body]) for i in range(len(head) - 1)]
    lines = []
    for i, r in enumerate([head, *body]):
        lines.append("  ".join(r[k].ljust(widths[k]) for k in range(len(widths))) + "  " + r[-1])
        if i == 0:
            lines.append("  ".join("-" * w for w in widths) + "  -------")
    return "\n".join(lines) + "\n"


def trip_lines(outcome: Outcome, plan: Plan, by: str) -> list[str]:
    """One trip-point sentence per variant, from the grid runs (not the SLO probes)."""
    grid = [s for s in outcome.steps if s.phase == "grid"]
    if not grid:
        return []
    from loadgen.report.correlate import trip_points, trip_sentence
    from loadgen.report.frames import frames_from_results

    frames = frames_from_results((s.result, s.path) for s in grid)
    trips = trip_points(frames.runs, by, plan.trip_rate)  # type: ignore[arg-type]
    return [f"{row['variant']}: {trip_sentence(row)}" for _, row in trips.iterrows()]


def overhead_lines(outcome: Outcome) -> list[str]:
    steps = [s for s in outcome.steps if not s.interrupted]
    out: list[str] = []
    if steps:
        ov = [s.overhead_s for s in steps]
        out.append(
            f"overhead per step (wall time minus the load's ActualDuration): mean {sum(ov) / len(ov):.2f} s, "
            f"max {max(ov):.2f} s over {len(ov)} steps"
        )
    if outcome.applied:
        ap = [a.seconds for a in outcome.applied]
        out.append(
            f"applying a variant: mean {sum(ap) / len(ap):.2f} s over {len(ap)} "
            "(once per variant, not per step)"
        )
    if outcome.restored:
        out.append(f"restore: {outcome.restore_s:.2f} s")
    return out


def render_summary(outcome: Outcome, plan: Plan) -> str:
    by = "concurrency" if len(plan.cs) > 1 or len(plan.qpss) == 1 else "qps"
    buf = io.StringIO()
    buf.write("\nSweep summary (latency from the intended send time)\n")
    buf.write(render_table(outcome) if outcome.steps else "(no runs)\n")
    trips = trip_lines(outcome, plan, by)
    if trips:
        buf.write(
            f"\nTrip points (overflow 503s = 503 with x-envoy-overloaded; rate {plan.trip_rate:.1%}):\n"
        )
        for t in trips:
            buf.write(f"  {t}\n")
    if plan.slo is not None:
        buf.write(f"\nSLO {plan.slo.text}:\n")
        for s in outcome.searches:
            buf.write(f"  {s.sentence()}\n")
        if not outcome.searches:
            buf.write("  (not searched: the sweep stopped first)\n")
    for a in outcome.applied:
        buf.write(f"\nvariant {a.variant}: {a.how} ({a.seconds:.1f} s)")
    if outcome.applied:
        buf.write("\n")
    buf.write("\n" + "\n".join(overhead_lines(outcome)) + "\n")
    if outcome.restored:
        buf.write(outcome.restored + "\n")
    n = len(outcome.steps)
    state = "INTERRUPTED, partial results" if outcome.interrupted else "complete"
    buf.write(f"{plural(n, 'run')} saved in {plan.out_dir} ({state})\n")
    return buf.getvalue()


def write_reports(outcome: Outcome, plan: Plan, err: TextIO) -> list[str]:
    if not (plan.report or plan.md) or not outcome.steps:
        return []
    from loadgen.report.cli import write_reports as _write
    from loadgen.report.frames import load_frames

    frames = load_frames([s.path for s in outcome.steps])
    by = "concurrency" if len(plan.cs) > 1 or len(plan.qpss) == 1 else "qps"
    _write(frames, html=plan.report, md=plan.md, title="loadgen sweep", rate=plan.trip_rate, by=by)
    written = [p for p in (plan.report, plan.md) if p]
    err.write(f"Wrote the report to {', '.join(written)}\n")
    return written


def sweep_main(argv: list[str], out: TextIO | None = None, err: TextIO | None = None) -> int:
    """``loadgen sweep``; a :class:`LoadgenError` before the sweep starts is raised (the CLI prints it)."""
    out = out or sys.stdout
    err = err or sys.stderr
    if argv and argv[0] in ("-h", "-help", "--help", "help"):
        out.write(sweep_help())
        return 0
    plan = parse(argv)
    from loadgen.report import require_report_deps

    require_report_deps("loadgen sweep")  # trip points and reports are computed with pandas
    err.write(
        f"sweep: {len(plan.variants)} variant(s) × {len(plan.cs) * len(plan.qpss)} load(s) against "
        f"{plan.base.url}{' on ' + plan.target.describe() if plan.target else ''}; runs in {plan.out_dir}\n"
    )
    sweep = Sweep(
        plan.base,
        plan.variants,
        plan.cs,
        plan.qpss,
        plan.out_dir,
        target=plan.target,
        slo=plan.slo,
        slo_steps=plan.slo_steps,
        err=err,
    )
    failure: LoadgenError | None = None
    try:
        outcome = sweep.run()
    except LoadgenError as exc:  # restored already (Sweep.run's finally); report what was done
        failure = exc
        outcome = sweep.outcome
        outcome.interrupted = True
    text = render_summary(outcome, plan)
    out.write(text)
    out.flush()
    with open(os.path.join(plan.out_dir, "summary.txt"), "w", encoding="utf-8") as fh:
        fh.write(text)
    write_reports(outcome, plan, err)
    if failure is not None:
        raise failure
    return 130 if outcome.interrupted else 0


__all__ = ["SWEEP_FLAGS", "fmt_qps", "make_target", "parse", "sweep_help", "sweep_main"]
