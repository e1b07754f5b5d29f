"""K8sPolicyTarget: server-side apply, waiting on the config dump, restore (also after an interrupt)."""

from __future__ import annotations

import pytest

from loadgen.errors import RunError

DR = """apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: httpbin}
spec:
  host: httpbin
  trafficPolicy:
    connectionPool:
      tcp: {maxConnections: %d}
      http: {http1MaxPendingRequests: 1, maxRequestsPerConnection: 1}
"""


def test_apply_restore_round_trip(kube, policy, tmp_path):
    f1, f2 = tmp_path / "a.yaml", tmp_path / "b.yaml"
    f1.write_text(DR % 1)
    f2.write_text(DR % 7)
    original = {
        "metadata": {"name": "httpbin"},
        "spec": {"host": "httpbin", "trafficPolicy": {"connectionPool": {"tcp": {"maxConnections": 100}}}},
    }
    kube._store(("destinationrules", "default", "httpbin"), original, None)
    msg = policy.apply([str(f1)])
    assert "DestinationRule/httpbin" in msg and policy.last_propagation_s >= 0.2  # waited for the push
    spec = kube.objects["destinationrules", "default", "httpbin"]["spec"]
    assert spec["trafficPolicy"]["connectionPool"]["tcp"]["maxConnections"] == 1
    policy.apply([str(f2)])
    assert (
        kube.objects["destinationrules", "default", "httpbin"]["spec"]["trafficPolicy"]["connectionPool"][
            "tcp"
        ]["maxConnections"]
        == 7
    )
    assert any(m == "PATCH" and "fieldManager=loadgen" in p and "force=true" in p for m, p in kube.requests)
    policy.restore()
    assert kube.objects["destinationrules", "default", "httpbin"]["spec"] == original["spec"]


def test_restore_after_interrupt_deletes_new_object_and_falls_back_to_v1beta1(kube, policy, tmp_path):
    kube.disabled_versions.add("v1")
    f = tmp_path / "a.yaml"
    f.write_text(DR % 2)
    policy.wait_for = lambda want, poll_s=0.25: (_ for _ in ()).throw(KeyboardInterrupt())  # type: ignore[method-assign]
    with pytest.raises(KeyboardInterrupt):
        try:
            policy.apply([str(f)])
        finally:
            policy.restore()
    assert ("destinationrules", "default", "httpbin") not in kube.objects
    assert any("/v1beta1/" in p and m == "PATCH" for m, p in kube.requests)


def test_propagation_timeout(kube, policy, tmp_path):
    kube.on_object_change = None  # nobody pushes
    policy.timeout_s = 0.6
    f = tmp_path / "a.yaml"
    f.write_text(DR % 3)
    with pytest.raises(RunError, match="did not show"):
        policy.apply([str(f)])
    policy.restore()


OUTLIER_ONLY = """apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: httpbin}
spec:
  host: httpbin
  trafficPolicy:
    outlierDetection: {consecutive5xxErrors: %d, interval: 1s, baseEjectionTime: 30s}
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}, trafficPolicy: {connectionPool: {tcp: {maxConnections: %d}}}}
"""


def test_outlier_and_subset_variants_are_waited_for(kube, policy, tmp_path):
    """Variants that change no top-level threshold (only outlier detection, only one subset's
    pool) are waited for too: each apply sees the push, 0.3 s later."""
    for i, (errors, conns) in enumerate([(1, 2), (5, 2), (5, 9)]):
        f = tmp_path / f"v{i}.yaml"
        f.write_text(OUTLIER_ONLY % (errors, conns))
        policy.apply([str(f)])
        assert policy.last_propagation_s >= 0.2, (i, policy.last_propagation_s)
    policy.restore()


def test_propagation_timeout_names_the_cluster_and_what_it_has(kube, policy, tmp_path):
    f = tmp_path / "a.yaml"
    f.write_text(OUTLIER_ONLY % (1, 2))
    policy.apply([str(f)])
    kube.on_object_change = None  # nobody pushes the next one
    policy.timeout_s = 0.6
    f.write_text(OUTLIER_ONLY % (1, 4))
    with pytest.raises(
        RunError,
        match=r"clusters \*\|v2\|httpbin.default.svc.cluster.local as .*'max_connections': 4"
        r".* \(it has: .*\"max_connections\": 2",
    ):
        policy.apply([str(f)])
    policy.restore()
