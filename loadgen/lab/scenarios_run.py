"""``loadgen lab run SCENARIO``: the Istio traffic-management lab's experiments, on a real Envoy.

Each scenario starts its own lab (a temporary state directory; torn down at the end unless
``-keep``), applies the scenario's packaged YAML (``loadgen lab show SCENARIO``) or the user's
``-f`` files, sends bounded loads with the project's engine, reads Envoy's admin stats around
every load, and prints a table of *declared policy vs observed*. The exit code is 1 when an
observation contradicts the policy, 0 otherwise (2 for bad input).

Scenarios: ``circuit-breaker``, ``routing``, ``fault-delay``, ``fault-abort``, ``mirror``,
``outlier`` (and ``all``). What each checks is in its function's docstring.

Statistical checks (traffic splits, abort rates) print the 95 % Wilson interval; a declared value
outside it but inside the 99.9999 % interval is reported as ``WARN`` (a 1-in-20 event, not a
contradiction); outside that interval it is ``FAIL`` (by chance about once in a million checks).
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TextIO

from loadgen.errors import LoadgenError, RunError, UsageError
from loadgen.lab import declared as decl
from loadgen.lab import supervise as sv
from loadgen.lab.harness import Ctx, Lab, deltas, load, stat, sum_http
from loadgen.lab.verdicts import Outcome, proportion_check, render_summary, render_table, wilson
from loadgen.results import RunResult

SCENARIOS = ("circuit-breaker", "routing", "fault-delay", "fault-abort", "mirror", "outlier")

# ------------------------------------------------------------------------------ scenarios


def circuit_breaker(ctx: Ctx) -> None:
    """The lab's DestinationRule (maxConnections 1, http1MaxPendingRequests 1,
    maxRequestsPerConnection 1) and the lab's two loads: every 503 is a circuit-breaker rejection,
    carries ``x-envoy-overloaded``, and equals pending+active overflow exactly."""
    lab = ctx.lab
    cl = lab.cluster("httpbin")
    url = lab.url("httpbin", "/get")
    for c, n in ((2, 20), (3, 30)):
        r = load(ctx, f"-c {c} -n {n}", url, c=c, n=n, cluster=cl, report=True)
        er = r.engine_result
        v = (r.envoy or {}).get("Verdict") or {}
        n503 = er.codes.get(503, 0)
        other = {k: v2 for k, v2 in er.codes.items() if k not in (200, 503)}
        ctx.out.add(f"-c {c} -n {n}: codes", "200 or 503 (overflow) only", _codes(er.codes), not other)
        d = deltas(r)
        overflow = stat(d, cl, "upstream_rq_pending_overflow") + stat(d, cl, "upstream_rq_active_overflow")
        ctx.out.add(
            f"-c {c} -n {n}: 503s = overflow",
            "every 503 is a CB rejection",
            f"503s {n503}, pending+active overflow +{overflow}",
            n503 == overflow,
        )
        ctx.out.add(
            f"-c {c} -n {n}: x-envoy-overloaded",
            "on every overflow 503",
            f"{er.overloaded.get(503, 0)} of {n503}",
            er.overloaded.get(503, 0) == n503,
        )
        ctx.out.add(
            f"-c {c} -n {n}: reconciliation",
            "exact",
            f"{v.get('Status', '?')}: {v.get('Sentence', '')}",
            v.get("Status") == "exact",
        )
        cx = stat(d, cl, "upstream_cx_total")
        ctx.out.add(
            f"-c {c} -n {n}: upstream requests",
            "maxRequestsPerConnection 1: one per connection",
            f"upstream_rq_total +{stat(d, cl, 'upstream_rq_total')}, upstream_cx_total +{cx}",
            stat(d, cl, "upstream_rq_total") <= cx,
        )
        limit = decl.concurrency_limit(lab.spec, "httpbin")
        shown = "unlimited" if limit is None else f"{limit} (connections + pending)"
        if limit is None or c <= limit:
            ctx.out.add(
                f"-c {c} -n {n}: trips",
                f"{c} concurrent <= {shown}: little or no overflow",
                f"{n503} overflow 503s",
                True if n503 == 0 else "WARN",
            )
        else:
            ctx.out.add(
                f"-c {c} -n {n}: trips",
                f"{c} concurrent > {shown}: overflow expected",
                f"{n503} overflow 503s",
                True if n503 > 0 else "WARN",
            )


def _codes(codes: dict[int, int]) -> str:
    return ", ".join(f"{k}: {v}" for k, v in sorted(codes.items())) or "none"


def routing(ctx: Ctx) -> None:
    """Request routing, step by step (all to v1; ``end-user: jason`` → v2; 80/20): for every request
    shape the VirtualService distinguishes, the measured split over the per-subset clusters
    (Envoy's cluster stats) against the split the YAML declares."""
    steps = ["up"] + [k for k in ctx.files if k != "up"]
    for step in steps:
        if step != "up":
            ctx.err.write(f"  {ctx.lab.apply(ctx.files[step])}\n")
        _check_splits(ctx, "reviews", "/reviews/0", prefix="initial" if step == "up" else step)


def _check_splits(ctx: Ctx, short: str, path: str, prefix: str) -> None:
    lab = ctx.lab
    url = lab.url(short, path)
    svc = lab.service(short)
    clusters = [lab.cluster(short, s.name) for s in svc.subsets] or [lab.cluster(short)]
    for probe in decl.probes(lab.spec, short):
        want = expected_split(lab, short, path, probe)
        deterministic = len(want) <= 1
        n = 100 if deterministic else 1000
        label = f"{prefix}: {decl.probe_label(probe)}"
        r = load(ctx, label, url, c=4, n=n, headers=tuple(probe.items()))
        d = deltas(r)
        got = {cl: stat(d, cl, "upstream_rq_total") for cl in sorted(set(clusters) | set(want))}
        total = sum(got.values())
        observed = _fmt_split({decl.subset_of(k): v for k, v in got.items()})
        declared = (
            ", ".join(f"{decl.subset_of(k)} {100 * v:g} %" for k, v in want.items()) or "no route (404)"
        )
        answer = decl.envoy_answer(decl.declared_route(lab.spec, short, path, probe))
        if answer is not None:
            what, code = answer
            codes = r.engine_result.codes
            ok = total == 0 and codes.get(code, 0) == n
            ctx.out.add(label, f"{what} by Envoy, no upstream request", f"{_codes(codes)}; {observed}", ok)
            continue
        if deterministic:
            ok = all(v == (n if k in want else 0) for k, v in got.items()) and total == (n if want else 0)
            ctx.out.add(label, declared, observed, ok)
            continue
        for cl, share in want.items():
            obs, verdict = proportion_check(got.get(cl, 0), total, share)
            ctx.out.add(f"{label} -> {decl.subset_of(cl)}", f"{100 * share:g} %", obs, verdict)
        stray = sum(v for k, v in got.items() if k not in want)
        ctx.out.add(f"{label}: elsewhere", "0 requests", f"{stray} requests", stray == 0)


def expected_split(lab: Lab, short: str, path: str, headers: dict[str, str]) -> dict[str, float]:
    """The declared split (a seam, so tests can check that a wrong declaration is caught)."""
    return decl.expected_split(lab.spec, short, path, headers)


def _fmt_split(s: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in s.items())


def fault_delay(ctx: Ctx) -> None:
    """Fault injection, delay: for every request shape the ratings VirtualService distinguishes,
    latency ≈ the declared fixed delay where a delay applies (``fault.delays_injected`` agrees)
    and no delay elsewhere; then the lab's finding: productpage (3 s timeout, one retry, to
    reviews; reviews v2 → ratings with a 10 s timeout) answers in about 6 s with the reviews
    section unavailable while ratings is delayed 7 s."""
    lab = ctx.lab
    url = lab.url("ratings", "/ratings/0")
    delayed: list[dict[str, str]] = []
    for probe in decl.probes(lab.spec, "ratings"):
        route = decl.declared_route(lab.spec, "ratings", "/ratings/0", probe)
        fault = getattr(route, "fault", None)
        delay = getattr(fault, "delay", None)
        label = decl.probe_label(probe)
        if delay is None:
            r = load(ctx, f"ratings, {label}", url, c=2, n=50, headers=tuple(probe.items()))
            p99 = r.engine_result.service.percentile(99) / 1e9
            ctx.out.add(f"{label}: latency", "no delay", f"p99 {1000 * p99:.1f} ms", p99 < 0.5)
            continue
        pct = delay.percentage.percent
        secs = delay.fixed_delay_ns / 1e9
        if pct < 100.0:
            ctx.out.add(
                f"{label}: latency", f"{secs:g} s for {pct:g} %", "not measured (partial delay)", "WARN"
            )
            continue
        r = load(ctx, f"ratings, {label}", url, c=3, n=3, headers=tuple(probe.items()), timeout_s=secs + 5)
        p50 = r.engine_result.service.percentile(50) / 1e9
        ok200 = r.engine_result.codes.get(200, 0) == 3
        ctx.out.add(
            f"{label}: latency",
            f"fixedDelay {secs:g} s",
            f"p50 {p50:.2f} s, {_codes(r.engine_result.codes)}",
            abs(p50 - secs) <= 0.1 * secs + 0.2 and ok200,
        )
        got = sum_http(r, "fault.delays_injected")
        ctx.out.add(f"{label}: fault.delays_injected", "3 (100 %)", f"+{got}", got == 3)
        if secs > 2 * 3.0:  # beyond productpage's two 3 s tries: the lab's finding applies
            delayed.append(probe)
    if "productpage" not in {s.short for s in lab.spec.services}:
        return
    for probe in [*delayed[:1], {"end-user": "alice"}]:
        label = decl.probe_label(probe)
        t0 = time.monotonic()
        status, body = _get(lab.url("productpage", "/productpage"), probe, timeout=30)
        took = time.monotonic() - t0
        unavailable = "Reviews unavailable" in body
        if probe in delayed:
            ctx.out.add(
                f"{label}: productpage",
                "~6 s (3 s timeout x 2 tries), reviews unavailable",
                f"{status} in {took:.1f} s, {'reviews unavailable' if unavailable else 'reviews shown'}",
                status == 200 and unavailable and 5.0 <= took <= 8.0,
            )
        else:
            ctx.out.add(
                f"{label}: productpage",
                "fast, reviews shown",
                f"{status} in {took:.2f} s",
                status == 200 and not unavailable and took < 2.0,
            )


def fault_abort(ctx: Ctx) -> None:
    """Fault injection, abort: for every request shape the ratings VirtualService distinguishes,
    the abort rate's confidence interval contains the declared percentage (0 where no abort
    applies) and ``fault.aborts_injected`` equals what the client saw."""
    lab = ctx.lab
    url = lab.url("ratings", "/ratings/0")
    for probe in decl.probes(lab.spec, "ratings"):
        route = decl.declared_route(lab.spec, "ratings", "/ratings/0", probe)
        fault = getattr(route, "fault", None)
        abort = getattr(fault, "abort", None)
        label = decl.probe_label(probe)
        n = 200
        r = load(ctx, f"ratings, {label}", url, c=4, n=n, headers=tuple(probe.items()))
        codes = r.engine_result.codes
        aborts = sum_http(r, "fault.aborts_injected")
        if abort is None:
            ctx.out.add(
                f"{label}: codes",
                "200 only (no abort)",
                _codes(codes),
                codes.get(200, 0) == n and aborts == 0,
            )
            continue
        pct = abort.percentage.percent if abort.percentage is not None else 0.0
        k = codes.get(abort.http_status, 0)
        obs, verdict = proportion_check(k, n, pct / 100.0)
        ctx.out.add(f"{label}: abort rate", f"HTTP {abort.http_status} for {pct:g} %", obs, verdict)
        ctx.out.add(
            f"{label}: fault.aborts_injected",
            f"= client {abort.http_status}s",
            f"+{aborts} vs {k}",
            aborts == k,
        )


def mirror(ctx: Ctx) -> None:
    """Mirroring: 100 % to v1, mirrored to v2: every request reaches v2 as a mirror (cluster stats
    and v2's access log), the client only ever gets v1's answers, and a dead v2 does not affect
    the client."""
    lab = ctx.lab
    url = lab.url("httpbin", "/headers")
    v1, v2 = lab.cluster("httpbin", "v1"), lab.cluster("httpbin", "v2")
    logs = [p.access_log for p in lab.upstreams("httpbin", "v2") if p.access_log]
    # count only the load's own path: the readiness probe's GET /get may still be on its way into
    # the log (gunicorn writes a line after it has sent the response)
    mark = b'"GET /headers '
    before = sum(_lines(p, mark) for p in logs)
    n = 100
    r = load(ctx, "mirrored", url, c=2, n=n)
    time.sleep(0.5)  # the shadow is fire-and-forget: let the last mirrors land
    d = _settled_deltas(ctx, r, (v1, v2), n)
    ctx.out.add(
        "client",
        "v1's answers, all 200",
        _codes(r.engine_result.codes),
        r.engine_result.codes.get(200, 0) == n,
    )
    ctx.out.add(
        "v1 cluster",
        f"{n} requests (the route)",
        f"upstream_rq_total +{stat(d, v1, 'upstream_rq_total')}",
        stat(d, v1, "upstream_rq_total") == n,
    )
    ctx.out.add(
        "v2 cluster",
        f"{n} mirrored requests (100 %)",
        f"upstream_rq_total +{stat(d, v2, 'upstream_rq_total')}",
        stat(d, v2, "upstream_rq_total") == n,
    )
    got = _wait_lines(logs, mark, before + n, 5.0) - before
    ctx.out.add("v2 access log", f"{n} new lines", f"+{got}", got == n)
    # kill v2: the client must not notice
    for p in lab.upstreams("httpbin", "v2"):
        sv.stop([p])
    r = load(ctx, "mirror to a dead v2", url, c=2, n=n)
    ctx.out.add(
        "dead v2: client",
        "unaffected, all 200",
        _codes(r.engine_result.codes),
        r.engine_result.codes.get(200, 0) == n,
    )


def _lines(path: str, mark: bytes) -> int:
    """Lines of ``path`` that contain ``mark``."""
    try:
        with open(path, "rb") as fh:
            return sum(1 for line in fh if mark in line)
    except OSError:
        return 0


def _wait_lines(paths: list[str], mark: bytes, want: int, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while True:
        got = sum(_lines(p, mark) for p in paths)
        if got >= want or time.monotonic() > deadline:
            return got
        time.sleep(0.1)


def _settled_deltas(ctx: Ctx, r: RunResult, clusters: tuple[str, ...], n: int) -> dict[str, dict[str, int]]:
    """Deltas from the run's first snapshot to now, after the shadow requests have landed."""
    from loadgen.envoy.admin import AdminClient

    series = (r.envoy or {}).get("Series") or []
    first = next((e for e in series if e.get("Clusters")), None)
    d = deltas(r)
    if first is None:
        return d
    client = AdminClient(ctx.lab.state.admin_url)
    try:
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:
            now = client.snapshot()
            out: dict[str, dict[str, int]] = {}
            for cl in clusters:
                b = first["Clusters"].get(cl, {})
                a = now.clusters.get(cl, {})
                out[cl] = {
                    "upstream_rq_total": int(a.get("upstream_rq_total", 0))
                    - int(b.get("upstream_rq_total", 0))
                }
            if all(out[cl]["upstream_rq_total"] >= n for cl in clusters):
                return out
            time.sleep(0.1)
        return out
    finally:
        client.close()


def outlier(ctx: Ctx) -> None:
    """Outlier detection: one of two httpbin replicas is replaced by a server that answers 503 to
    everything; it is ejected (``outlier_detection.ejections_*``) and traffic moves to the
    healthy replica (a second load sees no 5xx)."""
    lab = ctx.lab
    cl = lab.cluster("httpbin")
    reps = lab.upstreams("httpbin")
    if len(reps) < 2:
        raise UsageError("the outlier scenario needs two httpbin replicas (topology replicas: 2)")
    bad = reps[-1]
    sv.stop([bad])
    lab.extra.append(_start_failing_server(bad.port, Path(lab.dir) / "logs" / "failing.log"))
    url = lab.url("httpbin", "/get")
    r = load(ctx, "one replica answers 503", url, c=1, n=40, cluster=cl)
    d = deltas(r)
    ej = stat(d, cl, "outlier_detection.ejections_enforced_total")
    c5 = stat(d, cl, "outlier_detection.ejections_enforced_consecutive_5xx")
    n5xx = sum(v for k, v in r.engine_result.codes.items() if k >= 500)
    ctx.out.add(
        "ejection",
        "consecutive5xxErrors 1: the failing replica is ejected",
        f"ejections_enforced_total +{ej} (consecutive_5xx +{c5}); client 5xx {n5xx}",
        ej >= 1,
    )
    ctx.out.add("before ejection", "at most a few 5xx reach the client", f"{n5xx} of 40", 1 <= n5xx <= 5)
    r = load(ctx, "after ejection", url, c=2, n=100, cluster=cl)
    d = deltas(r)
    ctx.out.add(
        "after ejection",
        "traffic on the healthy replica: all 200",
        _codes(r.engine_result.codes),
        r.engine_result.codes.get(200, 0) == 100,
    )
    ctx.out.add(
        "ejected host",
        "stays out for baseEjectionTime (30 s)",
        f"ejections_active {stat(d, cl, 'outlier_detection.ejections_active')}",
        stat(d, cl, "outlier_detection.ejections_active") >= 1,
    )


def _start_failing_server(port: int, log: Path) -> subprocess.Popen[bytes]:
    argv = [
        sys.executable,
        "-m",
        "loadgen.serve",
        "-port",
        str(port),
        "-quiet",
        "-default-params",
        "status=503",
    ]
    with open(log, "wb") as fh:
        p = subprocess.Popen(
            argv, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            status, _ = _get(f"http://127.0.0.1:{port}/healthz", {}, timeout=1)
            if status:
                break
        except OSError:
            time.sleep(0.05)
    else:
        p.kill()
        p.wait(5)
        raise RunError(f"could not start the failing replica on port {port}")
    return p


def _get(url: str, headers: dict[str, str], timeout: float) -> tuple[int, str]:
    from urllib.parse import urlsplit

    u = urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname or "127.0.0.1", u.port or 80, timeout=timeout)
    try:
        conn.request("GET", u.path or "/", headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read().decode("utf-8", "replace")
    finally:
        conn.close()


# ------------------------------------------------------------------------------ packaging


@dataclass(frozen=True)
class Scenario:
    name: str
    run: Callable[[Ctx], None]
    files: dict[str, tuple[str, ...]]  # step -> packaged YAML names; "up" is what the lab starts with


PLAN: dict[str, Scenario] = {
    "circuit-breaker": Scenario("circuit-breaker", circuit_breaker, {"up": ("circuit-breaker.yaml",)}),
    "routing": Scenario(
        "routing",
        routing,
        {"up": ("routing-v1.yaml",), "jason": ("routing-jason.yaml",), "80-20": ("routing-80-20.yaml",)},
    ),
    "fault-delay": Scenario("fault-delay", fault_delay, {"up": ("fault-delay.yaml",)}),
    "fault-abort": Scenario("fault-abort", fault_abort, {"up": ("fault-abort.yaml",)}),
    "mirror": Scenario("mirror", mirror, {"up": ("mirror.yaml",)}),
    "outlier": Scenario("outlier", outlier, {"up": ("outlier.yaml",)}),
}


@contextlib.contextmanager
def packaged(names: tuple[str, ...]) -> Iterator[list[str]]:
    """Paths of packaged scenario files (copied to a temp dir so the lab can read them)."""
    tmp = Path(tempfile.mkdtemp(prefix="loadgen-scn-"))
    try:
        out = []
        for name in names:
            text = resources.files("loadgen.lab").joinpath("scenarios").joinpath(name).read_text()
            p = tmp / name
            p.write_text(text)
            out.append(str(p))
        yield out
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run_scenario(
    name: str,
    *,
    engine: str = "",
    user_files: list[str] | None = None,
    keep: bool = False,
    verbose: bool = False,
    err: TextIO | None = None,
) -> Outcome:
    scn = PLAN[name]
    err = err or sys.stderr
    outcome = Outcome(name)
    t0 = time.monotonic()
    with contextlib.ExitStack() as stack:
        files: dict[str, list[str]] = {}
        if user_files:  # the user's YAML replaces the whole policy: the later steps are not applied
            files["up"] = list(user_files)
            from loadgen.lab import istio

            istio.load(files["up"])  # bad YAML: one clear line before anything starts
        else:
            for step, names in scn.files.items():
                files[step] = stack.enter_context(packaged(names))
        err.write(
            f"loadgen lab run {name}: starting the lab "
            f"({', '.join(os.path.basename(f) for f in files['up'])})\n"
        )
        lab = Lab(files["up"], None, keep)
        try:
            err.write(
                f"  Envoy admin {lab.state.admin_url}; services "
                + ", ".join(f"{h.split('.')[0]}={u}" for h, u in lab.state.services.items())
                + "\n"
            )
            scn.run(Ctx(lab=lab, engine=engine, err=err, out=outcome, verbose=verbose, files=files))
        finally:
            lab.close()
    outcome.seconds = time.monotonic() - t0
    return outcome


def run_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="loadgen lab run", add_help=True)
    p.add_argument("scenario", help=f"one of: {', '.join(SCENARIOS)}, all")
    p.add_argument(
        "-f",
        "--f",
        dest="files",
        action="append",
        default=[],
        help="use this Istio YAML instead of the scenario's own (repeatable)",
    )
    p.add_argument("-engine", "--engine", default="", help="load engine: c (default) or py")
    p.add_argument(
        "-json", "--json", default="", help="write the verdicts (and runs) as JSON here ('-': stdout)"
    )
    p.add_argument("-keep", "--keep", action="store_true", help="leave the lab running afterwards")
    p.add_argument("-v", "--v", dest="verbose", action="store_true", help="print every load's report")
    try:
        ns = p.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0) if exc.code in (0, None) else 2
    names = list(SCENARIOS) if ns.scenario == "all" else [ns.scenario]
    if any(n not in PLAN for n in names):
        owner = next(
            (scn for scn in PLAN.values() for files in scn.files.values() if f"{ns.scenario}.yaml" in files),
            None,
        )
        if owner is not None:  # a step's YAML (lab show lists those): name its scenario
            raise UsageError(
                f"{ns.scenario!r} is one step of scenario {owner.name!r}: run 'loadgen lab run {owner.name}' "
                f"(or 'loadgen lab run {owner.name} -f' with that file from 'loadgen lab show {ns.scenario}')"
            )
        raise UsageError(f"unknown scenario {ns.scenario!r}: choose one of {', '.join(SCENARIOS)}, all")
    for f in ns.files:
        if not os.path.isfile(f):
            raise UsageError(f"-f {f}: no such file")
    outcomes = []
    for n in names:
        try:
            o = run_scenario(
                n, engine=ns.engine, user_files=ns.files or None, keep=ns.keep, verbose=ns.verbose
            )
        except LoadgenError:
            raise
        render_table(o, sys.stderr)
        outcomes.append(o)
    if len(outcomes) > 1:
        render_summary(outcomes, sys.stderr)
    if ns.json:
        from loadgen.results import write_json_atomic

        write_json_atomic(ns.json, {"Scenarios": [o.to_json() for o in outcomes]}, stdout=sys.stdout)
    return 1 if any(o.failed for o in outcomes) else 0


def main() -> int:  # pragma: no cover - python -m entry
    return run_main(sys.argv[1:])


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())


__all__ = ["SCENARIOS", "Outcome", "proportion_check", "run_main", "run_scenario", "wilson"]
