"""Without the ``report`` extra (pandas, matplotlib), the commands that need it say so in one line
and exit 2 — before any load is sent — instead of a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BLOCK = """\
import importlib.abc, sys
class _Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in ("pandas", "matplotlib"):
            raise ModuleNotFoundError("No module named " + repr(name), name=name)
        return None
sys.meta_path.insert(0, _Block())
"""


@pytest.mark.parametrize(
    ("args", "what"),
    [
        (["report", "runs/"], "loadgen report"),
        (["load", "-n", "1", "-report", "run.html", "http://127.0.0.1:9/"], "-report"),
        (["sweep", "-c", "1", "-n", "1", "http://127.0.0.1:9/"], "loadgen sweep"),
    ],
)
def test_without_the_report_extra(tmp_path: Path, args: list[str], what: str) -> None:
    (tmp_path / "sitecustomize.py").write_text(BLOCK)
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}"}
    proc = subprocess.run(
        [sys.executable, "-m", "loadgen", *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.splitlines() == [f"loadgen: {what} needs matplotlib: pip install 'loadgen[report]'"]
    assert not (tmp_path / "run.html").exists()
