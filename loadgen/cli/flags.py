"""Go-style flag parsing for fortio's spelling: ``-c 3``, ``-c=3``, ``--c 3``, ``-uniform``,
``-keepalive=false``. Flags and the URL may come in any order. Values are validated here and
every mistake becomes one :class:`~loadgen.errors.UsageError` line.

This module only turns argv into :class:`~loadgen.options.LoadOptions`; it runs nothing.
"""

from __future__ import annotations

import math
import os
from dataclasses import fields

from loadgen.durations import parse_seconds
from loadgen.errors import UsageError
from loadgen.options import LOAD_FLAGS, Flag, LoadOptions

_TRUE = {"1", "t", "true", "yes", "on"}
_FALSE = {"0", "f", "false", "no", "off"}
LOGLEVELS = ("Debug", "Verbose", "Info", "Warning", "Error", "Critical", "Fatal")


def parse_duration(text: str, flag: str = "duration") -> float:
    """Go/fortio durations (``1m30s``, ``250ms``, ``1d4h``); a bare number means seconds."""
    try:
        value = parse_seconds(text, bare_seconds=True)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise UsageError(f"invalid value {text!r} for -{flag}: expected a duration like 10s, 1m30s, 250ms")
    return value


def parse_bool(text: str, flag: str) -> bool:
    t = text.strip().lower()
    if t in _TRUE:
        return True
    if t in _FALSE:
        return False
    raise UsageError(f"invalid boolean {text!r} for -{flag}: use true or false")


def parse_percentiles(text: str) -> tuple[float, ...]:
    out: list[float] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            p = float(part)
        except ValueError:
            raise UsageError(f"invalid percentile {part!r} in -p: expected numbers like 50,99,99.9") from None
        if not 0 < p < 100:
            raise UsageError(f"invalid percentile {part!r} in -p: each must be > 0 and < 100")
        out.append(p)
    return tuple(out)


def parse_header(text: str) -> tuple[str, str]:
    if ":" not in text:
        raise UsageError(f"invalid header {text!r} for -H: expected 'name: value'")
    k, v = text.split(":", 1)
    if not k.strip():
        raise UsageError(f"invalid header {text!r} for -H: empty name")
    return k.strip(), v.strip()


class FlagSet:
    """A table of flags by name; ``parse`` returns (values by dest, positional args)."""

    def __init__(self, flags: tuple[Flag, ...]) -> None:
        self.by_name = {f.name: f for f in flags}

    def parse(self, argv: list[str]) -> tuple[dict[str, object], list[str]]:
        values: dict[str, object] = {}
        positional: list[str] = []
        i = 0
        while i < len(argv):
            arg = argv[i]
            i += 1
            if arg == "--":
                positional.extend(argv[i:])
                break
            if not arg.startswith("-") or arg == "-" or _is_number(arg):
                positional.append(arg)
                continue
            name = arg.lstrip("-")
            value: str | None = None
            if "=" in name:
                name, value = name.split("=", 1)
            flag = self.by_name.get(name)
            if flag is None:
                raise UsageError(f"unknown flag -{name} (see 'loadgen help load')")
            if flag.kind == "bool":
                values[flag.name] = True if value is None else parse_bool(value, flag.name)
                continue
            if value is None:
                if i >= len(argv):
                    raise UsageError(f"flag -{name} needs a value")
                value = argv[i]
                i += 1
            if flag.kind == "repeat":
                cur = values.setdefault(flag.name, [])
                assert isinstance(cur, list)
                cur.append(value)
            else:
                values[flag.name] = value
        return values, positional


def _is_number(arg: str) -> bool:
    try:
        float(arg)
    except ValueError:
        return False
    return True


