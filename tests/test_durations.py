"""The one duration parser (flags, fortio JSON, echo server, Istio YAML)."""

from __future__ import annotations

import pytest

from loadgen.durations import parse_ns, parse_seconds


@pytest.mark.parametrize(
    ("text", "ns"),
    [
        ("0", 0),
        ("5s", 5 * 10**9),
        ("1m30s", 90 * 10**9),
        ("1.5ms", 1_500_000),
        ("250us", 250_000),
        ("250µs", 250_000),
        ("-2s", -2 * 10**9),
        ("+3ms", 3_000_000),
        ("1h0m0s", 3600 * 10**9),
        ("1d4h", 100_800 * 10**9),
        (".5s", 500_000_000),
        ("0.001ns", 0),
    ],
)
def test_valid(text: str, ns: int) -> None:
    assert parse_ns(text) == ns


@pytest.mark.parametrize("text", ["", "5", "1x", "s", "1m x", "ms", "--1s", "1s5"])
def test_invalid(text: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_ns(text)


def test_days_can_be_refused_and_bare_seconds_allowed() -> None:
    with pytest.raises(ValueError):
        parse_ns("1d", allow_days=False)
    assert parse_seconds("7", bare_seconds=True) == 7.0
    assert parse_seconds("7ms", bare_seconds=True) == 0.007
    with pytest.raises(ValueError):
        parse_seconds("7")
