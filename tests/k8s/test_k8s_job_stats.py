"""An Indexed Job of 4 pods merged exactly; sidecar stats by exec and port-forward; missing stats."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import run_cli

from loadgen.k8s.job import share
from loadgen.options import LoadOptions
from loadgen.recorder import Recorder

DATA = Path(__file__).resolve().parent.parent / "envoy" / "data"


def test_share_splits_with_remainders():
    o = LoadOptions(url="http://x/", connections=6, qps=100.0, exactly=10)
    parts = [share(o, 4, i) for i in range(4)]
    assert [p.exactly for p in parts] == [3, 3, 2, 2]
    assert [p.connections for p in parts] == [2, 2, 1, 1]
    assert all(p.qps == 25.0 for p in parts)


def test_job_four_pods_merged_exactly(kube, kubeconfig, tmp_path):
    out = tmp_path / "r.json"
    url = f"http://127.0.0.1:{kube.pods['default', 'httpbin-0'].ports[8000]}/echo"
    p = run_cli(
        "load",
        "-kubeconfig",
        kubeconfig,
        "-c",
        "4",
        "-qps",
        "0",
        "-n",
        "101",
        "-json",
        str(out),
        "-via",
        "job://default?replicas=4&image=loadgen:test&start=1.5",
        url,
        timeout=60,
    )
    assert p.returncode == 0, p.stderr
    d = json.loads(out.read_text())
    assert d["RetCodes"] == {"200": 101}
    lg = d["Loadgen"]
    pods = lg["Extra"]["Pods"]
    assert sorted(x["Index"] for x in pods) == [0, 1, 2, 3]
    assert sorted(x["Count"] for x in pods) == [25, 25, 25, 26]
    merged = Recorder.from_json(lg["Recorders"]["ServiceTime"])
    assert merged.count == 101 == sum(x["Count"] for x in pods)
    assert d["DurationHistogram"]["Count"] == 101
    ov = lg["Extra"]["Overlap"]
    assert ov["StartSpread"] < 1.0  # they all waited for the same start time
    assert lg["Extra"]["Job"]["Replicas"] == 4
    assert not kube.jobs  # deleted (no -keep)
    created = [r for r in kube.requests if r[0] == "POST" and r[1].endswith("/jobs")]
    assert created


@pytest.fixture
def istio_envoy(envoy_factory, serve, kube):
    from envoy_fixtures import render

    def start(with_stats: bool):
        text = render((DATA / "istio.yaml.tmpl").read_text(), UPSTREAM_PORT=serve)
        if not with_stats:  # Istio's default stats matcher: no cluster.outbound, no circuit_breakers
            text = text.replace('      - prefix: "cluster.outbound"\n', "")
            text = text.replace("      - safe_regex: { regex: '.*circuit_breakers.*' }\n", "")
        e = envoy_factory(text)
        for name in ("fortio-abc12", "client-0"):
            kube.pods["default", name].containers[1].env["ENVOY_ADMIN_PORT"] = str(e.admin_port)
        kube.pods["default", "client-0"].ports[15000] = e.admin_port
        return e

    return start


def test_stats_via_exec_reconciled(istio_envoy, kube, kubeconfig, tmp_path):
    e = istio_envoy(True)
    out = tmp_path / "r.json"
    url = f"http://127.0.0.1:{e.port('0.0.0.0_8000')}/get"
    p = run_cli(
        "load",
        "-kubeconfig",
        kubeconfig,
        "-c",
        "3",
        "-qps",
        "0",
        "-n",
        "30",
        "-json",
        str(out),
        "-via",
        "exec://default/deploy/client",
        "-envoy-admin",
        "exec://default/deploy/client?container=istio-proxy",
        url,
        timeout=60,
    )
    assert p.returncode == 0, p.stderr
    d = json.loads(out.read_text())
    env = d["Loadgen"]["Envoy"]
    deltas = env["Deltas"]["outbound|8000||httpbin.default.svc.cluster.local"]
    codes = {int(k): v for k, v in d["RetCodes"].items()}
    assert sum(codes.values()) == 30
    assert deltas["upstream_rq_total"] == codes.get(200, 0)  # the 418 aborts never reach the upstream
    assert "Circuit breaker (Envoy admin exec://default/deploy/client?container=istio-proxy" in p.stderr
    assert env["Verdict"]["Status"] == "exact", env["Verdict"]
    assert env["Verdict"]["PendingOverflow"] + env["Verdict"]["ActiveOverflow"] == codes.get(503, 0)
    assert any(
        a[:3] == ["pilot-agent", "request", "GET"] and a[3].startswith("stats?") for a in kube.exec_argv
    )


def test_done_when_with_the_fortio_pod(istio_envoy, kube, kubeconfig, tmp_path):
    # the issue's own command line: the Istio sample's fortio pod runs the load; fortio's JSON has
    # no x-envoy-overloaded counts, so the 503s are attributed to the circuit breaker by count
    e = istio_envoy(True)
    out = tmp_path / "r.json"
    url = f"http://127.0.0.1:{e.port('0.0.0.0_8000')}/get"
    p = run_cli(
        "load",
        "-kubeconfig",
        kubeconfig,
        "-c",
        "3",
        "-qps",
        "0",
        "-n",
        "30",
        "-json",
        str(out),
        "-via",
        "exec://default/deploy/fortio",
        "-envoy-admin",
        "exec://default/deploy/fortio?container=istio-proxy",
        url,
        timeout=60,
    )
    assert p.returncode == 0, p.stderr
    d = json.loads(out.read_text())
    assert d["Loadgen"]["Source"] == "fortio"
    v = d["Loadgen"]["Envoy"]["Verdict"]
    codes = {int(k): n for k, n in d["RetCodes"].items()}
    assert sum(codes.values()) == 30
    assert v["Client503"] == codes.get(503, 0) == v["PendingOverflow"] + v["ActiveOverflow"]
    assert v["Status"] == "exact", v
    if codes.get(503):
        assert "attributed by count" in v["Sentence"]
    assert "Circuit breaker (Envoy admin exec://default/deploy/fortio?container=istio-proxy" in p.stderr


def test_stats_via_port_forward(istio_envoy, kube, kubeconfig, tmp_path):
    e = istio_envoy(True)
    out = tmp_path / "r.json"
    url = f"http://127.0.0.1:{e.port('0.0.0.0_8000')}/get"
    p = run_cli(
        "load",
        "-kubeconfig",
        kubeconfig,
        "-c",
        "2",
        "-qps",
        "0",
        "-n",
        "20",
        "-json",
        str(out),
        "-envoy-admin",
        "k8s://default/pod/client-0:15000",
        url,
        timeout=60,
    )
    assert p.returncode == 0, p.stderr
    d = json.loads(out.read_text())
    assert d["Loadgen"]["Envoy"]["Admin"] == "k8s://default/pod/client-0:15000"
    deltas = d["Loadgen"]["Envoy"]["Deltas"]["outbound|8000||httpbin.default.svc.cluster.local"]
    assert deltas["upstream_rq_total"] == d["RetCodes"].get("200", 0) > 0


def test_missing_stats_message(istio_envoy, kube, kubeconfig):
    e = istio_envoy(False)
    url = f"http://127.0.0.1:{e.port('0.0.0.0_8000')}/get"
    p = run_cli(
        "load",
        "-kubeconfig",
        kubeconfig,
        "-n",
        "5",
        "-via",
        "exec://default/deploy/fortio",
        "-envoy-admin",
        "exec://default/deploy/fortio?container=istio-proxy",
        url,
        timeout=60,
    )
    assert p.returncode == 2
    assert "proxy.istio.io/config: |" in p.stderr and '- "cluster.outbound"' in p.stderr
    assert "proxyStatsMatcher:" in p.stderr


def test_port_forward_bypass_note(kube, kubeconfig, istio_envoy):
    istio_envoy(True)
    p = run_cli(
        "load",
        "-kubeconfig",
        kubeconfig,
        "-n",
        "4",
        "-c",
        "1",
        "-envoy-admin",
        "exec://default/pod/client-0?container=istio-proxy",
        "k8s://default/svc/httpbin:8000/echo",
    )
    assert "port-forward bypasses the client sidecar" in p.stderr


def test_manifests():
    p = run_cli("k8s", "manifests", "-namespace", "load", "-image", "ghcr.io/x/loadgen:1")
    assert p.returncode == 0
    assert "namespace: load" in p.stdout and 'sidecar.istio.io/inject: "true"' in p.stdout
    assert '- "cluster.outbound"' in p.stdout and 'image: "ghcr.io/x/loadgen:1"' in p.stdout
    assert run_cli("k8s", "manifests", "-namespace", "Bad_NS").returncode == 2
