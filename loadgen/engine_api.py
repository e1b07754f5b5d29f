"""The one narrow seam between the engines and everything else.

An engine takes an :class:`EngineConfig` (resolved address, prebuilt request bytes, schedule),
runs it on its own threads, and returns an :class:`EngineResult` of plain data. It knows sockets,
bytes and time; it does not know options parsing, reports, Envoy, pandas or Kubernetes.

Three engines implement :class:`EngineHandle` via a module-level ``start(cfg) -> EngineHandle``:
``loadgen._core`` (Cython, epoll, GIL released), ``loadgen._engine_py`` (asyncio, the readable
specification) and ``loadgen._engine_httpx`` (https, HTTP/2). :mod:`loadgen.engine` chooses one.

Semantics every engine must honour (the behavioural tests run the same cases on each)
------------------------------------------------------------------------------------
Connections and threads
    ``connections`` logical connections, spread round-robin over ``threads`` engine threads
    (connection j runs on thread ``j % threads``). Each connection has at most one request in
    flight (no pipelining). A connection opens its socket lazily before its first request and
    after any close; every socket opened counts in ``sockets[j]`` and its connect time in
    ``connect_time``.

Schedule (fortio's model, wrk2's latency). See :mod:`loadgen.schedule` for the pure functions.
    ``calls[j]`` is how many requests connection j makes (-1: unlimited, until ``end_s``).
    ``qps <= 0``: closed loop, the next request is written as soon as the previous one completes,
    and the intended send time is the actual one.
    ``qps > 0``: connection j has period ``P = connections / qps`` and its k-th slot (k from 0)
    at ``start + offsets[j] + slot_time(k)`` where ``slot_time(k) = (k + k/(calls[j]-1)) * P`` if
    ``stretch`` and ``calls[j] > 1`` else ``k * P``. When a connection becomes idle before its
    next slot it waits (with ``jitter``: the wait is multiplied by a uniform factor in [0.9, 1.1]
    and the intended time is the jittered one). When it is late: with ``catchup`` it sends at once
    and the intended time stays the slot's time (so latency includes the lateness); without
    ``catchup`` it skips every slot already in the past (skipped slots are not requests, but
    count in ``skipped``) and waits for the next one.
    ``sleep``: for every request in qps mode, the wait computed before it (slot − now, in ns;
    negative when late) goes into ``sleep`` stats (count/min/max/sum/sumsq) and ``late`` counts
    the negative ones.
    Slot 0 is the connection's start: its wait is clamped to >= 0 (never late, never skipped).
    No request starts at or after ``end_s`` (seconds after start; <= 0: no end time), except the
    last slot of a stretched schedule (``stretch``, k = calls[j]-1), which lands on ``end_s`` by
    design and is still sent (fortio lets the last call through).

Requests and responses
    The engine writes ``request`` as is (``head`` tells it the method was HEAD). It parses the
    status line, headers (case-insensitive names) and frames the body by: HEAD, 1xx (skipped,
    then the real response is read), 204/304 (no body), ``Transfer-Encoding: chunked`` (chunk
    sizes in hex, extensions and trailers allowed), ``Content-Length``, otherwise read until
    close. ``x-envoy-overloaded`` present (any value) counts the response in
    ``overloaded[code]``. ``header_size`` records the bytes of the status line and headers
    (including the final CRLF CRLF, and any interim 1xx heads before it), ``total_size`` all
    bytes of the response on the wire.
    After a response the connection is closed (and reopened for the next request) when the
    response said ``Connection: close``, was HTTP/1.0 without ``Connection: keep-alive``, was
    close-delimited, when ``keepalive`` is false, or when the status is not OK (OK is 2xx or 418;
    closing on non-OK is fortio's fast-client behaviour and what users compare "Sockets used"
    against).

Recording (every completed call, errors included, as fortio does)
    ``codes[code] += 1`` (transport errors: code -1 and ``errors[kind] += 1``, kinds in
    :data:`ERROR_KINDS`). ``latency`` records completion − intended send time and ``service``
    completion − actual send time (both ns; the request's connect time, if it had to connect, is
    part of both). Non-OK calls (code not 2xx/418, including -1) also go to ``error_service``.
    The completion second (``floor((completion - start) / 1 s)``) gets requests/codes/overloaded/
    errors and the intended latency in its timeline buckets.

Errors (each counted as one call with code -1)
    ``connect_refused`` (ECONNREFUSED), ``connect_timeout`` (no connection within ``timeout_s``),
    ``timeout`` (response not complete within ``timeout_s`` of the send), ``reset`` (ECONNRESET or
    EPIPE), ``eof`` (peer closed before the response was complete), ``malformed`` (unparseable
    status line, headers or chunk framing, or a header block over 1 MiB), ``other`` (any other
    socket error). The socket is closed after any error. One exception: when a *reused*
    keep-alive connection fails with ``eof`` or ``reset`` before any byte of the response
    arrived, the request is retried once on a new connection without counting an error
    (``retries += 1``): that is the idle keep-alive race, not a server failure.

Stopping
    ``abort_on``: a call whose code equals it (-1 included; 0 disables) stops the run after that
    call: no new requests start, in-flight ones finish. ``stop()`` does the same (SIGINT); in-flight
    requests get up to ``timeout_s`` more, then are abandoned (not recorded, counted in
    ``abandoned``). ``abort()`` stops at once, abandoning everything in flight. ``interrupted`` is
    set when ``stop()``/``abort()`` ended the run early, ``aborted_on`` when ``abort_on`` did.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from loadgen.recorder import Recorder, Second

ERROR_KINDS: tuple[str, ...] = (
    "connect_refused",
    "connect_timeout",
    "timeout",
    "reset",
    "eof",
    "malformed",
    "other",
)


def is_ok(code: int) -> bool:
    """fortio's notion of success: 2xx or 418."""
    return 200 <= code < 300 or code == 418


