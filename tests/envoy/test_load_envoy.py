"""`loadgen load -envoy-admin` against a real Envoy circuit breaker: the run's JSON and report
carry the deltas and a reconciliation that is exact, on both raw engines."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable

import pytest
from envoy_fixtures import EnvoyProcess, Httpbin, render

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")


def _engines() -> list[object]:
    out: list[object] = ["py"]
    try:
        import loadgen._core  # noqa: F401

        out.append("c")
    except ImportError:
        out.append(pytest.param("c", marks=pytest.mark.skip(reason="C engine not built")))
    return out


@pytest.fixture
def cb_envoy(envoy_factory: Callable[..., EnvoyProcess], httpbin: Httpbin) -> EnvoyProcess:
    with open(os.path.join(DATA, "cb.yaml.tmpl")) as fh:
        return envoy_factory(render(fh.read(), UPSTREAM_PORT=httpbin.port), name="cb-load")


def _load(
    env: EnvoyProcess, engine: str, url: str, *flags: str, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """``loadgen load -engine E -c 3 -qps 0 FLAGS -envoy-admin ... -json - URL``."""
    cmd = [sys.executable, "-m", "loadgen", "load", "-engine", engine, "-c", "3", "-qps", "0", *flags]
    cmd += ["-envoy-admin", env.admin_url, "-envoy-cluster", "^httpbin$", "-json", "-", url]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("engine", _engines())
def test_load_reconciles_overflow_503s(cb_envoy: EnvoyProcess, engine: str) -> None:
    url = f"http://127.0.0.1:{cb_envoy.port('ingress')}/get"
    for _ in range(2):
        proc = _load(cb_envoy, engine, url, "-n", "30", "-stats-interval", "100ms")
        assert proc.returncode == 0, proc.stderr
        data = json.loads(proc.stdout)
        codes = {int(k): v for k, v in data["RetCodes"].items()}
        assert sum(codes.values()) == 30 and set(codes) <= {200, 503}, codes
        env = data["Loadgen"]["Envoy"]
        deltas = env["Deltas"]["httpbin"]
        overflow = deltas.get("upstream_rq_pending_overflow", 0) + deltas.get(
            "upstream_rq_active_overflow", 0
        )
        assert codes.get(503, 0) == overflow
        assert data["Loadgen"]["Overloaded"].get("503", 0) == codes.get(503, 0)
        assert env["Verdict"]["Status"] == "exact", env["Verdict"]
        assert "Circuit breaker" in proc.stderr
        assert "Verdict (exact)" in proc.stderr
        if codes.get(503):
            assert f"{codes[503]} of {codes[503]} 503s are circuit-breaker rejections" in proc.stderr


@pytest.mark.parametrize("engine", _engines())
def test_large_uploads_keep_envoys_early_503s(cb_envoy: EnvoyProcess, engine: str) -> None:
    """16 MB POSTs: Envoy answers an overflow with 503 before taking the body, stops reading and
    resets the socket a second later. The engines read that answer while still writing, so every
    rejection is a 503 with x-envoy-overloaded (not a reset) and the reconciliation stays exact."""
    url = f"http://127.0.0.1:{cb_envoy.port('ingress')}/post"
    proc = _load(cb_envoy, engine, url, "-n", "12", "-payload-size", str(16 << 20), timeout=120)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    codes = {int(k): v for k, v in data["RetCodes"].items()}
    assert codes.get(-1, 0) == 0 and data["Loadgen"]["Errors"] == {}, (codes, data["Loadgen"]["Errors"])
    deltas = data["Loadgen"]["Envoy"]["Deltas"]["httpbin"]
    overflow = deltas.get("upstream_rq_pending_overflow", 0) + deltas.get("upstream_rq_active_overflow", 0)
    assert overflow >= 1 and codes.get(503, 0) == overflow, (codes, deltas)
    assert data["Loadgen"]["Overloaded"].get("503", 0) == overflow
    assert data["Loadgen"]["Envoy"]["Verdict"]["Status"] == "exact"
