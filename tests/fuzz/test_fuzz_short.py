"""A ~30 s fuzz run of the C response parser as part of the normal suite (marked ``slow``).

With atheris installed: libFuzzer over ``tests/fuzz/fuzz_parser.py`` for 30 s on the normal
build (the long AddressSanitizer run is ``scripts/fuzz``; see ``tests/fuzz/README.md``).
Without atheris: the pure-Python random mutator in the same module, same properties, 30 s.
Either way the run must end clean: no crash, no property failure.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("loadgen._core", reason="C engine not built")

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
SECONDS = 30


@pytest.mark.slow
@pytest.mark.timeout(SECONDS + 90)
def test_fuzz_parser_30s(tmp_path: Path) -> None:
    target = str(HERE / "fuzz_parser.py")
    env_path = {"PYTHONPATH": str(ROOT)}
    import os

    env = {**os.environ, **env_path}
    env.pop("LOADGEN_CORE_SO", None)
    if importlib.util.find_spec("atheris") is not None:
        cmd = [
            sys.executable,
            target,
            f"-max_total_time={SECONDS}",
            "-use_value_profile=1",
            "-max_len=8192",
            f"-artifact_prefix={tmp_path}/",
            "-print_final_stats=1",
            str(tmp_path),
            str(HERE / "corpus"),
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=SECONDS + 60, env=env, cwd=ROOT)
        assert proc.returncode == 0, proc.stderr[-3000:]
        m = re.search(r"stat::number_of_executed_units:\s*(\d+)", proc.stderr)
        assert m is not None, proc.stderr[-2000:]
        execs = int(m.group(1))
    else:
        proc = subprocess.run(
            [sys.executable, target, "--mutate", str(SECONDS)],
            capture_output=True,
            text=True,
            timeout=SECONDS + 60,
            env=env,
            cwd=ROOT,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        execs = int(re.search(r"'execs': (\d+)", proc.stdout).group(1))  # type: ignore[union-attr]
    assert execs > 10_000  # it really ran
