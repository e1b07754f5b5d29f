"""Running a sweep: variants × grid of loads, the SLO bisection, signals, and always restoring the policy.

What it is
    :class:`Sweep` takes the base :class:`~loadgen.options.LoadOptions`, the variants, the load
    grid and a :class:`~loadgen.policy.PolicyTarget` (or none), and for each variant applies it,
    runs every grid step through :func:`loadgen.runner.execute` (the Envoy observer comes with
    ``envoy_admin``), saves each run as JSON in the output directory (labels
    ``variant=NAME,c=C,qps=Q``; ``Loadgen.Extra.Variant``/``Policy``/``Sweep``), and with an SLO
    bisects over qps (:meth:`Sweep._bisect`). The policy in force before the sweep is restored in
    ``finally``: after the last variant, on an error and on SIGINT/SIGTERM.

    Signals: while a load runs, the runner's own handler is in charge (first signal: finish
    in-flight requests and report; second: abort). The sweep notices the interrupted run, saves it
    (a valid, partial result), runs no further step, restores and reports. Between runs (warm-up,
    applying a variant) the first signal only asks the sweep to stop after what it is doing; a
    second one aborts (``KeyboardInterrupt``) — the restore still runs. Signals during the restore
    are noted and ignored: an interrupted restore would leave the lab on a variant.

    Timing: every step records its wall time (options → JSON file written) and the engine's
    ``ActualDuration``; the difference is the sweep's overhead per step (warm-up, Envoy scrapes,
    JSON). Applying a variant is timed separately (a hot restart in the lab).

What it is not: no flag parsing and no printing of tables (:mod:`loadgen.sweep.cli`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import math
import os
import re
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import FrameType
from typing import Any, TextIO

from loadgen.options import LoadOptions
from loadgen.policy import PolicyTarget
from loadgen.results import RunResult
from loadgen.sweep.spec import SLO, fmt_qps

SLO_TOLERANCE = 0.05  # stop bisecting when (hi - lo) / hi < 5 %


@dataclass(frozen=True)
class Variant:
    name: str
    files: tuple[str, ...]  # () for "current": nothing is applied
    policy: str  # the YAML text saved as Loadgen.Extra.Policy


@dataclass
class Step:
    """One saved run."""

    index: int
    variant: str
    c: int
    qps: float  # requested; 0 = full speed
    phase: str  # "grid" or "slo"
    result: RunResult
    path: str
    wall_s: float
    engine_s: float
    slo: tuple[bool, str] | None = None

    @property
    def overhead_s(self) -> float:
        return self.wall_s - self.engine_s

    @property
    def interrupted(self) -> bool:
        return bool(self.result.engine_result.interrupted)


@dataclass
class Applied:
    variant: str
    how: str
    seconds: float


@dataclass
class SloSearch:
    """The bisection of one variant: ``best`` is the highest qps seen meeting the SLO (NaN if none)."""

    variant: str
    c: int
    best: float = math.nan
    lo: float = math.nan
    hi: float = math.nan
    probes: list[Step] = field(default_factory=list)
    note: str = ""

    def sentence(self) -> str:
        head = f"{self.variant}: at c={self.c}"
        if math.isnan(self.best):
            return f"{head} the SLO was missed at every load tried ({self.note})"
        s = f"{head} the SLO holds up to {self.best:g} qps"
        if not math.isnan(self.hi):
            s += f" and fails at {self.hi:g} qps"
        return s + f" ({self.note})"


@dataclass
class Outcome:
    steps: list[Step] = field(default_factory=list)
    applied: list[Applied] = field(default_factory=list)
    searches: list[SloSearch] = field(default_factory=list)
    interrupted: bool = False
    restored: str = ""  # what the restore did ("" = nothing to restore)
    restore_s: float = 0.0


class Sweep:
    """One sweep; :meth:`run` returns the :class:`Outcome` (also when interrupted)."""

    def __init__(
        self,
        base: LoadOptions,
        variants: list[Variant],
        cs: list[int],
        qpss: list[float],
        out_dir: str,
        *,
        target: PolicyTarget | None = None,
        slo: SLO | None = None,
        slo_steps: int = 8,
        err: TextIO,
    ) -> None:
        self.base = dataclasses.replace(
            base,
            allow_initial_errors=True,
            json_path="",
            auto_save=False,
            report_path="",
            hdr_out="",
            access_log_file="",
        )
        self.variants = variants
        self.cs = cs
        self.qpss = qpss
        self.out_dir = out_dir
        self.target = target
        self.slo = slo
        self.slo_steps = slo_steps
        self.err = err
        self.outcome = Outcome()
        self._stop = False
        self._signals = 0
        self._restoring = False

    # --- signals ---------------------------------------------------------------------------
    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._signals += 1
        self._stop = True
        if self._restoring:
            self._say("\nrestoring the original policy; please wait")
        elif self._signals == 1:
            self._say(
                "\nInterrupted: stopping the sweep (interrupt again to abort); the policy will be restored"
            )
        else:
            raise KeyboardInterrupt

    @contextlib.contextmanager
    def _handlers(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        old = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for s, h in old.items():
                signal.signal(s, h)

    def _say(self, line: str) -> None:
        with contextlib.suppress(Exception):
            self.err.write(line + "\n")
            self.err.flush()

    # --- the sweep -------------------------------------------------------------------------
    def run(self) -> Outcome:
        os.makedirs(self.out_dir, exist_ok=True)
        with self._handlers():
            try:
                for v in self.variants:
                    if self._stop:
                        break
                    self._variant(v)
            except KeyboardInterrupt:
                self._stop = True
                self._say("aborted")
            finally:
                self.outcome.interrupted = self._stop
                self._restore()
        return self.outcome

    def _restore(self) -> None:
        if self.target is None or not self.outcome.applied:
            return
        self._restoring = True
        t0 = time.monotonic()
        try:
            self.target.restore()
        finally:
            self._restoring = False
        self.outcome.restore_s = time.monotonic() - t0
        self.outcome.restored = f"restored the original policy on {self.target.describe()}"
        self._say(f"{self.outcome.restored} ({self.outcome.restore_s:.1f} s)")

    def _variant(self, v: Variant) -> None:
        if v.files:
            assert self.target is not None
            self._say(f"applying variant {v.name} ({', '.join(v.files)}) to {self.target.describe()}")
            t0 = time.monotonic()
            how = self.target.apply(list(v.files))
            self.outcome.applied.append(Applied(v.name, how, time.monotonic() - t0))
            self._say(f"  {how} ({time.monotonic() - t0:.1f} s)")
            if self._stop:
                return
        grid: list[Step] = []
        for c in self.cs:
            for q in self.qpss:
                if self._stop:
                    return
                grid.append(self._step(v, c, q, "grid"))
        if self.slo is not None and not self._stop:
            self._bisect(v, grid)

    def _labels(self, v: Variant, c: int, q: float, phase: str) -> str:
        parts = [f"variant={v.name}", f"c={c}", f"qps={fmt_qps(q)}"]
        if phase != "grid":
            parts.append(f"phase={phase}")
        if self.base.labels:
            parts.append(self.base.labels)
        return ",".join(parts)

    def _step(self, v: Variant, c: int, q: float, phase: str) -> Step:
        from loadgen.runner import execute

        t0 = time.monotonic()
        index = len(self.outcome.steps) + 1
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", v.name)
        name = f"{index:03d}-{slug}-c{c}-qps{fmt_qps(q)}{'-' + phase if phase != 'grid' else ''}.json"
        path = os.path.join(self.out_dir, name)
        extra = {
            "Variant": v.name,
            "Policy": v.policy,
            "Sweep": {"Step": index, "Phase": phase, "Concurrency": c, "QPS": q},
        }
        # the runner writes the JSON (-json): the Extra goes in through an observer, before it does
        opts = dataclasses.replace(
            self.base, connections=c, qps=q, labels=self._labels(v, c, q, phase), json_path=path
        )
        result, _ = execute(
            opts, err=io.StringIO(), out=io.StringIO(), observers=[_Extra(extra)], progress=False
        )
        engine_s = result.engine_result.elapsed_ns / 1e9
        step = Step(index, v.name, c, q, phase, result, path, time.monotonic() - t0, engine_s)
        if self.slo is not None:
            step.slo = self.slo.check(result)
        self.outcome.steps.append(step)
        self._say(_step_line(step))
        if step.interrupted:
            self._stop = True
            self._say(
                "Interrupted: this run was stopped early (its partial result is saved); "
                "stopping the sweep, the policy will be restored"
            )
        return step

    # --- the SLO search --------------------------------------------------------------------
    def _bisect(self, v: Variant, grid: list[Step]) -> None:
        """Highest qps meeting the SLO at the largest concurrency of the grid.

        The bracket comes from the grid (the highest passing requested qps, the lowest failing one
        above it) or else ``[1, highest achieved qps seen]``; with no failing load known, the upper
        end doubles until one fails. Then bisection, until the interval is under 5 % of its upper
        end or ``slo_steps`` probes were run."""
        assert self.slo is not None
        c = max(self.cs)
        search = SloSearch(v.name, c)
        self.outcome.searches.append(search)
        at_c = [s for s in grid if s.c == c and s.slo is not None]
        passes = [s.qps for s in at_c if s.qps > 0 and s.slo and s.slo[0]]
        lo = max(passes) if passes else math.nan
        fails = [s.qps for s in at_c if s.qps > 0 and s.slo and not s.slo[0] and not (s.qps <= lo)]
        hi = min(fails) if fails else math.nan
        seen = max((s.result.actual_qps for s in at_c), default=0.0)
        verified = not math.isnan(lo)
        if math.isnan(lo):
            lo = 1.0 if math.isnan(hi) or hi > 1.0 else hi / 2
        probes = 0

        def probe(q: float) -> bool:
            nonlocal probes
            probes += 1
            s = self._step(v, c, round(q, 2), "slo")
            search.probes.append(s)
            return bool(s.slo and s.slo[0])

        if math.isnan(hi):
            hi = max(seen, lo)
            if hi <= lo * (1 + SLO_TOLERANCE):
                hi = lo * 2
            while probes < self.slo_steps and not self._stop:
                if not probe(hi):
                    break
                lo, verified = round(hi, 2), True
                hi *= 2
            else:
                if not self._stop:
                    search.best, search.lo = lo, lo
                    search.note = f"no failing load found within {self.slo_steps} probes"
                    return
        while probes < self.slo_steps and not self._stop and (hi - lo) / hi >= SLO_TOLERANCE:
            mid = round((lo + hi) / 2, 2)
            if probe(mid):
                lo, verified = mid, True
            else:
                hi = mid
        search.lo, search.hi = lo, hi
        search.best = lo if verified else math.nan
        width = (hi - lo) / hi if hi > 0 else math.inf
        state = "interrupted" if self._stop else ("converged" if width < SLO_TOLERANCE else "step limit")
        search.note = f"{probes} probes, bracket [{lo:g}, {hi:g}] qps ({width:.1%} wide), {state}"


class _Extra:
    """A :class:`~loadgen.runner.RunObserver` that puts the sweep's ``Loadgen.Extra`` on the result."""

    def __init__(self, extra: dict[str, Any]) -> None:
        self.extra = extra

    def before(self) -> None:
        pass

    def tick(self) -> None:
        pass

    def after(self, result: RunResult) -> None:
        result.extra = {**result.extra, **self.extra}


