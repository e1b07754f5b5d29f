"""The text report: fortio's report line for line, then what fortio lacks.

fortio prints its report on stderr with exact printf formats (``%.8g``, ``%.4g``, ``%.6g``,
``%.2f``, ``%3d``, Go durations); a fortio user should see the same lines here, in the same
order, with the same log-level effects:

* ``Info`` (default): everything below. ``Verbose``/``Debug``: size histograms instead of the
  one-line size counters.
* ``Warning``: no per-connection socket lines; the connection-time histogram becomes one counter line.
* ``Error`` (and ``-quiet``): no ``Starting``/``Ended`` lines, the function-time histogram becomes
  its counter line plus the ``# target`` lines, and the connection-time and size lines are dropped.

The first line says ``Loadgen X.Y.Z`` where fortio says ``Fortio X.Y.Z``. After fortio's
``All done`` line come loadgen's additions: the latency from the intended send time (qps mode,
wrk2-style, coordinated omission included), the transport error kinds, the
``x-envoy-overloaded`` count, and retries/abandoned/skipped and stop reason when relevant.

This module formats; it computes nothing that :mod:`loadgen.results` does not provide.
Differences from fortio we know of: per-thread ``T000 ended after`` logger lines are not printed
(the engines do not time connections separately), the per-connection lines have no
``connection timing`` counter (the engine keeps one connect-time recorder for all connections),
and when more than 5 % of the waits were late the ``Aggregated Sleep Time`` line is the counter
only (the engines keep sleep statistics, not a sleep histogram).
"""

from __future__ import annotations

import os
from typing import Protocol, TextIO

from loadgen.engine_api import ERROR_KINDS, EngineConfig
from loadgen.errors import UsageError
from loadgen.fortio_hist import counter_line, go_duration, go_g, seconds_to_ns, target_line
from loadgen.options import LoadOptions
from loadgen.results import RunResult, redact_url
from loadgen.schedule import Plan
from loadgen.version import __version__

LEVELS: dict[str, int] = {
    "debug": 0,
    "verbose": 1,
    "info": 2,
    "warning": 3,
    "error": 4,
    "critical": 5,
    "fatal": 6,
}
VERBOSE, INFO, WARNING = 1, 2, 3
SLEEP_WARNING_PERCENT = 5.0


def level_of(loglevel: str) -> int:
    """fortio's log level by name (case-insensitive)."""
    try:
        return LEVELS[loglevel.strip().lower()]
    except KeyError:
        raise UsageError(
            f"invalid -loglevel {loglevel!r} (expected one of: "
            "Debug, Verbose, Info, Warning, Error, Critical, Fatal)"
        ) from None


def _gobool(b: bool) -> str:
    return "true" if b else "false"


class PreparedRun(Protocol):
    """What :func:`render_header` needs from the runner's prepared run."""

    @property
    def opts(self) -> LoadOptions: ...

    @property
    def plan(self) -> Plan: ...

    @property
    def cfg(self) -> EngineConfig: ...


