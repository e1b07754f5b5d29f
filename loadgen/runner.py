"""Run one load: options → target → plan → warm-up → engine → RunResult → outputs.

This is the orchestration layer under the CLI: it resolves the target, builds the request,
splits the run (fortio's plan), starts the chosen engine, handles SIGINT/SIGTERM (first: finish
in-flight requests and report; second: abort at once), draws the progress line on a TTY, and
writes the text report, the JSON and the HDR log. Observers (Envoy stats, later Kubernetes) hook
in through :class:`RunObserver`. It renders nothing itself: see :mod:`loadgen.report_text`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import os
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from types import FrameType
from typing import Protocol, TextIO

from loadgen import engine as engines
from loadgen import schedule
from loadgen.engine_api import EngineConfig, EngineHandle, EngineResult, is_ok
from loadgen.errors import RunError, UsageError
from loadgen.options import LoadOptions
from loadgen.results import RunResult, write_json_atomic
from loadgen.target import Target, build_request, method_of, parse_url, resolve


class RunObserver(Protocol):
    """Something that watches a run from outside (e.g. Envoy admin stats)."""

    def before(self) -> None: ...
    def tick(self) -> None: ...
    def after(self, result: RunResult) -> None: ...


@dataclass
class Prepared:
    """A run ready to start: everything resolved and validated, nothing started."""

    opts: LoadOptions
    target: Target
    engine: str
    ip: str
    cfg: EngineConfig
    plan: schedule.Plan
    warnings: list[str] = field(default_factory=list)
    closers: list[Callable[[], None]] = field(default_factory=list)  # k8s hook: relays to stop

    def close(self) -> None:
        for c in self.closers:
            c()
        self.closers.clear()


def _check_writable(path: str, what: str) -> None:
    if not path or path == "-":
        return
    d = os.path.dirname(os.path.abspath(path)) or "."
    if not os.path.isdir(d):
        raise UsageError(f"cannot write {what} {path!r}: directory {d!r} does not exist")
    if os.path.isdir(path):
        raise UsageError(f"cannot write {what} {path!r}: it is a directory")
    if not os.access(d, os.W_OK) or (os.path.exists(path) and not os.access(path, os.W_OK)):
        raise UsageError(f"cannot write {what} {path!r}: permission denied")
    # os.access() says yes to root on /proc, read-only mounts and full disks: really create (and
    # fsync) a small probe file next to the target, so the run never starts when its results
    # could not be written (tests/robust/test_bad_inputs.py: -json /proc/...)
    try:
        fd, probe = tempfile.mkstemp(prefix=".loadgen-probe-", dir=d)
    except OSError as exc:
        raise UsageError(f"cannot write {what} {path!r}: {exc.strerror}") from None
    try:
        os.write(fd, b"\0" * 4096)
        os.fsync(fd)
    except OSError as exc:
        raise UsageError(f"cannot write {what} {path!r}: {exc.strerror}") from None
    finally:
        os.close(fd)
        os.unlink(probe)


FD_HEADROOM = 64  # descriptors besides the connections: epoll, timers, files, Python itself


def ensure_open_files(connections: int) -> None:
    """Make room for ``connections`` sockets: raise the soft open-file limit up to the hard one
    when needed, or refuse with one clear line when even the hard limit is too low."""
    import resource

    need = connections + FD_HEADROOM
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or need <= soft:
        return
    if hard != resource.RLIM_INFINITY and need > hard:
        raise UsageError(
            f"-c {connections} needs about {need} open files but the limit is {hard} "
            f"(raise it with 'ulimit -n {need}' or lower -c)"
        )
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
    except (ValueError, OSError) as exc:
        raise UsageError(
            f"-c {connections} needs about {need} open files; cannot raise the limit of {soft}: {exc}"
        ) from None


def check_outputs(opts: LoadOptions) -> None:
    """Every output file can be written: checked before the run starts, never after it."""
    _check_writable(opts.json_path, "-json file")
    _check_writable(opts.hdr_out, "-hdr-out file")
    _check_writable(opts.access_log_file, "-access-log-file")
    _check_writable(opts.report_path, "-report file")
    if opts.report_path:
        from loadgen.report import require_report_deps

        require_report_deps("-report")
    if opts.auto_save and not os.path.isdir(opts.data_dir):
        raise UsageError(f"-data-dir {opts.data_dir!r} does not exist")


def prepare(opts: LoadOptions) -> Prepared:
    """Validate and resolve everything that can fail before the run starts (exit 2 errors)."""
    # --- k8s hook: a k8s:// target is sent to a local port-forward relay with the in-cluster Host ---
    relay = None
    k8s_warnings: list[str] = []
    if opts.url.startswith("k8s://") and not opts.via:
        from loadgen.k8s.hooks import forward_target

        target, relay, k8s_warnings = forward_target(opts)
    else:
        target = parse_url(opts.url)
    # --- end k8s hook ---
    name, warn = engines.choose(opts.engine, target.scheme, h2=opts.h2, stdclient=opts.stdclient)
    check_outputs(opts)
    if name == "httpx":
        for k, v in opts.headers:
            if not (k + v).isascii():
                raise UsageError(
                    f"invalid header {k!r}: the httpx engine sends ASCII header names and values only"
                )
    ip = resolve(target) if relay is None else "127.0.0.1"
    request = build_request(opts, target)
    pl = schedule.plan(opts.connections, opts.qps, opts.duration_s, opts.exactly, opts.uniform)
    ensure_open_files(sum(1 for c in pl.calls if c != 0))  # connections that will open sockets
    threads = opts.threads or min(os.cpu_count() or 1, pl.connections)
    threads = max(1, min(threads, pl.connections))
    method = method_of(opts)
    cfg = EngineConfig(
        host=ip,
        port=target.port if relay is None else relay.port,
        request=request,
        head=method == "HEAD",
        connections=pl.connections,
        threads=threads,
        qps=opts.qps if opts.qps > 0 else 0.0,
        calls=pl.calls,
        offsets=pl.offsets,
        stretch=pl.stretch,
        end_s=pl.end_s,
        jitter=opts.jitter,
        catchup=not opts.nocatchup,
        timeout_s=opts.timeout_s,
        keepalive=opts.keepalive,
        abort_on=opts.abort_on,
        access_log_path=opts.access_log_file,
        url=target.url,
        tls_insecure=opts.insecure,
        http2=opts.h2,
        headers=tuple(opts.headers),
        method=method,
        body=opts.payload,
    )
    warnings = ([warn] if warn else []) + k8s_warnings
    if pl.lowered_from:
        warnings.append(
            f"Lowering number of threads - total call {pl.total} -> lowering from "
            f"{pl.lowered_from} to {pl.connections} threads"
        )
    return Prepared(
        opts=opts,
        target=target,
        engine=name,
        ip=ip,
        cfg=cfg,
        plan=pl,
        warnings=warnings,
        closers=[relay.close] if relay is not None else [],
    )


class _Signals:
    """First SIGINT/SIGTERM: graceful stop; second SIGINT: abort."""

    def __init__(self, err: TextIO) -> None:
        self.handle: EngineHandle | None = None
        self.count = 0
        self.err = err

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.count += 1
        h = self.handle
        if h is None:
            raise KeyboardInterrupt
        if self.count == 1:
            h.stop()
            with contextlib.suppress(Exception):
                self.err.write("\nInterrupted: finishing in-flight requests (interrupt again to abort)\n")
        else:
            h.abort()

    @contextlib.contextmanager
    def installed(self) -> Iterator[_Signals]:
        old_int = signal.signal(signal.SIGINT, self)
        old_term = signal.signal(signal.SIGTERM, self)
        try:
            yield self
        finally:
            signal.signal(signal.SIGINT, old_int)
            signal.signal(signal.SIGTERM, old_term)


def _progress_line(done: int, total: int, errors: int, elapsed: float) -> str:
    rate = done / elapsed if elapsed > 0 else 0.0
    tot = f"/{total}" if total > 0 else ""
    return f"\r{done}{tot} calls  {rate:,.0f} qps  {errors} errors  {elapsed:.1f}s\x1b[K"


def run_engine(
    prep: Prepared,
    cfg: EngineConfig,
    *,
    err: TextIO,
    progress: bool,
    observers: list[RunObserver] | None = None,
) -> EngineResult:
    """Start ``cfg`` on the prepared engine and wait, handling signals and the progress line."""
    sig = _Signals(err)
    in_main = _in_main_thread()
    ctx = sig.installed() if in_main else contextlib.nullcontext(sig)
    with ctx:
        handle = engines.start(prep.engine, cfg)
        sig.handle = handle
        t0 = time.monotonic()
        next_tick = t0
        total = sum(c for c in cfg.calls if c > 0) if all(c >= 0 for c in cfg.calls) else -1
        while not handle.wait(0.1):
            now = time.monotonic()
            if observers and now >= next_tick:
                for ob in observers:
                    ob.tick()
                next_tick = now + prep.opts.stats_interval_s
            if progress:
                p = handle.progress()
                err.write(_progress_line(p.done, total, p.errors, p.elapsed_s))
                err.flush()
        if progress:
            err.write("\r\x1b[K")
            err.flush()
        return handle.result()


def _in_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def warmup(prep: Prepared, err: TextIO) -> int:
    """fortio's warm-up: one call per connection before a duration run; returns calls made.

    Raises :class:`RunError` when a warm-up call is not OK, unless ``-allow-initial-errors``.
    """
    opts = prep.opts
    if opts.exactly > 0:
        return 0
    c = prep.plan.connections
    cfg = dataclasses.replace(
        prep.cfg,
        qps=0.0,
        calls=tuple(1 for _ in range(c)),
        offsets=tuple(0.0 for _ in range(c)),
        stretch=False,
        end_s=0.0,
        access_log_path="",
        abort_on=0,
    )
    res = engines.start(prep.engine, cfg)
    res.wait(None)
    r = res.result()
    bad = {code: n for code, n in r.codes.items() if not is_ok(code)}
    if bad and not opts.allow_initial_errors:
        detail = ", ".join(f"code {k}: {v}" for k, v in sorted(bad.items()))
        errs = ", ".join(f"{k} {v}" for k, v in sorted(r.errors.items()) if v)
        raise RunError(
            f"warm-up failed ({detail}{'; ' + errs if errs else ''}); use -allow-initial-errors to run anyway"
        )
    return c


def execute(
    opts: LoadOptions,
    *,
    err: TextIO | None = None,
    out: TextIO | None = None,
    observers: list[RunObserver] | None = None,
    progress: bool | None = None,
) -> tuple[RunResult, int]:
    """Run the load described by ``opts``: report on ``err``, JSON where asked.

    Returns ``(result, exit code)``."""
    err = err or sys.stderr
    out = out or sys.stdout
    if opts.via:  # k8s hook: -via exec://… / job://… runs the load in the cluster
        from loadgen.k8s.hooks import run_via

        return run_via(opts, err=err, out=out, observers=list(observers or []))
    prep = prepare(opts)
    try:
        return _execute_prepared(prep, err, out, observers, progress)
    finally:
        prep.close()


def _execute_prepared(
    prep: Prepared,
    err: TextIO,
    out: TextIO,
    observers: list[RunObserver] | None,
    progress: bool | None,
) -> tuple[RunResult, int]:
    from loadgen import report_text  # local: keeps `import loadgen.runner` light for the API

    opts = prep.opts
    observers = list(observers or [])
    envoy_obs = None
    if opts.envoy_admin.startswith(("exec://", "k8s://")):  # k8s hook: a sidecar's admin
        from loadgen.k8s.hooks import envoy_observer

        envoy_obs, close_admin = envoy_observer(opts)
        prep.closers.append(close_admin)
        observers.append(envoy_obs)
    elif opts.envoy_admin:
        from loadgen.envoy.observer import EnvoyObserver

        envoy_obs = EnvoyObserver(opts.envoy_admin, opts.envoy_cluster, opts.stats_interval_s)
        observers.append(envoy_obs)
    for w in prep.warnings:
        err.write(f"Warning: {w}\n")
    if progress is None:
        progress = (not opts.quiet) and err.isatty()
    report_text.render_header(prep, err, opts.loglevel if not opts.quiet else "Error")
    warm = warmup(prep, err)
    for ob in observers:
        ob.before()
    start = dt.datetime.now(dt.timezone.utc).astimezone()
    eres = run_engine(prep, prep.cfg, err=err, progress=progress, observers=observers)
    result = RunResult.build(
        eres,
        opts,
        engine=prep.engine,
        url=prep.target.url,
        resolved=f"{prep.ip}:{prep.target.port}",
        start_time=start,
        num_threads=prep.plan.connections,
        warmup=warm,
    )
    for ob in observers:
        ob.after(result)
    if envoy_obs is not None:
        result.envoy = envoy_obs.to_json()
    report_text.render(result, err, opts.loglevel if not opts.quiet else "Error", header=False)
    if envoy_obs is not None:
        envoy_obs.render_text(err)
    write_outputs(result, opts, err, out)
    return result, exit_code(result)


def write_outputs(result: RunResult, opts: LoadOptions, err: TextIO, out: TextIO) -> None:
    from loadgen import report_text

    data = result.to_json() if (opts.json_path or opts.auto_save) else {}
    if opts.json_path:
        n = write_json_atomic(opts.json_path, data, stdout=out)
        if opts.json_path != "-":
            err.write(report_text.wrote_json_line(n, opts.json_path) + "\n")
    if opts.auto_save:
        path = os.path.join(opts.data_dir, result.id + ".json")
        n = write_json_atomic(path, data, stdout=out)
        err.write(report_text.wrote_json_line(n, path) + "\n")
    if opts.hdr_out:
        write_hdr_log(result, opts.hdr_out)
    if opts.report_path:
        from loadgen.report import write_single_run_report

        write_single_run_report(result, opts.report_path)
        err.write(f"Wrote the report to {opts.report_path}\n")


def write_hdr_log(result: RunResult, path: str) -> None:
    """HdrHistogram interval log (HdrHistogram's tools read it), values in µs: the interval tagged
    ``intended`` is the latency from the intended send, the one tagged ``service`` the service
    time (in that order, for readers that ignore tags)."""
    import io

    from hdrh.log import HistogramLogWriter

    er = result.engine_result
    start_ms = int(er.start_wall * 1000)
    end_ms = int((er.start_wall + er.elapsed_ns / 1e9) * 1000)
    buf = io.StringIO()
    w = HistogramLogWriter(buf)
    w.output_comment(f"loadgen {result.version} {result.url} (values in microseconds)")
    w.output_log_format_version()
    # written by hand: hdrh's output_start_time mis-handles its own millisecond argument; the
    # reader skips intervals that start before StartTime, so both come from the same start_ms
    stamp = dt.datetime.fromtimestamp(start_ms / 1000, dt.timezone.utc).isoformat(" ")
    buf.write(f"#[StartTime: {start_ms / 1000:.3f} (seconds since epoch), {stamp}]\n")
    w.output_legend()
    # interval lines written by hand too: hdrh's writer integer-divides the max by its unit ratio,
    # which prints 0.000 for any sub-millisecond run
    length = max(0.0, (end_ms - start_ms) / 1000.0)
    for tag, rec in (("intended", er.latency), ("service", er.service)):
        payload = rec.hdr.encode()
        text = payload.decode("ascii") if isinstance(payload, bytes) else str(payload)
        max_ms = rec.hdr.get_max_value() / 1000.0
        buf.write(f"Tag={tag},{start_ms / 1000.0:.3f},{length:.3f},{max_ms:.3f},{text}\n")
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as fh:
        fh.write(buf.getvalue())
    os.replace(tmp, path)


def exit_code(result: RunResult) -> int:
    """0, or 1 when the run failed: ``-abort-on`` hit, or every call was a socket error."""
    er = result.engine_result
    if er.aborted_on is not None:
        return 1
    if er.count and er.codes.get(-1, 0) == er.count:
        return 1
    return 0
