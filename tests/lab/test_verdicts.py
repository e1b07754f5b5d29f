"""The verdict table stays aligned when a cell is long, and ``lab run all`` ends in one line."""

from __future__ import annotations

import io

from loadgen.lab.verdicts import Outcome, render_summary, render_table


def _outcome() -> Outcome:
    o = Outcome("routing", seconds=2.5)
    o.add("short", "v1 100 %", "v1 100", True)
    long_obs = (
        "exact: 10 of 10 503s are circuit-breaker rejections (pending overflow +10, active overflow +0)"
    )
    o.add("-c 3 -n 30: reconciliation", "exact", long_obs, True)
    o.add("80-20 -> v1", "80 %", "75.6 % of 1000 (95% CI 72.8-78.2 %)", "WARN")
    return o


def test_long_cells_wrap_and_the_verdict_column_stays_put() -> None:
    buf = io.StringIO()
    render_table(_outcome(), buf, width=100)
    lines = buf.getvalue().splitlines()
    cols = {line.rindex(v) for line in lines for v in ("PASS", "WARN") if line.endswith(v)}
    assert len(cols) == 1, buf.getvalue()  # every verdict starts in the same column
    assert max(len(line) for line in lines) <= 100, buf.getvalue()  # fits the width asked for
    text = " ".join(line.strip() for line in lines)
    for word in ("circuit-breaker", "rejections", "+10,", "+0)"):
        assert word in text  # wrapped, not cut
    assert lines[-1].strip() == "=> CONSISTENT: 2 pass, 1 warn, 0 fail"


def test_summary_names_the_contradicted_and_warned_scenarios() -> None:
    ok = _outcome()
    bad = Outcome("mirror", seconds=1.0)
    bad.add("client", "all 200", "200: 99, 503: 1", False)
    clean = Outcome("outlier", seconds=1.0)
    clean.add("x", "y", "z", True)
    buf = io.StringIO()
    render_summary([ok, bad, clean], buf)
    assert buf.getvalue().strip() == (
        "All 3 scenarios: 2 CONSISTENT (1 with warnings: routing), 1 CONTRADICTED (mirror) in 4.5 s"
    )


def test_a_table_that_fits_is_not_wrapped() -> None:
    buf = io.StringIO()
    render_table(_outcome(), buf, width=400)
    assert len(buf.getvalue().splitlines()) == 8  # blank, title, head, rule, 3 rows, total
