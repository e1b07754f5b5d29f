"""The lab's rendering of Istio YAML (``loadgen lab config -f``), for tests that check the k8s
propagation waits against the lab's own, separately written, translation."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped]


def lab_bootstrap(path: Path) -> dict[str, Any]:
    """The Envoy bootstrap the lab renders for the YAML file at ``path``."""
    proc = subprocess.run(
        [sys.executable, "-m", "loadgen", "lab", "config", "-f", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    boot = yaml.safe_load(proc.stdout)
    assert isinstance(boot, dict)
    return boot
