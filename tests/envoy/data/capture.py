"""Regenerate the captured real Envoy admin outputs in this folder (run: python tests/envoy/data/capture.py).

For each bootstrap template (cb, istio, dotted) it starts httpbin under gunicorn and a real Envoy on
127.0.0.1, drives a small bounded load (overflows, fault aborts, upstream 503s), waits for it to drain,
and writes ``<name>.stats.txt`` (/stats), ``<name>.stats.json`` (/stats?format=json) and
``<name>.prometheus.txt`` (/stats/prometheus), plus ``<name>.client.json`` (what the client saw).
The three captures of one Envoy are taken back to back after the load, so their catalogue stats agree.
"""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))  # tests/ for envoy_fixtures

from envoy_fixtures import EnvoyProcess, Httpbin, drive, render  # noqa: E402

LOADS: dict[str, list[tuple[str, int, int]]] = {  # (path, n, c)
    "cb": [("/get", 30, 3), ("/abort/get", 4, 1), ("/status/503", 2, 1)],
    "istio": [("/get", 30, 3), ("/v1/get", 30, 3), ("/v2/get", 6, 1), ("/v1/status/503", 2, 1)],
    "dotted": [("/v1/get", 30, 3), ("/v2/get", 6, 1)],
}


def fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as r:
        return str(r.read().decode())


def main() -> int:
    h = Httpbin().start()
    try:
        for name, loads in LOADS.items():
            with open(os.path.join(HERE, f"{name}.yaml.tmpl")) as fh:
                cfg = render(fh.read(), UPSTREAM_PORT=h.port)
            e = EnvoyProcess(cfg, name=name).start()
            try:
                port = next(iter(e.listeners.values()))
                client = {}
                for path, n, c in loads:
                    d = drive(f"http://127.0.0.1:{port}{path}", n, c)
                    client[path] = {"n": n, "c": c, "codes": d.codes, "overloaded": d.overloaded}
                time.sleep(0.3)
                outs = {
                    "stats.txt": fetch(e.admin_url + "/stats"),
                    "stats.json": fetch(e.admin_url + "/stats?format=json"),
                    "prometheus.txt": fetch(e.admin_url + "/stats/prometheus"),
                    "client.json": json.dumps(client, indent=1, sort_keys=True) + "\n",
                }
                for suffix, text in outs.items():
                    with open(os.path.join(HERE, f"{name}.{suffix}"), "w") as fh:
                        fh.write(text)
                print(name, {p: v["codes"] for p, v in client.items()})
            finally:
                e.stop()
    finally:
        h.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
