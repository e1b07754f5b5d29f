"""``loadgen lab``: bring a local mesh lab up, inspect it, change it, take it down.

Commands (fortio-style single-dash flags; ``--flag`` works too)::

    loadgen lab up -f FILE [-f FILE ...] [-topology FILE] [-json PATH|-] [-state-dir DIR]
                   [-admin-port N] [-concurrency N] [-namespace NS] [-timeout 20s]
    loadgen lab status [-json PATH|-] [-state-dir DIR]
    loadgen lab apply -f FILE [-f FILE ...] [-topology FILE] [-restart] [-state-dir DIR]
    loadgen lab down [-state-dir DIR]
    loadgen lab config [-f FILE ... [-topology FILE]] [-state-dir DIR]
    loadgen lab show [SCENARIO]
    loadgen lab run SCENARIO [flags]      (the scenario runner, :mod:`loadgen.lab.scenarios_run`)

``up`` reads the Istio YAML (:func:`loadgen.lab.istio.load`), starts one upstream process per
(service, version, replica) and one Envoy playing the client's sidecar
(:func:`loadgen.lab.render.render_yaml`), all on 127.0.0.1 and in parallel, waits until all are
ready and prints ``{"admin", "services", "upstreams", "state_dir"}`` as JSON (``-json PATH``
also writes it there; ``-json -`` prints only the JSON). Ports are free ones unless
``-admin-port`` is given.

Upstream kinds. A service named ``httpbin`` runs httpbin under gunicorn; any other service runs
the built-in Bookinfo-shaped app (:mod:`loadgen.lab.apps`). The ``-topology`` file may choose,
per service, ``kind: httpbin | app | serve`` (``serve`` is ``loadgen serve``, the fortio-style echo
server) and ``workers: N`` (gunicorn workers, default 2). Those two keys are read here, from the
``-topology`` file only, and stripped from the copy handed to :func:`loadgen.lab.istio.load`,
which reads everything else (services, versions, replicas, ports)::

    services:
      - name: reviews        # short name or FQDN
        kind: app
      - name: echo
        kind: serve
        replicas: 2

``apply`` keeps the topology given to ``up`` unless ``-topology FILE`` is given (``-topology ""``
drops it), re-renders the config and hot-restarts Envoy (``--restart-epoch`` with the same base id:
the listeners and admin port stay, the old epoch drains for 1 s and exits) or, with ``-restart``
or when the hot restart fails, stops it and starts a new one; it prints which. Upstreams whose
command line is unchanged keep running; new ones start, removed ones stop. The new config is
first checked with ``envoy --mode validate`` so that a rejected one leaves the lab untouched. A hot
restart keeps Envoy's counters (the new epoch takes over the old one's stats), a full restart
starts them from zero: compare deltas, not absolute values, across an ``apply``.

``down`` stops only the processes recorded in the state directory (:mod:`loadgen.lab.state`)
whose ``/proc/PID/cmdline`` still matches, and removes the state.

What it is not: the translation of Istio resources (``istio``/``render``) and the scenarios
(``scenarios_run``) live elsewhere; this module wires them to the processes.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.resources
import importlib.util
import json
import os
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from loadgen.durations import parse_seconds
from loadgen.errors import LoadgenError, RunError, UsageError
from loadgen.lab import state as st
from loadgen.lab import supervise as sv
from loadgen.lab.ports import HOST, PortPool

if TYPE_CHECKING:
    from loadgen.lab.model import LabSpec

USAGE = """\
usage: loadgen lab COMMAND [flags]

commands:
  up -f FILE [-f FILE ...]   start upstreams and Envoy from Istio YAML; print admin/services URLs
  status                     what is running (and whether the recorded processes are still alive)
  apply -f FILE [...]        re-render the Envoy config and hot-restart (or restart) Envoy
  down                       stop the lab's processes (by the PIDs in the state dir) and remove the state
  config [-f FILE ...]       print the rendered Envoy bootstrap (of the running lab, or of FILEs)
  show [SCENARIO]            print a packaged scenario's YAML (no name: list them)
  run SCENARIO               run a packaged scenario and print its verdict
