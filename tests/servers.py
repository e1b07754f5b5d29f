"""In-test servers on 127.0.0.1 (scripted raw HTTP, httpbin under gunicorn, a refused port), run helpers.

:class:`ScriptedServer` lets a test say exactly which bytes go back for each request (and when, and
how the socket ends), which is how byte-level framing and error cases are tested. It is not an
HTTP implementation: it reads a request head (plus a ``Content-Length`` body) and runs the
test's script. :class:`Gunicorn` runs the real httpbin app. Both are stopped by the fixtures in
``conftest.py`` (threads joined, the subprocess stopped by its PID). :func:`make_cfg` and :func:`run`
build an :class:`EngineConfig` the way the runner does and run it with a bound on time. (They live here,
not in ``conftest.py``, because ``from conftest import`` is ambiguous with several conftest files.)
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from types import ModuleType
from typing import Any

import pytest

from loadgen.engine_api import EngineConfig, EngineResult
from loadgen.schedule import plan

# --- script steps ---------------------------------------------------------------------------
# A script is what the server does for one request: a list of steps.
#   bytes            send them (one sendall)
#   Sleep(s)         pause
#   CLOSE            close the socket (FIN); the connection ends
#   RESET            close with SO_LINGER 0 (RST); the connection ends
#   HANG             never answer (until the server stops)


@dataclass(frozen=True)
class Sleep:
    seconds: float


CLOSE = "close"
RESET = "reset"
HANG = "hang"

Step = bytes | Sleep | str


@dataclass(frozen=True)
class Request:
    """One request as the server saw it."""

    conn: int  # connection number, from 0, in accept order
    index: int  # request number on that connection, from 0
    number: int  # request number on the server, from 0
    head: bytes
    method: str
    path: str


Script = Callable[[Request], list[Step]]


def response(
    code: int = 200,
    body: bytes = b"",
    headers: tuple[str, ...] = (),
    reason: str = "X",
    version: str = "HTTP/1.1",
    length: bool = True,
) -> bytes:
    """A response's bytes; ``length`` adds ``Content-Length``."""
    lines = [f"{version} {code} {reason}", *headers]
    if length:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def ok_script(body: bytes = b"hello") -> Script:
    return lambda req: [response(200, body)]


@dataclass
class ScriptedServer:
    """A threaded TCP server on 127.0.0.1:0 that answers each request with ``script(request)``.

    ``on_accept`` returning False closes a new connection at once (accept-and-close).
    ``early`` runs the script as soon as a request head has arrived, without reading its body,
    on sockets with a small receive buffer (a server that answers before taking a large upload).
    """

    script: Script
    on_accept: Callable[[int], bool] = lambda conn: True
    tls: ssl.SSLContext | None = None  # serve https with this server-side context
    early: bool = False
    port: int = 0
    connections: int = 0
    requests: list[Request] = field(default_factory=list)
    _sock: socket.socket | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _clients: list[socket.socket] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> ScriptedServer:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if self.early:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # accepted sockets inherit it
        s.bind(("127.0.0.1", 0))
        s.listen(128)
        s.settimeout(0.05)
        self._sock = s
        self.port = s.getsockname()[1]
        t = threading.Thread(target=self._accept_loop, name="scripted-accept", daemon=True)
        t.start()
        self._threads.append(t)
        return self

    def stop(self) -> None:
        self._stop.set()
        for t in list(self._threads):
            t.join(5)
        if self._sock is not None:
            self._sock.close()
        with self._lock:
            for c in self._clients:
                with contextlib.suppress(OSError):
                    c.close()

    def _accept_loop(self) -> None:
        assert self._sock is not None
        while not self._stop.is_set():
            try:
                c, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            n = self.connections
            self.connections += 1
            if not self.on_accept(n):
                c.close()
                continue
            with self._lock:
                self._clients.append(c)
            t = threading.Thread(target=self._serve, args=(c, n), name=f"scripted-{n}", daemon=True)
            t.start()
            self._threads.append(t)

    def _read_request(self, c: socket.socket, buf: bytearray) -> bytes | None:
        """One request head (+ Content-Length body); None when the client closed or we stop."""
        while b"\r\n\r\n" not in buf:
            if self._stop.is_set():
                return None
            try:
                data = c.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return None
            if not data:
                return None
            buf += data
        end = buf.index(b"\r\n\r\n") + 4
        head = bytes(buf[:end])
        if self.early:
            buf.clear()
            return head
        m = re.search(rb"(?im)^content-length:\s*(\d+)", head)
        need = end + (int(m.group(1)) if m else 0)
        while len(buf) < need:
            try:
                data = c.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return None
            if not data:
                return None
            buf += data
        del buf[:need]
        return head

    def _serve(self, c: socket.socket, conn: int) -> None:
        if self.tls is not None:
            c.settimeout(2.0)
            try:
                c = self.tls.wrap_socket(c, server_side=True)
            except (OSError, ssl.SSLError):  # e.g. the client rejected our certificate
                c.close()
                return
            with self._lock:
                self._clients.append(c)
        c.settimeout(0.05)
        buf = bytearray()
        index = 0
        try:
            while not self._stop.is_set():
                head = self._read_request(c, buf)
                if head is None:
                    return
                first = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ")
                with self._lock:
                    req = Request(
                        conn, index, len(self.requests), head, first[0], first[1] if len(first) > 1 else ""
                    )
                    self.requests.append(req)
                index += 1
                for step in self.script(req):
                    if isinstance(step, bytes):
                        c.sendall(step)
                    elif isinstance(step, Sleep):
                        self._stop.wait(step.seconds)
                    elif step == CLOSE:
                        return
                    elif step == RESET:
                        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                        return
                    elif step == HANG:
                        self._stop.wait()
                        return
        except OSError:
            return
        finally:
            with self._lock:
                if c in self._clients:
                    self._clients.remove(c)
            c.close()


