"""Configuration and fortio's echo query parameters for :mod:`loadgen.serve` (pure functions)."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import parse_qsl

from loadgen.durations import parse_seconds
from loadgen.errors import UsageError

READY_PREFIX = "loadgen serve listening on "

# --------------------------------------------------------------------------------------------
# Configuration and parameter parsing (pure functions)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ServeConfig:
    """Everything that shapes the server's behaviour; the defaults are fortio's where it has one."""

    max_delay: float = 1.5
    """Cap for ``delay=`` in seconds (fortio ``-max-echo-delay 1.5s``)."""
    max_size: int = 256 * 1024
    """Cap for ``size=`` in bytes (fortio ``-maxpayloadsizekb 256``)."""
    max_header_bytes: int = 64 * 1024
    """Largest request line + headers accepted; above: 431 and close."""
    max_body_bytes: int = 1024 * 1024
    """Largest request body accepted; above: 413 and close."""
    idle_timeout: float = 30.0
    """Close keep-alive connections idle this long (s); <= 0 disables."""
    default_params: str = ""
    """Query string used when a request has none (fortio ``-echo-server-default-params``)."""
    debug_path: str = "/debug"
    """Path of the debug page; ``debug_path + '/echo/'`` is an echo path too."""
    access_log: str | None = None
    """Append one line per request to this file."""
    seed: int | None = None
    """Seed of the dice for the probabilistic parameters (``status=503:10``...): the same seed and
    the same request order give the same answers. ``None``: seeded from the OS."""


def parse_go_duration(text: str) -> float:
    """Parse a Go ``time.ParseDuration`` string (``250ms``, ``1m30s``, ``-1.5h``, ``0``) into seconds.

    Raises ValueError for anything malformed.
    """
    return parse_seconds(text)


def _parse_table(text: str, parse_value: Callable[[str], float]) -> list[tuple[float, float]]:
    """``v`` → [(v, 100)]; ``v1:p1,v2:p2`` → [(v1, cum1), (v2, cum2)]; ValueError when malformed.

    Percentages may end with ``%``, must be in [0, 100] and must not sum above 100 (fortio's rule,
    rounded like fortio's ``stats.Round`` to 4 significant decimals).
    """
    if "," not in text and ":" not in text:
        return [(parse_value(text), 100.0)]
    out: list[tuple[float, float]] = []
    cum = 0.0
    for entry in text.split(","):
        parts = entry.split(":")
        if len(parts) != 2:
            raise ValueError(f"expected value:percent in {entry!r}")
        value = parse_value(parts[0])
        pct_text = parts[1][:-1] if parts[1].endswith("%") else parts[1]
        pct = float(pct_text)
        if not 0.0 <= pct <= 100.0:
            raise ValueError(f"percentage {pct_text!r} is not in [0, 100]")
        cum += pct
        rounded = round(cum, 4)
        if rounded > 100.0:
            raise ValueError(f"percentages in {text!r} sum to more than 100")
        out.append((value, rounded))
    return out


def roll(table: list[tuple[float, float]], rnd: Callable[[], float]) -> float | None:
    """Pick from a cumulative table with one roll in [0, 100); None when the roll hits no entry."""
    if len(table) == 1 and table[0][1] >= 100.0:
        return table[0][0]
    res = 100.0 * rnd()
    for value, cum in table:
        if res <= cum:
            return value
    return None


def _parse_int(text: str) -> float:
    return float(int(text.strip()))


def _parse_probability(text: str) -> float:
    """fortio's generateSingleProbability as a percentage: ''/false → 0, true/non-number → 100."""
    if text in ("", "false"):
        return 0.0
    if text == "true":
        return 100.0
    try:
        return float(text)
    except ValueError:
        return 100.0


TOKEN_RE = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_BAD_VALUE_RE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")


@dataclass(frozen=True)
class Plan:
    """The parsed echo parameters of one query string (cached by query string)."""

    delay: list[tuple[float, float]] | None
    status: list[tuple[float, float]] | None
    bad_status: bool
    size: list[tuple[float, float]] | None
    close_pct: float
    headers: bytes


def make_plan(query: str, cfg: ServeConfig) -> Plan:
    first: dict[str, str] = {}
    extra: list[bytes] = []
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key == "header":
            name, sep, hval = value.partition(":")
            bname = name.encode("latin-1", "replace")
            bval = hval.strip().encode("utf-8")
            if sep and TOKEN_RE.fullmatch(bname) and not _BAD_VALUE_RE.search(bval):
                extra.append(bname + b": " + bval + b"\r\n")
        elif key not in first:
            first[key] = value
    delay: list[tuple[float, float]] | None = None
    if first.get("delay"):
        try:
            delay = [(min(v, cfg.max_delay), c) for v, c in _parse_table(first["delay"], parse_go_duration)]
        except ValueError:
            delay = None
    status: list[tuple[float, float]] | None = None
    bad_status = False
    if first.get("status"):
        try:
            status = _parse_table(first["status"], _parse_int)
            bad_status = any(not 200 <= v <= 999 for v, _ in status)
        except ValueError:
            bad_status = True
    size: list[tuple[float, float]] | None = None
    if first.get("size"):
        try:
            size = [(max(0.0, min(v, cfg.max_size)), c) for v, c in _parse_table(first["size"], _parse_int)]
        except ValueError:
            size = None
    return Plan(delay, status, bad_status, size, _parse_probability(first.get("close", "")), b"".join(extra))


def check_loopback(bind: str) -> str:
    """Return the address to bind if ``bind`` is loopback (127.0.0.0/8, ::1, ``localhost``).

    Raises UsageError otherwise: this server is a lab target and never listens beyond the host.
    """
    if bind == "localhost":
        return "127.0.0.1"
    try:
        addr = ipaddress.ip_address(bind.strip("[]"))
    except ValueError:
        raise UsageError(f"serve: -bind {bind!r} is not an IP address (only loopback is allowed)") from None
    if isinstance(addr, ipaddress.IPv4Address) and addr in ipaddress.ip_network("127.0.0.0/8"):
        return str(addr)
    if isinstance(addr, ipaddress.IPv6Address) and addr == ipaddress.IPv6Address("::1"):
        return "::1"
    raise UsageError(f"serve: -bind {bind} is not a loopback address (only 127.0.0.0/8 and ::1 are allowed)")


def url_for(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
