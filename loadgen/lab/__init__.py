"""The local mesh lab: Istio YAML → a model → one Envoy bootstrap, plus (elsewhere) the processes.

:mod:`loadgen.lab.model` holds the typed model, :mod:`loadgen.lab.istio` parses and validates
Istio ``DestinationRule`` / ``VirtualService`` YAML into it, :mod:`loadgen.lab.render` turns it
into an Envoy bootstrap shaped like what Istio gives a client sidecar. Ready-made scenario YAML
lives in ``loadgen/lab/scenarios/``.
"""
