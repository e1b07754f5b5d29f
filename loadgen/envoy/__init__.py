"""Envoy admin stats for loadgen: read, parse, diff, reconcile with what the client saw.

Modules: :mod:`~loadgen.envoy.admin` (stdlib admin client), :mod:`~loadgen.envoy.stats` (the three
stats formats → snapshots, deltas, series), :mod:`~loadgen.envoy.catalogue` (the circuit-breaker
and fault stats, typed), :mod:`~loadgen.envoy.reconcile` (the verdict),
:mod:`~loadgen.envoy.observer` (the run hook behind ``-envoy-admin``), :mod:`~loadgen.envoy.cli`
(``loadgen stats``). Nothing here starts Envoy or knows the engines.
"""

from loadgen.envoy.reconcile import ClientView, Verdict, reconcile

__all__ = ["ClientView", "Verdict", "reconcile"]
