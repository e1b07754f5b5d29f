"""`loadgen sweep -k8s-namespace NS` builds the Kubernetes policy target; it excludes -lab."""

from __future__ import annotations

import pytest

from loadgen.errors import UsageError
from loadgen.k8s.policy import K8sPolicyTarget
from loadgen.sweep.cli import make_target


def test_k8s_namespace_makes_a_k8s_policy_target(kubeconfig: str) -> None:
    t = make_target(False, "", "default", "deploy/client", kubeconfig, "")
    assert isinstance(t, K8sPolicyTarget)
    assert t.namespace == "default"
    assert t.admin_url() == "exec://default/deploy/client?container=istio-proxy"
    assert "default" in t.describe()


def test_lab_and_k8s_are_exclusive() -> None:
    with pytest.raises(UsageError, match="one of -lab and -k8s-namespace"):
        make_target(True, "", "default")


def test_bad_namespace_is_a_usage_error(kubeconfig: str) -> None:
    with pytest.raises(UsageError):
        make_target(False, "", "Not_A_Namespace", "deploy/client", kubeconfig, "")
