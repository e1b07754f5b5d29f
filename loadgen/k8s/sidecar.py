"""Reading a sidecar's Envoy admin from outside the pod: by exec (``pilot-agent request``) or port-forward.

What it is: two :class:`~loadgen.envoy.admin.AdminClient` variants the Envoy observer can take
instead of a loopback URL: :class:`ExecAdmin` runs ``pilot-agent request GET <path>?<query>`` in the
sidecar container (argv only; the documented way, the proxy images are distroless) and
:class:`ForwardAdmin` reads the admin through a port-forward relay to the pod's 15000. Both check
on the first snapshot that the outbound clusters' circuit-breaker stats exist: Istio drops them
unless ``proxyStatsMatcher`` includes ``cluster.outbound``, and reporting zeros then would be wrong,
so they fail with the annotation to add (:data:`STATS_ANNOTATION`).

What it is not: no parsing of its own (that is :mod:`loadgen.envoy.stats`), no mutation.
"""

from __future__ import annotations

import textwrap
import urllib.parse
from typing import Any

from loadgen.envoy import stats as st
from loadgen.envoy.admin import SNAPSHOT_FILTER, AdminClient
from loadgen.errors import EnvoyAdminError, UsageError
from loadgen.k8s.client import Kube
from loadgen.k8s.forward import Relay

#: The pod annotation that makes Istio keep the outbound clusters' stats (fortio-deploy.yaml at istio HEAD).
STATS_PREFIXES = ("cluster.outbound", "cluster_manager", "listener_manager", "server", "cluster.xds-grpc")
#: The ``proxy.istio.io/config`` value (ProxyConfig YAML) that keeps those stats.
PROXY_CONFIG = "proxyStatsMatcher:\n  inclusionPrefixes:\n" + "".join(f'  - "{p}"\n' for p in STATS_PREFIXES)
STATS_ANNOTATION = "metadata:\n  annotations:\n    proxy.istio.io/config: |\n" + textwrap.indent(
    PROXY_CONFIG, " " * 6
)

CB_STATS = (
    "upstream_rq_pending_overflow",
    "upstream_rq_total",
    "upstream_cx_overflow",
    "circuit_breakers.default.rq_open",
    "circuit_breakers.default.cx_open",
)


def missing_stats_message(where: str) -> str:
    return (
        f"the sidecar at {where} exports no circuit-breaker stats for its outbound clusters "
        "(Istio excludes cluster.outbound.* by default). Add this annotation to the client pod "
        "template and restart the pod (it is bootstrap configuration):\n"
        + STATS_ANNOTATION
        + "(or: loadgen k8s manifests prints a client Deployment that has it)"
    )


def check_outbound_stats(snap: st.Snapshot, where: str) -> None:
    """Raise :class:`UsageError` with the annotation when no outbound cluster has CB stats."""
    for cluster, stats in snap.clusters.items():
        if cluster.startswith("outbound|") and any(s in stats for s in CB_STATS):
            return
    raise UsageError(missing_stats_message(where))


class _Checked(AdminClient):
    _checked = False

    def snapshot(self, filter: str | None = SNAPSHOT_FILTER) -> st.Snapshot:
        snap = super().snapshot(filter)
        if not self._checked:
            check_outbound_stats(snap, self.url)
            self._checked = True
        return snap


class ExecAdmin(_Checked):
    """The admin API of the sidecar in ``namespace/pod`` through ``pilot-agent request GET``."""

    def __init__(
        self, kube: Kube, namespace: str, pod: str, container: str = "istio-proxy", timeout_s: float = 10.0
    ) -> None:
        self.kube = kube
        self.namespace = namespace
        self.pod = pod
        self.container = container
        self.timeout_s = timeout_s
        self.url = f"exec://{namespace}/pod/{pod}?container={container}"
        self.host, self.port = "", 0

    def close(self) -> None:
        pass

    def get(self, path: str, params: dict[str, str] | None = None) -> str:
        target = path.lstrip("/") + ("?" + urllib.parse.urlencode(params) if params else "")
        argv = ["pilot-agent", "request", "GET", target]
        try:
            res = self.kube.exec(
                self.namespace, self.pod, argv, container=self.container, timeout_s=self.timeout_s
            )
        except Exception as exc:
            raise EnvoyAdminError(f"Envoy admin {self.url}: {exc}") from None
        if not res.started:
            raise EnvoyAdminError(f"Envoy admin {self.url}: cannot run pilot-agent: {res.error}")
        if res.rc != 0:
            raise EnvoyAdminError(
                f"Envoy admin {self.url}: pilot-agent exited {res.rc}: {res.stderr.strip()[:200]}"
            )
        return res.stdout


class ForwardAdmin(_Checked):
    """The admin API of ``namespace/pod:port`` through a port-forward relay to 127.0.0.1."""

    def __init__(self, kube: Kube, namespace: str, pod: str, port: int, timeout_s: float = 5.0) -> None:
        self.relay = Relay(kube, namespace, pod, port).start()
        super().__init__(self.relay.url, timeout_s=timeout_s)
        self.shown = f"k8s://{namespace}/pod/{pod}:{port}"

    def close(self) -> None:
        super().close()

    def shutdown(self) -> None:
        super().close()
        self.relay.close()

    def snapshot(self, filter: str | None = SNAPSHOT_FILTER) -> st.Snapshot:
        try:
            return super().snapshot(filter)
        except UsageError as exc:
            raise UsageError(str(exc).replace(self.url, self.shown)) from None


def describe(client: Any) -> str:
    return str(getattr(client, "shown", getattr(client, "url", "")))
