"""What a ``loadgen lab run`` scenario works with: the running :class:`Lab` (its clusters,
upstreams and listener URLs), the scenario context :class:`Ctx`, and :func:`load` — one bounded
load through the lab's Envoy with its admin stats read around it — with the stat-delta helpers."""

from __future__ import annotations

import io
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from loadgen.errors import UsageError
from loadgen.lab import state as st
from loadgen.lab import supervise as sv
from loadgen.lab.verdicts import Outcome
from loadgen.options import LoadOptions
from loadgen.results import RunResult

# ------------------------------------------------------------------------------ the lab


class Lab:
    """A lab for one scenario: a temporary state directory, started from YAML files."""

    def __init__(self, files: list[str], topology: str | None, keep: bool, timeout: float = 30.0) -> None:
        from loadgen.lab.inputs import read_inputs
        from loadgen.lab.lifecycle import start_lab

        self.dir = Path(tempfile.mkdtemp(prefix="loadgen-lab-"))
        self.keep = keep
        try:
            inp = read_inputs(files, topology, "default")
            self.spec = inp.spec
            self.state = start_lab(inp, self.dir, admin_port=0, concurrency=1, timeout=timeout)
        except BaseException:
            shutil.rmtree(self.dir, ignore_errors=True)
            raise
        st.save(self.state)
        self.extra: list[subprocess.Popen[bytes]] = []  # processes a scenario started itself

    def apply(self, files: list[str], topology: str | None = None) -> str:
        from loadgen.lab.inputs import read_inputs
        from loadgen.lab.lifecycle import apply_lab

        inp = read_inputs(files, topology, "default")
        self.spec = inp.spec
        how = apply_lab(self.state, inp, self.dir, force_restart=False, timeout=30.0)
        st.save(self.state)
        return how

    def url(self, short: str, path: str) -> str:
        svc = self.service(short)
        return self.state.services[svc.host].rstrip("/") + path

    def service(self, short: str) -> Any:
        for s in self.spec.services:
            if s.short == short or s.host == short:
                return s
        raise UsageError(f"the scenario's YAML has no service {short!r}")

    def cluster(self, short: str, subset: str = "") -> str:
        return str(self.spec.cluster_name(self.service(short).host, subset))

    def upstreams(self, short: str, subset: str | None = None) -> list[st.ProcRecord]:
        host = self.service(short).host
        return [
            p
            for p in self.state.procs
            if p.role == "upstream" and p.host == host and (subset is None or p.subset == subset)
        ]

    def close(self) -> None:
        if self.keep:
            sys.stderr.write(
                f"loadgen lab: kept the lab running (state dir {self.dir}); "
                f"stop it with: loadgen lab down -state-dir {self.dir}\n"
            )
            return
        envoys = [p for p in self.state.procs if p.role == "envoy"]
        others = [p for p in self.state.procs if p.role != "envoy"]
        sv.stop(envoys)
        sv.stop(others)
        for p in self.extra:  # stopped by PID, waited for
            p.terminate()
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
        shutil.rmtree(self.dir, ignore_errors=True)


@dataclass
class Ctx:
    lab: Lab
    engine: str
    err: TextIO
    out: Outcome
    verbose: bool
    files: dict[str, list[str]]  # step name -> YAML files (packaged or the user's)


def load(
    ctx: Ctx,
    label: str,
    url: str,
    *,
    c: int,
    n: int,
    qps: float = 0.0,
    headers: tuple[tuple[str, str], ...] = (),
    timeout_s: float = 3.0,
    cluster: str = "",
    report: bool = False,
) -> RunResult:
    """One bounded load through the lab's Envoy, with its admin stats read around it."""
    from loadgen.runner import execute

    opts = LoadOptions(
        url=url,
        connections=c,
        exactly=n,
        qps=qps,
        headers=headers,
        timeout_s=timeout_s,
        engine=ctx.engine,
        envoy_admin=ctx.lab.state.admin_url,
        envoy_cluster=f"^{re.escape(cluster)}$" if cluster else "",
        stats_interval_s=0.5,
        labels=label,
        loglevel="Warning",
        quiet=False,
    )
    sink = ctx.err if (report or ctx.verbose) else io.StringIO()
    if report or ctx.verbose:
        hdr = " ".join(f"-H '{k}: {v}'" for k, v in headers)
        ctx.err.write(
            f"\n$ loadgen load -c {c} -qps {qps:g} -n {n} {hdr + ' ' if hdr else ''}"
            f"-envoy-admin {ctx.lab.state.admin_url} {url}\n"
        )
    result, _ = execute(opts, err=sink, out=io.StringIO(), progress=False)
    er = result.engine_result
    codes = " ".join(f"{k}:{v}" for k, v in sorted(er.codes.items()))
    if not (report or ctx.verbose):
        ctx.err.write(
            f"  {label}: {er.count} calls, codes {codes}, p50 {er.service.percentile(50) / 1e6:.1f} ms, "
            f"p99 {er.service.percentile(99) / 1e6:.1f} ms\n"
        )
    ctx.out.runs.append(
        {"Label": label, "Url": url, "Codes": {str(k): v for k, v in er.codes.items()}, "Envoy": result.envoy}
    )
    return result


def deltas(result: RunResult) -> dict[str, dict[str, int]]:
    env = result.envoy or {}
    return dict(env.get("Deltas") or {})


def http_deltas(result: RunResult) -> dict[str, dict[str, int]]:
    env = result.envoy or {}
    return dict(env.get("HttpDeltas") or {})


def stat(d: dict[str, dict[str, int]], cluster: str, name: str) -> int:
    return int((d.get(cluster) or {}).get(name, 0))


def sum_http(result: RunResult, name: str) -> int:
    return sum(int(v.get(name, 0)) for v in http_deltas(result).values())
