"""``K8sPolicyTarget``: apply Istio DestinationRule/VirtualService variants in a namespace and restore.

What it is: the Kubernetes implementation of the sweep's ``PolicyTarget`` protocol
(``describe()``, ``admin_url()``, ``apply(files) -> str``, ``restore()``). ``apply`` reads YAML/JSON
files (one or more documents), remembers each object as it was (or that it was absent), applies
them with server-side apply (``networking.istio.io/v1``, falling back to ``v1beta1`` when v1 is not
served), then polls the client sidecar's config dump (``pilot-agent request GET config_dump``
through exec) until every DestinationRule's clusters (``outbound|PORT|SUBSET|HOST``) show the
thresholds and outlier detection it declares (:mod:`loadgen.k8s.clusters`) and every
VirtualService's routes show as declared
(:mod:`loadgen.k8s.routes`), or fails after ``timeout_s`` with what it saw. ``restore``
re-applies the remembered objects (and deletes the ones that did not exist) — the sweep calls it
in ``finally``, so it also runs after an interrupt.

What it is not: no validation of Istio semantics beyond what it waits for.
"""

from __future__ import annotations

import contextlib
import json
import time
from typing import Any

from loadgen.errors import RunError, UsageError
from loadgen.k8s import clusters
from loadgen.k8s.client import K8sNotFound, Kube
from loadgen.k8s.names import check_label, check_subdomain

GROUP = "networking.istio.io"
PLURALS = {"DestinationRule": "destinationrules", "VirtualService": "virtualservices"}
FIELD_MANAGER = "loadgen"


def load_objects(files: list[str]) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in files:
        try:
            with open(path, encoding="utf-8") as fh:
                text = fh.read()
        except OSError as exc:
            raise UsageError(f"cannot read variant {path!r}: {exc.strerror}") from None
        try:
            import yaml  # type: ignore[import-untyped]

            found = [d for d in yaml.safe_load_all(text) if d]
        except ImportError:
            found = [json.loads(text)]
        except Exception as exc:
            raise UsageError(f"variant {path!r} is not valid YAML: {exc}") from None
        for d in found:
            if not isinstance(d, dict) or d.get("kind") not in PLURALS:
                raise UsageError(f"variant {path!r}: only DestinationRule and VirtualService are supported")
            check_subdomain(str((d.get("metadata") or {}).get("name", "")), f"{d['kind']} name")
            docs.append(d)
    return docs


