"""The code standards, checked like any other behaviour: ruff (lint + format) and mypy --strict."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _tool(name: str) -> list[str]:
    exe = Path(sys.executable).with_name(name)
    if exe.exists():
        return [str(exe)]
    found = shutil.which(name)
    if not found:
        pytest.skip(f"{name} is not installed (pip install -e '.[test]')")
    return [found]


def test_ruff_lint_and_format() -> None:
    ruff = _tool("ruff")
    for args in (
        ["check", "loadgen", "tests", "benchmarks"],
        ["format", "--check", "loadgen", "tests", "benchmarks"],
    ):
        proc = subprocess.run([*ruff, *args], cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.slow
def test_mypy_strict(tmp_path: Path) -> None:
    mypy = _tool("mypy")
    proc = subprocess.run(
        [*mypy, "--cache-dir", str(tmp_path / "cache"), "loadgen"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
