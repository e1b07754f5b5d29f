"""The httpx engine: https, HTTP/2 and fortio's ``-stdclient``, on the py engine's schedule.

It reuses :class:`loadgen._engine_py.Run` for everything except the call itself (schedule,
catch-up/skip, stop/abort/drain, recording, timeline, access log), and makes each call with one
shared ``httpx.AsyncClient`` (``limits`` = connections, ``http2=cfg.http2``,
``verify=not cfg.tls_insecure``). It uses ``cfg.url/method/headers/body`` rather than raw bytes;
when ``cfg.url`` is empty they are taken from ``cfg.request`` (plain http to ``host:port``).

What differs from the raw HTTP/1 engines, by necessity (httpx owns the sockets):

* ``header_size`` is estimated from the parsed response (status line + ``name: value`` lines +
  CRLFs; for HTTP/2 the same HTTP/1-style estimate, not HPACK bytes); ``total_size`` is that plus
  the body bytes as received (``num_bytes_downloaded``, before decompression).
* ``sockets[j]``/``connect_time`` come from httpcore's trace events (``connect_tcp``), attributed to
  the logical connection whose request opened the socket; the pool may hand a socket opened by
  one task to another, so only the total over connections is meaningful.
* Non-OK responses do not close the connection (like fortio's std client); ``keepalive=False``
  keeps no idle connection in the pool.
* ``timeout`` is httpx's per-phase timeout (connect/read/write/pool, each ``timeout_s``), plus an
  overall bound of ``2 * timeout_s`` per call; a slow-drip response can take longer than
  ``timeout_s`` in total.
* httpx is slow (0.3-5 ms of CPU per request, worse with more connections): use it for TLS/h2,
  not for throughput.

It is not an HTTP client of its own and does not parse bytes.
"""

from __future__ import annotations

import asyncio
import errno
import importlib.util
import time
from typing import Any

import httpx

from loadgen._engine_py import Outcome, Run, _Conn, kind_of_oserror, validate
from loadgen.engine_api import EngineConfig
from loadgen.errors import UsageError

__all__ = ["HttpxRun", "map_exception", "start"]


def _causes(exc: BaseException) -> list[BaseException]:
    """The exception and everything it was raised from, outermost first."""
    seen: list[BaseException] = []
    cur: BaseException | None = exc
    while cur is not None and cur not in seen:
        seen.append(cur)
        cur = cur.__cause__ or cur.__context__
    return seen


def map_exception(exc: BaseException) -> str:
    """Translate an httpx exception to one of :data:`loadgen.engine_api.ERROR_KINDS`."""
    if isinstance(exc, httpx.ConnectTimeout):
        return "connect_timeout"
    if isinstance(exc, (httpx.TimeoutException, asyncio.TimeoutError)):
        return "timeout"
    chain = _causes(exc)
    oserrs = [e for e in chain if isinstance(e, OSError) and not isinstance(e, TimeoutError)]
    if isinstance(exc, httpx.ConnectError):
        text = " ".join(str(e) for e in chain).lower()
        if (
            any(kind_of_oserror(e) == "connect_refused" for e in oserrs)
            or "refused" in text
            or f"errno {errno.ECONNREFUSED}" in text
        ):
            return "connect_refused"
        if any(kind_of_oserror(e) == "reset" for e in oserrs):
            return "reset"
        return "other"
    if isinstance(exc, httpx.RemoteProtocolError):
        text = str(exc).lower()
        if "disconnected" in text or "closed" in text or "incomplete" in text:
            return "eof"
        return "malformed"
    if isinstance(exc, (httpx.ReadError, httpx.WriteError)):
        for e in oserrs:
            kind = kind_of_oserror(e)
            if kind != "other":
                return kind
        names = " ".join(type(e).__name__ for e in chain)
        if "EndOfStream" in names or "BrokenResource" in names or "ClosedResource" in names:
            return "eof"
        return "other"
    if isinstance(exc, (httpx.DecodingError, httpx.ProtocolError)):
        return "malformed"
    return "other"