def _int(text: str, flag: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise UsageError(f"invalid value {text!r} for -{flag}: expected a whole number") from None


def _float(text: str, flag: str) -> float:
    try:
        value = float(text.strip())
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise UsageError(f"invalid value {text!r} for -{flag}: expected a number")
    return value


def to_options(
    values: dict[str, object], url: str, extra_flags: dict[str, object] | None = None
) -> LoadOptions:
    """Convert parsed flag values to validated :class:`LoadOptions`."""
    kw: dict[str, object] = {"url": url}
    payloads: dict[str, str] = {}
    for name, raw in values.items():
        flag = LOAD_FLAGS_BY_NAME.get(name)
        if flag is None:
            continue
        if flag.kind == "bool":
            kw[flag.dest] = raw
            continue
        if flag.kind == "repeat":
            assert isinstance(raw, list)
            kw[flag.dest] = tuple(parse_header(h) for h in raw)
            continue
        text = str(raw)
        if flag.kind == "int":
            kw[flag.dest] = _int(text, name)
        elif flag.kind == "float":
            kw[flag.dest] = _float(text, name)
        elif flag.kind == "duration":
            kw[flag.dest] = parse_duration(text, name)
        elif flag.kind == "percentiles":
            kw[flag.dest] = parse_percentiles(text)
        elif flag.kind in ("payload-file", "payload-size") or flag.dest == "payload":
            payloads[flag.kind] = text
        else:
            kw[flag.dest] = text
    # fortio's precedence: -payload-file > -payload-size > -payload
    if "payload-file" in payloads:
        path = payloads["payload-file"]
        try:
            with open(path, "rb") as fh:
                kw["payload"] = fh.read()
        except OSError as exc:
            raise UsageError(f"cannot read -payload-file {path!r}: {exc.strerror}") from None
    elif "payload-size" in payloads:
        n = _int(payloads["payload-size"], "payload-size")
        if n > MAX_PAYLOAD:
            raise UsageError(f"invalid value {n} for -payload-size: at most {MAX_PAYLOAD:,} bytes")
        if n < 0:
            raise UsageError(f"invalid value {n} for -payload-size: must be >= 0")
        kw["payload"] = os.urandom(n)
    elif "str" in payloads:
        kw["payload"] = payloads["str"].encode("utf-8")
    opts = LoadOptions(**kw)  # type: ignore[arg-type]
    validate(opts)
    return opts


# Bounds that keep every value inside what the engines represent (int64 ns, C ints) and what a
# machine can hold: a typo must give one line, never an allocation of gigabytes.
MAX_CONNECTIONS = 1_000_000
MAX_CALLS = 10**12
MAX_DURATION_S = 30 * 86400.0  # -t
MAX_TIMEOUT_S = 86400.0
MAX_PERIOD_S = 86400.0  # one connection's time between two requests at -qps
MAX_PAYLOAD = 64 * 1024 * 1024


def validate(opts: LoadOptions) -> None:
    if opts.connections < 1:
        raise UsageError(f"invalid -c {opts.connections}: need at least 1 connection")
    if opts.connections > MAX_CONNECTIONS:
        raise UsageError(f"invalid -c {opts.connections}: at most {MAX_CONNECTIONS:,} connections")
    if opts.exactly < 0:
        raise UsageError(f"invalid -n {opts.exactly}: must be >= 0")
    if opts.exactly > MAX_CALLS:
        raise UsageError(f"invalid -n {opts.exactly}: at most {MAX_CALLS:.0e} calls")
    if opts.duration_s > MAX_DURATION_S:
        raise UsageError(f"invalid -t {opts.duration_s:g}s: at most 30 days (-t 0 runs until interrupted)")
    if opts.qps > 0 and opts.connections / opts.qps > MAX_PERIOD_S:
        raise UsageError(f"invalid -qps {opts.qps:g}: less than one request per connection per day")
    if opts.timeout_s <= 0 or opts.timeout_s > MAX_TIMEOUT_S:
        raise UsageError(f"invalid -timeout {opts.timeout_s:g}s: must be > 0 and at most 1 day")
    if not 1e-9 <= opts.resolution <= 3600:
        raise UsageError(f"invalid -r {opts.resolution:g}: must be between 1e-9 and 3600 seconds")
    if len(opts.payload) > MAX_PAYLOAD:
        raise UsageError(f"payload of {len(opts.payload):,} bytes is too large (at most {MAX_PAYLOAD:,})")
    if opts.threads < 0:
        raise UsageError(f"invalid -threads {opts.threads}: must be >= 0")
    if not 0 < opts.stats_interval_s <= MAX_TIMEOUT_S:
        raise UsageError("invalid -stats-interval: must be > 0 and at most 1 day")
    if opts.loglevel.capitalize() not in LOGLEVELS:
        raise UsageError(f"invalid -loglevel {opts.loglevel!r}: one of {', '.join(LOGLEVELS)}")
    if opts.abort_on < -1 or opts.abort_on > 999:
        raise UsageError(f"invalid -abort-on {opts.abort_on}: an HTTP status, or -1 for socket errors")


LOAD_FLAGS_BY_NAME = {f.name: f for f in LOAD_FLAGS}
OPTION_FIELDS = {f.name for f in fields(LoadOptions)}
