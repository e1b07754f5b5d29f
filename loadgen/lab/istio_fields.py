"""Typed readers for Istio resource fields: the context of a document (file, document number,
kind, name) that every error and warning names, and one reader per field type (mapping, list,
string, integer, boolean, Go duration, ``Percent``, service host) that raises
:class:`~loadgen.errors.UsageError` with the field's path. Used by :mod:`loadgen.lab.istio`,
:mod:`loadgen.lab.istio_dr`, :mod:`loadgen.lab.istio_vs` and :mod:`loadgen.lab.istio_http`."""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from loadgen.durations import parse_ns
from loadgen.errors import UsageError
from loadgen.lab.model import Fraction, fqdn

MS = 1_000_000
MAX_U32 = 2**32 - 1
_LABEL_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


@dataclass
class Ctx:
    """Where we are: file, document, kind/name; collects warnings for the whole load."""

    source: str
    warnings: list[str]
    document: int = 0
    kind: str = ""
    name: str = ""
    namespace: str = "default"

    def where(self) -> str:
        if not self.document:
            return self.source
        what = (
            f" ({self.kind} {self.name})"
            if self.kind and self.name
            else f" ({self.kind})"
            if self.kind
            else ""
        )
        return f"{self.source}: document {self.document}{what}"

    def error(self, path: str, msg: str) -> UsageError:
        return UsageError(f"{self.where()}: {path}: {msg}" if path else f"{self.where()}: {msg}")

    def warn(self, path: str, msg: str) -> None:
        self.warnings.append(f"{self.where()}: {path}: {msg}" if path else f"{self.where()}: {msg}")


def join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def typename(v: object) -> str:
    if v is None:
        return "nothing"
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, (int, float)):
        return f"a number ({v})"
    if isinstance(v, str):
        return f"a string ({v!r})"
    if isinstance(v, list):
        return "a list"
    if isinstance(v, dict):
        return "a mapping"
    return type(v).__name__


def read_mapping(ctx: Ctx, v: object, path: str) -> dict[str, Any]:
    if not isinstance(v, dict):
        raise ctx.error(path, f"expected a mapping, got {typename(v)}")
    for k in v:
        if not isinstance(k, str):
            raise ctx.error(path, f"keys must be strings, got {typename(k)}")
    return v


def read_list(ctx: Ctx, v: object, path: str) -> list[Any]:
    if not isinstance(v, list):
        raise ctx.error(path, f"expected a list, got {typename(v)}")
    return v


def read_str(ctx: Ctx, v: object, path: str, *, required: bool = True) -> str:
    if v is None and not required:
        return ""
    if not isinstance(v, str) or (required and not v):
        raise ctx.error(path, "required" if v is None or v == "" else f"expected a string, got {typename(v)}")
    return v


def read_int(ctx: Ctx, v: object, path: str, lo: int = 0, hi: int = 2**31 - 1) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise ctx.error(path, f"expected an integer, got {typename(v)}")
    if not lo <= v <= hi:
        raise ctx.error(path, f"{v} is out of range ({lo}..{hi})")
    return v


def read_bool(ctx: Ctx, v: object, path: str) -> bool:
    if not isinstance(v, bool):
        raise ctx.error(path, f"expected true or false, got {typename(v)}")
    return v


def resolve_host(ctx: Ctx, v: object, path: str) -> str:
    """A service host, a short name (in the context's namespace) or ``NAME.NS.svc.cluster.local``,
    → its FQDN."""
    if v is None or v == "":
        raise ctx.error(path, "missing host")
    host = read_str(ctx, v, path).strip().lower()
    if host == "*" or host.startswith("*."):
        raise ctx.error(path, f"wildcard host {host!r} is not supported by the lab (name a service)")
    parts = host.split(".")
    if len(parts) == 1:
        short, ns = host, ctx.namespace
    elif len(parts) == 5 and parts[2:] == ["svc", "cluster", "local"]:
        short, ns = parts[0], parts[1]
    else:
        raise ctx.error(
            path,
            f"host {host!r} is neither a short name nor NAME.NAMESPACE.svc.cluster.local "
            "(Istio does not expand names that contain a dot)",
        )
    for label in (short, ns):
        if not _LABEL_RE.match(label):
            raise ctx.error(path, f"host {host!r}: {label!r} is not a valid DNS label")
    return fqdn(short, ns)


def parse_duration(text: str) -> int:
    """An Istio/Go duration (``1s``, ``500ms``, ``1.5s``, ``1m``, ``1h30m``) → nanoseconds.

    Raises ``ValueError`` with a reason for negative or malformed values.
    """
    s = text.strip()
    if s.startswith("-"):
        raise ValueError(f"negative duration {text!r}")
    if not s:
        raise ValueError("empty duration")
    try:
        return parse_ns(s, allow_days=False)
    except ValueError:
        hint = "(use e.g. '1s', '500ms', '1.5s', '1m', '1h')"
        raise ValueError(f"malformed duration {text!r} {hint}") from None


def read_duration(ctx: Ctx, v: object, path: str, min_ns: int = 0) -> int:
    if not isinstance(v, str):
        raise ctx.error(path, f"expected a duration string like '1s' or '500ms', got {typename(v)}")
    try:
        ns = parse_duration(v)
    except ValueError as exc:
        raise ctx.error(path, str(exc)) from None
    if ns < min_ns:
        raise ctx.error(path, f"{v!r} is too short (must be at least {min_ns // MS}ms)")
    return ns


def read_percent(ctx: Ctx, v: object, path: str) -> Fraction:
    """Istio ``Percent{value: double}`` → ``FractionalPercent{value*10000, MILLION}``."""
    m = read_mapping(ctx, v, path)
    check_fields(ctx, m, path, {"value"})
    val = m.get("value", 0)
    if isinstance(val, bool) or not isinstance(val, (int, float)) or math.isnan(val):
        raise ctx.error(join(path, "value"), f"expected a number, got {typename(val)}")
    if not 0 <= val <= 100:
        raise ctx.error(join(path, "value"), f"percentage {val} is out of range (0..100)")
    return Fraction(int(val * 10_000), "MILLION")


def check_fields(
    ctx: Ctx,
    m: Mapping[str, Any],
    path: str,
    handled: Iterable[str],
    ignored: Mapping[str, str] | None = None,
) -> None:
    """Error on unknown keys (with a suggestion), warn on known-but-ignored ones."""
    handled = set(handled)
    ignored = ignored or {}
    for k in m:
        if k in handled:
            continue
        if k in ignored:
            ctx.warn(join(path, k), f"ignored ({ignored[k]})")
            continue
        close = difflib.get_close_matches(k, [*handled, *ignored], n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ctx.error(join(path, k), f"unknown field{hint}")
