"""The one place an engine is chosen: flag, LOADGEN_ENGINE, scheme, and the fallback when the
compiled engine is not installed (an install with LOADGEN_NO_EXTENSIONS=1)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from loadgen import engine
from loadgen.errors import UsageError

ROOT = Path(__file__).resolve().parent.parent


def test_choices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LOADGEN_ENGINE", raising=False)
    assert engine.choose("", "https") == ("httpx", "")
    assert engine.choose("", "http", h2=True) == ("httpx", "")
    assert engine.choose("py", "http") == ("py", "")
    monkeypatch.setenv("LOADGEN_ENGINE", "py")
    assert engine.choose("", "http") == ("py", "")
    assert engine.choose("httpx", "http") == ("httpx", "")  # the flag wins over the environment
    with pytest.raises(UsageError, match=r"speaks plain HTTP/1\.x only"):
        engine.choose("py", "https")


def test_without_the_compiled_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LOADGEN_ENGINE", raising=False)
    monkeypatch.setattr(engine, "c_available", lambda: False)
    name, warning = engine.choose("", "http")
    assert name == "py" and "pure-Python engine" in warning
    with pytest.raises(UsageError, match="not built"):
        engine.choose("c", "http")


def test_a_run_without_the_extension_falls_back_with_a_warning(tmp_path: Path) -> None:
    # hide loadgen._core the way an install without extensions would lack it
    blocker = tmp_path / "sitecustomize.py"
    blocker.write_text(
        "import sys\n"
        "class _Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'loadgen._core':\n"
        "            raise ImportError('no compiled engine')\n"
        "        return None\n"
        "sys.meta_path.insert(0, _Block())\n"
    )
    env = dict(os.environ, PYTHONPATH=f"{tmp_path}{os.pathsep}{ROOT}")
    env.pop("LOADGEN_ENGINE", None)
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "loadgen",
            "load",
            "-n",
            "3",
            "-qps",
            "0",
            "-json",
            "-",
            "http://127.0.0.1:9/",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert "using the pure-Python engine" in p.stderr
    assert '"Engine": "py"' in p.stdout
