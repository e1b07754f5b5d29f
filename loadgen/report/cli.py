"""``loadgen report RUNS... -o report.html [-md report.md] [-csv DIR] [-parquet DIR] [-format csv|parquet]``.

What it is: :func:`report_main` (argv without the ``report`` word → exit code) and
:func:`write_single_run_report` (what ``loadgen load -report FILE.html`` calls). RUNS are files,
directories (every ``*.json`` inside) or globs. Outputs:

    -o FILE.html     the HTML report (self-contained, offline)
    -md FILE.md      the Markdown report (fits a pull-request comment)
    -csv DIR         every table as DIR/<table>.csv
    -parquet DIR     every table as DIR/<table>.parquet
    -format FMT      csv or parquet: also write the tables next to the HTML/Markdown report, in
                     ``<report name>-tables/``
    -title TEXT      the report's title
    -rate R          the overflow-rate threshold of the trip points (default 0.01 = 1 %)
    -by AXIS         concurrency or qps (default: the one that varies within variants)

Errors (unreadable, non-JSON or non-result file, no runs found, bad flag) print one line
``loadgen: <message>`` naming the file and exit 2.

What it is not: not wired into the top-level CLI here (``loadgen/cli`` does that).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import NoReturn, TextIO

from loadgen.errors import LoadgenError, UsageError
from loadgen.report import correlate
from loadgen.report.frames import Frames, export, frames_from_results, load_frames
from loadgen.report.html import render_html
from loadgen.report.markdown import render_markdown
from loadgen.results import RunResult
from loadgen.text import plural


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"report: {message}")


def _parser() -> _Parser:
    p = _Parser(
        prog="loadgen report",
        add_help=True,
        description="Turn run JSON files (loadgen's or fortio's) into an HTML/Markdown report and tables.",
    )
    p.add_argument("runs", nargs="*", metavar="RUNS", help="run files, directories or globs")
    p.add_argument("-o", dest="html", default="", help="HTML report file")
    p.add_argument("-md", dest="md", default="", help="Markdown report file")
    p.add_argument("-csv", dest="csv", default="", help="directory for CSV tables")
    p.add_argument("-parquet", dest="parquet", default="", help="directory for Parquet tables")
    p.add_argument(
        "-format",
        dest="fmt",
        default="",
        choices=["csv", "parquet"],
        help="also write the tables next to the report in this format",
    )
    p.add_argument("-title", dest="title", default="loadgen report")
    p.add_argument(
        "-rate", dest="rate", type=float, default=0.01, help="trip point rate threshold (0.01 = 1%%)"
    )
    p.add_argument("-by", dest="by", default="", choices=["", "concurrency", "qps"])
    return p


def _write_text(path: str, text: str) -> None:
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except OSError as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise UsageError(f"cannot write {path!r}: {exc.strerror}") from exc


def write_reports(
    frames: Frames,
    *,
    html: str = "",
    md: str = "",
    title: str = "loadgen report",
    rate: float = 0.01,
    by: str = "",
) -> correlate.Analysis:
    """Analyse ``frames`` and write the requested report files."""
    if by not in ("", "concurrency", "qps"):
        raise UsageError(f"-by must be concurrency or qps, got {by!r}")
    a = correlate.analyse(frames, rate=rate, by=by or None)  # type: ignore[arg-type]
    if html:
        _write_text(html, render_html(a, title))
    if md:
        _write_text(md, render_markdown(a, title))
    return a


def report_main(argv: list[str], out: TextIO | None = None, err: TextIO | None = None) -> int:
    """``loadgen report`` (see the module docstring); returns the exit code."""
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        ns = _parser().parse_args(argv)
        if not ns.runs:
            raise UsageError("report: no RUNS given (files, directories or globs of run JSON)")
        if not (ns.html or ns.md or ns.csv or ns.parquet):
            raise UsageError(
                "report: nothing to write; give -o FILE.html, -md FILE.md, -csv DIR or -parquet DIR"
            )
        if not 0.0 <= ns.rate < 1.0:
            raise UsageError(f"report: -rate must be in [0, 1), got {ns.rate}")
        frames = load_frames(ns.runs)
        write_reports(frames, html=ns.html, md=ns.md, title=ns.title, rate=ns.rate, by=ns.by)
        written = [p for p in (ns.html, ns.md) if p]
        for d, fmt in ((ns.csv, "csv"), (ns.parquet, "parquet")):
            if d:
                written += export(frames, d, fmt)
        if ns.fmt:
            base = os.path.splitext(ns.html or ns.md)[0] if (ns.html or ns.md) else "report"
            written += export(frames, base + "-tables", ns.fmt)
        out.write(f"report: {plural(len(frames.runs), 'run')} -> {', '.join(written)}\n")
        return 0
    except LoadgenError as exc:
        err.write(f"loadgen: {exc}\n")
        return exc.exit_code


def write_single_run_report(result: RunResult, path: str, title: str = "") -> None:
    """The HTML report of one run (``loadgen load -report FILE.html``); ``.md`` paths get Markdown."""
    frames = frames_from_results([(result, os.path.splitext(os.path.basename(path))[0] + ".json")])
    t = title or f"loadgen report: {result.labels or result.url}"
    if path.endswith(".md"):
        write_reports(frames, md=path, title=t)
    else:
        write_reports(frames, html=path, title=t)
