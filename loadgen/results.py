"""RunResult: one run's EngineResult plus its metadata, and fortio-compatible JSON both ways.

What this is
    * :class:`RunResult` — the engine's plain :class:`~loadgen.engine_api.EngineResult` and what
      the run was asked to do (options, labels, start time, target, threads, warm-up, version).
    * :meth:`RunResult.to_json` — fortio's ``HTTPRunnerResults`` JSON: the same field names, order
      and types (durations as integer ns, latencies as float seconds, ``RetCodes`` with string
      keys, ``RequestedQPS`` a string), so fortio's UI and scripts read it, plus one extension
      object ``"Loadgen"`` (intended-start latency, error kinds, ``x-envoy-overloaded`` counts,
      the per-second timeline, and every recorder encoded so the result can be rebuilt losslessly)
      and ``Loadgen.Envoy`` when an observer added one.
    * :meth:`RunResult.from_json` — reads our JSON (lossless) and fortio's own result files
      (approximate: values rebuilt from fortio's buckets, ``source == "fortio"``).
    * :func:`merge` — several runs as one (histograms merged, never percentiles averaged).
    * :func:`write_json_atomic` — temp file + rename, ``-`` for stdout.

Credentials never reach the JSON: the values of ``Authorization``, ``Proxy-Authorization`` and
``Cookie`` headers, ``UserCredentials``, the password of a URL (also in the generated labels) and
option ``extra`` entries named like user/pass/secret/token/auth/cookie are written as ``REDACTED``.
(``RunResult.extra`` and ``envoy`` are opaque and written as given.)

What this is not: no rendering (see :mod:`loadgen.report_text`), no running.
"""

from __future__ import annotations

import base64
import copy
import dataclasses
import datetime as dt
import json
import os
import re
import secrets
import socket
import sys
from dataclasses import dataclass, field
from typing import Any, TextIO
from urllib.parse import urlsplit, urlunsplit

from loadgen import fortio_hist as fh
from loadgen.engine_api import EngineResult
from loadgen.errors import UsageError
from loadgen.options import LoadOptions
from loadgen.recorder import Recorder, Second, merge_timelines
from loadgen.version import __version__

REDACTED = "REDACTED"
SENSITIVE_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie"})
_SENSITIVE_KEY = re.compile(
    r"user|pass|secret|token|auth|cookie|credential|api[-_]?key|session|signature|sig$", re.IGNORECASE
)

# name in "Loadgen.Recorders" -> EngineResult attribute
_RECORDERS: tuple[tuple[str, str], ...] = (
    ("Latency", "latency"),
    ("ServiceTime", "service"),
    ("ErrorServiceTime", "error_service"),
    ("ConnectTime", "connect_time"),
    ("HeaderSize", "header_size"),
    ("TotalSize", "total_size"),
)


# --- small helpers -------------------------------------------------------------------------


def rfc3339nano(t: dt.datetime) -> str:
    """Go's ``time.RFC3339Nano`` rendering (fraction without trailing zeros, ``Z`` for UTC)."""
    if t.tzinfo is None:
        t = t.astimezone()
    s = t.strftime("%Y-%m-%dT%H:%M:%S")
    if t.microsecond:
        s += "." + f"{t.microsecond:06d}".rstrip("0")
    off = t.utcoffset() or dt.timedelta(0)
    if off == dt.timedelta(0):
        return s + "Z"
    mins = int(off.total_seconds()) // 60
    sign = "+" if mins >= 0 else "-"
    mins = abs(mins)
    return f"{s}{sign}{mins // 60:02d}:{mins % 60:02d}"


_TS_RE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$")


def parse_rfc3339(s: str) -> dt.datetime:
    """Parse Go's RFC3339Nano (nanoseconds truncated to microseconds)."""
    m = _TS_RE.match(s.strip())
    if not m:
        raise UsageError(f"invalid StartTime {s!r}: expected RFC 3339")
    base, frac, zone = m.groups()
    text = base + ("." + (frac + "000000")[:6] if frac else "") + ("+00:00" if zone == "Z" else zone)
    return dt.datetime.fromisoformat(text)


