"""The seams the runner calls for Kubernetes: ``k8s://`` targets, ``-via`` runners, sidecar observers.

What it is: :func:`forward_target` (a port-forward relay for a ``k8s://`` URL, and the
:class:`~loadgen.target.Target` whose Host header is the in-cluster name), :func:`envoy_observer`
(an :class:`~loadgen.envoy.observer.EnvoyObserver` reading a sidecar by exec or port-forward),
:func:`run_via` (``-via exec://`` and ``-via job://``: run elsewhere, then report, reconcile and
write the outputs exactly as a local run does).

What it is not: no load engine; nothing here runs unless the user named a Kubernetes URL.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TextIO

from loadgen.errors import UsageError
from loadgen.k8s.client import Kube
from loadgen.k8s.forward import Relay
from loadgen.k8s.names import parse_exec_url, parse_forward_url, parse_job_url
from loadgen.options import LoadOptions
from loadgen.results import RunResult
from loadgen.target import Target

_KUBES: dict[tuple[str, str], Kube] = {}
SIDECAR_SCHEMES = ("exec://", "k8s://")


def kube_for(opts: LoadOptions) -> Kube:
    key = (opts.kubeconfig, opts.context)
    if key not in _KUBES:
        _KUBES[key] = Kube(*key)
    return _KUBES[key]


def forward_target(opts: LoadOptions) -> tuple[Target, Relay, list[str]]:
    """Open the relay for ``opts.url`` (``k8s://``) and the target to send to it."""
    fu = parse_forward_url(opts.url)
    kube = kube_for(opts)
    if fu.kind == "svc":
        pod, pod_port = kube.service_pod(fu.namespace, fu.name, fu.port)
        host, port = f"{fu.name}.{fu.namespace}.svc.cluster.local", fu.port
    else:
        pod = kube.ready_pod(fu.namespace, fu.kind, fu.name)
        pod_port = fu.port
        host, port = str((pod.status.pod_ip if pod.status else "") or pod.metadata.name), fu.port
    relay = Relay(kube, fu.namespace, pod.metadata.name, pod_port).start()
    try:
        relay.probe()
    except BaseException:
        relay.close()
        raise
    target = Target(scheme="http", host=host, port=port, path=fu.path, url=opts.url)
    warnings = [
        f"port-forward to pod {fu.namespace}/{pod.metadata.name}:{pod_port} via {relay.url} "
        f"(Host: {target.host_header}); each connection is its own port-forward stream"
    ]
    if opts.envoy_admin.startswith(SIDECAR_SCHEMES):
        warnings.append(
            "port-forward bypasses the client sidecar: this load goes API server -> kubelet -> pod, not "
            f"through the Envoy at {opts.envoy_admin}, so its client-side circuit breaker is not exercised; "
            "use -via exec://NAMESPACE/deploy/CLIENT to load from inside the mesh"
        )
    return target, relay, warnings


def envoy_observer(opts: LoadOptions) -> tuple[Any, Callable[[], None]]:
    """An EnvoyObserver for ``-envoy-admin exec://…`` or ``k8s://…`` and a closer for its transport."""
    from loadgen.envoy.observer import EnvoyObserver
    from loadgen.k8s.sidecar import ExecAdmin, ForwardAdmin

    url = opts.envoy_admin
    kube = kube_for(opts)
    client: Any
    if url.startswith("exec://"):
        eu = parse_exec_url(url)
        pod = kube.ready_pod(eu.namespace, eu.kind, eu.name)
        client = ExecAdmin(kube, eu.namespace, pod.metadata.name, eu.container or "istio-proxy")
        closer: Callable[[], None] = client.close
    else:
        fu = parse_forward_url(url)
        if fu.kind == "svc":
            raise UsageError(f"-envoy-admin {url}: name a pod or deploy (a sidecar admin is per pod)")
        pod = kube.ready_pod(fu.namespace, fu.kind, fu.name)
        client = ForwardAdmin(kube, fu.namespace, pod.metadata.name, fu.port)
        closer = client.shutdown
    obs = EnvoyObserver(url, opts.envoy_cluster, opts.stats_interval_s, client=client)
    obs.admin_url = url  # show the k8s URL, not the relay's local port
    return obs, closer


def run_via(opts: LoadOptions, *, err: TextIO, out: TextIO, observers: list[Any]) -> tuple[RunResult, int]:
    """Run the load where ``-via`` says, then report/reconcile/write like a local run."""
    from loadgen import report_text
    from loadgen.runner import check_outputs, exit_code, write_outputs

    check_outputs(opts)  # before a possibly long remote run, as for a local one
    via = opts.via
    if opts.url.startswith("k8s://"):
        raise UsageError(
            "-via runs the load inside the cluster: give the URL as the pod sees it "
            "(e.g. http://httpbin:8000/get), not a k8s:// port-forward URL"
        )
    if not via.startswith(("exec://", "job://")):
        raise UsageError(
            f"-via {via!r}: expected exec://NAMESPACE/(pod|deploy)/NAME or job://NAMESPACE?replicas=N&image=I"
        )
    kube = kube_for(opts)
    target_exec = parse_exec_url(via) if via.startswith("exec://") else None
    target_job = parse_job_url(via) if via.startswith("job://") else None
    obs_list = list(observers)
    envoy_obs = None
    closer: Callable[[], None] | None = None
    try:
        if opts.envoy_admin:
            if opts.envoy_admin.startswith(SIDECAR_SCHEMES):
                envoy_obs, closer = envoy_observer(opts)
            else:
                from loadgen.envoy.observer import EnvoyObserver

                envoy_obs = EnvoyObserver(opts.envoy_admin, opts.envoy_cluster, opts.stats_interval_s)
            obs_list.append(envoy_obs)
        for ob in obs_list:
            ob.before()
        if target_exec is not None:
            from loadgen.k8s.remote import run_exec

            result, info = run_exec(kube, target_exec, opts)
            result.extra.update(info)
        else:
            from loadgen.k8s.job import run_job

            assert target_job is not None
            result = run_job(kube, target_job, opts, err, keep=opts.keep)
        for ob in obs_list:
            ob.after(result)
        if envoy_obs is not None:
            pods_envoy = result.envoy
            result.envoy = envoy_obs.to_json()
            if pods_envoy:
                result.envoy["Pods"] = pods_envoy
    finally:
        if closer is not None:
            closer()
    level = opts.loglevel if not opts.quiet else "Error"
    report_text.render(result, err, level, header=True)
    if envoy_obs is not None:
        envoy_obs.render_text(err)
    write_outputs(result, opts, err, out)
    return result, exit_code(result)