def header_lines(opts: LoadOptions, url: str, num_threads: int, procs: int, lvl: int) -> list[str]:
    """fortio's first two lines: ``... running at ...`` and ``Starting at ...``."""
    url = redact_url(url)  # never print a password given in the URL
    qps_flag = opts.qps
    first = f"Loadgen {__version__} running at {go_g(qps_flag)} queries per second, {procs}->{procs} procs"
    if opts.exactly > 0:
        first += f", for {opts.exactly} calls: {url}"
    elif opts.duration_s <= 0:
        first += f", until interrupted: {url}"
    else:
        first += f", for {go_duration(seconds_to_ns(opts.duration_s))}: {url}"
    lines = [first]
    nt = max(1, num_threads)
    extra = f" with access logger mode json to {opts.access_log_file}" if opts.access_log_file else ""
    endless = opts.exactly <= 0 and opts.duration_s <= 0
    dur = go_duration(seconds_to_ns(opts.duration_s))
    if opts.qps > 0:
        q = go_g(opts.qps)
        if endless:
            lines.append(f"Starting at {q} qps with {nt} thread(s) [gomax {procs}] until interrupted{extra}")
        elif lvl <= WARNING:
            n = opts.exactly if opts.exactly > 0 else int(opts.qps * opts.duration_s)
            n = max(n, 2)
            per = n // nt
            total = per * nt
            if opts.exactly > 0:
                lines.append(
                    f"Starting at {q} qps with {nt} thread(s) [gomax {procs}] : exactly "
                    f"{opts.exactly}, {per} calls each (total {total} + "
                    f"{opts.exactly - total}){extra}"
                )
            else:
                lines.append(
                    f"Starting at {q} qps with {nt} thread(s) [gomax {procs}] for {dur} : "
                    f"{per} calls each (total {total}){extra}"
                )
    elif endless:
        lines.append(f"Starting at max qps with {nt} thread(s) [gomax {procs}] until interrupted{extra}")
    elif lvl <= WARNING:
        head = f"Starting at max qps with {nt} thread(s) [gomax {procs}] "
        if opts.exactly > 0:
            lines.append(
                head + f"for exactly {opts.exactly} calls ({opts.exactly // nt} per thread + "
                f"{opts.exactly % nt}){extra}"
            )
        else:
            lines.append(head + f"for {dur}{extra}")
    return lines


def render_header(prep: PreparedRun, out: TextIO, loglevel: str = "Info") -> None:
    """Print the header lines before a run starts (the runner calls this, then ``render(header=False)``)."""
    lvl = level_of(loglevel)
    url = prep.cfg.url or prep.opts.url
    out.write("\n".join(header_lines(prep.opts, url, prep.plan.connections, os.cpu_count() or 1, lvl)) + "\n")
    out.flush()


def report_lines(result: RunResult, loglevel: str = "Info", header: bool = True) -> list[str]:
    """The whole report as a list of lines (no trailing newlines)."""
    lvl = level_of(loglevel)
    er = result.engine_result
    opts = result.options
    procs = result.procs or os.cpu_count() or 1
    lines: list[str] = []
    if header:
        lines += header_lines(opts, result.url or opts.url, result.num_threads, procs, lvl)
    count = result.count
    if lvl <= WARNING:
        lines.append(f"Ended after {go_duration(er.elapsed_ns)} : {count} calls. qps={result.actual_qps:.5g}")
    if result.qps_mode and er.sleep_count:
        sc = result.sleep_counter()
        behind = 100.0 * er.late / er.sleep_count
        if behind > SLEEP_WARNING_PERCENT:
            lines.append(sc.line("Aggregated Sleep Time"))
            lines.append(f"WARNING {behind:.2f}% of sleep were falling behind")
        elif lvl <= WARNING:
            lines.append(sc.line("Sleep times"))
    dh = result.duration_histogram()
    eh = result.errors_histogram()
    if lvl <= WARNING:
        lines += dh.print_lines("Aggregated Function Time")
        lines += eh.print_lines("Error cases")
    else:
        lines.append(dh.counter_line("Aggregated Function Time"))
        lines += [target_line(p, v) for p, v in dh.percentiles]
        lines.append(eh.counter_line("Error cases"))
    resolved = result.resolved or ", ".join(result.ip_count_map)
    if lvl <= INFO:
        lines.append("# Socket and IP used for each connection:")
        for j, n in enumerate(er.sockets):
            lines.append(f"[{j}] {n:3d} socket used, resolved to {resolved}")
    if lvl <= INFO:
        lines += result.connection_histogram().print_lines("Connection time histogram (s)")
    elif lvl <= WARNING:
        lines.append(result.connection_histogram().counter_line("Connection time (s)"))
    lines.append(
        f"Sockets used: {result.socket_count} (for perfect keepalive, would be {result.num_threads})"
    )
    lines.append(
        f"Uniform: {_gobool(opts.uniform)}, Jitter: {_gobool(opts.jitter)}, "
        f"Catchup allowed: {_gobool(not opts.nocatchup)}"
    )
    lines.append("IP addresses distribution:")
    ipc = result.ip_count_map
    for ip in sorted(ipc, key=lambda k: -ipc[k]):
        lines.append(f"{ip}: {ipc[ip]}")
    total = float(dh.count or sum(er.codes.values()) or 1)
    for code in sorted(er.codes):
        n = er.codes[code]
        lines.append(f"Code {code:3d} : {n} ({100.0 * n / total:.1f} %)")
    if lvl <= VERBOSE:
        lines += result.header_sizes_histogram().print_lines("Response Header Sizes Histogram")
        lines += result.sizes_histogram().print_lines("Response Body/Total Sizes Histogram")
    elif lvl <= WARNING:
        lines.append(result.header_sizes_histogram().counter_line("Response Header Sizes"))
        lines.append(result.sizes_histogram().counter_line("Response Body/Total Sizes"))
    lines.append(
        f"All done {count} calls (plus {result.warmup} warmup) {1000.0 * dh.avg:.3f} ms avg, "
        f"{result.actual_qps:.1f} qps"
    )
    lines += extra_lines(result)
    return lines


