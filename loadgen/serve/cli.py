"""The ``loadgen serve`` command line: flags, the worker processes, signals."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import os
import signal
import socket
import sys
from collections.abc import Callable, Sequence

from loadgen.errors import UsageError
from loadgen.serve.params import READY_PREFIX, ServeConfig, check_loopback, parse_go_duration, url_for
from loadgen.serve.server import make_socket, serve_until_signal

# --------------------------------------------------------------------------------------------
# The command line
# --------------------------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"serve: {message}")


def _build_parser() -> _Parser:
    p = _Parser(
        prog="loadgen serve",
        description="HTTP/1.1 echo server on loopback with fortio's echo parameters "
        "(delay=, status=, size=, close=, header=).",
        allow_abbrev=False,
    )
    p.add_argument(
        "-port", "--port", type=int, default=8080, help="TCP port (0: pick a free one); default 8080"
    )
    p.add_argument("-bind", "--bind", default="127.0.0.1", help="loopback address to bind; default 127.0.0.1")
    p.add_argument("-access-log", "--access-log", metavar="PATH", help="append one line per request")
    p.add_argument(
        "-workers", "--workers", type=int, default=1, help="processes sharing the port (SO_REUSEPORT)"
    )
    p.add_argument("-quiet", "--quiet", action="store_true", help="no summary on stderr at exit")
    p.add_argument("-max-delay", "-max-echo-delay", "--max-delay", default="1.5s",
                   help="cap for delay= (Go duration); default 1.5s")  # fmt: skip
    p.add_argument("-maxpayloadsizekb", "--maxpayloadsizekb", type=int, default=256,
                   help="cap for size= in KiB; default 256")  # fmt: skip
    p.add_argument("-default-params", "-echo-server-default-params", "--default-params", default="",
                   help="query string used when a request has none, e.g. 'status=503:10'")  # fmt: skip
    p.add_argument("-echo-debug-path", "--echo-debug-path", default="/debug", help="debug page path")
    p.add_argument("-idle-timeout", "-server-idle-timeout", "--idle-timeout", default="30s",
                   help="close idle keep-alive connections after this (Go duration, 0: never)")  # fmt: skip
    p.add_argument("-seed", "--seed", type=int, default=None,
                   help="seed the dice of the status=/delay=/size=/close= percentages")  # fmt: skip
    return p


def _config_from_args(ns: argparse.Namespace) -> ServeConfig:
    try:
        max_delay = parse_go_duration(ns.max_delay)
        idle = parse_go_duration(ns.idle_timeout)
    except ValueError as exc:
        raise UsageError(f"serve: {exc}") from None
    if not 0 <= ns.port <= 65535:
        raise UsageError(f"serve: -port {ns.port} is not in 0..65535")
    if not 1 <= ns.workers <= 64:
        raise UsageError(f"serve: -workers {ns.workers} is not in 1..64")
    if ns.maxpayloadsizekb < 0:
        raise UsageError("serve: -maxpayloadsizekb must be >= 0")
    if not ns.echo_debug_path.startswith("/"):
        raise UsageError("serve: -echo-debug-path must start with '/'")
    return ServeConfig(
        max_delay=max(0.0, max_delay),
        max_size=ns.maxpayloadsizekb * 1024,
        idle_timeout=idle,
        default_params=ns.default_params,
        debug_path=ns.echo_debug_path,
        access_log=ns.access_log,
        seed=ns.seed,
    )


def serve_main(argv: Sequence[str]) -> int:
    """Run ``loadgen serve`` with ``argv`` (flags only); returns the exit code.

    Usage errors print one line ``loadgen: serve: ...`` on stderr and return 2. When listening,
    prints ``loadgen serve listening on http://HOST:PORT`` on stdout; SIGINT/SIGTERM stop it
    cleanly with 0.
    """
    try:
        try:
            ns = _build_parser().parse_args(list(argv))
        except SystemExit as exc:  # -h/--help
            return int(exc.code or 0)
        host = check_loopback(ns.bind)
        cfg = _config_from_args(ns)
        if cfg.access_log:
            try:
                os.close(os.open(cfg.access_log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644))
            except OSError as exc:
                raise UsageError(f"serve: cannot open access log {cfg.access_log}: {exc.strerror}") from None
        try:
            # with several workers the parent only reserves the port (bound, not listening)
            sock = make_socket(host, ns.port, ns.workers > 1, listen=ns.workers == 1)
        except OSError as exc:
            raise UsageError(f"serve: cannot listen on {url_for(host, ns.port)}: {exc.strerror}") from None
    except UsageError as exc:
        print(f"loadgen: {exc}", file=sys.stderr)
        return exc.exit_code
    port = sock.getsockname()[1]

    def ready() -> None:
        print(f"{READY_PREFIX}{url_for(host, port)}", flush=True)

    if ns.workers == 1:
        shared = asyncio.run(serve_until_signal(cfg, sock, ready))
        if not ns.quiet:
            print(
                f"loadgen serve: stopped after {shared.requests} requests"
                f" on {shared.connections} connections",
                file=sys.stderr,
            )
        return 0
    return _run_workers(cfg, sock, host, port, ns.workers, ready)


class _Stop(Exception):
    pass


def _run_workers(
    cfg: ServeConfig, sock: socket.socket, host: str, port: int, workers: int, ready: Callable[[], None]
) -> int:
    """Fork ``workers`` processes, each with its own SO_REUSEPORT listener on ``port``.

    The parent's socket (bound, not listening: it only reserves the port) is closed once every
    worker listens; the parent then only supervises: SIGINT/SIGTERM are forwarded, and it exits 0
    after the workers exit (1 if a worker died on its own).
    """
    rfd, wfd = os.pipe()
    pids: list[int] = []

    def on_signal(signum: int, frame: object) -> None:
        raise _Stop

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    failed = False
    try:
        for index in range(workers):
            wcfg = cfg if cfg.seed is None else dataclasses.replace(cfg, seed=cfg.seed + index)
            pid = os.fork()
            if pid == 0:  # worker
                for s, h in old.items():
                    signal.signal(s, h)
                os.close(rfd)
                sock.close()
                code = 1
                try:
                    wsock = make_socket(host, port, True)

                    def worker_ready() -> None:
                        os.write(wfd, b"r")
                        os.close(wfd)

                    asyncio.run(serve_until_signal(wcfg, wsock, worker_ready))
                    code = 0
                finally:
                    os._exit(code)
            pids.append(pid)
        os.close(wfd)
        got = 0
        while got < workers:
            chunk = os.read(rfd, workers)
            if not chunk:
                break
            got += len(chunk)
        os.close(rfd)
        sock.close()
        if got < workers:
            failed = True
            raise _Stop
        ready()
        while pids:
            pid, _status = os.wait()
            if pid in pids:
                pids.remove(pid)
                failed = True
                raise _Stop
    except _Stop:
        pass
    finally:
        sock.close()
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        for pid in pids:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
        for s, h in old.items():
            signal.signal(s, h)
    return 1 if failed else 0
