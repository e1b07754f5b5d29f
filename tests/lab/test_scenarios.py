"""`loadgen lab run SCENARIO` end to end: a real Envoy, real upstreams, real loads, verdicts."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from istio_yaml import destination_rule

from loadgen.lab.scenarios_run import SCENARIOS, run_scenario
from loadgen.lab.verdicts import proportion_check, wilson

pytestmark = pytest.mark.slow


def _engines() -> list[object]:
    try:
        import loadgen._core  # noqa: F401

        return ["c", "py"]
    except ImportError:
        return ["py"]


def _failed(o: object) -> str:
    checks = getattr(o, "checks", [])
    return "; ".join(f"{c.name}: declared {c.declared}, observed {c.observed}" for c in checks if c.failed)


@pytest.mark.parametrize("engine", _engines())
def test_circuit_breaker_reconciles_exactly(engine: str) -> None:
    err = io.StringIO()
    o = run_scenario("circuit-breaker", engine=engine, err=err)
    text = err.getvalue()
    assert not o.failed, _failed(o) + "\n" + text
    # every check passes, except that a few overflows at -c 2 (connection churn) are only a WARN
    assert all(c.verdict == "PASS" for c in o.checks if not c.name.endswith("trips"))
    assert all(c.verdict in ("PASS", "WARN") for c in o.checks)
    # the lab's two loads, each reconciled: the text carries fortio's report and the verdict line
    assert "Code 200 :" in text and "Circuit breaker (Envoy admin" in text
    assert "503s are circuit-breaker rejections" in text
    runs = [r for r in o.runs if r["Envoy"]]
    assert len(runs) == 2
    for r in runs:
        v = r["Envoy"]["Verdict"]
        assert v["Status"] == "exact"
        assert v["Client503"] == v["PendingOverflow"] + v["ActiveOverflow"]


@pytest.mark.parametrize("name", [s for s in SCENARIOS if s != "circuit-breaker"])
def test_scenario_consistent(name: str) -> None:
    err = io.StringIO()
    o = run_scenario(name, err=err)
    if o.failed and all("95% CI" in c.observed for c in o.checks if c.failed):
        # only statistical checks failed: each is outside its 99.9 % interval by chance one run in
        # a thousand, so one independent rerun separates chance (1e-6 twice) from a real fault
        err = io.StringIO()
        o = run_scenario(name, err=err)
    assert not o.failed, _failed(o) + "\n" + err.getvalue()
    assert len(o.checks) >= 3


def test_user_yaml_with_generous_limits_is_checked_against_its_own_declaration(tmp_path: Path) -> None:
    # a user's DestinationRule with generous limits: the checks derive from *this* YAML, so
    # "3 concurrent <= 200 admitted: no overflow" is what is declared, and that holds
    dr = tmp_path / "dr.yaml"
    dr.write_text(
        """apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: httpbin}
spec:
  host: httpbin
  trafficPolicy:
    connectionPool:
      tcp: {maxConnections: 100}
      http: {http1MaxPendingRequests: 100}
"""
    )
    out = tmp_path / "v.json"
    proc = subprocess.run(
        [sys.executable, "-m", "loadgen", "lab", "run", "circuit-breaker", "-f", str(dr), "-json", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "CONSISTENT" in proc.stderr
    doc = json.loads(out.read_text())
    checks = doc["Scenarios"][0]["Checks"]
    trips = [c for c in checks if c["name"].endswith("trips")]
    assert len(trips) == 2
    assert all(
        "200 (connections + pending)" in c["declared"] and c["observed"] == "0 overflow 503s" for c in trips
    )
    assert all(c["verdict"] == "PASS" for c in checks)


def test_a_wrong_declaration_is_reported_as_contradiction(monkeypatch: pytest.MonkeyPatch) -> None:
    # the checking pipeline must be able to fail: claim that everything goes to v3
    from loadgen.lab import scenarios_run

    def wrong(lab: object, short: str, path: str, headers: dict[str, str]) -> dict[str, float]:
        return {"outbound|9080|v3|reviews.default.svc.cluster.local": 1.0}

    monkeypatch.setattr(scenarios_run, "expected_split", wrong)
    o = run_scenario("routing", err=io.StringIO())
    assert o.failed
    assert any(c.verdict == "FAIL" and "v3 100 %" in c.declared for c in o.checks)


def test_user_yaml_stricter_policy_passes(tmp_path: Path) -> None:
    dr = tmp_path / "strict.yaml"
    dr.write_text("""apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata: {name: httpbin}
