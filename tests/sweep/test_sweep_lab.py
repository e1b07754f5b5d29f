"""``loadgen sweep -lab`` end to end on a real lab (Envoy + httpbin under gunicorn).

One lab per module, started with ``loadgen lab up -state-dir TMP`` and always stopped with
``loadgen lab down -state-dir TMP`` (by the PIDs recorded there). The lab's own policy is a strict
circuit breaker (maxConnections 1, http1MaxPendingRequests 1, maxRequestsPerConnection 1), so
"the original policy is back" is visible both in the rendered config and in traffic (overflow
503s at -c 4 again after a sweep that ran a loose variant last).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from loadgen.results import RunResult

ROOT = Path(__file__).resolve().parents[2]

ORIGINAL = """\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: httpbin
spec:
  host: httpbin
  trafficPolicy:
    connectionPool:
      tcp: {maxConnections: 1}
      http: {http1MaxPendingRequests: 1, maxRequestsPerConnection: 1}
"""
# a different name for the same host: the variant must still replace the lab's rule for httpbin
STRICT = """\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: httpbin-strict
spec:
  host: httpbin
  trafficPolicy:
    connectionPool:
      tcp: {maxConnections: 1}
      http: {http1MaxPendingRequests: 1}
"""
LOOSE = """\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: httpbin
spec:
  host: httpbin
  trafficPolicy:
    connectionPool:
      tcp: {maxConnections: 100}
      http: {http1MaxPendingRequests: 100}
"""
BAD = """\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: httpbin
spec:
  host: httpbin
  trafficPolicy:
    connectionPool:
      tcp: {maxConections: 1}
