"""The run observer behind ``loadgen load -envoy-admin URL``: snapshots, deltas, verdict, report.

What it is: :class:`EnvoyObserver` implements :class:`loadgen.runner.RunObserver`: ``before()``
takes the first snapshot (a failure there is a :class:`~loadgen.errors.EnvoyAdminError`: the user
asked for Envoy stats and the admin is not reachable), ``tick()`` takes one during the run,
``after(result)`` the last one (the runner calls it after the engine returned, i.e. after in-flight
requests drained) and reconciles. A snapshot that fails during or after the run does not stop the
run: the series gets an entry marked ``Missing`` with the error, and deltas use the last good
snapshot (the verdict then says so). ``to_json()`` is ``Loadgen.Envoy`` in the run JSON;
``render_text(out)`` prints the "Circuit breaker" section.

What it is not: not a reader of engine internals; from the run result it reads only
``result.engine_result.codes`` / ``.overloaded`` (and ``.abandoned`` when present), defensively.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, TextIO

from loadgen.envoy import catalogue
from loadgen.envoy import stats as st
from loadgen.envoy.admin import AdminClient
from loadgen.envoy.reconcile import ClientView, Verdict, reconcile
from loadgen.errors import EnvoyAdminError, UsageError

#: remaining_* gauges at or above this are "no limit" (Istio fills unset thresholds with 2^32-1).
UNLIMITED = 2**32 - 1


@dataclass
class SeriesEntry:
    t: float  # seconds since the first snapshot (monotonic)
    wall: float
    phase: str  # "before", "tick", "after"
    snapshot: st.Snapshot | None
    error: str = ""
    ms: float = 0.0  # how long the snapshot took


class EnvoyObserver:
    """Envoy admin stats around one run. See the module docstring."""

    def __init__(
        self,
        admin_url: str,
        cluster_regex: str = "",
        interval_s: float = 1.0,
        timeout_s: float = 2.0,
        client: AdminClient | None = None,
    ) -> None:
        if interval_s <= 0:
            raise UsageError(f"-stats-interval must be > 0, got {interval_s}")
        # k8s seam: ``client`` may be any AdminClient (e.g. loadgen.k8s.sidecar's exec/port-forward ones)
        self.client = client if client is not None else AdminClient(admin_url, timeout_s=timeout_s)
        self.admin_url = self.client.url
        self.cluster_regex = cluster_regex
        self._rx = st.compile_regex(cluster_regex)
        self.interval_s = interval_s
        self.entries: list[SeriesEntry] = []
        self.delta: st.Delta | None = None
        self.verdict: Verdict | None = None
        self.client_view: ClientView | None = None
        self._t0 = 0.0
        self._last_tick = float("-inf")

    # --- the RunObserver protocol -------------------------------------------------------------

    def before(self) -> None:
        self._t0 = time.monotonic()
        e = self._take("before")
        if e.snapshot is None:
            raise EnvoyAdminError(f"cannot read Envoy stats before the run: {e.error}")

    def tick(self) -> None:
        now = time.monotonic()
        if now - self._last_tick < self.interval_s * 0.5:  # the runner paces ticks; guard double calls
            return
        self._last_tick = now
        self._take("tick")

    def after(self, result: Any) -> None:
        self._take("after")
        er = getattr(result, "engine_result", result)
        codes = dict(getattr(er, "codes", {}) or {})
        overloaded = dict(getattr(er, "overloaded", {}) or {})
        in_flight = int(getattr(er, "abandoned", 0) or 0)
        known = getattr(result, "source", "loadgen") != "fortio"  # fortio's JSON has no such header count
        self.finish(
            ClientView(codes=codes, overloaded=overloaded, in_flight_at_end=in_flight, overloaded_known=known)
        )

    def finish(self, view: ClientView) -> Verdict:
        """Compute deltas (first → last good snapshot) and the verdict for ``view``."""
        self.client.close()
        self.client_view = view
        good = [e for e in self.entries if e.snapshot is not None]
        if not good:
            raise EnvoyAdminError(f"no Envoy stats snapshot succeeded from {self.admin_url}")
        first, last = good[0].snapshot, good[-1].snapshot
        assert first is not None and last is not None
        self.delta = st.delta(first, last, self.cluster_regex)
        v = reconcile(view, self.delta.clusters, self.delta.http)
        if self.entries[-1].snapshot is None:  # the final snapshot failed: say so, whatever the numbers
            gap = f"the final snapshot failed ({self.entries[-1].error}); deltas end at t={good[-1].t:.1f}s"
            if v.status == "exact":
                v.status = "within_tolerance"
            v.reason = "; ".join(x for x in (v.reason, gap) if x)
            v.sentence += f" ({gap})"
        self.verdict = v
        return v

    # --- snapshots ----------------------------------------------------------------------------

    def _take(self, phase: str) -> SeriesEntry:
        t = time.monotonic()
        wall = time.time()
        try:
            snap = self.client.snapshot()
            e = SeriesEntry(
                t=t - self._t0, wall=wall, phase=phase, snapshot=snap, ms=(time.monotonic() - t) * 1000.0
            )
        except EnvoyAdminError as exc:
            e = SeriesEntry(
                t=t - self._t0,
                wall=wall,
                phase=phase,
                snapshot=None,
                error=str(exc),
                ms=(time.monotonic() - t) * 1000.0,
            )
        self.entries.append(e)
        return e

    # --- views --------------------------------------------------------------------------------

    @property
    def deltas(self) -> dict[str, dict[str, int]]:
        """``{cluster: {stat: delta}}`` for the matching clusters (empty before ``after``)."""
        return self.delta.clusters if self.delta else {}

    @property
    def series(self) -> list[dict[str, Any]]:
        """The snapshots as dicts: time, phase, and the catalogue stats of the matching clusters."""
        out: list[dict[str, Any]] = []
        for e in self.entries:
            d: dict[str, Any] = {"T": round(e.t, 3), "Wall": e.wall, "Phase": e.phase, "Ms": round(e.ms, 2)}
            if e.snapshot is None:
                d["Missing"] = True
                d["Error"] = e.error
            else:
                d.update(st.catalogue_view(e.snapshot, self.cluster_regex))
            out.append(d)
        return out

    def snapshot_ms(self) -> list[float]:
        return [e.ms for e in self.entries if e.snapshot is not None]

    def to_json(self) -> dict[str, Any]:
        return {
            "Admin": self.admin_url,
            "ClusterRegex": self.cluster_regex,
            "Deltas": self.deltas,
            "HttpDeltas": self.delta.http if self.delta else {},
            "Series": self.series,
            "Verdict": self.verdict.to_json() if self.verdict else {},
        }

    def render_text(self, out: TextIO) -> None:
        """The "Circuit breaker" section of the text report."""
        out.write(
            f"Circuit breaker (Envoy admin {self.admin_url}"
            + (f", clusters ~ /{self.cluster_regex}/" if self.cluster_regex else "")
            + ")\n"
        )
        missing = [e for e in self.entries if e.snapshot is None]
        if missing:
            out.write(
                f"  {len(missing)} of {len(self.entries)} snapshots failed; first: "
                f"t={missing[0].t:.1f}s {missing[0].error}\n"
            )
        if not self.delta:
            out.write("  no deltas\n")
            return
        if not self.delta.clusters:
            out.write("  no cluster matched\n")
        for cluster, d in self.delta.clusters.items():
            parts = []
            for s in catalogue.CLUSTER_CATALOGUE:
                v = catalogue.value(d, s.name)
                if v and not (
                    s.name.startswith("circuit_breakers.") and "remaining_" in s.name and v >= UNLIMITED
                ):
                    parts.append(f"{s.name} {'+' if s.kind == 'counter' and v > 0 else ''}{v}")
            out.write(f"  {cluster}: " + (", ".join(parts) if parts else "no change") + "\n")
        for prefix, d in self.delta.http.items():
            parts = [
                f"{s.name} +{catalogue.value(d, s.name)}"
                for s in catalogue.HTTP_CATALOGUE
                if s.name.startswith("fault.") and s.kind == "counter" and catalogue.value(d, s.name)
            ]
            if parts:
                out.write(f"  http {prefix}: " + ", ".join(parts) + "\n")
        if self.verdict:
            out.write(f"  Verdict ({self.verdict.status}): {self.verdict.sentence}\n")
