"""Regenerate the small run JSON fixtures of the report tests from real runs (all on 127.0.0.1).

Run from the repository root:  ``/work/venv/bin/python tests/report/data/make_fixtures.py``

What it produces (in this directory; each file is a real ``loadgen load -json`` result):

* ``echo-c2-q100.json`` — ``loadgen serve`` target, 503s for 10 % and 1 ms delays for 20 %,
  labels ``variant=echo,c=2,qps=100``. No Envoy.
* ``cb-strict-c{1,2,4}.json`` / ``cb-loose-c{1,2,4}.json`` — a real Envoy circuit breaker in front of
  httpbin (``tests/envoy/data/cb.yaml.tmpl``: max_connections 1, max_pending_requests 1 for
  *strict*; 100/100 for *loose*), ``-n 30 -qps 0``, ``-envoy-admin``: they carry ``Loadgen.Envoy``.
  Labels ``variant=<v>,c=<n>``.
* ``cb-strict-timeline.json`` — the strict breaker at ``-c 4 -qps 40 -t 3s`` to httpbin's
  ``/delay/0.05`` with 200 ms stats scrapes: a per-second timeline and an Envoy series.
* ``unexplained.json`` — a ``loadgen serve`` target answering 503 *with* ``x-envoy-overloaded`` while
  the Envoy observer watches an Envoy that is not on the path: the verdict is ``unexplained``.

The only edit made after the run: ``Loadgen.Extra.Policy`` (the YAML of the circuit breaker under
test, the convention documented in :mod:`loadgen.report.frames`) is added to the Envoy runs, the
way ``loadgen sweep`` will write it. ``fortio-sample.json`` is NOT generated here: it is written by
hand from fortio's documented JSON format (facts/fortio.md §3.4).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(HERE)))
sys.path.insert(0, os.path.join(ROOT, "tests"))
sys.path.insert(0, ROOT)

from envoy_fixtures import EnvoyProcess, Httpbin, render  # noqa: E402

PY = sys.executable
TEMPLATE = os.path.join(ROOT, "tests", "envoy", "data", "cb.yaml.tmpl")

POLICIES = {
    "cb-strict": (1, 1),
    "cb-loose": (100, 100),
}


def policy_yaml(max_connections: int, max_pending: int) -> str:
    return (
        "apiVersion: networking.istio.io/v1\n"
        "kind: DestinationRule\n"
        "metadata:\n  name: httpbin\n"
        "spec:\n  host: httpbin\n  trafficPolicy:\n    connectionPool:\n"
        f"      tcp:\n        maxConnections: {max_connections}\n"
        f"      http:\n        http1MaxPendingRequests: {max_pending}\n"
        "        maxRequestsPerConnection: 1\n"
    )


def load(args: list[str], out: str, policy: str | None = None) -> None:
    cmd = [PY, "-m", "loadgen", "load", "-allow-initial-errors", *args, "-json", "-"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=ROOT)
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{p.stderr}")
    data = json.loads(p.stdout)
    if policy is not None:
        data["Loadgen"].setdefault("Extra", {})["Policy"] = policy
    with open(os.path.join(HERE, out), "w") as fh:
        json.dump(data, fh, separators=(",", ":"))
        fh.write("\n")
    print(f"{out}: {os.path.getsize(os.path.join(HERE, out))} bytes, codes {data['RetCodes']}")


def start_serve() -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [PY, "-m", "loadgen", "serve", "-port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=ROOT,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    url = line.strip().rsplit(" ", 1)[-1]
    if not url.startswith("http://127.0.0.1:"):
        proc.terminate()
        raise SystemExit(f"unexpected serve output {line!r}")
    return proc, url


def main() -> None:
    serve, url = start_serve()
    hb = Httpbin().start()
    envoys: list[EnvoyProcess] = []
    try:
        load(
            [
                "-c",
                "2",
                "-qps",
                "100",
                "-t",
                "2s",
                "-labels",
                "variant=echo,c=2,qps=100",
                f"{url}/?status=503:10&delay=1ms:20",
            ],
            "echo-c2-q100.json",
        )
        with open(TEMPLATE) as fh:
            tmpl = render(fh.read(), UPSTREAM_PORT=hb.port)
        for variant, (mc, mp) in POLICIES.items():
            cfg = tmpl.replace("max_connections: 1", f"max_connections: {mc}").replace(
                "max_pending_requests: 1", f"max_pending_requests: {mp}"
            )
            env = EnvoyProcess(cfg, name=variant).start()
            envoys.append(env)
            ingress = f"http://127.0.0.1:{env.port('ingress')}"
            pol = policy_yaml(mc, mp)
            for c in (1, 2, 4):
                load(
                    [
                        "-c",
                        str(c),
                        "-qps",
                        "0",
                        "-n",
                        "30",
                        "-envoy-admin",
                        env.admin_url,
                        "-envoy-cluster",
                        "^httpbin$",
                        "-stats-interval",
                        "100ms",
                        "-labels",
                        f"variant={variant},c={c}",
                        f"{ingress}/get",
                    ],
                    f"{variant}-c{c}.json",
                    pol,
                )
            if variant == "cb-strict":
                load(
                    [
                        "-c",
                        "4",
                        "-qps",
                        "40",
                        "-t",
                        "3s",
                        "-envoy-admin",
                        env.admin_url,
                        "-envoy-cluster",
                        "^httpbin$",
                        "-stats-interval",
                        "200ms",
                        "-labels",
                        "variant=cb-strict,c=4,qps=40",
                        f"{ingress}/delay/0.05",
                    ],
                    "cb-strict-timeline.json",
                    pol,
                )
                time.sleep(0.5)
                load(
                    [
                        "-c",
                        "2",
                        "-qps",
                        "0",
                        "-n",
                        "20",
                        "-envoy-admin",
                        env.admin_url,
                        "-envoy-cluster",
                        "^httpbin$",
                        "-labels",
                        "variant=not-on-path,c=2",
                        f"{url}/?status=503:50&header=x-envoy-overloaded:true",
                    ],
                    "unexplained.json",
                    pol,
                )
    finally:
        for e in envoys:
            e.stop()
        hb.stop()
        serve.terminate()
        serve.wait(10)


if __name__ == "__main__":
    main()
