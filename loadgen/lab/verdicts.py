"""The verdict table of ``loadgen lab run``: checks of *declared policy vs observed*, and the
statistics behind the proportion checks (95 % Wilson interval: PASS inside; WARN between it and
the 99.9999 % interval; FAIL outside, so that a correct policy is called contradicted by chance
about once in a million checks, while a weight that is off by 7 points in 1,000 requests still
fails)."""

from __future__ import annotations

import math
import shutil
import textwrap
from dataclasses import dataclass, field
from typing import Any, TextIO

# ------------------------------------------------------------------------------ verdict table


@dataclass
class Check:
    name: str
    declared: str
    observed: str
    verdict: str  # PASS | WARN | FAIL

    @property
    def failed(self) -> bool:
        return self.verdict == "FAIL"


@dataclass
class Outcome:
    scenario: str
    checks: list[Check] = field(default_factory=list)
    runs: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0

    def add(self, name: str, declared: str, observed: str, ok: bool | str) -> None:
        verdict = ok if isinstance(ok, str) else ("PASS" if ok else "FAIL")
        self.checks.append(Check(name, declared, observed, verdict))

    @property
    def failed(self) -> bool:
        return any(c.failed for c in self.checks)

    def to_json(self) -> dict[str, Any]:
        return {
            "Scenario": self.scenario,
            "Seconds": round(self.seconds, 2),
            "Failed": self.failed,
            "Checks": [c.__dict__ for c in self.checks],
            "Runs": self.runs,
        }


def _column_widths(rows: list[tuple[str, str, str, str]], total: int) -> list[int]:
    """Widths of the first three columns so that a row fits ``total`` characters: each column its
    natural width when that fits, else the check column up to 34 and the two text columns share
    the rest in proportion to their natural widths (at least 16 each)."""
    natural = [max(len(r[i]) for r in rows) for i in range(3)]
    room = total - 2 - 3 * 2 - len("verdict")
    if sum(natural) <= room:
        return natural
    check = min(natural[0], 34)
    rest = max(32, room - check)
    a, b = natural[1], natural[2]
    wa = max(16, min(a, round(rest * a / (a + b))))
    wb = max(16, min(b, rest - wa))
    wa = max(16, min(a, rest - wb))  # hand back what the observed column did not need
    return [check, wa, wb]


def render_table(outcome: Outcome, out: TextIO, width: int | None = None) -> None:
    """The checks as an aligned text table that fits ``width`` columns (default: the terminal's,
    at least 80); a cell too wide for its column wraps onto more lines of its row."""
    rows = [("check", "declared", "observed", "verdict")] + [
        (c.name, c.declared, c.observed, c.verdict) for c in outcome.checks
    ]
    if width is None:
        width = max(80, shutil.get_terminal_size((120, 24)).columns)
    widths = _column_widths(rows, width)
    out.write(f"\nScenario {outcome.scenario}: declared policy vs observed ({outcome.seconds:.1f} s)\n")
    for i, r in enumerate(rows):
        cells = [textwrap.wrap(r[k], widths[k], break_on_hyphens=False) or [""] for k in range(3)]
        for j in range(max(len(c) for c in cells)):
            line = "  ".join((cells[k][j] if j < len(cells[k]) else "").ljust(widths[k]) for k in range(3))
            out.write(f"  {line}  {r[3] if j == 0 else ''}".rstrip() + "\n")
        if i == 0:
            out.write("  " + "  ".join("-" * w for w in widths) + "  -------\n")
    fails = sum(c.failed for c in outcome.checks)
    warns = sum(c.verdict == "WARN" for c in outcome.checks)
    out.write(
        f"  => {'CONTRADICTED' if fails else 'CONSISTENT'}: {len(outcome.checks) - fails - warns} pass, "
        f"{warns} warn, {fails} fail\n"
    )


def render_summary(outcomes: list[Outcome], out: TextIO) -> None:
    """One line over several scenarios (``lab run all``)."""
    bad = [o.scenario for o in outcomes if o.failed]
    warned = [o.scenario for o in outcomes if not o.failed and any(c.verdict == "WARN" for c in o.checks)]
    secs = sum(o.seconds for o in outcomes)
    text = f"\nAll {len(outcomes)} scenarios: {len(outcomes) - len(bad)} CONSISTENT"
    if warned:
        text += f" ({len(warned)} with warnings: {', '.join(warned)})"
    text += f", {len(bad)} CONTRADICTED" + (f" ({', '.join(bad)})" if bad else "") + f" in {secs:.1f} s\n"
    out.write(text)


def wilson(k: int, n: int, z: float) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion k/n."""
    if n == 0:
        return 0.0, 1.0
    p = k / n
    den = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return max(0.0, centre - half), min(1.0, centre + half)


Z_PASS = 1.959964  # two-sided 95 %
Z_FAIL = 4.891638  # two-sided 1 - 1e-6


def proportion_check(k: int, n: int, declared: float) -> tuple[str, str]:
    """(observed text, PASS|WARN|FAIL) for a measured k/n against a declared fraction."""
    lo95, hi95 = wilson(k, n, Z_PASS)
    lo_f, hi_f = wilson(k, n, Z_FAIL)
    obs = f"{100 * k / n if n else 0:.1f} % of {n} (95% CI {100 * lo95:.1f}-{100 * hi95:.1f} %)"
    eps = 1e-9
    if lo95 - eps <= declared <= hi95 + eps:
        return obs, "PASS"
    if lo_f - eps <= declared <= hi_f + eps:
        return obs, "WARN"
    return obs, "FAIL"