def _step_line(s: Step) -> str:
    er = s.result.engine_result
    calls = sum(er.codes.values())
    n503 = er.codes.get(503, 0)
    lat = er.latency if er.latency.count else er.service
    p50 = lat.percentile(50) / 1e6 if lat.count else math.nan
    p99 = lat.percentile(99) / 1e6 if lat.count else math.nan
    slo = f", SLO {'met' if s.slo[0] else 'MISSED: ' + s.slo[1]}" if s.slo else ""
    intr = " (interrupted)" if s.interrupted else ""
    return (
        f"[{s.index}] {s.variant} c={s.c} qps={fmt_qps(s.qps)}{' (SLO probe)' if s.phase == 'slo' else ''}: "
        f"{calls} calls, {s.result.actual_qps:.1f} qps, p50 {p50:.2f} ms, p99 {p99:.2f} ms, "
        f"503 {n503 / calls if calls else 0:.1%} (overloaded {er.overloaded.get(503, 0)}){slo}{intr} "
        f"[{s.wall_s:.2f} s, overhead {s.overhead_s:.2f} s]"
    )


def summary_rows(outcome: Outcome) -> list[dict[str, Any]]:
    """One dict per step for the summary table."""
    rows: list[dict[str, Any]] = []
    for s in outcome.steps:
        er = s.result.engine_result
        calls = sum(er.codes.values())
        lat = er.latency if er.latency.count else er.service
        n503 = er.codes.get(503, 0)
        ov = er.overloaded.get(503, 0)
        other = sum(n for k, n in er.codes.items() if not 200 <= k < 300 and k != 503)
        if s.slo is not None:
            verdict = "SLO met" if s.slo[0] else "SLO missed: " + s.slo[1]
        elif ov:
            verdict = "tripped"
        elif n503 or other:
            verdict = "errors"
        else:
            verdict = "ok"
        if s.interrupted:
            verdict += " (interrupted)"
        rows.append(
            {
                "variant": s.variant,
                "load": f"c={s.c} qps={fmt_qps(s.qps)}" + (" slo" if s.phase == "slo" else ""),
                "calls": calls,
                "qps": s.result.actual_qps,
                "p50_ms": lat.percentile(50) / 1e6 if lat.count else math.nan,
                "p99_ms": lat.percentile(99) / 1e6 if lat.count else math.nan,
                "rate_503": n503 / calls if calls else 0.0,
                "overloaded": ov,
                "verdict": verdict,
            }
        )
    return rows