common flags: -state-dir DIR (default $LOADGEN_LAB_DIR, $XDG_STATE_HOME/loadgen/lab or
~/.local/state/loadgen/lab)
"""

DEFAULT_TIMEOUT_S = 20.0
HOT_RESTART_EXIT_WAIT_S = sv.PARENT_SHUTDOWN_TIME_S + 3.0


# ------------------------------------------------------------------------------------------ flags


class _Parser(argparse.ArgumentParser):
    """argparse that raises :class:`UsageError` (one line, exit 2) instead of printing usage."""

    def error(self, message: str) -> Any:
        raise UsageError(f"{self.prog}: {message}")


def _parser(cmd: str) -> _Parser:
    p = _Parser(prog=f"loadgen lab {cmd}", allow_abbrev=False, add_help=True)
    p.add_argument("-state-dir", "--state-dir", dest="state_dir", metavar="DIR")
    return p


def _add_inputs(p: argparse.ArgumentParser, required: bool) -> None:
    p.add_argument(
        "-f",
        "--filename",
        dest="files",
        action="append",
        default=[],
        metavar="FILE",
        required=required,
        help="Istio YAML (DestinationRule, VirtualService); repeatable",
    )
    p.add_argument(
        "-topology", "--topology", metavar="FILE", help="extra services, versions, replicas, kinds"
    )
    p.add_argument("-namespace", "--namespace", default="default", help="namespace of short hosts")


def _duration_s(text: str) -> float:
    try:
        return parse_seconds(text, bare_seconds=True)
    except ValueError:
        raise UsageError(f"bad duration {text!r} (e.g. 20s, 500ms)") from None


# ------------------------------------------------------------------------------------------ inputs


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


# ------------------------------------------------------------------------------------------ starting


def _render(
    spec: LabSpec,
    admin: int,
    listeners: dict[str, int],
    endpoints: dict[tuple[str, str], list[tuple[str, int]]],
    logs_dir: Path,
) -> str:
    from loadgen.lab import render

    ups: dict[tuple[str, str], tuple[tuple[str, int], ...]] = {k: tuple(v) for k, v in endpoints.items()}
    ports = render.Ports(admin=admin, listeners=dict(listeners), upstreams=ups)
    return str(render.render_yaml(spec, ports, access_log_dir=str(logs_dir)))


def _endpoints(records: Sequence[tuple[sv.Upstream, int]]) -> dict[tuple[str, str], list[tuple[str, int]]]:
    eps: dict[tuple[str, str], list[tuple[str, int]]] = {}
    for u, port in records:
        if u.subset:
            eps.setdefault((u.host, u.subset), []).append((HOST, port))
        eps.setdefault((u.host, ""), []).append((HOST, port))
    return eps


def _lab_urls(spec: LabSpec, listeners: dict[str, int]) -> dict[str, str]:
    return {s.short: f"http://{HOST}:{listeners[s.host]}" for s in spec.services}


def _spawn_upstream(u: sv.Upstream, port: int, sd: Path, lab_urls: dict[str, str]) -> sv.Starting:
    logs = sd / "logs"
    access = str(logs / f"{u.file_stem}.access.log")
    argv = sv.upstream_argv(u, port, access, lab_urls)
    return sv.spawn(
        u.name,
        "upstream",
        argv,
        str(logs / f"{u.file_stem}.log"),
        probe_port=port,
        probe_path=sv.health_path(u.kind),
        python_env=u.kind != "httpbin",
    )


def _upstream_record(c: sv.Starting, u: sv.Upstream, port: int) -> st.ProcRecord:
    access = (
        c.argv[c.argv.index("--access-logfile") + 1]
        if u.kind == "httpbin"
        else (c.argv[c.argv.index("-access-log" if u.kind == "serve" else "--access-log") + 1])
    )
    return c.record(
        port=port,
        url=f"http://{HOST}:{port}",
        host=u.host,
        subset=u.subset,
        version=u.version,
        replica=u.replica,
        kind=u.kind,
        access_log=access,
    )


def _spawn_envoy(
    binary: str, sd: Path, config_text: str, admin: int, epoch: int, base_id: int | None, concurrency: int
) -> sv.Starting:
    edir = sd / "envoy"
    edir.mkdir(parents=True, exist_ok=True)
    cfg = edir / f"bootstrap.{epoch}.yaml"
    cfg.write_text(config_text)
    log = str(edir / f"envoy.{epoch}.log")
    argv = sv.envoy_argv(
        binary,
        str(cfg),
        log,
        epoch=epoch,
        base_id=base_id,
        base_id_path=str(edir / "base_id"),
        concurrency=concurrency,
    )
    return sv.spawn(
        f"envoy (epoch {epoch})",
        "envoy",
        argv,
        str(edir / f"envoy.{epoch}.out"),
        probe_port=admin,
        probe_path="/server_info",
        cwd=str(edir),
        extra_logs=[log],
        expect_epoch=epoch,
        detach=True,
    )


def _read_base_id(sd: Path) -> int:
    try:
        return int((sd / "envoy" / "base_id").read_text().strip())
    except (OSError, ValueError):
        raise RunError(f"Envoy did not write its base id to {sd / 'envoy' / 'base_id'}") from None


def start_lab(inp: Inputs, sd: Path, *, admin_port: int, concurrency: int, timeout: float) -> st.LabState:
    """Start everything in parallel, wait until ready; on failure stop what was started and raise."""
    plan = plan_upstreams(inp)
    binary = check_components(plan)
    (sd / "logs").mkdir(parents=True, exist_ok=True)
    started: list[sv.Starting] = []
    try:
        with PortPool() as pool:
            admin = pool.take(admin_port, "-admin-port")
            listeners = {s.host: pool.take() for s in inp.spec.services}
            ports = [(u, pool.take()) for u in plan]
            text = _render(inp.spec, admin, listeners, _endpoints(ports), sd / "logs")
            pool.release()
            urls = _lab_urls(inp.spec, listeners)
            ups = [_spawn_upstream(u, port, sd, urls) for u, port in ports]
            started += ups
            envoy = _spawn_envoy(binary, sd, text, admin, 0, None, concurrency)
            started.append(envoy)
        sv.wait_ready(started, timeout)
        recs = [_upstream_record(c, u, port) for c, (u, port) in zip(ups, ports, strict=True)]
        base_id = _read_base_id(sd)
    except BaseException:
        sv.kill_starting(started)
        raise
    env_rec = envoy.record(port=admin, url=f"http://{HOST}:{admin}")
    return st.LabState(
        state_dir=str(sd),
        admin_url=f"http://{HOST}:{admin}",
        services={h: f"http://{HOST}:{p}" for h, p in listeners.items()},
        listeners=listeners,
        envoy=st.EnvoyInfo(
            binary=binary,
            base_id=base_id,
            epoch=0,
            concurrency=concurrency,
            config_path=envoy.argv[envoy.argv.index("-c") + 1],
            admin_port=admin,
        ),
        procs=[env_rec, *recs],
        sources=inp.sources,
        topology=inp.topology,
        namespace=inp.namespace,
        started=time.time(),
        warnings=list(inp.spec.warnings),
    )


# ------------------------------------------------------------------------------------------ output


def _emit_json(doc: dict[str, Any], dest: str | None, out: IO[str]) -> None:
    text = json.dumps(doc, indent=2, sort_keys=True) + "\n"
    if dest and dest != "-":
        try:
            Path(dest).write_text(text)
        except OSError as exc:
            raise UsageError(f"-json {dest}: cannot write ({exc.strerror})") from None
    out.write(text)


def _warn(lines: Sequence[str]) -> None:
    for w in lines:
        print(f"loadgen lab: warning: {w}", file=sys.stderr)


# ------------------------------------------------------------------------------------------ commands


def _running(lab: st.LabState) -> list[st.ProcRecord]:
    return [p for p in lab.procs if st.proc_status(p) == "running"]


def cmd_up(argv: list[str]) -> int:
    p = _parser("up")
    _add_inputs(p, required=True)
    p.add_argument("-json", "--json", metavar="PATH|-", help="also write the JSON there ('-': only JSON)")
    p.add_argument(
        "-admin-port", "--admin-port", type=int, default=0, help="Envoy admin port (default: a free one)"
    )
    p.add_argument("-concurrency", "--concurrency", type=int, default=1, help="Envoy worker threads (1)")
    p.add_argument("-timeout", "--timeout", default="20s", help="readiness deadline (20s)")
    ns = p.parse_args(argv)
    if ns.concurrency < 1:
        raise UsageError("-concurrency must be at least 1")
    timeout = _duration_s(ns.timeout)
    sd = st.resolve_state_dir(ns.state_dir)
    t0 = time.monotonic()
    with st.locked(sd):
        old = st.load(sd)
        if old is not None:
            if _running(old):
                raise UsageError(
                    f"a lab is already running (state dir {sd}, admin {old.admin_url}); stop it with "
                    "'loadgen lab down' or change it with 'loadgen lab apply -f FILE'"
                )
            sv.stop(old.procs)  # leftovers of a stale lab's process groups, if any
            st.remove(sd)
            print(
                f"loadgen lab: removed the stale state of a lab that is no longer running ({sd})",
                file=sys.stderr,
            )
        inp = read_inputs(ns.files, ns.topology, ns.namespace)
        st.remove_leftovers(sd)  # logs of an earlier failed start (kept for the user until now)
        lab = start_lab(inp, sd, admin_port=ns.admin_port, concurrency=ns.concurrency, timeout=timeout)
        try:
            st.save(lab)
        except BaseException:
            sv.stop(lab.procs)
            raise
    _warn(lab.warnings)
    _emit_json(lab.summary(), ns.json, sys.stdout)
    if ns.json != "-":
        print(
            f"loadgen lab: up in {time.monotonic() - t0:.2f} s ({len(lab.procs)} processes, state dir {sd})",
            file=sys.stderr,
        )
    return 0


def _require_lab(sd: Path) -> st.LabState:
    lab = st.load(sd)
    if lab is None:
        raise UsageError(f"no lab is running (no state in {sd}); start one with 'loadgen lab up -f FILE'")
    return lab


def _envoy_ready(admin_url: str) -> str:
    got = sv._http_get(int(admin_url.rsplit(":", 1)[1]), "/ready", 1.0)
    return got[1].decode(errors="replace").strip() if got else "unreachable"


def cmd_status(argv: list[str]) -> int:
    p = _parser("status")
    p.add_argument("-json", "--json", metavar="PATH|-")
    ns = p.parse_args(argv)
    sd = st.resolve_state_dir(ns.state_dir)
    lab = st.load(sd)
    if lab is None:
        if ns.json:
            _emit_json({"state": "none", "state_dir": str(sd)}, ns.json, sys.stdout)
        else:
            print(f"no lab (no state in {sd})")
        return 1
    statuses = {p.pid: st.proc_status(p) for p in lab.procs}
    alive = sum(1 for s in statuses.values() if s == "running")
    overall = "running" if alive == len(lab.procs) else ("stale" if alive == 0 else "degraded")
    ready = (
        _envoy_ready(lab.admin_url)
        if statuses.get(getattr(lab.envoy_proc(), "pid", -1)) == "running"
        else "not running"
    )
    if ns.json:
        doc = lab.summary() | {
            "state": overall,
            "envoy": {"ready": ready, "epoch": lab.envoy.epoch, "base_id": lab.envoy.base_id},
            "processes": [
                {
                    "name": p.name,
                    "role": p.role,
                    "pid": p.pid,
                    "kind": p.kind,
                    "url": p.url,
                    "status": statuses[p.pid],
                }
                for p in lab.procs
            ],
        }
        _emit_json(doc, ns.json, sys.stdout)
    else:
        print(f"lab: {overall}   state dir: {sd}")
        e = lab.envoy
        print(
            f"admin: {lab.admin_url}   envoy: {ready} (epoch {e.epoch}, base id {e.base_id}, "
            f"concurrency {e.concurrency})"
        )
        print("services:")
        for host, url in sorted(lab.services.items()):
            print(f"  {host:<45} {url}")
        print("processes:")
        for pr in lab.procs:
            what = pr.kind or pr.role
            print(f"  {pr.name:<24} {what:<8} pid {pr.pid:<8} {statuses[pr.pid]:<8} {pr.url}")
        if overall == "stale":
            print(
                "the recorded processes are gone: 'loadgen lab down' clears the state, "
                "'loadgen lab up' starts a new lab"
            )
    return 0 if overall == "running" else 1


def cmd_down(argv: list[str]) -> int:
    p = _parser("down")
    ns = p.parse_args(argv)
    sd = st.resolve_state_dir(ns.state_dir)
    with st.locked(sd):
        lab = st.load(sd)
        if lab is None:
            print(f"no lab to stop (no state in {sd})", file=sys.stderr)
            return 0
        envoys = [pr for pr in lab.procs if pr.role == "envoy"]
        others = [pr for pr in lab.procs if pr.role != "envoy"]
        running = len(_running(lab))
        notes = sv.stop(envoys) + sv.stop(others)
        st.remove(sd)
    _warn(notes)
    print(f"loadgen lab: stopped {running} process(es); removed the state in {sd}", file=sys.stderr)
    return 0


def cmd_config(argv: list[str]) -> int:
    p = _parser("config")
    _add_inputs(p, required=False)
    ns = p.parse_args(argv)
    sd = st.resolve_state_dir(ns.state_dir)
    if ns.files:
        inp = read_inputs(ns.files, ns.topology, ns.namespace)
        lab = st.load(sd)
        with PortPool() as pool:  # a preview: the running lab's ports where they exist, free ones elsewhere
            admin = lab.envoy.admin_port if lab else pool.take()
            listeners = {
                s.host: (lab.listeners.get(s.host) if lab else None) or pool.take() for s in inp.spec.services
            }
            ports = [(u, pool.take()) for u in plan_upstreams(inp)]
            sys.stdout.write(_render(inp.spec, admin, listeners, _endpoints(ports), sd / "logs"))
        _warn(inp.spec.warnings)
        return 0
    lab = st.load(sd)
    if lab is None:
        raise UsageError(f"no lab is running (no state in {sd}); give -f FILE to render without starting one")
    try:
        sys.stdout.write(Path(lab.envoy.config_path).read_text())
    except OSError as exc:
        raise RunError(
            f"cannot read the lab's Envoy config {lab.envoy.config_path}: {exc.strerror}"
        ) from None
    return 0


def _scenarios() -> dict[str, Any]:
    root = importlib.resources.files("loadgen.lab").joinpath("scenarios")
    out: dict[str, Any] = {}
    if root.is_dir():
        for entry in root.iterdir():
            if entry.name.endswith((".yaml", ".yml")):
                out[entry.name.rsplit(".", 1)[0]] = entry
    return out


def cmd_show(argv: list[str]) -> int:
    p = _Parser(prog="loadgen lab show", allow_abbrev=False)
    p.add_argument("scenario", nargs="?")
    ns = p.parse_args(argv)
    found = _scenarios()
    if not ns.scenario:
        for name in sorted(found):
            print(name)
        return 0
    name = ns.scenario.removesuffix(".yaml")
    entry = found.get(name)
    later: list[str] = []
    if entry is None:  # a scenario of `lab run`: its first policy, and what its later steps apply
        from loadgen.lab.scenarios_run import PLAN

        scn = PLAN.get(name)
        if scn is not None:
            entry = found.get(scn.files["up"][0].removesuffix(".yaml"))
            later = [f.removesuffix(".yaml") for step, fs in scn.files.items() if step != "up" for f in fs]
    if entry is None:
        from loadgen.lab.scenarios_run import SCENARIOS

        known = ", ".join(sorted(set(found) | set(SCENARIOS))) or "none"
        raise UsageError(f"unknown scenario {ns.scenario!r} (scenarios: {known})")
    if later:
        sys.stdout.write(
            f"# 'loadgen lab run {name}' starts with this policy, then applies: "
            + ", ".join(later)
            + " ('loadgen lab show NAME'). With -f, your files replace all of them.\n"
        )
    sys.stdout.write(entry.read_text())
    return 0


def cmd_run(argv: list[str]) -> int:
    if importlib.util.find_spec("loadgen.lab.scenarios_run") is None:
        raise UsageError(
            "'loadgen lab run' is not available yet in this build (no module loadgen.lab.scenarios_run)"
        )
    mod = importlib.import_module("loadgen.lab.scenarios_run")
    return int(mod.run_main(argv))


# ------------------------------------------------------------------------------------------ apply


def cmd_apply(argv: list[str]) -> int:
    p = _parser("apply")
    _add_inputs(p, required=True)
    p.add_argument("-restart", "--restart", action="store_true", help="full restart instead of a hot restart")
    p.add_argument("-timeout", "--timeout", default="20s", help="readiness deadline (20s)")
    ns = p.parse_args(argv)
    timeout = _duration_s(ns.timeout)
    sd = st.resolve_state_dir(ns.state_dir)
    with st.locked(sd):
        lab = _require_lab(sd)
        env_rec = lab.envoy_proc()
        if env_rec is None or st.proc_status(env_rec) != "running":
            raise UsageError(
                f"the lab in {sd} is not running (Envoy is gone); "
                "'loadgen lab down' then 'loadgen lab up -f FILE'"
            )
        # the topology of `up` stays unless -topology is given (-topology "" drops it)
        topology = (
            ns.topology if ns.topology is not None else (lab.topology["path"] if lab.topology else None)
        )
        inp = read_inputs(ns.files, topology, ns.namespace if ns.namespace != "default" else lab.namespace)
        how = apply_lab(lab, inp, sd, force_restart=ns.restart, timeout=timeout)
        st.save(lab)
    _warn(lab.warnings)
    print(f"loadgen lab: {how}")
    return 0


def apply_lab(lab: st.LabState, inp: Inputs, sd: Path, *, force_restart: bool, timeout: float) -> str:
    """Change ``lab`` (in place) to ``inp``; return what was done to Envoy, for the user."""
    plan = plan_upstreams(inp)
    binary = check_components(plan)
    old_ups = {(pr.host, pr.subset, pr.replica): pr for pr in lab.procs if pr.role == "upstream"}
    old_env = lab.envoy_proc()
    assert old_env is not None
    started: list[sv.Starting] = []
    with PortPool() as pool:
        pool.keep(lab.envoy.admin_port)
        for port in [*lab.listeners.values(), *(pr.port for pr in old_ups.values())]:
            pool.keep(port)
        listeners = {s.host: lab.listeners.get(s.host) or pool.take() for s in inp.spec.services}
        urls = _lab_urls(inp.spec, listeners)
        keep: list[tuple[sv.Upstream, st.ProcRecord]] = []
        new: list[tuple[sv.Upstream, int]] = []
        for u in plan:
            pr = old_ups.get((u.host, u.subset, u.replica))
            if pr is not None and st.proc_status(pr) == "running" and pr.kind == u.kind:
                access = pr.access_log
                if sv.upstream_argv(u, pr.port, access, urls) == pr.argv:
                    keep.append((u, pr))
                    continue
            new.append((u, pool.take()))
        kept_pids = {pr.pid for _, pr in keep}
        retire = [pr for pr in old_ups.values() if pr.pid not in kept_pids]
        all_eps = [(u, pr.port) for u, pr in keep] + new
        text = _render(inp.spec, lab.envoy.admin_port, listeners, _endpoints(all_eps), sd / "logs")
        check = sd / "envoy" / "bootstrap.next.yaml"
        check.write_text(text)
        sv.validate_config(binary, str(check))
        check.unlink()
        pool.release()
        try:
            new_starting = [_spawn_upstream(u, port, sd, urls) for u, port in new]
            started += new_starting
            sv.wait_ready(new_starting, timeout)
        except BaseException:
            sv.kill_starting(started)
            raise
    new_recs = [_upstream_record(c, u, port) for c, (u, port) in zip(new_starting, new, strict=True)]
    # Envoy: hot restart (same base id, next epoch) unless asked not to; full restart as the fallback.
    how = ""
    env_start: sv.Starting | None = None
    if not force_restart:
        epoch = lab.envoy.epoch + 1
        try:
            env_start = _spawn_envoy(
                binary, sd, text, lab.envoy.admin_port, epoch, lab.envoy.base_id, lab.envoy.concurrency
            )
            sv.wait_ready([env_start], timeout)
        except RunError as exc:
            if env_start is not None:
                sv.kill_starting([env_start])
            env_start = None
            how = f"hot restart failed ({str(exc).splitlines()[0]}); "
        else:
            if not sv.wait_exit(old_env, HOT_RESTART_EXIT_WAIT_S):
                sv.stop([old_env])
            cfg = env_start.argv[env_start.argv.index("-c") + 1]
            lab.envoy = replace(lab.envoy, epoch=epoch, config_path=cfg)
            how = (
                f"hot-restarted Envoy (epoch {epoch - 1} -> {epoch}, base id {lab.envoy.base_id}); "
                f"the old epoch drained and exited"
            )
    if env_start is None:
        sv.stop([old_env])
        try:
            env_start = _spawn_envoy(binary, sd, text, lab.envoy.admin_port, 0, None, lab.envoy.concurrency)
            sv.wait_ready([env_start], timeout)
            base_id = _read_base_id(sd)
        except BaseException:
            if env_start is not None:
                sv.kill_starting([env_start])
            sv.stop(new_recs)
            lab.procs = [pr for pr in lab.procs if pr.role != "envoy"]
            st.save(lab)
            raise
        lab.envoy = replace(
            lab.envoy, epoch=0, base_id=base_id, config_path=env_start.argv[env_start.argv.index("-c") + 1]
        )
        how += "restarted Envoy (stopped it and started a new one)"
    notes = sv.stop(retire)
    _warn(notes)
    env_new = env_start.record(port=lab.envoy.admin_port, url=lab.admin_url)
    lab.procs = [env_new, *(pr for _, pr in keep), *new_recs]
    lab.listeners = listeners
    lab.services = {h: f"http://{HOST}:{p}" for h, p in listeners.items()}
    lab.sources = inp.sources
    lab.topology = inp.topology
    lab.namespace = inp.namespace
    lab.warnings = list(inp.spec.warnings)
    changes = f"{len(new)} upstream(s) started, {len(retire)} stopped, {len(keep)} kept"
    return f"{how}; {changes}"


# ------------------------------------------------------------------------------------------ entry


COMMANDS = {
    "up": cmd_up,
    "status": cmd_status,
    "apply": cmd_apply,
    "down": cmd_down,
    "config": cmd_config,
    "show": cmd_show,
    "run": cmd_run,
}


def lab_main(argv: Sequence[str]) -> int:
    """``loadgen lab ...``; a raised :class:`~loadgen.errors.LoadgenError` is the caller's to report."""
    args = list(argv)
    if not args or args[0] in ("-h", "-help", "--help", "help"):
        sys.stdout.write(USAGE)
        return 0 if args else 2
    fn = COMMANDS.get(args[0])
    if fn is None:
        raise UsageError(f"lab: unknown command {args[0]!r} (commands: {', '.join(COMMANDS)})")
    return fn(args[1:])


def main(argv: Sequence[str] | None = None) -> int:
    """Stand-alone entry (``python -m loadgen.lab.cli``) with the same error mapping as ``loadgen``."""
    try:
        return lab_main(sys.argv[1:] if argv is None else argv)
    except LoadgenError as exc:
        print(f"loadgen: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("loadgen: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