def extra_lines(result: RunResult) -> list[str]:
    """loadgen's additions after ``All done``."""
    er = result.engine_result
    lines: list[str] = []
    lat = er.latency
    if result.qps_mode and lat.count:
        lines.append(
            counter_line(
                "Latency from intended send time (wrk2-style)",
                lat.count,
                lat.avg / 1e9,
                lat.stddev / 1e9,
                lat.min / 1e9,
                lat.max / 1e9,
                lat.sum / 1e9,
            )
        )
        # the service time from the same HDR recorder beside it: fortio's bucket interpolation
        # above is a different estimator, so compare these two with each other
        lines += [
            f"{target_line(p, lat.percentile(p) / 1e9)} (service time {er.service.percentile(p) / 1e9:.6g})"
            for p in result.options.percentiles
        ]
    lines.append(errors_line(result))
    ov = sum(er.overloaded.values())
    detail = ""
    if ov:
        detail = " (" + ", ".join(f"code {k}: {v}" for k, v in sorted(er.overloaded.items()) if v) + ")"
    lines.append(f"Overloaded (x-envoy-overloaded): {ov}{detail}")
    misc = [
        (name, n)
        for name, n in (("retries", er.retries), ("abandoned", er.abandoned), ("skipped slots", er.skipped))
        if n
    ]
    if misc:
        lines.append("Also: " + ", ".join(f"{name} {n}" for name, n in misc))
    if er.aborted_on is not None:
        lines.append(f"Stopped early: code {er.aborted_on} seen (-abort-on {er.aborted_on})")
    elif er.interrupted:
        lines.append("Stopped early: interrupted")
    return lines


def errors_line(result: RunResult) -> str:
    """``Errors: connect_refused 3, timeout 1`` (known kinds in their fixed order) or ``Errors: none``."""
    er = result.engine_result
    kinds = [k for k in ERROR_KINDS if er.errors.get(k)] + sorted(
        k for k in er.errors if k not in ERROR_KINDS and er.errors[k]
    )
    if kinds:
        return "Errors: " + ", ".join(f"{k} {er.errors[k]}" for k in kinds)
    socket_errors = er.codes.get(-1, 0)
    if socket_errors:
        return f"Errors: {socket_errors} socket errors (kinds not recorded)"
    return "Errors: none"


def render(result: RunResult, out: TextIO, loglevel: str = "Info", header: bool = True) -> None:
    """Write the report to ``out`` (the CLI passes stderr, as fortio does)."""
    out.write("\n".join(report_lines(result, loglevel, header)) + "\n")
    out.flush()


def wrote_json_line(nbytes: int, path: str) -> str:
    """fortio's ``Successfully wrote %d bytes of Json data to %s`` (``-`` is ``stdout``)."""
    return f"Successfully wrote {nbytes} bytes of Json data to {'stdout' if path == '-' else path}"