def make_id(start: dt.datetime, run_id: int, labels: str) -> str:
    """fortio's result ID: ``YYYY-MM-DD-HHMMSS[_RunID]_<labels, non-alnum runs as one _>``, <= 96 chars."""
    base = (
        f"{start.year}-{start.month:02d}-{start.day:02d}-{start.hour:02d}{start.minute:02d}{start.second:02d}"
    )
    if run_id != 0:
        base += f"_{run_id}"
    if not labels:
        return base
    last = "_"
    out = [base, last]
    for ch in labels:
        if ch.isascii() and ch.isalnum():
            last = ch
        else:
            if last == "_":
                continue
            last = "_"
        out.append(last)
    res = "".join(out)
    if last == "_":
        res = res[:-1]
    return res[:96]


def default_labels(url: str) -> str:
    """fortio's generated labels: ``<url without http(s)://> , <short hostname>``."""
    short = redact_url(url)
    for p in ("https://", "http://"):
        if short.startswith(p):
            short = short[len(p) :]
            break
    return f"{short} , {socket.gethostname().split('.', 1)[0]}"


def redact_url(url: str) -> str:
    """Replace the password of ``user:password@host``, and the values of query parameters whose
    name looks like a credential (``token``, ``api_key``, ``signature``...), by REDACTED."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if parts.password is not None:
        host = parts.netloc.rsplit("@", 1)[1]
        parts = parts._replace(netloc=f"{parts.username or ''}:{REDACTED}@{host}")
    if parts.query:
        items = []
        for item in parts.query.split("&"):
            k, eq, _ = item.partition("=")
            items.append(f"{k}={REDACTED}" if eq and _SENSITIVE_KEY.search(k) else item)
        parts = parts._replace(query="&".join(items))
    return urlunsplit(parts)


def redact_headers(headers: tuple[tuple[str, str], ...]) -> list[list[str]]:
    """Header values redacted when the name is a credential (Authorization, Cookie, X-Api-Key, ...)."""
    return [
        [k, REDACTED if k.strip().lower() in SENSITIVE_HEADERS or _SENSITIVE_KEY.search(k) else v]
        for k, v in headers
    ]


def requested_qps_str(qps: float) -> str:
    return f"{qps:.9g}" if qps > 0 else "max"


def requested_duration_str(opts: LoadOptions, count: int, interrupted: bool) -> str:
    """fortio's RequestedDuration: ``5s``, ``exactly 100 calls`` or ``until stop``.

    ``, interrupted after N`` is appended when an exactly-N run did not make N calls (fortio) or
    when a duration run was stopped early (our addition)."""
    if opts.exactly > 0:
        s = f"exactly {opts.exactly} calls"
        if count != opts.exactly:
            return s + f", interrupted after {count}"
        return s
    s = fh.go_duration(fh.seconds_to_ns(opts.duration_s)) if opts.duration_s > 0 else "until stop"
    return s + f", interrupted after {count}" if interrupted else s


def _options_to_json(o: LoadOptions) -> dict[str, Any]:
    d: dict[str, Any] = {}
    for f in dataclasses.fields(o):
        v = getattr(o, f.name)
        if f.name == "headers":
            v = redact_headers(v)
        elif f.name == "url":
            v = redact_url(v)
        elif isinstance(v, bytes):
            v = base64.b64encode(v).decode("ascii")
        elif isinstance(v, tuple):
            v = list(v)
        elif isinstance(v, dict):
            v = {k: REDACTED if _SENSITIVE_KEY.search(str(k)) else val for k, val in v.items()}
        d[f.name] = v
    return d


def _options_from_json(d: dict[str, Any]) -> LoadOptions:
    kw: dict[str, Any] = {}
    proto = LoadOptions(url="")
    for f in dataclasses.fields(LoadOptions):
        if f.name not in d:
            continue
        v = d[f.name]
        cur = getattr(proto, f.name)
        try:
            if f.name == "headers":
                v = tuple((str(k), str(val)) for k, val in v)
            elif isinstance(cur, bytes):
                v = base64.b64decode(v) if v else b""
            elif isinstance(cur, tuple):
                v = tuple(float(x) for x in v)
            elif isinstance(cur, bool):
                v = bool(v)
            elif isinstance(cur, int):
                v = int(v)
            elif isinstance(cur, float):
                v = float(v)
            elif isinstance(cur, dict):
                v = dict(v)
            else:
                v = str(v)
        except (TypeError, ValueError) as exc:
            raise UsageError(f"invalid option {f.name!r} in result JSON: {exc}") from exc
        kw[f.name] = v
    if "url" not in kw:
        raise UsageError("result JSON options have no url")
    return LoadOptions(**kw)


def _latency_summary(rec: Recorder, percentiles: tuple[float, ...]) -> dict[str, Any]:
    return {
        "Count": rec.count,
        "Min": rec.min / 1e9,
        "Max": rec.max / 1e9,
        "Sum": rec.sum / 1e9,
        "Avg": rec.avg / 1e9,
        "StdDev": rec.stddev / 1e9,
        "Percentiles": [{"Percentile": p, "Value": rec.percentile(p) / 1e9} for p in percentiles]
        if rec.count
        else [],
    }


# --- RunResult -----------------------------------------------------------------------------


@dataclass
class RunResult:
    """An :class:`EngineResult` plus the metadata of the run that produced it."""

    engine_result: EngineResult
    options: LoadOptions
    start_time: dt.datetime  # timezone-aware
    labels: str = ""
    version: str = __version__
    engine: str = ""
    url: str = ""
    resolved: str = ""  # "ip:port" the connections went to
    requested_qps: str = "max"
    requested_duration: str = ""
    num_threads: int = 0  # connections actually used (fortio's NumThreads)
    run_id: int = 0
    warmup: int = 0  # warm-up calls made before the run (fortio: -c, or 0 with -n)
    envoy: dict[str, Any] | None = None  # opaque, added by the Envoy observer
    extra: dict[str, Any] = field(default_factory=dict)
    ip_counts: dict[str, int] = field(default_factory=dict)  # overrides {resolved: sockets} if set
    access_logger_info: str = ""
    procs: int = 0  # CPUs, for the "N->N procs" / "[gomax N]" report text; 0 = os.cpu_count()
    source: str = "loadgen"  # "fortio" when read from a fortio result file

    @classmethod
    def build(
        cls,
        eres: EngineResult,
        opts: LoadOptions,
        *,
        start_time: dt.datetime,
        engine: str = "",
        url: str = "",
        resolved: str = "",
        num_threads: int = 0,
        warmup: int = 0,
        labels: str | None = None,
        run_id: int | None = None,
        envoy: dict[str, Any] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> RunResult:
        """The usual constructor: derives fortio's requested strings, labels and ID inputs."""
        if start_time.tzinfo is None:
            start_time = start_time.astimezone()
        url = redact_url(url or opts.url)  # a password in the URL never reaches a report
        count = eres.service.count or eres.count
        lab = opts.labels if labels is None else labels
        return cls(
            engine_result=eres,
            options=opts,
            start_time=start_time,
            labels=lab or default_labels(url),
            engine=engine,
            url=url,
            resolved=resolved,
            requested_qps=requested_qps_str(opts.qps),
            requested_duration=requested_duration_str(
                opts, count, eres.interrupted or eres.aborted_on is not None
            ),
            num_threads=num_threads or len(eres.calls_done) or opts.connections,
            run_id=opts.runid if run_id is None else run_id,
            warmup=warmup,
            envoy=envoy,
            extra=dict(extra or {}),
            access_logger_info=f"mode json to {opts.access_log_file}" if opts.access_log_file else "",
            procs=os.cpu_count() or 1,
        )

    # --- derived values ---------------------------------------------------------------
    @property
    def id(self) -> str:
        return make_id(self.start_time, self.run_id, self.labels)

    @property
    def count(self) -> int:
        er = self.engine_result
        return er.service.count or er.count

    @property
    def actual_qps(self) -> float:
        secs = self.engine_result.elapsed_ns / 1e9
        return self.count / secs if secs > 0 else 0.0

    @property
    def qps_mode(self) -> bool:
        return self.options.qps > 0

    @property
    def socket_count(self) -> int:
        return sum(self.engine_result.sockets)

    @property
    def ip_count_map(self) -> dict[str, int]:
        if self.ip_counts:
            return dict(self.ip_counts)
        return {self.resolved: self.socket_count} if self.resolved else {}

    def duration_histogram(self) -> fh.HistogramData:
        """Service time (from the actual send), as fortio's ``DurationHistogram``."""
        return fh.from_recorder(
            self.engine_result.service, divider=self.options.resolution, percentiles=self.options.percentiles
        )

    def errors_histogram(self) -> fh.HistogramData:
        return fh.from_recorder(
            self.engine_result.error_service,
            divider=self.options.resolution,
            percentiles=self.options.percentiles,
        )

    def connection_histogram(self) -> fh.HistogramData:
        return fh.from_recorder(
            self.engine_result.connect_time,
            divider=self.options.resolution,
            percentiles=self.options.percentiles,
        )

    def sizes_histogram(self) -> fh.HistogramData:
        return fh.from_recorder(self.engine_result.total_size, divider=fh.SIZE_DIVIDER, scale=1.0)

    def header_sizes_histogram(self) -> fh.HistogramData:
        return fh.from_recorder(self.engine_result.header_size, divider=fh.HEADER_SIZE_DIVIDER, scale=1.0)

    def sleep_counter(self) -> fh.Counter:
        """The qps-mode waits before each request, in seconds (negative: late)."""
        er = self.engine_result
        return fh.Counter(
            count=er.sleep_count,
            min=er.sleep_min / 1e9,
            max=er.sleep_max / 1e9,
            sum=er.sleep_sum / 1e9,
            sumsq=er.sleep_sumsq / 1e18,
        )

    # --- JSON --------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        """fortio's ``HTTPRunnerResults`` (same names, order, types) + ``Loadgen`` (+ ``Loadgen.Envoy``)."""
        o = self.options
        er = self.engine_result
        user = str(getattr(o, "user", "") or o.extra.get("user", ""))
        d: dict[str, Any] = {
            "RunType": "HTTP",
            "Labels": self.labels,
            "StartTime": rfc3339nano(self.start_time),
            "RequestedQPS": self.requested_qps,
            "RequestedDuration": self.requested_duration,
            "ActualQPS": self.actual_qps,
            "ActualDuration": int(er.elapsed_ns),
            "NumThreads": self.num_threads,
            "Version": self.version,
            "DurationHistogram": self.duration_histogram().to_json(),
            "ErrorsDurationHistogram": self.errors_histogram().to_json(),
            "Exactly": o.exactly,
            "Jitter": o.jitter,
            "Uniform": o.uniform,
            "NoCatchUp": o.nocatchup,
            "RunID": self.run_id,
            "AccessLoggerInfo": self.access_logger_info,
            "ID": self.id,
            "RetCodes": {str(k): v for k, v in sorted(er.codes.items())},
            "IPCountMap": self.ip_count_map,
            # fhttp.HTTPOptions, with its embedded TLSOptions first
            "Insecure": o.insecure,
            "MTLS": False,
            "CACert": "",
            "Cert": "",
            "Key": "",
            "UnixDomainSocket": "",
            "URL": redact_url(self.url or o.url),
            "NumConnections": 1,
            "Compression": False,
            "DisableFastClient": o.stdclient or o.h2,
            "HTTP10": o.http10,
            "H2": o.h2,
            "DisableKeepAlive": not o.keepalive,
            "AllowHalfClose": False,
            "FollowRedirects": False,
            "Resolve": "",
            "HTTPReqTimeOut": fh.seconds_to_ns(o.timeout_s),
            "UserCredentials": REDACTED if user else "",
            "ContentType": o.content_type,
            "Payload": base64.b64encode(o.payload).decode("ascii") if o.payload else None,
            "MethodOverride": o.method,
            "LogErrors": True,
            "SequentialWarmup": False,
            "ConnReuseRange": [0, 0],
            "NoResolveEachConn": False,
            "Offset": 0,
            "Resolution": o.resolution,
            "Sizes": self.sizes_histogram().to_json(),
            "HeaderSizes": self.header_sizes_histogram().to_json(),
            "Sockets": list(er.sockets) or None,
            "SocketCount": self.socket_count,
            "ConnectionStats": self.connection_histogram().to_json(),
            "AbortOn": o.abort_on,
            "Loadgen": self._loadgen_json(),
        }
        if self.envoy is not None:
            d["Loadgen"]["Envoy"] = self.envoy
        return d

    def _loadgen_json(self) -> dict[str, Any]:
        er = self.engine_result
        sc = self.sleep_counter()
        return {
            "Version": self.version,
            "Engine": self.engine,
            "Source": self.source,
            "Hdr": {"Latency": er.latency.encode(), "ServiceTime": er.service.encode()},
            "Latency": _latency_summary(er.latency, self.options.percentiles),
            "Errors": {k: v for k, v in er.errors.items() if v},
            "Overloaded": {str(k): v for k, v in sorted(er.overloaded.items())},
            "Timeline": [s.to_json() for s in er.timeline],
            "Retries": er.retries,
            "Abandoned": er.abandoned,
            "Skipped": er.skipped,
            "Late": er.late,
            "Sleep": {
                "Count": sc.count,
                "Min": sc.min,
                "Max": sc.max,
                "Sum": sc.sum,
                "Avg": sc.avg,
                "StdDev": sc.stddev,
                "Ns": {
                    "Min": er.sleep_min,
                    "Max": er.sleep_max,
                    "Sum": er.sleep_sum,
                    "SumSq": er.sleep_sumsq,
                },
            },
            "Interrupted": er.interrupted,
            "AbortedOn": er.aborted_on,
            "StartUnix": er.start_wall,
            "CallsDone": list(er.calls_done),
            "Resolved": self.resolved,
            "Warmup": self.warmup,
            "Procs": self.procs,
            "Options": _options_to_json(self.options),
            "Extra": self.extra,
            "Recorders": {name: getattr(er, attr).to_json() for name, attr in _RECORDERS},
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> RunResult:
        """Read our JSON (lossless) or a fortio HTTP result (approximate; ``source == "fortio"``)."""
        if not isinstance(d, dict) or "RunType" not in d:
            raise UsageError("not a fortio/loadgen result: no RunType")
        if d.get("RunType") != "HTTP":
            raise UsageError(f"only HTTP results can be read, this one is {d.get('RunType')!r}")
        lg = d.get("Loadgen")
        try:
            if isinstance(lg, dict) and "Recorders" in lg:
                return cls._from_loadgen(d, lg)
            return cls._from_fortio(d)
        except (KeyError, TypeError, ValueError) as exc:
            raise UsageError(f"malformed result JSON: {exc!r}") from exc

    @classmethod
    def _from_loadgen(cls, d: dict[str, Any], lg: dict[str, Any]) -> RunResult:
        er = EngineResult()
        for name, attr in _RECORDERS:
            if name in lg["Recorders"]:
                setattr(er, attr, Recorder.from_json(lg["Recorders"][name]))
        ns = lg.get("Sleep", {}).get("Ns", {})
        er.sleep_count = int(lg.get("Sleep", {}).get("Count", 0))
        er.sleep_min, er.sleep_max = int(ns.get("Min", 0)), int(ns.get("Max", 0))
        er.sleep_sum, er.sleep_sumsq = float(ns.get("Sum", 0.0)), float(ns.get("SumSq", 0.0))
        er.late, er.skipped = int(lg.get("Late", 0)), int(lg.get("Skipped", 0))
        er.codes = {int(k): int(v) for k, v in (d.get("RetCodes") or {}).items()}
        er.overloaded = {int(k): int(v) for k, v in (lg.get("Overloaded") or {}).items()}
        er.errors = {str(k): int(v) for k, v in (lg.get("Errors") or {}).items()}
        er.sockets = [int(x) for x in (d.get("Sockets") or [])]
        er.calls_done = [int(x) for x in (lg.get("CallsDone") or [])]
        er.timeline = [Second.from_json(s) for s in (lg.get("Timeline") or [])]
        er.retries, er.abandoned = int(lg.get("Retries", 0)), int(lg.get("Abandoned", 0))
        er.elapsed_ns = int(d.get("ActualDuration", 0))
        er.start_wall = float(lg.get("StartUnix", 0.0))
        er.interrupted = bool(lg.get("Interrupted", False))
        ab = lg.get("AbortedOn")
        er.aborted_on = None if ab is None else int(ab)
        opts = _options_from_json(lg["Options"]) if "Options" in lg else _fortio_options(d)
        return cls(
            engine_result=er,
            options=opts,
            start_time=parse_rfc3339(d["StartTime"]),
            labels=str(d.get("Labels", "")),
            version=str(lg.get("Version", d.get("Version", ""))),
            engine=str(lg.get("Engine", "")),
            url=str(d.get("URL", opts.url)),
            resolved=str(lg.get("Resolved", "")),
            requested_qps=str(d.get("RequestedQPS", "")),
            requested_duration=str(d.get("RequestedDuration", "")),
            num_threads=int(d.get("NumThreads", 0)),
            run_id=int(d.get("RunID", 0)),
            warmup=int(lg.get("Warmup", 0)),
            envoy=lg.get("Envoy", d.get("Envoy")),
            extra=dict(lg.get("Extra") or {}),
            ip_counts=_ip_counts(d, str(lg.get("Resolved", ""))),
            access_logger_info=str(d.get("AccessLoggerInfo", "")),
            procs=int(lg.get("Procs", 0)),
            source=str(lg.get("Source", "loadgen")),
        )

    @classmethod
    def _from_fortio(cls, d: dict[str, Any]) -> RunResult:
        er = EngineResult()
        er.service = fh.from_histogram_data(d.get("DurationHistogram"))
        er.error_service = fh.from_histogram_data(d.get("ErrorsDurationHistogram"))
        er.connect_time = fh.from_histogram_data(d.get("ConnectionStats"))
        er.total_size = fh.from_histogram_data(d.get("Sizes"), scale=1.0, hdr_divisor=1)
        er.header_size = fh.from_histogram_data(d.get("HeaderSizes"), scale=1.0, hdr_divisor=1)
        er.codes = {}
        for k, v in (d.get("RetCodes") or {}).items():
            try:
                er.codes[int(k)] = int(v)
            except ValueError as exc:
                raise UsageError(f"RetCodes key {k!r} is not an HTTP status code") from exc
        er.sockets = [int(x) for x in (d.get("Sockets") or [])]
        if not er.sockets and d.get("SocketCount"):
            er.sockets = [int(d["SocketCount"])]
        er.elapsed_ns = int(d.get("ActualDuration", 0))
        start = parse_rfc3339(d["StartTime"])
        er.start_wall = start.timestamp()
        opts = _fortio_options(d)
        ipc = {str(k): int(v) for k, v in (d.get("IPCountMap") or {}).items()}
        count = er.service.count
        exactly = int(d.get("Exactly", 0))
        er.interrupted = ", interrupted after" in str(d.get("RequestedDuration", "")) or (
            exactly > 0 and count != exactly
        )
        abort_on = int(d.get("AbortOn", 0))
        if abort_on and er.codes.get(abort_on):
            er.aborted_on = abort_on
        warm = 0 if exactly > 0 else int(d.get("NumThreads", 0))
        return cls(
            engine_result=er,
            options=opts,
            start_time=start,
            labels=str(d.get("Labels", "")),
            version=str(d.get("Version", "")),
            engine="fortio",
            url=str(d.get("URL", "")),
            resolved=next(iter(ipc), ""),
            requested_qps=str(d.get("RequestedQPS", "")),
            requested_duration=str(d.get("RequestedDuration", "")),
            num_threads=int(d.get("NumThreads", 0)),
            run_id=int(d.get("RunID", 0)),
            warmup=warm,
            envoy=None,
            ip_counts=ipc,
            access_logger_info=str(d.get("AccessLoggerInfo", "")),
            procs=0,
            source="fortio",
        )


def _ip_counts(d: dict[str, Any], resolved: str) -> dict[str, int]:
    ipc = {str(k): int(v) for k, v in (d.get("IPCountMap") or {}).items()}
    # Only keep an explicit map when it is not the one derived from `resolved`.
    if resolved and set(ipc) <= {resolved}:
        return {}
    return ipc


def _fortio_options(d: dict[str, Any]) -> LoadOptions:
    """LoadOptions as far as fortio's JSON echoes them."""
    rq = str(d.get("RequestedQPS", "max"))
    qps = 0.0 if rq in ("max", "") else float(rq)
    rd = str(d.get("RequestedDuration", "")).split(",", 1)[0].strip()
    duration = 0.0
    if rd and not rd.startswith("exactly") and rd != "until stop":
        duration = fh.parse_go_duration(rd)
    dh = d.get("DurationHistogram") or {}
    pcts = tuple(float(p["Percentile"]) for p in (dh.get("Percentiles") or []))
    payload = d.get("Payload")
    kw: dict[str, Any] = {
        "url": str(d.get("URL", "")),
        "connections": int(d.get("NumThreads", 0)) or 4,
        "qps": qps,
        "duration_s": duration,
        "exactly": int(d.get("Exactly", 0)),
        "resolution": float(d.get("Resolution") or 0.001),
        "timeout_s": int(d.get("HTTPReqTimeOut", 3_000_000_000)) / 1e9,
        "keepalive": not bool(d.get("DisableKeepAlive", False)),
        "http10": bool(d.get("HTTP10", False)),
        "uniform": bool(d.get("Uniform", False)),
        "jitter": bool(d.get("Jitter", False)),
        "nocatchup": bool(d.get("NoCatchUp", False)),
        "abort_on": int(d.get("AbortOn", 0)),
        "labels": str(d.get("Labels", "")),
        "runid": int(d.get("RunID", 0)),
        "insecure": bool(d.get("Insecure", False)),
        "stdclient": bool(d.get("DisableFastClient", False)),
        "h2": bool(d.get("H2", False)),
        "method": str(d.get("MethodOverride", "") or ""),
        "content_type": str(d.get("ContentType", "") or ""),
        "payload": base64.b64decode(payload) if isinstance(payload, str) and payload else b"",
    }
    if pcts:
        kw["percentiles"] = pcts
    return LoadOptions(**kw)


# --- merge -----------------------------------------------------------------------------------


def merge(results: list[RunResult]) -> RunResult:
    """Combine runs (threads, processes, pods) into one result.

    Recorders are merged (HDR counts added, exact stats combined), codes/errors/overloaded
    summed, sockets and per-connection calls concatenated, timelines aligned on each run's
    ``StartUnix`` (rounded to whole seconds). The merged run starts at the earliest start and
    ends at the latest end; metadata (options, labels, URL) comes from the first result.
    """
    if not results:
        raise UsageError("nothing to merge")
    first = results[0]
    out = EngineResult()
    t0 = min(r.engine_result.start_wall for r in results)
    end = max(r.engine_result.start_wall + r.engine_result.elapsed_ns / 1e9 for r in results)
    parts: list[list[Second]] = []
    sleep_seen = False
    for r in results:
        er = r.engine_result
        for _, attr in _RECORDERS:
            getattr(out, attr).merge(getattr(er, attr))
        if er.sleep_count:
            if not sleep_seen:
                out.sleep_min, out.sleep_max = er.sleep_min, er.sleep_max
                sleep_seen = True
            else:
                out.sleep_min = min(out.sleep_min, er.sleep_min)
                out.sleep_max = max(out.sleep_max, er.sleep_max)
            out.sleep_count += er.sleep_count
            out.sleep_sum += er.sleep_sum
            out.sleep_sumsq += er.sleep_sumsq
        out.late += er.late
        out.skipped += er.skipped
        out.retries += er.retries
        out.abandoned += er.abandoned
        for src, dst in ((er.codes, out.codes), (er.overloaded, out.overloaded)):
            for k, v in src.items():
                dst[k] = dst.get(k, 0) + v
        for ek, ev in er.errors.items():
            out.errors[ek] = out.errors.get(ek, 0) + ev
        out.sockets.extend(er.sockets)
        out.calls_done.extend(er.calls_done)
        shift = round(er.start_wall - t0)
        shifted = []
        for s in er.timeline:
            c = copy.deepcopy(s)
            c.t += shift
            shifted.append(c)
        parts.append(shifted)
        out.interrupted = out.interrupted or er.interrupted
        if out.aborted_on is None:
            out.aborted_on = er.aborted_on
    out.timeline = merge_timelines(parts)
    out.start_wall = t0
    out.elapsed_ns = round((end - t0) * 1e9)
    ipc: dict[str, int] = {}
    for r in results:
        for ip, n in r.ip_count_map.items():
            ipc[ip] = ipc.get(ip, 0) + n
    start_time = min(r.start_time for r in results)
    return dataclasses.replace(
        first,
        engine_result=out,
        start_time=start_time,
        num_threads=sum(r.num_threads for r in results),
        warmup=sum(r.warmup for r in results),
        ip_counts=ipc if len(ipc) > 1 or any(r.ip_counts for r in results) else {},
        resolved=first.resolved if len(ipc) <= 1 else "",
        envoy=None,
        extra={**first.extra, "merged": len(results)},
        requested_duration=first.requested_duration,
    )


# --- writing -------------------------------------------------------------------------------


def dumps(data: dict[str, Any]) -> str:
    """JSON text as fortio writes it (``MarshalIndent`` with two spaces) plus a final newline."""
    return json.dumps(data, indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def write_json_atomic(path: str, data: dict[str, Any], stdout: TextIO | None = None) -> int:
    """Write ``data`` as JSON to ``path`` (temp file in the same directory + rename; ``-`` = stdout).

    Returns the number of bytes written (what ``Successfully wrote %d bytes`` reports).
    """
    text = dumps(data)
    raw = text.encode("utf-8")
    if path == "-":
        out = stdout or sys.stdout
        out.write(text)
        out.flush()
        return len(raw)
    d = os.path.dirname(os.path.abspath(path)) or "."
    tmp = os.path.join(d, f".{os.path.basename(path)}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except OSError as exc:
        raise UsageError(f"cannot write {path!r}: {exc.strerror}") from exc
    try:
        with os.fdopen(fd, "wb") as fh_:
            fh_.write(raw)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return len(raw)


def read_json(path: str) -> RunResult:
    """Load a result file written by loadgen or by fortio."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except OSError as exc:
        raise UsageError(f"cannot read {path!r}: {exc.strerror}") from exc
    except json.JSONDecodeError as exc:
        raise UsageError(f"{path!r} is not JSON: {exc}") from exc
    return RunResult.from_json(data)
