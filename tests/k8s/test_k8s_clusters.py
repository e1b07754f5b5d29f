"""DestinationRule variants on a cluster: the propagation wait compares the clusters the sidecar
shows with the lab's own translation of the YAML (thresholds, maxRequestsPerConnection, outlier
detection, per subset)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]
from labrender import lab_bootstrap

from loadgen.k8s import clusters

SUBSETS = "  subsets:\n  - {name: v1, labels: {version: v1}}\n  - {name: v2, labels: {version: v2}%s}\n"
VARIANTS = {
    "none": "",
    "strict": "  trafficPolicy:\n    connectionPool:\n      tcp: {maxConnections: 1}\n"
    "      http: {http1MaxPendingRequests: 1, maxRequestsPerConnection: 1}\n",
    "loose": "  trafficPolicy:\n    connectionPool:\n      tcp: {maxConnections: 100}\n"
    "      http: {http1MaxPendingRequests: 100}\n",
    "retries": "  trafficPolicy:\n    connectionPool:\n      http: {maxRetries: 3, http2MaxRequests: 50}\n",
    "outlier": "  trafficPolicy:\n    outlierDetection: {consecutive5xxErrors: 1, interval: 1s, "
    "baseEjectionTime: 30s, maxEjectionPercent: 100}\n",
    "outlier-slow": "  trafficPolicy:\n    outlierDetection: {consecutive5xxErrors: 1, interval: 10s, "
    "baseEjectionTime: 30s, maxEjectionPercent: 100}\n",
    "gateway": "  trafficPolicy:\n    outlierDetection: {consecutiveGatewayErrors: 2}\n",
    "subset-v2": "",  # the v2 subset's own pool, below
}


def _doc(name: str) -> dict[str, Any]:
    sub = ", trafficPolicy: {connectionPool: {tcp: {maxConnections: 2}}}" if name == "subset-v2" else ""
    text = (
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: httpbin}\n"
        "spec:\n  host: httpbin\n" + VARIANTS[name] + SUBSETS % sub
    )
    doc = yaml.safe_load(text)
    assert isinstance(doc, dict)
    return doc


def _lab_dump(tmp_path: Path, name: str) -> dict[str, Any]:
    """The lab's rendering of a variant's clusters, as a sidecar's cluster config dump."""
    f = tmp_path / f"{name}.yaml"
    f.write_text(yaml.safe_dump(_doc(name)))
    boot = lab_bootstrap(f)
    cs = [c for c in boot["static_resources"]["clusters"] if c["name"].startswith("outbound|")]
    assert len(cs) == 3, [c["name"] for c in cs]  # the default cluster and two subsets
    return {"configs": [{"static_clusters": [{"cluster": c} for c in cs]}]}


def test_the_wait_agrees_with_the_labs_own_translation(tmp_path: Path) -> None:
    dumps = {name: clusters.dump_clusters(_lab_dump(tmp_path, name)) for name in VARIANTS}
    for want_name in VARIANTS:
        want = clusters.expected_clusters(_doc(want_name), "default")
        assert set(want) == {
            "||httpbin.default.svc.cluster.local",
            "|v1|httpbin.default.svc.cluster.local",
            "|v2|httpbin.default.svc.cluster.local",
        }
        seen = [name for name, dump in dumps.items() if clusters.arrived(want, dump)]
        assert seen == [want_name], (want_name, seen, want)


def test_what_is_compared() -> None:
    want = clusters.expected_clusters(_doc("strict"), "default")["||httpbin.default.svc.cluster.local"]
    assert want["max_connections"] == 1 and want["max_pending_requests"] == 1
    assert want["max_requests"] == want["max_retries"] == 2**32 - 1  # Istio's default for unset limits
    assert want["max_requests_per_connection"] == 1 and want["outlier"] is False
    od = clusters.expected_clusters(_doc("outlier"), "default")["|v1|httpbin.default.svc.cluster.local"]
    assert od["outlier"] is True and od["consecutive_5xx"] == 1  # the subset inherits the top level
    assert od["interval"] == 10**9 and od["base_ejection_time"] == 30 * 10**9


@pytest.mark.parametrize(
    "extra",
    [
        "  trafficPolicy:\n    portLevelSettings:\n"
        "    - {port: {number: 8000}, connectionPool: {tcp: {maxConnections: 3}}}\n"
        "    connectionPool: {tcp: {maxConnections: 5}}\n",
        "  trafficPolicy:\n    connectionPool: {tcp: {maxConnections: 5}}\n    notAField: 1\n",
    ],
)
def test_unpredictable_rules_fall_back_to_the_explicit_thresholds(extra: str) -> None:
    """Ports are not predicted, and a rule the lab's reader refuses is not second-guessed: only
    the top-level pool's explicit thresholds are waited for."""
    doc = yaml.safe_load("kind: DestinationRule\nmetadata: {name: httpbin}\nspec:\n  host: httpbin\n" + extra)
    assert clusters.expected_clusters(doc, "default") == {
        "||httpbin.default.svc.cluster.local": {"max_connections": 5}
    }