def _from_request(cfg: EngineConfig) -> tuple[str, str, list[tuple[str, str]], bytes]:
    """(method, url, headers, body) from the raw request bytes, for configs without a URL."""
    head, _, body = cfg.request.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) < 2:
        raise UsageError("the httpx engine needs a URL (cfg.url) or a parseable request line")
    headers = []
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() not in ("content-length", "host"):
            headers.append((name.strip(), value.strip()))
    host = f"[{cfg.host}]" if ":" in cfg.host else cfg.host
    return parts[0], f"http://{host}:{cfg.port}{parts[1]}", headers, body


class _SocketTracer:
    """httpcore ``trace`` extension callback: connect time of every TCP socket a request opened."""

    def __init__(self) -> None:
        self.opened: list[int] = []  # connect time (ns) per socket
        self._t0 = 0

    async def __call__(self, name: str, info: dict[str, Any]) -> None:
        if name.endswith("connect_tcp.started"):
            self._t0 = time.monotonic_ns()
        elif name.endswith("connect_tcp.complete"):
            self.opened.append(time.monotonic_ns() - self._t0)


class HttpxRun(Run):
    """:class:`Run` whose calls go through one ``httpx.AsyncClient``."""

    def __init__(self, cfg: EngineConfig) -> None:
        super().__init__(cfg)
        if cfg.url:
            self.method, self.url = cfg.method or "GET", cfg.url
            self.headers = list(cfg.headers)
            self.body = cfg.body
        else:
            self.method, self.url, self.headers, self.body = _from_request(cfg)
        if cfg.head:
            self.method = "HEAD"
        self.client: httpx.AsyncClient | None = None

    async def setup(self) -> None:
        cfg = self.cfg
        n = self.n
        limits = httpx.Limits(max_connections=n, max_keepalive_connections=n if cfg.keepalive else 0)
        self.client = httpx.AsyncClient(
            http2=cfg.http2,
            verify=not cfg.tls_insecure,
            limits=limits,
            timeout=httpx.Timeout(cfg.timeout_s),
            follow_redirects=False,
            trust_env=False,
        )

    async def teardown(self) -> None:
        if self.client is not None:
            await self.client.aclose()

    async def _call(self, j: int, conn: _Conn) -> tuple[Outcome, int]:
        assert self.client is not None
        t_send = time.monotonic_ns()
        retried = False
        while True:
            tracer = _SocketTracer()  # sockets this attempt opened, from httpcore's trace events
            try:
                resp = await asyncio.wait_for(self._request(tracer), 2 * self.cfg.timeout_s)
            except (httpx.HTTPError, asyncio.TimeoutError, OSError) as exc:
                self._count_sockets(j, tracer.opened)
                kind = map_exception(exc)
                if not tracer.opened and not retried and kind in ("eof", "reset"):
                    # a reused pooled connection died before the response: retry once
                    retried = True
                    self.res.retries += 1
                    continue
                return Outcome(-1, 0, 0, False, kind), t_send
            self._count_sockets(j, tracer.opened)
            return resp, t_send

    def _count_sockets(self, j: int, opened: list[int]) -> None:
        for ns in opened:
            self.res.sockets[j] += 1
            self.res.connect_time.record(ns)

    async def _request(self, trace: _SocketTracer) -> Outcome:
        assert self.client is not None
        async with self.client.stream(
            self.method,
            self.url,
            headers=self.headers,
            content=self.body or None,
            extensions={"trace": trace},
        ) as r:
            async for _ in r.aiter_raw():
                pass
            head = len(f"{r.http_version} {r.status_code} {r.reason_phrase}\r\n") + 2
            head += sum(len(k) + len(v) + 4 for k, v in r.headers.raw)
            over = "x-envoy-overloaded" in r.headers
            return Outcome(r.status_code, head, head + r.num_bytes_downloaded, over)


def start(cfg: EngineConfig) -> HttpxRun:
    """Start a run on a new thread; raises :class:`UsageError` when HTTP/2 support is missing."""
    if cfg.http2 and importlib.util.find_spec("h2") is None:
        raise UsageError("HTTP/2 needs the h2 package: pip install 'httpx[http2]'")
    validate(cfg, raw=not cfg.url)
    run = HttpxRun(cfg)
    run.begin()
    return run
