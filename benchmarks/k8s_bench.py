"""Measure: port-forward throughput through the test stand-in (-c 8) and merging 100 pod results.

Run: /work/venv/bin/python benchmarks/k8s_bench.py   (everything on 127.0.0.1, bounded)
The stand-in runs in its own process, as an API server would.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "k8s"))

STANDIN = r"""
import sys, time, json
sys.path.insert(0, %(tests)r)
from fakekube import FakeKube
fk = FakeKube().start()
fk.add_pod("default", "httpbin-0", {"app": "httpbin"}, ports={8000: %(port)d})
fk.kubeconfig(%(kc)r)
print("READY", flush=True)
sys.stdin.read()
fk.stop()
"""


def main() -> None:
    serve = subprocess.Popen(
        [sys.executable, "-m", "loadgen", "serve", "-port", "0", "-quiet"],
        stdout=subprocess.PIPE,
        text=True,
        cwd=str(ROOT),
    )
    port = int(re.search(r":(\d+)\s*$", serve.stdout.readline()).group(1))  # type: ignore[union-attr]
    tmp = tempfile.mkdtemp()
    kc = os.path.join(tmp, "kc")
    code = STANDIN % {"tests": str(ROOT / "tests" / "k8s"), "port": port, "kc": kc}
    api = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert api.stdout is not None and api.stdout.readline().startswith("READY")
    try:
        out = os.path.join(tmp, "r.json")
        for _ in range(2):
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "loadgen",
                    "load",
                    "-kubeconfig",
                    kc,
                    "-c",
                    "8",
                    "-qps",
                    "0",
                    "-t",
                    "5s",
                    "-json",
                    out,
                    "-quiet",
                    "k8s://default/pod/httpbin-0:8000/echo",
                ],
                cwd=str(ROOT),
                check=True,
                capture_output=True,
                timeout=60,
            )
            with open(out) as fh:
                d = json.load(fh)
            print(f"port-forward -c 8 for 5s: {d['ActualQPS']:.0f} req/s, codes {d['RetCodes']}")
        from loadgen.k8s.job import merge_pods
        from loadgen.options import LoadOptions
        from loadgen.results import RunResult

        with open(out) as fh:
            doc = json.load(fh)
        pods = [RunResult.from_json(doc) for _ in range(100)]
        t = time.perf_counter()
        texts = [json.dumps(doc)] * 100
        pods = [RunResult.from_json(json.loads(x)) for x in texts]
        merged = merge_pods(pods, LoadOptions(url="http://x/"), {})
        dt_ = time.perf_counter() - t
        print(f"parse + merge 100 pod results ({merged.count} calls): {dt_:.2f}s")
    finally:
        api.stdin.close()  # type: ignore[union-attr]
        api.wait(10)
        serve.terminate()
        serve.wait(10)


if __name__ == "__main__":
    main()