"""


def loadgen(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "loadgen", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


class Lab:
    def __init__(self, d: Path) -> None:
        self.dir = d
        self.state = d / "state"
        self.files = {}
        for name, text in (("original", ORIGINAL), ("strict", STRICT), ("loose", LOOSE), ("bad", BAD)):
            p = d / f"{name}.yaml"
            p.write_text(text)
            self.files[name] = str(p)

    def sources(self) -> list[dict[str, str]]:
        return list(json.loads((self.state / "lab.json").read_text())["sources"])

    def config(self) -> str:
        r = loadgen("lab", "config", "-state-dir", str(self.state))
        assert r.returncode == 0, r.stderr
        return r.stdout

    def url(self) -> str:
        return str(
            json.loads((self.state / "lab.json").read_text())["services"]["httpbin.default.svc.cluster.local"]
        )

    def overflow_at_c4(self) -> int:
        """Overflow 503s of a -c 4 -n 40 load through the lab (0 under the loose policy)."""
        out = self.dir / f"probe-{time.monotonic_ns()}.json"
        r = loadgen("load", "-c", "4", "-qps", "0", "-n", "40", "-json", str(out), self.url() + "/get")
        assert r.returncode == 0, r.stderr
        res = RunResult.from_json(json.loads(out.read_text()))
        return int(res.engine_result.overloaded.get(503, 0))

    def assert_original_back(self) -> None:
        src = self.sources()
        assert [s["text"] for s in src] == [ORIGINAL]
        assert src[0]["path"] == self.files["original"]
        cfg = self.config()
        assert "max_requests_per_connection: 1" in cfg  # only the original has it
        assert "max_connections: 100" not in cfg
        assert self.overflow_at_c4() > 0


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    lb = Lab(tmp_path_factory.mktemp("sweep-lab"))
    r = loadgen("lab", "up", "-f", lb.files["original"], "-state-dir", str(lb.state), "-json", "-")
    try:
        assert r.returncode == 0, r.stderr
        yield lb
    finally:
        down = loadgen("lab", "down", "-state-dir", str(lb.state))
        assert down.returncode == 0, down.stderr


def runs_in(d: Path) -> list[tuple[Path, dict[str, object]]]:
    return [(p, json.loads(p.read_text())) for p in sorted(d.glob("*.json"))]


def test_sweep_two_variants_trip_points_labels_restore_report(lab: Lab, tmp_path: Path) -> None:
    out = tmp_path / "out"
    html, md = tmp_path / "sweep.html", tmp_path / "sweep.md"
    r = loadgen(
        "sweep", "-lab", "-state-dir", str(lab.state),
        "-variant", lab.files["strict"], "-variant", lab.files["loose"],
        "-c", "1,2,4", "-n", "40", "-o", str(out), "-report", str(html), "-md", str(md),
        "lab://httpbin/get",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    runs = runs_in(out)
    assert len(runs) == 6
    seen = []
    for path, doc in runs:
        labels = str(doc["Labels"])
        extra = doc["Loadgen"]["Extra"]  # type: ignore[index]
        variant = extra["Variant"]
        assert labels.startswith(f"variant={variant},c=")
        assert extra["Policy"] == (STRICT if variant == "strict" else LOOSE)
        c = int(labels.split("c=")[1].split(",")[0])
        assert labels == f"variant={variant},c={c},qps=max"
        assert doc["Loadgen"]["Envoy"]  # type: ignore[index]  # the lab's admin was observed
        res = RunResult.from_json(doc)
        seen.append((variant, c, res.engine_result.overloaded.get(503, 0), res.engine_result.codes))
        assert path.name.endswith(f"-{variant}-c{c}-qpsmax.json")
    assert sorted((v, c) for v, c, _, _ in seen) == sorted(
        (v, c) for v in ("strict", "loose") for c in (1, 2, 4)
    )
    strict_ov = {c: ov for v, c, ov, _ in seen if v == "strict"}
    loose = [(c, ov, codes) for v, c, ov, codes in seen if v == "loose"]
    assert strict_ov[4] > 0  # 4 concurrent > 1 connection + 1 pending
    assert strict_ov[1] == 0
    assert all(ov == 0 and set(codes) == {200} for _, ov, codes in loose)
    # the sentences: strict trips at some c <= 4, loose never
    assert "loose: no overflow 503s at any tested load (c=1,2,4)" in r.stdout
    strict_line = next(
        ln for ln in r.stdout.splitlines() if ln.strip().startswith("strict: overflow 503s first at c=")
    )
    first = int(strict_line.split("first at c=")[1].split(" ")[0])
    assert first <= 4 and strict_ov[first] > 0
    assert "restored the original policy" in r.stdout
    assert "overhead per step" in r.stdout
    lab.assert_original_back()
    # reports: written by the sweep, and rebuilt from the directory by `loadgen report`
    text = html.read_text()
    assert "<svg" in text and "strict" in text and "loose" in text
    assert "strict" in md.read_text()
    again = tmp_path / "again.html"
    rep = loadgen("report", str(out), "-o", str(again))
    assert rep.returncode == 0, rep.stderr
    assert "6 runs" in rep.stdout and "maxConnections: 100" in again.read_text()


def test_sigint_stops_restores_and_keeps_valid_json(lab: Lab, tmp_path: Path) -> None:
    out = tmp_path / "out"
    p = subprocess.Popen(
        [sys.executable, "-m", "loadgen", "sweep", "-lab", "-state-dir", str(lab.state),
         "-variant", lab.files["loose"], "-c", "1,2,4", "-t", "3s", "-qps", "50", "-o", str(out),
         "lab://httpbin/get"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while not list(out.glob("*.json")):
            assert p.poll() is None, p.communicate()
            assert time.monotonic() < deadline, "the first step never completed"
            time.sleep(0.05)
        time.sleep(0.5)  # inside the second step's load
        p.send_signal(signal.SIGINT)
        stdout, stderr = p.communicate(timeout=40)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 130, stderr
    assert "Interrupted" in stderr and "restored the original policy" in stderr
    assert "INTERRUPTED, partial results" in stdout
    runs = runs_in(out)
    assert 1 <= len(runs) <= 2  # the first step, and the interrupted second one
    for _, doc in runs:
        res = RunResult.from_json(doc)  # valid, complete JSON
        assert res.count > 0
        assert doc["Loadgen"]["Extra"]["Variant"] == "loose"  # type: ignore[index]
    if len(runs) == 2:
        assert "interrupted after" in str(runs[1][1]["RequestedDuration"])
    assert not [f for f in os.listdir(out) if ".tmp" in f]
    lab.assert_original_back()


def test_bad_variant_yaml_is_one_line_and_changes_nothing(lab: Lab, tmp_path: Path) -> None:
    r = loadgen(
        "sweep", "-lab", "-state-dir", str(lab.state), "-variant", lab.files["loose"],
        "-variant", lab.files["bad"], "-c", "1,2", "-n", "5", "-o", str(tmp_path / "o"), "lab://httpbin/get",
    )  # fmt: skip
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("loadgen: ")
    assert "bad.yaml" in lines[0] and "maxConections" in lines[0]
    assert not (tmp_path / "o").exists()
    assert [s["text"] for s in lab.sources()] == [ORIGINAL]


def test_unknown_lab_service_is_one_line(lab: Lab) -> None:
    r = loadgen("sweep", "-lab", "-state-dir", str(lab.state), "-c", "1,2", "lab://nope/get")
    assert r.returncode == 2
    assert (
        r.stderr.strip()
        == "loadgen: sweep: lab://nope/get: the lab has no service 'nope' (services: httpbin)"
    )
