"""Every bad input in ``docs/bad-inputs.md`` gives its documented one-line message and exit code.

The Markdown table is parsed here, so the doc and the test cannot drift: each row is run as
``python -m loadgen ARGS`` in a scratch directory with the fixture files the doc describes;
stderr must be exactly one line containing the message, with no traceback.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "bad-inputs.md"
ROW = re.compile(r"^\|\s*(\d+)\s*\|\s*`(.*)`\s*\|\s*(\d+)\s*\|\s*`(.*)`\s*\|\s*$")
_VS = (
    "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: httpbin}\n"
    "spec:\n  hosts: [httpbin]\n  http:\n"
)
_DR = (
    "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: httpbin}\n"
    "spec:\n  host: httpbin\n"
)
FILES = {
    "trunc.json": '{"not": "a run"',
    "list.json": "[1,2]",
    "empty.json": "{}",
    "bad.yaml": "scenario: [unclosed\n",
    "two-actions.yaml": _VS + "  - redirect: {uri: /new}\n    route: [{destination: {host: httpbin}}]\n",
    "maglev.yaml": _DR + "  trafficPolicy:\n    loadBalancer:\n"
    "      consistentHash: {httpHeaderName: end-user, maglev: {tableSize: 1000}}\n",
    "weights.yaml": _DR
    + "  subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]\n---\n"
    + _VS
    + "  - route:\n    - {destination: {host: httpbin, subset: v1}, weight: 0}\n"
    "    - {destination: {host: httpbin, subset: v2}, weight: 0}\n",
    "subset.yaml": _VS + "  - route: [{destination: {host: httpbin, subset: v3}}]\n",
    "percent.yaml": _VS
    + "  - headers: {request: {set: {x-share: 50%}}}\n    route: [{destination: {host: httpbin}}]\n",
}


def rows() -> list[tuple[str, str, int, str]]:
    out = []
    for line in DOC.read_text().splitlines():
        m = ROW.match(line)
        if m:
            out.append((m.group(1), m.group(2), int(m.group(3)), m.group(4).replace("\\|", "|")))
    return out


def test_table_has_at_least_40_rows() -> None:
    assert len(rows()) >= 40


@pytest.mark.parametrize(("num", "args", "code", "message"), rows(), ids=[r[0] for r in rows()])
def test_bad_input(tmp_path: Path, num: str, args: str, code: int, message: str) -> None:
    for name, text in FILES.items():
        (tmp_path / name).write_text(text)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "LOADGEN_LAB_DIR": str(tmp_path / "lab")}
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "loadgen", *shlex.split(args)],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
            stdin=subprocess.DEVNULL,
        )
    finally:
        if (tmp_path / "lab").exists():  # a row that wrongly started a lab: stop its processes
            subprocess.run(
                [sys.executable, "-m", "loadgen", "lab", "down"], env=env, capture_output=True, timeout=60
            )
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert message in lines[0], lines[0]
    assert proc.returncode == code, (proc.returncode, proc.stderr)
