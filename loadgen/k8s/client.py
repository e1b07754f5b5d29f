"""The Kubernetes API boundary: configuration, error translation, pod selection, exec, port-forward.

What it is: :class:`Kube` wraps the official ``kubernetes`` client (imported lazily). It loads the
configuration (``-kubeconfig``/``-context``, else the usual kubeconfig resolution, else in-cluster),
translates every client exception into :mod:`loadgen.errors` with a message naming the call (never
a header, token or certificate), picks a ready pod behind ``pod|svc|deploy`` names, runs argv-only
exec commands (exit status from channel 3, including kubelet's ``InternalError`` without details)
and opens port-forward sockets. Websocket calls use a dedicated ``ApiClient`` under a lock: the
client's ``stream()`` temporarily swaps ``call_api`` on the ApiClient it is given.

What it is not: no load logic, no parsing of results.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from loadgen.errors import RunError, UsageError

T = TypeVar("T")


class K8sError(RunError):
    """A Kubernetes API call failed (exit 1)."""


class K8sNotFound(UsageError):
    """The named object does not exist (exit 2: the user named it)."""


def _status_message(body: Any) -> str:
    try:
        d = json.loads(body) if isinstance(body, (str, bytes)) else None
    except ValueError:
        d = None
    if isinstance(d, dict) and d.get("message"):
        return str(d["message"])
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body or "")
    return text.strip()[:200]


def translate(exc: BaseException, what: str) -> Exception:
    """A client exception → a loadgen error naming ``what``; never includes headers or credentials."""
    from kubernetes.client.exceptions import ApiException
    from kubernetes.config.config_exception import ConfigException

    if isinstance(exc, ApiException):
        status = getattr(exc, "status", 0) or 0
        msg = _status_message(getattr(exc, "body", None)) or str(getattr(exc, "reason", "") or "")
        text = f"Kubernetes API: {what}: {status} {msg}".rstrip()
        if status == 404:
            return K8sNotFound(text)
        if status in (401, 403):
            return K8sError(text + " (check the credentials/RBAC of the kubeconfig context)")
        return K8sError(text)
    if isinstance(exc, ConfigException):
        return UsageError(f"Kubernetes configuration: {str(exc).splitlines()[0][:200]}")
    name = type(exc).__name__
    if name in ("MaxRetryError", "NewConnectionError", "ProtocolError") or isinstance(exc, OSError):
        return K8sError(f"Kubernetes API: {what}: cannot reach the API server ({name})")
    if name in ("WebSocketBadStatusException", "WebSocketException", "WebSocketConnectionClosedException"):
        first = str(exc).splitlines()[0][:160] if str(exc) else name
        return K8sError(f"Kubernetes API: {what}: websocket failed: {first}")
    return K8sError(f"Kubernetes API: {what}: {name}")


def load_configuration(kubeconfig: str = "", context: str = "") -> Any:
    """A ``kubernetes.client.Configuration``: explicit kubeconfig/context, else default, else in-cluster."""
    from kubernetes import client, config
    from kubernetes.config.config_exception import ConfigException

    cfg = client.Configuration()
    path = os.path.expanduser(kubeconfig) if kubeconfig else ""
    if path and not os.path.isfile(path):
        raise UsageError(f"-kubeconfig {kubeconfig!r}: no such file")
    try:
        default = os.path.expanduser(os.environ.get("KUBECONFIG", "~/.kube/config").split(os.pathsep)[0])
        if path or context or os.path.isfile(default):
            config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=path or None,
                context=context or None,
                client_configuration=cfg,
                persist_config=False,
            )
        else:
            config.load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
    except ConfigException as exc:
        raise translate(exc, "load configuration") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UsageError(f"Kubernetes configuration: cannot load ({type(exc).__name__})") from None
    return cfg


@dataclass
class ExecResult:
    rc: int
    stdout: str
    stderr: str
    started: bool = True  # False: the command could not start (not found, bad container)
    error: str = ""


def pod_ready(pod: Any) -> bool:
    st = pod.status
    if st is None or st.phase != "Running" or (pod.metadata and pod.metadata.deletion_timestamp):
        return False
    return any(c.type == "Ready" and c.status == "True" for c in (st.conditions or []))


class Kube:
    """One API server connection (REST client + a dedicated client for websocket streams)."""

    def __init__(self, kubeconfig: str = "", context: str = "", configuration: Any = None) -> None:
        from kubernetes import client

        self.cfg = configuration if configuration is not None else load_configuration(kubeconfig, context)
        self.api = client.ApiClient(self.cfg)
        self.core = client.CoreV1Api(self.api)
        self.apps = client.AppsV1Api(self.api)
        self.batch = client.BatchV1Api(self.api)
        self.custom = client.CustomObjectsApi(self.api)
        self._stream_api = client.CoreV1Api(client.ApiClient(self.cfg))
        self._stream_lock = threading.Lock()

    def close(self) -> None:
        for api in (self.api, self._stream_api.api_client):
            try:
                api.close()
                pm = getattr(getattr(api, "rest_client", None), "pool_manager", None)
                if pm is not None:
                    pm.clear()
            except Exception:
                pass

    @property
    def host(self) -> str:
        return str(self.cfg.host)

    def call(self, what: str, fn: Callable[..., T], *args: Any, **kw: Any) -> T:
        """Run one API call; client exceptions become loadgen errors naming ``what``."""
        try:
            return fn(*args, **kw)
        except Exception as exc:
            if type(exc).__module__.split(".")[0] in ("kubernetes", "urllib3", "websocket") or isinstance(
                exc, OSError
            ):
                raise translate(exc, what) from None
            raise

    # --- pods ---------------------------------------------------------------------------------

    def read_pod(self, ns: str, name: str) -> Any:
        return self.call(f"get pod {ns}/{name}", self.core.read_namespaced_pod, name, ns)

    def pods_by_selector(self, ns: str, selector: str) -> list[Any]:
        res = self.call(
            f"list pods in {ns} ({selector})", self.core.list_namespaced_pod, ns, label_selector=selector
        )
        return sorted(res.items, key=lambda p: p.metadata.name)

    def ready_pod(self, ns: str, kind: str, name: str) -> Any:
        """The pod behind ``pod|deploy NAME`` that is Running and Ready (the first by name)."""
        if kind == "pod":
            pod = self.read_pod(ns, name)
            if not pod_ready(pod):
                phase = pod.status.phase if pod.status else "unknown"
                raise K8sError(f"pod {ns}/{name} is not ready (phase {phase})")
            return pod
        if kind == "deploy":
            dep = self.call(f"get deployment {ns}/{name}", self.apps.read_namespaced_deployment, name, ns)
            labels = (dep.spec.selector.match_labels or {}) if dep.spec and dep.spec.selector else {}
            if not labels:
                raise K8sError(f"deployment {ns}/{name} has no matchLabels selector")
            selector = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
            pods = [p for p in self.pods_by_selector(ns, selector) if pod_ready(p)]
            if not pods:
                raise K8sError(f"deployment {ns}/{name} has no ready pod ({selector})")
            return pods[0]
        raise UsageError(f"cannot pick a pod for kind {kind!r}")

    def service_pod(self, ns: str, name: str, port: int) -> tuple[Any, int]:
        """A ready pod behind service ``name`` and the pod port that service port ``port`` maps to."""
        svc = self.call(f"get service {ns}/{name}", self.core.read_namespaced_service, name, ns)
        all_ports = (svc.spec.ports if svc.spec else None) or []
        sports = [p for p in all_ports if p.port == port]
        if not sports:
            have = ", ".join(str(p.port) for p in all_ports) or "none"
            raise UsageError(f"service {ns}/{name} has no port {port} (ports: {have})")
        sp = sports[0]
        ep = self.call(f"get endpoints {ns}/{name}", self.core.read_namespaced_endpoints, name, ns)
        for subset in ep.subsets or []:
            eports = subset.ports or []
            match = [p for p in eports if (sp.name and p.name == sp.name)] or (
                eports if len(eports) == 1 else []
            )
            if match:
                target = int(match[0].port)
            elif isinstance(sp.target_port, int) or str(sp.target_port or "").isdigit():
                target = int(str(sp.target_port))
            else:
                continue
            for addr in subset.addresses or []:
                ref = addr.target_ref
                if ref is not None and ref.kind == "Pod" and ref.name:
                    pod = self.read_pod(ref.namespace or ns, ref.name)
                    if pod_ready(pod):
                        return pod, target
        raise K8sError(f"service {ns}/{name} has no ready endpoint pod for port {port}")

    # --- streams ------------------------------------------------------------------------------

    @contextmanager
    def _streaming(self) -> Iterator[Any]:
        with self._stream_lock:
            yield self._stream_api

    def exec(
        self,
        ns: str,
        pod: str,
        argv: list[str],
        container: str = "",
        timeout_s: float = 600.0,
        stdin: bytes | None = None,
    ) -> ExecResult:
        """Run ``argv`` (a list, never a shell string) in the pod; returns rc, stdout and stderr."""
        from kubernetes.stream import stream

        if isinstance(argv, str) or not argv or not all(isinstance(a, str) for a in argv):
            raise TypeError("exec takes an argv list of strings")
        kw: dict[str, Any] = {
            "command": list(argv),
            "stderr": True,
            "stdout": True,
            "tty": False,
            "stdin": stdin is not None,
            "_preload_content": False,
        }
        if container:
            kw["container"] = container
        what = f"exec in pod {ns}/{pod}" + (f" container {container}" if container else "")
        with self._streaming() as api:
            resp = self.call(what, stream, api.connect_get_namespaced_pod_exec, pod, ns, **kw)
        try:
            if stdin is not None:
                resp.write_stdin(stdin.decode("utf-8"))
                resp.close_channel(0)
            self.call(what, resp.run_forever, timeout=timeout_s)
            out, err = resp.read_stdout() or "", resp.read_stderr() or ""
            if resp.is_open():
                raise K8sError(f"{what}: no exit within {timeout_s:g}s")
            raw = resp.read_channel(3) or ""
        finally:
            resp.close()
        return _exec_status(raw, out, err)


def _exec_status(raw: str, out: str, err: str) -> ExecResult:
    """Channel 3 → exit code, handling kubelet's ``InternalError`` Status that has no details."""
    if not raw:
        return ExecResult(rc=0, stdout=out, stderr=err)
    try:
        st = json.loads(raw)
    except ValueError:
        return ExecResult(rc=-1, stdout=out, stderr=err, started=False, error=raw[:200])
    if st.get("status") == "Success":
        return ExecResult(rc=0, stdout=out, stderr=err)
    causes = ((st.get("details") or {}).get("causes")) or []
    for c in causes:
        if c.get("reason") == "ExitCode":
            try:
                return ExecResult(rc=int(c.get("message", "")), stdout=out, stderr=err)
            except ValueError:
                break
    return ExecResult(rc=-1, stdout=out, stderr=err, started=False, error=str(st.get("message", ""))[:300])