class K8sPolicyTarget:
    """See the module docstring. ``client_pod`` is ``NAME`` or ``deploy/NAME`` (its sidecar is read)."""

    def __init__(
        self,
        namespace: str,
        client_pod: str,
        kubeconfig: str = "",
        context: str = "",
        container: str = "istio-proxy",
        timeout_s: float = 30.0,
        kube: Kube | None = None,
    ) -> None:
        self.namespace = check_label(namespace, "namespace")
        kind, _, name = client_pod.rpartition("/")
        self.client_kind = {"": "pod", "pod": "pod", "deploy": "deploy", "deployment": "deploy"}.get(kind, "")
        if not self.client_kind:
            raise UsageError(f"client pod {client_pod!r}: expected NAME, pod/NAME or deploy/NAME")
        self.client_name = check_subdomain(name, "client pod name")
        self.container = container
        self.timeout_s = timeout_s
        self.kube = kube or Kube(kubeconfig, context)
        self._version = ""
        self._saved: list[tuple[str, str, dict[str, Any] | None]] = []  # (plural, name, previous)
        self.last_propagation_s = 0.0

    def describe(self) -> str:
        return f"Istio policies in namespace {self.namespace} (client {self.client_kind}/{self.client_name})"

    def admin_url(self) -> str:
        return f"exec://{self.namespace}/{self.client_kind}/{self.client_name}?container={self.container}"

    def version(self) -> str:
        if not self._version:
            self._version = "v1"
            try:
                self.kube.call(
                    "list destinationrules",
                    self.kube.custom.list_namespaced_custom_object,
                    GROUP,
                    "v1",
                    self.namespace,
                    "destinationrules",
                    limit=1,
                )
            except K8sNotFound:
                self._version = "v1beta1"
        return self._version

    def _get(self, plural: str, name: str) -> dict[str, Any] | None:
        try:
            obj = self.kube.call(
                f"get {plural} {self.namespace}/{name}",
                self.kube.custom.get_namespaced_custom_object,
                GROUP,
                self.version(),
                self.namespace,
                plural,
                name,
            )
        except K8sNotFound:
            return None
        return dict(obj) if isinstance(obj, dict) else None

    def _apply(self, obj: dict[str, Any]) -> None:
        plural = PLURALS[obj["kind"]]
        name = obj["metadata"]["name"]
        body = {
            "apiVersion": f"{GROUP}/{self.version()}",
            "kind": obj["kind"],
            "metadata": {
                "name": name,
                "namespace": self.namespace,
                **({"labels": obj["metadata"]["labels"]} if obj["metadata"].get("labels") else {}),
            },
            "spec": obj.get("spec") or {},
        }
        self.kube.call(
            f"apply {plural} {self.namespace}/{name}",
            self.kube.custom.patch_namespaced_custom_object,
            GROUP,
            self.version(),
            self.namespace,
            plural,
            name,
            body,
            field_manager=FIELD_MANAGER,
            force=True,
            _content_type="application/apply-patch+yaml",
        )

    def apply(self, files: list[str]) -> str:
        objs = load_objects(files)
        for o in objs:
            plural, name = PLURALS[o["kind"]], o["metadata"]["name"]
            if not any(p == plural and n == name for p, n, _ in self._saved):
                self._saved.append((plural, name, self._get(plural, name)))
        for o in objs:
            self._apply(o)
        want: dict[str, clusters.Fields] = {}
        for o in objs:
            if o["kind"] == "DestinationRule":
                want.update(clusters.expected_clusters(o, self.namespace))
        self.last_propagation_s = self.wait_for(want)
        services = [o for o in objs if o["kind"] == "VirtualService"]
        if services:
            from loadgen.lab.istio_delegate import merge_delegates

            # what the sidecar gets: roots with the delegates among the files merged in (a root
            # whose delegate lives only in the cluster cannot be predicted: not waited for)
            merged = merge_delegates(services, self.namespace, keep_unresolved=True).docs
            self.last_propagation_s += self.wait_for_routes(merged)
        names = ", ".join(f"{o['kind']}/{o['metadata']['name']}" for o in objs)
        return f"applied {names} ({self.version()}); sidecar had it after {self.last_propagation_s:.2f}s"

    def config_dump(self, resource: str = "dynamic_active_clusters") -> dict[str, Any]:
        from loadgen.k8s.sidecar import ExecAdmin

        pod = self.kube.ready_pod(self.namespace, self.client_kind, self.client_name)
        admin = ExecAdmin(self.kube, self.namespace, pod.metadata.name, self.container)
        doc = admin.get_json("/config_dump", {"resource": resource})
        return doc if isinstance(doc, dict) else {}

    def wait_for_routes(self, services: list[dict[str, Any]], poll_s: float = 0.25) -> float:
        """Poll the route config dump until every VirtualService's routes show as declared."""
        from loadgen.k8s import routes

        t0 = time.monotonic()
        while True:
            dump = self.config_dump("dynamic_route_configs")
            missing = [vs for vs in services if not routes.arrived(dump, self.namespace, vs)]
            if not missing:
                return time.monotonic() - t0
            if time.monotonic() - t0 > self.timeout_s:
                vs = missing[0]
                name = str((vs.get("metadata") or {}).get("name", ""))
                seen = routes.dump_sequences(dump, self.namespace, name)
                raise RunError(
                    f"the client sidecar did not show VirtualService {name} within {self.timeout_s:g}s "
                    f"(its routes there: {json.dumps(seen)[:300] if seen else 'none'})"
                )
            time.sleep(poll_s)

    def wait_for(self, want: dict[str, clusters.Fields], poll_s: float = 0.25) -> float:
        """Poll the config dump until every wanted cluster setting is there (:mod:`loadgen.k8s.
        clusters`); seconds it took."""
        t0 = time.monotonic()
        if not want:
            return 0.0
        while True:
            seen = clusters.dump_clusters(self.config_dump())
            if clusters.arrived(want, seen):
                return time.monotonic() - t0
            if time.monotonic() - t0 > self.timeout_s:
                suffix, fields = next((k, v) for k, v in want.items() if not clusters.arrived({k: v}, seen))
                have = {n: f for n, f in seen.items() if n.endswith(suffix)}
                raise RunError(
                    f"the client sidecar did not show the clusters *{suffix} as {fields} within "
                    f"{self.timeout_s:g}s (it has: {json.dumps(have)[:400] if have else 'no such cluster'})"
                )
            time.sleep(poll_s)

    def restore(self) -> None:
        """Put back what was there before the first apply (delete what did not exist)."""
        saved, self._saved = self._saved, []
        for plural, name, prev in reversed(saved):
            if prev is None:
                with contextlib.suppress(K8sNotFound):
                    self.kube.call(
                        f"delete {plural} {self.namespace}/{name}",
                        self.kube.custom.delete_namespaced_custom_object,
                        GROUP,
                        self.version(),
                        self.namespace,
                        plural,
                        name,
                    )
            else:
                self._apply(prev)
