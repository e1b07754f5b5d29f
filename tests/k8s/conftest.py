"""Fixtures for the Kubernetes tests: the stand-in API server, fake container "images", targets.

Every server binds 127.0.0.1 and is stopped by PID/handle at teardown. The "images" are
directories put on a pod's PATH: ``loadgen`` (a shim running this checkout), ``fortio`` (a fake
that runs this checkout's loadgen and prints fortio's JSON, i.e. without the ``Loadgen`` object,
and records its argv) and ``pilot-agent`` (``request GET PATH`` against the Envoy admin whose port
is in ``ENVOY_ADMIN_PORT``, or a config-dump file for the propagation wait).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from envoy_fixtures import envoy_factory  # noqa: E402, F401
from fakekube import Container, FakeKube  # noqa: E402

TOKEN = "sekrit-token-4f1d2c9e8b7a"
CERT_DATA = "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCk1JSUJmYWtlY2VydGRhdGEK"

FORTIO = r'''#!PY
"""fake fortio: `fortio version`, `fortio load ... -json - URL` (runs loadgen, prints fortio's JSON)."""
import json, os, subprocess, sys
if len(sys.argv) > 1 and sys.argv[1] == "version":
    print("1.69.0 fake"); sys.exit(0)
with open(os.environ["FORTIO_ARGV_LOG"], "a") as fh:
    fh.write(json.dumps(sys.argv[1:]) + "\n")
p = subprocess.run([sys.executable, "-m", "loadgen", *sys.argv[1:]], stdout=subprocess.PIPE)
doc = json.loads(p.stdout)
doc.pop("Loadgen", None)
sys.stdout.write(json.dumps(doc, indent=2) + "\n")
sys.exit(p.returncode)
'''

PILOT_AGENT = r'''#!PY
"""fake pilot-agent: `pilot-agent request GET PATH` (HTTP to the Envoy admin, like the real one)."""
import os, sys, urllib.request
assert sys.argv[1:3] == ["request", "GET"], sys.argv
path = sys.argv[3].lstrip("/")
dump = os.environ.get("FAKE_CONFIG_DUMP", "")
if path.startswith("config_dump") and dump:
    sys.stdout.write(open(dump).read() if os.path.exists(dump) else "{}"); sys.exit(0)
url = "http://127.0.0.1:%s/%s" % (os.environ["ENVOY_ADMIN_PORT"], path)
with urllib.request.urlopen(url, timeout=5) as r:
    sys.stdout.write(r.read().decode())
'''

LOADGEN = '#!/bin/sh\nexec {py} -m loadgen "$@"\n'


def _script(d: Path, name: str, text: str) -> None:
    p = d / name
    p.write_text(text.replace("#!PY", "#!" + sys.executable).replace("{py}", sys.executable))
    p.chmod(0o755)


@pytest.fixture(scope="session")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    base = tmp_path_factory.mktemp("images")
    out = {}
    for name, script in (("loadgen", LOADGEN), ("fortio", FORTIO), ("pilot-agent", PILOT_AGENT)):
        d = base / name
        d.mkdir()
        _script(d, name, script)
        out[name] = str(d)
    out["argv_log"] = str(base / "fortio-argv.jsonl")
    return out


@pytest.fixture(scope="session")
def serve() -> Iterator[int]:
    """``loadgen serve`` on 127.0.0.1: the pods' application port."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "loadgen", "serve", "-port", "0", "-quiet"],
        stdout=subprocess.PIPE,
        text=True,
        cwd=str(ROOT),
        start_new_session=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    m = re.search(r":(\d+)\s*$", line)
    assert m, line
    yield int(m.group(1))
    os.kill(proc.pid, signal.SIGTERM)
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(5)
    proc.stdout.close()


@pytest.fixture(scope="session")
def kube(images: dict[str, str], serve: int, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeKube]:
    fk = FakeKube(token=TOKEN).start()
    env = {"PYTHONPATH": str(ROOT), "FORTIO_ARGV_LOG": images["argv_log"]}
    proxy = Container("istio-proxy", [images["pilot-agent"]], {})
    fk.add_pod("default", "httpbin-0", {"app": "httpbin"}, ports={8000: serve, 15000: serve})
    fk.add_pod("default", "httpbin-1", {"app": "httpbin"}, ports={8000: serve}, ready=False)
    fk.add_service(
        "default", "httpbin", {"app": "httpbin"}, [{"name": "http", "port": 8000, "targetPort": 8080}]
    )
    fk.pods["default", "httpbin-0"].ports[8080] = serve
    fk.add_pod(
        "default", "fortio-abc12", {"app": "fortio"}, [Container("fortio", [images["fortio"]], env), proxy]
    )
    fk.add_deployment("default", "fortio", {"app": "fortio"})
    fk.add_pod(
        "default", "client-0", {"app": "client"}, [Container("loadgen", [images["loadgen"]], env), proxy]
    )
    fk.add_deployment("default", "client", {"app": "client"})
    fk.add_pod("default", "bare-0", {"app": "bare"}, [Container("app", [])])
    fk.job_path = [images["loadgen"]]
    fk.job_env = env
    fk.kubeconfig_path = fk.kubeconfig(str(tmp_path_factory.mktemp("kc") / "config"), TOKEN, CERT_DATA)  # type: ignore[attr-defined]
    yield fk
    fk.stop()
    _collect_quietly()


def _collect_quietly() -> None:
    """Finalise sockets the websocket client and the stand-in's loop left to the GC, warnings off."""
    import gc
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


@pytest.fixture
def kubeconfig(kube: FakeKube) -> str:
    return kube.kubeconfig_path  # type: ignore[attr-defined,no-any-return]


def run_cli(
    *args: str, timeout: float = 60.0, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``loadgen ARGS`` as a user runs it (a subprocess, bounded)."""
    e = dict(os.environ)
    e["PYTHONPATH"] = str(ROOT)
    e.pop("KUBECONFIG", None)
    e.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "loadgen", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=str(ROOT),
        env=e,
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # The stand-in's event loop runs in a thread; sockets it closes at shutdown may be finalised
    # by the GC during another test and reported as "unraisable" ResourceWarnings (not failures).
    for item in items:
        if "tests/k8s/" in str(item.fspath):
            item.add_marker(pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"))


@pytest.fixture
def policy(kube, tmp_path):
    """A K8sPolicyTarget on the stand-in, with a fake istiod that pushes DestinationRule thresholds
    into the client sidecar's config dump 0.3 s after each change."""
    from kubernetes import client

    from loadgen.k8s.client import Kube
    from loadgen.k8s.policy import K8sPolicyTarget

    dump = tmp_path / "config_dump.json"
    kube.pods["default", "client-0"].containers[1].env["FAKE_CONFIG_DUMP"] = str(dump)

    def istio_cluster(name, policy):
        """A cluster shaped as istiod sends it (hand-written: defaults of 2^32-1, the HTTP options
        key, outlier detection with success rate disabled)."""
        pool = (policy or {}).get("connectionPool") or {}
        tcp, http = pool.get("tcp") or {}, pool.get("http") or {}
        th = {
            "max_connections": tcp.get("maxConnections", 4294967295),
            "max_pending_requests": http.get("http1MaxPendingRequests", 4294967295),
            "max_requests": http.get("http2MaxRequests", 4294967295),
            "max_retries": http.get("maxRetries", 4294967295),
            "track_remaining": True,
        }
        c = {"name": name, "circuit_breakers": {"thresholds": [th]}}
        if http.get("maxRequestsPerConnection"):
            common = {"max_requests_per_connection": http["maxRequestsPerConnection"]}
            c["typed_extension_protocol_options"] = {
                "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                    "common_http_protocol_options": common
                }
            }
        od = (policy or {}).get("outlierDetection")
        if od is not None:
            out = {"enforcing_success_rate": 0}
            if "consecutive5xxErrors" in od:
                out["consecutive_5xx"] = od["consecutive5xxErrors"]
            for src, dst in (("interval", "interval"), ("baseEjectionTime", "base_ejection_time")):
                if src in od:
                    out[dst] = od[src]
            if od.get("maxEjectionPercent"):
                out["max_ejection_percent"] = od["maxEjectionPercent"]
            c["outlier_detection"] = out
        return c

    def on_change(plural, ns, name, obj):  # "istiod": push the DR to the sidecar 0.3 s later
        def push():
            if plural != "destinationrules":
                return
            spec = (obj or {}).get("spec", {})
            top = spec.get("trafficPolicy")
            fqdn = "httpbin.default.svc.cluster.local"
            cs = [istio_cluster(f"outbound|8000||{fqdn}", top)]
            for sub in spec.get("subsets") or []:  # Istio merges the subset's policy over the top
                merged = {**(top or {}), **(sub.get("trafficPolicy") or {})}
                cs.append(istio_cluster(f"outbound|8000|{sub['name']}|{fqdn}", merged))
            dump.write_text(
                json.dumps({"configs": [{"dynamic_active_clusters": [{"cluster": c} for c in cs]}]})
            )

        threading.Timer(0.3, push).start()

    kube.on_object_change = on_change
    cfg = client.Configuration()
    cfg.host = kube.url
    cfg.api_key = {"authorization": f"Bearer {TOKEN}"}
    k = Kube(configuration=cfg)
    yield K8sPolicyTarget("default", "deploy/client", kube=k, timeout_s=5)
    kube.on_object_change = None
    kube.objects.clear()
    kube.disabled_versions.clear()
    k.close()
    _collect_quietly()
