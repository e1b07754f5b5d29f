"""Safety checks over the source: nothing in ``loadgen/`` runs a subprocess through a shell.

An AST scan of every module: no call passes ``shell=True`` (or any non-literal ``shell=``), and
nothing calls ``os.system``/``os.popen``/``subprocess.getoutput``/``getstatusoutput`` (which always
use a shell). Report escaping and credential redaction are tested in ``tests/report/`` and
``tests/test_results.py``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[2] / "loadgen"
SHELL_FUNCS = {
    ("os", "system"),
    ("os", "popen"),
    ("subprocess", "getoutput"),
    ("subprocess", "getstatusoutput"),
}


def shell_uses(tree: ast.AST) -> list[tuple[int, str]]:
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        for kw in node.keywords:
            if kw.arg == "shell" and not (isinstance(kw.value, ast.Constant) and kw.value.value is False):
                found.append((node.lineno, "shell=" + ast.unparse(kw.value)))
        f = node.func
        if (
            isinstance(f, ast.Attribute)
            and isinstance(f.value, ast.Name)
            and (f.value.id, f.attr) in SHELL_FUNCS
        ):
            found.append((node.lineno, f"{f.value.id}.{f.attr}"))
    return found


def test_scanner_finds_shell_calls() -> None:
    """The scanner itself works (it would find what it looks for)."""
    tree = ast.parse(
        "import subprocess, os\nsubprocess.run(x, shell=True)\nos.system('a')\nsubprocess.run(y, shell=s)\n"
    )
    assert [k for _, k in shell_uses(tree)] == ["shell=True", "os.system", "shell=s"]


@pytest.mark.parametrize("path", sorted(PKG.rglob("*.py")), ids=lambda p: str(p.relative_to(PKG)))
def test_no_shell_in_loadgen(path: Path) -> None:
    assert shell_uses(ast.parse(path.read_text(), str(path))) == []
