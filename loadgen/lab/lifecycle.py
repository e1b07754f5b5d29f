"""Starting and changing a lab's processes, on 127.0.0.1: :func:`start_lab` starts the upstreams
and the Envoy of :class:`~loadgen.lab.inputs.Inputs` in parallel and waits until all are ready;
:func:`apply_lab` changes a running lab to new inputs (validates the new config first, keeps the
upstreams whose command line is unchanged, starts and stops the others, hot-restarts Envoy or,
when asked or when that fails, restarts it). Used by the ``up`` and ``apply`` commands of
:mod:`loadgen.lab.cli`, by the scenario harness and by the sweep's policy; those callers lock the
state directory where it is shared and save the state (``apply_lab`` saves it itself only when a
failed full restart has left the lab without Envoy)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from loadgen.errors import RunError
from loadgen.lab import state as st
from loadgen.lab import supervise as sv
from loadgen.lab.inputs import Inputs, check_components, plan_upstreams
from loadgen.lab.output import warn
from loadgen.lab.ports import HOST, PortPool

if TYPE_CHECKING:
    from loadgen.lab.model import LabSpec

HOT_RESTART_EXIT_WAIT_S = sv.PARENT_SHUTDOWN_TIME_S + 3.0


# ------------------------------------------------------------------------------------------ starting


def render_config(
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


def endpoints(records: Sequence[tuple[sv.Upstream, int]]) -> dict[tuple[str, str], list[tuple[str, int]]]:
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
            text = render_config(inp.spec, admin, listeners, endpoints(ports), sd / "logs")
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


# ------------------------------------------------------------------------------------------ apply


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
        text = render_config(inp.spec, lab.envoy.admin_port, listeners, endpoints(all_eps), sd / "logs")
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
    warn(notes)
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
