"""``loadgen sweep``: the same load over a grid of concurrency/qps and policy variants.

Modules: :mod:`~loadgen.sweep.spec` (load lists and the SLO grammar), :mod:`~loadgen.sweep.run`
(the sweep loop, the SLO bisection, signals, restoring the policy) and :mod:`~loadgen.sweep.cli`
(flags, summary, reports). Policies are applied through :class:`loadgen.policy.PolicyTarget`.
Nothing here renders HTML (that is :mod:`loadgen.report`).
"""

from __future__ import annotations

__all__ = ["sweep_main"]


def sweep_main(argv: list[str]) -> int:
    """``loadgen sweep ARGS`` → exit code (bad input raises :class:`~loadgen.errors.UsageError`)."""
    from loadgen.sweep.cli import sweep_main as _main

    return _main(argv)
