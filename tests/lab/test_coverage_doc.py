"""docs/istio-coverage.md names every field the lab's Istio readers know (read or ignored), so the
page cannot fall behind the code."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
READERS = ("istio.py", "istio_dr.py", "istio_vs.py", "istio_http.py")


def _known_fields() -> set[str]:
    """The string keys in every ``check_fields(ctx, m, path, HANDLED, IGNORED)`` call (and the
    dicts of reasons those calls pass by name)."""
    names: set[str] = set()
    for mod in READERS:
        tree = ast.parse((ROOT / "loadgen" / "lab" / mod).read_text())
        dicts = {
            t.id: node.value
            for node in ast.walk(tree)
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Dict)
            for t in node.targets
            if isinstance(t, ast.Name)
        }
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and ast.unparse(node.func).endswith("check_fields")):
                continue
            for arg in node.args[3:5]:
                if isinstance(arg, ast.Name) and arg.id in dicts:
                    arg = dicts[arg.id]
                elts = arg.elts if isinstance(arg, ast.Set) else arg.keys if isinstance(arg, ast.Dict) else []
                names |= {e.value for e in elts if isinstance(e, ast.Constant) and isinstance(e.value, str)}
    return names


def test_every_known_field_is_on_the_coverage_page() -> None:
    page = (ROOT / "docs" / "istio-coverage.md").read_text()
    known = _known_fields()
    assert len(known) > 100  # the readers were found and read
    missing = sorted(f for f in known if f"`{f}`" not in page)
    assert not missing, f"fields the readers know but docs/istio-coverage.md does not name: {missing}"
