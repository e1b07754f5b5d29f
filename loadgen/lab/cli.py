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
server) and ``workers: N`` (gunicorn workers, default 2). Those two keys are read by
:mod:`loadgen.lab.inputs`, from the ``-topology`` file only, and stripped from the copy handed to
:func:`loadgen.lab.istio.load`, which reads everything else (services, versions, replicas, ports)::

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
(``scenarios_run``) live elsewhere, and so do reading the user's files (``inputs``) and starting
and changing the processes (``lifecycle``); this module reads the flags and runs the commands.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.resources
import importlib.util
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from loadgen.durations import parse_seconds
from loadgen.errors import LoadgenError, RunError, UsageError
from loadgen.lab import state as st
from loadgen.lab import supervise as sv
from loadgen.lab.inputs import plan_upstreams, read_inputs
from loadgen.lab.lifecycle import apply_lab, endpoints, render_config, start_lab
from loadgen.lab.output import emit_json, warn
from loadgen.lab.ports import PortPool

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
    warn(lab.warnings)
    emit_json(lab.summary(), ns.json, sys.stdout)
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
            emit_json({"state": "none", "state_dir": str(sd)}, ns.json, sys.stdout)
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
        emit_json(doc, ns.json, sys.stdout)
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
    warn(notes)
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
            sys.stdout.write(render_config(inp.spec, admin, listeners, endpoints(ports), sd / "logs"))
        warn(inp.spec.warnings)
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
    warn(lab.warnings)
    print(f"loadgen lab: {how}")
    return 0


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
