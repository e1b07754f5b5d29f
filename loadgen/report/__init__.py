"""Analysis and reports over run results: pandas tables, Envoy correlation, HTML/Markdown reports.

Modules: :mod:`~loadgen.report.frames` (tidy tables, combined percentiles, CSV/Parquet export),
:mod:`~loadgen.report.hist` (vectorised HDR percentiles), :mod:`~loadgen.report.correlate`
(verdicts, shedding onset, trip points), :mod:`~loadgen.report.charts` (SVG charts),
:mod:`~loadgen.report.html` and :mod:`~loadgen.report.markdown` (the reports) and
:mod:`~loadgen.report.cli` (``loadgen report``). Needs the ``report`` extra (pandas, matplotlib,
pyarrow). Nothing here runs load.
"""

from __future__ import annotations

__all__ = ["report_main", "require_report_deps", "write_single_run_report"]

REPORT_HINT = "pip install 'loadgen[report]'"


def require_report_deps(what: str) -> None:
    """One clear line (a UsageError) when the ``report`` extra (pandas, matplotlib) is missing."""
    from loadgen.errors import UsageError

    try:
        import matplotlib  # noqa: F401
        import pandas  # type: ignore[import-untyped]  # noqa: F401
    except ImportError as exc:
        raise UsageError(f"{what} needs {exc.name or 'pandas and matplotlib'}: {REPORT_HINT}") from None


def report_main(argv: list[str]) -> int:
    """``loadgen report`` (imported lazily: pandas and matplotlib load only when used)."""
    require_report_deps("loadgen report")
    from loadgen.report.cli import report_main as _main

    return _main(argv)


def write_single_run_report(result: object, path: str) -> None:
    """Write the report of one :class:`~loadgen.results.RunResult` to ``path`` (HTML, or ``.md``)."""
    from loadgen.report.cli import write_single_run_report as _write
    from loadgen.results import RunResult

    if not isinstance(result, RunResult):
        raise TypeError("write_single_run_report needs a RunResult")
    _write(result, path)
