"""``loadgen k8s manifests``: a meshed client Deployment that can run loadgen from inside the mesh.

What it is: YAML text (written by hand, no yaml dependency) for a ``loadgen-client`` Deployment
with ``sidecar.istio.io/inject: "true"`` and the ``proxy.istio.io/config`` proxyStatsMatcher
annotation that keeps the ``cluster.outbound`` circuit-breaker stats, running the image built from
the repository's ``Dockerfile`` (idle, ready for ``-via exec://NS/deploy/loadgen-client``).

What it is not: no apply (pipe it to ``kubectl apply -f -``).
"""

from __future__ import annotations

import textwrap

from loadgen.k8s.names import check_label
from loadgen.k8s.sidecar import PROXY_CONFIG

DEFAULT_IMAGE = "loadgen:latest"


def client_deployment(
    namespace: str = "default", image: str = DEFAULT_IMAGE, name: str = "loadgen-client"
) -> str:
    check_label(namespace, "namespace")
    check_label(name, "deployment name")
    if not image or any(c.isspace() or c in "\"'" for c in image):
        raise ValueError("image must be a container image reference")
    return f"""\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
  namespace: {namespace}
  labels:
    app: {name}
spec:
  replicas: 1
  selector:
    matchLabels:
      app: {name}
  template:
    metadata:
      labels:
        app: {name}
        sidecar.istio.io/inject: "true"
      annotations:
        kubectl.kubernetes.io/default-container: loadgen
        # keep the outbound clusters' circuit-breaker stats (Istio drops them by default)
        proxy.istio.io/config: |
{textwrap.indent(PROXY_CONFIG, " " * 10)}    spec:
      containers:
      - name: loadgen
        image: "{image}"
        command: ["loadgen", "serve", "-bind", "127.0.0.1", "-port", "8080", "-quiet"]
        resources:
          requests: {{cpu: 500m, memory: 128Mi}}
"""
