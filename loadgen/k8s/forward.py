"""A local 127.0.0.1 listener that relays every accepted connection through its own port-forward.

What it is: :class:`Relay` accepts connections on ``127.0.0.1:<ephemeral>``; for each one it opens
a new port-forward websocket to ``pod:port`` with the official client (``kubernetes.stream.portforward``,
one stream per connection, as kr8s does) and copies bytes both ways in one thread per connection.
When the stream drops (websocket closed, error channel text, pod side closed), the local
connection is closed at once, so the engine sees EOF/reset, counts a transport error and reconnects
(a new stream); nothing waits on a dead stream. Counters: streams opened, failed, dropped.

What it is not: no HTTP awareness, no multiplexing (the Python client cannot multiplex), not a
load path for production-scale loads (port-forward goes through the API server and the kubelet).
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
from typing import Any

from loadgen.k8s.client import Kube

_BUF = 256 * 1024


class Relay:
    """Relay local connections to ``namespace/pod:port``; :meth:`start`, then :meth:`close`."""

    def __init__(self, kube: Kube, namespace: str, pod: str, port: int) -> None:
        self.kube = kube
        self.namespace = namespace
        self.pod = pod
        self.remote_port = port
        self.port = 0
        self.opened = 0
        self.failed = 0
        self.dropped = 0
        self.errors: list[str] = []
        self._lock = threading.Lock()
        self._closing = False
        self._conns: set[socket.socket] = set()
        self._lsock: socket.socket | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Relay:
        ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind(("127.0.0.1", 0))
        ls.listen(512)
        self._lsock = ls
        self.port = ls.getsockname()[1]
        self._thread = threading.Thread(target=self._accept_loop, name=f"k8s-relay-{self.port}", daemon=True)
        self._thread.start()
        return self

    def probe(self) -> None:
        """Open and close one stream now, so a wrong pod/port fails before the run starts."""
        pf, sock = self._open()
        with contextlib.suppress(OSError):
            sock.close()
        pf.close()

    def close(self) -> None:
        self._closing = True
        if self._lsock is not None:
            with contextlib.suppress(OSError):
                self._lsock.close()
        with self._lock:
            conns = list(self._conns)
        for c in conns:
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(2.0)

    def __enter__(self) -> Relay:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def stats(self) -> dict[str, Any]:
        return {
            "Streams": self.opened,
            "Failed": self.failed,
            "Dropped": self.dropped,
            "Errors": self.errors[:5],
        }

    # --- internals ----------------------------------------------------------------------------

    def _open(self) -> tuple[Any, Any]:
        from kubernetes.stream import portforward

        what = f"port-forward to pod {self.namespace}/{self.pod}:{self.remote_port}"
        with self.kube._streaming() as api:
            pf = self.kube.call(
                what,
                portforward,
                api.connect_get_namespaced_pod_portforward,
                self.pod,
                self.namespace,
                ports=str(self.remote_port),
            )
        return pf, pf.socket(self.remote_port)

    def _accept_loop(self) -> None:
        assert self._lsock is not None
        while not self._closing:
            try:
                conn, _ = self._lsock.accept()
            except OSError:
                return
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self._conns.add(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            try:
                pf, remote = self._open()
            except Exception as exc:
                with self._lock:
                    self.failed += 1
                    if len(self.errors) < 20:
                        self.errors.append(str(exc)[:200])
                _reset(conn)
                return
            with self._lock:
                self.opened += 1
            try:
                clean = _pump(conn, remote)
            finally:
                with contextlib.suppress(OSError):
                    remote.close()
                pf.close()
            err = pf.error(self.remote_port)
            if not clean or err:  # the pod/API side ended first: a plain close keeps any bytes sent
                with self._lock:
                    self.dropped += 1
                    if err and len(self.errors) < 20:
                        self.errors.append(err[:200])
        finally:
            with contextlib.suppress(OSError):
                conn.close()
            with self._lock:
                self._conns.discard(conn)


def _pump(local: socket.socket, remote: Any) -> bool:
    """Copy both ways until one side ends; True when the local (engine) side closed first."""
    fds = [local, remote]
    while True:
        r, _, _ = select.select(fds, [], [])
        for s in r:
            try:
                data = s.recv(_BUF)
            except OSError:
                return s is local
            if not data:
                return s is local
            other = remote if s is local else local
            try:
                other.sendall(data)
            except OSError:
                return other is remote


def _reset(conn: socket.socket) -> None:
    """Close with RST so the engine sees a transport error at once, not a clean keep-alive close."""
    with contextlib.suppress(OSError):
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    with contextlib.suppress(OSError):
        conn.close()
