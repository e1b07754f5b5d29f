"""The lab's state directory: where ``lab.json``, the Envoy bootstrap and every child's log live.

What it is: the location rules (``-state-dir`` flag, then ``$LOADGEN_LAB_DIR``, then
``$XDG_STATE_HOME/loadgen/lab``, then ``~/.local/state/loadgen/lab``), the typed records of a
running lab (:class:`LabState` with one :class:`ProcRecord` per child process), their atomic
write/read as ``lab.json``, an exclusive lock so that two ``loadgen lab`` commands do not race,
and the liveness check of a recorded PID (:func:`proc_status`: alive *and* still running the
command line recorded when it started, so that a recycled PID is never mistaken for ours).

What it is not: it starts and stops nothing (that is :mod:`loadgen.lab.supervise`).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from loadgen.errors import UsageError

STATE_FILE = "lab.json"
LOCK_FILE = "lab.lock"
SUBDIRS = ("logs", "envoy")  # children's logs and access logs; Envoy's bootstrap, base id, logs
FORMAT = 1


def default_state_dir() -> Path:
    """``$LOADGEN_LAB_DIR``, else ``$XDG_STATE_HOME/loadgen/lab``, else ``~/.local/state/loadgen/lab``."""
    env = os.environ.get("LOADGEN_LAB_DIR")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_STATE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".local" / "state"
    return base / "loadgen" / "lab"


def resolve_state_dir(flag: str | None) -> Path:
    """The state directory to use: the ``-state-dir`` flag wins over the environment."""
    return (Path(flag).expanduser() if flag else default_state_dir()).absolute()


@dataclass
class ProcRecord:
    """One child process of the lab, as recorded in ``lab.json``."""

    role: str  # "envoy" or "upstream"
    name: str  # e.g. "envoy", "httpbin/v1/0"
    pid: int
    cmdline: list[str]  # /proc/PID/cmdline once it was ready (what `down` compares against)
    log: str  # stdout+stderr of the child
    port: int = 0
    url: str = ""
    host: str = ""  # upstream: the service FQDN
    subset: str = ""  # upstream: the DestinationRule subset ("" when the service has none)
    version: str = ""  # upstream: the version label the process plays
    replica: int = 0
    kind: str = ""  # upstream: httpbin | app | serve
    access_log: str = ""
    argv: list[str] = field(default_factory=list)  # how it was started (apply restarts it if it changes)


@dataclass
class EnvoyInfo:
    """What ``apply`` needs to hot-restart Envoy."""

    binary: str
    base_id: int
    epoch: int
    concurrency: int
    config_path: str
    admin_port: int


@dataclass
class LabState:
    """Everything ``status``, ``apply``, ``config`` and ``down`` need about a running lab."""

    state_dir: str
    admin_url: str
    services: dict[str, str]  # FQDN -> listener URL
    listeners: dict[str, int]  # FQDN -> listener port
    envoy: EnvoyInfo
    procs: list[ProcRecord]
    sources: list[dict[str, str]]  # [{"path": ..., "text": ...}] the Istio YAML as read
    topology: dict[str, str] | None = None  # {"path": ..., "text": ...}
    namespace: str = "default"
    started: float = 0.0
    format: int = FORMAT
    warnings: list[str] = field(default_factory=list)

    def upstreams(self) -> dict[str, dict[str, list[str]]]:
        """``{FQDN: {subset: [url, ...]}}`` ("" as subset for a service without subsets)."""
        out: dict[str, dict[str, list[str]]] = {}
        for p in self.procs:
            if p.role == "upstream":
                out.setdefault(p.host, {}).setdefault(p.subset, []).append(p.url)
        return out

    def summary(self) -> dict[str, Any]:
        """The document ``lab up`` prints and ``-json`` writes."""
        return {
            "admin": self.admin_url,
            "services": dict(self.services),
            "upstreams": self.upstreams(),
            "state_dir": self.state_dir,
        }

    def envoy_proc(self) -> ProcRecord | None:
        return next((p for p in self.procs if p.role == "envoy"), None)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> LabState:
        d = dict(doc)
        d["envoy"] = EnvoyInfo(**d["envoy"])
        d["procs"] = [ProcRecord(**p) for p in d["procs"]]
        return cls(**d)


def save(state: LabState) -> None:
    """Write ``lab.json`` atomically (temp file in the same directory, fsync, rename)."""
    d = Path(state.state_dir)
    d.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".lab.", suffix=".json", dir=d)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(state.to_json(), fh, indent=2, sort_keys=True)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, d / STATE_FILE)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def load(state_dir: Path) -> LabState | None:
    """The recorded lab, or ``None`` when there is none; a corrupt file is a :class:`UsageError`."""
    path = state_dir / STATE_FILE
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    try:
        doc = json.loads(text)
        if doc.get("format") != FORMAT:
            raise ValueError(f"format {doc.get('format')!r}, expected {FORMAT}")
        return LabState.from_json(doc)
    except (ValueError, TypeError, KeyError) as exc:
        raise UsageError(
            f"{path}: unreadable lab state ({exc}); remove the directory if no lab is running"
        ) from None


def remove(state_dir: Path) -> None:
    """Delete what the lab wrote (``lab.json``, ``logs/``, ``envoy/``); nothing else in the directory."""
    with contextlib.suppress(FileNotFoundError):
        (state_dir / STATE_FILE).unlink()
    for sub in SUBDIRS:
        shutil.rmtree(state_dir / sub, ignore_errors=True)
    with contextlib.suppress(OSError):
        (state_dir / LOCK_FILE).unlink()
    with contextlib.suppress(OSError):
        state_dir.rmdir()  # only when nothing else lives there


def remove_leftovers(state_dir: Path) -> None:
    """Before a fresh start: drop the logs and bootstrap of an earlier start that failed (no ``lab.json``)."""
    if not (state_dir / STATE_FILE).exists():
        for sub in SUBDIRS:
            shutil.rmtree(state_dir / sub, ignore_errors=True)


@contextlib.contextmanager
def locked(state_dir: Path) -> Iterator[None]:
    """Hold an exclusive lock on the state directory (another ``loadgen lab`` command gets an error)."""
    state_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(state_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UsageError(f"another 'loadgen lab' command is working on {state_dir}") from None
        yield
    finally:
        os.close(fd)


def read_cmdline(pid: int) -> list[str] | None:
    """``/proc/PID/cmdline`` split on NUL, or ``None`` when the process is gone (or a zombie)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    if not raw:  # zombies and kernel threads have an empty cmdline
        return None
    return raw.rstrip(b"\0").decode(errors="replace").split("\0")


def pid_gone(pid: int) -> bool:
    """True once ``pid`` has exited (no such process, or a zombie). Reads ``/proc/PID/stat``.

    (Not ``cmdline``: that reads empty for a moment while a process is in ``execve``.)
    """
    _reap(pid)
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return raw[raw.rfind(")") + 2 :].split()[0] in ("Z", "X")


def _reap(pid: int) -> None:
    """Reap ``pid`` if it is our own exited child (a test that ran ``up`` in-process)."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def proc_status(rec: ProcRecord) -> str:
    """``running``, ``dead`` or ``foreign`` (the PID now runs something else)."""
    if pid_gone(rec.pid):
        return "dead"
    cmd = read_cmdline(rec.pid)
    for _ in range(5):  # empty for a moment while the process is in execve
        if cmd is not None:
            break
        time.sleep(0.01)
        cmd = read_cmdline(rec.pid)
    return "running" if cmd == rec.cmdline else "foreign"