def refused_port() -> int:
    """A port on 127.0.0.1 that nobody listens on (bound, then closed)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    port: int = s.getsockname()[1]
    s.close()
    return port


@dataclass
class Gunicorn:
    """httpbin under gunicorn on 127.0.0.1 (gthread workers, so keep-alive works), stopped by PID."""

    workers: int = 2
    threads: int = 8
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 20.0) -> Gunicorn:
        bindir = os.path.dirname(sys.executable)
        exe = os.path.join(bindir, "gunicorn")
        self.port = refused_port()
        cmd = [
            exe,
            "-b",
            f"127.0.0.1:{self.port}",
            "-w",
            str(self.workers),
            "--threads",
            str(self.threads),
            "--keep-alive",
            "5",
            "--log-level",
            "warning",
            "httpbin:app",
        ]
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {self.proc.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    s.sendall(b"GET /get HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    if s.recv(12).startswith(b"HTTP/1.1 200"):
                        return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("gunicorn did not become ready")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.kill(self.proc.pid, signal.SIGTERM)  # the arbiter; it stops its own workers
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)


def self_signed_cert(directory: str) -> tuple[str, str]:
    """(cert, key) PEM paths for CN/SAN 127.0.0.1, made with the openssl CLI."""
    cert, key = os.path.join(directory, "cert.pem"), os.path.join(directory, "key.pem")
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            key,
            "-out",
            cert,
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )
    return cert, key


# --- running engines ---------------------------------------------------------------------------
def request_bytes(port: int, path: str = "/", method: str = "GET", extra: str = "") -> bytes:
    return (
        f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: loadgen-test\r\n{extra}\r\n"
    ).encode()


def make_cfg(
    port: int,
    path: str = "/",
    *,
    c: int = 1,
    n: int = 0,
    qps: float = 0.0,
    duration: float = 0.0,
    uniform: bool = False,
    method: str = "GET",
    extra: str = "",
    **kw: Any,
) -> EngineConfig:
    """A config the way the runner builds one: request bytes + :func:`loadgen.schedule.plan`."""
    p = plan(c, qps, duration, n, uniform)
    cfg = EngineConfig(
        host="127.0.0.1",
        port=port,
        request=request_bytes(port, path, method, extra),
        head=method == "HEAD",
        connections=p.connections,
        qps=qps,
        calls=p.calls,
        offsets=p.offsets,
        stretch=p.stretch,
        end_s=p.end_s,
        timeout_s=2.0,
        url=f"http://127.0.0.1:{port}{path}",
        method=method,
    )
    return replace(cfg, **kw)


def run(engine: ModuleType, cfg: EngineConfig, limit: float = 10.0) -> EngineResult:
    """Start, wait (bounded), return the result; a run that does not end is aborted and fails."""
    h = engine.start(cfg)
    if not h.wait(limit):
        h.abort()
        h.wait(5)
        pytest.fail(f"engine run did not end within {limit}s")
    res: EngineResult = h.result()
    return res
