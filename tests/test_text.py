"""Wording helpers: counts read as English ("1 run", "2 runs")."""

from __future__ import annotations

from loadgen.text import plural


def test_plural() -> None:
    assert plural(1, "run") == "1 run"
    assert plural(0, "run") == "0 runs"
    assert plural(12, "variant") == "12 variants"
    assert plural(2, "query", "queries") == "2 queries"
    assert plural(1, "query", "queries") == "1 query"
