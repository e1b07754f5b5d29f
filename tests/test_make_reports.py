"""`python scripts/make_reports.py` still regenerates the reports the README links to."""

from __future__ import annotations

import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)


def test_make_reports_regenerates_the_committed_set(tmp_path: Path) -> None:
    committed = sorted(p.name for p in (ROOT / "reports").iterdir() if p.is_file())
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "make_reports.py"), "-o", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    made = sorted(p.name for p in tmp_path.iterdir() if p.is_file())
    assert made == committed
    scen = (tmp_path / "scenarios.md").read_text()
    for name in ("circuit-breaker", "routing", "fault-delay", "fault-abort", "mirror", "outlier"):
        assert f"## {name} — CONSISTENT" in scen, scen
    sweep_md = (tmp_path / "circuit-breaker-sweep.md").read_text()
    assert "strict" in sweep_md and "loose" in sweep_md and "Trip points" in sweep_md
    for html in ("circuit-breaker-sweep.html", "single-run.html"):
        text = (tmp_path / html).read_text()
        tags = _Tags()
        tags.feed(text)
        assert "svg" in tags.tags and "script" not in tags.tags
        assert "503s are circuit-breaker rejections" in text or "no 503s" in text
