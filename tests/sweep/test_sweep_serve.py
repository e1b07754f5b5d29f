"""``loadgen sweep`` against ``loadgen serve`` (no Envoy): the SLO bisection and bad input.

The server answers after a fixed ``delay=20ms``; with ``-c 2`` the closed-loop capacity is about
2 / 20 ms = 100 qps. Above it, latency measured from the intended send grows through the run, so
``p99<100ms`` must hold a little under/around 100 qps and fail clearly above. The server is a
subprocess on 127.0.0.1 stopped by its PID.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from loadgen.results import RunResult

ROOT = Path(__file__).resolve().parents[2]


def loadgen(*args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "loadgen", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="module")
def echo() -> Iterator[str]:
    p = subprocess.Popen(
        [sys.executable, "-m", "loadgen", "serve", "-port", "0"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert p.stdout is not None
        line = p.stdout.readline()
        assert "listening on http://127.0.0.1:" in line, line
        yield line.strip().rsplit(" ", 1)[1]
    finally:
        p.terminate()
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        if p.stdout is not None:
            p.stdout.close()


def p99_ms(doc: dict[str, object]) -> float:
    res = RunResult.from_json(doc)
    return res.engine_result.latency.percentile(99) / 1e6


def test_slo_bisection_finds_the_closed_loop_capacity(echo: str, tmp_path: Path) -> None:
    out = tmp_path / "out"
    r = loadgen(
        "sweep", "-c", "2", "-qps", "50,160", "-t", "1s", "-slo", "p99<100ms", "-slo-steps", "6",
        "-o", str(out), "-md", str(tmp_path / "s.md"), echo + "/?delay=20ms",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    line = next(ln for ln in r.stdout.splitlines() if "the SLO holds up to" in ln)
    best = float(line.split("holds up to ")[1].split(" qps")[0])
    hi = float(line.split("fails at ")[1].split(" qps")[0])
    assert 60 <= best <= 135, line  # capacity ~100 qps; a 1 s run absorbs a little backlog
    assert best < hi <= 160
    docs = {}
    for p in sorted(out.glob("*.json")):
        doc = json.loads(p.read_text())
        docs[doc["Labels"]] = doc
    assert "variant=current,c=2,qps=50" in docs and "variant=current,c=2,qps=160" in docs
    probes = [k for k in docs if k.endswith(",phase=slo")]
    assert 1 <= len(probes) <= 6
    # the claims, re-measured from the saved files: best meets p99<100ms, hi misses it
    by_qps = {float(k.split("qps=")[1].split(",")[0]): d for k, d in docs.items()}
    assert len(by_qps) == len(docs)
    assert p99_ms(by_qps[best]) < 100
    assert p99_ms(by_qps[hi]) >= 100
    assert p99_ms(by_qps[50.0]) < 40
    # every run meeting the SLO has a lower qps than every run missing it (monotone enough here)
    met = [q for q, d in by_qps.items() if p99_ms(d) < 100]
    missed = [q for q, d in by_qps.items() if p99_ms(d) >= 100]
    assert max(met) == best and min(missed) == hi
    assert "SLO p99<100ms" in r.stdout and (tmp_path / "s.md").exists()


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["-nope", "1"], "unknown flag -nope (see 'loadgen sweep -h')"),
        (["-c", ""], "invalid -c ''"),
        (["-c", "1,,2"], "invalid -c '1,,2'"),
        (["-qps", "10,x"], "invalid -qps '10,x'"),
        (["-c", "1,2", "-slo", "p99>5ms"], "ceiling"),
        (["-c", "1,2", "-slo", "latency<5ms"], "unknown metric"),
        (["-c", "1,2", "-variant", "/nonexistent/v.yaml"], "-variant /nonexistent/v.yaml: no such file"),
        (["-c", "1,2", "-trip-rate", "2"], "invalid -trip-rate"),
        (["-c", "1,2", "-json", "x.json"], "-json is per run"),
        (["-c", "1,2", "-report", "/nonexistent/r.html"], "directory '/nonexistent' does not exist"),
    ],
)
def test_bad_input_exits_2_with_one_line(echo: str, tmp_path: Path, args: list[str], needle: str) -> None:
    r = loadgen("sweep", *args, "-o", str(tmp_path / "o"), echo + "/")
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("loadgen: ") and needle in lines[0], r.stderr
    assert not (tmp_path / "o").exists()


def test_lab_inputs_without_a_lab(tmp_path: Path) -> None:
    empty = tmp_path / "no-lab"
    r = loadgen("sweep", "-lab", "-state-dir", str(empty), "-c", "1,2", "lab://httpbin/get")
    assert r.returncode == 2
    assert r.stderr.strip().startswith("loadgen: no lab is running (no state in")
    r = loadgen("sweep", "-c", "1,2", "lab://httpbin/get")
    assert r.returncode == 2
    assert r.stderr.strip() == "loadgen: sweep: lab://httpbin/get: lab:// URLs need -lab"
    r = loadgen("sweep", "-c", "1", "-variant", str(Path(__file__)), "http://127.0.0.1:9/")
    assert r.returncode == 2 and "-variant needs a place to apply it: -lab" in r.stderr


def test_help_mentions_implied_allow_initial_errors() -> None:
    r = loadgen("sweep", "-h")
    assert r.returncode == 0
    assert "-allow-initial-errors is implied" in r.stdout and "-variant" in r.stdout
    assert "restored" in r.stdout
