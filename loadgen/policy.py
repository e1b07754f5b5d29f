"""Where a policy variant can be applied: the :class:`PolicyTarget` seam, and the local lab's one.

What it is
    :class:`PolicyTarget` is the small interface ``loadgen sweep`` drives to try candidate Istio
    policies (DestinationRule / VirtualService YAML) one after the other and to put back what was
    there before. Implementations: :class:`LabPolicyTarget` (the local Envoy lab, here) and
    ``K8sPolicyTarget`` (a Kubernetes namespace, :mod:`loadgen.k8s`). The contract:

    * ``describe()`` — one line for people: ``"local lab (state dir /tmp/x)"``.
    * ``admin_url()`` — the Envoy admin URL whose stats are read around every run (``""`` when
      there is none; the sweep then runs without Envoy correlation).
    * ``apply(files)`` — make the variant in ``files`` (paths of YAML files) the policy in force,
      and return what was done, for people (``"hot-restarted Envoy (epoch 1 -> 2) …"``). It returns
      once the new policy is serving. It has ``kubectl apply`` semantics: a document replaces the
      target's document of the same kind, namespace and name (and, in the lab, a DestinationRule
      or VirtualService for the same host); everything else the target holds stays. Bad YAML or an
      invalid resource raises :class:`~loadgen.errors.UsageError` naming the file, document and
      field; nothing is changed then. Successive ``apply`` calls each start from what was there
      *before the first one* (variant B never inherits a document that only variant A had).
    * ``restore()`` — put back exactly what was in force before the first ``apply``. Idempotent; a
      no-op when nothing was applied. The sweep calls it in ``finally`` (errors, SIGINT).

    Optional extras the sweep uses when present (not part of the Protocol, so other targets need
    not have them): ``check(files) -> None`` validates a variant without applying it (the sweep
    checks every variant before the first run) and ``current_policy() -> str`` gives the YAML in
    force before the sweep (saved as the policy of the variant ``current``).

What it is not: no load, no sweep logic (:mod:`loadgen.sweep`), no YAML translation
(:mod:`loadgen.lab.istio`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from loadgen.errors import UsageError


@runtime_checkable
class PolicyTarget(Protocol):
    """A place where a policy variant can be applied (see the module docstring for the contract)."""

    def describe(self) -> str: ...

    def admin_url(self) -> str: ...

    def apply(self, files: list[str]) -> str: ...

    def restore(self) -> None: ...


# ------------------------------------------------------------------------------ the local lab

_KINDS = ("DestinationRule", "VirtualService")


def _fqdn(host: str, namespace: str) -> str:
    """Istio's short-name rule: a name without a dot lives in the resource's namespace."""
    return host if "." in host else f"{host}.{namespace}.svc.cluster.local"


def _claims(doc: Any, default_ns: str) -> set[tuple[str, str]]:
    """What a document takes over: its (kind, ns/name) and, for DR/VS, (kind, host) per host."""
    if not isinstance(doc, dict):
        return set()
    kind = str(doc.get("kind", ""))
    m, sp = doc.get("metadata"), doc.get("spec")
    meta: dict[str, Any] = m if isinstance(m, dict) else {}
    spec: dict[str, Any] = sp if isinstance(sp, dict) else {}
    ns = str(meta.get("namespace") or default_ns)
    out = {(kind, f"name:{ns}/{meta.get('name', '')}")}
    if kind == "DestinationRule" and isinstance(spec.get("host"), str):
        out.add((kind, "host:" + _fqdn(spec["host"], ns)))
    elif kind == "VirtualService" and isinstance(spec.get("hosts"), list):
        out.update((kind, "host:" + _fqdn(str(h), ns)) for h in spec["hosts"])
    return out


class LabPolicyTarget:
    """The local lab of ``loadgen lab up`` (its state directory): variants go in with ``apply_lab``
    (a hot restart of Envoy), and ``restore`` applies the YAML texts the lab ran before the first
    ``apply`` (``LabState.sources``, written to temporary files), then records the original paths
    again in the lab's state. Each operation takes the lab's lock.

    A variant is merged into the lab's original YAML (``kubectl apply``-like): original documents
    of the same kind and name, or DestinationRules/VirtualServices for a host the variant covers,
    are dropped; the rest (other services' rules, the topology) stays, so ``lab://`` URLs keep
    working."""

    def __init__(self, state_dir: str | Path | None = None, timeout: float = 30.0) -> None:
        from loadgen.lab import state as st

        self.state_dir = st.resolve_state_dir(str(state_dir) if state_dir else None)
        self.timeout = timeout
        lab = self._lab()
        self._sources: list[dict[str, str]] = [dict(s) for s in lab.sources]
        self._topology: dict[str, str] | None = dict(lab.topology) if lab.topology else None
        self._namespace = lab.namespace
        self._admin = lab.admin_url
        self._changed = False

    # --- the Protocol ------------------------------------------------------------------------
    def describe(self) -> str:
        return f"local lab (state dir {self.state_dir})"

    def admin_url(self) -> str:
        return str(self._admin)

    def apply(self, files: list[str]) -> str:
        with self._inputs(files) as (paths, topo):
            return self._apply(paths, topo, record=None)

    def restore(self) -> None:
        if not self._changed:
            return
        with self._tmpdir() as d:
            paths = [self._write(d, s["path"], s["text"], i) for i, s in enumerate(self._sources)]
            topo = (
                self._write(d, self._topology["path"], self._topology["text"], 0) if self._topology else None
            )
            self._apply(paths, topo, record=self._sources)
        self._changed = False

    # --- extras ------------------------------------------------------------------------------
    def check(self, files: list[str]) -> None:
        """Translate the merged YAML like ``apply`` would, without touching the lab."""
        from loadgen.lab.inputs import read_inputs

        with self._inputs(files) as (paths, topo):
            read_inputs(paths, topo, self._namespace)

    def current_policy(self) -> str:
        """The YAML the lab ran before the sweep (every source file, separated by ``---``)."""
        return "\n---\n".join(s["text"].strip("\n") for s in self._sources) + "\n"

    def services(self) -> dict[str, str]:
        """FQDN -> listener URL of the running lab."""
        return dict(self._lab().services)

    # --- internals ---------------------------------------------------------------------------
    def _lab(self) -> Any:
        from loadgen.lab import state as st

        lab = st.load(self.state_dir)
        if lab is None:
            raise UsageError(
                f"no lab is running (no state in {self.state_dir}); start one with 'loadgen lab up -f FILE'"
            )
        env = lab.envoy_proc()
        if env is None or st.proc_status(env) != "running":
            raise UsageError(f"the lab in {self.state_dir} is not running (its Envoy is gone)")
        return lab

    @contextlib.contextmanager
    def _tmpdir(self) -> Iterator[str]:
        d = tempfile.mkdtemp(prefix="loadgen-policy-")
        try:
            yield d
        finally:
            shutil.rmtree(d, ignore_errors=True)

    @staticmethod
    def _write(d: str, path: str, text: str, i: int) -> str:
        sub = os.path.join(d, str(i))
        os.makedirs(sub, exist_ok=True)
        out = os.path.join(sub, os.path.basename(path) or "policy.yaml")
        with open(out, "w", encoding="utf-8") as fh:
            fh.write(text)
        return out

    @contextlib.contextmanager
    def _inputs(self, files: Sequence[str]) -> Iterator[tuple[list[str], str | None]]:
        """The original sources minus what the variant takes over (temp files), then the variant's
        own files by their real paths (so translation errors name them)."""
        import yaml  # type: ignore[import-untyped]

        claims: set[tuple[str, str]] = set()
        for f in files:
            try:
                text = Path(f).read_text()
            except OSError as exc:
                raise UsageError(f"-variant {f}: cannot read ({exc.strerror or exc})") from None
            try:
                docs = list(yaml.safe_load_all(text))
            except yaml.YAMLError:
                docs = []  # the lab's translation reports the error with its line
            for doc in docs:
                claims |= _claims(doc, self._namespace)
        with self._tmpdir() as d:
            paths: list[str] = []
            for i, s in enumerate(self._sources):
                docs = [x for x in yaml.safe_load_all(s["text"]) if x is not None]
                keep = [x for x in docs if not (_claims(x, self._namespace) & claims)]
                if len(keep) == len(docs):
                    paths.append(self._write(d, s["path"], s["text"], i))
                elif keep:
                    paths.append(self._write(d, s["path"], yaml.safe_dump_all(keep, sort_keys=False), i))
            topo = None
            if self._topology:
                topo = self._write(d, self._topology["path"], self._topology["text"], len(self._sources))
            yield [*paths, *(str(Path(f).absolute()) for f in files)], topo

    def _apply(self, paths: list[str], topo: str | None, record: list[dict[str, str]] | None) -> str:
        from loadgen.lab import state as st
        from loadgen.lab.inputs import read_inputs
        from loadgen.lab.lifecycle import apply_lab

        with st.locked(self.state_dir):
            lab = self._lab()
            inp = read_inputs(paths, topo, self._namespace)
            self._changed = True
            how = apply_lab(lab, inp, self.state_dir, force_restart=False, timeout=self.timeout)
            if record is not None:  # the original paths, not the temp copies
                lab.sources = [dict(s) for s in record]
                lab.topology = dict(self._topology) if self._topology else None
            elif self._topology:
                lab.topology = dict(self._topology)
            st.save(lab)
        self._admin = str(lab.admin_url)
        return str(how)
