"""Measure ``loadgen report`` at scale: N synthetic-but-valid run files (default 200, 60 s timelines,
an Envoy series scraped every second), then the report (HTML + Markdown) in a fresh process; prints
wall time and peak RSS. Usage: ``python benchmarks/report_scale.py [-n 200] [-seconds 60] [-dir DIR]``.

Runs are built through real Recorders/Seconds (tests/report/synth.py) and written with
``RunResult.to_json`` — the same JSON ``loadgen load -json`` writes."""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, "tests", "report")]


def make(n: int, seconds: int, d: str) -> None:
    from synth import T0, make_run

    from loadgen.results import write_json_atomic

    for i in range(n):
        variant, c = f"v{i % 4}", 1 + (i // 4) % 10
        r = make_run(
            labels=f"variant={variant},c={c}",
            seconds=seconds,
            rps=20,
            p503=min(0.5, 0.02 * c),
            shed_from=5,
            envoy_lag_s=0.5,
            start=T0 + i * 100,
            seed=i,
            policy=f"maxConnections: {i % 4}\n",
        )
        write_json_atomic(os.path.join(d, f"run{i:04d}.json"), r.to_json())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=200)
    ap.add_argument("-seconds", type=int, default=60)
    ap.add_argument("-dir", default="")
    ns = ap.parse_args()
    d = ns.dir or tempfile.mkdtemp(prefix="report-scale-")
    if not any(f.endswith(".json") for f in os.listdir(d)):
        t = time.monotonic()
        make(ns.n, ns.seconds, d)
        print(f"generated {ns.n} runs x {ns.seconds} s in {time.monotonic() - t:.1f} s in {d}")
    size = sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d)) / 1e6
    code = (
        "import sys; from loadgen.report.cli import report_main; "
        f"sys.exit(report_main([{d!r}, '-o', {d + '/report.html'!r}, '-md', {d + '/report.md'!r}]))"
    )
    t = time.monotonic()
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
    wall = time.monotonic() - t
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(
        f"report over {ns.n} runs ({size:.1f} MB of JSON): {wall:.2f} s wall (process start and imports "
        f"included), peak RSS {peak_mb:.0f} MB; HTML {os.path.getsize(d + '/report.html') / 1e3:.0f} KB, "
        f"Markdown {os.path.getsize(d + '/report.md') / 1e3:.0f} KB"
    )


if __name__ == "__main__":
    main()
