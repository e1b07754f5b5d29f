"""Running :mod:`loadgen.serve` in an event loop: the listening socket, the loop server and
:class:`EchoServer` (a server in a background thread or a subprocess, for tests and the lab)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable

from loadgen.errors import RunError, UsageError
from loadgen.serve.params import READY_PREFIX, ServeConfig, check_loopback, url_for
from loadgen.serve.protocol import EchoProtocol, Shared

# --------------------------------------------------------------------------------------------
# Running a server in an event loop
# --------------------------------------------------------------------------------------------


def make_socket(host: str, port: int, reuse_port: bool, listen: bool = True) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        if listen:
            sock.listen(1024)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


class _LoopServer:
    """One listening socket served by one event loop (the unit a worker or a thread runs)."""

    def __init__(self, cfg: ServeConfig, sock: socket.socket) -> None:
        self.cfg = cfg
        self.sock = sock
        self.shared = Shared(cfg)
        self._server: asyncio.base_events.Server | None = None
        self._tick: asyncio.TimerHandle | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        shared = self.shared
        self._server = await loop.create_server(lambda: EchoProtocol(shared), sock=self.sock, backlog=1024)
        self._schedule_tick(loop)

    def _schedule_tick(self, loop: asyncio.AbstractEventLoop) -> None:
        now = time.time()
        self._tick = loop.call_later(1.0 - (now % 1.0) + 0.001, self._on_tick, loop)

    def _on_tick(self, loop: asyncio.AbstractEventLoop) -> None:
        sh = self.shared
        sh.refresh()
        if sh.log is not None:
            sh.log.flush()
        if self.cfg.idle_timeout > 0:
            now = time.monotonic()
            for conn in list(sh.conns):
                conn.idle_tick(now)
        self._schedule_tick(loop)

    async def close(self) -> None:
        if self._tick is not None:
            self._tick.cancel()
        if self._server is not None:
            self._server.close()
        for conn in list(self.shared.conns):
            conn.abort()
        # let the transports run connection_lost (closing their sockets) before the loop stops
        deadline = time.monotonic() + 2.0
        await asyncio.sleep(0)
        while self.shared.conns and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        if self._server is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
        if self.shared.log is not None:
            self.shared.log.close()
            self.shared.log = None


async def serve_until_signal(cfg: ServeConfig, sock: socket.socket, ready: Callable[[], None]) -> Shared:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    server = _LoopServer(cfg, sock)
    await server.start()
    ready()
    await stop.wait()
    await server.close()
    return server.shared


# --------------------------------------------------------------------------------------------
# Programmatic API
# --------------------------------------------------------------------------------------------


class EchoServer:
    """A ``loadgen serve`` instance for tests and the lab.

    ``mode="thread"`` (default) runs the server's event loop in a daemon thread of this process
    (cheap, but shares the GIL with the caller); ``mode="process"`` runs ``python -m loadgen.serve``
    as a subprocess (its own CPU; use it when the caller generates load). Port 0 picks a free
    port; :attr:`port` and :attr:`url` are valid after :meth:`start`. Use as a context manager or
    call :meth:`stop`.
    """

    def __init__(
        self,
        port: int = 0,
        host: str = "127.0.0.1",
        config: ServeConfig | None = None,
        *,
        mode: str = "thread",
        workers: int = 1,
    ) -> None:
        self.host = check_loopback(host)
        if mode not in ("thread", "process"):
            raise UsageError(f"serve: mode must be 'thread' or 'process', not {mode!r}")
        if workers < 1 or (workers > 1 and mode != "process"):
            raise UsageError("serve: workers > 1 needs mode='process'")
        self.config = config or ServeConfig()
        self.mode = mode
        self.workers = workers
        self._want_port = port
        self.port = 0
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: _LoopServer | None = None
        self._proc: subprocess.Popen[str] | None = None
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` (no trailing slash)."""
        return url_for(self.host, self.port)

    @property
    def pid(self) -> int | None:
        """The subprocess's PID in process mode, else None."""
        return self._proc.pid if self._proc is not None else None

    @property
    def requests(self) -> int:
        """Requests answered so far (thread mode only; process mode: -1)."""
        return self._server.shared.requests if self._server is not None else -1

    def start(self, timeout: float = 10.0) -> EchoServer:
        if self._thread is not None or self._proc is not None:
            raise RunError("serve: EchoServer already started")
        if self.mode == "thread":
            self._start_thread(timeout)
        else:
            self._start_process(timeout)
        return self

    def _start_thread(self, timeout: float) -> None:
        try:
            sock = make_socket(self.host, self._want_port, False)
        except OSError as exc:
            raise RunError(
                f"serve: cannot listen on {url_for(self.host, self._want_port)}: {exc.strerror}"
            ) from exc
        self.port = sock.getsockname()[1]
        started = threading.Event()
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._server = _LoopServer(self.config, sock)

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                assert self._server is not None
                loop.run_until_complete(self._server.start())
            except BaseException as exc:  # reported to start()'s caller
                self._error = exc
                started.set()
                loop.close()
                return
            started.set()
            try:
                loop.run_forever()
            finally:
                loop.close()

        self._thread = threading.Thread(target=run, name=f"loadgen-serve-{self.port}", daemon=True)
        self._thread.start()
        if not started.wait(timeout) or self._error is not None:
            raise RunError(f"serve: echo server failed to start: {self._error}")

    def _start_process(self, timeout: float) -> None:
        cfg = self.config
        argv = [
            sys.executable, "-m", "loadgen.serve",
            "-bind", self.host, "-port", str(self._want_port), "-workers", str(self.workers),
            "-max-delay", f"{cfg.max_delay}s", "-maxpayloadsizekb", str(cfg.max_size // 1024),
            "-idle-timeout", f"{cfg.idle_timeout}s", "-echo-debug-path", cfg.debug_path,
        ]  # fmt: skip
        if cfg.default_params:
            argv += ["-default-params", cfg.default_params]
        if cfg.access_log:
            argv += ["-access-log", cfg.access_log]
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, start_new_session=True)
        self._proc = proc
        line = _readline_with_timeout(proc, timeout)
        if not line.startswith(READY_PREFIX):
            self.stop()
            raise RunError(f"serve: echo server subprocess did not start (got {line.strip()!r})")
        self.port = int(line.strip().rsplit(":", 1)[1])

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the server (idempotent); in process mode SIGTERM, then SIGKILL after ``timeout``."""
        if self._loop is not None and self._thread is not None:
            loop, server = self._loop, self._server

            async def shutdown() -> None:
                if server is not None:
                    await server.close()
                loop.stop()

            if not loop.is_closed():
                with contextlib.suppress(RuntimeError):
                    asyncio.run_coroutine_threadsafe(shutdown(), loop)
            self._thread.join(timeout)
            self._thread = None
        if self._proc is not None:
            proc = self._proc
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout)
            if proc.stdout is not None:
                proc.stdout.close()
            self._proc = None

    def __enter__(self) -> EchoServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _readline_with_timeout(proc: subprocess.Popen[str], timeout: float) -> str:
    result: list[str] = []

    def read() -> None:
        assert proc.stdout is not None
        result.append(proc.stdout.readline())

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout)
    return result[0] if result else ""
