"""What ``loadgen lab`` starts from: the user's files, read by :func:`read_inputs` (the ``-f`` files
and the ``-topology`` file go to :func:`loadgen.lab.istio.load`; the topology's ``kind`` and
``workers`` keys, which only the lab reads, are taken here), the upstream processes they call for
(:func:`plan_upstreams`), and the check that Envoy, and gunicorn and httpbin when needed, are
installed (:func:`check_components`). Nothing is started here: that is
:mod:`loadgen.lab.lifecycle`."""

from __future__ import annotations

import contextlib
import importlib
import os
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loadgen.errors import UsageError
from loadgen.lab import supervise as sv

if TYPE_CHECKING:
    from loadgen.lab.model import LabSpec


@dataclass
class Inputs:
    """The user's files as read (paths and texts), the parsed spec, and the upstream kinds."""

    spec: LabSpec
    sources: list[dict[str, str]]
    topology: dict[str, str] | None
    namespace: str
    kinds: dict[str, tuple[str, int]]  # FQDN -> (kind, workers)


def _read_text(path: str, what: str) -> str:
    try:
        return Path(path).read_text()
    except FileNotFoundError:
        raise UsageError(f"{what} {path}: no such file") from None
    except IsADirectoryError:
        raise UsageError(f"{what} {path}: is a directory") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{what} {path}: cannot read ({exc})") from None


def _topology_kinds(text: str, path: str) -> dict[str, tuple[str | None, int | None]]:
    """``kind`` and ``workers`` per service name from a topology file (everything else is istio's)."""
    yaml: Any = importlib.import_module("yaml")
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise UsageError(f"{path}: invalid YAML ({str(exc).splitlines()[0]})") from None
    entries: list[tuple[str, Any]] = []
    if isinstance(doc, dict) and "apiVersion" in doc:  # a lab.loadgen.io/v1alpha1 Topology document
        doc = doc.get("spec")
    services = doc.get("services") if isinstance(doc, dict) else None
    if isinstance(services, dict):
        entries = [(str(k), v) for k, v in services.items()]
    elif isinstance(services, list):
        for i, e in enumerate(services):
            if isinstance(e, dict):
                name = e.get("name") or e.get("host")
                if not name:
                    raise UsageError(f"{path}: services[{i}]: needs a name")
                entries.append((str(name), e))
    out: dict[str, tuple[str | None, int | None]] = {}
    for name, e in entries:
        if not isinstance(e, dict):
            continue
        kind = e.get("kind")
        if kind is not None and kind not in sv.KINDS:
            raise UsageError(f"{path}: service {name}: kind {kind!r} is not one of {', '.join(sv.KINDS)}")
        workers = e.get("workers")
        if workers is not None and (not isinstance(workers, int) or not 1 <= workers <= 64):
            raise UsageError(f"{path}: service {name}: workers must be an integer in 1..64")
        out[name] = (kind, workers)
    return out


_LAB_KEYS = ("kind", "workers")


@contextlib.contextmanager
def _istio_topology(topo: dict[str, str]) -> Iterator[str]:
    """The topology path to hand to :func:`istio.load`: a copy without the keys only this module reads."""
    yaml: Any = importlib.import_module("yaml")
    doc = yaml.safe_load(topo["text"])
    body = doc.get("spec") if isinstance(doc, dict) and "apiVersion" in doc else doc
    entries = body.get("services") if isinstance(body, dict) else None
    if not isinstance(entries, list) or not any(
        isinstance(e, dict) and set(e) & set(_LAB_KEYS) for e in entries
    ):
        yield topo["path"]
        return
    for e in entries:
        if isinstance(e, dict):
            for k in _LAB_KEYS:
                e.pop(k, None)
    fd, tmp = tempfile.mkstemp(prefix="loadgen-topology-", suffix=".yaml")
    try:
        with os.fdopen(fd, "w") as fh:
            yaml.safe_dump(doc, fh, sort_keys=False)
        yield tmp
    finally:
        os.unlink(tmp)


def read_inputs(files: Sequence[str], topology: str | None, namespace: str) -> Inputs:
    if not files:
        raise UsageError("give the Istio YAML with -f FILE (repeatable)")
    sources = [{"path": str(Path(f).absolute()), "text": _read_text(f, "-f")} for f in files]
    topo = None
    if topology:
        topo = {"path": str(Path(topology).absolute()), "text": _read_text(topology, "-topology")}
    try:
        from loadgen.lab import istio
    except ImportError as exc:
        raise UsageError(f"the lab needs PyYAML: pip install 'loadgen[lab]' ({exc})") from None
    declared = _topology_kinds(topo["text"], topo["path"]) if topo else {}
    paths = [s["path"] for s in sources]
    if topo is None:
        spec = istio.load(paths, None, namespace=namespace)
    else:
        with _istio_topology(topo) as topo_path:
            try:
                spec = istio.load(paths, topo_path, namespace=namespace)
            except UsageError as exc:
                raise UsageError(str(exc).replace(topo_path, topo["path"])) from None
    kinds: dict[str, tuple[str, int]] = {}
    for svc in spec.services:
        kind, workers = declared.get(svc.host) or declared.get(svc.short) or (None, None)
        kinds[svc.host] = (kind or ("httpbin" if svc.short == "httpbin" else "app"), workers or 2)
    return Inputs(spec, sources, topo, namespace, kinds)


def plan_upstreams(inp: Inputs) -> list[sv.Upstream]:
    """One :class:`~loadgen.lab.supervise.Upstream` per (service, version, replica)."""
    out: list[sv.Upstream] = []
    for svc in inp.spec.services:
        kind, workers = inp.kinds[svc.host]
        labels = {s.name: s.labels for s in svc.subsets}
        for subset in svc.versions():
            version = labels.get(subset, {}).get("version") or subset or "v1"
            for r in range(max(1, svc.replicas)):
                out.append(
                    sv.Upstream(
                        host=svc.host,
                        short=svc.short,
                        subset=subset,
                        version=version,
                        replica=r,
                        kind=kind,
                        workers=workers,
                    )
                )
    return out


def check_components(plan: Sequence[sv.Upstream]) -> str:
    """Fail early, with the install hint, when Envoy (or gunicorn/httpbin when needed) is missing."""
    envoy = sv.find_envoy()
    if any(u.kind == "httpbin" for u in plan):
        sv.find_gunicorn()
        sv.require_httpbin()
    return envoy
