"""Kubernetes transports for loadgen: port-forward targets, exec and Job runners, sidecar stats,
Istio policy variants and manifests.

What it is: the only package that imports ``kubernetes`` (always lazily, inside functions, so
``import loadgen`` works without the ``k8s`` extra). Entry points used by the rest of loadgen:
:mod:`loadgen.k8s.hooks` (called by the runner for ``k8s://`` targets, ``-via`` and
``-envoy-admin exec://|k8s://``), :class:`loadgen.k8s.policy.K8sPolicyTarget` (for ``sweep``) and
:func:`loadgen.k8s.cli.k8s_main` (``loadgen k8s ...``).

What it is not: not a cluster manager; it never creates anything but the Job it is asked to run
and the DestinationRule/VirtualService variants it is asked to apply (and restores them).
"""