@dataclass(frozen=True)
class EngineConfig:
    """Everything an engine needs, already resolved and validated."""

    host: str  # numeric IP to connect to (IPv4 or IPv6)
    port: int
    request: bytes  # the full request, written as is for every call
    head: bool = False  # the method is HEAD: responses have no body
    connections: int = 4
    threads: int = 1
    qps: float = 0.0  # <= 0: closed loop at max speed
    calls: tuple[int, ...] = ()  # per connection; -1 = unlimited (bounded by end_s / stop)
    offsets: tuple[float, ...] = ()  # per connection start offset, seconds (-uniform)
    stretch: bool = False  # fortio's duration-mode slot stretch
    end_s: float = 0.0  # no request starts after this many seconds; <= 0: none
    jitter: bool = False
    catchup: bool = True
    timeout_s: float = 3.0
    keepalive: bool = True
    abort_on: int = 0
    access_log_path: str = ""  # "" = none; else one JSON line per call, fortio's format
    seed: int = 0  # jitter RNG seed (0: from time)
    # Optional TLS/h2 settings, used by the httpx engine only.
    url: str = ""
    tls_insecure: bool = False
    http2: bool = False
    headers: tuple[tuple[str, str], ...] = ()
    method: str = "GET"
    body: bytes = b""


@dataclass
class EngineResult:
    """Plain results of one engine run, all threads merged."""

    latency: Recorder = field(default_factory=Recorder)  # from intended send, ns
    service: Recorder = field(default_factory=Recorder)  # from actual send, ns
    error_service: Recorder = field(default_factory=Recorder)  # non-OK calls, ns
    connect_time: Recorder = field(default_factory=Recorder)  # per socket opened, ns
    header_size: Recorder = field(default_factory=lambda: Recorder(hdr_divisor=1))
    total_size: Recorder = field(default_factory=lambda: Recorder(hdr_divisor=1))
    sleep_count: int = 0
    sleep_min: int = 0
    sleep_max: int = 0
    sleep_sum: float = 0.0
    sleep_sumsq: float = 0.0
    late: int = 0
    skipped: int = 0
    codes: dict[int, int] = field(default_factory=dict)
    overloaded: dict[int, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    sockets: list[int] = field(default_factory=list)  # per connection
    calls_done: list[int] = field(default_factory=list)  # per connection
    timeline: list[Second] = field(default_factory=list)
    retries: int = 0
    abandoned: int = 0
    elapsed_ns: int = 0  # from start to the last completion (or stop)
    start_wall: float = 0.0  # time.time() at start
    interrupted: bool = False
    aborted_on: int | None = None

    @property
    def count(self) -> int:
        return sum(self.codes.values())


@dataclass(frozen=True)
class Progress:
    done: int
    errors: int
    elapsed_s: float


class EngineHandle(Protocol):
    """A started run. All methods are safe to call from another thread or a signal handler."""

    def stop(self) -> None:
        """Start no new requests; let in-flight ones finish (up to the timeout)."""

    def abort(self) -> None:
        """End now; in-flight requests are abandoned."""

    def progress(self) -> Progress:
        """Calls completed so far (approximate while running)."""

    def wait(self, timeout: float | None = None) -> bool:
        """Block up to ``timeout`` seconds; True when the run has ended."""

    def result(self) -> EngineResult:
        """The merged result; only after :meth:`wait` returned True."""
