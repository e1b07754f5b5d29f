"""Free TCP ports on 127.0.0.1 for the lab: pick them, hold them, check a user-given one.

What it is: :class:`PortPool` binds sockets to ``127.0.0.1:0`` and keeps them open (not listening),
so that the ports it hands out stay distinct from each other and from ports other programs pick
with ``bind(0)``, until :meth:`PortPool.release` closes them just before the lab's children bind
them. :func:`check_free` turns a user-given port that is taken into a one-line
:class:`~loadgen.errors.UsageError` (``port 15000 on 127.0.0.1 is already in use``).

What it is not: no retry logic (the supervisor retries a child whose bind collided) and nothing
that binds anything but loopback.
"""

from __future__ import annotations

import errno
import socket

from loadgen.errors import UsageError

HOST = "127.0.0.1"


def check_free(port: int, what: str = "port") -> None:
    """Raise :class:`UsageError` unless ``port`` can be bound on 127.0.0.1 right now."""
    if not 0 < port < 65536:
        raise UsageError(f"{what} {port} is not in 1..65535")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise UsageError(f"port {port} on {HOST} is already in use") from None
            raise UsageError(f"port {port} on {HOST} cannot be bound: {exc.strerror}") from None


class PortPool:
    """Hands out free loopback ports and holds them (bound, not listening) until released."""

    def __init__(self) -> None:
        self._held: list[socket.socket] = []
        self._given: set[int] = set()

    def take(self, port: int = 0, what: str = "port") -> int:
        """A free port; ``port`` > 0 is checked (``UsageError`` when taken) and reserved as is."""
        if port:
            if port in self._given:
                raise UsageError(f"{what} {port} is used twice")
            check_free(port, what)
            self._given.add(port)
            return port
        while True:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((HOST, 0))
            p = int(s.getsockname()[1])
            if p in self._given:  # cannot happen while we hold it; defensive
                s.close()
                continue
            self._held.append(s)
            self._given.add(p)
            return p

    def keep(self, port: int) -> int:
        """Record a port that is already ours (a running lab's), so that it is not handed out again."""
        self._given.add(port)
        return port

    def release(self) -> None:
        """Close the held sockets: call just before starting the children that bind the ports."""
        for s in self._held:
            s.close()
        self._held.clear()

    def __enter__(self) -> PortPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
