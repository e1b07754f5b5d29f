"""What a sweep is asked to do, parsed and checked: the load lists and the SLO.

What it is
    * :func:`parse_c_list` / :func:`parse_qps_list` — ``-c 1,2,3,5,10`` and ``-qps 100,200,400``
      (sorted, duplicates dropped; ``0``, a negative number or ``max`` in ``-qps`` means full
      speed, fortio's ``-qps 0``).
    * :class:`SLO` — ``-slo 'p99<50ms,errors<1%,qps>=100'``: comma-separated conditions, each
      ``metric<value`` (also ``<=``) for ``p50 p75 p90 p99 p99.9 max`` (latency measured from the
      *intended* send time, so coordinated omission is not hidden; units ``us``/``µs``, ``ms``,
      ``s``), ``errors`` (non-2xx share of calls, socket errors included, in %), ``overflow``
      (share of 503s carrying ``x-envoy-overloaded``, in %), or ``qps>=value`` (achieved rate,
      also ``>``). :meth:`SLO.check` evaluates it on one :class:`~loadgen.results.RunResult`.

Every mistake is one :class:`~loadgen.errors.UsageError` line. What it is not: it runs nothing.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from loadgen.cli.flags import MAX_CONNECTIONS
from loadgen.engine_api import is_ok
from loadgen.errors import UsageError
from loadgen.results import RunResult

LATENCY_METRICS: dict[str, float] = {
    "p50": 50.0,
    "p75": 75.0,
    "p90": 90.0,
    "p99": 99.0,
    "p99.9": 99.9,
    "p999": 99.9,
    "max": 100.0,
}
SHARE_METRICS = ("errors", "overflow")
_UNITS = {"us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0}
_COND_RE = re.compile(r"^\s*([A-Za-z][A-Za-z0-9.]*)\s*(<=|>=|<|>|=)\s*(.*?)\s*$")
_NUM_RE = re.compile(r"^([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*([a-zA-Zµμ%]*)$")


def _items(text: str, flag: str) -> list[str]:
    items = [p.strip() for p in text.split(",")]
    if not text.strip() or any(not p for p in items):
        raise UsageError(f"invalid -{flag} {text!r}: expected a comma-separated list like 1,2,4")
    return items


def parse_c_list(text: str) -> list[int]:
    """``-c 1,2,4`` → ``[1, 2, 4]`` (sorted, unique); every value a whole number >= 1."""
    out: set[int] = set()
    for p in _items(text, "c"):
        try:
            v = int(p)
        except ValueError:
            raise UsageError(f"invalid -c {text!r}: {p!r} is not a whole number") from None
        if v < 1:
            raise UsageError(f"invalid -c {text!r}: {v} connections (need at least 1)")
        if v > MAX_CONNECTIONS:
            raise UsageError(f"invalid -c {text!r}: at most {MAX_CONNECTIONS:,} connections")
        out.add(v)
    return sorted(out)


def parse_qps_list(text: str) -> list[float]:
    """``-qps 100,200`` → ``[100.0, 200.0]`` (sorted, unique); ``0``/negative/``max`` → ``0.0``."""
    out: set[float] = set()
    for p in _items(text, "qps"):
        if p.lower() == "max":
            out.add(0.0)
            continue
        try:
            v = float(p)
        except ValueError:
            raise UsageError(f"invalid -qps {text!r}: {p!r} is not a number (or 'max')") from None
        if not math.isfinite(v):
            raise UsageError(f"invalid -qps {text!r}: {p!r} is not a finite number")
        out.add(v if v > 0 else 0.0)
    return sorted(out)


def fmt_qps(q: float) -> str:
    """The ``qps=`` label value: ``max`` for full speed, else the number (``100``, ``12.5``)."""
    return "max" if q <= 0 else f"{q:g}"


@dataclass(frozen=True)
class Condition:
    metric: str  # p50 ... max, errors, overflow, qps
    op: str  # "<", "<=", ">=", ">"
    value: float  # seconds for latency, a fraction (0.01) for shares, requests/s for qps
    text: str  # as written

    def measure(self, r: RunResult) -> float:
        """The run's value of this metric, in the condition's unit (s, fraction, or req/s)."""
        er = r.engine_result
        if self.metric in LATENCY_METRICS:
            rec = er.latency if er.latency.count else er.service
            if not rec.count:
                return math.nan
            p = LATENCY_METRICS[self.metric]
            return (rec.max if p >= 100.0 else rec.percentile(p)) / 1e9
        calls = sum(er.codes.values())
        if self.metric == "errors":
            bad = sum(n for code, n in er.codes.items() if not is_ok(code))
            return bad / calls if calls else math.nan
        if self.metric == "overflow":
            return er.overloaded.get(503, 0) / calls if calls else math.nan
        return r.actual_qps

    def met(self, r: RunResult) -> bool:
        v = self.measure(r)
        if math.isnan(v):
            return False
        return {"<": v < self.value, "<=": v <= self.value, ">": v > self.value, ">=": v >= self.value}[
            self.op
        ]

    def show(self, v: float) -> str:
        """``v`` in the unit the user wrote (``123.4ms``, ``2.5%``, ``98 qps``)."""
        if math.isnan(v):
            return "n/a"
        if self.metric in LATENCY_METRICS:
            return f"{v * 1e3:.3g}ms"
        if self.metric in SHARE_METRICS:
            return f"{v * 100:.3g}%"
        return f"{v:.4g} qps"


@dataclass(frozen=True)
class SLO:
    conditions: tuple[Condition, ...]
    text: str

    def check(self, r: RunResult) -> tuple[bool, str]:
        """(met, why): ``why`` lists the failed conditions with the measured values."""
        failed = [f"{c.text} (got {c.show(c.measure(r))})" for c in self.conditions if not c.met(r)]
        return (not failed, "; ".join(failed) if failed else "meets " + self.text)


def parse_slo(text: str) -> SLO:
    """``'p99<50ms,errors<1%'`` → :class:`SLO`; one clear error line for anything else."""
    if not text.strip():
        raise UsageError("invalid -slo '': expected conditions like 'p99<50ms,errors<1%'")
    conds: list[Condition] = []
    for raw in text.split(","):
        item = raw.strip()
        if not item:
            raise UsageError(f"invalid -slo {text!r}: empty condition (stray comma)")
        conds.append(_condition(item, text))
    return SLO(tuple(conds), text.strip())


def _condition(item: str, whole: str) -> Condition:
    where = f"invalid -slo {whole!r}: {item!r}"
    m = _COND_RE.match(item)
    if not m:
        raise UsageError(f"{where}: expected metric<value, e.g. p99<50ms, errors<1%, qps>=100")
    metric, op, val = m.group(1).lower(), m.group(2), m.group(3)
    known = [*LATENCY_METRICS, *SHARE_METRICS, "qps"]
    if metric not in known:
        raise UsageError(f"{where}: unknown metric {metric!r} (one of {', '.join(known)})")
    if metric == "qps":
        if op not in (">=", ">"):
            raise UsageError(f"{where}: qps is a floor, write qps>=VALUE")
    elif op not in ("<", "<="):
        raise UsageError(f"{where}: {metric} is a ceiling, write {metric}<VALUE")
    n = _NUM_RE.match(val)
    if not n:
        raise UsageError(f"{where}: {val!r} is not a non-negative number with a unit")
    number, unit = float(n.group(1)), n.group(2)
    if metric in LATENCY_METRICS:
        if unit not in _UNITS:
            raise UsageError(f"{where}: latency needs a unit: us, ms or s (e.g. {metric}<50ms)")
        value = number * _UNITS[unit]
    elif metric in SHARE_METRICS:
        if unit != "%":
            raise UsageError(f"{where}: {metric} is a percentage, e.g. {metric}<1%")
        if number > 100:
            raise UsageError(f"{where}: a percentage above 100")
        value = number / 100.0
    else:
        if unit not in ("", "qps"):
            raise UsageError(f"{where}: qps takes a plain number, e.g. qps>=100")
        value = number
    return Condition(metric, op, value, item)
