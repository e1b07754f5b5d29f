"""Duration strings, parsed once for the whole project: Go's ``time.ParseDuration`` syntax
(``250ms``, ``1m30s``, ``1.5h``, ``-2s``, ``0``) plus fortio's ``d`` for days.

Used by the CLI flags (``-t``, ``-timeout``), fortio's JSON (``RequestedDuration``), the echo
server's ``delay=`` parameter and the lab's Istio durations. Callers translate ``ValueError`` into
their own messages (a flag name, a YAML field path).
"""

from __future__ import annotations

import re

_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h|d)")
_UNIT_NS = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,
    "μs": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
    "d": 86_400_000_000_000,
}


def parse_ns(text: str, *, allow_days: bool = True) -> int:
    """Nanoseconds of a duration string (signed, exact for decimal fractions); ValueError if malformed.

    ``allow_days=False`` refuses fortio's ``d`` (Go and protobuf durations have no days)."""
    s = text.strip()
    sign = -1 if s.startswith("-") else 1
    body = s[1:] if s[:1] in ("+", "-") else s
    if body == "0":
        return 0
    if not body:
        raise ValueError(f"invalid duration {text!r}")
    pos, total = 0, 0
    for m in _PART.finditer(body):
        if m.start() != pos:
            break
        if m.group(2) == "d" and not allow_days:
            break
        whole, _, frac = m.group(1).partition(".")
        scale = _UNIT_NS[m.group(2)]
        total += int(whole or "0") * scale
        if frac:
            total += int(frac) * scale // 10 ** len(frac)
        pos = m.end()
    if pos != len(body):
        raise ValueError(f"invalid duration {text!r}")
    return sign * total


def parse_seconds(text: str, *, bare_seconds: bool = False) -> float:
    """Seconds of a duration string; with ``bare_seconds`` a plain number means seconds."""
    if bare_seconds:
        try:
            return float(text.strip())
        except ValueError:
            pass
    return parse_ns(text) / 1e9