spec:
  host: httpbin
  trafficPolicy:
    connectionPool:
      tcp: {maxConnections: 1}
      http: {http1MaxPendingRequests: 1, maxRequestsPerConnection: 1}
""")
    err = io.StringIO()
    o = run_scenario("circuit-breaker", user_files=[str(dr)], err=err)
    assert not o.failed, err.getvalue()


def test_unknown_scenario_and_missing_file_exit_2() -> None:
    for args in (["nope"], ["circuit-breaker", "-f", "/nonexistent.yaml"]):
        proc = subprocess.run(
            [sys.executable, "-m", "loadgen", "lab", "run", *args], capture_output=True, text=True, timeout=60
        )
        assert proc.returncode == 2, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1
        assert "Traceback" not in proc.stderr


def test_wilson_and_proportion_verdicts() -> None:
    lo, hi = wilson(800, 1000, 1.959964)
    assert lo < 0.8 < hi and hi - lo < 0.06
    assert proportion_check(800, 1000, 0.8)[1] == "PASS"
    assert proportion_check(760, 1000, 0.8)[1] == "WARN"  # outside 95 %, inside 99.9999 %
    # 756 of 1000 for a correct 80 % (a 3.5-sigma draw, seen once in CI) is not a contradiction
    assert proportion_check(756, 1000, 0.8)[1] == "WARN"
    # a weight 7 points off, either way, over the routing scenario's 1000 requests still fails
    assert proportion_check(730, 1000, 0.8)[1] == "FAIL"
    assert proportion_check(870, 1000, 0.8)[1] == "FAIL"
    assert proportion_check(700, 1000, 0.8)[1] == "FAIL"
    assert proportion_check(200, 200, 1.0)[1] == "PASS"


def test_routing_with_the_users_own_virtual_service(tmp_path: Path) -> None:
    # the user's YAML (50/50 between v1 and v3 for everyone, v2 for a header) replaces every
    # step; the checks derive from it: the header probe goes to v2, the rest splits 50/50
    y = subprocess.run(
        [sys.executable, "-m", "loadgen", "lab", "show", "routing-v1"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    drs = "\n---\n".join(d for d in y.split("\n---\n") if "kind: DestinationRule" in d)
    vs = """apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - match:
    - headers:
        x-canary: {exact: "yes"}
    route:
    - destination: {host: reviews, subset: v2}
  - route:
    - destination: {host: reviews, subset: v1}
      weight: 50
    - destination: {host: reviews, subset: v3}
      weight: 50
"""
    (tmp_path / "mine.yaml").write_text(drs + "\n---\n" + vs)
    err = io.StringIO()
    o = run_scenario("routing", user_files=[str(tmp_path / "mine.yaml")], err=err)
    assert not o.failed, err.getvalue()
    names = [c.name for c in o.checks]
    assert "initial: x-canary: yes" in names
    assert any(n.endswith("-> v1") for n in names) and any(n.endswith("-> v3") for n in names)
    assert not any(n.startswith(("jason", "80-20")) for n in names)  # the packaged steps are not applied


def test_user_routing_yaml_with_a_redirect_and_a_direct_response(tmp_path: Path) -> None:
    # routes answered by Envoy itself are declared as such: the client gets the code, and no
    # upstream cluster sees the request
    f = tmp_path / "vs.yaml"
    f.write_text(
        destination_rule("reviews", "v1", "v2")
        + """---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - match: [{headers: {end-user: {exact: jason}}}]
    redirect: {uri: /login, redirectCode: 302}
  - match: [{headers: {end-user: {exact: kim}}}]
    directResponse: {status: 503, body: {string: maintenance}}
  - route: [{destination: {host: reviews, subset: v1}}]
"""
    )
    err = io.StringIO()
    o = run_scenario("routing", user_files=[str(f)], err=err)
    assert not o.failed, _failed(o) + "\n" + err.getvalue()
    declared = {c.declared: c for c in o.checks}
    redirect = declared["redirect 302 by Envoy, no upstream request"]
    direct = declared["direct response 503 by Envoy, no upstream request"]
    assert redirect.verdict == direct.verdict == "PASS"
    assert redirect.observed.startswith("302: 100") and direct.observed.startswith("503: 100")
    assert any(c.declared == "v1 100 %" and c.verdict == "PASS" for c in o.checks)
